//! GetRandomPassword: a password drawn from the operating system's CSPRNG with AWS's character
//! classes (lower case, upper case, digits, the punctuation `!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~`,
//! optionally the space), `ExcludeCharacters` removed, and by default at least one character of
//! every class included. Each character is drawn without modulo bias.

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result, SecretsError};
use crate::input::Member;
use crate::ops::via::ViaCall;

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// GetRandomPassword's input.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct PasswordInput {
    password_length: Member<i64>,
    exclude_characters: Member<String>,
    exclude_numbers: Member<bool>,
    exclude_punctuation: Member<bool>,
    exclude_uppercase: Member<bool>,
    exclude_lowercase: Member<bool>,
    include_space: Member<bool>,
    require_each_included_type: Member<bool>,
}

/// A uniform index below `n` (n > 0).
fn index(rng: &SystemRandom, n: usize) -> Result<usize> {
    let n = u32::try_from(n).map_err(|_| KmsError::Internal("too many characters".into()))?;
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b).map_err(|_| KmsError::no_randomness())?;
        let v = u32::from_be_bytes(b);
        if v < zone {
            return Ok((v % n) as usize);
        }
    }
}

/// The character classes left after the exclusions.
fn classes(i: &PasswordInput) -> Result<Vec<Vec<char>>> {
    let excluded: Vec<char> = i
        .exclude_characters
        .text("ExcludeCharacters")?
        .unwrap_or_default()
        .chars()
        .collect();
    if excluded.len() > 4096 {
        return Err(KmsError::validation(
            "Value at 'excludeCharacters' failed to satisfy constraint: Member must have length less than or equal to 4096",
        ));
    }
    let mut out = Vec::new();
    let mut add = |excluded_class: bool, chars: &str| {
        if !excluded_class {
            let c: Vec<char> = chars.chars().filter(|c| !excluded.contains(c)).collect();
            if !c.is_empty() {
                out.push(c);
            }
        }
    };
    add(
        i.exclude_lowercase.flag("ExcludeLowercase")?,
        "abcdefghijklmnopqrstuvwxyz",
    );
    add(
        i.exclude_uppercase.flag("ExcludeUppercase")?,
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    );
    add(i.exclude_numbers.flag("ExcludeNumbers")?, "0123456789");
    add(
        i.exclude_punctuation.flag("ExcludePunctuation")?,
        PUNCTUATION,
    );
    add(!i.include_space.flag("IncludeSpace")?, " ");
    Ok(out)
}

/// A password of `len` characters from `classes`, one of each class first when `each`.
fn generate(classes: &[Vec<char>], len: usize, each: bool) -> Result<Zeroizing<String>> {
    let rng = SystemRandom::new();
    let all: Vec<char> = classes.iter().flatten().copied().collect();
    let mut chars: Zeroizing<Vec<char>> = Zeroizing::new(Vec::with_capacity(len));
    if each {
        for c in classes {
            chars.push(c[index(&rng, c.len())?]);
        }
    }
    while chars.len() < len {
        chars.push(all[index(&rng, all.len())?]);
    }
    // Fisher-Yates, so the required characters sit anywhere.
    for k in (1..chars.len()).rev() {
        let j = index(&rng, k + 1)?;
        chars.swap(k, j);
    }
    Ok(Zeroizing::new(chars.iter().collect()))
}

pub(crate) fn get_random_password(call: ViaCall<'_>) -> Result<Value> {
    let i: PasswordInput = call.input()?;
    let len = i
        .password_length
        .int_in("PasswordLength", 1, 4096)?
        .unwrap_or(32);
    let len = usize::try_from(len).unwrap_or(32);
    let classes = classes(&i)?;
    // The default is to require every included type.
    let each = match &i.require_each_included_type {
        Member::Absent => true,
        m => m.flag("RequireEachIncludedType")?,
    };
    if classes.is_empty() {
        return Err(SecretsError::InvalidParameter(
            "The password cannot be generated: every character is excluded.".into(),
        )
        .into());
    }
    if each && classes.len() > len {
        return Err(SecretsError::InvalidParameter(format!(
            "A password of {len} characters cannot include one of each of the {} included types.",
            classes.len()
        ))
        .into());
    }
    let password = generate(&classes, len, each)?;
    Ok(json!({"RandomPassword": password.as_str()}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Body;

    fn input(v: Value) -> PasswordInput {
        Body::parse(v.to_string().as_bytes())
            .unwrap()
            .decode()
            .unwrap()
    }

    #[test]
    fn passwords_honour_the_classes_and_exclusions() {
        let i = input(json!({"ExcludeCharacters": "abc0", "ExcludePunctuation": true}));
        let cs = classes(&i).unwrap();
        assert_eq!(cs.len(), 3);
        for _ in 0..50 {
            let p = generate(&cs, 8, true).unwrap();
            assert_eq!(p.chars().count(), 8);
            assert!(
                p.chars()
                    .all(|c| c.is_ascii_alphanumeric() && !"abc0".contains(c))
            );
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
        }
        let only_space = input(json!({"ExcludeLowercase": true, "ExcludeUppercase": true,
            "ExcludeNumbers": true, "ExcludePunctuation": true, "IncludeSpace": true}));
        assert_eq!(
            generate(&classes(&only_space).unwrap(), 3, true)
                .unwrap()
                .as_str(),
            "   "
        );
        let a = generate(&classes(&input(json!({}))).unwrap(), 32, true).unwrap();
        let b = generate(&classes(&input(json!({}))).unwrap(), 32, true).unwrap();
        assert_ne!(a, b);
        assert_eq!(classes(&input(json!({}))).unwrap().len(), 4);
    }

    #[test]
    fn indices_are_in_range() {
        let rng = SystemRandom::new();
        for n in [1, 2, 3, 94, 4096] {
            for _ in 0..100 {
                assert!(index(&rng, n).unwrap() < n);
            }
        }
    }
}
