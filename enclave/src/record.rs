//! TEMPORARY shim (replaced by the zeroizing parser).
#![allow(missing_docs)]
use zeroize::Zeroizing;
pub struct Text(Zeroizing<String>);
impl Text {
    pub fn new(s: &str) -> Self {
        Self(Zeroizing::new(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
pub struct Number {
    text: Text,
    value: f64,
}
impl Number {
    pub fn text(&self) -> &str {
        self.text.as_str()
    }
    pub fn value(&self) -> f64 {
        self.value
    }
}
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(Text),
    Nested(Text),
}
pub struct Field {
    pub name: Text,
    pub value: Value,
}
pub struct Record {
    fields: Vec<Field>,
}
impl Record {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|f| f.name.as_str() == name)
            .map(|f| &f.value)
    }
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub &'static str);
pub fn parse(line: &[u8]) -> Result<Record, RecordError> {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|_| RecordError("bad json"))?;
    let serde_json::Value::Object(m) = v else {
        return Err(RecordError("not a JSON object"));
    };
    Ok(Record {
        fields: m
            .into_iter()
            .map(|(k, v)| Field {
                name: Text::new(&k),
                value: match v {
                    serde_json::Value::Null => Value::Null,
                    serde_json::Value::Bool(b) => Value::Bool(b),
                    serde_json::Value::Number(n) => Value::Number(Number {
                        text: Text::new(&n.to_string()),
                        value: n.as_f64().unwrap_or(0.0),
                    }),
                    serde_json::Value::String(s) => Value::String(Text::new(&s)),
                    other => Value::Nested(Text::new(&other.to_string())),
                },
            })
            .collect(),
    })
}
pub fn lines(plain: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    plain
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, l)| (i + 1, l))
}
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend(serde_json::to_string(s).unwrap_or_default().as_bytes())
}
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend(b"null"),
        Value::Bool(b) => out.extend(if *b { &b"true"[..] } else { &b"false"[..] }),
        Value::Number(n) => out.extend(n.text().as_bytes()),
        Value::String(t) => write_string(out, t.as_str()),
        Value::Nested(t) => out.extend(t.as_str().as_bytes()),
    }
}
