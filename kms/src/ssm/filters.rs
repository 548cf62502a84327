//! `ParameterFilters` (GetParametersByPath, DescribeParameters) and DescribeParameters'
//! older `Filters`: their checks, in the order and with the errors AWS gives
//! (InvalidFilterKey, InvalidFilterOption, InvalidFilterValue), and how a parameter matches.

use serde::Deserialize;

use super::model::{Parameter, ParameterVersion};
use super::{list, names, values};
use crate::error::{KmsError, Result, SsmError};
use crate::input::Member;

/// One `ParameterStringFilter`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct StringFilterInput {
    key: Member<String>,
    option: Member<String>,
    values: Member<Vec<String>>,
}

/// One `ParametersFilter` (DescribeParameters' older form).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(super) struct FilterInput {
    key: Member<String>,
    values: Member<Vec<String>>,
}

/// What a filter looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Name,
    Type,
    KeyId,
    Path,
    Label,
    Tier,
    DataType,
    Tag(String),
}

/// How it compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Equals,
    BeginsWith,
    Contains,
    Recursive,
    OneLevel,
}

/// A checked filter.
#[derive(Debug, Clone)]
pub(super) struct Filter {
    key: Field,
    option: Opt,
    values: Vec<String>,
}

/// Which operation the filters are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum For {
    /// GetParametersByPath: Type, KeyId, Label.
    Path,
    /// DescribeParameters: every key but Label.
    Describe,
}

fn field(k: &str) -> Option<Field> {
    Some(match k {
        "Name" => Field::Name,
        "Type" => Field::Type,
        "KeyId" => Field::KeyId,
        "Path" => Field::Path,
        "Label" => Field::Label,
        "Tier" => Field::Tier,
        "DataType" => Field::DataType,
        _ => match k.strip_prefix("tag:") {
            Some(t) if !t.is_empty() => Field::Tag(t.to_owned()),
            _ => return None,
        },
    })
}

/// Checks `ParameterFilters`.
pub(super) fn parse(m: &Member<Vec<StringFilterInput>>, op: For) -> Result<Vec<Filter>> {
    let Some(inputs) = list(m, "ParameterFilters")? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Filter> = Vec::new();
    for (n, f) in inputs.iter().enumerate() {
        let k = f.key.required("Key", 132)?;
        let Some(key) = field(k) else {
            return Err(KmsError::validation(format!(
                "Value '{k}' at 'parameterFilters.{}.member.key' failed to satisfy constraint: Member must satisfy regular expression pattern: tag:.+|Name|Type|KeyId|Path|Label|Tier|DataType",
                n + 1
            )));
        };
        let allowed = match op {
            For::Path => matches!(key, Field::Type | Field::KeyId | Field::Label),
            For::Describe => key != Field::Label,
        };
        if !allowed {
            return Err(SsmError::InvalidFilterKey(format!(
                "The following filter key is not valid: {k}."
            ))
            .into());
        }
        if out.iter().any(|o| o.key == key) {
            return Err(SsmError::InvalidFilterKey(format!(
                "The following filter is duplicated in the request: {k}. A request can contain only one occurrence of a specific filter."
            ))
            .into());
        }
        let option = match f.option.text("Option")? {
            None if key == Field::Path => Opt::OneLevel,
            None => Opt::Equals,
            Some(o) => {
                let opt = match o {
                    "Equals" => Some(Opt::Equals),
                    "BeginsWith" => Some(Opt::BeginsWith),
                    "Contains" => Some(Opt::Contains),
                    "Recursive" => Some(Opt::Recursive),
                    "OneLevel" => Some(Opt::OneLevel),
                    _ => None,
                };
                let valid = match (&key, opt) {
                    (Field::Path, Some(Opt::Recursive | Opt::OneLevel)) => true,
                    (Field::Path, _) => false,
                    (Field::Label, Some(Opt::Equals)) => true,
                    (Field::Name, Some(Opt::Contains)) => op == For::Describe,
                    (Field::Label, _) => false,
                    (_, Some(Opt::Equals | Opt::BeginsWith)) => true,
                    _ => false,
                };
                match opt {
                    Some(o) if valid => o,
                    _ => {
                        let valid_options = match key {
                            Field::Path => "[Recursive, OneLevel]",
                            Field::Label => "[Equals]",
                            _ => "[BeginsWith, Equals]",
                        };
                        return Err(SsmError::InvalidFilterOption(format!(
                            "The following filter option is not valid: {o}. Valid options include: {valid_options}."
                        ))
                        .into());
                    }
                }
            }
        };
        let vals = list(&f.values, "Values")?.cloned().unwrap_or_default();
        if vals.len() > 50
            || vals
                .iter()
                .any(|v| v.is_empty() || v.chars().count() > 1024)
        {
            return Err(KmsError::validation(format!(
                "Value at 'parameterFilters.{}.member.values' failed to satisfy constraint: Member must have length less than or equal to 50, each value of length between 1 and 1024",
                n + 1
            )));
        }
        if vals.is_empty() && !matches!(key, Field::Tag(_)) {
            return Err(SsmError::InvalidFilterValue(format!(
                "The following filter values are missing : null for filter key {k}."
            ))
            .into());
        }
        check_values(&key, &vals)?;
        out.push(Filter {
            key,
            option,
            values: vals,
        });
    }
    Ok(out)
}

