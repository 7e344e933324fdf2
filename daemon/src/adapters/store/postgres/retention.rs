//! The signal retention's removal on PostgreSQL ([`Store::prune_signals`]): one short
//! transaction per call. Ids come from a sequence and are never given out again; the newest row
//! is kept anyway, as on SQLite, so that both stores answer alike.
//!
//! [`Store::prune_signals`]: crate::adapters::store::Store::prune_signals

use super::wire::db;
use crate::adapters::store::{Pruned, Result};
use crate::domain::time::Timestamp;

/// Removes, of the handled signals after `after` (at most `limit`, never the newest row), those
/// last heard of before `before`, and the receipts received before `before` among the oldest
/// `limit`.
pub(super) async fn prune(
    c: &mut deadpool_postgres::Object,
    after: i64,
    before: Timestamp,
    limit: usize,
) -> Result<Pruned> {
    let tx = c.transaction().await.map_err(db)?;
    let window = tx
        .query_opt(
            "SELECT id, received_at FROM signals WHERE id = (
                 SELECT max(id) FROM (
                     SELECT id FROM signals
                     WHERE id > $1
                       AND id <= coalesce((SELECT value FROM counters WHERE name = 'engine_signals'), 0)
                       AND id < (SELECT max(id) FROM signals)
                     ORDER BY id LIMIT $2) w)",
            &[&after, &(limit as i64)],
        )
        .await
        .map_err(db)?;
    let mut pruned = Pruned::default();
    if let Some(row) = window {
        let upper: i64 = row.try_get(0).map_err(db)?;
        let received_at: i64 = row.try_get(1).map_err(db)?;
        pruned.signals = tx
            .execute(
                "DELETE FROM signals WHERE id > $1 AND id <= $2
                 AND coalesce(last_seen, received_at) < $3",
                &[&after, &upper, &before.0],
            )
            .await
            .map_err(db)?;
        // Rows are stored in arrival order: past a row received after `before`, none is older.
        pruned.next = (received_at < before.0).then_some(upper);
    }
    pruned.receipts = tx
        .execute(
            "DELETE FROM receipts WHERE id IN (SELECT id FROM receipts ORDER BY id LIMIT $1)
             AND received_at < $2",
            &[&(limit as i64), &before.0],
        )
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(pruned)
}
