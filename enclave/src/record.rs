//! One decrypted record: a strict, zeroizing parser for a single JSON-lines record.
//!
//! Records are the secrets the enclave exists to protect (names, card numbers, health data), so
//! every byte of record data this module keeps lives in a [`Zeroizing`] buffer allocated once at
//! its final size: no copy is left behind in memory freed un-zeroized when a `String` or `Vec`
//! grows. `serde_json` cannot promise that: it decodes escaped strings through a scratch `Vec`
//! that grows and is dropped without zeroizing, and its maps and vectors grow as they fill. So
//! records are parsed here, in two passes where it matters: a string's decoded length is measured
//! before it is decoded into a buffer of exactly that capacity, and an object's members are
//! counted before its fields are stored.
//!
//! What is accepted is RFC 8259 JSON, strictly, and nothing else: one object per line, with
//! optional JSON whitespace (space, tab, CR, LF) around it; valid UTF-8; strings with every
//! escape, `\uXXXX` included, surrogate pairs joined and a lone surrogate refused; numbers by the
//! grammar (no leading zeros, `+`, `.5`, `1.`, `NaN` or `Infinity`) whose value is a finite `f64`
//! (one that overflows is refused; one that underflows is 0); `true`, `false`, `null`. A member's
//! object or array value is validated (to a nesting depth of [`MAX_DEPTH`], the record itself
//! being depth 1) and kept as its raw text. A record has at most [`MAX_MEMBERS`] members, and no
//! two with the same name, so a policy check can never see one `"ssn"` while another is used.
//!
//! Errors ([`RecordError`]) carry only a static description: no snippet, value or offset of the
//! record. `Debug` of anything here prints `<redacted>` for record content. Not covered: copies in
//! registers and stack temporaries (a decoded code point, float parsing's digit buffer), and the
//! `out` buffers of [`write_string`] and [`write_value`], which belong to the caller.

use std::fmt;
use std::ops::Deref;

use zeroize::Zeroizing;

/// The deepest nesting accepted; the record object itself is depth 1.
pub const MAX_DEPTH: usize = 64;

/// The most members a record may have.
pub const MAX_MEMBERS: usize = 4096;

/// Text from a record: zeroized on drop, `Debug` prints `<redacted>`.
///
/// Its buffer is allocated with exactly the text's length and never grows.
#[derive(PartialEq, Eq)]
pub struct Text(Zeroizing<String>);

impl Text {
    /// A zeroizing copy of `s`, in a buffer of exactly `s.len()` bytes.
    pub fn new(s: &str) -> Self {
        let mut buf = Zeroizing::new(String::with_capacity(s.len()));
        buf.push_str(s);
        Self(buf)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Clone for Text {
    /// Another zeroizing buffer of exact size.
    fn clone(&self) -> Self {
        Self::new(self.as_str())
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A JSON number as written, with its value.
#[derive(Clone, PartialEq)]
pub struct Number {
    text: Text,
    value: f64,
}

impl Number {
    /// The number exactly as it appeared in the record (`1.50E+2`, `-0`).
    pub fn text(&self) -> &str {
        self.text.as_str()
    }

    /// Its value: the nearest `f64`, always finite (a number that overflows is refused).
    pub fn value(&self) -> f64 {
        self.value
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A member's value.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string, unescaped.
    String(Text),
    /// An object or array, kept as its raw JSON text exactly as it appeared (validated,
    /// depth-limited; whitespace inside it kept).
    Nested(Text),
}

impl fmt::Debug for Value {
    /// The kind of value only: even a `bool` is record content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Value::Null => "Null",
            Value::Bool(_) => "Bool(<redacted>)",
            Value::Number(_) => "Number(<redacted>)",
            Value::String(_) => "String(<redacted>)",
            Value::Nested(_) => "Nested(<redacted>)",
        })
    }
}

/// One member of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The member's name, unescaped.
    pub name: Text,
    /// Its value.
    pub value: Value,
}

/// One record: a JSON object's members in input order, names unique.
///
/// Dropping it zeroizes every name and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Allocated with exactly the member count (counted before parsing them), so it never grows:
    /// a `Field` holds only handles to zeroizing buffers, but also a number's `f64` and a
    /// `bool`, which a grown `Vec` would leave behind in freed memory.
    fields: Vec<Field>,
}

impl Record {
    /// The value of the member `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|f| f.name.as_str() == name)
            .map(|f| &f.value)
    }

    /// The members, in input order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the record is `{}`.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Why a line is not a record. Carries no record content (no snippets, no values, no byte
/// offsets): only a static description of what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub &'static str);

