//! LabelParameterVersion and UnlabelParameterVersion. A label sits on one version of a
//! parameter at a time (labelling another version moves it), a version has at most 10, and a
//! label that breaks AWS's rules (letters, digits, `.`, `-`, `_`; not beginning with a digit,
//! `aws` or `ssm`) is not attached but listed in `InvalidLabels`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::model::Parameter;
use super::{find, names, sized_list};
use crate::error::{KmsError, Result, SsmError};
use crate::input::Member;
use crate::ops::via::ViaCall;

/// Most labels on one version.
const MAX_LABELS: usize = 10;

/// LabelParameterVersion's and UnlabelParameterVersion's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct LabelInput {
    name: Member<String>,
    parameter_version: Member<i64>,
    labels: Member<Vec<String>>,
}

/// A checked request.
#[derive(Debug)]
pub(super) struct Labelling {
    name: String,
    version: Option<u64>,
    labels: Vec<String>,
}

/// Checks the input; `unlabel` requires `ParameterVersion`.
pub(super) fn parse(i: &LabelInput, unlabel: bool) -> Result<Labelling> {
    let name = i.name.required("Name", 2048)?.to_owned();
    names::check_spaces(&name)?;
    let version = i
        .parameter_version
        .int_in("ParameterVersion", 1, i64::MAX)?
        .map(|v| u64::try_from(v).unwrap_or(0));
    if unlabel && version.is_none() {
        return Err(KmsError::validation(
            "Value null at 'parameterVersion' failed to satisfy constraint: Member must not be null",
        ));
    }
    let labels = sized_list(&i.labels, "Labels", "labels", MAX_LABELS)?;
    for l in labels {
        if l.is_empty() || l.chars().count() > 100 {
            return Err(KmsError::validation(format!(
                "Value '[{l}]' at 'labels' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 100, Member must have length greater than or equal to 1]"
            )));
        }
    }
    Ok(Labelling {
        name,
        version,
        labels: labels.clone(),
    })
}

/// The parameter the request names (ParameterNotFound) and the index of its version
/// (ParameterVersionNotFound; the latest when none is given).
fn target(call: &mut ViaCall<'_>, q: &Labelling) -> Result<(Parameter, usize)> {
    let not_found = || SsmError::ParameterNotFound(format!("Parameter {} not found.", q.name));
    let r = names::reference(&q.name, call.region, &call.app.cfg.account, false)
        .ok_or_else(not_found)?;
    call.audit.resource_arn = Some(r.arn.clone());
    let p = find(call, &r.arn)?.ok_or_else(not_found)?;
    let index = match q.version {
        None => p.body.versions.len().checked_sub(1),
        Some(n) => p.body.versions.iter().position(|v| v.version == n),
    }
    .ok_or_else(|| {
        SsmError::ParameterVersionNotFound(format!(
            "Systems Manager could not find version {} of {}. Verify the version and try again.",
            q.version.unwrap_or_default(),
            p.body.name
        ))
    })?;
    call.audit.resource_version = Some(p.body.versions[index].version.to_string());
    Ok((p, index))
}

async fn write(call: &ViaCall<'_>, p: Parameter) -> Result<()> {
    super::persist(call.app, vec![p], Vec::new()).await
}

pub(super) async fn label(mut call: ViaCall<'_>) -> Result<Value> {
    let q = parse(&call.input()?, false)?;
    let _guard = call.app.mutate().await?;
    let (p, index) = target(&mut call, &q)?;
    let (valid, invalid): (Vec<String>, Vec<String>) = q
        .labels
        .iter()
        .cloned()
        .partition(|l| names::label_valid(l));
    let mut body = (*p.body).clone();
    let version = body.versions[index].version;
    let mut labels = body.versions[index].labels.clone();
    for l in &valid {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    if labels.len() > MAX_LABELS {
        return Err(SsmError::ParameterVersionLabelLimitExceeded(
            "A parameter version can have maximum 10 labels. Move one or more labels to another version and try again.".into(),
        )
        .into());
    }
    for (n, v) in body.versions.iter_mut().enumerate() {
        if n == index {
            v.labels = labels.clone();
        } else {
            v.labels.retain(|l| !valid.contains(l));
        }
    }
    if !valid.is_empty() {
        let p = Parameter {
            arn: p.arn.clone(),
            body: Arc::new(body),
        };
        write(&call, p).await?;
    }
    Ok(json!({"InvalidLabels": invalid, "ParameterVersion": version}))
}

pub(super) async fn unlabel(mut call: ViaCall<'_>) -> Result<Value> {
    let q = parse(&call.input()?, true)?;
    let _guard = call.app.mutate().await?;
    let (p, index) = target(&mut call, &q)?;
    let mut body = (*p.body).clone();
    let on = &mut body.versions[index].labels;
    let (removed, invalid): (Vec<String>, Vec<String>) =
        q.labels.iter().cloned().partition(|l| on.contains(l));
    on.retain(|l| !removed.contains(l));
    if !removed.is_empty() {
        let p = Parameter {
            arn: p.arn.clone(),
            body: Arc::new(body),
        };
        write(&call, p).await?;
    }
    Ok(json!({"RemovedLabels": removed, "InvalidLabels": invalid}))
}