fn check_values(key: &Field, vals: &[String]) -> Result<()> {
    let bad = |v: &str, valid: &str| -> KmsError {
        SsmError::InvalidFilterValue(format!(
            "The following filter value is not valid: {v}. Valid values include: {valid}."
        ))
        .into()
    };
    for v in vals {
        match key {
            Field::Type if values::parameter_type(v).is_none() => {
                return Err(bad(v, "[String, StringList, SecureString]"));
            }
            Field::Tier
                if !["Standard", "Advanced", "Intelligent-Tiering"].contains(&v.as_str()) =>
            {
                return Err(bad(v, "[Standard, Advanced, Intelligent-Tiering]"));
            }
            Field::Path if names::check_path(v).is_err() => {
                return Err(bad(v, "a path beginning with a forward slash"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks the older `Filters` (keys Name, Type, KeyId) as the equivalent `ParameterFilters`:
/// Name begins with, Type and KeyId equal.
pub(super) fn parse_old(m: &Member<Vec<FilterInput>>) -> Result<Vec<Filter>> {
    let Some(inputs) = list(m, "Filters")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (n, f) in inputs.iter().enumerate() {
        let k = f.key.one_of("Key", &["Name", "Type", "KeyId"])?.ok_or_else(|| {
            KmsError::validation(format!(
                "Value null at 'filters.{}.member.key' failed to satisfy constraint: Member must not be null",
                n + 1
            ))
        })?;
        let vals = list(&f.values, "Values")?.cloned().unwrap_or_default();
        if vals.is_empty()
            || vals.len() > 50
            || vals
                .iter()
                .any(|v| v.is_empty() || v.chars().count() > 1024)
        {
            return Err(KmsError::validation(format!(
                "Value at 'filters.{}.member.values' failed to satisfy constraint: Member must have length between 1 and 50, each value of length between 1 and 1024",
                n + 1
            )));
        }
        let key = field(k).unwrap_or(Field::Name);
        check_values(&key, &vals)?;
        let option = if key == Field::Name {
            Opt::BeginsWith
        } else {
            Opt::Equals
        };
        out.push(Filter {
            key,
            option,
            values: vals,
        });
    }
    Ok(out)
}

impl Filter {
    /// The labels this filter selects, if it is a Label filter.
    pub(super) fn labels(&self) -> Option<&[String]> {
        (self.key == Field::Label).then_some(self.values.as_slice())
    }

    /// Whether version `v` of `p` passes (a Label filter passes every version: the caller
    /// picks the labelled one with [`Filter::labels`]).
    pub(super) fn matches(&self, p: &Parameter, v: &ParameterVersion) -> bool {
        let text = |what: &str| self.compare(what);
        match &self.key {
            Field::Name => {
                let name = names::rooted(&p.body.name);
                if self.option == Opt::Contains {
                    self.values.iter().any(|x| p.body.name.contains(x.as_str()))
                } else {
                    self.values.iter().any(|x| {
                        let x = names::rooted(x);
                        match self.option {
                            Opt::BeginsWith => name.starts_with(&x),
                            _ => name == x,
                        }
                    })
                }
            }
            Field::Type => text(v.kind.as_str()),
            Field::KeyId => {
                let arn = v.key_arn.as_deref().unwrap_or_default();
                let id = arn.rsplit('/').next().unwrap_or_default();
                [v.key_id.as_deref().unwrap_or_default(), arn, id]
                    .iter()
                    .any(|k| !k.is_empty() && text(k))
            }
            Field::Tier => text(if v.tier.is_empty() {
                "Standard"
            } else {
                &v.tier
            }),
            Field::DataType => text(if v.data_type.is_empty() {
                "text"
            } else {
                &v.data_type
            }),
            Field::Label => true,
            Field::Path => self.values.iter().any(|path| {
                names::check_path(path).is_ok_and(|path| {
                    names::under(&p.body.name, &path, self.option == Opt::Recursive)
                })
            }),
            Field::Tag(t) => p
                .body
                .tags
                .iter()
                .any(|(k, val)| k == t && (self.values.is_empty() || self.compare(val))),
        }
    }

    fn compare(&self, what: &str) -> bool {
        self.values.iter().any(|x| match self.option {
            Opt::BeginsWith => what.starts_with(x.as_str()),
            Opt::Contains => what.contains(x.as_str()),
            _ => what == x,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::input::Body;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, rename_all = "PascalCase")]
    struct In {
        parameter_filters: Member<Vec<StringFilterInput>>,
    }

    fn filters(v: serde_json::Value, op: For) -> Result<Vec<Filter>> {
        let i: In = Body::parse(json!({"ParameterFilters": v}).to_string().as_bytes())
            .unwrap()
            .decode()
            .unwrap();
        parse(&i.parameter_filters, op)
    }

    fn code(r: Result<Vec<Filter>>) -> &'static str {
        r.unwrap_err().aws_name()
    }

    #[test]
    fn keys_options_and_values_are_checked_in_aws_order() {
        assert!(filters(json!([{"Key": "Type", "Values": ["String"]}]), For::Path).is_ok());
        assert_eq!(
            code(filters(
                json!([{"Key": "Name", "Values": ["x"]}]),
                For::Path
            )),
            "InvalidFilterKey"
        );
        assert_eq!(
            code(filters(
                json!([{"Key": "Label", "Values": ["x"]}]),
                For::Describe
            )),
            "InvalidFilterKey"
        );
        assert_eq!(
            code(filters(
                json!([{"Key": "Bogus", "Values": ["x"]}]),
                For::Describe
            )),
            "ValidationException"
        );
        assert_eq!(
            code(filters(
                json!([{"Key": "Type", "Values": ["String"]}, {"Key": "Type", "Values": ["String"]}]),
                For::Describe
            )),
            "InvalidFilterKey"
        );
        assert_eq!(
            code(filters(
                json!([{"Key": "Path", "Option": "Equals", "Values": ["/a"]}]),
                For::Describe
            )),
            "InvalidFilterOption"
        );
        assert_eq!(
            code(filters(
                json!([{"Key": "Label", "Option": "BeginsWith", "Values": ["a"]}]),
                For::Path
            )),
            "InvalidFilterOption"
        );
        assert_eq!(
            code(filters(
                json!([{"Key": "Type", "Values": ["Nope"]}]),
                For::Describe
            )),
            "InvalidFilterValue"
        );
        assert_eq!(
            code(filters(json!([{"Key": "Type"}]), For::Describe)),
            "InvalidFilterValue"
        );
        assert!(filters(json!([{"Key": "tag:env"}]), For::Describe).is_ok());
        assert_eq!(
            code(filters(json!([1]), For::Describe)),
            "SerializationException"
        );
    }
}
