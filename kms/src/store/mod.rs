//! The durable store: every SQL statement of the KMS, over SQLite in the data directory.
//!
//! [`Store`] is a connection for the synchronous work (creating the data directory, loading the
//! in-memory [`State`], the CLI's principal and audit commands, reading principals added while a
//! server runs). [`Writer`] is the one thread that writes while the server runs, with group
//! commit, and holds the audit log's head (see `writer.rs`). The database runs in WAL mode with
//! `synchronous=FULL`, so a committed write is on disk and readers read while the writer writes.
//!
//! Key, alias and principal rows carry a MAC under a key derived from the root key
//! (`integrity.rs`): a row that fails it is not loaded but set aside in [`State::tampered`], so
//! requests naming it are refused while the rest of the service works. The tables and their
//! versions, and the migration of a store from before row MACs, are in `schema.rs`. Secrets
//! Manager's secrets and versions and Parameter Store's parameters are MAC'd rows too; their
//! values are sealed by those services under KMS keys before they reach the store.

mod audit_log;
mod integrity;
mod pg;
mod pg_schema;
mod schema;
mod shared;
pub(crate) mod sql;
mod sqlite;
pub(crate) mod url;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};
use zeroize::Zeroizing;

pub use self::audit_log::{AuditCheck, AuditSummary, BrokenAt, StoredEntry};
pub(crate) use self::integrity::Checked;
use self::integrity::Table;
use self::pg::PgConn;
use self::schema::{Found, Migrated};
use self::sql::{Row, Sql, Value, int, text};
use self::url::{PgTarget, StoreUrl};
pub(crate) use self::writer::Writer;
use crate::error::{KmsError, Result, SetupError, StoreError};
use crate::policy::KeyPolicy;
use crate::rootkey::{RootKey, RootKeyFile, RowKey};
use crate::secrets::model::{Secret, SecretMeta, SecretVersion};
use crate::ssm::model::{Parameter, ParameterBody};
use crate::state::{
    Alias, Flaw, GrantRow, KeyRecord, KeyState, Principal, RowId, State, material_label,
    secret_label,
};

/// The database file inside the data directory.
const DB_FILE: &str = "kms.sqlite3";

/// A connection to the store.
pub struct Store {
    conn: Box<dyn Sql>,
    /// Where it is, for more connections to it.
    location: Location,
}

/// Where a store is.
#[derive(Debug, Clone)]
enum Location {
    /// This SQLite file.
    Sqlite(std::path::PathBuf),
    /// This PostgreSQL database.
    Postgres(Box<PgTarget>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.conn.engine())
            .finish()
    }
}

/// What [`Store::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Migration {
    /// The store predated row MACs: this many key, alias and principal rows were MAC'd as they
    /// were, so they are only as trustworthy as the file was before.
    Migrated {
        /// Rows MAC'd.
        rows: usize,
    },
    /// The store already has row MACs (or no tables yet): nothing done.
    UpToDate,
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
    open_file(&dir.join(DB_FILE), read_only)
}

fn open_file(file: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(file, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(conn)
}

/// Creates the data directory (0700) if it does not exist.
fn make_dir(dir: &Path) -> Result<(), SetupError> {
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(SetupError::io(dir))?;
    }
    Ok(())
}

/// Loads the root key of an existing store: it must exist (a new one could open none of the
/// store's rows) and be the store's.
fn existing_root_key(dir: &Path, file: &RootKeyFile) -> Result<RootKey, SetupError> {
    if !file.exists() {
        return Err(SetupError::RootKeyMissing {
            key: file.path().to_owned(),
            dir: dir.to_owned(),
        });
    }
    file.load()
}

impl Store {
    /// The SQLite connection of a SQLite store (tests reach behind the store with it).
    #[cfg(test)]
    pub(crate) fn sqlite(&self) -> &Connection {
        self.conn.as_sqlite().expect("a SQLite store")
    }

    /// Another connection to the same store (`read_only`: for reads beside the writer).
    pub(crate) fn reopen(&self, read_only: bool) -> Result<Self> {
        let conn: Box<dyn Sql> = match &self.location {
            Location::Sqlite(file) => Box::new(open_file(file, read_only)?),
            Location::Postgres(target) => Box::new(PgConn::connect(target)?),
        };
        Ok(Self {
            conn,
            location: self.location.clone(),
        })
    }

    /// The store `url` names (`None`: the SQLite file in `data_dir`), which must exist, for
    /// reading beside a server (the CLI's `audit` commands).
    pub fn open_existing(url: Option<&StoreUrl>, data_dir: &Path) -> Result<Self, SetupError> {
        match url {
            None => {
                let file = data_dir.join(DB_FILE);
                Self::open_existing_file(&file, data_dir)
            }
            Some(StoreUrl::Sqlite(file)) => Self::open_existing_file(file, data_dir),
            Some(StoreUrl::Postgres(target)) => {
                let conn = PgConn::connect(target)?;
                let found = conn
                    .query_opt(
                        "SELECT 1 FROM information_schema.tables WHERE table_name = 'kms_schema'",
                        &[],
                    )?
                    .is_some();
                if !found {
                    return Err(SetupError::NoStore(target.to_string()));
                }
                Ok(Self {
                    conn: Box::new(conn),
                    location: Location::Postgres(target.clone()),
                })
            }
        }
    }

    fn open_existing_file(file: &Path, data_dir: &Path) -> Result<Self, SetupError> {
        if !file.exists() {
            return Err(SetupError::NoStore(format!(
                "{} (data directory {})",
                file.display(),
                data_dir.display()
            )));
        }
        Ok(Self {
            conn: Box::new(open_file(file, true)?),
            location: Location::Sqlite(file.to_owned()),
        })
    }

    /// Opens (creating if needed) the store `url` names (`None`: the SQLite file in
    /// `data_dir`), its root key (`root_key`) and `account`'s admin; see
    /// [`Store::init_with_root_key`]. A PostgreSQL store is migrated to this build's schema at
    /// start (every node may start at once: the migration takes a lock); its root key file is
    /// made only with a new database, and every node must be given the same one.
    pub fn init_at(
        url: Option<&StoreUrl>,
        data_dir: &Path,
        root_key: &RootKeyFile,
        account: &str,
    ) -> Result<(RootKey, Self), SetupError> {
        match url {
            None => Self::init_with_root_key(data_dir, root_key, account),
            Some(StoreUrl::Sqlite(file)) => Self::init_sqlite(data_dir, file, root_key, account),
            Some(StoreUrl::Postgres(target)) => {
                make_dir(data_dir)?;
                Self::init_postgres(target, root_key, account)
            }
        }
    }

