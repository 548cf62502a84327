//! What one store shared by several cloister-kms nodes (PostgreSQL) needs beyond one node's:
//! every node keeps the whole state in memory, so each must learn of the others' changes before
//! it answers a request that depends on them, and the audit log must stay one log.
//!
//! - **The store's generation** (`kms_generation`): every change of keys, aliases, grants,
//!   secrets or parameters moves it by one, in the change's own transaction, and only from the
//!   generation the writing node's memory reflects (a fence: a node whose memory is behind
//!   writes nothing, and its request fails with a retryable error). A node compares the stored
//!   generation with its own before it serves a request (one read per batch of requests, see
//!   `App::sync`) and reloads its state when they differ. So no decision is made from memory
//!   older than the last change committed before the request arrived.
//! - **Changes one at a time** ([`MUTATION_LOCK`]): a node holds this session lock from reading
//!   the state it changes until the change is durable and applied, so two nodes do not change
//!   the same thing from the same old state (the fence would refuse the second; the lock makes
//!   it wait instead).
//! - **One audit log** ([`AUDIT_LOCK`]): every writer transaction takes this lock first and
//!   catches its log head up with the entries other nodes committed, so entries are chained
//!   and enter the Merkle tree in one commit order, whichever node wrote them.
//!
//! On SQLite (one process per store) none of this runs: the generation stays 0.

use std::sync::atomic::{AtomicI64, Ordering};

use super::sql::{Sql, int};
use crate::error::{Result, StoreError};

/// The advisory lock (transaction scope) every writer transaction takes first.
pub(crate) const AUDIT_LOCK: i64 = 0x636c_6f69_7374_0001;
/// The advisory lock (session scope) a node holds while it changes the state.
pub(crate) const MUTATION_LOCK: i64 = 0x636c_6f69_7374_0002;

/// The tables of a shared store's coordination (PostgreSQL schema version 4).
pub(crate) const COORDINATION_SCHEMA: &str = "
CREATE TABLE kms_generation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO kms_generation (id, generation) VALUES (1, 0);
CREATE TABLE kms_nodes (
    node_id TEXT PRIMARY KEY,
    seen_ms BIGINT NOT NULL
);
";

/// The store generation this node's in-memory state reflects, and the changes the writer's
/// open transaction has made (each moves the generation by one).
#[derive(Debug, Default)]
pub(crate) struct Generation {
    known: AtomicI64,
    pending: AtomicI64,
}

impl Generation {
    /// The generation the state reflects.
    pub(crate) fn known(&self) -> i64 {
        self.known.load(Ordering::SeqCst)
    }

    /// The state now reflects `generation` (a reload read it).
    pub(crate) fn set(&self, generation: i64) {
        self.known.store(generation, Ordering::SeqCst);
    }

    /// The writer's transaction ended: if it `committed`, this node's changes in it (applied to
    /// memory by their requests) moved the generation on from `start`, unless a reload already
    /// moved it.
    pub(crate) fn settle(&self, start: i64, committed: bool) {
        let n = self.pending.swap(0, Ordering::SeqCst);
        if committed && n > 0 {
            let _ =
                self.known
                    .compare_exchange(start, start + n, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// A change fenced in [`fence`] was rolled back (its savepoint failed).
    pub(crate) fn unfence(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The stored generation.
pub(crate) fn stored_generation(conn: &dyn Sql) -> Result<i64> {
    Ok(conn
        .query_one("SELECT generation FROM kms_generation WHERE id = 1", &[])?
        .get(0)?)
}

/// Moves the stored generation on by one from the one this node's memory reflects (with the
/// changes already in the writer's transaction), in that transaction; refused (retryable) if
/// another node changed the store since this node read it.
pub(crate) fn fence(conn: &dyn Sql, g: &Generation) -> Result<()> {
    let from = g.known() + g.pending.load(Ordering::SeqCst);
    let moved = conn.execute(
        "UPDATE kms_generation SET generation = generation + 1 WHERE id = 1 AND generation = ?1",
        &[int(from)],
    )?;
    if moved != 1 {
        return Err(StoreError::Unavailable(
            "another node changed the store while this one was changing it; nothing was written"
                .into(),
        )
        .into());
    }
    g.pending.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Takes the transaction-scoped audit lock (PostgreSQL), so this transaction's entries follow
/// every entry committed before it.
pub(crate) fn lock_audit(conn: &dyn Sql) -> Result<()> {
    conn.query("SELECT pg_advisory_xact_lock(?1)", &[int(AUDIT_LOCK)])?;
    Ok(())
}

/// Takes the node's session lock for changing the state (blocks until no other node holds it).
pub(crate) fn lock_mutations(conn: &dyn Sql) -> Result<()> {
    conn.query("SELECT pg_advisory_lock(?1)", &[int(MUTATION_LOCK)])?;
    Ok(())
}

/// Releases [`lock_mutations`].
pub(crate) fn unlock_mutations(conn: &dyn Sql) -> Result<()> {
    conn.query("SELECT pg_advisory_unlock(?1)", &[int(MUTATION_LOCK)])?;
    Ok(())
}

/// Records that node `node_id` is alive now, and counts the nodes seen within `window_ms`
/// (itself included): the share of a service-wide rate limit each node enforces.
pub(crate) fn heartbeat(conn: &dyn Sql, node_id: &str, now_ms: i64, window_ms: i64) -> Result<u32> {
    conn.execute(
        "INSERT INTO kms_nodes (node_id, seen_ms) VALUES (?1, ?2)
         ON CONFLICT (node_id) DO UPDATE SET seen_ms = excluded.seen_ms",
        &[super::sql::text(node_id), int(now_ms)],
    )?;
    let n: i64 = conn
        .query_one(
            "SELECT count(*) FROM kms_nodes WHERE seen_ms > ?1",
            &[int(now_ms - window_ms)],
        )?
        .get(0)?;
    Ok(u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_advances_its_generation_only_by_its_committed_changes() {
        let g = Generation::default();
        g.set(4);
        g.pending.store(2, Ordering::SeqCst);
        g.settle(4, true);
        assert_eq!((g.known(), g.pending.load(Ordering::SeqCst)), (6, 0));
        g.pending.store(1, Ordering::SeqCst);
        g.settle(6, false);
        assert_eq!((g.known(), g.pending.load(Ordering::SeqCst)), (6, 0));
        // A reload moved it on meanwhile: the commit does not move it back.
        g.set(9);
        g.pending.store(1, Ordering::SeqCst);
        g.settle(6, true);
        assert_eq!(g.known(), 9);
    }
}
