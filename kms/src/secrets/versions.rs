//! Versions and staging labels, as Secrets Manager keeps them: each label sits on one version
//! at a time (the secret's `stages` map, label → version id), a new value takes `AWSCURRENT`
//! unless told otherwise, the version that loses `AWSCURRENT` gets `AWSPREVIOUS`, a version
//! with no label is deprecated, and at most 100 versions are kept (the oldest deprecated ones
//! go first). Pure functions over the metadata, so the rules are tested without a server.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{KmsError, Result, SecretsError};

/// The label of the version reads get by default.
pub(crate) const CURRENT: &str = "AWSCURRENT";
/// The label of the version `AWSCURRENT` last left.
pub(crate) const PREVIOUS: &str = "AWSPREVIOUS";
/// Most versions a secret keeps.
pub(crate) const MAX_VERSIONS: usize = 100;
/// Most labels on one version.
pub(crate) const MAX_LABELS: usize = 20;

/// The labels on version `v`, sorted.
pub(crate) fn labels_of(stages: &BTreeMap<String, String>, v: &str) -> Vec<String> {
    stages
        .iter()
        .filter(|(_, id)| id.as_str() == v)
        .map(|(l, _)| l.clone())
        .collect()
}

/// Puts `label` on version `to`, moving it from where it was; `AWSCURRENT` leaving a version
/// leaves `AWSPREVIOUS` there.
fn put_label(stages: &mut BTreeMap<String, String>, label: &str, to: &str) {
    let from = stages.insert(label.to_owned(), to.to_owned());
    if label == CURRENT
        && let Some(from) = from
        && from != to
    {
        stages.insert(PREVIOUS.to_owned(), from);
    }
}

/// Attaches `labels` to the new version `v` (PutSecretValue's `VersionStages`; `AWSCURRENT`
/// when none are given, and always for a secret's first version).
pub(crate) fn attach(stages: &mut BTreeMap<String, String>, v: &str, labels: Option<&[String]>) {
    let first = !stages.contains_key(CURRENT);
    match labels {
        Some(ls) => {
            for l in ls {
                put_label(stages, l, v);
            }
            if first {
                put_label(stages, CURRENT, v);
            }
        }
        None => put_label(stages, CURRENT, v),
    }
}

/// Checks `VersionStages`: 1..20 labels of 1..256 characters.
pub(crate) fn check_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() || labels.len() > MAX_LABELS {
        return Err(KmsError::validation(format!(
            "Value at 'versionStages' failed to satisfy constraint: Member must have length between 1 and {MAX_LABELS}"
        )));
    }
    for l in labels {
        check_label(l, "versionStages.member")?;
    }
    Ok(())
}

/// Checks one label: 1..256 characters.
pub(crate) fn check_label(l: &str, at: &str) -> Result<()> {
    if l.is_empty() || l.chars().count() > 256 {
        return Err(KmsError::validation(format!(
            "Value '{l}' at '{at}' failed to satisfy constraint: Member must have length between 1 and 256"
        )));
    }
    Ok(())
}

fn invalid(m: String) -> KmsError {
    SecretsError::InvalidParameter(m).into()
}

