//! The store's tables and their versions (`PRAGMA user_version`): creating a new store,
//! recognising an old one, and migrating it.
//!
//! - Version 0: the tables without integrity (`keys`, `key_material`, `aliases`, `principals`,
//!   `audit`).
//! - Version 1: `keys`, `aliases` and `principals` gain a `mac` column (see `integrity.rs`), and
//!   `meta` holds the root key check.
//! - Version 2: `keys` gains `attrs` (spec, usage, origin, tags, region, Multi-Region
//!   configuration, material versions: `keyspec::KeyAttrs` as JSON, covered by the row's MAC),
//!   and the MAC'd `grants` table appears. A version 1 store is brought to version 2 at start:
//!   each key row's version 1 MAC is checked first and only a row that verifies is MAC'd anew
//!   (with `attrs` `{}`), so the upgrade vouches for nothing the version 1 MACs did not.
//!
//! - Version 3: the MAC'd `secrets`, `secret_versions` and `parameters` tables of Secrets Manager
//!   and Parameter Store appear (new tables only: a version 2 store is brought to version 3 at
//!   start, nothing in it re-MAC'd).
//!
//! A new store is made as version 0 and migrated at once, so the migration runs on every new
//! store. An existing version 0 store is migrated only by `cloister-kms migrate`, never on its
//! own: whoever can write the database could otherwise make it look like a version 0 store
//! again, and the next start would MAC whatever they wrote.

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use super::sql::Sql;

use super::integrity::{self, Table};
use crate::error::Result;
use crate::rootkey::{RootKey, RowKey};
use crate::state::{material_label, secret_label};

/// The version this build reads and writes.
pub(super) const VERSION: i64 = 3;

/// Version 0: the tables as they were before integrity.
const TABLES_V0: &str = "
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    deletion_ms INTEGER,
    pending_days INTEGER,
    rotation_enabled INTEGER NOT NULL,
    rotation_period_days INTEGER NOT NULL,
    last_rotation_ms INTEGER NOT NULL,
    current_version INTEGER NOT NULL,
    policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS key_material (
    key_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS principals (
    access_key_id TEXT PRIMARY KEY,
    sealed_secret BLOB NOT NULL,
    arn TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    entry TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
";

/// Version 0 → 1: row MACs and the root key check.
const V0_TO_V1: &str = "
ALTER TABLE keys ADD COLUMN mac BLOB;
ALTER TABLE aliases ADD COLUMN mac BLOB;
ALTER TABLE principals ADD COLUMN mac BLOB;
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// Version 1 → 2: key attributes and grants.
const V1_TO_V2: &str = "
ALTER TABLE keys ADD COLUMN attrs TEXT NOT NULL DEFAULT '{}';
CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    mac BLOB
);
CREATE INDEX grants_by_key ON grants (key_id);
";

/// Version 2 → 3: Secrets Manager's secrets and their versions, Parameter Store's parameters.
const V2_TO_V3: &str = "
CREATE TABLE secrets (
    arn TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    mac BLOB
);
CREATE TABLE secret_versions (
    arn TEXT NOT NULL,
    version_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    mac BLOB,
    PRIMARY KEY (arn, version_id)
);
CREATE TABLE parameters (
    arn TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    mac BLOB
);
";

/// The columns of version 1's MAC'd tables, in MAC order.
pub(super) const V1_COLUMNS: [(&str, &[&str]); 3] = [
    (
        "keys",
        &[
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
        ],
    ),
    ("aliases", &["name", "key_id", "created_ms", "updated_ms"]),
    (
        "principals",
        &["access_key_id", "sealed_secret", "arn", "created_ms"],
    ),
];

/// The `meta` row holding the root key check.
const ROOT_KEY_CHECK: &str = "root-key-check";

/// What a data directory's database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// No tables: a new store.
    Empty,
    /// Tables of version 0, from before integrity.
    Unauthenticated,
    /// Tables of version 1 (row MACs, no key attributes or grants).
    V1,
    /// Tables of version 2 (no secrets or parameters).
    V2,
    /// The current version.
    Current,
    /// A version this build does not know.
    Other(i64),
}

/// What `conn`'s database holds.
pub(super) fn found(conn: &Connection) -> Result<Found> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'keys'",
        [],
        |r| r.get(0),
    )?;
    Ok(match (version, tables) {
        (0, 0) => Found::Empty,
        (0, _) => Found::Unauthenticated,
        (1, _) => Found::V1,
        (2, _) => Found::V2,
        (VERSION, _) => Found::Current,
        (other, _) => Found::Other(other),
    })
}

/// Creates the current tables in an empty database, bound to the root key `rows` comes from.
/// Does nothing if another process created them first.
pub(super) fn create(conn: &mut Connection, rows: &RowKey) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if found(&tx)? == Found::Empty {
        tx.execute_batch(TABLES_V0)?;
        let n = to_v1(&tx, rows)?;
        debug_assert_eq!(n, 0);
        to_v2(&tx, rows)?;
        to_v3(&tx)?;
    }
    tx.commit()?;
    Ok(())
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Migrated {
    /// MAC'd this many rows.
    Rows(usize),
    /// Nothing: the database has no tables.
    Empty,
    /// Nothing: the database is at the current version.
    Current,
    /// Nothing: the database is at a version this build does not know.
    Other(i64),
    /// Nothing: the root key opens none of the store's sealed values (the wrong key).
    WrongRootKey,
}

