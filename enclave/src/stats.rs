//! The `stats` operation: count, and sum/min/max/mean of every numeric field, optionally grouped
//! by a field's value. Only aggregates leave the enclave.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Default)]
struct Field {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// Aggregates for one group.
#[derive(Debug, Clone, Default)]
struct Group {
    count: u64,
    fields: BTreeMap<String, Field>,
}

/// The running state of a stats job.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    group_by: Option<String>,
    groups: BTreeMap<String, Group>,
}

impl Stats {
    /// An empty aggregation, grouped by `group_by` if given.
    pub fn new(group_by: Option<String>) -> Self {
        Self {
            group_by,
            groups: BTreeMap::new(),
        }
    }

    /// Adds one record (a JSON object).
    pub fn add(&mut self, record: &Map<String, Value>) {
        let key = match &self.group_by {
            None => String::new(),
            Some(f) => match record.get(f) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "null".into(),
            },
        };
        let g = self.groups.entry(key).or_default();
        g.count += 1;
        for (name, v) in record {
            if let Some(x) = v.as_f64() {
                let f = g.fields.entry(name.clone()).or_insert(Field {
                    n: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                });
                f.n += 1;
                f.sum += x;
                f.min = f.min.min(x);
                f.max = f.max.max(x);
            }
        }
    }

    /// Merges another aggregation (of a fully authenticated message) into this one.
    pub fn merge(&mut self, other: Stats) {
        for (k, g) in other.groups {
            let mine = self.groups.entry(k).or_default();
            mine.count += g.count;
            for (name, f) in g.fields {
                let m = mine.fields.entry(name).or_insert(Field {
                    n: 0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                });
                m.n += f.n;
                m.sum += f.sum;
                m.min = m.min.min(f.min);
                m.max = m.max.max(f.max);
            }
        }
    }

    /// Result rows, one JSON object per group.
    pub fn rows(&self) -> Vec<String> {
        self.groups
            .iter()
            .map(|(k, g)| {
                let fields: Map<String, Value> = g
                    .fields
                    .iter()
                    .map(|(name, f)| (name.clone(), json!({"count": f.n, "sum": f.sum, "min": f.min, "max": f.max, "mean": f.sum / f.n as f64})))
                    .collect();
                let mut row = json!({"count": g.count, "fields": fields});
                if let Some(by) = &self.group_by {
                    row["group_by"] = json!(by);
                    row["group"] = json!(k);
                }
                row.to_string()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn aggregates_and_groups() {
        let mut s = Stats::new(Some("c".into()));
        s.add(&rec(json!({"c": "a", "x": 1, "y": "text"})));
        s.add(&rec(json!({"c": "a", "x": 3.5})));
        let mut t = Stats::new(Some("c".into()));
        t.add(&rec(json!({"c": "b", "x": -2})));
        t.add(&rec(json!({"x": 10})));
        s.merge(t);
        let rows: Vec<Value> = s
            .rows()
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        assert_eq!(rows.len(), 3);
        let a = rows.iter().find(|r| r["group"] == "a").unwrap();
        assert_eq!(a["count"], 2);
        assert_eq!(
            a["fields"]["x"],
            json!({"count": 2, "sum": 4.5, "min": 1.0, "max": 3.5, "mean": 2.25})
        );
        assert!(a["fields"].get("y").is_none());
        assert!(rows.iter().any(|r| r["group"] == "null" && r["count"] == 1));
    }
}
