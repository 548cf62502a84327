//! The audit log's rows: appending entries and signed tree heads in the writer's transaction,
//! and reading the log back to verify it and to prove things about it.
//!
//! Kept apart from the key, alias and principal rows (`mod.rs`) because the log has its own
//! integrity scheme (see `crate::audit`): the writer thread owns the log's [`LogHead`] (the hash
//! chain's head and the Merkle tree's frontier) and extends it in commit order, and signs a tree
//! head ([`TreeHeads`]) every [`HEAD_EVERY_ENTRIES`] entries, after [`HEAD_EVERY`] with entries
//! unsigned, at start and at shutdown.
//!
//! Tables (the `audit` table predates the tree; the rest is added by [`migrate`]):
//! - `audit(seq, entry, prev_hash, hash, leaf_hash)`: `leaf_hash` is the entry's RFC 9162 leaf
//!   hash. Rows written before the migration get theirs computed once, at the first start after
//!   it, and are only as trustworthy as the file was then.
//! - `tree_heads(tree_size, root_hash, timestamp_ms, signature)`: signed tree heads.
//! - `audit_frontier(id = 1, tree_size, frontier)`: the tree's frontier at the newest head, so a
//!   restart hashes only the entries after it. A cache: used only if it matches a head the
//!   KMS's key signed, else rebuilt from every entry.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::shared::{self, Generation};
use super::sql::{self, Engine, Row, Sql, Value, int, text};
use super::{Store, Writer};
use crate::audit::{self, AuditEntry};
use crate::error::{KmsError, Result, StoreError};
use crate::merkle::{self, Frontier, Hash, RangeHasher};
use crate::rootkey::RootKey;
use crate::tree_head::{SignedTreeHead, TreeKey, TreeSigner};
use std::sync::Arc;

/// The `meta` row of a shared store's tree-head signing key.
const SHARED_SIGNER: &str = "audit-signing-key";

/// A tree head is signed once this many entries are unsigned...
pub(crate) const HEAD_EVERY_ENTRIES: u64 = 256;
/// ...or once entries have been unsigned this long.
pub(crate) const HEAD_EVERY: Duration = Duration::from_secs(60);

const TREE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tree_heads (
    tree_size INTEGER PRIMARY KEY,
    root_hash BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_frontier (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    tree_size INTEGER NOT NULL,
    frontier BLOB NOT NULL
);
";

/// A stored audit entry with its chain fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Sequence number, from 1.
    pub seq: i64,
    /// The entry JSON as stored.
    pub json: String,
    /// Previous hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// What `audit verify` found broken first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenAt {
    /// The entry of this sequence number.
    Entry(i64),
    /// The stored tree head of this size.
    TreeHead(u64),
    /// The checkpoint (of this size) given to check against.
    Checkpoint(u64),
}

impl std::fmt::Display for BrokenAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Entry(seq) => write!(f, "entry {seq}"),
            Self::TreeHead(size) => write!(f, "tree head of size {size}"),
            Self::Checkpoint(size) => write!(f, "checkpoint of size {size}"),
        }
    }
}

/// An intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// How many entries.
    pub entries: u64,
    /// The Merkle root of all of them.
    pub root_hash: Hash,
    /// How many stored tree heads were checked.
    pub tree_heads: u64,
    /// The newest stored tree head's size.
    pub newest_head: Option<u64>,
    /// The checkpoint's size, if one was checked.
    pub checkpoint: Option<u64>,
}

impl std::fmt::Display for AuditSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries, root {}, {} signed tree heads",
            self.entries,
            hex::encode(self.root_hash),
            self.tree_heads
        )?;
        if let Some(n) = self.newest_head {
            write!(f, " (newest of size {n})")?;
        }
        if let Some(c) = self.checkpoint {
            write!(f, "; extends the checkpoint of size {c}")?;
        }
        Ok(())
    }
}

/// What verifying the audit log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditCheck {
    /// Every entry, stored tree head and the checkpoint hold.
    Intact(AuditSummary),
    /// The first thing that does not, and why.
    Broken {
        /// What.
        at: BrokenAt,
        /// Why.
        reason: String,
    },
}