/// Migrates a version 0 database to the current version in one transaction: adds the MAC
/// columns and MACs every row as it is now, once the root key is shown to be the store's (it
/// opens at least one sealed principal secret or key material; a new key would open none).
pub(super) fn migrate(conn: &mut Connection, root: &RootKey) -> Result<Migrated> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    match found(&tx)? {
        Found::Unauthenticated => {}
        Found::Empty => return Ok(Migrated::Empty),
        Found::Current | Found::V1 | Found::V2 => return Ok(Migrated::Current),
        Found::Other(version) => return Ok(Migrated::Other(version)),
    }
    if !opens_a_sealed_value(&tx, root)? {
        return Ok(Migrated::WrongRootKey);
    }
    let n = to_v1(&tx, root.rows())?;
    to_v2(&tx, root.rows())?;
    to_v3(&tx)?;
    tx.commit()?;
    Ok(Migrated::Rows(n))
}

/// Whether `root` opens a sealed value of the store, or the store has none.
fn opens_a_sealed_value(tx: &Connection, root: &RootKey) -> Result<bool> {
    let mut labelled: Vec<(String, Vec<u8>)> = Vec::new();
    let mut stmt = tx.prepare("SELECT access_key_id, sealed_secret FROM principals")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
        let (id, sealed) = row?;
        labelled.push((secret_label(&id), sealed));
    }
    let mut stmt = tx.prepare("SELECT key_id, version, sealed FROM key_material")?;
    for row in stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get(2)?))
    })? {
        let (id, version, sealed) = row?;
        labelled.push((material_label(&id, version), sealed));
    }
    Ok(labelled.is_empty()
        || labelled
            .iter()
            .any(|(label, sealed)| root.open(label, sealed).is_ok()))
}

fn to_v1(tx: &Connection, rows: &RowKey) -> Result<usize> {
    tx.execute_batch(V0_TO_V1)?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)",
        rusqlite::params![ROOT_KEY_CHECK, integrity::root_key_check(rows)],
    )?;
    let mut n = 0;
    for (table, columns) in V1_COLUMNS {
        n += integrity::mac_existing(tx, rows, table, columns)?;
    }
    tx.pragma_update(None, "user_version", 1)?;
    Ok(n)
}

/// Brings a version 1 database to the current version in one transaction (see the header):
/// returns how many key rows verified and were MAC'd anew. Rows that did not verify keep their
/// old MAC, which cannot verify under version 2 either, so they stay set aside.
pub(super) fn upgrade_v1(conn: &mut Connection, rows: &RowKey) -> Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if found(&tx)? != Found::V1 {
        return Ok(0);
    }
    let n = to_v2(&tx, rows)?;
    to_v3(&tx)?;
    tx.commit()?;
    Ok(n)
}

/// Brings a version 2 database to the current version in one transaction (new tables only).
pub(super) fn upgrade_v2(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if found(&tx)? != Found::V2 {
        return Ok(());
    }
    to_v3(&tx)?;
    tx.commit()?;
    Ok(())
}

fn to_v3(tx: &Connection) -> Result<()> {
    tx.execute_batch(V2_TO_V3)?;
    tx.pragma_update(None, "user_version", 3)?;
    Ok(())
}

fn to_v2(tx: &Connection, rows: &RowKey) -> Result<usize> {
    let (_, columns) = V1_COLUMNS[0];
    let sql = format!("SELECT rowid, {}, mac FROM keys", columns.join(", "));
    let mut stmt = tx.prepare(&sql)?;
    let n = columns.len();
    let found = stmt
        .query_map([], |r| {
            let rowid: i64 = r.get(0)?;
            let values = (1..=n)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mac: Option<Vec<u8>> = r.get(n + 1).ok().flatten();
            Ok((rowid, values, mac))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.execute_batch(V1_TO_V2)?;
    let mut upgraded = 0;
    for (rowid, mut values, mac) in found {
        let Some(mac) = mac else { continue };
        if !integrity::versioned_row_verifies(rows, "keys", &values, &mac) {
            continue;
        }
        values.push(Value::Text("{}".into()));
        tx.execute(
            "UPDATE keys SET mac = ?1 WHERE rowid = ?2",
            rusqlite::params![integrity::row_mac(rows, Table::Keys, &values), rowid],
        )?;
        upgraded += 1;
    }
    tx.pragma_update(None, "user_version", 2)?;
    Ok(upgraded)
}

/// The stored root key check, if there is one.
fn root_key_check(conn: &dyn Sql) -> Result<Option<Vec<u8>>> {
    match conn.query_opt(
        "SELECT value FROM meta WHERE name = ?1",
        &[Value::Text(ROOT_KEY_CHECK.into())],
    )? {
        Some(r) => Ok(Some(r.get(0)?)),
        None => Ok(None),
    }
}

/// Whether the store's root key check matches `rows`' root key (false if the check is missing).
pub(super) fn root_key_matches(conn: &dyn Sql, rows: &RowKey) -> Result<bool> {
    Ok(root_key_check(conn)?.is_some_and(|s| integrity::is_root_key_check(rows, &s)))
}

/// Whether the store has a root key check (a new PostgreSQL store gets one at first start).
pub(super) fn has_root_key_check(conn: &dyn Sql) -> Result<bool> {
    Ok(root_key_check(conn)?.is_some())
}

/// Stores the root key check of `rows`' root key.
pub(super) fn put_root_key_check(conn: &dyn Sql, rows: &RowKey) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)",
        &[
            Value::Text(ROOT_KEY_CHECK.into()),
            Value::Blob(integrity::root_key_check(rows)),
        ],
    )?;
    Ok(())
}