    fn init_postgres(
        target: &PgTarget,
        root_key: &RootKeyFile,
        account: &str,
    ) -> Result<(RootKey, Self), SetupError> {
        let conn = PgConn::connect(target)?;
        let found = pg_schema::migrate(&conn)?;
        let named = std::path::PathBuf::from(target.to_string());
        let root = if root_key.exists() {
            root_key.load()?
        } else if found == pg_schema::SchemaState::Empty && !schema::has_root_key_check(&conn)? {
            root_key.create()?
        } else {
            return Err(SetupError::RootKeyMissing {
                key: root_key.path().to_owned(),
                dir: named,
            });
        };
        let matches = sql::transaction(&conn, |tx| {
            shared::lock_audit(tx)?;
            if !schema::has_root_key_check(tx)? {
                // Only a store that holds nothing gets its check now; one whose check is gone
                // is refused, as on SQLite (else a node given another root key would write
                // its own check over a store sealed under the first).
                let held: i64 = tx
                    .query_one(
                        "SELECT (SELECT count(*) FROM principals) + (SELECT count(*) FROM keys) \
                         + (SELECT count(*) FROM audit)",
                        &[],
                    )?
                    .get(0)?;
                if held != 0 {
                    return Ok(false);
                }
                schema::put_root_key_check(tx, root.rows())?;
            } else if !schema::root_key_matches(tx, root.rows())? {
                return Ok(false);
            }
            ensure_admin(tx, &root, account)?;
            Ok::<_, KmsError>(true)
        })?;
        if !matches {
            return Err(SetupError::WrongRootKey {
                key: root_key.path().to_owned(),
                dir: named,
            });
        }
        if let pg_schema::SchemaState::Version(v) = found
            && v != pg_schema::VERSION
        {
            tracing::info!(store = %target, from = v, to = pg_schema::VERSION, "PostgreSQL store migrated");
        }
        Ok((
            root,
            Self {
                conn: Box::new(conn),
                location: Location::Postgres(Box::new(target.clone())),
            },
        ))
    }

    /// Whether several nodes may share this store (PostgreSQL).
    pub(crate) fn is_shared(&self) -> bool {
        self.conn.engine() == sql::Engine::Postgres
    }

    /// The shared store's generation (see `shared.rs`).
    pub(crate) fn generation(&self) -> Result<i64> {
        shared::stored_generation(&*self.conn)
    }

    /// Takes the store-wide lock for changing the state (see `shared.rs`).
    pub(crate) fn lock_mutations(&self) -> Result<()> {
        shared::lock_mutations(&*self.conn)
    }

    /// Records node `node_id` as alive at `now_ms`; how many nodes were seen within
    /// `window_ms` (see `shared.rs`).
    pub(crate) fn heartbeat(&self, node_id: &str, now_ms: i64, window_ms: i64) -> Result<u32> {
        shared::heartbeat(&*self.conn, node_id, now_ms, window_ms)
    }

    /// Releases [`Store::lock_mutations`].
    pub(crate) fn unlock_mutations(&self) -> Result<()> {
        shared::unlock_mutations(&*self.conn)
    }

    /// The whole state with the generation it is of, unless that is `known`: read in one
    /// snapshot, so the state is exactly that generation's.
    pub(crate) fn load_if_changed(
        &self,
        root: &RootKey,
        known: i64,
    ) -> Result<Option<(i64, State)>> {
        self.conn
            .batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let loaded = (|| -> Result<Option<(i64, State)>> {
            let stored = self.generation()?;
            if stored == known {
                return Ok(None);
            }
            Ok(Some((stored, self.load(root)?)))
        })();
        let ended = self
            .conn
            .batch(if loaded.is_ok() { "COMMIT" } else { "ROLLBACK" });
        let loaded = loaded?;
        ended?;
        Ok(loaded)
    }

