//! `stats`: a count, and the policy's aggregates of the numeric fields it names, optionally
//! grouped by a field it allows. Only aggregates of at least k records leave the enclave.
//!
//! - A group's label is the grouping field's scalar value (string, number as written, boolean).
//!   A record whose value is missing, null, an object or an array has no label: it goes to the
//!   `other` group, as do the records of groups smaller than k (or they are all left out, as the
//!   policy says). `other` is shown only if it too reaches k.
//! - A field's aggregates are shown only when at least k records of the group have it as a
//!   number, so no aggregate is one record's value in disguise (min and max always are one
//!   record's value: the policy must name them to emit them).
//! - Labels seen while counting are secrets until their group reaches k: they are held in
//!   zeroizing memory, and the number of distinct groups is bounded: a job past it fails at its
//!   end with `ENC-LIMIT` (one bit: not which record brought the extra label).

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};
use zeroize::Zeroizing;

use crate::error::EnclaveError;
use crate::policy::{Aggregate, SmallGroups, StatsPlan};
use crate::record::{Record, Value};

/// A group label: record text, zeroized when dropped.
#[derive(Clone, PartialEq, Eq)]
struct Label(Zeroizing<String>);

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Label {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_str().cmp(other.0.as_str())
    }
}

impl std::fmt::Debug for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<label>")
    }
}

