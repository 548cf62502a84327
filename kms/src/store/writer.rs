//! The store's one writer: a thread that commits every change with group commit.
//!
//! Every write (a key change, an audit entry) is a job for the writer thread. The thread takes
//! all jobs that are waiting, runs each in its own savepoint inside one transaction, commits
//! (WAL, `synchronous=FULL`: the commit is on disk when it returns), and only then answers each
//! job. So an answered write survives `kill -9`, and concurrent requests share one fsync. The
//! thread owns the audit log's head, so entries are chained and enter the Merkle tree in commit
//! order, and it signs tree heads: in a batch's transaction when one is due, when idle with
//! entries unsigned for a while, and when the last handle is dropped (which waits for it).

use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use tokio::sync::oneshot;

use super::audit_log::{LogHead, TreeHeads};
use super::shared::{self, Generation};
use super::sql::{self, Engine, Sql};
use crate::audit::AuditEntry;
use crate::error::{KmsError, Result, StoreError};
use crate::rootkey::RowKey;
use crate::secrets::model::{SecretMeta, SecretVersion};
use crate::ssm::model::Parameter;
use crate::state::{Alias, GrantRow, KeyRecord};

/// A key row and the sealed material versions (version, sealed bytes) written with it.
pub(crate) type KeyRows = (KeyRecord, Vec<(u32, Vec<u8>)>);

/// Writes a key row and its sealed material versions in the writer's transaction.
fn put_key_rows(tx: &dyn Sql, rows: &RowKey, (key, materials): &KeyRows) -> Result<()> {
    super::put_key(tx, rows, key)?;
    for (version, sealed) in materials {
        super::put_material(tx, &key.key_id, *version, sealed)?;
    }
    Ok(())
}

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;

type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: run in the batch's transaction (`Some`), or not at all (`None`: the transaction
/// could not begin; its answer is the reason), giving what answers its waiter once the
/// transaction's outcome is known.
type Job = Box<dyn FnOnce(Option<&dyn Sql>, &mut LogHead) -> Deliver + Send>;

/// Handle to the writer thread.
#[derive(Clone)]
pub(crate) struct Writer {
    thread: Arc<Thread>,
    /// MACs the key and alias rows it writes.
    rows: RowKey,
    /// A shared store's generation as this node's memory reflects it (None: SQLite, one node).
    shared: Option<Arc<Generation>>,
}

/// The thread: when the last handle goes, its queue closes and the drop waits for it to finish
/// (its last job, and the final tree head).
struct Thread {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Thread {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

fn stopped() -> KmsError {
    KmsError::Internal("store writer stopped".into())
}

impl Writer {
    /// Starts the writer thread on `conn`, MACing rows with `rows`, extending the audit log from `head` and signing its
    /// tree heads with `heads`.
    pub(super) fn start(
        conn: Box<dyn Sql>,
        rows: RowKey,
        mut head: LogHead,
        mut heads: TreeHeads,
        shared: Option<Arc<Generation>>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let shared_gen = shared.clone();
        let handle = thread::Builder::new()
            .name("kms-store-writer".into())
            .spawn(move || {
                loop {
                    let first = match heads.wait(&head) {
                        None => rx.recv().ok(),
                        Some(timeout) => match rx.recv_timeout(timeout) {
                            Ok(job) => Some(job),
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                run_batch(
                                    &*conn,
                                    &mut head,
                                    &mut heads,
                                    Vec::new(),
                                    false,
                                    shared_gen.as_deref(),
                                );
                                continue;
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => None,
                        },
                    };
                    let Some(first) = first else { break };
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(
                        &*conn,
                        &mut head,
                        &mut heads,
                        batch,
                        false,
                        shared_gen.as_deref(),
                    );
                }
                // Every handle is gone: sign what is not signed yet.
                run_batch(
                    &*conn,
                    &mut head,
                    &mut heads,
                    Vec::new(),
                    true,
                    shared_gen.as_deref(),
                );
            })
            .map_err(|e| KmsError::Internal(format!("cannot start store writer: {e}")))?;
        Ok(Self {
            thread: Arc::new(Thread {
                tx: Some(tx),
                handle: Some(handle),
            }),
            rows,
            shared,
        })
    }

    /// Stores key rows, each with its new sealed material versions, all or none (one job, so
    /// one savepoint: a Multi-Region key's members change together); resolves when durable.
    pub(crate) async fn put_keys(&self, keys: Vec<KeyRows>) -> Result<()> {
        let rows = self.rows.clone();
        self.write(move |tx, _| keys.iter().try_for_each(|key| put_key_rows(tx, &rows, key)))
            .await
    }

    /// Stores a key row and deletes every version of its material (imported material deleted
    /// or expired), in one transaction; resolves when durable.
    pub(crate) async fn put_key_without_material(&self, key: KeyRecord) -> Result<()> {
        let rows = self.rows.clone();
        self.write(move |tx, _| {
            super::delete_material(tx, &key.key_id)?;
            super::put_key(tx, &rows, &key)
        })
        .await
    }