const E_UTF8: RecordError = RecordError("invalid UTF-8");
const E_NOT_OBJECT: RecordError = RecordError("not a JSON object");
const E_EOF: RecordError = RecordError("unexpected end of line");
const E_NAME: RecordError = RecordError("expected a member name");
const E_COLON: RecordError = RecordError("expected ':'");
const E_OBJECT_SEP: RecordError = RecordError("expected ',' or '}'");
const E_ARRAY_SEP: RecordError = RecordError("expected ',' or ']'");
const E_VALUE: RecordError = RecordError("expected a value");
const E_LITERAL: RecordError = RecordError("invalid literal");
const E_CONTROL: RecordError = RecordError("control character in string");
const E_ESCAPE: RecordError = RecordError("invalid escape");
const E_SURROGATE: RecordError = RecordError("lone surrogate");
const E_NUMBER: RecordError = RecordError("invalid number");
const E_RANGE: RecordError = RecordError("number out of range");
const E_DEPTH: RecordError = RecordError("nesting deeper than 64");
const E_MEMBERS: RecordError = RecordError("more than 4096 members");
const E_DUPLICATE: RecordError = RecordError("duplicate member name");
const E_TRAILING: RecordError = RecordError("trailing characters");
/// A consistency check between the two passes failed (never expected).
const E_INTERNAL: RecordError = RecordError("invalid JSON");

/// Parses one line (no trailing newline needed; surrounding JSON whitespace allowed) that must
/// hold exactly one JSON object.
pub fn parse(line: &[u8]) -> Result<Record, RecordError> {
    let text = std::str::from_utf8(line).map_err(|_| E_UTF8)?;
    let mut p = Parser {
        text,
        bytes: line,
        pos: 0,
    };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        return Err(E_NOT_OBJECT);
    }
    let mut fields = Vec::with_capacity(count_members(line, p.pos)?);
    p.pos += 1;
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            p.expect_peek(b'"', E_NAME)?;
            let name = p.decoded_string()?;
            p.skip_ws();
            p.consume(b':', E_COLON)?;
            p.skip_ws();
            let value = p.member_value()?;
            if fields.len() >= fields.capacity() {
                // count_members counts at least the members of any valid prefix: not reached.
                return Err(E_INTERNAL);
            }
            fields.push(Field { name, value });
            p.skip_ws();
            match p.peek() {
                Some(b',') => {
                    p.pos += 1;
                    p.skip_ws();
                }
                Some(b'}') => {
                    p.pos += 1;
                    break;
                }
                None => return Err(E_EOF),
                Some(_) => return Err(E_OBJECT_SEP),
            }
        }
    }
    p.skip_ws();
    if p.pos != line.len() {
        return Err(E_TRAILING);
    }
    check_unique(&fields)?;
    Ok(Record { fields })
}

/// The records of a decrypted batch: splits on `b'\n'`, skips lines that are empty or all JSON
/// whitespace, yields (1-based line number, line bytes).
pub fn lines(plain: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    // memchr finds the newlines with SIMD: on the record path this split costs about a tenth of
    // the AES-GCM it follows, where a byte-at-a-time split cost more than the decryption.
    let ends = memchr::memchr_iter(b'\n', plain).chain(std::iter::once(plain.len()));
    let mut start = 0;
    ends.enumerate()
        .map(move |(i, end)| {
            let line = plain.get(start..end).unwrap_or_default();
            start = end + 1;
            (i + 1, line)
        })
        .filter(|(_, line)| !line.iter().all(|&b| is_ws(b)))
}

/// Appends `s` as a JSON string: quoted, with `"`, `\` and control characters escaped (`\n`,
/// `\r`, `\t`, `\b`, `\f` in short form, the others as `\u00XX`).
///
/// `out` grows like any `Vec`: to keep record data out of freed memory, give it the capacity
/// it needs first ([`string_len`]).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(run..i).unwrap_or_default());
        run = i + 1;
        if short.is_empty() {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex_digit(b >> 4), hex_digit(b)]);
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
    out.push(b'"');
}

/// The number of bytes [`write_string`] appends for `s`.
pub fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Appends a value as JSON: numbers as their original text, `Nested` as its raw text.
///
/// `out` grows like any `Vec`: to keep record data out of freed memory, give it the capacity
/// it needs first ([`value_len`]).
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.text().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Nested(raw) => out.extend_from_slice(raw.as_bytes()),
    }
}

/// The number of bytes [`write_value`] appends for `v`.
pub fn value_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => n.text().len(),
        Value::String(s) => string_len(s),
        Value::Nested(raw) => raw.len(),
    }
}

