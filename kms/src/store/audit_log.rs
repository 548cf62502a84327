//! The audit log's rows: appending entries in the writer's transaction and reading them back.
//!
//! Kept apart from the key, alias and principal rows (`mod.rs`) because the log has its own
//! integrity scheme (see `crate::audit`): the writer thread owns the log's head and extends it
//! in commit order.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, Writer};
use crate::audit::{self, AuditEntry};
use crate::error::{Result, StoreError};
use crate::rootkey::RootKey;

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

/// What walking the audit chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditCheck {
    /// Every entry links to the one before: this many entries.
    Intact(i64),
    /// The first entry that does not, and why.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// Why.
        reason: String,
    },
}

impl Store {
    /// The last `n` audit entries, oldest first.
    pub fn audit_tail(&self, n: usize) -> Result<Vec<StoredEntry>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, entry, prev_hash, hash FROM audit ORDER BY seq DESC LIMIT ?1")?;
        let rows = stmt.query_map([i64::try_from(n).unwrap_or(i64::MAX)], stored_entry)?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Walks the whole audit chain.
    pub fn verify_audit(&self) -> Result<AuditCheck> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, entry, prev_hash, hash FROM audit ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut prev = audit::GENESIS.to_owned();
        let mut expected_seq = 1;
        while let Some(r) = rows.next()? {
            let entry = stored_entry(r)?;
            let broken = |reason: String| AuditCheck::Broken {
                seq: entry.seq,
                reason,
            };
            if entry.seq != expected_seq {
                return Ok(broken(format!("sequence gap: expected {expected_seq}")));
            }
            if let Err(reason) = audit::check_link(&prev, &entry) {
                return Ok(broken(reason.into()));
            }
            prev = entry.hash;
            expected_seq += 1;
        }
        Ok(AuditCheck::Intact(expected_seq - 1))
    }

    /// Moves this (read-write) connection to the writer thread, which MACs the rows it writes
    /// under `root`'s row key; the audit chain continues from the newest stored entry.
    pub(crate) fn start_writer(self, root: &RootKey) -> Result<Writer> {
        let head: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (seq, hash) = head.unwrap_or_else(|| (0, audit::GENESIS.to_owned()));
        Writer::start(self.conn, root.rows().clone(), ChainHead { seq, hash })
    }
}

/// An audit row (`seq, entry, prev_hash, hash`).
fn stored_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        seq: r.get(0)?,
        json: r.get(1)?,
        prev_hash: r.get(2)?,
        hash: r.get(3)?,
    })
}

/// The newest audit entry: the writer extends the chain from here.
#[derive(Debug, Clone)]
pub(crate) struct ChainHead {
    /// Its sequence number (0 before the first entry).
    pub(super) seq: i64,
    /// Its hash (hex), or [`audit::GENESIS`].
    pub(super) hash: String,
}

impl ChainHead {
    /// Appends `entry` after this head inside `tx`, and moves the head to it.
    pub(super) fn append(&mut self, tx: &Connection, entry: &AuditEntry) -> Result<()> {
        let json = serde_json::to_string(entry).map_err(StoreError::from)?;
        let hash = audit::chain_hash(&self.hash, &json);
        let seq = self.seq + 1;
        tx.execute(
            "INSERT INTO audit (seq, entry, prev_hash, hash) VALUES (?1, ?2, ?3, ?4)",
            params![seq, json, self.hash, hash],
        )?;
        self.seq = seq;
        self.hash = hash;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(op: &str) -> AuditEntry {
        AuditEntry {
            time_ms: 1,
            principal: "p".into(),
            operation: op.into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        }
    }

    #[tokio::test]
    async fn concurrent_audit_entries_form_one_intact_chain_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (root, store) = Store::init(dir.path(), "111122223333").unwrap();
        let writer = store.start_writer(&root).unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let w = writer.clone();
                tokio::spawn(async move { w.append_audit(entry(&format!("Op{i}"))).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        drop(writer);
        // A new writer continues the chain from the stored head.
        let writer = Store::open(dir.path())
            .unwrap()
            .start_writer(&root)
            .unwrap();
        writer.append_audit(entry("Last")).await.unwrap();
        let reader = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.verify_audit().unwrap(), AuditCheck::Intact(21));
        let tail = reader.audit_tail(2).unwrap();
        assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [20, 21]);
        assert_eq!(tail[1].prev_hash, tail[0].hash);
        assert!(tail[1].json.contains("\"Last\""));

        let rw = Store::open(dir.path()).unwrap();
        rw.conn
            .execute(
                "UPDATE audit SET entry = replace(entry, 'Op', 'Xp') WHERE seq = 7",
                [],
            )
            .unwrap();
        assert!(matches!(
            reader.verify_audit().unwrap(),
            AuditCheck::Broken { seq: 7, .. }
        ));
    }
}
