//! Integrity at rest: every key, alias and principal row carries a MAC (its `mac` column), so a
//! change made to the database alone is detected when the row is loaded.
//!
//! The MAC is HMAC-SHA256 under the [`RowKey`] (derived from the root key, see `rootkey.rs`) over
//! an unambiguous encoding of the row: the table name, then every column in the table's order,
//! each tagged with its SQLite type and, for text and blobs, prefixed with its length. The first
//! column is the row's identity (key id, alias name, access key id), so a row copied to another
//! identity or another table no longer verifies, and no column's bytes can be shifted into
//! another. Key material rows carry no MAC: each is sealed under the root key with a label that
//! binds its key id and version (`state::material_label`).
//!
//! What a MAC cannot see: a row deleted, or put back as an older authentic version of itself
//! (from a backup of the same store). Rows are MAC'd when written and checked when loaded, never
//! per request.

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::sql::{Row, Sql, Value};

use crate::error::{Result, StoreError};
use crate::rootkey::RowKey;
use crate::state::Flaw;

/// A table whose rows carry a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// Keys: metadata, state, policy.
    Keys,
    /// Aliases.
    Aliases,
    /// Principals: access key id, sealed secret, ARN.
    Principals,
    /// Grants: grant id, key id, body.
    Grants,
    /// Secrets: ARN, metadata.
    Secrets,
    /// Secret versions: ARN, version id, creation, sealed value.
    SecretVersions,
    /// Parameters: ARN, body (every version).
    Parameters,
}

impl Table {
    /// The table's SQL name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Keys => "keys",
            Self::Aliases => "aliases",
            Self::Principals => "principals",
            Self::Grants => "grants",
            Self::Secrets => "secrets",
            Self::SecretVersions => "secret_versions",
            Self::Parameters => "parameters",
        }
    }

    /// The columns the MAC covers, in order: every column but `mac`, the identity first.
    pub(super) fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Keys => &[
                "key_id",
                "description",
                "created_ms",
                "state",
                "deletion_ms",
                "pending_days",
                "rotation_enabled",
                "rotation_period_days",
                "last_rotation_ms",
                "current_version",
                "policy",
                "attrs",
            ],
            Self::Aliases => &["name", "key_id", "created_ms", "updated_ms"],
            Self::Principals => &["access_key_id", "sealed_secret", "arn", "created_ms"],
            Self::Grants => &["grant_id", "key_id", "body", "created_ms"],
            Self::Secrets | Self::Parameters => &["arn", "body"],
            Self::SecretVersions => &["arn", "version_id", "created_ms", "sealed"],
        }
    }

    /// `SELECT <columns>, mac FROM <table>`.
    pub(super) fn select(self) -> String {
        format!(
            "SELECT {}, mac FROM {}",
            self.columns().join(", "),
            self.name()
        )
    }

    /// The statement writing a whole row with its MAC: keys and aliases are replaced in place,
    /// principals only ever inserted.
    /// The columns that identify a row (its primary key).
    fn identity_columns(self) -> &'static [&'static str] {
        match self {
            Self::SecretVersions => &["arn", "version_id"],
            other => &other.columns()[..1],
        }
    }

    /// The statement that writes a row with its MAC: an upsert (the same SQL on SQLite and
    /// PostgreSQL), except for principals, which are only ever inserted.
    fn insert(self) -> String {
        let n = self.columns().len() + 1;
        let slots: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}, mac) VALUES ({})",
            self.name(),
            self.columns().join(", "),
            slots.join(", ")
        );
        if self != Self::Principals {
            let set: Vec<String> = self
                .columns()
                .iter()
                .chain(&["mac"])
                .filter(|c| !self.identity_columns().contains(c))
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            sql.push_str(&format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                self.identity_columns().join(", "),
                set.join(", ")
            ));
        }
        sql
    }
}

const NULL: u8 = 0;
const INTEGER: u8 = 1;
const REAL: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;

fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The bytes a row's MAC covers: the table name, then each value tagged with its type
/// (integers and reals 8 bytes big-endian, text and blobs length-prefixed with 8 bytes).
fn encode(table: &str, values: &[ValueRef<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_bytes(&mut out, TEXT, table.as_bytes());
    for v in values {
        match v {
            ValueRef::Null => out.push(NULL),
            ValueRef::Integer(i) => {
                out.push(INTEGER);
                out.extend_from_slice(&i.to_be_bytes());
            }
            ValueRef::Real(r) => {
                out.push(REAL);
                out.extend_from_slice(&r.to_bits().to_be_bytes());
            }
            ValueRef::Text(t) => put_bytes(&mut out, TEXT, t),
            ValueRef::Blob(b) => put_bytes(&mut out, BLOB, b),
        }
    }
    out
}

/// The MAC of a row of `table` whose columns (in [`Table::columns`] order) are `values`.
pub(super) fn row_mac(rows: &RowKey, table: Table, values: &[Value]) -> Vec<u8> {
    let refs: Vec<ValueRef<'_>> = values.iter().map(ValueRef::from).collect();
    rows.sign(&encode(table.name(), &refs))
}

/// The MAC of a row of the table named `table` whose columns are `values` (a table of an older
/// version, for migrations).
pub(super) fn versioned_row_mac(rows: &RowKey, table: &str, values: &[Value]) -> Vec<u8> {
    let refs: Vec<ValueRef<'_>> = values.iter().map(ValueRef::from).collect();
    rows.sign(&encode(table, &refs))
}

/// Whether `mac` is the MAC of a row of the table named `table` whose columns are `values`.
pub(super) fn versioned_row_verifies(
    rows: &RowKey,
    table: &str,
    values: &[Value],
    mac: &[u8],
) -> bool {
    let refs: Vec<ValueRef<'_>> = values.iter().map(ValueRef::from).collect();
    rows.verify(&encode(table, &refs), mac)
}

/// Checks a row as read: `values` are its columns in [`Table::columns`] order, `mac` its MAC.
pub(super) fn check_row(
    rows: &RowKey,
    table: Table,
    values: &[ValueRef<'_>],
    mac: ValueRef<'_>,
) -> Result<(), Flaw> {
    match mac {
        ValueRef::Null => Err(Flaw::NoMac),
        ValueRef::Blob(tag) if rows.verify(&encode(table.name(), values), tag) => Ok(()),
        _ => Err(Flaw::BadMac),
    }
}

/// The fixed row whose MAC is the store's root key check (`meta.root-key-check`), so opening the
/// store with another root key is refused up front instead of every row failing.
fn root_key_check_row() -> Vec<u8> {
    encode("meta", &[ValueRef::Text(b"root-key-check")])
}

/// The root key check for `rows`' root key.
pub(super) fn root_key_check(rows: &RowKey) -> Vec<u8> {
    rows.sign(&root_key_check_row())
}

/// Whether `stored` is the root key check for `rows`' root key.
pub(super) fn is_root_key_check(rows: &RowKey, stored: &[u8]) -> bool {
    rows.verify(&root_key_check_row(), stored)
}

/// Writes a whole row of `table` (columns in [`Table::columns`] order) with its MAC.
pub(super) fn put_row(
    conn: &dyn Sql,
    rows: &RowKey,
    table: Table,
    values: Vec<Value>,
) -> Result<()> {
    let mac = row_mac(rows, table, &values);
    let mut all = values;
    all.push(Value::Blob(mac));
    conn.execute(&table.insert(), &all)?;
    Ok(())
}

/// The identity column of a row as text, for naming a flawed row (whatever its type).
fn identity(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        other => format!("{other:?}"),
    }
}

/// Every row of a MAC'd table, checked.
#[derive(Debug)]
pub(crate) struct Checked<T> {
    /// The rows whose MAC verified, decoded.
    pub(crate) rows: Vec<T>,
    /// The rows that failed, by identity (their first column).
    pub(crate) flawed: Vec<(String, Flaw)>,
}

/// Reads every row of `table`, checking each row's MAC before `decode` reads it (by column
/// index, in [`Table::columns`] order). A row that fails is set aside; a row that verifies but
/// does not decode is a store error (no version of cloister-kms writes it).
pub(super) fn read_table<T>(
    conn: &dyn Sql,
    rows: &RowKey,
    table: Table,
    decode: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Checked<T>> {
    read_rows(conn, rows, table, None, decode)
}

/// As [`read_table`], reading only the row whose identity (first column) is `only`, if given.
pub(super) fn read_rows<T>(
    conn: &dyn Sql,
    rows: &RowKey,
    table: Table,
    only: Option<&str>,
    decode: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Checked<T>> {
    let n = table.columns().len();
    let mut sql = table.select();
    let mut params = Vec::new();
    if let Some(id) = only {
        sql.push_str(&format!(" WHERE {} = ?1", table.columns()[0]));
        params.push(Value::Text(id.to_owned()));
    }
    let mut out = Checked {
        rows: Vec::new(),
        flawed: Vec::new(),
    };
    conn.query_each(&sql, &params, &mut |r| {
        let values = r.values();
        let (columns, mac) = values.split_at(n.min(values.len()));
        let refs: Vec<ValueRef<'_>> = columns.iter().map(ValueRef::from).collect();
        let mac = mac.first().map_or(ValueRef::Null, ValueRef::from);
        match check_row(rows, table, &refs, mac) {
            Ok(()) => out.rows.push(decode(&r)?),
            Err(flaw) => out.flawed.push((identity(r.value(0)?), flaw)),
        }
        Ok(())
    })?;
    Ok(out)
}

/// MACs every row of the table named `table`, whose MAC'd columns are `columns`, as it is now
/// (migration from version 0); returns how many.
pub(super) fn mac_existing(
    conn: &Connection,
    rows: &RowKey,
    table: &str,
    columns: &[&str],
) -> Result<usize> {
    let n = columns.len();
    let sql = format!("SELECT rowid, {} FROM {table}", columns.join(", "));
    let mut stmt = conn.prepare(&sql)?;
    let found = stmt
        .query_map([], |r| {
            let rowid: i64 = r.get(0)?;
            let values = (1..=n)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rowid, values))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let update = format!("UPDATE {table} SET mac = ?1 WHERE rowid = ?2");
    for (rowid, values) in &found {
        conn.execute(
            &update,
            rusqlite::params![versioned_row_mac(rows, table, values), rowid],
        )?;
    }
    Ok(found.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootkey::RootKey;

    fn text(s: &str) -> ValueRef<'_> {
        ValueRef::Text(s.as_bytes())
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let e = |vals: &[ValueRef<'_>]| encode("keys", vals);
        // Bytes cannot move between columns, tables, or types.
        assert_ne!(e(&[text("ab"), text("c")]), e(&[text("a"), text("bc")]));
        assert_ne!(e(&[text("a"), text("")]), e(&[text(""), text("a")]));
        assert_ne!(e(&[text("1")]), e(&[ValueRef::Integer(1)]));
        assert_ne!(e(&[text("x")]), e(&[ValueRef::Blob(b"x")]));
        assert_ne!(e(&[ValueRef::Null]), e(&[ValueRef::Integer(0)]));
        assert_ne!(
            e(&[ValueRef::Null, text("")]),
            e(&[text(""), ValueRef::Null])
        );
        assert_ne!(
            encode("keys", &[text("a")]),
            encode("aliases", &[text("a")])
        );
        assert_ne!(encode("key", &[text("sa")]), encode("keys", &[text("a")]));
    }

    #[test]
    fn a_row_checks_only_with_its_own_values_and_key() {
        let root = RootKey::from_bytes(&[3; 32]);
        let values = vec![
            Value::Text("alias/a".into()),
            Value::Text("k".into()),
            Value::Integer(1),
            Value::Integer(2),
        ];
        let mac = row_mac(root.rows(), Table::Aliases, &values);
        let refs: Vec<ValueRef<'_>> = values.iter().map(ValueRef::from).collect();
        let check = |rows: &RowKey, table, vals: &[ValueRef<'_>], mac: ValueRef<'_>| {
            check_row(rows, table, vals, mac)
        };
        assert_eq!(
            check(root.rows(), Table::Aliases, &refs, ValueRef::Blob(&mac)),
            Ok(())
        );
        assert_eq!(
            check(root.rows(), Table::Aliases, &refs, ValueRef::Null),
            Err(Flaw::NoMac)
        );
        assert_eq!(
            check(root.rows(), Table::Keys, &refs, ValueRef::Blob(&mac)),
            Err(Flaw::BadMac)
        );
        let other = RootKey::from_bytes(&[4; 32]);
        assert_eq!(
            check(other.rows(), Table::Aliases, &refs, ValueRef::Blob(&mac)),
            Err(Flaw::BadMac)
        );
        let mut moved = refs.clone();
        moved[0] = text("alias/b");
        assert_eq!(
            check(root.rows(), Table::Aliases, &moved, ValueRef::Blob(&mac)),
            Err(Flaw::BadMac)
        );
        let hex = hex::encode(&mac);
        assert_eq!(
            check(
                root.rows(),
                Table::Aliases,
                &refs,
                ValueRef::Text(hex.as_bytes())
            ),
            Err(Flaw::BadMac)
        );
    }
}