/// A stored tree head, as read (a row no version writes is kept to be reported).
type StoredHead = (u64, Result<SignedTreeHead, &'static str>);

impl Store {
    /// The last `n` audit entries, oldest first.
    pub fn audit_tail(&self, n: usize) -> Result<Vec<StoredEntry>> {
        let rows = self.conn.query(
            "SELECT seq, entry, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT ?1",
            &[int(i64::try_from(n).unwrap_or(i64::MAX))],
        )?;
        let mut out = rows
            .iter()
            .map(stored_entry)
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Verifies the whole log in one pass, in one read transaction: each entry (sequence, chain
    /// link, leaf hash, parses as an audit record), each stored tree head (signed by `key`, and
    /// the root of the entries it covers), and `checkpoint` (signed by `key`, and the root of
    /// the log's first `tree_size` entries, so nothing before it was rewritten nor cut off).
    /// Without `key`, there must be no tree heads and no checkpoint.
    /// With `root` (a shared store's), every entry must also carry its MAC under the root key:
    /// an entry inserted in the database by someone without it is reported.
    pub fn verify_audit(
        &self,
        key: Option<&TreeKey>,
        checkpoint: Option<&SignedTreeHead>,
        root: Option<&RootKey>,
    ) -> Result<AuditCheck> {
        // One read transaction: the heads and the entries are of one moment, even while a
        // server appends.
        sql::transaction(&*self.conn, |tx| {
            let mut v = Verification::new(key, stored_heads(tx)?, checkpoint);
            if let Some(broken) = v.check_targets() {
                return Ok(broken);
            }
            let macs = root.filter(|_| tx.engine() == Engine::Postgres);
            let sql = if macs.is_some() {
                "SELECT seq, entry, prev_hash, hash, leaf_hash, mac FROM audit ORDER BY seq"
            } else if has_leaf_hash(tx)? {
                "SELECT seq, entry, prev_hash, hash, leaf_hash, NULL FROM audit ORDER BY seq"
            } else {
                "SELECT seq, entry, prev_hash, hash, NULL, NULL FROM audit ORDER BY seq"
            };
            let mut broken = None;
            tx.query_each(sql, &[], &mut |r| {
                if broken.is_none() {
                    let entry = stored_entry(&r)?;
                    let stored_leaf: Option<Vec<u8>> = r.get(4)?;
                    let mac: Option<Vec<u8>> = r.get(5)?;
                    if let Some(root) = macs
                        && !entry_mac_ok(root.rows(), &entry, mac.as_deref())
                    {
                        broken = Some(AuditCheck::Broken {
                            at: BrokenAt::Entry(entry.seq),
                            reason: "no valid MAC: not written by a node holding the root key"
                                .into(),
                        });
                    } else {
                        broken = v.entry(&entry, stored_leaf.as_deref());
                    }
                }
                Ok(())
            })?;
            Ok(broken.unwrap_or_else(|| v.finish()))
        })
    }

    /// Entry `seq`'s text and audit path in the tree of the first `tree_size` entries, with that
    /// tree's root (one pass over those entries, hashed from their text).
    pub fn audit_inclusion(&self, seq: u64, tree_size: u64) -> Result<(String, Vec<Hash>, Hash)> {
        let index = seq.checked_sub(1);
        let ranges = index
            .and_then(|i| merkle::inclusion_ranges(i, tree_size))
            .ok_or_else(|| {
                KmsError::Internal(format!(
                    "entry {seq} is not in a log of {tree_size} entries"
                ))
            })?;
        let (path, root, entry) = self.hash_ranges(tree_size, &ranges, index)?;
        let entry = entry.ok_or(StoreError::Corrupt("the proved entry was not read"))?;
        Ok((entry, path, root))
    }

    /// The consistency path from the tree of the first `from_size` entries to the tree of the
    /// first `tree_size`, with the latter's root.
    pub fn audit_consistency(&self, from_size: u64, tree_size: u64) -> Result<(Vec<Hash>, Hash)> {
        let ranges = merkle::consistency_ranges(from_size, tree_size).ok_or_else(|| {
            KmsError::Internal(format!(
                "a log of {tree_size} entries cannot extend one of {from_size}"
            ))
        })?;
        let (path, root, _) = self.hash_ranges(tree_size, &ranges, None)?;
        Ok((path, root))
    }

    /// One pass over entries `1..=tree_size`: the hashes of `ranges`, the root, and the text of
    /// the entry at index `keep`.
    fn hash_ranges(
        &self,
        tree_size: u64,
        ranges: &[Range<u64>],
        keep: Option<u64>,
    ) -> Result<(Vec<Hash>, Hash, Option<String>)> {
        let mut hasher = RangeHasher::new(ranges);
        let mut kept = None;
        self.conn.query_each(
            "SELECT entry FROM audit ORDER BY seq LIMIT ?1",
            &[int(i64::try_from(tree_size).unwrap_or(i64::MAX))],
            &mut |r| {
                let json: String = r.get(0)?;
                if Some(hasher.size()) == keep {
                    kept = Some(json.clone());
                }
                hasher.push(merkle::leaf_hash(json.as_bytes()));
                Ok(())
            },
        )?;
        if hasher.size() != tree_size {
            return Err(StoreError::Corrupt("the log is shorter than the tree asked for").into());
        }
        let root = hasher.tree().root();
        let hashes = hasher
            .finish()
            .ok_or(StoreError::Corrupt("a proof range was not filled"))?;
        Ok((hashes, root, kept))
    }

    /// The tree-head signing key of a shared store: one for every node (else each would sign
    /// its own heads of one log), kept in `meta` sealed under the root key they share; the first
    /// node to start makes it.
    pub fn shared_signer(&self, root: &RootKey) -> Result<TreeSigner> {
        self.conn.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            &[
                text(SHARED_SIGNER),
                Value::Blob(TreeSigner::new_sealed(root)?),
            ],
        )?;
        let sealed: Vec<u8> = self
            .conn
            .query_one(
                "SELECT value FROM meta WHERE name = ?1",
                &[text(SHARED_SIGNER)],
            )?
            .get(0)?;
        TreeSigner::from_sealed(root, &sealed)
            .map_err(|e| KmsError::Internal(format!("audit log signing key in the store: {e}")))
    }

    /// Moves this (read-write) connection to the writer thread. Migrates the log's tables, opens
    /// (creating on first start) the tree-head signing key in `data_dir`, restores the tree from
    /// the stored frontier and the entries after it, and signs a head of the log as it is now.
    pub(crate) fn start_writer(self, root: &RootKey, data_dir: &std::path::Path) -> Result<Writer> {
        let rows = root.rows().clone();
        let signer = match self.conn.engine() {
            Engine::Sqlite => TreeSigner::load_or_create(data_dir, root)
                .map_err(|e| KmsError::Internal(format!("audit log signing key: {e}")))?,
            Engine::Postgres => self.shared_signer(root)?,
        };
        let (head, heads) = sql::transaction(&*self.conn, |tx| {
            migrate(tx)?;
            let mac = (tx.engine() == Engine::Postgres).then(|| rows.clone());
            let head = LogHead::restore(tx, signer.public_key(), mac)?;
            let mut heads = TreeHeads {
                signer,
                signed: Signed {
                    size: head.frontier.size(),
                    at: Instant::now(),
                },
            };
            // Unless a good head of the log as it is exists already (a restart with no new entry).
            let current = stored_head(tx, sql_int(head.frontier.size())?)?;
            let root = head.frontier.root();
            if !current
                .is_some_and(|h| heads.signer.public_key().verifies(&h) && h.root_hash == root)
            {
                heads.sign(tx, &head)?;
            }
            Ok::<_, KmsError>((head, heads))
        })?;
        let shared = match self.conn.engine() {
            Engine::Sqlite => None,
            Engine::Postgres => {
                let g = Generation::default();
                g.set(shared::stored_generation(&*self.conn)?);
                Some(Arc::new(g))
            }
        };
        Writer::start(self.conn, rows, head, heads, shared)
    }
}

/// Adds the tree's column and tables to a store that has only the hash chain (idempotent).
/// On PostgreSQL the tables are made at their current version (`pg_schema.rs`): nothing to do.
fn migrate(conn: &dyn Sql) -> Result<()> {
    if conn.engine() == Engine::Postgres {
        return Ok(());
    }
    if !has_leaf_hash(conn)? {
        conn.batch("ALTER TABLE audit ADD COLUMN leaf_hash BLOB")?;
    }
    conn.batch(TREE_SCHEMA)?;
    Ok(())
}

fn has_leaf_hash(conn: &dyn Sql) -> Result<bool> {
    if conn.engine() == Engine::Postgres {
        return Ok(true);
    }
    let n: i64 = conn
        .query_one(
            "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'leaf_hash'",
            &[],
        )?
        .get(0)?;
    Ok(n > 0)
}

fn has_tree_heads(conn: &dyn Sql) -> Result<bool> {
    if conn.engine() == Engine::Postgres {
        return Ok(true);
    }
    let n: i64 = conn
        .query_one(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tree_heads'",
            &[],
        )?
        .get(0)?;
    Ok(n > 0)
}

/// A tree size or timestamp as SQLite stores it.
fn sql_int(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt("a tree size or time beyond i64").into())
}

/// Every stored tree head, smallest first.
fn stored_heads(conn: &dyn Sql) -> Result<Vec<StoredHead>> {
    if !has_tree_heads(conn)? {
        return Ok(Vec::new());
    }
    read_heads(conn, "ORDER BY tree_size", &[])
}

/// The stored tree head of `size`, if there is one and it is well-formed.
fn stored_head(conn: &dyn Sql, size: i64) -> Result<Option<SignedTreeHead>> {
    let heads = read_heads(conn, "WHERE tree_size = ?1", &[int(size)])?;
    Ok(heads.into_iter().next().and_then(|(_, h)| h.ok()))
}

/// The `tree_heads` rows that `clause` selects.
fn read_heads(conn: &dyn Sql, clause: &str, params: &[Value]) -> Result<Vec<StoredHead>> {
    let rows = conn.query(
        &format!("SELECT tree_size, root_hash, timestamp_ms, signature FROM tree_heads {clause}"),
        params,
    )?;
    let mut out = Vec::new();
    for r in rows {
        let (size, root, ts, sig): (i64, Vec<u8>, i64, Vec<u8>) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let Ok(size) = u64::try_from(size) else {
            return Err(StoreError::Corrupt("a tree head has a negative size").into());
        };
        let head = match (root.try_into(), u64::try_from(ts), sig.try_into()) {
            (Ok(root_hash), Ok(timestamp_ms), Ok(signature)) => Ok(SignedTreeHead {
                tree_size: size,
                timestamp_ms,
                root_hash,
                signature,
            }),
            _ => Err("the row is not a tree head (wrong field sizes)"),
        };
        out.push((size, head));
    }
    Ok(out)
}

/// Something the log's root at a size must match.
enum Target<'a> {
    Head(Result<SignedTreeHead, &'static str>),
    Checkpoint(&'a SignedTreeHead),
}

/// `audit verify`'s one pass: entries in order, checking stored heads and the checkpoint as the
/// tree reaches their sizes.
struct Verification<'a> {
    key: Option<&'a TreeKey>,
    /// (size, target) not reached yet, by size.
    targets: VecDeque<(u64, Target<'a>)>,
    tree: Frontier,
    prev_hash: String,
    heads: u64,
    /// The size of the newest stored head found intact.
    good_head: Option<u64>,
    checkpoint: Option<u64>,
}

impl<'a> Verification<'a> {
    fn new(
        key: Option<&'a TreeKey>,
        heads: Vec<StoredHead>,
        checkpoint: Option<&'a SignedTreeHead>,
    ) -> Self {
        let mut targets: Vec<_> = heads
            .into_iter()
            .map(|(size, h)| (size, Target::Head(h)))
            .collect();
        if let Some(c) = checkpoint {
            // After the stored head of the same size (a stable sort): the log's own heads are
            // reported first.
            targets.push((c.tree_size, Target::Checkpoint(c)));
        }
        targets.sort_by_key(|(size, _)| *size);
        Self {
            key,
            targets: targets.into(),
            tree: Frontier::new(),
            prev_hash: audit::GENESIS.to_owned(),
            heads: 0,
            good_head: None,
            checkpoint: None,
        }
    }

    /// Checks one entry, then the targets its tree size reaches.
    fn entry(&mut self, entry: &StoredEntry, stored_leaf: Option<&[u8]>) -> Option<AuditCheck> {
        let broken = |reason: String| {
            Some(AuditCheck::Broken {
                at: BrokenAt::Entry(entry.seq),
                reason,
            })
        };
        let expected = self.tree.size() + 1;
        if u64::try_from(entry.seq).ok() != Some(expected) {
            return broken(format!("sequence gap: expected {expected}"));
        }
        if let Err(reason) = audit::check_link(&self.prev_hash, entry) {
            return broken(reason.into());
        }
        let leaf = merkle::leaf_hash(entry.json.as_bytes());
        if stored_leaf.is_some_and(|l| l != leaf) {
            return broken("leaf_hash does not match the entry's contents".into());
        }
        self.tree.push(leaf);
        self.prev_hash.clone_from(&entry.hash);
        self.check_targets()
    }

    /// Checks every target of the tree's current size.
    fn check_targets(&mut self) -> Option<AuditCheck> {
        let size = self.tree.size();
        let mut root = None;
        while self.targets.front().is_some_and(|(s, _)| *s == size) {
            let (_, target) = self.targets.pop_front()?;
            let root = *root.get_or_insert_with(|| self.tree.root());
            if let Err((at, reason)) = self.check(size, &target, &root) {
                return Some(AuditCheck::Broken { at, reason });
            }
        }
        None
    }

    /// Checks one target against the root of the first `size` entries.
    fn check(
        &mut self,
        size: u64,
        target: &Target<'_>,
        root: &Hash,
    ) -> std::result::Result<(), (BrokenAt, String)> {
        let not_the_key = "its signature does not verify under the tree-head public key";
        match target {
            Target::Head(head) => {
                let at = BrokenAt::TreeHead(size);
                let head = head.as_ref().map_err(|r| (at, (*r).to_owned()))?;
                let key = self.key.ok_or((
                    at,
                    "there is no tree-head signing key to check it with (audit-signing.key is missing)"
                        .to_owned(),
                ))?;
                if !key.verifies(head) {
                    return Err((at, not_the_key.into()));
                }
                if head.root_hash != *root {
                    let after = self.good_head.unwrap_or(0);
                    return Err((
                        at,
                        format!(
                            "entries 1..={size} do not give its root: an entry after {after} and at or before {size} was changed"
                        ),
                    ));
                }
                self.heads += 1;
                self.good_head = Some(size);
            }
            Target::Checkpoint(c) => {
                let at = BrokenAt::Checkpoint(size);
                let key = self.key.ok_or((
                    at,
                    "there is no tree-head signing key to check it with".to_owned(),
                ))?;
                if !key.verifies(c) {
                    return Err((at, not_the_key.into()));
                }
                if c.root_hash != *root {
                    return Err((
                        at,
                        format!(
                            "entries 1..={size} do not give its root: an entry at or before {size} was rewritten since it was taken"
                        ),
                    ));
                }
                self.checkpoint = Some(size);
            }
        }
        Ok(())
    }

    /// After the last entry: targets beyond the log's end mean its tail was cut off.
    fn finish(self) -> AuditCheck {
        let n = self.tree.size();
        if let Some((size, target)) = self.targets.front() {
            let (at, reason) = match target {
                Target::Head(_) => (
                    BrokenAt::TreeHead(*size),
                    format!(
                        "it covers {size} entries but the log has only {n}: the log's tail was cut off"
                    ),
                ),
                Target::Checkpoint(_) => (
                    BrokenAt::Checkpoint(*size),
                    format!(
                        "the log has {n} entries, fewer than the checkpoint's {size}: its tail was cut off"
                    ),
                ),
            };
            return AuditCheck::Broken { at, reason };
        }
        AuditCheck::Intact(AuditSummary {
            entries: n,
            root_hash: self.tree.root(),
            tree_heads: self.heads,
            newest_head: self.good_head,
            checkpoint: self.checkpoint,
        })
    }
}

/// An audit row (`seq, entry, prev_hash, hash`).
fn stored_entry(r: &Row) -> Result<StoredEntry, StoreError> {
    Ok(StoredEntry {
        seq: r.get(0)?,
        json: r.get(1)?,
        prev_hash: r.get(2)?,
        hash: r.get(3)?,
    })
}

/// The newest audit entry and the tree so far: the writer extends the log from here.
#[derive(Debug, Clone)]
pub(crate) struct LogHead {
    /// Its sequence number (0 before the first entry).
    seq: i64,
    /// Its chain hash (hex), or [`audit::GENESIS`].
    hash: String,
    /// The Merkle tree over every entry.
    frontier: Frontier,
    /// Entries appended in the writer's open transaction and not yet inserted: the batch
    /// inserts them together before it commits ([`LogHead::flush`]), one statement per
    /// [`FLUSH_ROWS`] entries instead of one each (a round trip each on PostgreSQL).
    pending: Vec<PendingEntry>,
    /// On a shared store, the root key's row MAC key: every entry carries its MAC (`audit.mac`),
    /// so a node follows only entries another node wrote, not rows inserted in the database.
    mac: Option<crate::rootkey::RowKey>,
}

/// What an audit entry's MAC covers: its place in the chain and its text.
fn entry_mac_message(seq: i64, prev_hash: &str, entry: &str) -> Vec<u8> {
    format!("cloister-kms audit entry\0{seq}\0{prev_hash}\0{entry}").into_bytes()
}

/// Whether `mac` is the MAC of entry `seq` under the root key's row MAC key.
fn entry_mac_ok(key: &crate::rootkey::RowKey, e: &StoredEntry, mac: Option<&[u8]>) -> bool {
    mac.is_some_and(|m| key.verify(&entry_mac_message(e.seq, &e.prev_hash, &e.json), m))
}

/// An audit row waiting for [`LogHead::flush`]: seq, entry, prev_hash, hash, leaf_hash, and
/// its MAC on a shared store.
type PendingEntry = (i64, String, String, String, Hash, Option<Vec<u8>>);

/// Most entries read by one query when following other nodes' entries.
const CATCH_UP_PAGE: usize = 1024;

/// Most entries inserted by one statement (5 parameters each, 6 with a MAC).
const FLUSH_ROWS: usize = 128;

impl LogHead {
    /// The log as stored: the chain's head, and the tree from the stored frontier (if it matches
    /// a head `key` signed) extended by the entries after it, whose missing `leaf_hash`es (rows
    /// from before the migration) are filled in on the way.
    ///
    /// With `mac` (a shared store), an entry after the frontier without its MAC (inserted in
    /// the database, not written by a node) is refused: the node does not start over it; the
    /// head keeps `mac` for the entries it appends and follows.
    fn restore(tx: &dyn Sql, key: &TreeKey, mac: Option<crate::rootkey::RowKey>) -> Result<Self> {
        let (seq, hash) =
            match tx.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])? {
                Some(r) => (r.get(0)?, r.get(1)?),
                None => (0, audit::GENESIS.to_owned()),
            };
        let mut frontier = stored_frontier(tx, key)?.unwrap_or_default();
        let rows = tx.query(
            if mac.is_some() {
                "SELECT seq, entry, leaf_hash, prev_hash, hash, mac FROM audit WHERE seq > ?1 ORDER BY seq"
            } else {
                "SELECT seq, entry, leaf_hash, NULL, NULL, NULL FROM audit WHERE seq > ?1 ORDER BY seq"
            },
            &[int(sql_int(frontier.size())?)],
        )?;
        let mut filled = 0u64;
        for r in rows {
            let (row_seq, entry, stored): (i64, String, Option<Vec<u8>>) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            if let Some(key) = &mac {
                let e = StoredEntry {
                    seq: row_seq,
                    json: entry.clone(),
                    prev_hash: r.get(3)?,
                    hash: r.get(4)?,
                };
                let m: Option<Vec<u8>> = r.get(5)?;
                if !entry_mac_ok(key, &e, m.as_deref()) {
                    return Err(StoreError::Corrupt(
                        "an audit entry no node wrote (no valid MAC) is in the log: `cloister-kms audit verify` names it",
                    )
                    .into());
                }
            }
            let leaf = merkle::leaf_hash(entry.as_bytes());
            match stored {
                None => {
                    tx.execute(
                        "UPDATE audit SET leaf_hash = ?1 WHERE seq = ?2",
                        &[Value::Blob(leaf.to_vec()), int(row_seq)],
                    )?;
                    filled += 1;
                }
                Some(l) if l != leaf => tracing::warn!(
                    seq = row_seq,
                    "audit entry's leaf_hash does not match its contents; `cloister-kms audit verify` will report it"
                ),
                Some(_) => {}
            }
            frontier.push(leaf);
        }
        if filled > 0 {
            tracing::info!(
                entries = filled,
                "audit log: computed the Merkle leaf hashes of entries stored before this version"
            );
        }
        if u64::try_from(seq).ok() != Some(frontier.size()) {
            tracing::warn!(
                seq,
                tree_size = frontier.size(),
                "audit log: sequence numbers are not 1..=n; `cloister-kms audit verify` will report it"
            );
        }
        Ok(Self {
            seq,
            hash,
            frontier,
            pending: Vec::new(),
            mac,
        })
    }

    /// The newest entry's sequence number (0 before the first).
    pub(super) fn seq(&self) -> i64 {
        self.seq
    }

    /// Follows the entries committed after this head by other nodes of a shared store (the
    /// caller holds the audit lock, so no more can come until it commits).
    pub(super) fn catch_up(&mut self, tx: &dyn Sql) -> Result<()> {
        // The newest entry first (one step down the primary key): usually no other node wrote.
        let newest: Option<i64> = tx.query_one("SELECT max(seq) FROM audit", &[])?.get(0)?;
        if newest.is_none_or(|n| n <= self.seq) {
            return Ok(());
        }
        // In bounded pages, in key order: a plan that sorts the tail of a large log (stale
        // statistics guess a third of it) costs milliseconds per batch.
        loop {
            let rows = tx.query(
                "SELECT seq, entry, prev_hash, hash, leaf_hash, mac FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                &[int(self.seq), int(CATCH_UP_PAGE as i64)],
            )?;
            let full = rows.len() >= CATCH_UP_PAGE;
            self.follow(rows)?;
            if !full {
                return Ok(());
            }
        }
    }

    /// Follows `rows` (other nodes' entries, in order) after this head.
    fn follow(&mut self, rows: Vec<Row>) -> Result<()> {
        for r in rows {
            let e = stored_entry(&r)?;
            let (stored, mac): (Option<Vec<u8>>, Option<Vec<u8>>) = (r.get(4)?, r.get(5)?);
            if e.seq != self.seq + 1 {
                return Err(StoreError::Corrupt("the audit log has a gap in its sequence").into());
            }
            let leaf = merkle::leaf_hash(e.json.as_bytes());
            if stored.is_some_and(|l| l != leaf) {
                return Err(
                    StoreError::Corrupt("an audit entry's leaf_hash does not match it").into(),
                );
            }
            // Only what a node holding the root key wrote, chained to this head, is followed.
            if let Some(key) = &self.mac
                && (!entry_mac_ok(key, &e, mac.as_deref())
                    || audit::check_link(&self.hash, &e).is_err())
            {
                return Err(StoreError::Corrupt(
                    "an audit entry no node wrote (its MAC or chain link is wrong) is in the log",
                )
                .into());
            }
            self.seq = e.seq;
            self.hash = e.hash;
            self.frontier.push(leaf);
        }
        Ok(())
    }

    /// Appends `entry` after this head and moves the head to it; the row is inserted by the
    /// next [`LogHead::flush`], in the same transaction.
    pub(super) fn append(&mut self, entry: &AuditEntry) -> Result<()> {
        let json = serde_json::to_string(entry).map_err(StoreError::from)?;
        let hash = audit::chain_hash(&self.hash, &json);
        let leaf = merkle::leaf_hash(json.as_bytes());
        let seq = self.seq + 1;
        let mac = self
            .mac
            .as_ref()
            .map(|key| key.sign(&entry_mac_message(seq, &self.hash, &json)));
        let prev = std::mem::replace(&mut self.hash, hash.clone());
        self.pending.push((seq, json, prev, hash, leaf, mac));
        self.seq = seq;
        self.frontier.push(leaf);
        Ok(())
    }

    /// Inserts the entries appended since the last flush, inside `tx` (before it commits, and
    /// before a tree head of them is signed).
    pub(super) fn flush(&mut self, tx: &dyn Sql) -> Result<()> {
        let (columns, per_row) = match self.mac {
            Some(_) => ("seq, entry, prev_hash, hash, leaf_hash, mac", 6),
            None => ("seq, entry, prev_hash, hash, leaf_hash", 5),
        };
        for chunk in self.pending.chunks(FLUSH_ROWS) {
            let slots: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let row: Vec<String> = (1..=per_row)
                        .map(|c| format!("?{}", i * per_row + c))
                        .collect();
                    format!("({})", row.join(", "))
                })
                .collect();
            let mut params = Vec::with_capacity(chunk.len() * per_row);
            for (seq, json, prev, hash, leaf, mac) in chunk {
                params.extend([
                    int(*seq),
                    text(json.as_str()),
                    text(prev.as_str()),
                    text(hash.as_str()),
                    Value::Blob(leaf.to_vec()),
                ]);
                if self.mac.is_some() {
                    params.push(mac.clone().map_or(Value::Null, Value::Blob));
                }
            }
            tx.execute(
                &format!("INSERT INTO audit ({columns}) VALUES {}", slots.join(", ")),
                &params,
            )?;
        }
        self.pending.clear();
        Ok(())
    }
}