/// The lowercase hex digit of the low four bits of `n`.
fn hex_digit(n: u8) -> u8 {
    let n = n & 0x0f;
    if n < 10 { b'0' + n } else { b'a' + (n - 10) }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// How many members the object opening at `open` has, for a `Vec` of exact capacity: its
/// top-level commas plus one, or 0 for `{}`. Exact for a valid object, and for any line at least
/// the number of members in its longest valid prefix (strings, brackets and commas are
/// recognized the same way a valid prefix is parsed), so storing the members never outgrows it.
fn count_members(bytes: &[u8], open: usize) -> Result<usize, RecordError> {
    let mut depth = 0usize;
    let mut commas = 0usize;
    let mut empty = true;
    let mut i = open;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                empty &= depth != 1;
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => {
                empty &= depth != 1;
                depth += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => commas += 1,
            b if is_ws(b) => {}
            _ => empty &= depth != 1,
        }
        i += 1;
    }
    let count = if empty && commas == 0 { 0 } else { commas + 1 };
    if count > MAX_MEMBERS {
        return Err(E_MEMBERS);
    }
    Ok(count)
}

/// Refuses two members with the same (unescaped) name.
fn check_unique(fields: &[Field]) -> Result<(), RecordError> {
    if fields.len() < 2 {
        return Ok(());
    }
    // Sorts a permutation rather than the names, so no name is copied; the permutation says how
    // the names order, so it is zeroized too (and sized exactly; `sort_unstable` is in place).
    let name = |i: usize| fields.get(i).map(|f| f.name.as_str());
    let mut order = Zeroizing::new(Vec::with_capacity(fields.len()));
    order.extend(0..fields.len());
    order.sort_unstable_by(|&a, &b| name(a).cmp(&name(b)));
    let duplicate = order.windows(2).any(|w| match w {
        [a, b] => name(*a) == name(*b),
        _ => false,
    });
    if duplicate { Err(E_DUPLICATE) } else { Ok(()) }
}

