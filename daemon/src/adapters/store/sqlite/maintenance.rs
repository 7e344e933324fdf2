//! Maintenance windows set through the API, on SQLite: added, listed (the live ones), and
//! cancelled in a transaction that writes only while the window is not cancelled.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{db, decode, encode};
use crate::adapters::store::{Cancelled, MaintenanceWindow, NewWindow, Result, cancel_row};
use crate::domain::time::Timestamp;

/// The columns [`window`] reads, in its order.
const COLUMNS: &str =
    "id, scope, starts_at, ends_at, reason, author, created_at, cancelled_at, weekly, cancelled_by";

/// A window from its row ([`COLUMNS`]), and its `weekly` as stored (decoded by [`decoded`]).
fn row(r: &Row<'_>) -> rusqlite::Result<(MaintenanceWindow, Option<String>)> {
    let w = MaintenanceWindow {
        id: r.get(0)?,
        scope: r.get(1)?,
        starts_at: Timestamp(r.get(2)?),
        ends_at: Timestamp(r.get(3)?),
        reason: r.get(4)?,
        author: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        cancelled_at: r.get::<_, Option<i64>>(7)?.map(Timestamp),
        weekly: None,
        cancelled_by: r.get(9)?,
    };
    Ok((w, r.get(8)?))
}

/// The window with its `weekly` decoded; a stored value that does not decode is an error.
fn decoded((mut w, weekly): (MaintenanceWindow, Option<String>)) -> Result<MaintenanceWindow> {
    w.weekly = weekly.as_deref().map(decode).transpose()?;
    Ok(w)
}

/// Stores a window; returns it with its id.
pub(super) fn add(c: &Connection, w: NewWindow) -> Result<MaintenanceWindow> {
    c.execute(
        "INSERT INTO maintenance_windows (scope, starts_at, ends_at, reason, author, created_at, weekly)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            w.scope,
            w.starts_at.0,
            w.ends_at.0,
            w.reason,
            w.author,
            w.created_at.0,
            w.weekly.as_ref().map(encode)
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
        st.query_map(params![now.0], row)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(db)?
    .into_iter()
    .map(decoded)
    .collect()
}

/// Cancels a live window (see [`crate::adapters::store::Store::cancel_maintenance`]).
pub(super) fn cancel(c: &mut Connection, id: i64, now: Timestamp, by: &str) -> Result<Cancelled> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let found = tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM maintenance_windows WHERE id = ?1"),
            params![id],
            row,
        )
        .optional()
        .map_err(db)?
        .map(decoded)
        .transpose()?;
    let done = cancel_row(found, now, by);
    if let Cancelled::Done(_) = &done {
        tx.execute(
            "UPDATE maintenance_windows SET cancelled_at = ?2, cancelled_by = ?3
             WHERE id = ?1 AND cancelled_at IS NULL",
            params![id, now.0, by],
        )
        .map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(done)
}