/// The stored frontier, if it is one and matches a stored head `key` signed.
fn stored_frontier(tx: &dyn Sql, key: &TreeKey) -> Result<Option<Frontier>> {
    let row: Option<(i64, Vec<u8>)> = match tx.query_opt(
        "SELECT tree_size, frontier FROM audit_frontier WHERE id = 1",
        &[],
    )? {
        Some(r) => Some((r.get(0)?, r.get(1)?)),
        None => None,
    };
    let Some((size, bytes)) = row else {
        return Ok(None);
    };
    let frontier = Frontier::decode(&bytes).filter(|f| i64::try_from(f.size()).ok() == Some(size));
    let head = stored_head(tx, size)?;
    match (frontier, head) {
        (Some(f), Some(h)) if key.verifies(&h) && h.root_hash == f.root() => Ok(Some(f)),
        _ => {
            tracing::warn!(
                "audit log: the stored frontier does not match a signed tree head; rebuilding the tree from every entry"
            );
            Ok(None)
        }
    }
}

/// When the newest tree head was signed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signed {
    size: u64,
    at: Instant,
}

/// The writer's tree-head signing: the key and when it last signed.
#[derive(Debug)]
pub(crate) struct TreeHeads {
    signer: TreeSigner,
    signed: Signed,
}

