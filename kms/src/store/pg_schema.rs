//! The store's tables on PostgreSQL and their versions: `kms_schema (version)` says which of
//! [`MIGRATIONS`] ran, and [`migrate`] runs the missing ones at start.
//!
//! - Version 3: the tables of SQLite's version 3 (`schema.rs`) plus the audit log's tree
//!   (`audit.leaf_hash`, `tree_heads`, `audit_frontier`, see `audit_log.rs`), with the same
//!   names, columns, column order and primary keys; `BIGINT` for every integer, `TEXT`, `BYTEA`
//!   for blobs, so every row reads back as the values its MAC covers. Numbered 3 so the two
//!   engines' schemas read alike; PostgreSQL stores have no earlier versions (there is nothing
//!   to migrate from row-MAC-less days).
//!
//! - Version 4: the coordination of nodes sharing the store (`shared.rs`): `kms_generation`,
//!   `kms_nodes`.
//!
//! - Version 5: `audit.mac`, each entry's MAC under the root key (`audit_log.rs`): nodes follow
//!   each other's entries, so an entry must prove a node wrote it.
//!
//! Later versions append to [`MIGRATIONS`]. All of them run in one transaction under a
//! transaction-scoped advisory lock, so nodes starting together do not race: the first creates,
//! the others wait and find the work done.

use super::pg::PgConn;
use super::sql::{Value, transaction};
use crate::error::StoreError;

/// Every migration: the version it brings the database to, and its statements, in order.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (3, V3),
    (4, super::shared::COORDINATION_SCHEMA),
    (5, "ALTER TABLE audit ADD COLUMN mac BYTEA;"),
];

/// The version this build reads and writes: the last migration's.
pub(crate) const VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The advisory lock held while migrating ("cloister" + "KMS" folded into 64 bits; any fixed
/// value works as long as nothing else in the database uses it).
const MIGRATION_LOCK: i64 = 0x636c_6f69_4b4d_5331;

const V3: &str = "
CREATE TABLE keys (
    key_id TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    deletion_ms BIGINT,
    pending_days BIGINT,
    rotation_enabled BIGINT NOT NULL,
    rotation_period_days BIGINT NOT NULL,
    last_rotation_ms BIGINT NOT NULL,
    current_version BIGINT NOT NULL,
    policy TEXT NOT NULL,
    mac BYTEA,
    attrs TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE key_material (
    key_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    sealed BYTEA NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (key_id, version)
);
CREATE TABLE aliases (
    name TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    mac BYTEA
);
CREATE TABLE principals (
    access_key_id TEXT PRIMARY KEY,
    sealed_secret BYTEA NOT NULL,
    arn TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    mac BYTEA
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    entry TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    leaf_hash BYTEA
);
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE grants (
    grant_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    mac BYTEA
);
CREATE INDEX grants_by_key ON grants (key_id);
CREATE TABLE secrets (
    arn TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    mac BYTEA
);
CREATE TABLE secret_versions (
    arn TEXT NOT NULL,
    version_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    sealed BYTEA NOT NULL,
    mac BYTEA,
    PRIMARY KEY (arn, version_id)
);
CREATE TABLE parameters (
    arn TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    mac BYTEA
);
CREATE TABLE tree_heads (
    tree_size BIGINT PRIMARY KEY,
    root_hash BYTEA NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    signature BYTEA NOT NULL
);
CREATE TABLE audit_frontier (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    tree_size BIGINT NOT NULL,
    frontier BYTEA NOT NULL
);
";

/// What [`migrate`] found before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaState {
    /// No tables: a new store (now at [`VERSION`]).
    Empty,
    /// The store was at this version (now at [`VERSION`]).
    Version(i64),
}

/// Brings the database to [`VERSION`] (see the header); refuses a version this build does not
/// know, changing nothing.
pub(crate) fn migrate(conn: &PgConn) -> Result<SchemaState, StoreError> {
    transaction(conn, |tx| {
        tx.batch(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))?;
        tx.batch("CREATE TABLE IF NOT EXISTS kms_schema (version BIGINT NOT NULL)")?;
        let found = tx
            .query_opt("SELECT version FROM kms_schema", &[])?
            .map(|r| r.get::<i64>(0))
            .transpose()?;
        if let Some(v) = found
            && v > VERSION
        {
            return Err(StoreError::Corrupt(
                "the PostgreSQL store's schema version is newer than this cloister-kms knows: upgrade cloister-kms",
            ));
        }
        let from = found.unwrap_or(0);
        for (version, statements) in MIGRATIONS {
            if *version > from {
                tx.batch(statements)?;
            }
        }
        match found {
            None => tx.execute(
                "INSERT INTO kms_schema (version) VALUES (?1)",
                &[Value::Integer(VERSION)],
            )?,
            Some(_) => tx.execute(
                "UPDATE kms_schema SET version = ?1",
                &[Value::Integer(VERSION)],
            )?,
        };
        Ok(match found {
            None => SchemaState::Empty,
            Some(v) => SchemaState::Version(v),
        })
    })
}