/// A cursor over one line already checked to be UTF-8 (`text` and `bytes` are the same line).
/// No `Debug`: it would print the record.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Fails with `err` (or end of line) unless the next byte is `b`; does not consume it.
    fn expect_peek(&self, b: u8, err: RecordError) -> Result<(), RecordError> {
        match self.peek() {
            Some(c) if c == b => Ok(()),
            None => Err(E_EOF),
            Some(_) => Err(err),
        }
    }

    /// Consumes the byte `b`, or fails with `err` (or end of line).
    fn consume(&mut self, b: u8, err: RecordError) -> Result<(), RecordError> {
        self.expect_peek(b, err)?;
        self.pos += 1;
        Ok(())
    }

    fn slice(&self, start: usize, end: usize) -> Result<&'a str, RecordError> {
        self.text.get(start..end).ok_or(E_INTERNAL)
    }

    /// A member's value, at `pos`.
    fn member_value(&mut self) -> Result<Value, RecordError> {
        Ok(match self.peek() {
            None => return Err(E_EOF),
            Some(b'"') => Value::String(self.decoded_string()?),
            Some(b'{' | b'[') => {
                let start = self.pos;
                self.container(2)?;
                Value::Nested(Text::new(self.slice(start, self.pos)?))
            }
            Some(b't') => {
                self.literal(b"true")?;
                Value::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Value::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Value::Null
            }
            Some(b'-' | b'0'..=b'9') => {
                let (text, value) = self.number()?;
                Value::Number(Number {
                    text: Text::new(text),
                    value,
                })
            }
            Some(_) => return Err(E_VALUE),
        })
    }

    /// Validates a value inside the container at depth `depth`, keeping nothing.
    fn skip_value(&mut self, depth: usize) -> Result<(), RecordError> {
        match self.peek() {
            None => Err(E_EOF),
            Some(b'"') => self.string(None).map(drop),
            Some(b'{' | b'[') => self.container(depth + 1),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(_) => Err(E_VALUE),
        }
    }

    /// Validates the object or array opening at `pos`, at nesting depth `depth`, and moves
    /// past it. Recursion is bounded by [`MAX_DEPTH`].
    fn container(&mut self, depth: usize) -> Result<(), RecordError> {
        if depth > MAX_DEPTH {
            return Err(E_DEPTH);
        }
        let is_object = self.peek() == Some(b'{');
        let (close, sep_err) = if is_object {
            (b'}', E_OBJECT_SEP)
        } else {
            (b']', E_ARRAY_SEP)
        };
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if is_object {
                self.expect_peek(b'"', E_NAME)?;
                self.string(None)?;
                self.skip_ws();
                self.consume(b':', E_COLON)?;
                self.skip_ws();
            }
            self.skip_value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(E_EOF),
                Some(_) => return Err(sep_err),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), RecordError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(E_LITERAL)
        }
    }

    /// Consumes ASCII digits, returning how many.
    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number by the JSON grammar, at `pos`: its text and finite value.
    fn number(&mut self) -> Result<(&'a str, f64), RecordError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(E_NUMBER);
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(E_NUMBER),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(E_NUMBER);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(E_NUMBER);
            }
        }
        let text = self.slice(start, self.pos)?;
        // The grammar checked above is a subset of what `f64::from_str` accepts; it rounds to
        // nearest, giving infinity on overflow and 0 on underflow.
        let value: f64 = text.parse().map_err(|_| E_NUMBER)?;
        if !value.is_finite() {
            return Err(E_RANGE);
        }
        Ok((text, value))
    }

    /// The string at `pos` decoded into a buffer of exactly its decoded length: a first pass
    /// validates it and measures, a second decodes.
    fn decoded_string(&mut self) -> Result<Text, RecordError> {
        let start = self.pos;
        let len = self.string(None)?;
        let end = self.pos;
        if len + 2 == end - start {
            // No escapes: the text between the quotes is the string.
            return Ok(Text::new(self.slice(start + 1, end - 1)?));
        }
        self.pos = start;
        let mut buf = Zeroizing::new(String::with_capacity(len));
        self.string(Some(&mut buf))?;
        if self.pos != end || buf.len() != len {
            return Err(E_INTERNAL);
        }
        Ok(Text(buf))
    }

    /// Walks the string literal whose opening quote is at `pos`, moving past its closing quote,
    /// and returns its decoded length in bytes. With `out`, also appends the decoded string, but
    /// never beyond `out`'s capacity (it must not grow).
    fn string(&mut self, mut out: Option<&mut String>) -> Result<usize, RecordError> {
        self.consume(b'"', E_VALUE)?;
        let mut len = 0usize;
        let mut run = self.pos;
        loop {
            match self.peek() {
                None => return Err(E_EOF),
                Some(b @ (b'"' | b'\\')) => {
                    if let Some(out) = out.as_deref_mut() {
                        push_within(out, self.slice(run, self.pos)?)?;
                    }
                    if b == b'"' {
                        self.pos += 1;
                        return Ok(len);
                    }
                    let c = self.escape()?;
                    len += c.len_utf8();
                    if let Some(out) = out.as_deref_mut() {
                        push_within(out, c.encode_utf8(&mut [0; 4]))?;
                    }
                    run = self.pos;
                }
                Some(0x00..=0x1f) => return Err(E_CONTROL),
                Some(_) => {
                    // Part of a UTF-8 sequence already validated with the whole line.
                    self.pos += 1;
                    len += 1;
                }
            }
        }
    }

    /// The escape whose backslash is at `pos`, moving past it.
    fn escape(&mut self) -> Result<char, RecordError> {
        let b = self.bytes.get(self.pos + 1).copied().ok_or(E_EOF)?;
        self.pos += 2;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => match self.hex4()? {
                hi @ 0xd800..=0xdbff => {
                    if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return Err(E_SURROGATE);
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xdc00..=0xdfff).contains(&lo) {
                        return Err(E_SURROGATE);
                    }
                    char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                        .ok_or(E_SURROGATE)?
                }
                0xdc00..=0xdfff => return Err(E_SURROGATE),
                cp => char::from_u32(cp).ok_or(E_ESCAPE)?,
            },
            _ => return Err(E_ESCAPE),
        })
    }

    /// Four hex digits at `pos`, moving past them.
    fn hex4(&mut self) -> Result<u32, RecordError> {
        let mut cp = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                None => return Err(E_EOF),
                Some(b) => char::from(b).to_digit(16).ok_or(E_ESCAPE)?,
            };
            cp = cp << 4 | d;
            self.pos += 1;
        }
        Ok(cp)
    }
}