impl TreeHeads {
    /// How many entries of `log` no stored head covers yet.
    pub(super) fn unsigned(&self, log: &LogHead) -> u64 {
        log.frontier.size().saturating_sub(self.signed.size)
    }

    /// Whether a head is due at `now`.
    pub(super) fn due(&self, log: &LogHead, now: Instant) -> bool {
        let unsigned = self.unsigned(log);
        unsigned >= HEAD_EVERY_ENTRIES
            || (unsigned > 0 && now.duration_since(self.signed.at) >= HEAD_EVERY)
    }

    /// How long until a head is due by time alone (None: no entry is unsigned).
    pub(super) fn wait(&self, log: &LogHead) -> Option<Duration> {
        (self.unsigned(log) > 0).then(|| HEAD_EVERY.saturating_sub(self.signed.at.elapsed()))
    }

    /// The state to restore if the transaction that signed fails.
    /// Counts heads other nodes of a shared store signed as signed.
    pub(super) fn catch_up(&mut self, tx: &dyn Sql) -> Result<()> {
        let newest: Option<i64> = tx
            .query_one("SELECT max(tree_size) FROM tree_heads", &[])?
            .get(0)?;
        if let Some(size) = newest.and_then(|n| u64::try_from(n).ok())
            && size > self.signed.size
        {
            self.signed = Signed {
                size,
                at: Instant::now(),
            };
        }
        Ok(())
    }

