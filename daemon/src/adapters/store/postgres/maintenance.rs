//! Maintenance windows set through the API, on PostgreSQL: added, listed (the live ones), and
//! cancelled in a transaction that locks the row (`FOR UPDATE`) and writes only while the window
//! is not cancelled; a cancel wakes the leader's engine, whichever replica leads.

use super::wire::{SIGNALS_CHANNEL, db, decode, encode, text};
use crate::adapters::store::{Cancelled, MaintenanceWindow, NewWindow, Result, cancel_row};
use crate::domain::time::Timestamp;

/// The columns [`window`] reads, in its order.
const COLUMNS: &str =
    "id, scope, starts_at, ends_at, reason, author, created_at, cancelled_at, weekly, cancelled_by";

/// A window from its row ([`COLUMNS`]).
fn window(r: &tokio_postgres::Row) -> Result<MaintenanceWindow> {
    Ok(MaintenanceWindow {
        id: r.try_get(0).map_err(db)?,
        scope: r.try_get(1).map_err(db)?,
        starts_at: Timestamp(r.try_get(2).map_err(db)?),
        ends_at: Timestamp(r.try_get(3).map_err(db)?),
        reason: r.try_get(4).map_err(db)?,
        author: r.try_get(5).map_err(db)?,
        created_at: Timestamp(r.try_get(6).map_err(db)?),
        cancelled_at: r.try_get::<_, Option<i64>>(7).map_err(db)?.map(Timestamp),
        weekly: r
            .try_get::<_, Option<String>>(8)
            .map_err(db)?
            .as_deref()
            .map(decode)
            .transpose()?,
        cancelled_by: r.try_get(9).map_err(db)?,
    })
}

/// Stores a window; returns it with its id. Wakes the leader's engine (a window open now holds
/// its incidents at the next pass rather than the next tick).
pub(super) async fn add(c: &deadpool_postgres::Object, w: NewWindow) -> Result<MaintenanceWindow> {
    let row = c
        .query_one(
            "WITH added AS (
                 INSERT INTO maintenance_windows (scope, starts_at, ends_at, reason, author, created_at, weekly)
                 VALUES ($1, $2, $3, $4, $5, $6, $8) RETURNING id
             )
             SELECT id, pg_notify($7, 'maintenance') FROM added",
            &[
                &text(&w.scope),
                &w.starts_at.0,
                &w.ends_at.0,
                &text(&w.reason),
                &text(&w.author),
                &w.created_at.0,
                &SIGNALS_CHANNEL,
                &w.weekly.as_ref().map(encode),
            ],
        )
        .await
        .map_err(db)?;
    let id: i64 = row.try_get(0).map_err(db)?;
    Ok(MaintenanceWindow::stored(id, w))
}

/// The windows neither cancelled nor ended at `now`, by start.
pub(super) async fn live(
    c: &deadpool_postgres::Object,
    now: Timestamp,
) -> Result<Vec<MaintenanceWindow>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM maintenance_windows
             WHERE cancelled_at IS NULL AND ends_at > $1 ORDER BY starts_at, id"
        ))
        .await
        .map_err(db)?;
    c.query(&st, &[&now.0])
        .await
        .map_err(db)?
        .iter()
        .map(window)
        .collect()
}

/// Cancels a live window (see [`crate::adapters::store::Store::cancel_maintenance`]).
pub(super) async fn cancel(
    c: &mut deadpool_postgres::Object,
    id: i64,
    now: Timestamp,
    by: &str,
) -> Result<Cancelled> {
    let tx = c.transaction().await.map_err(db)?;
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM maintenance_windows WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(db)?;
    let done = cancel_row(row.as_ref().map(window).transpose()?, now, by);
    if let Cancelled::Done(_) = &done {
        tx.execute(
            "UPDATE maintenance_windows SET cancelled_at = $2, cancelled_by = $3
             WHERE id = $1 AND cancelled_at IS NULL",
            &[&id, &now.0, &text(by)],
        )
        .await
        .map_err(db)?;
        // Delivered at COMMIT to the leader's LISTEN connection.
        tx.execute("SELECT pg_notify($1, 'maintenance')", &[&SIGNALS_CHANNEL])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(done)
}
