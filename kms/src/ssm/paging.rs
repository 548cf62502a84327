//! Pagination of GetParametersByPath, DescribeParameters and GetParameterHistory: items are
//! in a fixed order (ARN, or version), and `NextToken` says after which item the next page
//! starts, so a page stays right when parameters are added or deleted between calls. A token
//! this service did not give is refused (InvalidNextToken).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Result, SsmError};

const TAG: &str = "cloister-ssm-page:";

/// The token for a page that starts after the item `key`.
pub(super) fn token(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TAG}{key}"))
}

/// The item a `NextToken` says the page starts after.
pub(super) fn after(token: Option<&str>) -> Result<Option<String>> {
    let Some(t) = token else { return Ok(None) };
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(TAG).map(str::to_owned))
        .map(Some)
        .ok_or_else(|| SsmError::InvalidNextToken("The specified token isn't valid.".into()).into())
}

/// The page of `items` (ordered by key) after `after`, at most `max`, and the token for the
/// next page when more remain.
pub(super) fn page<T>(
    items: Vec<(String, T)>,
    after: Option<&str>,
    max: usize,
) -> (Vec<T>, Option<String>) {
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
        .peekable();
    let mut out = Vec::new();
    let mut last = None;
    while out.len() < max {
        match rest.next() {
            Some((k, v)) => {
                last = Some(k);
                out.push(v);
            }
            None => break,
        }
    }
    let next = if rest.peek().is_some() {
        last.map(|k| token(&k))
    } else {
        None
    };
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_each_other() {
        let items = |n: usize| (0..n).map(|i| (format!("k{i:02}"), i)).collect::<Vec<_>>();
        let (p1, t1) = page(items(5), None, 2);
        assert_eq!(p1, vec![0, 1]);
        let a = after(t1.as_deref()).unwrap();
        let (p2, t2) = page(items(5), a.as_deref(), 2);
        assert_eq!(p2, vec![2, 3]);
        let (p3, t3) = page(items(5), after(t2.as_deref()).unwrap().as_deref(), 2);
        assert_eq!((p3, t3), (vec![4], None));
        let (_, none) = page(items(2), None, 2);
        assert!(none.is_none());
    }

    #[test]
    fn foreign_tokens_are_refused() {
        assert_eq!(
            after(Some("bm90IG91cnM")).unwrap_err().aws_name(),
            "InvalidNextToken"
        );
        assert!(after(Some("!!")).is_err());
        assert_eq!(after(None).unwrap(), None);
    }
}
