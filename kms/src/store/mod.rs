//! The durable store: every SQL statement of the KMS, over SQLite in the data directory.
//!
//! [`Store`] is a connection for the synchronous work (creating the data directory, loading the
//! in-memory [`State`], the CLI's principal and audit commands, reading principals added while a
//! server runs). [`Writer`] is the one thread that writes while the server runs, with group
//! commit, and holds the audit log's head (see `writer.rs`). The database runs in WAL mode with
//! `synchronous=FULL`, so a committed write is on disk and readers read while the writer writes.

mod audit_log;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags, params};
use zeroize::Zeroizing;

pub use self::audit_log::{AuditCheck, AuditSummary, BrokenAt, StoredEntry};
pub(crate) use self::writer::Writer;
use crate::error::{Result, SetupError, StoreError};
use crate::policy::KeyPolicy;
use crate::rootkey::RootKey;
use crate::state::{Alias, KeyRecord, KeyState, Principal, State, material_label, secret_label};

/// The database file inside the data directory.
const DB_FILE: &str = "kms.sqlite3";

const SCHEMA: &str = "
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

/// A connection to the store in a data directory.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    i64::try_from(cloister_attestation::Timestamp::now().as_millis()).unwrap_or(i64::MAX)
}

/// The ARN of the account's root principal.
pub(crate) fn root_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

fn open_connection(dir: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(dir.join(DB_FILE), flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
    }
    Ok(conn)
}

impl Store {
    /// Whether `dir` holds a store.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_FILE).exists()
    }

    /// Opens the store in `dir` for reading and writing, creating the schema if needed.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            conn: open_connection(dir, false)?,
        })
    }

    /// Opens the store in `dir` for reading only (beside a running server).
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        Ok(Self {
            conn: open_connection(dir, true)?,
        })
    }

    /// Opens (creating if needed) the data directory `dir` (0700): its root key, its store, and
    /// the admin principal of `account`.
    pub fn init(dir: &Path, account: &str) -> Result<(RootKey, Self), SetupError> {
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(SetupError::io(dir))?;
        }
        let root = RootKey::load_or_create(dir)?;
        let mut store = Self::open(dir)?;
        let tx = store
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let admin = root_arn(account);
        let exists: i64 = tx.query_row(
            "SELECT count(*) FROM principals WHERE arn = ?1",
            [&admin],
            |r| r.get(0),
        )?;
        if exists == 0 {
            insert_principal(&tx, &root, &Principal::generate(&admin)?)?;
        }
        tx.commit()?;
        Ok((root, store))
    }

    /// Creates a principal named `arn` with fresh credentials; returns them.
    pub fn add_principal(&self, root: &RootKey, arn: &str) -> Result<Principal> {
        let p = Principal::generate(arn)?;
        insert_principal(&self.conn, root, &p)?;
        Ok(p)
    }

    /// The admin principal of `account`, if the store has one.
    pub fn admin(&self, root: &RootKey, account: &str) -> Result<Option<Principal>> {
        let admin = root_arn(account);
        Ok(self.principals(root)?.into_iter().find(|p| p.arn == admin))
    }

    /// Every principal, oldest first, with its secret opened under the root key.
    pub fn principals(&self, root: &RootKey) -> Result<Vec<Principal>> {
        let mut stmt = self.conn.prepare(
            "SELECT access_key_id, sealed_secret, arn FROM principals ORDER BY created_ms",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (access_key_id, sealed, arn) = row?;
            let secret = root.open(&secret_label(&access_key_id), &sealed)?;
            let secret =
                Zeroizing::new(String::from_utf8(secret.to_vec()).map_err(StoreError::from)?);
            out.push(Principal {
                access_key_id,
                secret,
                arn,
            });
        }
        Ok(out)
    }

    /// Loads every table into memory, opening sealed values with the root key.
    pub(crate) fn load(&self, root: &RootKey) -> Result<State> {
        let mut state = State::default();
        let mut stmt = self.conn.prepare(
            "SELECT key_id, description, created_ms, state, deletion_ms, pending_days, rotation_enabled,
                    rotation_period_days, last_rotation_ms, current_version, policy FROM keys",
        )?;
        let rows = stmt.query_map([], |r| Ok(key_from_row(r)))?;
        for row in rows {
            let key = row??;
            state.keys.insert(key.key_id.clone(), key);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT key_id, version, sealed FROM key_material")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        for row in rows {
            let (key_id, version, sealed) = row?;
            let opened = root.open(&material_label(&key_id, version), &sealed)?;
            let material: [u8; 32] = opened
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("key material is not 32 bytes"))?;
            state
                .material
                .insert((key_id, version), Zeroizing::new(material));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, key_id, created_ms, updated_ms FROM aliases")?;
        let rows = stmt.query_map([], |r| {
            Ok(Alias {
                name: r.get(0)?,
                key_id: r.get(1)?,
                created_ms: r.get(2)?,
                updated_ms: r.get(3)?,
            })
        })?;
        for row in rows {
            let a = row?;
            state.aliases.insert(a.name.clone(), a);
        }
        state.principals = self
            .principals(root)?
            .into_iter()
            .map(|p| (p.access_key_id.clone(), p))
            .collect::<HashMap<_, _>>();
        Ok(state)
    }
}