    /// Whether `dir` holds a store.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_FILE).exists()
    }

    /// Opens the store that [`Store::init`] made in `dir`, for reading and writing.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            conn: Box::new(open_connection(dir, false)?),
            location: Location::Sqlite(dir.join(DB_FILE)),
        })
    }

    /// Opens the store in `dir` for reading only (beside a running server).
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        Ok(Self {
            conn: Box::new(open_connection(dir, true)?),
            location: Location::Sqlite(dir.join(DB_FILE)),
        })
    }

    /// [`Store::init_with_root_key`] with the root key in its default place,
    /// `<dir>/root.key`.
    pub fn init(dir: &Path, account: &str) -> Result<(RootKey, Self), SetupError> {
        Self::init_with_root_key(dir, &RootKeyFile::in_data_dir(dir), account)
    }

    /// Opens (creating if needed) the data directory `dir` (0700): its root key (`root_key`),
    /// its store, and the admin principal of `account`.
    ///
    /// The root key file is created (0600) only for a new store. Refused: a store whose root key
    /// file is missing or is another store's key, a store from before row MACs (see
    /// [`Store::migrate`]), a store of an unknown schema version.
    pub fn init_with_root_key(
        dir: &Path,
        root_key: &RootKeyFile,
        account: &str,
    ) -> Result<(RootKey, Self), SetupError> {
        Self::init_sqlite(dir, &dir.join(DB_FILE), root_key, account)
    }

    /// [`Store::init_with_root_key`] with the SQLite database in `file`.
    fn init_sqlite(
        dir: &Path,
        file: &Path,
        root_key: &RootKeyFile,
        account: &str,
    ) -> Result<(RootKey, Self), SetupError> {
        make_dir(dir)?;
        let mut conn = open_file(file, false)?;
        let root = match schema::found(&conn)? {
            Found::Empty => {
                let root = if root_key.exists() {
                    root_key.load()?
                } else {
                    root_key.create()?
                };
                schema::create(&mut conn, root.rows())?;
                root
            }
            Found::Current => existing_root_key(dir, root_key)?,
            Found::V1 => {
                let root = existing_root_key(dir, root_key)?;
                if !schema::root_key_matches(&conn, root.rows())? {
                    return Err(SetupError::WrongRootKey {
                        key: root_key.path().to_owned(),
                        dir: dir.to_owned(),
                    });
                }
                let n = schema::upgrade_v1(&mut conn, root.rows())?;
                tracing::info!(dir = %dir.display(), keys = n, "store upgraded to schema version 3 (key attributes, grants, secrets, parameters)");
                root
            }
            Found::V2 => {
                let root = existing_root_key(dir, root_key)?;
                if !schema::root_key_matches(&conn, root.rows())? {
                    return Err(SetupError::WrongRootKey {
                        key: root_key.path().to_owned(),
                        dir: dir.to_owned(),
                    });
                }
                schema::upgrade_v2(&mut conn)?;
                tracing::info!(dir = %dir.display(), "store upgraded to schema version 3 (secrets, parameters)");
                root
            }
            Found::Unauthenticated => {
                return Err(SetupError::NeedsMigration {
                    dir: dir.to_owned(),
                });
            }
            Found::Other(version) => {
                return Err(SetupError::UnknownSchema {
                    dir: dir.to_owned(),
                    version,
                });
            }
        };
        if !schema::root_key_matches(&conn, root.rows())? {
            return Err(SetupError::WrongRootKey {
                key: root_key.path().to_owned(),
                dir: dir.to_owned(),
            });
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        ensure_admin(&*tx, &root, account)?;
        tx.commit()?;
        Ok((
            root,
            Self {
                conn: Box::new(conn),
                location: Location::Sqlite(file.to_owned()),
            },
        ))
    }

    /// Brings the store in `dir` from before row MACs (schema version 0) to the current version,
    /// in one transaction: every key, alias and principal row is MAC'd as it is now, so it is
    /// only as trustworthy as the file was. The root key (`root_key`) must exist and open the
    /// store's sealed values. Run once, by the operator, after upgrading: nothing migrates on its
    /// own, or whoever can write the database could make it look unmigrated and have their edits
    /// MAC'd at the next start.
    pub fn migrate(dir: &Path, root_key: &RootKeyFile) -> Result<Migration, SetupError> {
        let mut conn = open_connection(dir, false)?;
        let root = existing_root_key(dir, root_key)?;
        let wrong_key = || SetupError::WrongRootKey {
            key: root_key.path().to_owned(),
            dir: dir.to_owned(),
        };
        match schema::migrate(&mut conn, &root)? {
            Migrated::Rows(rows) => {
                tracing::info!(
                    dir = %dir.display(),
                    rows,
                    "store migrated to row MACs: every key, alias and principal row was MAC'd as it was, so it is only as trustworthy as the file was before"
                );
                Ok(Migration::Migrated { rows })
            }
            Migrated::Empty => Ok(Migration::UpToDate),
            Migrated::Current if schema::root_key_matches(&conn, root.rows())? => {
                Ok(Migration::UpToDate)
            }
            Migrated::Current | Migrated::WrongRootKey => Err(wrong_key()),
            Migrated::Other(version) => Err(SetupError::UnknownSchema {
                dir: dir.to_owned(),
                version,
            }),
        }
    }

    /// Creates a principal named `arn` with fresh credentials; returns them.
    pub fn add_principal(&self, root: &RootKey, arn: &str) -> Result<Principal> {
        let p = Principal::generate(arn)?;
        insert_principal(&*self.conn, root, &p)?;
        Ok(p)
    }

    /// The admin principal of `account`, if the store has one whose row is intact.
    pub fn admin(&self, root: &RootKey, account: &str) -> Result<Option<Principal>> {
        let admin = root_arn(account);
        Ok(self.principals(root)?.into_iter().find(|p| p.arn == admin))
    }

    /// Every principal whose row is intact, oldest first, with its secret opened under the root
    /// key.
    pub fn principals(&self, root: &RootKey) -> Result<Vec<Principal>> {
        Ok(self.checked_principals(root)?.rows)
    }

    /// Every principal whose row is intact, oldest first, and the access key ids of those whose
    /// row failed its integrity check, with why.
    pub(crate) fn checked_principals(&self, root: &RootKey) -> Result<Checked<Principal>> {
        self.read_principals(root, None)
    }

    /// The principal with `access_key_id` (one row read and opened), or why its row failed its
    /// integrity check; both empty when there is no such principal.
    pub(crate) fn checked_principal(
        &self,
        root: &RootKey,
        access_key_id: &str,
    ) -> Result<Checked<Principal>> {
        self.read_principals(root, Some(access_key_id))
    }

    fn read_principals(&self, root: &RootKey, only: Option<&str>) -> Result<Checked<Principal>> {
        let read = integrity::read_rows(&*self.conn, root.rows(), Table::Principals, only, |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<Vec<u8>>(1)?,
                r.get::<String>(2)?,
                r.get::<i64>(3)?,
            ))
        })?;
        let mut rows = read.rows;
        rows.sort_by_key(|(_, _, _, created_ms)| *created_ms);
        let mut flawed = read.flawed;
        let mut out = Vec::with_capacity(rows.len());
        for (access_key_id, sealed, arn, _) in rows {
            let Ok(secret) = root.open(&secret_label(&access_key_id), &sealed) else {
                flawed.push((access_key_id, Flaw::SecretSeal));
                continue;
            };
            let secret =
                Zeroizing::new(String::from_utf8(secret.to_vec()).map_err(StoreError::from)?);
            out.push(Principal {
                access_key_id,
                secret,
                arn,
            });
        }
        Ok(Checked { rows: out, flawed })
    }

    /// The policy text of key `key_id` (for `policy check`), if the key exists; an error if its
    /// row fails its integrity check (the server refuses that key, so no report is made of it).
    pub fn key_policy(&self, root: &RootKey, key_id: &str) -> Result<Option<String>> {
        let keys = integrity::read_table(&*self.conn, root.rows(), Table::Keys, key_from_row)?;
        if let Some((_, flaw)) = keys.flawed.iter().find(|(id, _)| id == key_id) {
            return Err(crate::KmsError::Internal(format!(
                "error[KMS-INTEGRITY]: the stored record of key {key_id} (table keys) failed its integrity check: {flaw}"
            )));
        }
        Ok(keys
            .rows
            .into_iter()
            .find(|k| k.key_id == key_id)
            .map(|k| k.policy_text.to_string()))
    }

    /// The grants on key `key_id` as (grant id, body JSON), for `cloister-kms policy check`
    /// (each row's MAC checked with the root key). A grant row that fails its integrity check
    /// is an error: it might be on this key, and the report must not under-warn.
    pub fn key_grants(&self, root: &RootKey, key_id: &str) -> Result<Vec<(String, String)>> {
        let grants = integrity::read_table(&*self.conn, root.rows(), Table::Grants, |r| {
            Ok(GrantRow {
                grant_id: r.get(0)?,
                key_id: r.get(1)?,
                body: r.get(2)?,
                created_ms: r.get(3)?,
            })
        })?;
        if let Some((id, flaw)) = grants.flawed.first() {
            return Err(crate::KmsError::Internal(format!(
                "error[KMS-INTEGRITY]: the stored record of grant {id} (table grants) failed its integrity check: {flaw}"
            )));
        }
        Ok(grants
            .rows
            .into_iter()
            .filter(|g| g.key_id == key_id)
            .map(|g| (g.grant_id, g.body))
            .collect())
    }

    /// Loads every table into memory, checking each row's MAC and opening sealed values with
    /// the root key. Rows that fail are left out and listed in [`State::tampered`]; a key whose
    /// row or any of whose material fails is left out with all its material.
    pub(crate) fn load(&self, root: &RootKey) -> Result<State> {
        let rows = root.rows();
        let mut state = State::default();
        let keys = integrity::read_table(&*self.conn, rows, Table::Keys, key_from_row)?;
        for key in keys.rows {
            state.keys.insert(key.key_id.clone(), key);
        }
        for (id, flaw) in keys.flawed {
            state.tampered.insert(RowId::Key(id), flaw);
        }
        let material = self
            .conn
            .query("SELECT key_id, version, sealed FROM key_material", &[])?;
        for row in material {
            let (key_id, version, sealed): (String, u32, Vec<u8>) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            let Ok(opened) = root.open(&material_label(&key_id, version), &sealed) else {
                state
                    .tampered
                    .entry(RowId::Key(key_id))
                    .or_insert(Flaw::MaterialSeal(version));
                continue;
            };
            state.material.insert((key_id, version), Arc::new(opened));
        }
        for row in state.tampered.keys() {
            if let RowId::Key(id) = row {
                state.keys.remove(id);
            }
        }
        let keys = &state.keys;
        state.material.retain(|(id, _), _| keys.contains_key(id));

        let grants = integrity::read_table(&*self.conn, rows, Table::Grants, |r| {
            Ok(GrantRow {
                grant_id: r.get(0)?,
                key_id: r.get(1)?,
                body: r.get(2)?,
                created_ms: r.get(3)?,
            })
        })?;
        for g in grants.rows {
            state.grants.insert(g.grant_id.clone(), g);
        }
        for (id, flaw) in grants.flawed {
            state.tampered.insert(RowId::Grant(id), flaw);
        }

        let aliases = integrity::read_table(&*self.conn, rows, Table::Aliases, |r| {
            Ok(Alias {
                name: r.get(0)?,
                key_id: r.get(1)?,
                created_ms: r.get(2)?,
                updated_ms: r.get(3)?,
            })
        })?;
        for a in aliases.rows {
            state.aliases.insert(a.name.clone(), a);
        }
        for (name, flaw) in aliases.flawed {
            state.tampered.insert(RowId::Alias(name), flaw);
        }

        load_secrets(&*self.conn, rows, &mut state)?;
        load_parameters(&*self.conn, rows, &mut state)?;

        let principals = self.checked_principals(root)?;
        state.principals = principals
            .rows
            .into_iter()
            .map(|p| (p.access_key_id.clone(), p))
            .collect::<HashMap<_, _>>();
        for (id, flaw) in principals.flawed {
            state.tampered.insert(RowId::Principal(id), flaw);
        }
        Ok(state)
    }
}

