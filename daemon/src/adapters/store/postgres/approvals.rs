//! Approvals on PostgreSQL: inserted with the engine's commit (which also voids an incident's
//! pending approvals it no longer awaits), decided and expired in their own transactions that
//! lock the row (`FOR UPDATE`) and write only while it is pending: of two replicas receiving the
//! same click, the second waits for the first and then finds it decided.

use super::wire::{SIGNALS_CHANNEL, db, decode, encode, text};
use crate::adapters::store::{Decided, Result, StoreError, decide_row, expire_row};
use crate::domain::approval::{Approval, ApprovalState, Decision};
use crate::domain::incident::{Incident, Phase};
use crate::domain::time::Timestamp;

/// Stores a requested approval; one stored before under the same id stays as it is.
pub(super) async fn insert(tx: &deadpool_postgres::Transaction<'_>, a: &Approval) -> Result<()> {
    tx.execute(
        "INSERT INTO approvals (id, incident_id, state, requested_at, deadline, required, decisions, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        &[
            &text(&a.id),
            &text(&a.incident),
            &a.state.as_str(),
            &a.requested_at.0,
            &a.deadline.0,
            &(a.required as i32),
            &encode(&a.decisions),
            &encode(a),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Voids the incident's pending approvals other than the one its phase awaits.
pub(super) async fn void_others(
    tx: &deadpool_postgres::Transaction<'_>,
    inc: &Incident,
) -> Result<()> {
    let keep = match inc.phase {
        Phase::AwaitingApproval { ladder, step, .. } => Approval::key(&inc.id, ladder, step),
        _ => String::new(),
    };
    tx.execute(
        "UPDATE approvals SET state = 'void' WHERE incident_id = $1 AND state = 'pending' AND id <> $2",
        &[&text(&inc.id), &text(&keep)],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// One approval (`lock`: for update), with the state and decisions of its columns.
async fn read(
    c: &impl deadpool_postgres::GenericClient,
    id: &str,
    lock: bool,
) -> Result<Option<Approval>> {
    let sql = if lock {
        "SELECT state, decisions, body FROM approvals WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT state, decisions, body FROM approvals WHERE id = $1"
    };
    let Some(r) = c.query_opt(sql, &[&text(id)]).await.map_err(db)? else {
        return Ok(None);
    };
    let state: String = r.try_get(0).map_err(db)?;
    let decisions: String = r.try_get(1).map_err(db)?;
    let body: String = r.try_get(2).map_err(db)?;
    let mut a: Approval = decode(&body)?;
    a.state = ApprovalState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("approval {id}: unknown state {state:?}")))?;
    a.decisions = decode(&decisions)?;
    Ok(Some(a))
}

/// One approval.
pub(super) async fn get(c: &deadpool_postgres::Object, id: &str) -> Result<Option<Approval>> {
    read(c, id, false).await
}

/// Writes a new state and decisions, only while the row is pending.
async fn write(tx: &deadpool_postgres::Transaction<'_>, a: &Approval) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE approvals SET state = $2, decisions = $3 WHERE id = $1 AND state = 'pending'",
            &[&text(&a.id), &a.state.as_str(), &encode(&a.decisions)],
        )
        .await
        .map_err(db)?;
    Ok(n == 1)
}

/// Takes one decision (see [`crate::adapters::store::Store::decide_approval`]).
pub(super) async fn decide(
    c: &mut deadpool_postgres::Object,
    id: &str,
    d: Decision,
    now: Timestamp,
) -> Result<Decided> {
    let tx = c.transaction().await.map_err(db)?;
    let decided = decide_row(read(&tx, id, true).await?, d, now);
    if let Decided::Taken(_, a) = &decided {
        if !write(&tx, a).await? {
            return Err(StoreError::Database(format!(
                "approval {id} changed during its decision"
            )));
        }
        // Delivered at COMMIT to the leader's LISTEN connection, whichever replica leads.
        tx.execute("SELECT pg_notify($1, 'approval')", &[&SIGNALS_CHANNEL])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(decided)
}

/// Times out a pending approval past its deadline; returns it as it stands.
pub(super) async fn expire(
    c: &mut deadpool_postgres::Object,
    id: &str,
    now: Timestamp,
) -> Result<Option<Approval>> {
    let tx = c.transaction().await.map_err(db)?;
    let Some(mut a) = read(&tx, id, true).await? else {
        return Ok(None);
    };
    if let Some(state) = expire_row(&a, now) {
        a.state = state;
        write(&tx, &a).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Some(a))
}

/// Keeps where an approval's request was posted on a route (the first kept stays).
pub(super) async fn keep_message(
    c: &deadpool_postgres::Object,
    id: &str,
    route: &str,
    message: &str,
) -> Result<()> {
    c.execute(
        "INSERT INTO page_threads (incident_id, route, thread) VALUES ($1, $2, $3)
         ON CONFLICT (incident_id, route) DO NOTHING",
        &[&text(id), &text(route), &text(message)],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// Where an approval's request was posted on a route.
pub(super) async fn message(
    c: &deadpool_postgres::Object,
    id: &str,
    route: &str,
) -> Result<Option<String>> {
    let row = c
        .query_opt(
            "SELECT thread FROM page_threads WHERE incident_id = $1 AND route = $2",
            &[&text(id), &text(route)],
        )
        .await
        .map_err(db)?;
    row.map(|r| r.try_get::<_, String>(0).map_err(db))
        .transpose()
}