/// A key row (`SELECT` of every column of `keys`, in order).
fn key_from_row(r: &rusqlite::Row<'_>) -> Result<KeyRecord, StoreError> {
    let policy_text: String = r.get(10)?;
    let policy = KeyPolicy::parse(&policy_text).map_err(|e| StoreError::Policy(Box::new(e)))?;
    Ok(KeyRecord {
        key_id: r.get(0)?,
        description: r.get(1)?,
        created_ms: r.get(2)?,
        state: KeyState::parse(&r.get::<_, String>(3)?)?,
        deletion_ms: r.get(4)?,
        pending_days: r.get(5)?,
        rotation_enabled: r.get(6)?,
        rotation_period_days: r.get(7)?,
        last_rotation_ms: r.get(8)?,
        current_version: r.get(9)?,
        policy_text,
        policy: Arc::new(policy),
    })
}

fn insert_principal(conn: &Connection, root: &RootKey, p: &Principal) -> Result<()> {
    let sealed = root.seal(&secret_label(&p.access_key_id), p.secret.as_bytes())?;
    conn.execute(
        "INSERT INTO principals (access_key_id, sealed_secret, arn, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![p.access_key_id, sealed, p.arn, now_ms()],
    )?;
    Ok(())
}

/// A key row, inserted or replaced.
fn put_key(tx: &Connection, k: &KeyRecord) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO keys (key_id, description, created_ms, state, deletion_ms, pending_days,
            rotation_enabled, rotation_period_days, last_rotation_ms, current_version, policy)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            k.key_id,
            k.description,
            k.created_ms,
            k.state.as_str(),
            k.deletion_ms,
            k.pending_days,
            k.rotation_enabled,
            k.rotation_period_days,
            k.last_rotation_ms,
            k.current_version,
            k.policy_text,
        ],
    )?;
    Ok(())
}

fn put_material(tx: &Connection, key_id: &str, version: u32, sealed: &[u8]) -> Result<()> {
    tx.execute(
        "INSERT INTO key_material (key_id, version, sealed, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![key_id, version, sealed, now_ms()],
    )?;
    Ok(())
}

fn put_alias(tx: &Connection, a: &Alias) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO aliases (name, key_id, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4)",
        params![a.name, a.key_id, a.created_ms, a.updated_ms],
    )?;
    Ok(())
}

fn delete_alias(tx: &Connection, name: &str) -> Result<()> {
    tx.execute("DELETE FROM aliases WHERE name = ?1", [name])?;
    Ok(())
}

fn delete_key(tx: &Connection, key_id: &str) -> Result<()> {
    for sql in [
        "DELETE FROM key_material WHERE key_id = ?1",
        "DELETE FROM aliases WHERE key_id = ?1",
        "DELETE FROM keys WHERE key_id = ?1",
    ] {
        tx.execute(sql, [key_id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> KeyRecord {
        let text = KeyPolicy::default_text("111122223333");
        KeyRecord {
            key_id: id.into(),
            description: "d".into(),
            created_ms: 1,
            state: KeyState::Disabled,
            deletion_ms: Some(5),
            pending_days: Some(7),
            rotation_enabled: true,
            rotation_period_days: 90,
            last_rotation_ms: 2,
            current_version: 2,
            policy: Arc::new(KeyPolicy::parse(&text).unwrap()),
            policy_text: text,
        }
    }

    #[test]
    fn init_creates_one_admin_and_principals_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), "111122223333").unwrap();
        let admin = store.admin(&root, "111122223333").unwrap().unwrap();
        assert!(admin.access_key_id().starts_with("AKIA"));
        assert_eq!(admin.arn(), "arn:aws:iam::111122223333:root");
        let added = store.add_principal(&root, "arn:aws:iam::1:role/r").unwrap();
        drop(store);
        let (root, again) = Store::init(dir.path(), "111122223333").unwrap();
        let all = again.principals(&root).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].secret(), admin.secret());
        assert_eq!(all[1].secret(), added.secret());
        assert!(again.admin(&root, "999999999999").unwrap().is_none());
    }

    #[tokio::test]
    async fn written_rows_load_back_and_deletes_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), "111122223333").unwrap();
        let writer = store.start_writer(&root, dir.path()).unwrap();
        let id = "0b1e2d3c-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
        let sealed = root.seal(&material_label(id, 2), &[9; 32]).unwrap();
        writer.put_key(key(id), Some((2, sealed))).await.unwrap();
        let alias = Alias {
            name: "alias/a".into(),
            key_id: id.into(),
            created_ms: 3,
            updated_ms: 4,
        };
        writer.put_alias(alias).await.unwrap();
        let state = Store::open_read_only(dir.path())
            .unwrap()
            .load(&root)
            .unwrap();
        let k = &state.keys[id];
        assert_eq!(
            (
                k.state,
                k.deletion_ms,
                k.current_version,
                k.rotation_period_days
            ),
            (KeyState::Disabled, Some(5), 2, 90)
        );
        assert_eq!(state.material[&(id.to_owned(), 2)].as_ref(), &[9; 32]);
        assert_eq!(state.aliases["alias/a"].updated_ms, 4);
        assert_eq!(state.principals.len(), 1);

        writer.delete_key(id.into()).await.unwrap();
        let state = Store::open_read_only(dir.path())
            .unwrap()
            .load(&root)
            .unwrap();
        assert!(state.keys.is_empty() && state.material.is_empty() && state.aliases.is_empty());
    }

    #[test]
    fn a_corrupt_row_is_a_store_error() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), "111122223333").unwrap();
        put_key(&store.conn, &key("k")).unwrap();
        store
            .conn
            .execute("UPDATE keys SET state = 'Melted'", [])
            .unwrap();
        let err = store.load(&root).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key store failure: unknown key state \"Melted\""
        );
        assert_eq!(err.aws_name(), "KMSInternalException");
    }
}