/// UpdateSecretVersionStage: moves `label` to `move_to`, removing it from `remove_from`, which
/// must name the version holding it when it is held elsewhere; without `move_to`, removes it.
/// `AWSCURRENT` can only move (a secret with a value always has a current version), and when
/// it moves the version it leaves gets `AWSPREVIOUS`.
pub(crate) fn update_stage(
    stages: &mut BTreeMap<String, String>,
    versions: &BTreeSet<String>,
    label: &str,
    remove_from: Option<&str>,
    move_to: Option<&str>,
) -> Result<()> {
    let held_by = stages.get(label).cloned();
    if let Some(r) = remove_from {
        if !versions.contains(r) {
            return Err(invalid(format!("Not a valid version: {r}")));
        }
        if held_by.as_deref() != Some(r) {
            return Err(invalid(format!(
                "The staging label {label} is not attached to version {r}"
            )));
        }
    }
    match move_to {
        Some(to) => {
            if !versions.contains(to) {
                return Err(invalid(format!("Not a valid version: {to}")));
            }
            if let Some(h) = &held_by
                && h != to
                && remove_from != Some(h.as_str())
            {
                return Err(invalid(format!(
                    "The parameter RemoveFromVersionId can't be empty. Staging label {label} is currently attached to version {h}, so you must explicitly reference that version in RemoveFromVersionId."
                )));
            }
            if held_by.as_deref() != Some(to) && labels_of(stages, to).len() >= MAX_LABELS {
                return Err(SecretsError::LimitExceeded(format!(
                    "Version {to} already has {MAX_LABELS} staging labels"
                ))
                .into());
            }
            put_label(stages, label, to);
        }
        None => {
            if remove_from.is_none() {
                return Err(invalid(
                    "You must specify MoveToVersionId, RemoveFromVersionId, or both".into(),
                ));
            }
            if label == CURRENT {
                return Err(SecretsError::InvalidRequest(format!(
                    "You can't remove the staging label {CURRENT}: move it to another version with MoveToVersionId"
                ))
                .into());
            }
            stages.remove(label);
        }
    }
    Ok(())
}