#[derive(Debug, Clone, Copy)]
struct Field {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Field {
    fn default() -> Self {
        Self {
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Field {
    fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn merge(&mut self, o: &Field) {
        self.n += o.n;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// One group's running aggregates; `fields` follows the plan's field order.
#[derive(Debug, Clone, Default)]
struct Group {
    count: u64,
    fields: Vec<Field>,
}

impl Group {
    fn merge(&mut self, o: &Group) {
        self.count += o.count;
        if self.fields.len() < o.fields.len() {
            self.fields.resize(o.fields.len(), Field::default());
        }
        for (m, f) in self.fields.iter_mut().zip(&o.fields) {
            m.merge(f);
        }
    }
}

/// The running state of a stats job (or of one message, merged once it is whole).
#[derive(Debug, Clone)]
pub struct Stats {
    plan: StatsPlan,
    groups: BTreeMap<Label, Group>,
    unlabeled: Group,
    /// A label arrived past `max_groups`: the job fails at its end (failing at once would say
    /// which record brought a new label, and so which ones share one).
    overflow: bool,
}

/// A record's label for `field`: only scalar values.
fn label(record: &Record, field: &str) -> Option<Label> {
    let text = match record.get(field)? {
        Value::String(t) => t.as_str(),
        Value::Number(n) => n.text(),
        Value::Bool(true) => "true",
        Value::Bool(false) => "false",
        Value::Null | Value::Nested(_) => return None,
    };
    let mut s = Zeroizing::new(String::with_capacity(text.len()));
    s.push_str(text);
    Some(Label(s))
}

impl Stats {
    /// An empty aggregation for `plan`.
    pub fn new(plan: StatsPlan) -> Self {
        Self {
            plan,
            groups: BTreeMap::new(),
            unlabeled: Group::default(),
            overflow: false,
        }
    }

    /// An empty aggregation with the same plan (for one message).
    pub fn empty_like(&self) -> Self {
        Self::new(self.plan.clone())
    }

    fn too_many(&self) -> EnclaveError {
        EnclaveError::Limit(format!(
            "more than the policy's {} groups",
            self.plan.max_groups
        ))
    }

    /// Adds one record.
    pub fn add(&mut self, record: &Record) -> Result<(), EnclaveError> {
        let n_fields = self.plan.fields.len();
        let group = match &self.plan.group_by {
            None => &mut self.unlabeled,
            Some(by) => match label(record, by) {
                None => &mut self.unlabeled,
                Some(l) => {
                    if !self.groups.contains_key(&l) && self.groups.len() >= self.plan.max_groups {
                        self.overflow = true;
                        &mut self.unlabeled
                    } else {
                        self.groups.entry(l).or_default()
                    }
                }
            },
        };
        group.count += 1;
        if group.fields.len() < n_fields {
            group.fields.resize(n_fields, Field::default());
        }
        for (f, name) in group.fields.iter_mut().zip(&self.plan.fields) {
            if let Some(Value::Number(x)) = record.get(name) {
                f.add(x.value());
            }
        }
        Ok(())
    }

    /// Merges the aggregation of a message that was authenticated and parsed whole.
    pub fn merge(&mut self, other: Stats) -> Result<(), EnclaveError> {
        self.unlabeled.merge(&other.unlabeled);
        self.overflow |= other.overflow;
        for (l, g) in other.groups {
            if !self.groups.contains_key(&l) && self.groups.len() >= self.plan.max_groups {
                self.overflow = true;
                self.unlabeled.merge(&g);
            } else {
                self.groups.entry(l).or_default().merge(&g);
            }
        }
        Ok(())
    }

    fn fields_json(&self, g: &Group, shown: &[bool]) -> Map<String, Json> {
        let mut out = Map::new();
        for ((name, f), show) in self.plan.fields.iter().zip(&g.fields).zip(shown) {
            if !show {
                continue;
            }
            let mut a = Map::new();
            for agg in &self.plan.emit {
                let (key, v) = match agg {
                    Aggregate::Count => ("count", json!(f.n)),
                    Aggregate::Sum => ("sum", json!(f.sum)),
                    Aggregate::Mean => ("mean", json!(f.sum / f.n as f64)),
                    Aggregate::Min => ("min", json!(f.min)),
                    Aggregate::Max => ("max", json!(f.max)),
                };
                a.insert(key.into(), v);
            }
            out.insert(name.clone(), Json::Object(a));
        }
        out
    }

    fn row(&self, g: &Group, group: Option<Json>, shown: &[bool]) -> String {
        let mut row = Map::new();
        if let (Some(by), Some(label)) = (&self.plan.group_by, group) {
            row.insert("group_by".into(), json!(by));
            let other = label.is_null();
            row.insert("group".into(), label);
            if other {
                row.insert("other".into(), json!(true));
            }
        }
        row.insert("count".into(), json!(g.count));
        row.insert("fields".into(), Json::Object(self.fields_json(g, shown)));
        Json::Object(row).to_string()
    }

    /// The result rows: groups of at least k records, then `other` if the policy folds small
    /// groups and it reaches k. Nothing smaller than k is shown, and nothing smaller than k can
    /// be recovered by subtracting what is shown from a total (see [`secondary_suppression`]).
    pub fn rows(&self) -> Result<Vec<String>, EnclaveError> {
        if self.overflow {
            return Err(self.too_many());
        }
        let k = self.plan.k;
        // Candidate rows (label, group); `None` is the ungrouped row or `other`.
        let mut rows: Vec<(Option<&str>, Group)> = Vec::new();
        let mut hidden = Group::default();
        if self.plan.group_by.is_none() {
            if self.unlabeled.count >= k {
                rows.push((None, self.unlabeled.clone()));
            }
        } else {
            let mut shown: Vec<(&str, &Group)> = Vec::new();
            let mut other = self.unlabeled.clone();
            for (l, g) in &self.groups {
                if g.count >= k {
                    shown.push((l.0.as_str(), g));
                } else {
                    other.merge(g);
                }
            }
            // Secondary suppression of groups: the records left out must not be fewer than k,
            // or a total from another job minus the shown groups is their aggregate.
            while other.count > 0 && other.count < k {
                let Some(i) = (0..shown.len()).min_by_key(|i| shown[*i].1.count) else {
                    break;
                };
                other.merge(shown.remove(i).1);
            }
            rows.extend(shown.into_iter().map(|(l, g)| (Some(l), g.clone())));
            if self.plan.small_groups == SmallGroups::Other && other.count >= k {
                rows.push((None, other));
            } else {
                hidden = other;
            }
        }
        let shown = secondary_suppression(&rows, &hidden, self.plan.fields.len(), k);
        Ok(rows
            .iter()
            .zip(&shown)
            .map(|((label, g), show)| {
                let group = match label {
                    Some(l) => Some(json!(l)),
                    None if self.plan.group_by.is_some() => Some(Json::Null),
                    None => None,
                };
                self.row(g, group, show)
            })
            .collect())
    }
}

/// Which field aggregates each row may show: those over at least k values, less more of them
/// where needed so that, for every field, the values left out of every shown aggregate are none
/// or at least k (the smallest aggregates are withheld first). Without it, a field withheld in
/// one group is the job's total for that field (from an ungrouped job) minus the others.
fn secondary_suppression(
    rows: &[(Option<&str>, Group)],
    hidden: &Group,
    fields: usize,
    k: u64,
) -> Vec<Vec<bool>> {
    let n = |g: &Group, j: usize| g.fields.get(j).map_or(0, |f| f.n);
    let mut shown: Vec<Vec<bool>> = rows
        .iter()
        .map(|(_, g)| (0..fields).map(|j| n(g, j) >= k).collect())
        .collect();
    for j in 0..fields {
        let mut left_out: u64 = n(hidden, j)
            + rows
                .iter()
                .zip(&shown)
                .filter(|(_, s)| !s[j])
                .map(|((_, g), _)| n(g, j))
                .sum::<u64>();
        while left_out > 0 && left_out < k {
            let Some(i) = (0..rows.len())
                .filter(|i| shown[*i][j])
                .min_by_key(|i| n(&rows[*i].1, j))
            else {
                break;
            };
            shown[i][j] = false;
            left_out += n(&rows[i].1, j);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Budget;

    fn plan(k: u64, small: SmallGroups, emit: &[Aggregate]) -> StatsPlan {
        StatsPlan {
            group_by: Some("c".into()),
            fields: vec!["x".into()],
            emit: emit.to_vec(),
            k,
            small_groups: small,
            max_groups: 3,
            budget: Budget {
                jobs: 1,
                window_secs: 1,
            },
        }
    }

    fn add(s: &mut Stats, line: &str) -> Result<(), EnclaveError> {
        s.add(&crate::record::parse(line.as_bytes()).unwrap())
    }

    fn rows(s: &Stats) -> Vec<Json> {
        s.rows()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect()
    }

    #[test]
    fn groups_below_k_fold_into_other_and_nothing_below_k_is_shown() {
        let mut s = Stats::new(plan(
            2,
            SmallGroups::Other,
            &[Aggregate::Sum, Aggregate::Mean],
        ));
        for line in [
            r#"{"c":"a","x":1,"ssn":"123"}"#,
            r#"{"c":"a","x":3.5}"#,
            r#"{"c":"b","x":100}"#,
            r#"{"c":{"nested":"secret"},"x":7}"#,
        ] {
            add(&mut s, line).unwrap();
        }
        let r = rows(&s);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0]["group"], "a");
        assert_eq!(r[0]["count"], 2);
        assert_eq!(r[0]["fields"]["x"], json!({"sum": 4.5, "mean": 2.25}));
        assert_eq!(r[1]["group"], Json::Null);
        assert_eq!(r[1]["other"], true);
        assert_eq!(r[1]["count"], 2, "b and the nested label");
        let text = s.rows().unwrap().join("\n");
        for secret in ["\"b\"", "nested", "secret", "123", "ssn"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn suppression_fields_below_k_and_the_group_bound() {
        let mut s = Stats::new(plan(2, SmallGroups::Suppress, &[Aggregate::Max]));
        add(&mut s, r#"{"c":"a","x":1}"#).unwrap();
        add(&mut s, r#"{"c":"a"}"#).unwrap();
        add(&mut s, r#"{"c":"b","x":5}"#).unwrap();
        assert!(
            s.rows().unwrap().is_empty(),
            "b alone is below k: a is withheld with it"
        );
        add(&mut s, r#"{"c":"c","x":6}"#).unwrap();
        let r = rows(&s);
        assert_eq!(r.len(), 1, "b and c suppressed (2 records), no other");
        assert_eq!(r[0]["count"], 2);
        assert_eq!(r[0]["fields"], json!({}), "x is in only one record of a");
        // Past max_groups the job goes on and fails at its end, whichever record overflowed.
        let mut m = s.empty_like();
        add(&mut m, r#"{"c":"f"}"#).unwrap();
        s.merge(m).unwrap();
        assert!(matches!(s.rows(), Err(EnclaveError::Limit(_))));
        add(&mut s, r#"{"c":"d"}"#).unwrap();
        assert!(matches!(s.rows(), Err(EnclaveError::Limit(_))));
    }

    #[test]
    fn what_is_left_out_is_never_fewer_than_k_so_a_total_cannot_reveal_it() {
        // k = 3: a(3), b(4), c(1). c alone is below k: a, the smallest shown group, joins it.
        let mut s = Stats::new(plan(3, SmallGroups::Suppress, &[Aggregate::Sum]));
        for (c, x) in [
            ("a", 1),
            ("a", 2),
            ("a", 3),
            ("b", 10),
            ("b", 20),
            ("b", 30),
            ("b", 40),
            ("c", 500),
        ] {
            add(&mut s, &format!(r#"{{"c":"{c}","x":{x}}}"#)).unwrap();
        }
        let r = rows(&s);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0]["group"], "b");
        // A field withheld in one group makes the smallest other aggregate of it withheld too.
        let mut s = Stats::new(plan(3, SmallGroups::Other, &[Aggregate::Sum]));
        for (c, x) in [
            ("a", Some(1)),
            ("a", Some(2)),
            ("a", Some(3)),
            ("a", Some(4)),
            ("b", Some(10)),
            ("b", None),
            ("b", None),
            ("d", Some(7)),
            ("d", Some(8)),
            ("d", Some(9)),
        ] {
            let x = x.map_or(String::new(), |x| format!(r#","x":{x}"#));
            add(&mut s, &format!(r#"{{"c":"{c}"{x}}}"#)).unwrap();
        }
        let r = rows(&s);
        assert_eq!(r.len(), 3, "{r:?}");
        let fields = |g: &str| r.iter().find(|x| x["group"] == g).unwrap()["fields"].clone();
        assert_eq!(fields("b"), json!({}), "b has one x: withheld");
        assert_eq!(
            fields("d"),
            json!({}),
            "d (3 values) withheld with it: 4 left out"
        );
        assert_eq!(fields("a"), json!({"x": {"sum": 10.0}}));
    }

    #[test]
    fn ungrouped_needs_k_records() {
        let mut p = plan(3, SmallGroups::Other, &[Aggregate::Count]);
        p.group_by = None;
        let mut s = Stats::new(p);
        add(&mut s, r#"{"x":1}"#).unwrap();
        add(&mut s, r#"{"x":2}"#).unwrap();
        assert!(s.rows().unwrap().is_empty());
        add(&mut s, r#"{"x":3}"#).unwrap();
        assert_eq!(
            rows(&s),
            [json!({"count": 3, "fields": {"x": {"count": 3}}})]
        );
    }
}