    /// Stores (creates or retargets) an alias; resolves when durable.
    pub(crate) async fn put_alias(&self, alias: Alias) -> Result<()> {
        let rows = self.rows.clone();
        self.write(move |tx, _| super::put_alias(tx, &rows, &alias))
            .await
    }

    /// Deletes an alias; resolves when durable.
    pub(crate) async fn delete_alias(&self, name: String) -> Result<()> {
        self.write(move |tx, _| super::delete_alias(tx, &name))
            .await
    }

    /// Stores (creates or replaces) a grant; resolves when durable.
    pub(crate) async fn put_grant(&self, grant: GrantRow) -> Result<()> {
        let rows = self.rows.clone();
        self.write(move |tx, _| super::put_grant(tx, &rows, &grant))
            .await
    }

    /// Deletes a grant; resolves when durable.
    pub(crate) async fn delete_grant(&self, grant_id: String) -> Result<()> {
        self.write(move |tx, _| super::delete_grant(tx, &grant_id))
            .await
    }

    /// Stores a key row with its first material and an alias naming it, all or none (an AWS
    /// managed key made on first use); resolves when durable.
    pub(crate) async fn put_key_with_alias(&self, key: KeyRows, alias: Alias) -> Result<()> {
        let rows = self.rows.clone();
        self.write(move |tx, _| {
            put_key_rows(tx, &rows, &key)?;
            super::put_alias(tx, &rows, &alias)
        })
        .await
    }

