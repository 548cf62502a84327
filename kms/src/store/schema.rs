//! The store's tables and their versions (`PRAGMA user_version`): creating a new store,
//! recognising an old one, and migrating it.
//!
//! - Version 0: the tables without integrity (`keys`, `key_material`, `aliases`, `principals`,
//!   `audit`).
//! - Version 1: `keys`, `aliases` and `principals` gain a `mac` column (see `integrity.rs`), and
//!   `meta` holds the root key check.
//!
//! A new store is made as version 0 and migrated at once, so the migration runs on every new
//! store. An existing version 0 store is migrated only by `cloister-kms migrate`, never on its
//! own: whoever can write the database could otherwise make it look like a version 0 store
//! again, and the next start would MAC whatever they wrote.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::integrity::{self, Table};
use crate::error::{Result, StoreError};
use crate::rootkey::{RootKey, RowKey};
use crate::state::{material_label, secret_label};

/// The version this build reads and writes.
pub(super) const VERSION: i64 = 1;

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

/// The `meta` row holding the root key check.
const ROOT_KEY_CHECK: &str = "root-key-check";

/// What a data directory's database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// No tables: a new store.
    Empty,
    /// Tables of version 0, from before integrity.
    Unauthenticated,
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
        Found::Current => return Ok(Migrated::Current),
        Found::Other(version) => return Ok(Migrated::Other(version)),
    }
    if !opens_a_sealed_value(&tx, root)? {
        return Ok(Migrated::WrongRootKey);
    }
    let n = to_v1(&tx, root.rows())?;
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
    for table in Table::ALL {
        n += integrity::mac_existing(tx, rows, table)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    Ok(n)
}

/// Whether the store's root key check matches `rows`' root key (false if the check is missing).
pub(super) fn root_key_matches(conn: &Connection, rows: &RowKey) -> Result<bool> {
    let stored: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = ?1",
            [ROOT_KEY_CHECK],
            |r| r.get(0),
        )
        .optional()
        .map_err(StoreError::from)?;
    Ok(stored.is_some_and(|s| integrity::is_root_key_check(rows, &s)))
}
