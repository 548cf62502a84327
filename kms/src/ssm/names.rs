//! Parameter names, paths, labels and references, as Parameter Store checks them: a name is
//! the only identity a caller writes (`/app/db/password` or `plain`), its ARN is
//! `arn:aws:ssm:<region>:<account>:parameter/<name without its leading slash>` (so `/plain` and
//! `plain` name one parameter, as in AWS), and reads may add a selector (`name:3`,
//! `name:label`) or give the ARN instead of the name.

use crate::error::{KmsError, Result, SsmError};

/// Most levels (`/`-separated parts) a name or path has.
pub(super) const MAX_LEVELS: usize = 15;
/// Longest name AWS accepts, counted with the ARN's prefix before it (the model documents
/// 2048 characters of which 1037 are reserved for internal use).
const MAX_ARN_CHARS: usize = 1011;

/// AWS's answer for a name with characters outside `a-zA-Z0-9_.-/`.
const BAD_NAME: &str = "Parameter name: can't be prefixed with \"ssm\" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_";

/// The ARN of parameter `name` in `region` of `account`.
pub(super) fn arn(region: &str, account: &str, name: &str) -> String {
    let bare = name.strip_prefix('/').unwrap_or(name);
    format!("arn:aws:ssm:{region}:{account}:parameter/{bare}")
}

/// The name with its leading slash, as filters compare names (`plain` is `/plain`).
pub(super) fn rooted(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

/// AWS trims spaces at both ends of a name; spaces inside are refused (by [`check_name`]).
pub(super) fn trim(name: &str) -> &str {
    name.trim_matches(' ')
}

/// PutParameter's checks of a new parameter's name (already trimmed).
pub(super) fn check_name(name: &str, region: &str, account: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(name_char) {
        return Err(KmsError::Validation(BAD_NAME.into()));
    }
    let hierarchical = name.contains('/');
    if hierarchical && !name.starts_with('/') {
        return Err(KmsError::Validation(
            "Parameter name must be a fully qualified name.".into(),
        ));
    }
    if name.contains("//") || name.ends_with('/') {
        return Err(KmsError::Validation(BAD_NAME.into()));
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        if name.matches('/').count() > 1 && first.starts_with("aws") {
            return Err(KmsError::AccessDenied(format!(
                "No access to reserved parameter name: {name}."
            )));
        }
        return Err(KmsError::Validation(
            "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive).".into(),
        ));
    }
    if levels(name) > MAX_LEVELS {
        return Err(SsmError::HierarchyLevelLimitExceeded(
            "A hierarchy can have a maximum of 15 levels. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-parameter-name-constraints.html".into(),
        )
        .into());
    }
    if arn(region, account, name).chars().count() > MAX_ARN_CHARS {
        return Err(KmsError::validation(format!(
            "Value '{name}' at 'name' failed to satisfy constraint: Member must have length less than or equal to {MAX_ARN_CHARS} characters including the ARN prefix"
        )));
    }
    Ok(())
}

/// How many levels a name or path has (`/a/b` and `a` have 2 and 1).
pub(super) fn levels(name: &str) -> usize {
    name.trim_start_matches('/').split('/').count()
}

/// GetParametersByPath's checks of a path; the path without a trailing slash (`/` stays).
pub(super) fn check_path(path: &str) -> Result<String> {
    let valid = path.starts_with('/')
        && path.chars().all(name_char)
        && !path.contains("//")
        && levels(path) <= MAX_LEVELS;
    if !valid {
        return Err(KmsError::Validation(
            "The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\". It can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: /get/parameters2-/by1./path0_.".into(),
        ));
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}

/// Whether parameter `name` lies under `path` (as [`check_path`] returns it): directly below
/// it, or at any depth when `recursive`.
pub(super) fn under(name: &str, path: &str, recursive: bool) -> bool {
    let name = rooted(name);
    let prefix = if path == "/" {
        "/".to_owned()
    } else {
        format!("{path}/")
    };
    match name.strip_prefix(&prefix) {
        Some(rest) if !rest.is_empty() => recursive || !rest.contains('/'),
        _ => false,
    }
}

/// Which version a reference selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Selector {
    /// `name:3`.
    Version(u64),
    /// `name:label`.
    Label(String),
}

impl Selector {
    /// As AWS writes it in `Selector`: `:3`, `:label`.
    pub(super) fn text(&self) -> String {
        match self {
            Self::Version(v) => format!(":{v}"),
            Self::Label(l) => format!(":{l}"),
        }
    }
}

/// A reference to a parameter: its ARN, and the selector if one was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reference {
    /// The parameter's ARN in the request's region.
    pub(super) arn: String,
    /// The version or label selected, if any.
    pub(super) selector: Option<Selector>,
}

