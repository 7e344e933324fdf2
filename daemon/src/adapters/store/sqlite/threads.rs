//! The outbox's threads and coalesced updates on SQLite ([`Store::outbox_threaded`],
//! [`Store::outbox_supersede`]).
//!
//! [`Store::outbox_threaded`]: crate::adapters::store::Store::outbox_threaded
//! [`Store::outbox_supersede`]: crate::adapters::store::Store::outbox_supersede

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::db;
use crate::adapters::store::{Result, superseded_updates};
use crate::domain::notification::{Notification, NotificationKind};
use crate::domain::time::Timestamp;

/// Marks page `id` delivered and keeps its (incident, route)'s first thread.
pub(super) fn threaded(c: &mut Connection, id: i64, now: Timestamp, thread: &str) -> Result<()> {
    let tx = c.transaction().map_err(db)?;
    tx.execute(
        "UPDATE outbox SET done_at = ?2, delivered = 1, attempts = attempts + 1 WHERE id = ?1",
        params![id, now.0],
    )
    .map_err(db)?;
    tx.execute(
        "INSERT INTO page_threads (incident_id, route, thread)
         SELECT incident_id, route, ?2 FROM outbox WHERE id = ?1
         ON CONFLICT (incident_id, route) DO NOTHING",
        params![id, thread],
    )
    .map_err(db)?;
    tx.commit().map_err(db)
}

/// Whether a stored page body is an update (a body that does not decode is not: it is never
/// superseded).
pub(super) fn is_update(body: &str) -> bool {
    serde_json::from_str::<Notification>(body).is_ok_and(|n| n.event == NotificationKind::Update)
}

/// Marks the updates that a newer pending update of the same (incident, route) supersedes.
pub(super) fn supersede(c: &mut Connection, id: i64, now: Timestamp) -> Result<Vec<i64>> {
    let tx = c.transaction().map_err(db)?;
    let key: Option<(String, String)> = tx
        .query_row(
            "SELECT incident_id, route FROM outbox WHERE id = ?1 AND done_at IS NULL",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((incident, route)) = key else {
        return Ok(Vec::new());
    };
    let pending = {
        let mut st = tx
            .prepare_cached(
                "SELECT id, body FROM outbox
                 WHERE incident_id = ?1 AND route = ?2 AND done_at IS NULL AND id >= ?3
                 ORDER BY id",
            )
            .map_err(db)?;
        st.query_map(params![incident, route, id], |r| {
            Ok((r.get::<_, i64>(0)?, is_update(&r.get::<_, String>(1)?)))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?
    };
    let Some((older, newest)) = superseded_updates(&pending) else {
        return Ok(Vec::new());
    };
    for old in &older {
        tx.execute(
            "UPDATE outbox SET done_at = ?2, delivered = 0, superseded_by = ?3,
                 last_error = 'superseded by a newer update'
             WHERE id = ?1",
            params![old, now.0, newest],
        )
        .map_err(db)?;
    }
    tx.commit().map_err(db)?;
    Ok(older)
}
