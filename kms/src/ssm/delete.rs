//! DeleteParameter (ParameterNotFound when there is none) and DeleteParameters (1..10 names:
//! `DeletedParameters` and `InvalidParameters`); every version and tag goes, in one durable
//! write.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{audit, find, names, sized_list};
use crate::error::{Result, SsmError};
use crate::input::Member;
use crate::ops::via::ViaCall;

/// DeleteParameter's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DeleteInput {
    name: Member<String>,
}

/// DeleteParameters' input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DeleteManyInput {
    names: Member<Vec<String>>,
}

pub(super) fn parse_one(i: &DeleteInput) -> Result<String> {
    let name = i.name.required("Name", 2048)?;
    names::check_spaces(name)?;
    Ok(name.to_owned())
}

pub(super) fn parse_many(i: &DeleteManyInput) -> Result<Vec<String>> {
    let list = sized_list(&i.names, "Names", "names", 10)?;
    super::names_in(list, "names")?;
    for n in list {
        names::check_spaces(n)?;
    }
    Ok(list.clone())
}

/// The ARN `given` names and its latest version, if a parameter is stored under it.
fn stored(call: &ViaCall<'_>, given: &str) -> Result<Option<(String, Option<u64>)>> {
    let Some(r) = names::reference(given, call.region, &call.app.cfg.account, false) else {
        return Ok(None);
    };
    Ok(find(call, &r.arn)?.map(|p| {
        let latest = p.body.versions.last().map(|v| v.version);
        (p.arn, latest)
    }))
}

pub(super) async fn delete_parameter(mut call: ViaCall<'_>) -> Result<Value> {
    let given = parse_one(&call.input()?)?;
    let _guard = call.app.mutate().await?;
    let (arn, latest) = stored(&call, &given)?
        .ok_or_else(|| SsmError::ParameterNotFound(format!("Parameter {given} not found.")))?;
    audit(&mut call, &arn, latest);
    super::persist(call.app, Vec::new(), vec![arn]).await?;
    Ok(json!({}))
}

pub(super) async fn delete_parameters(mut call: ViaCall<'_>) -> Result<Value> {
    let given = parse_many(&call.input()?)?;
    let _guard = call.app.mutate().await?;
    let mut deleted = Vec::new();
    let mut invalid = Vec::new();
    let mut arns = Vec::new();
    for name in &given {
        match stored(&call, name)? {
            Some((arn, latest)) if !arns.contains(&arn) => {
                audit(&mut call, &arn, latest);
                arns.push(arn);
                deleted.push(name.clone());
            }
            Some(_) => {}
            None => invalid.push(name.clone()),
        }
    }
    if !arns.is_empty() {
        super::persist(call.app, Vec::new(), arns).await?;
    }
    Ok(json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
}
