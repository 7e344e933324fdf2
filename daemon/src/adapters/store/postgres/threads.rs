//! The outbox's threads and coalesced updates on PostgreSQL ([`Store::outbox_threaded`],
//! [`Store::outbox_supersede`]).
//!
//! [`Store::outbox_threaded`]: crate::adapters::store::Store::outbox_threaded
//! [`Store::outbox_supersede`]: crate::adapters::store::Store::outbox_supersede

use super::wire::{db, text};
use crate::adapters::store::{Result, superseded_updates};
use crate::domain::notification::{Notification, NotificationKind};
use crate::domain::time::Timestamp;

/// Marks page `id` delivered and keeps its (incident, route)'s first thread.
pub(super) async fn threaded(
    c: &mut deadpool_postgres::Object,
    id: i64,
    now: Timestamp,
    thread: &str,
) -> Result<()> {
    let tx = c.transaction().await.map_err(db)?;
    tx.execute(
        "UPDATE outbox SET done_at = $2, delivered = TRUE, attempts = attempts + 1 WHERE id = $1",
        &[&id, &now.0],
    )
    .await
    .map_err(db)?;
    tx.execute(
        "INSERT INTO page_threads (incident_id, route, thread)
         SELECT incident_id, route, $2 FROM outbox WHERE id = $1
         ON CONFLICT (incident_id, route) DO NOTHING",
        &[&id, &text(thread)],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)
}

/// Marks the updates that a newer pending update of the same (incident, route) supersedes.
pub(super) async fn supersede(
    c: &mut deadpool_postgres::Object,
    id: i64,
    now: Timestamp,
) -> Result<Vec<i64>> {
    let tx = c.transaction().await.map_err(db)?;
    let Some(key) = tx
        .query_opt(
            "SELECT incident_id, route FROM outbox WHERE id = $1 AND done_at IS NULL",
            &[&id],
        )
        .await
        .map_err(db)?
    else {
        return Ok(Vec::new());
    };
    let incident: String = key.try_get(0).map_err(db)?;
    let route: String = key.try_get(1).map_err(db)?;
    let pending: Vec<(i64, bool)> = tx
        .query(
            "SELECT id, body FROM outbox
             WHERE incident_id = $1 AND route = $2 AND done_at IS NULL AND id >= $3
             ORDER BY id FOR UPDATE",
            &[&incident, &route, &id],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let body: &str = r.try_get(1).map_err(db)?;
            let update = serde_json::from_str::<Notification>(body)
                .is_ok_and(|n| n.event == NotificationKind::Update);
            Ok((r.try_get(0).map_err(db)?, update))
        })
        .collect::<Result<_>>()?;
    let Some((older, newest)) = superseded_updates(&pending) else {
        return Ok(Vec::new());
    };
    tx.execute(
        "UPDATE outbox SET done_at = $2, delivered = FALSE, superseded_by = $3,
             last_error = 'superseded by a newer update'
         WHERE id = ANY($1)",
        &[&older, &now.0, &newest],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(older)
}