/// Resolves `given` (a name or an ARN of this region and account, with `:selector` when
/// `selectors` allows one). `None` for what cannot name a parameter here (a malformed name, an
/// ARN of another account or region, a selector where none is allowed): such a parameter is
/// not found.
pub(super) fn reference(
    given: &str,
    region: &str,
    account: &str,
    selectors: bool,
) -> Option<Reference> {
    let given = trim(given);
    let prefix = format!("arn:aws:ssm:{region}:{account}:parameter/");
    let (name, rooted_name) = match given.strip_prefix(&prefix) {
        Some(rest) => (rest, false),
        None if given.starts_with("arn:") => return None,
        None => (given, true),
    };
    let (name, selector) = match name.split_once(':') {
        None => (name, None),
        Some(_) if !selectors => return None,
        Some((n, s)) => (n, Some(selector(s)?)),
    };
    let valid = !name.is_empty()
        && name.chars().all(name_char)
        && !name.trim_start_matches('/').is_empty()
        && (!rooted_name || !name.contains('/') || name.starts_with('/'));
    valid.then(|| Reference {
        arn: arn(region, account, name),
        selector,
    })
}

fn selector(s: &str) -> Option<Selector> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Selector::Version);
    }
    Some(Selector::Label(s.to_owned()))
}

/// Whether `label` follows AWS's label rules (letters, digits, `.`, `-`, `_`; not beginning
/// with a digit, `aws` or `ssm`); the length (1..=100) is checked as a constraint first.
pub(super) fn label_valid(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    label
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !label.starts_with(|c: char| c.is_ascii_digit())
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "us-east-1";
    const A: &str = "111122223333";

    fn code(r: Result<()>) -> &'static str {
        r.unwrap_err().aws_name()
    }

    #[test]
    fn arns_drop_the_leading_slash() {
        assert_eq!(
            arn(R, A, "/app/db"),
            "arn:aws:ssm:us-east-1:111122223333:parameter/app/db"
        );
        assert_eq!(arn(R, A, "plain"), arn(R, A, "/plain"));
    }

    #[test]
    fn names_follow_aws_rules() {
        check_name("/app/db/pass-word_1.x", R, A).unwrap();
        check_name("plain", R, A).unwrap();
        assert_eq!(code(check_name("a b", R, A)), "ValidationException");
        assert_eq!(code(check_name("app/db", R, A)), "ValidationException");
        assert_eq!(code(check_name("/a//b", R, A)), "ValidationException");
        assert_eq!(code(check_name("/a/", R, A)), "ValidationException");
        assert_eq!(code(check_name("AWSthing", R, A)), "ValidationException");
        assert_eq!(code(check_name("/SSM/x", R, A)), "ValidationException");
        assert_eq!(code(check_name("/aws/x/y", R, A)), "AccessDeniedException");
        let fifteen = "/l".repeat(15);
        check_name(&fifteen, R, A).unwrap();
        assert_eq!(
            code(check_name(&"/l".repeat(16), R, A)),
            "HierarchyLevelLimitExceededException"
        );
        assert_eq!(
            code(check_name(&"x".repeat(1000), R, A)),
            "ValidationException"
        );
    }

    #[test]
    fn references_take_names_arns_and_selectors() {
        let r = reference("/a/b:3", R, A, true).unwrap();
        assert_eq!(r.arn, arn(R, A, "/a/b"));
        assert_eq!(r.selector, Some(Selector::Version(3)));
        let r = reference(&format!("{}:prod", arn(R, A, "/a/b")), R, A, true).unwrap();
        assert_eq!(r.selector, Some(Selector::Label("prod".into())));
        assert_eq!(r.selector.unwrap().text(), ":prod");
        assert!(reference("/a/b:3", R, A, false).is_none());
        assert!(reference("a/b", R, A, true).is_none());
        assert!(reference("/a/b:", R, A, true).is_none());
        assert!(reference("arn:aws:ssm:eu-west-1:111122223333:parameter/x", R, A, true).is_none());
        assert!(reference("/a/b:99999999999999999999999", R, A, true).is_none());
        assert_eq!(
            reference(" plain ", R, A, true).unwrap().arn,
            arn(R, A, "plain")
        );
    }

    #[test]
    fn paths_select_one_level_or_all() {
        assert_eq!(check_path("/a/").unwrap(), "/a");
        assert_eq!(check_path("/").unwrap(), "/");
        assert!(check_path("a").is_err() && check_path("/a//b").is_err());
        assert!(under("/a/b", "/a", false) && !under("/a/b/c", "/a", false));
        assert!(under("/a/b/c", "/a", true) && !under("/ab", "/a", true));
        assert!(under("plain", "/", false) && !under("/a/b", "/", false));
        assert!(under("/a/b", "/", true));
    }

    #[test]
    fn labels_follow_aws_rules() {
        assert!(label_valid("Prod.v-1_x"));
        assert!(!label_valid("1st") && !label_valid("awsX") && !label_valid("SSMx"));
        assert!(!label_valid("a b") && !label_valid("a/b"));
    }
}