    pub(super) fn mark(&self) -> Signed {
        self.signed
    }

    /// Restores [`TreeHeads::mark`]'s size after a failed transaction, but restarts the clock:
    /// a store that keeps failing is retried a period later, not in a loop.
    pub(super) fn reset(&mut self, mark: Signed) {
        self.signed = Signed {
            size: mark.size,
            at: Instant::now(),
        };
    }

    /// Signs the head of `log` now and stores it with the frontier, inside `tx`.
    pub(super) fn sign(&mut self, tx: &dyn Sql, log: &LogHead) -> Result<()> {
        let size = log.frontier.size();
        let head = self.signer.sign_now(size, log.frontier.root());
        // A head of this size may be stored already (another node of a shared store signed the
        // same log at the same size): either is a good head.
        tx.execute(
            "INSERT INTO tree_heads (tree_size, root_hash, timestamp_ms, signature)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tree_size) DO NOTHING",
            &[
                int(sql_int(size)?),
                Value::Blob(head.root_hash.to_vec()),
                int(sql_int(head.timestamp_ms)?),
                Value::Blob(head.signature.to_vec()),
            ],
        )?;
        tx.execute(
            "INSERT INTO audit_frontier (id, tree_size, frontier) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET tree_size = excluded.tree_size, frontier = excluded.frontier
             WHERE excluded.tree_size >= audit_frontier.tree_size",
            &[int(sql_int(size)?), Value::Blob(log.frontier.encode())],
        )?;
        self.signed = Signed {
            size,
            at: Instant::now(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, params};

    fn entry(op: &str) -> AuditEntry {
        AuditEntry {
            time_ms: 1,
            principal: "p".into(),
            operation: op.into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        }
    }

    fn start(dir: &std::path::Path) -> (Writer, TreeKey) {
        let root = RootKey::load_or_create(dir).unwrap();
        let key = TreeSigner::load_or_create(dir, &root)
            .unwrap()
            .public_key()
            .clone();
        let writer = Store::open(dir).unwrap().start_writer(&root, dir).unwrap();
        (writer, key)
    }

    fn intact(c: AuditCheck) -> AuditSummary {
        match c {
            AuditCheck::Intact(s) => s,
            broken => panic!("{broken:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_audit_entries_form_one_intact_log_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        Store::init(dir.path(), "111122223333").unwrap();
        let (writer, key) = start(dir.path());
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let w = writer.clone();
                tokio::spawn(async move { w.append_audit(entry(&format!("Op{i}"))).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Dropping the last handle stops the thread, which signs the unsigned entries.
        drop(writer);
        let reader = Store::open_read_only(dir.path()).unwrap();
        let s = intact(reader.verify_audit(Some(&key), None, None).unwrap());
        assert_eq!((s.entries, s.tree_heads, s.newest_head), (20, 2, Some(20)));
        // A new writer continues the log from the stored head.
        let (writer, _) = start(dir.path());
        writer.append_audit(entry("Last")).await.unwrap();
        drop(writer);
        let s = intact(reader.verify_audit(Some(&key), None, None).unwrap());
        assert_eq!((s.entries, s.tree_heads), (21, 3));
        let tail = reader.audit_tail(2).unwrap();
        assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [20, 21]);
        assert_eq!(tail[1].prev_hash, tail[0].hash);
        assert!(tail[1].json.contains("\"Last\""));
        // The proofs agree with the verified root.
        let (text, path, root) = reader.audit_inclusion(21, 21).unwrap();
        assert_eq!(root, s.root_hash);
        assert!(merkle::verify_inclusion(
            &merkle::leaf_hash(text.as_bytes()),
            20,
            21,
            &path,
            &root
        ));

        let rw = Store::open(dir.path()).unwrap();
        rw.sqlite()
            .execute(
                "UPDATE audit SET entry = replace(entry, 'Op', 'Xp') WHERE seq = 7",
                [],
            )
            .unwrap();
        assert!(matches!(
            reader.verify_audit(Some(&key), None, None).unwrap(),
            AuditCheck::Broken {
                at: BrokenAt::Entry(7),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_head_is_signed_every_256_entries_and_a_rewrite_under_one_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        Store::init(dir.path(), "111122223333").unwrap();
        let (writer, key) = start(dir.path());
        for i in 0..300 {
            writer.append_audit(entry(&format!("Op{i}"))).await.unwrap();
        }
        let reader = Store::open_read_only(dir.path()).unwrap();
        // The start's head (size 0) and at least one after 256 entries, while running.
        let s = intact(reader.verify_audit(Some(&key), None, None).unwrap());
        assert_eq!(s.entries, 300);
        let newest = s.newest_head.unwrap();
        assert!((256..300).contains(&newest), "{newest}");
        drop(writer);

        // Rewrite entry 100 and recompute the chain and leaf hashes after it, as someone with
        // only write access to the database can.
        let rw = Store::open(dir.path()).unwrap();
        recompute_from(rw.sqlite(), 100, "Op99", "Forged");
        let broken = reader.verify_audit(Some(&key), None, None).unwrap();
        assert!(
            matches!(&broken, AuditCheck::Broken { at: BrokenAt::TreeHead(n), reason } if *n == newest && reason.contains("after 0 and at or before")),
            "{broken:?}"
        );
    }

    /// Replaces `from` with `to` in entry `seq` and recomputes every chain and leaf hash.
    fn recompute_from(conn: &Connection, seq: i64, from: &str, to: &str) {
        conn.execute(
            "UPDATE audit SET entry = replace(entry, ?1, ?2) WHERE seq = ?3",
            params![from, to, seq],
        )
        .unwrap();
        let rows: Vec<(i64, String)> = conn
            .prepare("SELECT seq, entry FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut prev = audit::GENESIS.to_owned();
        for (seq, json) in rows {
            let hash = audit::chain_hash(&prev, &json);
            conn.execute(
                "UPDATE audit SET prev_hash = ?1, hash = ?2, leaf_hash = ?3 WHERE seq = ?4",
                params![
                    prev,
                    hash,
                    merkle::leaf_hash(json.as_bytes()).as_slice(),
                    seq
                ],
            )
            .unwrap();
            prev = hash;
        }
    }

    #[tokio::test]
    async fn a_chain_only_log_is_migrated_once_and_keeps_growing() {
        let dir = tempfile::tempdir().unwrap();
        Store::init(dir.path(), "111122223333").unwrap();
        // The table as the previous version wrote it: no leaf_hash, no tree tables.
        let old = Store::open(dir.path()).unwrap();
        let mut prev = audit::GENESIS.to_owned();
        for seq in 1..=5 {
            let json = serde_json::to_string(&entry(&format!("Old{seq}"))).unwrap();
            let hash = audit::chain_hash(&prev, &json);
            old.sqlite()
                .execute(
                    "INSERT INTO audit (seq, entry, prev_hash, hash) VALUES (?1, ?2, ?3, ?4)",
                    params![seq, json, prev, hash],
                )
                .unwrap();
            prev = hash;
        }
        let reader = Store::open_read_only(dir.path()).unwrap();
        // Readable before the migration: the chain holds, there are no heads yet.
        let s = intact(reader.verify_audit(None, None, None).unwrap());
        assert_eq!((s.entries, s.tree_heads), (5, 0));

        let (writer, key) = start(dir.path());
        let filled: i64 = old
            .sqlite()
            .query_row(
                "SELECT count(*) FROM audit WHERE leaf_hash IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(filled, 5);
        writer.append_audit(entry("New")).await.unwrap();
        drop(writer);
        let s = intact(reader.verify_audit(Some(&key), None, None).unwrap());
        assert_eq!((s.entries, s.tree_heads, s.newest_head), (6, 2, Some(6)));
        // Without the key, the heads cannot be checked.
        assert!(matches!(
            reader.verify_audit(None, None, None).unwrap(),
            AuditCheck::Broken {
                at: BrokenAt::TreeHead(5),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_bad_stored_frontier_is_rebuilt_from_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        Store::init(dir.path(), "111122223333").unwrap();
        let (writer, key) = start(dir.path());
        for i in 0..10 {
            writer.append_audit(entry(&format!("Op{i}"))).await.unwrap();
        }
        drop(writer);
        let rw = Store::open(dir.path()).unwrap();
        rw.sqlite()
            .execute("UPDATE audit_frontier SET frontier = zeroblob(72)", [])
            .unwrap();
        let (writer, _) = start(dir.path());
        writer.append_audit(entry("After")).await.unwrap();
        drop(writer);
        let reader = Store::open_read_only(dir.path()).unwrap();
        let s = intact(reader.verify_audit(Some(&key), None, None).unwrap());
        assert_eq!((s.entries, s.newest_head), (11, Some(11)));
    }

    #[test]
    fn checkpoints_catch_rewrites_and_cut_tails() {
        let dir = tempfile::tempdir().unwrap();
        Store::init(dir.path(), "111122223333").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (writer, key) = start(dir.path());
        rt.block_on(async {
            for i in 0..12 {
                writer.append_audit(entry(&format!("Op{i}"))).await.unwrap();
            }
        });
        drop(writer);
        let reader = Store::open_read_only(dir.path()).unwrap();
        let s = intact(reader.verify_audit(Some(&key), None, None).unwrap());
        let signer = TreeSigner::load(dir.path(), &RootKey::load_or_create(dir.path()).unwrap())
            .unwrap()
            .unwrap();
        let checkpoint = signer.sign(s.entries, s.root_hash, 1);
        let s = intact(
            reader
                .verify_audit(Some(&key), Some(&checkpoint), None)
                .unwrap(),
        );
        assert_eq!(s.checkpoint, Some(12));
        // A checkpoint signed by another key.
        let other = TreeSigner::generate().unwrap().sign(12, s.root_hash, 1);
        assert!(matches!(
            reader.verify_audit(Some(&key), Some(&other), None).unwrap(),
            AuditCheck::Broken {
                at: BrokenAt::Checkpoint(12),
                ..
            }
        ));
        // Rewritten with every hash recomputed and the stored heads gone.
        let rw = Store::open(dir.path()).unwrap();
        rw.sqlite().execute("DELETE FROM tree_heads", []).unwrap();
        recompute_from(rw.sqlite(), 3, "Op2", "Forged");
        assert!(matches!(
            reader.verify_audit(Some(&key), None, None).unwrap(),
            AuditCheck::Intact(_)
        ));
        let broken = reader
            .verify_audit(Some(&key), Some(&checkpoint), None)
            .unwrap();
        assert!(
            matches!(&broken, AuditCheck::Broken { at: BrokenAt::Checkpoint(12), reason } if reason.contains("rewritten")),
            "{broken:?}"
        );
        // Cut off.
        recompute_from(rw.sqlite(), 3, "Forged", "Op2");
        rw.sqlite()
            .execute("DELETE FROM audit WHERE seq > 10", [])
            .unwrap();
        let broken = reader
            .verify_audit(Some(&key), Some(&checkpoint), None)
            .unwrap();
        assert!(
            matches!(&broken, AuditCheck::Broken { at: BrokenAt::Checkpoint(12), reason } if reason.contains("tail was cut off")),
            "{broken:?}"
        );
    }
}