/// Loads the secrets and their versions: a secret whose row or any of whose versions fails its
/// MAC is set aside whole.
fn load_secrets(conn: &dyn Sql, rows: &RowKey, state: &mut State) -> Result<()> {
    let metas = integrity::read_table(conn, rows, Table::Secrets, |r| {
        let arn: String = r.get(0)?;
        let meta: SecretMeta = serde_json::from_str(&r.get::<String>(1)?)
            .map_err(|_| StoreError::Corrupt("a secret's metadata does not decode"))?;
        Ok(Secret {
            arn,
            meta: Arc::new(meta),
            versions: BTreeMap::new(),
        })
    })?;
    for s in metas.rows {
        state.secrets.insert(s.arn.clone(), s);
    }
    for (arn, flaw) in metas.flawed {
        state.tampered.insert(RowId::Secret(arn), flaw);
    }
    let versions = integrity::read_table(conn, rows, Table::SecretVersions, |r| {
        Ok((
            r.get::<String>(0)?,
            SecretVersion {
                version_id: r.get(1)?,
                created_ms: r.get(2)?,
                sealed: r.get(3)?,
            },
        ))
    })?;
    for (arn, v) in versions.rows {
        if let Some(s) = state.secrets.get_mut(&arn) {
            s.versions.insert(v.version_id.clone(), Arc::new(v));
        }
    }
    for (arn, flaw) in versions.flawed {
        state.secrets.remove(&arn);
        state.tampered.insert(RowId::SecretVersion(arn), flaw);
    }
    Ok(())
}

/// Loads the parameters.
fn load_parameters(conn: &dyn Sql, rows: &RowKey, state: &mut State) -> Result<()> {
    let params = integrity::read_table(conn, rows, Table::Parameters, |r| {
        let arn: String = r.get(0)?;
        let body: ParameterBody = serde_json::from_str(&r.get::<String>(1)?)
            .map_err(|_| StoreError::Corrupt("a parameter does not decode"))?;
        Ok(Parameter {
            arn,
            body: Arc::new(body),
        })
    })?;
    for p in params.rows {
        state.parameters.insert(p.arn.clone(), p);
    }
    for (arn, flaw) in params.flawed {
        state.tampered.insert(RowId::Parameter(arn), flaw);
    }
    Ok(())
}

/// A secret's metadata row, inserted or replaced, with its MAC.
fn put_secret_meta(tx: &dyn Sql, rows: &RowKey, arn: &str, meta: &SecretMeta) -> Result<()> {
    let body = serde_json::to_string(meta).map_err(StoreError::from)?;
    integrity::put_row(
        tx,
        rows,
        Table::Secrets,
        vec![Value::Text(arn.to_owned()), Value::Text(body)],
    )
}

/// A secret version row, inserted or replaced, with its MAC.
fn put_secret_version(tx: &dyn Sql, rows: &RowKey, arn: &str, v: &SecretVersion) -> Result<()> {
    integrity::put_row(
        tx,
        rows,
        Table::SecretVersions,
        vec![
            Value::Text(arn.to_owned()),
            Value::Text(v.version_id.clone()),
            Value::Integer(v.created_ms),
            Value::Blob(v.sealed.clone()),
        ],
    )
}

fn delete_secret_version(tx: &dyn Sql, arn: &str, version_id: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM secret_versions WHERE arn = ?1 AND version_id = ?2",
        &[text(arn), text(version_id)],
    )?;
    Ok(())
}

fn delete_secret(tx: &dyn Sql, arn: &str) -> Result<()> {
    for sql in [
        "DELETE FROM secret_versions WHERE arn = ?1",
        "DELETE FROM secrets WHERE arn = ?1",
    ] {
        tx.execute(sql, &[text(arn)])?;
    }
    Ok(())
}

/// A parameter row, inserted or replaced, with its MAC.
fn put_parameter(tx: &dyn Sql, rows: &RowKey, p: &Parameter) -> Result<()> {
    let body = serde_json::to_string(&*p.body).map_err(StoreError::from)?;
    integrity::put_row(
        tx,
        rows,
        Table::Parameters,
        vec![Value::Text(p.arn.clone()), Value::Text(body)],
    )
}

fn delete_parameter(tx: &dyn Sql, arn: &str) -> Result<()> {
    tx.execute("DELETE FROM parameters WHERE arn = ?1", &[text(arn)])?;
    Ok(())
}

/// A key row (`SELECT` of [`Table::Keys`]' columns, in order), after its MAC verified.
fn key_from_row(r: &Row) -> Result<KeyRecord, StoreError> {
    let policy_text: String = r.get(10)?;
    let policy = KeyPolicy::parse(&policy_text).map_err(|e| StoreError::Policy(Box::new(e)))?;
    Ok(KeyRecord {
        key_id: r.get(0)?,
        description: r.get(1)?,
        created_ms: r.get(2)?,
        state: KeyState::parse(&r.get::<String>(3)?)?,
        deletion_ms: r.get(4)?,
        pending_days: r.get(5)?,
        rotation_enabled: r.get(6)?,
        rotation_period_days: r.get(7)?,
        last_rotation_ms: r.get(8)?,
        current_version: r.get(9)?,
        policy_text: policy_text.into(),
        policy: Arc::new(policy),
        attrs: Arc::new(
            serde_json::from_str(&r.get::<String>(11)?)
                .map_err(|_| StoreError::Corrupt("a key's attributes do not decode"))?,
        ),
    })
}

/// A key row's columns, in [`Table::Keys`]' order.
fn key_values(k: &KeyRecord) -> Vec<Value> {
    vec![
        Value::Text(k.key_id.clone()),
        Value::Text(k.description.clone()),
        Value::Integer(k.created_ms),
        Value::Text(k.state.as_str().to_owned()),
        k.deletion_ms.map_or(Value::Null, Value::Integer),
        k.pending_days.map_or(Value::Null, Value::Integer),
        Value::Integer(i64::from(k.rotation_enabled)),
        Value::Integer(k.rotation_period_days),
        Value::Integer(k.last_rotation_ms),
        Value::Integer(i64::from(k.current_version)),
        Value::Text(k.policy_text.to_string()),
        Value::Text(serde_json::to_string(&*k.attrs).unwrap_or_else(|_| "{}".into())),
    ]
}

/// A grant row's columns, in [`Table::Grants`]' order.
fn grant_values(g: &GrantRow) -> Vec<Value> {
    vec![
        Value::Text(g.grant_id.clone()),
        Value::Text(g.key_id.clone()),
        Value::Text(g.body.clone()),
        Value::Integer(g.created_ms),
    ]
}

/// A grant row, inserted or replaced, with its MAC.
fn put_grant(tx: &dyn Sql, rows: &RowKey, g: &GrantRow) -> Result<()> {
    integrity::put_row(tx, rows, Table::Grants, grant_values(g))
}

fn delete_grant(tx: &dyn Sql, grant_id: &str) -> Result<()> {
    tx.execute("DELETE FROM grants WHERE grant_id = ?1", &[text(grant_id)])?;
    Ok(())
}

/// An alias row's columns, in [`Table::Aliases`]' order.
fn alias_values(a: &Alias) -> Vec<Value> {
    vec![
        Value::Text(a.name.clone()),
        Value::Text(a.key_id.clone()),
        Value::Integer(a.created_ms),
        Value::Integer(a.updated_ms),
    ]
}

