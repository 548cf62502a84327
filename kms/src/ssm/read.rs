//! The reads: GetParameter (`name`, `name:version`, `name:label`, or the ARN), GetParameters
//! (1..10 names; the ones not found listed in `InvalidParameters`), GetParametersByPath (one
//! level or recursive, filters, pagination) and GetParameterHistory. With `WithDecryption`, a
//! SecureString is opened with KMS Decrypt for the caller; without, its KMS ciphertext is
//! returned, which KMS Decrypt opens with `{"PARAMETER_ARN": arn}`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::filters::{self, Filter, For, StringFilterInput};
use super::model::{Parameter, ParameterBody, ParameterVersion};
use super::names::{self, Reference, Selector};
use super::{answer, audit, find, paging, sized_list};
use crate::error::{KmsError, Result, SsmError};
use crate::input::Member;
use crate::ops::via::ViaCall;

/// GetParameter's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct GetInput {
    name: Member<String>,
    with_decryption: Member<bool>,
}

/// GetParameters' input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct GetManyInput {
    names: Member<Vec<String>>,
    with_decryption: Member<bool>,
}

/// GetParametersByPath's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct ByPathInput {
    path: Member<String>,
    recursive: Member<bool>,
    parameter_filters: Member<Vec<StringFilterInput>>,
    with_decryption: Member<bool>,
    max_results: Member<i64>,
    next_token: Member<String>,
}

/// GetParameterHistory's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct HistoryInput {
    name: Member<String>,
    with_decryption: Member<bool>,
    max_results: Member<i64>,
    next_token: Member<String>,
}

pub(super) fn parse_get(i: &GetInput) -> Result<(String, bool)> {
    Ok((
        i.name.required("Name", 2048)?.to_owned(),
        i.with_decryption.flag("WithDecryption")?,
    ))
}

pub(super) fn parse_get_many(i: &GetManyInput) -> Result<(Vec<String>, bool)> {
    let list = sized_list(&i.names, "Names", "names", 10)?;
    super::names_in(list, "names")?;
    Ok((list.clone(), i.with_decryption.flag("WithDecryption")?))
}

/// A checked GetParametersByPath request.
#[derive(Debug)]
pub(super) struct ByPath {
    path: String,
    recursive: bool,
    filters: Vec<Filter>,
    decrypt: bool,
    max: usize,
    after: Option<String>,
}

pub(super) fn parse_by_path(i: &ByPathInput) -> Result<ByPath> {
    let path = names::check_path(i.path.required("Path", 2048)?)?;
    Ok(ByPath {
        path,
        recursive: i.recursive.flag("Recursive")?,
        filters: filters::parse(&i.parameter_filters, For::Path)?,
        decrypt: i.with_decryption.flag("WithDecryption")?,
        max: usize::try_from(i.max_results.int_in("MaxResults", 1, 10)?.unwrap_or(10))
            .unwrap_or(10),
        after: paging::after(i.next_token.text("NextToken")?)?,
    })
}

pub(super) fn parse_history(i: &HistoryInput) -> Result<(String, bool, usize, Option<String>)> {
    Ok((
        i.name.required("Name", 2048)?.to_owned(),
        i.with_decryption.flag("WithDecryption")?,
        usize::try_from(i.max_results.int_in("MaxResults", 1, 50)?.unwrap_or(50)).unwrap_or(50),
        paging::after(i.next_token.text("NextToken")?)?,
    ))
}

fn not_found(name: &str) -> KmsError {
    SsmError::ParameterNotFound(format!("Parameter {name} not found.")).into()
}

/// The reference `given` names, with selectors when `selectors`.
fn reference(call: &ViaCall<'_>, given: &str, selectors: bool) -> Option<Reference> {
    names::reference(given, call.region, &call.app.cfg.account, selectors)
}

/// The version `selector` picks (the latest without one).
fn select<'a>(
    body: &'a ParameterBody,
    selector: Option<&Selector>,
    given: &str,
) -> Result<&'a ParameterVersion> {
    let found = match selector {
        None => body.versions.last(),
        Some(Selector::Version(n)) => {
            return body.versions.iter().find(|v| v.version == *n).ok_or_else(|| {
                SsmError::ParameterVersionNotFound(format!(
                    "Systems Manager could not find version {n} of {}. Verify the version and try again.",
                    body.name
                ))
                .into()
            });
        }
        Some(Selector::Label(l)) => body.versions.iter().find(|v| v.labels.contains(l)),
    };
    found.ok_or_else(|| not_found(given))
}