    /// Stores a secret's metadata row, its new versions, and removes the versions named, all or
    /// none; resolves when durable.
    pub(crate) async fn put_secret(
        &self,
        arn: String,
        meta: Arc<SecretMeta>,
        new_versions: Vec<Arc<SecretVersion>>,
        removed_versions: Vec<String>,
    ) -> Result<()> {
        let rows = self.rows.clone();
        self.write(move |tx, _| {
            super::put_secret_meta(tx, &rows, &arn, &meta)?;
            for v in &new_versions {
                super::put_secret_version(tx, &rows, &arn, v)?;
            }
            for id in &removed_versions {
                super::delete_secret_version(tx, &arn, id)?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes a secret with every version; resolves when durable.
    pub(crate) async fn delete_secret(&self, arn: String) -> Result<()> {
        self.write(move |tx, _| super::delete_secret(tx, &arn))
            .await
    }

    /// Stores parameters (created or replaced) and deletes the ARNs named, all or none;
    /// resolves when durable.
    pub(crate) async fn put_parameters(
        &self,
        put: Vec<Parameter>,
        deleted: Vec<String>,
    ) -> Result<()> {
        let rows = self.rows.clone();
        self.write(move |tx, _| {
            for p in &put {
                super::put_parameter(tx, &rows, p)?;
            }
            for arn in &deleted {
                super::delete_parameter(tx, arn)?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes a key with its material, aliases and grants; resolves when durable.
    pub(crate) async fn delete_key(&self, key_id: String) -> Result<()> {
        self.write(move |tx, _| super::delete_key(tx, &key_id))
            .await
    }

    /// Appends `entry` to the audit log; resolves when durable. One INSERT, atomic on its own,
    /// that moves the head only once it succeeded: it needs no savepoint of its own (the hot
    /// path: every request appends one).
    pub(crate) async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        let (done, wait) = oneshot::channel::<Result<()>>();
        let job: Job = Box::new(move |tx, head| {
            let outcome = match tx {
                Some(_) => head.append(&entry),
                None => Ok(()),
            };
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = done.send(committed.map_err(KmsError::from).and(outcome));
            })
        });
        self.send(job)?;
        wait.await.map_err(|_| stopped())?
    }

    /// Queues `entry` for the audit chain without waiting, for synchronous callers (start-up,
    /// a principal re-read inside a request). It is committed in the same transaction as any
    /// write queued after it, or an earlier one, so once a later write resolves it is durable
    /// too; a failure to commit it is logged.
    pub(crate) fn queue_audit(&self, entry: AuditEntry) -> Result<()> {
        self.submit(
            move |_, head| head.append(&entry),
            |committed: Result<()>| {
                if let Err(e) = committed {
                    tracing::error!("store: a queued audit entry was not written: {e}");
                }
            },
        )
    }

    /// The generation of the shared store this node's memory reflects, if the store is shared.
    pub(crate) fn generation(&self) -> Option<&Arc<Generation>> {
        self.shared.as_ref()
    }

    /// Runs `f`, a change of the state, in the writer's transaction; resolves after the
    /// transaction is durably committed. On a shared store the change also moves the store's
    /// generation, fenced (see `shared.rs`).
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Sql, &mut LogHead) -> Result<T> + Send + 'static,
    {
        let (done, wait) = oneshot::channel::<Result<T>>();
        let shared = self.shared.clone();
        self.submit(
            move |tx, head| {
                let Some(g) = &shared else {
                    return f(tx, head);
                };
                shared::fence(tx, g)?;
                f(tx, head).inspect_err(|_| g.unfence())
            },
            move |outcome| {
                let _ = done.send(outcome);
            },
        )?;
        wait.await.map_err(|_| stopped())?
    }

    /// Queues `f` for the writer's transaction; `answer` gets its outcome once the transaction
    /// is committed (or not).
    fn submit<T, F, A>(&self, f: F, answer: A) -> Result<()>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Sql, &mut LogHead) -> Result<T> + Send + 'static,
        A: FnOnce(Result<T>) + Send + 'static,
    {
        let job: Job = Box::new(move |tx, head| {
            let Some(tx) = tx else {
                return Box::new(move |not_begun: Result<(), StoreError>| {
                    answer(
                        not_begun
                            .map_err(KmsError::from)
                            .and_then(|()| Err(stopped())),
                    );
                });
            };
            let saved = head.clone();
            let outcome = sql::savepoint(tx, |sp| f(sp, head));
            if outcome.is_err() {
                *head = saved;
            }
            Box::new(move |committed: Result<(), StoreError>| {
                answer(committed.map_err(KmsError::from).and(outcome));
            })
        });
        self.send(job)
    }

    /// Hands `job` to the writer thread.
    fn send(&self, job: Job) -> Result<()> {
        let queue = self.thread.tx.as_ref().ok_or_else(stopped)?;
        queue.send(job).map_err(|_| stopped())
    }
}

/// What a batch's waiters are told when the batch could not run: the store's error as it is,
/// anything else as the store being unavailable (nothing of the batch was written).
fn as_store_error(e: KmsError) -> StoreError {
    match e {
        KmsError::Store(e) => e,
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Runs `batch` in one transaction, signing a tree head in it when one is due (or, with
/// `final_head`, whenever entries are unsigned); an empty batch with no head to sign does nothing.
fn run_batch(
    conn: &dyn Sql,
    head: &mut LogHead,
    heads: &mut TreeHeads,
    batch: Vec<Job>,
    final_head: bool,
    shared: Option<&Generation>,
) {
    let signs = |head: &LogHead, heads: &TreeHeads| {
        heads.due(head, Instant::now()) || (final_head && heads.unsigned(head) > 0)
    };
    if batch.is_empty() && !signs(head, heads) {
        return;
    }
    let before = head.clone();
    let signed_before = heads.mark();
    // Run nothing if the transaction cannot begin: every waiter is told why (on PostgreSQL,
    // usually that the database is unavailable: retryable).
    let refuse = |batch: Vec<Job>, head: &mut LogHead, e: StoreError| {
        for job in batch {
            job(None, head)(Err(e.clone()));
        }
    };
    if let Err(e) = conn.batch("BEGIN") {
        tracing::error!("store: cannot begin a transaction: {e}");
        refuse(batch, head, e);
        return;
    }
    if conn.engine() == Engine::Postgres {
        // One log across nodes: wait for the other nodes' transactions, then follow their
        // entries.
        let seq = head.seq();
        let caught_up = shared::lock_audit(conn)
            .and_then(|()| head.catch_up(conn))
            .and_then(|()| {
                // Another node appended: it may have signed a head too.
                if head.seq() == seq {
                    Ok(())
                } else {
                    heads.catch_up(conn)
                }
            });
        if let Err(e) = caught_up {
            tracing::error!("store: cannot take the audit log's lock: {e}");
            let _ = conn.batch("ROLLBACK");
            *head = before;
            heads.reset(signed_before);
            refuse(batch, head, as_store_error(e));
            return;
        }
    }
    let start = shared.map(Generation::known);
    let delivers: Vec<Deliver> = batch.into_iter().map(|job| job(Some(conn), head)).collect();
    if let Err(e) = head.flush(conn) {
        // The batch's entries cannot be stored: none of its writes may be answered as done.
        tracing::error!("store: cannot insert the batch's audit entries: {e}");
        let _ = conn.batch("ROLLBACK");
        *head = before;
        heads.reset(signed_before);
        let e = as_store_error(e);
        for d in delivers {
            d(Err(e.clone()));
        }
        return;
    }
    if signs(head, heads) {
        // In its own savepoint: a head that cannot be stored must not fail the batch's jobs.
        let signed = sql::savepoint(conn, |sp| heads.sign(sp, head));
        if let Err(e) = signed {
            heads.reset(signed_before);
            tracing::error!("audit log: cannot store a signed tree head: {e}");
        }
    }
    let committed = conn.batch("COMMIT");
    if let (Some(g), Some(start)) = (shared, start) {
        // Before the jobs are answered: a request that applies its change to memory after its
        // answer finds the generation already moved, so no reload undoes it.
        g.settle(start, committed.is_ok());
    }
    if committed.is_err() {
        // A failed COMMIT may leave the transaction open (SQLite) or aborted (PostgreSQL).
        let _ = conn.batch("ROLLBACK");
        *head = before;
        heads.reset(signed_before);
    }
    for d in delivers {
        d(committed.clone());
    }
}