fn insert_principal(conn: &dyn Sql, root: &RootKey, p: &Principal) -> Result<()> {
    let sealed = root.seal(&secret_label(&p.access_key_id), p.secret.as_bytes())?;
    let values = vec![
        Value::Text(p.access_key_id.clone()),
        Value::Blob(sealed),
        Value::Text(p.arn.clone()),
        Value::Integer(now_ms()),
    ];
    integrity::put_row(conn, root.rows(), Table::Principals, values)
}

/// Adds `account`'s admin principal unless the store has it (in the caller's transaction, which
/// keeps a second process from adding another at the same time).
fn ensure_admin(tx: &dyn Sql, root: &RootKey, account: &str) -> Result<()> {
    let admin = root_arn(account);
    let exists: i64 = tx
        .query_one(
            "SELECT count(*) FROM principals WHERE arn = ?1",
            &[text(admin.as_str())],
        )?
        .get(0)?;
    if exists == 0 {
        insert_principal(tx, root, &Principal::generate(&admin)?)?;
    }
    Ok(())
}

/// A key row, inserted or replaced, with its MAC.
fn put_key(tx: &dyn Sql, rows: &RowKey, k: &KeyRecord) -> Result<()> {
    integrity::put_row(tx, rows, Table::Keys, key_values(k))
}

fn put_material(tx: &dyn Sql, key_id: &str, version: u32, sealed: &[u8]) -> Result<()> {
    tx.execute(
        "INSERT INTO key_material (key_id, version, sealed, created_ms) VALUES (?1, ?2, ?3, ?4)",
        &[
            text(key_id),
            int(version),
            Value::Blob(sealed.to_vec()),
            int(now_ms()),
        ],
    )?;
    Ok(())
}

fn delete_material(tx: &dyn Sql, key_id: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM key_material WHERE key_id = ?1",
        &[text(key_id)],
    )?;
    Ok(())
}

/// An alias row, inserted or replaced, with its MAC.
fn put_alias(tx: &dyn Sql, rows: &RowKey, a: &Alias) -> Result<()> {
    integrity::put_row(tx, rows, Table::Aliases, alias_values(a))
}

fn delete_alias(tx: &dyn Sql, name: &str) -> Result<()> {
    tx.execute("DELETE FROM aliases WHERE name = ?1", &[text(name)])?;
    Ok(())
}