/// The versions to drop so that at most [`MAX_VERSIONS`] remain: the oldest deprecated ones
/// (`created` gives each version's creation time). Empty when there are too many labelled
/// versions to get under the limit (the caller refuses the write).
pub(crate) fn prune(
    stages: &BTreeMap<String, String>,
    created: &BTreeMap<String, i64>,
) -> Option<Vec<String>> {
    let excess = created.len().saturating_sub(MAX_VERSIONS);
    if excess == 0 {
        return Some(Vec::new());
    }
    let labelled: BTreeSet<&String> = stages.values().collect();
    let mut deprecated: Vec<(&i64, &String)> = created
        .iter()
        .filter(|(id, _)| !labelled.contains(id))
        .map(|(id, t)| (t, id))
        .collect();
    deprecated.sort();
    (deprecated.len() >= excess).then(|| {
        deprecated
            .into_iter()
            .take(excess)
            .map(|(_, id)| id.clone())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn new_values_take_current_and_leave_previous_behind() {
        let mut s = BTreeMap::new();
        attach(&mut s, "v1", None);
        assert_eq!(labels_of(&s, "v1"), [CURRENT]);
        attach(&mut s, "v2", None);
        assert_eq!(labels_of(&s, "v2"), [CURRENT]);
        assert_eq!(labels_of(&s, "v1"), [PREVIOUS]);
        attach(&mut s, "v3", None);
        assert!(labels_of(&s, "v1").is_empty(), "v1 is deprecated");
        assert_eq!(labels_of(&s, "v2"), [PREVIOUS]);
        // A pending version does not move AWSCURRENT.
        attach(&mut s, "v4", Some(&["AWSPENDING".to_owned()]));
        assert_eq!(labels_of(&s, "v4"), ["AWSPENDING"]);
        assert_eq!(labels_of(&s, "v3"), [CURRENT]);
        // A secret's first version is current whatever labels it is given.
        let mut first = BTreeMap::new();
        attach(&mut first, "a", Some(&["AWSPENDING".to_owned()]));
        assert_eq!(labels_of(&first, "a"), [CURRENT, "AWSPENDING"]);
        // One version per label.
        attach(
            &mut s,
            "v5",
            Some(&["AWSPENDING".to_owned(), CURRENT.to_owned()]),
        );
        assert_eq!(labels_of(&s, "v5"), [CURRENT, "AWSPENDING"]);
        assert!(labels_of(&s, "v4").is_empty());
        assert_eq!(labels_of(&s, "v3"), [PREVIOUS]);
    }

    #[test]
    fn labels_move_only_from_where_they_are() {
        let versions = set(&["v1", "v2", "v3"]);
        let mut s = BTreeMap::new();
        attach(&mut s, "v1", None);
        attach(&mut s, "v2", None);
        // AWSCURRENT is on v2: moving it needs RemoveFromVersionId = v2.
        let e = update_stage(&mut s, &versions, CURRENT, None, Some("v1")).unwrap_err();
        assert_eq!(e.aws_name(), "InvalidParameterException");
        let e = update_stage(&mut s, &versions, CURRENT, Some("v1"), Some("v1")).unwrap_err();
        assert_eq!(e.aws_name(), "InvalidParameterException");
        update_stage(&mut s, &versions, CURRENT, Some("v2"), Some("v1")).unwrap();
        assert_eq!(labels_of(&s, "v1"), [CURRENT]);
        assert_eq!(labels_of(&s, "v2"), [PREVIOUS]);
        // A new label needs no RemoveFromVersionId; removing one does.
        update_stage(&mut s, &versions, "blue", None, Some("v3")).unwrap();
        assert_eq!(labels_of(&s, "v3"), ["blue"]);
        update_stage(&mut s, &versions, "blue", Some("v3"), None).unwrap();
        assert!(labels_of(&s, "v3").is_empty());
        // AWSCURRENT cannot be removed, unknown versions are refused, and so is nothing to do.
        let e = update_stage(&mut s, &versions, CURRENT, Some("v1"), None).unwrap_err();
        assert_eq!(e.aws_name(), "InvalidRequestException");
        let e = update_stage(&mut s, &versions, "x", None, Some("nope")).unwrap_err();
        assert!(e.to_string().contains("Not a valid version"));
        let e = update_stage(&mut s, &versions, "x", None, None).unwrap_err();
        assert_eq!(e.aws_name(), "InvalidParameterException");
        // Moving a label onto the version holding it changes nothing.
        update_stage(&mut s, &versions, CURRENT, None, Some("v1")).unwrap();
        assert_eq!(labels_of(&s, "v1"), [CURRENT]);
        assert_eq!(labels_of(&s, "v2"), [PREVIOUS]);
    }

    #[test]
    fn a_version_holds_at_most_twenty_labels() {
        let versions = set(&["v1"]);
        let mut s = BTreeMap::new();
        attach(&mut s, "v1", None);
        for i in 1..MAX_LABELS {
            update_stage(&mut s, &versions, &format!("l{i}"), None, Some("v1")).unwrap();
        }
        let e = update_stage(&mut s, &versions, "one-more", None, Some("v1")).unwrap_err();
        assert_eq!(e.aws_name(), "LimitExceededException");
        assert!(check_labels(&vec!["a".to_owned(); 21]).is_err());
        assert!(check_labels(&[]).is_err());
        assert!(check_labels(&["x".repeat(257)]).is_err());
        check_labels(&["AWSPENDING".to_owned()]).unwrap();
    }

    #[test]
    fn pruning_drops_the_oldest_deprecated_versions() {
        let mut created = BTreeMap::new();
        let mut stages = BTreeMap::new();
        for i in 0..=MAX_VERSIONS {
            created.insert(format!("v{i:03}"), i as i64);
        }
        stages.insert(CURRENT.to_owned(), "v000".to_owned());
        // v000 is the oldest but labelled: v001 goes.
        assert_eq!(prune(&stages, &created).unwrap(), ["v001"]);
        created.remove("v100");
        assert!(prune(&stages, &created).unwrap().is_empty());
        // Every version labelled: nothing can go.
        let all: BTreeMap<String, i64> = (0..=MAX_VERSIONS).map(|i| (format!("v{i}"), 0)).collect();
        let labelled: BTreeMap<String, String> =
            all.keys().map(|v| (format!("l-{v}"), v.clone())).collect();
        assert!(prune(&labelled, &all).is_none());
    }
}
