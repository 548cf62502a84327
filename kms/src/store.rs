//! The durable store: SQLite in the data directory, written by one thread with group commit.
//!
//! Every write (a key change, an audit entry) is a job for the writer thread. The thread takes
//! all jobs that are waiting, runs each in its own savepoint inside one transaction, commits
//! (WAL, `synchronous=FULL`: the commit is on disk when it returns), and only then answers each
//! job. So an answered write survives `kill -9`, and concurrent requests share one fsync.
//! Readers use their own connections; WAL lets them read while the writer writes.

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use rusqlite::{Connection, OpenFlags, Transaction, params};
use tokio::sync::oneshot;

use crate::error::{KmsError, Result};

/// The database file inside the data directory.
pub const DB_FILE: &str = "kms.sqlite3";
/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;

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

/// Opens a connection with the store's settings, creating the schema if needed.
pub fn open(dir: &Path, read_only: bool) -> Result<Connection> {
    let path = dir.join(DB_FILE);
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(&path, flags).map_err(KmsError::store)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(KmsError::store)?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(KmsError::store)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(KmsError::store)?;
        conn.execute_batch(SCHEMA).map_err(KmsError::store)?;
    }
    Ok(conn)
}

/// State the writer thread keeps between jobs.
#[derive(Debug)]
pub struct WriterState {
    /// Hash of the last committed audit entry (hex), the chain's head.
    pub audit_head: String,
    /// Sequence number of the last committed audit entry.
    pub audit_seq: i64,
}

type Deliver = Box<dyn FnOnce(Result<()>) + Send>;
type Job = Box<dyn FnOnce(&mut Transaction<'_>, &mut WriterState) -> Deliver + Send>;

/// Handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(mut conn: Connection) -> Result<Self> {
        let (audit_seq, audit_head): (i64, String) = conn
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok((0, crate::audit::GENESIS.to_owned())),
                e => Err(e),
            })
            .map_err(KmsError::store)?;
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("kms-store-writer".into())
            .spawn(move || {
                let mut state = WriterState {
                    audit_head,
                    audit_seq,
                };
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&mut conn, &mut state, batch);
                }
            })
            .map_err(|e| KmsError::Internal(format!("cannot start store writer: {e}")))?;
        Ok(Self { tx })
    }

    /// Runs `f` in the writer's transaction; resolves after the transaction is durably committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut WriterState) -> Result<T> + Send + 'static,
    {
        let (done, wait) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |tx, state| {
            let saved = (state.audit_head.clone(), state.audit_seq);
            let outcome = match tx.savepoint() {
                Ok(mut sp) => {
                    let r = f(&sp, state);
                    let finished = if r.is_ok() {
                        sp.commit()
                    } else {
                        sp.rollback()
                    };
                    match (r, finished) {
                        (Ok(v), Ok(())) => Ok(v),
                        (Err(e), _) => Err(e),
                        (Ok(_), Err(e)) => Err(KmsError::store(e)),
                    }
                }
                Err(e) => Err(KmsError::store(e)),
            };
            if outcome.is_err() {
                (state.audit_head, state.audit_seq) = saved;
            }
            Box::new(move |committed: Result<()>| {
                let _ = done.send(committed.and(outcome));
            })
        });
        self.tx
            .send(job)
            .map_err(|_| KmsError::Internal("store writer stopped".into()))?;
        wait.await
            .map_err(|_| KmsError::Internal("store writer stopped".into()))?
    }
}

fn run_batch(conn: &mut Connection, state: &mut WriterState, batch: Vec<Job>) {
    let before = (state.audit_head.clone(), state.audit_seq);
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            // Run nothing: dropping the jobs tells every waiter the write failed.
            tracing::error!("store: cannot begin a transaction: {e}");
            drop(batch);
            return;
        }
    };
    let delivers: Vec<Deliver> = batch.into_iter().map(|job| job(&mut tx, state)).collect();
    let committed = tx.commit().map_err(KmsError::store);
    if committed.is_err() {
        (state.audit_head, state.audit_seq) = before;
    }
    for d in delivers {
        d(committed.clone());
    }
}

/// Inserts or replaces a key row.
pub fn put_key(tx: &Connection, k: &crate::state::KeyRecord) -> Result<()> {
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
    )
    .map_err(KmsError::store)?;
    Ok(())
}