fn delete_key(tx: &dyn Sql, key_id: &str) -> Result<()> {
    for sql in [
        "DELETE FROM key_material WHERE key_id = ?1",
        "DELETE FROM aliases WHERE key_id = ?1",
        "DELETE FROM grants WHERE key_id = ?1",
        "DELETE FROM keys WHERE key_id = ?1",
    ] {
        tx.execute(sql, &[text(key_id)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "111122223333";
    const ROLE: &str = "arn:aws:iam::111122223333:role/r";

    fn key(id: &str) -> KeyRecord {
        let text = KeyPolicy::default_text(ACCOUNT);
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
            policy_text: text.into(),
            attrs: Arc::default(),
        }
    }

    fn alias(name: &str, key_id: &str) -> Alias {
        Alias {
            name: name.into(),
            key_id: key_id.into(),
            created_ms: 3,
            updated_ms: 4,
        }
    }

    /// A store with two rows in each MAC'd table: keys `k1` (no deletion date, so a NULL
    /// column) and `k2`, each with material version 1; aliases `alias/a` → k1 and `alias/b` →
    /// k2; the admin and a role principal. Returns the role principal's access key id too.
    fn populated() -> (tempfile::TempDir, RootKey, Store, String) {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), ACCOUNT).unwrap();
        let mut k1 = key("k1");
        k1.deletion_ms = None;
        for k in [k1, key("k2")] {
            put_key(store.sqlite(), root.rows(), &k).unwrap();
            let sealed = root.seal(&material_label(&k.key_id, 1), &[1; 32]).unwrap();
            put_material(store.sqlite(), &k.key_id, 1, &sealed).unwrap();
        }
        put_alias(store.sqlite(), root.rows(), &alias("alias/a", "k1")).unwrap();
        put_alias(store.sqlite(), root.rows(), &alias("alias/b", "k2")).unwrap();
        for arn in ["s1", "s2"] {
            let meta = SecretMeta {
                name: arn.into(),
                ..SecretMeta::default()
            };
            put_secret_meta(store.sqlite(), root.rows(), arn, &meta).unwrap();
            let v = SecretVersion {
                version_id: format!("{arn}-v1"),
                created_ms: 5,
                sealed: vec![9; 40],
            };
            put_secret_version(store.sqlite(), root.rows(), arn, &v).unwrap();
        }
        for arn in ["p1", "p2"] {
            let p = Parameter {
                arn: arn.into(),
                body: Arc::new(ParameterBody {
                    name: arn.into(),
                    ..ParameterBody::default()
                }),
            };
            put_parameter(store.sqlite(), root.rows(), &p).unwrap();
        }
        let role = store.add_principal(&root, ROLE).unwrap();
        (dir, root, store, role.access_key_id)
    }

    /// The first row of each table that tests tamper with, and the one that must still load.
    fn victims(role: &str) -> [(Table, String, RowId); 6] {
        [
            (Table::Secrets, "s1".into(), RowId::Secret("s2".into())),
            (
                Table::SecretVersions,
                "s1".into(),
                RowId::SecretVersion("s2".into()),
            ),
            (
                Table::Parameters,
                "p1".into(),
                RowId::Parameter("p2".into()),
            ),
            (Table::Keys, "k1".into(), RowId::Key("k2".into())),
            (
                Table::Aliases,
                "alias/a".into(),
                RowId::Alias("alias/b".into()),
            ),
            (
                Table::Principals,
                role.into(),
                RowId::Principal(String::new()),
            ),
        ]
    }

    fn row_id(table: Table, id: &str) -> RowId {
        match table {
            Table::Keys => RowId::Key(id.into()),
            Table::Aliases => RowId::Alias(id.into()),
            Table::Principals => RowId::Principal(id.into()),
            Table::Grants => RowId::Grant(id.into()),
            Table::Secrets => RowId::Secret(id.into()),
            Table::SecretVersions => RowId::SecretVersion(id.into()),
            Table::Parameters => RowId::Parameter(id.into()),
        }
    }

    /// Whether `row` is loaded as a valid row.
    fn loaded(state: &State, row: &RowId) -> bool {
        match row {
            RowId::Key(id) => state.keys.contains_key(id),
            RowId::Alias(name) => state.aliases.contains_key(name),
            // The admin: the one principal that is not the role.
            RowId::Principal(id) if id.is_empty() => state
                .principals
                .values()
                .any(|p| p.arn == root_arn(ACCOUNT)),
            RowId::Principal(id) => state.principals.contains_key(id),
            RowId::Grant(id) => state.grants.contains_key(id),
            RowId::Secret(arn) => state.secrets.contains_key(arn),
            // A secret is loaded with its versions or not at all.
            RowId::SecretVersion(arn) => state
                .secrets
                .get(arn)
                .is_some_and(|s| !s.versions.is_empty()),
            RowId::Parameter(arn) => state.parameters.contains_key(arn),
        }
    }

    #[test]
    fn init_creates_one_admin_and_principals_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), ACCOUNT).unwrap();
        let admin = store.admin(&root, ACCOUNT).unwrap().unwrap();
        assert!(admin.access_key_id().starts_with("AKIA"));
        assert_eq!(admin.arn(), "arn:aws:iam::111122223333:root");
        let added = store.add_principal(&root, ROLE).unwrap();
        drop(store);
        let (root, again) = Store::init(dir.path(), ACCOUNT).unwrap();
        let all = again.principals(&root).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].secret(), admin.secret());
        assert_eq!(all[1].secret(), added.secret());
        assert!(again.admin(&root, "999999999999").unwrap().is_none());
    }

    #[tokio::test]
    async fn keys_written_together_land_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), ACCOUNT).unwrap();
        let writer = store.start_writer(&root, dir.path()).unwrap();
        let seal = |id: &str| root.seal(&material_label(id, 1), &[1; 32]).unwrap();
        writer
            .put_keys(vec![(key("k1"), vec![(1, seal("k1"))])])
            .await
            .unwrap();
        // k2 first, then a version k1 already has: the second write fails, so k2 must not land.
        let err = writer
            .put_keys(vec![
                (key("k2"), vec![(1, seal("k2"))]),
                (key("k1"), vec![(1, seal("k1"))]),
            ])
            .await;
        assert!(err.is_err());
        let state = Store::open_read_only(dir.path())
            .unwrap()
            .load(&root)
            .unwrap();
        assert!(state.keys.contains_key("k1") && !state.keys.contains_key("k2"));
        assert!(!state.material.contains_key(&("k2".to_owned(), 1)));
    }

    #[tokio::test]
    async fn written_rows_load_back_with_their_macs_and_deletes_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), ACCOUNT).unwrap();
        let writer = store.start_writer(&root, dir.path()).unwrap();
        let id = "0b1e2d3c-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
        let sealed = root.seal(&material_label(id, 2), &[9; 32]).unwrap();
        writer
            .put_keys(vec![(key(id), vec![(2, sealed)])])
            .await
            .unwrap();
        writer.put_alias(alias("alias/a", id)).await.unwrap();
        let reader = Store::open_read_only(dir.path()).unwrap();
        let state = reader.load(&root).unwrap();
        assert!(state.tampered.is_empty(), "{:?}", state.tampered);
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
        assert_eq!(state.material[&(id.to_owned(), 2)].as_slice(), &[9; 32]);
        assert_eq!(state.aliases["alias/a"].updated_ms, 4);
        assert_eq!(state.principals.len(), 1);
        let macs: i64 = reader
            .sqlite()
            .query_row(
                "SELECT (SELECT count(*) FROM keys WHERE length(mac) = 32)
                      + (SELECT count(*) FROM aliases WHERE length(mac) = 32)
                      + (SELECT count(*) FROM principals WHERE length(mac) = 32)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(macs, 3);

        writer.delete_key(id.into()).await.unwrap();
        let state = reader.load(&root).unwrap();
        assert!(state.keys.is_empty() && state.material.is_empty() && state.aliases.is_empty());
    }

    #[test]
    fn a_change_to_any_column_of_any_row_sets_that_row_aside() {
        let (_dir, root, store, role) = populated();
        assert!(store.load(&root).unwrap().tampered.is_empty());
        for (table, victim, bystander) in victims(&role) {
            let id_column = table.columns()[0];
            for column in table.columns().iter().chain(&["mac"]) {
                let (_dir, root, store, role) = populated();
                let victim = if table == Table::Principals {
                    role.clone()
                } else {
                    victim.clone()
                };
                // Text grows, integers grow, blobs are replaced, NULL becomes 7.
                let sql = format!(
                    "UPDATE {t} SET {c} = CASE typeof({c}) WHEN 'text' THEN {c} || 'x'
                        WHEN 'integer' THEN {c} + 1 WHEN 'blob' THEN randomblob(length({c}))
                        ELSE 7 END WHERE {id_column} = ?1",
                    t = table.name(),
                    c = column,
                );
                assert_eq!(store.sqlite().execute(&sql, [&victim]).unwrap(), 1, "{sql}");
                let state = store.load(&root).unwrap();
                let now_named = if *column == id_column {
                    format!("{victim}x")
                } else {
                    victim.clone()
                };
                let flagged = row_id(table, &now_named);
                assert_eq!(
                    state.tampered.get(&flagged),
                    Some(&Flaw::BadMac),
                    "{}.{column}: {:?}",
                    table.name(),
                    state.tampered
                );
                assert_eq!(state.tampered.len(), 1, "{:?}", state.tampered);
                assert!(!loaded(&state, &flagged), "{}.{column}", table.name());
                assert!(!loaded(&state, &row_id(table, &victim)));
                assert!(loaded(&state, &bystander), "{}.{column}", table.name());
            }
        }
        // A tampered key takes its material out of memory with it.
        store
            .sqlite()
            .execute("UPDATE keys SET state = 'Enabled' WHERE key_id = 'k2'", [])
            .unwrap();
        let state = store.load(&root).unwrap();
        assert!(!state.material.contains_key(&("k2".to_owned(), 1)));
        assert!(state.material.contains_key(&("k1".to_owned(), 1)));
    }

    #[test]
    fn a_row_without_a_mac_is_set_aside() {
        let (_dir, root, store, role) = populated();
        for (table, victim, _) in victims(&role) {
            let sql = format!(
                "UPDATE {} SET mac = NULL WHERE {} = ?1",
                table.name(),
                table.columns()[0]
            );
            store.sqlite().execute(&sql, [&victim]).unwrap();
        }
        let state = store.load(&root).unwrap();
        for (table, victim, bystander) in victims(&role) {
            assert_eq!(
                state.tampered.get(&row_id(table, &victim)),
                Some(&Flaw::NoMac)
            );
            assert!(loaded(&state, &bystander));
        }
    }

    #[test]
    fn a_valid_row_copied_to_another_identity_is_set_aside() {
        let (_dir, root, store, role) = populated();
        let copies = [
            (Table::Keys, "k1", "k3"),
            (Table::Aliases, "alias/a", "alias/c"),
            (Table::Principals, role.as_str(), "AKIACOPYCOPYCOPYCOPY"),
        ];
        for (table, from, to) in copies {
            let rest = table.columns()[1..].join(", ");
            let sql = format!(
                "INSERT INTO {t} ({id}, {rest}, mac) SELECT ?2, {rest}, mac FROM {t} WHERE {id} = ?1",
                t = table.name(),
                id = table.columns()[0],
            );
            store.sqlite().execute(&sql, [from, to]).unwrap();
        }
        // And one row's MAC put on another row of the same table.
        store
            .sqlite()
            .execute(
                "UPDATE aliases SET mac = (SELECT mac FROM aliases WHERE name = 'alias/a') WHERE name = 'alias/b'",
                [],
            )
            .unwrap();
        let state = store.load(&root).unwrap();
        for (table, from, to) in copies {
            assert_eq!(
                state.tampered.get(&row_id(table, to)),
                Some(&Flaw::BadMac),
                "{to}"
            );
            assert!(loaded(&state, &row_id(table, from)), "{from}");
        }
        assert_eq!(
            state.tampered.get(&RowId::Alias("alias/b".into())),
            Some(&Flaw::BadMac)
        );
        assert_eq!(state.tampered.len(), 4);
    }

    #[test]
    fn a_sealed_value_that_does_not_open_sets_its_row_aside() {
        let (_dir, root, store, role) = populated();
        // k1's material under k2's name: authentic bytes, wrong identity.
        store
            .sqlite()
            .execute(
                "UPDATE key_material SET sealed = (SELECT sealed FROM key_material WHERE key_id = 'k1')
                 WHERE key_id = 'k2'",
                [],
            )
            .unwrap();
        // The admin's sealed secret on the role's row, with a MAC recomputed for it (as only a
        // holder of the root key could): the seal's label still refuses it.
        let (admin_sealed, created): (Vec<u8>, i64) = store
            .sqlite()
            .query_row(
                "SELECT sealed_secret, created_ms FROM principals WHERE arn = ?1",
                [root_arn(ACCOUNT)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let values = vec![
            Value::Text(role.clone()),
            Value::Blob(admin_sealed),
            Value::Text(ROLE.into()),
            Value::Integer(created),
        ];
        store
            .sqlite()
            .execute("DELETE FROM principals WHERE access_key_id = ?1", [&role])
            .unwrap();
        integrity::put_row(store.sqlite(), root.rows(), Table::Principals, values).unwrap();

        let state = store.load(&root).unwrap();
        assert_eq!(
            state.tampered.get(&RowId::Key("k2".into())),
            Some(&Flaw::MaterialSeal(1))
        );
        assert!(
            !state.keys.contains_key("k2") && !state.material.contains_key(&("k2".to_owned(), 1))
        );
        assert!(state.keys.contains_key("k1"));
        assert_eq!(
            state.tampered.get(&RowId::Principal(role.clone())),
            Some(&Flaw::SecretSeal)
        );
        assert_eq!(state.principals.len(), 1);
        let checked = store.checked_principals(&root).unwrap();
        assert_eq!(
            (checked.rows.len(), checked.flawed),
            (1, vec![(role, Flaw::SecretSeal)])
        );
    }

    #[test]
    fn an_authentic_row_that_does_not_decode_is_a_store_error() {
        let (_dir, root, store, _) = populated();
        // Only a holder of the root key can write this row: it is a bug, not tampering.
        let mut values = key_values(&key("k1"));
        values[3] = Value::Text("Melted".into());
        integrity::put_row(store.sqlite(), root.rows(), Table::Keys, values).unwrap();
        let err = store.load(&root).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key store failure: unknown key state \"Melted\""
        );
        assert_eq!(err.aws_name(), "KMSInternalException");
    }

    /// The tables as cloister-kms wrote them before row MACs (schema version 0).
    const OLD_SCHEMA: &str = "
        CREATE TABLE keys (key_id TEXT PRIMARY KEY, description TEXT NOT NULL,
            created_ms INTEGER NOT NULL, state TEXT NOT NULL, deletion_ms INTEGER,
            pending_days INTEGER, rotation_enabled INTEGER NOT NULL,
            rotation_period_days INTEGER NOT NULL, last_rotation_ms INTEGER NOT NULL,
            current_version INTEGER NOT NULL, policy TEXT NOT NULL);
        CREATE TABLE key_material (key_id TEXT NOT NULL, version INTEGER NOT NULL,
            sealed BLOB NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (key_id, version));
        CREATE TABLE aliases (name TEXT PRIMARY KEY, key_id TEXT NOT NULL,
            created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
        CREATE TABLE principals (access_key_id TEXT PRIMARY KEY, sealed_secret BLOB NOT NULL,
            arn TEXT NOT NULL, created_ms INTEGER NOT NULL);
        CREATE TABLE audit (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
    ";

    /// A data directory as the version before row MACs left it: root.key, and a store with the
    /// admin, a role principal, key `k1` with material, and `alias/a`.
    fn old_store() -> (tempfile::TempDir, RootKey) {
        let dir = tempfile::tempdir().unwrap();
        let root = RootKeyFile::in_data_dir(dir.path()).create().unwrap();
        let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
        db.execute_batch(OLD_SCHEMA).unwrap();
        for (id, secret, arn) in [
            ("AKIAADMINADMINADMIN1", "admin-secret", root_arn(ACCOUNT)),
            ("AKIAROLEROLEROLEROLE", "role-secret", ROLE.to_owned()),
        ] {
            let sealed = root.seal(&secret_label(id), secret.as_bytes()).unwrap();
            db.execute(
                "INSERT INTO principals VALUES (?1, ?2, ?3, 1)",
                rusqlite::params![id, sealed, arn],
            )
            .unwrap();
        }
        let k = key("k1");
        db.execute(
            "INSERT INTO keys VALUES ('k1', 'd', 1, 'Enabled', NULL, NULL, 0, 365, 1, 1, ?1)",
            [&k.policy_text],
        )
        .unwrap();
        let sealed = root.seal(&material_label("k1", 1), &[5; 32]).unwrap();
        db.execute("INSERT INTO key_material VALUES ('k1', 1, ?1, 1)", [sealed])
            .unwrap();
        db.execute("INSERT INTO aliases VALUES ('alias/a', 'k1', 1, 1)", [])
            .unwrap();
        (dir, root)
    }

    fn user_version(dir: &Path) -> i64 {
        Connection::open(dir.join(DB_FILE))
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_store_from_before_row_macs_is_migrated_once_by_the_operator() {
        let (dir, root) = old_store();
        let d = dir.path();
        let default_key = RootKeyFile::in_data_dir(d);
        // Never on its own: opening it names the command.
        let err = Store::init(d, ACCOUNT).unwrap_err();
        assert!(matches!(err, SetupError::NeedsMigration { .. }), "{err}");
        assert!(err.to_string().contains("cloister-kms migrate"), "{err}");

        // Not with a key that opens none of its sealed values, nor without a key.
        let other = RootKeyFile::new(d, Some(&d.join("other.key")));
        other.create().unwrap();
        let err = Store::migrate(d, &other).unwrap_err();
        assert!(matches!(err, SetupError::WrongRootKey { .. }), "{err}");
        let missing = RootKeyFile::new(d, Some(&d.join("missing.key")));
        let err = Store::migrate(d, &missing).unwrap_err();
        assert!(matches!(err, SetupError::RootKeyMissing { .. }), "{err}");
        assert!(!missing.exists());
        assert_eq!(user_version(d), 0);

        assert_eq!(
            Store::migrate(d, &default_key).unwrap(),
            Migration::Migrated { rows: 4 }
        );
        assert_eq!(user_version(d), schema::VERSION);
        assert_eq!(
            Store::migrate(d, &default_key).unwrap(),
            Migration::UpToDate
        );

        let (again, store) = Store::init(d, ACCOUNT).unwrap();
        assert_eq!(again.rows().sign(b"x"), root.rows().sign(b"x"));
        let state = store.load(&root).unwrap();
        assert!(state.tampered.is_empty(), "{:?}", state.tampered);
        assert_eq!(state.keys["k1"].state, KeyState::Enabled);
        assert_eq!(state.material[&("k1".to_owned(), 1)].as_slice(), &[5; 32]);
        assert_eq!(state.aliases["alias/a"].key_id, "k1");
        assert_eq!(
            state.principals["AKIAROLEROLEROLEROLE"].secret(),
            "role-secret"
        );
        // init found the old admin: no second one.
        assert_eq!(state.principals.len(), 2);

        // Made to look unmigrated again (as whoever writes the database could): refused, not
        // re-MAC'd.
        store
            .sqlite()
            .pragma_update(None, "user_version", 0)
            .unwrap();
        let err = Store::init(d, ACCOUNT).unwrap_err();
        assert!(matches!(err, SetupError::NeedsMigration { .. }), "{err}");
    }

    #[test]
    fn the_root_key_is_made_only_with_a_new_store_and_must_be_the_stores() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("kms");
        let outside = RootKeyFile::new(&data, Some(&dir.path().join("root.key")));
        let (root, store) = Store::init_with_root_key(&data, &outside, ACCOUNT).unwrap();
        assert!(outside.exists() && !data.join(crate::rootkey::ROOT_KEY_FILE).exists());
        store.add_principal(&root, ROLE).unwrap();
        drop(store);

        // Without --root-key: refused, and no key is made beside the store.
        let err = Store::init(&data, ACCOUNT).unwrap_err();
        assert!(matches!(err, SetupError::RootKeyMissing { .. }), "{err}");
        assert!(err.to_string().contains("--root-key"), "{err}");
        assert!(!data.join(crate::rootkey::ROOT_KEY_FILE).exists());

        // Another key: refused up front.
        let other = RootKeyFile::new(&data, Some(&dir.path().join("other.key")));
        other.create().unwrap();
        let err = Store::init_with_root_key(&data, &other, ACCOUNT).unwrap_err();
        assert!(matches!(err, SetupError::WrongRootKey { .. }), "{err}");

        // The right one, again.
        let (_, store) = Store::init_with_root_key(&data, &outside, ACCOUNT).unwrap();
        assert_eq!(store.principals(&root).unwrap().len(), 2);

        // A store whose root key check is gone, or of an unknown version, is refused.
        store.sqlite().execute("DELETE FROM meta", []).unwrap();
        let err = Store::init_with_root_key(&data, &outside, ACCOUNT).unwrap_err();
        assert!(matches!(err, SetupError::WrongRootKey { .. }), "{err}");
        store
            .sqlite()
            .pragma_update(None, "user_version", 9)
            .unwrap();
        let err = Store::init_with_root_key(&data, &outside, ACCOUNT).unwrap_err();
        assert!(
            matches!(err, SetupError::UnknownSchema { version: 9, .. }),
            "{err}"
        );
    }

    /// A data directory as version 1 (row MACs, no key attributes, no grants) left it: the
    /// version 0 store of [`old_store`] plus key `k2`, brought to version 1 as that version did
    /// (MAC columns, the root key check, each row MAC'd over version 1's columns). Spelled out
    /// here rather than borrowed from `schema`, so the test checks the upgrade against an
    /// independent statement of version 1.
    fn v1_store() -> (tempfile::TempDir, RootKey) {
        let (dir, root) = old_store();
        let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let k = key("k2");
        db.execute(
            "INSERT INTO keys VALUES ('k2', 'second', 2, 'Enabled', NULL, NULL, 1, 90, 2, 1, ?1)",
            [&k.policy_text],
        )
        .unwrap();
        let sealed = root.seal(&material_label("k2", 1), &[6; 32]).unwrap();
        db.execute("INSERT INTO key_material VALUES ('k2', 1, ?1, 2)", [sealed])
            .unwrap();
        db.execute_batch(
            "ALTER TABLE keys ADD COLUMN mac BLOB;
             ALTER TABLE aliases ADD COLUMN mac BLOB;
             ALTER TABLE principals ADD COLUMN mac BLOB;
             CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )
        .unwrap();
        db.execute(
            "INSERT INTO meta VALUES ('root-key-check', ?1)",
            [integrity::root_key_check(root.rows())],
        )
        .unwrap();
        for (table, columns) in schema::V1_COLUMNS {
            integrity::mac_existing(&db, root.rows(), table, columns).unwrap();
        }
        db.pragma_update(None, "user_version", 1).unwrap();
        (dir, root)
    }

    #[test]
    fn a_version_2_store_gains_the_secrets_and_parameters_tables_at_start() {
        let (dir, root, store, _) = populated();
        let d = dir.path();
        store
            .sqlite()
            .execute_batch(
                "DROP TABLE secrets; DROP TABLE secret_versions; DROP TABLE parameters;
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        drop(store);
        let (_, store) = Store::init(d, ACCOUNT).unwrap();
        assert_eq!(user_version(d), schema::VERSION);
        let state = store.load(&root).unwrap();
        // The version 2 rows read as before; the new tables are empty and MAC'd when written.
        assert!(state.tampered.is_empty(), "{:?}", state.tampered);
        assert_eq!(state.keys.len(), 2);
        assert_eq!(state.aliases.len(), 2);
        assert!(state.secrets.is_empty() && state.parameters.is_empty());
        let meta = SecretMeta {
            name: "s".into(),
            ..SecretMeta::default()
        };
        put_secret_meta(store.sqlite(), root.rows(), "s", &meta).unwrap();
        assert_eq!(store.load(&root).unwrap().secrets["s"].meta.name, "s");
        // A second start changes nothing.
        drop(store);
        let (_, store) = Store::init(d, ACCOUNT).unwrap();
        assert_eq!(user_version(d), schema::VERSION);
        assert!(store.load(&root).unwrap().secrets.contains_key("s"));
    }

    #[test]
    fn a_version_1_store_is_upgraded_at_start_and_a_tampered_row_stays_set_aside() {
        let (dir, root) = v1_store();
        let d = dir.path();
        // Before the upgrade, whoever writes the database changes k2's policy (its version 1
        // MAC no longer matches).
        Connection::open(d.join(DB_FILE))
            .unwrap()
            .execute(
                "UPDATE keys SET policy = replace(policy, 'kms:*', 'kms:Decrypt') WHERE key_id = 'k2'",
                [],
            )
            .unwrap();
        let (again, store) = Store::init(d, ACCOUNT).unwrap();
        assert_eq!(again.rows().sign(b"x"), root.rows().sign(b"x"));
        assert_eq!(user_version(d), schema::VERSION);
        let state = store.load(&root).unwrap();
        // The untouched rows survive with their contents, read as version 2 rows.
        let k1 = &state.keys["k1"];
        assert_eq!(
            (k1.description.as_str(), k1.state, k1.current_version),
            ("d", KeyState::Enabled, 1)
        );
        assert_eq!(k1.attrs.key_spec, crate::keyspec::KeySpec::SymmetricDefault);
        assert_eq!(state.material[&("k1".to_owned(), 1)].as_slice(), &[5; 32]);
        assert_eq!(state.aliases["alias/a"].key_id, "k1");
        assert_eq!(
            state.principals["AKIAROLEROLEROLEROLE"].secret(),
            "role-secret"
        );
        assert_eq!(state.principals.len(), 2);
        assert!(state.grants.is_empty());
        // The tampered row was not vouched for by the upgrade: set aside with its material.
        assert_eq!(
            state.tampered.get(&RowId::Key("k2".into())),
            Some(&Flaw::BadMac)
        );
        assert!(!state.keys.contains_key("k2"));
        assert!(!state.material.contains_key(&("k2".to_owned(), 1)));
        assert_eq!(state.tampered.len(), 1, "{:?}", state.tampered);
        // The grants table is there and MAC'd: a grant written now loads, an edited one does not.
        drop(store);
        let (_, store) = Store::init(d, ACCOUNT).unwrap();
        let grant = GrantRow {
            grant_id: "g1".into(),
            key_id: "k1".into(),
            body: "{}".into(),
            created_ms: 3,
        };
        put_grant(store.sqlite(), root.rows(), &grant).unwrap();
        assert_eq!(store.load(&root).unwrap().grants["g1"], grant);
        store
            .sqlite()
            .execute("UPDATE grants SET key_id = 'k2' WHERE grant_id = 'g1'", [])
            .unwrap();
        let state = store.load(&root).unwrap();
        assert!(state.grants.is_empty());
        assert_eq!(
            state.tampered.get(&RowId::Grant("g1".into())),
            Some(&Flaw::BadMac)
        );
        // A second start does not re-MAC k2 either.
        drop(store);
        let (_, store) = Store::init(d, ACCOUNT).unwrap();
        assert!(!store.load(&root).unwrap().keys.contains_key("k2"));
    }
}