pub(super) fn get_parameter(mut call: ViaCall<'_>) -> Result<Value> {
    let (given, decrypt) = parse_get(&call.input()?)?;
    let r = reference(&call, &given, true).ok_or_else(|| not_found(&given))?;
    call.audit.resource_arn = Some(r.arn.clone());
    let p = find(&call, &r.arn)?.ok_or_else(|| not_found(&given))?;
    let v = select(&p.body, r.selector.as_ref(), &given)?;
    call.audit.resource_version = Some(v.version.to_string());
    let out = answer::parameter(&mut call, &p, v, r.selector.as_ref(), decrypt)?;
    Ok(json!({"Parameter": out}))
}

pub(super) fn get_parameters(mut call: ViaCall<'_>) -> Result<Value> {
    let (given, decrypt) = parse_get_many(&call.input()?)?;
    let mut found = Vec::new();
    let mut invalid = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for name in given.iter().filter(|n| seen.insert(n.as_str())) {
        let hit = match reference(&call, name, true) {
            Some(r) => match find(&call, &r.arn)? {
                Some(p) => match select(&p.body, r.selector.as_ref(), name) {
                    Ok(v) => Some((p.clone(), v.clone(), r.selector)),
                    Err(_) => None,
                },
                None => None,
            },
            None => None,
        };
        match hit {
            Some(h) => found.push(h),
            None => invalid.push(name.clone()),
        }
    }
    let mut out = Vec::new();
    for (p, v, selector) in &found {
        audit(&mut call, &p.arn, Some(v.version));
        out.push(answer::parameter(
            &mut call,
            p,
            v,
            selector.as_ref(),
            decrypt,
        )?);
    }
    Ok(json!({"Parameters": out, "InvalidParameters": invalid}))
}

pub(super) fn get_parameters_by_path(mut call: ViaCall<'_>) -> Result<Value> {
    let q = parse_by_path(&call.input()?)?;
    let prefix = super::arn_prefix(&call);
    let labels: Option<Vec<String>> = q
        .filters
        .iter()
        .find_map(|f| f.labels())
        .map(<[String]>::to_vec);
    let items: Vec<(String, (Parameter, ParameterVersion))> = call
        .app
        .state()
        .parameters
        .range(prefix.clone()..)
        .take_while(|(arn, _)| arn.starts_with(&prefix))
        .filter(|(_, p)| names::under(&p.body.name, &q.path, q.recursive))
        .filter_map(|(arn, p)| {
            let v = match &labels {
                Some(ls) => p
                    .body
                    .versions
                    .iter()
                    .find(|v| v.labels.iter().any(|l| ls.contains(l)))?,
                None => p.body.versions.last()?,
            };
            q.filters
                .iter()
                .all(|f| f.matches(p, v))
                .then(|| (arn.clone(), (p.clone(), v.clone())))
        })
        .collect();
    let (page, next) = paging::page(items, q.after.as_deref(), q.max);
    let mut out = Vec::new();
    for (p, v) in &page {
        if let Some(e) = call.app.parameter_refused(&p.arn) {
            return Err(e);
        }
        audit(&mut call, &p.arn, Some(v.version));
        out.push(answer::parameter(&mut call, p, v, None, q.decrypt)?);
    }
    let mut answer = json!({"Parameters": out});
    if let (Some(t), Some(o)) = (next, answer.as_object_mut()) {
        o.insert("NextToken".into(), json!(t));
    }
    Ok(answer)
}

pub(super) fn get_parameter_history(mut call: ViaCall<'_>) -> Result<Value> {
    let (given, decrypt, max, after) = parse_history(&call.input()?)?;
    let r = reference(&call, &given, false).ok_or_else(|| not_found(&given))?;
    call.audit.resource_arn = Some(r.arn.clone());
    let p = find(&call, &r.arn)?.ok_or_else(|| not_found(&given))?;
    // Keys sort as versions do: zero-padded.
    let items = p
        .body
        .versions
        .iter()
        .map(|v| (format!("{:020}", v.version), v.clone()))
        .collect();
    let (page, next) = paging::page(items, after.as_deref(), max);
    let mut out = Vec::new();
    for v in &page {
        out.push(answer::history(&mut call, &p, v, decrypt)?);
    }
    let mut answer = json!({"Parameters": out});
    if let (Some(t), Some(o)) = (next, answer.as_object_mut()) {
        o.insert("NextToken".into(), json!(t));
    }
    Ok(answer)
}