/// Appends `s` to `out` if it fits in `out`'s capacity, so `out` never reallocates.
fn push_within(out: &mut String, s: &str) -> Result<(), RecordError> {
    if out.capacity() - out.len() < s.len() {
        return Err(E_INTERNAL);
    }
    out.push_str(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

    use super::*;

    /// A top-level object as serde_json sees it: members in order, duplicates kept.
    struct Members(Vec<(String, serde_json::Value)>);

    impl<'de> Deserialize<'de> for Members {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                    let mut members = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        members.push(entry);
                    }
                    Ok(Members(members))
                }
            }
            d.deserialize_map(V)
        }
    }

    fn ok(line: &str) -> Record {
        match parse(line.as_bytes()) {
            Ok(r) => r,
            Err(e) => panic!("{line:?} refused: {e}"),
        }
    }

    fn err(line: &[u8]) -> RecordError {
        match parse(line) {
            Ok(_) => panic!("{:?} accepted", String::from_utf8_lossy(line)),
            Err(e) => e,
        }
    }

    fn string(v: Option<&Value>) -> &str {
        match v {
            Some(Value::String(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    fn number(v: Option<&Value>) -> &Number {
        match v {
            Some(Value::Number(n)) => n,
            other => panic!("not a number: {other:?}"),
        }
    }

    fn nested(v: Option<&Value>) -> &str {
        match v {
            Some(Value::Nested(s)) => s,
            other => panic!("not nested: {other:?}"),
        }
    }

    #[test]
    fn accepted() {
        let table: &[(&str, usize)] = &[
            ("{}", 0),
            (" \t\r\n{ \t\r\n} \t\r\n", 0),
            (r#"{"a":1}"#, 1),
            (r#"{"":0}"#, 1),
            (
                r#"{"a":null,"b":true,"c":false,"d":"x","e":-0.5e-3,"f":[],"g":{}}"#,
                7,
            ),
            (r#" { "a" : [ 1 , { "b" : [ ] } ] , "c" : "\u00e9" } "#, 2),
            (
                r#"{"a":0,"b":-0,"c":1E+2,"d":1e-2,"e":10.25,"f":1e-400}"#,
                6,
            ),
            (r#"{"a":"\ud83d\ude00 \"\\\/\b\f\n\r\t"}"#, 1),
            ("{\"caf\u{e9}\":\"\u{1f600}\"}", 1),
            (r#"{"a":[[[[]]]],"b":{"c":{"d":{}}}}"#, 2),
            (r#"{"a":{"x":1,"x":2}}"#, 1), // duplicates inside a nested value are its own business
            (r#"{"a":"\u0000"}"#, 1),
        ];
        for &(line, n) in table {
            let r = ok(line);
            assert_eq!(r.len(), n, "{line}");
            assert_eq!(r.is_empty(), n == 0, "{line}");
            assert_eq!(r.fields.capacity(), n, "{line}: fields capacity");
        }
    }

    #[test]
    fn refused() {
        let table: &[(&[u8], &str)] = &[
            (b"", "not a JSON object"),
            (b"  ", "not a JSON object"),
            (b"[]", "not a JSON object"),
            (b"\"a\"", "not a JSON object"),
            (b"1", "not a JSON object"),
            (b"null", "not a JSON object"),
            (b"\xef\xbb\xbf{}", "not a JSON object"),
            (b"{\"a\":\"\xff\"}", "invalid UTF-8"),
            (b"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"),
            (b"\x0c{}", "not a JSON object"),
            (b"\xc2\xa0{}", "not a JSON object"),
            (b"{", "unexpected end of line"),
            (b"{\"a", "unexpected end of line"),
            (b"{\"a\"", "unexpected end of line"),
            (b"{\"a\":", "unexpected end of line"),
            (b"{\"a\":1", "unexpected end of line"),
            (b"{\"a\":[1", "unexpected end of line"),
            (b"{\"a\":\"\\", "unexpected end of line"),
            (b"{\"a\":\"\\u12", "unexpected end of line"),
            (b"{\"a\"}", "expected ':'"),
            (b"{\"a\" 1}", "expected ':'"),
            (b"{\"a\":}", "expected a value"),
            (b"{\"a\":1,}", "expected a member name"),
            (b"{,}", "expected a member name"),
            (b"{'a':1}", "expected a member name"),
            (b"{a:1}", "expected a member name"),
            (b"{1:1}", "expected a member name"),
            (b"{\"a\":1 \"b\":2}", "expected ',' or '}'"),
            (b"{\"a\":1;}", "expected ',' or '}'"),
            (b"{\"a\":[1,]}", "expected a value"),
            (b"{\"a\":[1 2]}", "expected ',' or ']'"),
            (b"{\"a\":[}", "expected a value"),
            (b"{\"a\":{\"b\"}}", "expected ':'"),
            (b"{\"a\":{\"b\":1]}", "expected ',' or '}'"),
            (b"{\"a\":[1}", "expected ',' or ']'"),
            (b"{\"a\":01}", "invalid number"),
            (b"{\"a\":-01}", "invalid number"),
            (b"{\"a\":+1}", "expected a value"),
            (b"{\"a\":.5}", "expected a value"),
            (b"{\"a\":1.}", "invalid number"),
            (b"{\"a\":1.e5}", "invalid number"),
            (b"{\"a\":1e}", "invalid number"),
            (b"{\"a\":1e+}", "invalid number"),
            (b"{\"a\":-}", "invalid number"),
            (b"{\"a\":-a}", "invalid number"),
            (b"{\"a\":0x10}", "expected ',' or '}'"),
            (b"{\"a\":NaN}", "expected a value"),
            (b"{\"a\":Infinity}", "expected a value"),
            (b"{\"a\":-Infinity}", "invalid number"),
            (b"{\"a\":1e400}", "number out of range"),
            (b"{\"a\":-1e400}", "number out of range"),
            (b"{\"a\":[0,1e309]}", "number out of range"),
            (b"{\"a\":tru}", "invalid literal"),
            (b"{\"a\":nul}", "invalid literal"),
            (b"{\"a\":True}", "expected a value"),
            (b"{\"a\":truex}", "expected ',' or '}'"),
            (b"{\"a\":\"\\x\"}", "invalid escape"),
            (b"{\"a\":\"\\U0041\"}", "invalid escape"),
            (b"{\"a\":\"\\u12g4\"}", "invalid escape"),
            (b"{\"a\":\"\\ud800\"}", "lone surrogate"),
            (b"{\"a\":\"\\udc00\"}", "lone surrogate"),
            (b"{\"a\":\"\\ud800\\u0041\"}", "lone surrogate"),
            (b"{\"a\":\"\\ud800\\ud800\"}", "lone surrogate"),
            (b"{\"a\":\"\\ud800x\"}", "lone surrogate"),
            (b"{\"\\udfff\":1}", "lone surrogate"),
            (b"{\"a\":[\"\\ud800\"]}", "lone surrogate"),
            (b"{\"a\":\"\t\"}", "control character in string"),
            (b"{\"a\":\"\n\"}", "control character in string"),
            (b"{\"a\":\"\x00\"}", "control character in string"),
            (b"{\"a\":1}x", "trailing characters"),
            (b"{\"a\":1}{}", "trailing characters"),
            (b"{\"a\":1}\x00", "trailing characters"),
            (b"{} \x0b", "trailing characters"),
            (b"{\"a\":1,\"a\":2}", "duplicate member name"),
            (b"{\"a\":1,\"\\u0061\":2}", "duplicate member name"),
            (
                b"{\"b\":1,\"a\":1,\"c\":1,\"a\":[]}",
                "duplicate member name",
            ),
        ];
        for &(line, want) in table {
            assert_eq!(
                err(line),
                RecordError(want),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn escapes_and_surrogates() {
        let r = ok(
            r#"{"s":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00\uDBFF\uDFFF","k\u00e9y":"a\u0000b"}"#,
        );
        let want = "\"\\/\u{8}\u{c}\n\r\t\u{41}\u{e9}\u{20ac}\u{1f600}\u{10ffff}";
        assert_eq!(string(r.get("s")), want);
        assert_eq!(string(r.get("k\u{e9}y")), "a\0b");
        for f in r.fields() {
            assert_eq!(f.name.0.capacity(), f.name.len());
            if let Value::String(s) = &f.value {
                assert_eq!(s.0.capacity(), s.len(), "decoded into exact capacity");
            }
        }
        // Raw (unescaped) non-ASCII and escaped forms decode alike.
        assert_eq!(
            string(ok("{\"a\":\"\u{e9}\u{1f600}\"}").get("a")),
            string(ok(r#"{"a":"\u00e9\ud83d\ude00"}"#).get("a"))
        );
    }

    #[test]
    fn duplicate_names() {
        assert_eq!(err(br#"{"ssn":"1","ssn":"2"}"#), E_DUPLICATE);
        assert_eq!(err(br#"{"ssn":"1","x":0,"s\u0073n":"2"}"#), E_DUPLICATE);
        // Names differing only in case, or by a trailing space, are different names.
        let r = ok(r#"{"ssn":1,"SSN":2,"ssn ":3}"#);
        assert_eq!(r.len(), 3);
        assert_eq!(number(r.get("SSN")).value(), 2.0);
        assert!(r.get("Ssn").is_none());
    }

    #[test]
    fn depth_limit() {
        // The record is depth 1, so a member can open 63 more levels.
        let deep = |n: usize, open: &str, close: &str| {
            format!("{{\"a\":{}{}}}", open.repeat(n), close.repeat(n))
        };
        let r = ok(&deep(63, "[", "]"));
        assert_eq!(
            nested(r.get("a")),
            format!("{}{}", "[".repeat(63), "]".repeat(63))
        );
        assert_eq!(err(deep(64, "[", "]").as_bytes()), E_DEPTH);
        let objects = |n: usize| format!("{{\"a\":{}1{}}}", "{\"b\":".repeat(n), "}".repeat(n));
        ok(&objects(63));
        assert_eq!(err(objects(64).as_bytes()), E_DEPTH);
        // Far deeper than the limit: refused without exhausting the stack.
        assert_eq!(err(deep(100_000, "[", "]").as_bytes()), E_DEPTH);
    }

    #[test]
    fn member_limit() {
        let line = |n: usize| {
            let members: Vec<String> = (0..n).map(|i| format!("\"m{i}\":{i}")).collect();
            format!("{{{}}}", members.join(","))
        };
        let r = ok(&line(MAX_MEMBERS));
        assert_eq!(r.len(), MAX_MEMBERS);
        assert_eq!(r.fields.capacity(), MAX_MEMBERS);
        assert_eq!(number(r.get("m4095")).value(), 4095.0);
        assert_eq!(err(line(MAX_MEMBERS + 1).as_bytes()), E_MEMBERS);
        // Commas inside strings and nested values are not members.
        let r = ok(r#"{"a,b":"c,d","e":[1,2,{"f":3,"g":4}],"h":"\",\""}"#);
        assert_eq!(r.len(), 3);
        assert_eq!(r.fields.capacity(), 3);
    }

    #[test]
    fn numbers() {
        let r = ok(
            r#"{"a":1.50E+2,"b":-0,"c":123456789012345678901234567890,"d":1e-400,"e":0.1,"f":1.7976931348623157e308,"g":-2.5e-3}"#,
        );
        let cases: &[(&str, &str, f64)] = &[
            ("a", "1.50E+2", 150.0),
            ("b", "-0", 0.0),
            ("c", "123456789012345678901234567890", 1.2345678901234568e29),
            ("d", "1e-400", 0.0),
            ("e", "0.1", 0.1),
            ("f", "1.7976931348623157e308", f64::MAX),
            ("g", "-2.5e-3", -0.0025),
        ];
        for &(name, text, value) in cases {
            let n = number(r.get(name));
            assert_eq!(n.text(), text);
            assert_eq!(n.value(), value, "{name}");
            assert_eq!(n.text.0.capacity(), text.len());
        }
        assert!(number(r.get("b")).value().is_sign_negative());
        assert_eq!(err(br#"{"a":1.7976931348623159e308}"#), E_RANGE);
    }

    #[test]
    fn nested_kept_raw() {
        let line = r#"{"a": [1, {"b" : "c\n"}, 2.50] , "b":{ } ,"c":[ ]}"#;
        let r = ok(line);
        assert_eq!(nested(r.get("a")), r#"[1, {"b" : "c\n"}, 2.50]"#);
        assert_eq!(nested(r.get("b")), "{ }");
        assert_eq!(nested(r.get("c")), "[ ]");
        assert_eq!(
            r.fields()
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn lines_numbered() {
        let batch = b"\n{\"a\":1}\n  \n\t\r\n{}\r\n\n{\"b\":2}";
        let got: Vec<(usize, &[u8])> = lines(batch).collect();
        let want: Vec<(usize, &[u8])> = vec![(2, b"{\"a\":1}"), (5, b"{}\r"), (7, b"{\"b\":2}")];
        assert_eq!(got, want);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n\n \n").count(), 0);
        assert_eq!(lines(b"x\n").collect::<Vec<_>>(), [(1, &b"x"[..])]);
        // A CRLF line still parses: CR is JSON whitespace.
        assert_eq!(parse(b"{}\r").map(|r| r.len()), Ok(0));
    }

    #[test]
    fn write_string_round_trips() {
        let mut all_controls = String::new();
        for c in 0u8..0x20 {
            all_controls.push(char::from(c));
        }
        let strings = [
            "",
            "plain",
            "\"quoted\" \\back\\slash/",
            &all_controls,
            "\u{7f}\u{80}\u{e9}\u{2028}\u{2029}\u{1f600}\u{10ffff}",
            "a\0b\u{1f}c",
        ];
        for s in strings {
            let mut out = Vec::new();
            write_string(&mut out, s);
            assert_eq!(out.len(), string_len(s));
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
            // And through our own parser.
            let mut line = b"{\"k\":".to_vec();
            line.extend_from_slice(&out);
            line.push(b'}');
            assert_eq!(string(parse(&line).unwrap().get("k")), s);
        }
        let mut out = Vec::new();
        write_string(&mut out, "\u{1}\u{8}\u{c}\n\r\t\u{1b}");
        assert_eq!(out, b"\"\\u0001\\b\\f\\n\\r\\t\\u001b\"");
    }

    #[test]
    fn write_value_round_trips() {
        let line = r#"{"n":null,"t":true,"f":false,"x":-1.50e3,"s":"a\"b\u0001\u00e9","o":{"k":[1,"\u2028"]},"a":[ ]}"#;
        let r = ok(line);
        let mut out = b"{".to_vec();
        for (i, f) in r.fields().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(&mut out, &f.name);
            out.push(b':');
            let before = out.len();
            write_value(&mut out, &f.value);
            assert_eq!(out.len() - before, value_len(&f.value));
        }
        out.push(b'}');
        let ours: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(ours, theirs);
        // Numbers keep their text.
        let mut out = Vec::new();
        write_value(&mut out, r.get("x").unwrap());
        assert_eq!(out, b"-1.50e3");
        // And a reparse gives the same record.
        assert_eq!(parse(&out_of(&r)).unwrap(), r);
    }

    fn out_of(r: &Record) -> Vec<u8> {
        let mut out = b"{".to_vec();
        for (i, f) in r.fields().iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(&mut out, &f.name);
            out.push(b':');
            write_value(&mut out, &f.value);
        }
        out.push(b'}');
        out
    }

    /// Whether two `f64`s are equal or (serde_json's default float parsing being best-effort)
    /// a unit in the last place apart.
    fn close(a: f64, b: f64) -> bool {
        a == b || (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs())
    }

    fn same_value(ours: &Value, theirs: &serde_json::Value) -> bool {
        match (ours, theirs) {
            (Value::Null, serde_json::Value::Null) => true,
            (Value::Bool(a), serde_json::Value::Bool(b)) => a == b,
            (Value::Number(n), serde_json::Value::Number(m)) => {
                m.as_f64().is_some_and(|m| close(n.value(), m))
            }
            (Value::String(s), serde_json::Value::String(t)) => s.as_str() == t,
            (
                Value::Nested(raw),
                v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_)),
            ) => serde_json::from_str::<serde_json::Value>(raw).is_ok_and(|w| w == *v),
            _ => false,
        }
    }

    #[test]
    fn agrees_with_serde_json() {
        let tricky: &[&[u8]] = &[
            b"{}",
            b" {\"a\" :\t1 }\r\n",
            br#"{"a":"\ud834\udd1e","b":"\u0000","c":"\/"}"#,
            br#"{"a":-0,"b":0e0,"c":0E-0,"d":1e-400,"e":18446744073709551615,"f":18446744073709551616}"#,
            br#"{"a":-9223372036854775808,"b":-9223372036854775809,"c":4.9e-324,"d":2.2250738585072014e-308}"#,
            br#"{"a":1.7976931348623157e308,"b":1e308,"c":0.30000000000000004,"d":123.456e-7}"#,
            br#"{"a":[1,[2,[3,{"b":{"c":[]}}]]],"d":{"e":null,"e":true}}"#,
            br#"{"\u0022":"\"","\\":"\\","":""}"#,
            "{\"\u{1f600}\":\"\u{10ffff}\u{2028}\"}".as_bytes(),
            br#"{"a":1,"a":2}"#,
            br#"{"a":1}  x"#,
            br#"{"a":1e400}"#,
            br#"{"a":[1e400]}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\udc00\ud800"}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":.1}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":1,}"#,
            b"{\"a\":\"\x7f\"}",
            b"{\"a\":\"\x1f\"}",
            b"{\"a\":\"\xc0\x80\"}",
            b"\x00{}",
            b"{}\x0c",
            b"[{}]",
        ];
        for &line in tricky {
            let shown = String::from_utf8_lossy(line);
            let theirs = serde_json::from_slice::<Members>(line).ok();
            let unique = theirs.as_ref().is_some_and(|m| {
                let mut names: Vec<&str> = m.0.iter().map(|(k, _)| k.as_str()).collect();
                names.sort_unstable();
                names.windows(2).all(|w| w[0] != w[1])
            });
            match (parse(line), theirs) {
                (Ok(r), Some(m)) => {
                    assert_eq!(r.len(), m.0.len(), "{shown}");
                    for (f, (k, v)) in r.fields().iter().zip(&m.0) {
                        assert_eq!(f.name.as_str(), k, "{shown}");
                        assert!(same_value(&f.value, v), "{shown}: {k}");
                    }
                }
                (Ok(_), None) => panic!("{shown}: accepted, serde_json refuses"),
                (Err(e), Some(_)) => assert!(!unique, "{shown}: refused ({e}), serde_json accepts"),
                (Err(_), None) => {}
            }
        }
    }

    #[test]
    fn debug_is_redacted() {
        let r = ok(r#"{"card":"4111111111111111","age":36,"vip":true,"tags":["secret"]}"#);
        let shown = format!("{r:?}");
        for secret in ["card", "4111", "36", "true", "secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("<redacted>"));
        assert_eq!(RecordError("x").to_string(), "x");
        // A clone is as zeroizing and exactly sized as the original.
        let c = r.clone();
        assert_eq!(c, r);
        assert_eq!(c.fields.capacity(), c.len());
        assert_eq!(c.fields[0].name.0.capacity(), 4);
    }

    #[test]
    fn never_panics_on_prefixes_and_bytes() {
        // Every prefix and every single-byte corruption of a rich record: errors, never panics.
        let line = br#"{"a":[1,{"b":"\ud83d\ude00\n"}],"c":-1.5e-3,"d":"x\u00e9","e":null}"#;
        for end in 0..=line.len() {
            let _ = parse(&line[..end]);
        }
        for i in 0..line.len() {
            for b in [
                0u8, b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'0', 0x80, 0xff,
            ] {
                let mut l = line.to_vec();
                l[i] = b;
                let _ = parse(&l);
            }
        }
    }
}
