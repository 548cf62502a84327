//! Parameter values and their attributes as PutParameter checks them: the type (String,
//! StringList, SecureString), the tier and its size limit (Standard 4096 bytes, Advanced
//! 8192), the data type, and the AllowedPattern the value must match.
//!
//! Deviation: AWS evaluates AllowedPattern as a Java regular expression; cloister uses the
//! `regex` crate (linear time, no backreferences or lookaround), so a pattern using those is
//! refused with InvalidAllowedPatternException.

use super::model::ParameterType;
use crate::error::{KmsError, Result, SsmError};

/// The Standard tier.
pub(super) const STANDARD: &str = "Standard";
/// The Advanced tier.
pub(super) const ADVANCED: &str = "Advanced";
/// Largest Standard value, bytes.
const STANDARD_MAX: usize = 4096;
/// Largest Advanced value, bytes.
const ADVANCED_MAX: usize = 8192;
/// The data types Parameter Store knows.
pub(super) const DATA_TYPES: &[&str] = &["text", "aws:ec2:image", "aws:ssm:integration"];
/// Largest compiled AllowedPattern (bounds the memory an untrusted pattern takes).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// A `Type` member's value.
pub(super) fn parameter_type(s: &str) -> Option<ParameterType> {
    match s {
        "String" => Some(ParameterType::String),
        "StringList" => Some(ParameterType::StringList),
        "SecureString" => Some(ParameterType::SecureString),
        _ => None,
    }
}

/// The tier a new version gets: the one asked (Intelligent-Tiering: Advanced only when the
/// value needs it), else the parameter's current one, else Standard. An Advanced parameter
/// cannot go back to Standard, as AWS documents.
pub(super) fn tier(asked: Option<&str>, current: Option<&str>, value: &str) -> Result<String> {
    let tier = match asked {
        Some("Intelligent-Tiering") => {
            if value.len() > STANDARD_MAX || current == Some(ADVANCED) {
                ADVANCED
            } else {
                STANDARD
            }
        }
        Some(t) => t,
        None => current.unwrap_or(STANDARD),
    };
    if tier == STANDARD && current == Some(ADVANCED) {
        return Err(KmsError::Validation(
            "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the advanced parameter and recreate it as a standard parameter.".into(),
        ));
    }
    let max = if tier == ADVANCED {
        ADVANCED_MAX
    } else {
        STANDARD_MAX
    };
    if value.len() > max {
        return Err(KmsError::Validation(if tier == ADVANCED {
            format!(
                "Advanced tier parameters support a maximum parameter value of {ADVANCED_MAX} characters."
            )
        } else {
            format!(
                "Standard tier parameters support a maximum parameter value of {STANDARD_MAX} characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html"
            )
        }));
    }
    Ok(tier.to_owned())
}

/// Checks `DataType` (default `text`) against the type: the AWS data types describe String
/// parameters only.
pub(super) fn data_type(asked: Option<&str>, kind: ParameterType) -> Result<String> {
    let dt = asked.unwrap_or("text");
    if !DATA_TYPES.contains(&dt) {
        return Err(KmsError::Validation(format!(
            "The following data type is not supported: {dt} (Data type names are all lowercase.)"
        )));
    }
    if dt != "text" && kind != ParameterType::String {
        return Err(SsmError::UnsupportedParameterType(format!(
            "The data type {dt} is supported for String parameters only, not {}.",
            kind.as_str()
        ))
        .into());
    }
    Ok(dt.to_owned())
}

/// Checks a value: not empty, no nested parameter reference (`{{...}}`), and matching
/// `pattern` when there is one.
pub(super) fn check_value(value: &str, pattern: Option<&str>) -> Result<()> {
    if value.is_empty() {
        return Err(KmsError::validation(
            "Value '' at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1.",
        ));
    }
    if let Some(start) = value.find("{{")
        && value[start..].contains("}}")
    {
        return Err(KmsError::Validation(
            "Parameter value can't nest another parameter. Do not use \"{{}}\" in the value."
                .into(),
        ));
    }
    if let Some(p) = pattern.filter(|p| !p.is_empty())
        && !compile(p)?.is_match(value)
    {
        return Err(SsmError::ParameterPatternMismatch(format!(
            "Parameter value, cannot be validated against allowedPattern: {p}"
        ))
        .into());
    }
    Ok(())
}

/// Compiles an AllowedPattern (InvalidAllowedPatternException when it is not one).
pub(super) fn compile(pattern: &str) -> Result<regex::Regex> {
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            SsmError::InvalidAllowedPattern(format!(
                "The allowed pattern isn't a valid regular expression: {e}"
            ))
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_bound_the_value() {
        assert_eq!(tier(None, None, "x").unwrap(), STANDARD);
        assert_eq!(tier(None, Some(ADVANCED), "x").unwrap(), ADVANCED);
        assert!(tier(None, None, &"x".repeat(4097)).is_err());
        assert_eq!(
            tier(Some(ADVANCED), None, &"x".repeat(8192)).unwrap(),
            ADVANCED
        );
        assert!(tier(Some(ADVANCED), None, &"x".repeat(8193)).is_err());
        assert_eq!(
            tier(Some("Intelligent-Tiering"), None, &"x".repeat(4097)).unwrap(),
            ADVANCED
        );
        assert_eq!(
            tier(Some("Intelligent-Tiering"), None, "x").unwrap(),
            STANDARD
        );
        assert!(tier(Some(STANDARD), Some(ADVANCED), "x").is_err());
    }

    #[test]
    fn data_types_are_for_strings() {
        assert_eq!(
            data_type(None, ParameterType::SecureString).unwrap(),
            "text"
        );
        assert!(data_type(Some("aws:ec2:image"), ParameterType::String).is_ok());
        assert_eq!(
            data_type(Some("aws:ec2:image"), ParameterType::StringList)
                .unwrap_err()
                .aws_name(),
            "UnsupportedParameterType"
        );
        assert!(data_type(Some("Text"), ParameterType::String).is_err());
    }

    #[test]
    fn values_match_their_pattern() {
        check_value("123", Some(r"^\d+$")).unwrap();
        assert_eq!(
            check_value("12a", Some(r"^\d+$")).unwrap_err().aws_name(),
            "ParameterPatternMismatchException"
        );
        assert_eq!(
            check_value("x", Some("(")).unwrap_err().aws_name(),
            "InvalidAllowedPatternException"
        );
        assert!(check_value("", None).is_err());
        assert!(check_value("a {{ssm:x}}", None).is_err());
        check_value("a }} {{", None).unwrap();
        assert_eq!(
            parameter_type("SecureString"),
            Some(ParameterType::SecureString)
        );
        assert_eq!(parameter_type("Secure"), None);
    }
}
