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
    Ok(i.name.required("Name", 2048)?.to_owned())
}

pub(super) fn parse_many(i: &DeleteManyInput) -> Result<Vec<String>> {
    let list = sized_list(&i.names, "Names", "names", 10)?;
    super::names_in(list, "names")?;
    Ok(list.clone())
}

/// The ARN `given` names, if a parameter is stored under it.
fn stored(call: &ViaCall<'_>, given: &str) -> Result<Option<String>> {
    let Some(r) = names::reference(given, call.region, &call.app.cfg.account, false) else {
        return Ok(None);
    };
    Ok(find(call, &r.arn)?.map(|p| p.arn))
}

pub(super) async fn delete_parameter(mut call: ViaCall<'_>) -> Result<Value> {
    let given = parse_one(&call.input()?)?;
    let _guard = call.app.mutate.lock().await;
    let arn = stored(&call, &given)?
        .ok_or_else(|| SsmError::ParameterNotFound(format!("Parameter {given} not found.")))?;
    audit(&mut call, &arn, None);
    call.app
        .writer
        .put_parameters(Vec::new(), vec![arn.clone()])
        .await?;
    call.app.apply(|s| {
        s.parameters.remove(&arn);
    });
    Ok(json!({}))
}

pub(super) async fn delete_parameters(mut call: ViaCall<'_>) -> Result<Value> {
    let given = parse_many(&call.input()?)?;
    let _guard = call.app.mutate.lock().await;
    let mut deleted = Vec::new();
    let mut invalid = Vec::new();
    let mut arns = Vec::new();
    for name in &given {
        match stored(&call, name)? {
            Some(arn) if !arns.contains(&arn) => {
                audit(&mut call, &arn, None);
                arns.push(arn);
                deleted.push(name.clone());
            }
            Some(_) => {}
            None => invalid.push(name.clone()),
        }
    }
    if !arns.is_empty() {
        call.app
            .writer
            .put_parameters(Vec::new(), arns.clone())
            .await?;
        call.app.apply(|s| {
            for arn in &arns {
                s.parameters.remove(arn);
            }
        });
    }
    Ok(json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
}
