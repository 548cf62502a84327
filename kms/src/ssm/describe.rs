//! DescribeParameters: every parameter's metadata (never its value), filtered by `Filters` or
//! `ParameterFilters` (not both), 1..50 a page, in ARN order.

use serde::Deserialize;
use serde_json::{Value, json};

use super::filters::{self, Filter, FilterInput, For, StringFilterInput};
use super::{answer, paging};
use crate::error::{KmsError, Result};
use crate::input::Member;
use crate::ops::via::ViaCall;

/// DescribeParameters' input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct DescribeInput {
    filters: Member<Vec<FilterInput>>,
    parameter_filters: Member<Vec<StringFilterInput>>,
    max_results: Member<i64>,
    next_token: Member<String>,
    shared: Member<bool>,
}

/// A checked DescribeParameters request.
#[derive(Debug)]
pub(super) struct Describe {
    filters: Vec<Filter>,
    max: usize,
    after: Option<String>,
    shared: bool,
}

pub(super) fn parse(i: &DescribeInput) -> Result<Describe> {
    let old = filters::parse_old(&i.filters)?;
    let new = filters::parse(&i.parameter_filters, For::Describe)?;
    if !old.is_empty() && !new.is_empty() {
        return Err(KmsError::Validation(
            "You can use either Filters or ParameterFilters in a single request.".into(),
        ));
    }
    Ok(Describe {
        filters: if old.is_empty() { new } else { old },
        max: usize::try_from(i.max_results.int_in("MaxResults", 1, 50)?.unwrap_or(50))
            .unwrap_or(50),
        after: paging::after(i.next_token.text("NextToken")?)?,
        shared: i.shared.flag("Shared")?,
    })
}

pub(super) fn describe_parameters(call: ViaCall<'_>) -> Result<Value> {
    let q = parse(&call.input()?)?;
    // No parameter is shared with this account from another: Shared lists none.
    let prefix = super::arn_prefix(&call);
    let items = if q.shared {
        Vec::new()
    } else {
        call.app
            .state()
            .parameters
            .range(prefix.clone()..)
            .take_while(|(arn, _)| arn.starts_with(&prefix))
            .filter_map(|(arn, p)| {
                let v = p.body.versions.last()?;
                q.filters
                    .iter()
                    .all(|f| f.matches(p, v))
                    .then(|| (arn.clone(), answer::metadata(p, v)))
            })
            .collect()
    };
    let (page, next) = paging::page(items, q.after.as_deref(), q.max);
    let mut out = json!({"Parameters": page});
    if let (Some(t), Some(o)) = (next, out.as_object_mut()) {
        o.insert("NextToken".into(), json!(t));
    }
    Ok(out)
}
