//! The signal retention's removal on SQLite ([`Store::prune_signals`]): one short transaction per
//! call, so that ingest waits for at most one batch of deletes.
//!
//! [`Store::prune_signals`]: crate::adapters::store::Store::prune_signals

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::db;
use crate::adapters::store::{Pruned, Result};
use crate::domain::time::Timestamp;

/// Removes, of the handled signals after `after` (at most `limit`, never the newest row), those
/// last heard of before `before`, and the receipts received before `before` among the oldest
/// `limit`.
pub(super) fn prune(
    c: &mut Connection,
    after: i64,
    before: Timestamp,
    limit: usize,
) -> Result<Pruned> {
    let tx = c.transaction().map_err(db)?;
    // The window: handled rows after `after`, oldest first. The newest row stays whatever its
    // age: an `INTEGER PRIMARY KEY` takes max(id) + 1, and an id at or under the engine's
    // watermark would never be read.
    let window: Option<(i64, i64)> = tx
        .query_row(
            "SELECT id, received_at FROM signals WHERE id = (
                 SELECT max(id) FROM (
                     SELECT id FROM signals
                     WHERE id > ?1
                       AND id <= coalesce((SELECT value FROM counters WHERE name = 'engine_signals'), 0)
                       AND id < (SELECT max(id) FROM signals)
                     ORDER BY id LIMIT ?2))",
            params![after, limit as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    let mut pruned = Pruned::default();
    if let Some((upper, received_at)) = window {
        pruned.signals = tx
            .execute(
                "DELETE FROM signals WHERE id > ?1 AND id <= ?2
                 AND coalesce(last_seen, received_at) < ?3",
                params![after, upper, before.0],
            )
            .map_err(db)? as u64;
        // Rows are stored in arrival order: past a row received after `before`, none is older.
        pruned.next = (received_at < before.0).then_some(upper);
    }
    pruned.receipts = tx
        .execute(
            "DELETE FROM receipts WHERE id IN (SELECT id FROM receipts ORDER BY id LIMIT ?1)
             AND received_at < ?2",
            params![limit as i64, before.0],
        )
        .map_err(db)? as u64;
    tx.commit().map_err(db)?;
    Ok(pruned)
}
