//! Maintenance windows set through the API, on SQLite: added, listed (the live ones), and
//! cancelled in a transaction that writes only while the window is not cancelled.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::db;
use crate::adapters::store::{Cancelled, MaintenanceWindow, NewWindow, Result, cancel_row};
use crate::domain::time::Timestamp;

/// The columns [`window`] reads, in its order.
const COLUMNS: &str = "id, scope, starts_at, ends_at, reason, author, created_at, cancelled_at";

/// A window from its row ([`COLUMNS`]).
fn window(r: &Row<'_>) -> rusqlite::Result<MaintenanceWindow> {
    Ok(MaintenanceWindow {
        id: r.get(0)?,
        scope: r.get(1)?,
        starts_at: Timestamp(r.get(2)?),
        ends_at: Timestamp(r.get(3)?),
        reason: r.get(4)?,
        author: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        cancelled_at: r.get::<_, Option<i64>>(7)?.map(Timestamp),
    })
}

/// Stores a window; returns it with its id.
pub(super) fn add(c: &Connection, w: NewWindow) -> Result<MaintenanceWindow> {
    c.execute(
        "INSERT INTO maintenance_windows (scope, starts_at, ends_at, reason, author, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            w.scope,
            w.starts_at.0,
            w.ends_at.0,
            w.reason,
            w.author,
            w.created_at.0
        ],
    )
    .map_err(db)?;
    Ok(MaintenanceWindow::stored(c.last_insert_rowid(), w))
}

/// The windows neither cancelled nor ended at `now`, by start.
pub(super) fn live(c: &Connection, now: Timestamp) -> Result<Vec<MaintenanceWindow>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM maintenance_windows
         WHERE cancelled_at IS NULL AND ends_at > ?1 ORDER BY starts_at, id"
    ))
    .and_then(|mut st| {
        st.query_map(params![now.0], window)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(db)
}

/// Cancels a live window (see [`crate::adapters::store::Store::cancel_maintenance`]).
pub(super) fn cancel(c: &mut Connection, id: i64, now: Timestamp) -> Result<Cancelled> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let row = tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM maintenance_windows WHERE id = ?1"),
            params![id],
            window,
        )
        .optional()
        .map_err(db)?;
    let done = cancel_row(row, now);
    if let Cancelled::Done(_) = &done {
        tx.execute(
            "UPDATE maintenance_windows SET cancelled_at = ?2 WHERE id = ?1 AND cancelled_at IS NULL",
            params![id, now.0],
        )
        .map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(done)
}
