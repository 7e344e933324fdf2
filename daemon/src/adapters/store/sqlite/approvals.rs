//! Approvals on SQLite: inserted with the engine's commit (which also voids an incident's
//! pending approvals it no longer awaits), decided and expired in their own transactions that
//! write only while the row is pending.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::rows::{db, decode, encode};
use crate::adapters::store::{Decided, Result, StoreError, decide_row, expire_row};
use crate::domain::approval::{Approval, ApprovalState, Decision};
use crate::domain::incident::{Incident, Phase};
use crate::domain::time::Timestamp;

/// Stores a requested approval; one stored before under the same id stays as it is.
pub(super) fn insert(tx: &Transaction<'_>, a: &Approval) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO approvals (id, incident_id, state, requested_at, deadline, required, decisions, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
        params![
            a.id,
            a.incident,
            a.state.as_str(),
            a.requested_at.0,
            a.deadline.0,
            a.required as i64,
            encode(&a.decisions),
            encode(a)
        ],
    )?;
    Ok(())
}

/// Voids the incident's pending approvals other than the one its phase awaits.
pub(super) fn void_others(tx: &Transaction<'_>, inc: &Incident) -> rusqlite::Result<()> {
    let keep = match inc.phase {
        Phase::AwaitingApproval { ladder, step, .. } => Approval::key(&inc.id, ladder, step),
        _ => String::new(),
    };
    tx.prepare_cached(
        "UPDATE approvals SET state = 'void' WHERE incident_id = ?1 AND state = 'pending' AND id != ?2",
    )?
    .execute(params![inc.id, keep])?;
    Ok(())
}

/// One approval: its body, with the state and decisions of its columns (the ones written).
pub(super) fn get(c: &Connection, id: &str) -> Result<Option<Approval>> {
    let row: Option<(String, String, String)> = c
        .query_row(
            "SELECT state, decisions, body FROM approvals WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((state, decisions, body)) = row else {
        return Ok(None);
    };
    let mut a: Approval = decode(&body)?;
    a.state = ApprovalState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("approval {id}: unknown state {state:?}")))?;
    a.decisions = decode(&decisions)?;
    Ok(Some(a))
}

/// Writes a new state and decisions, only while the row is pending; `false` when it was not.
fn write(tx: &Transaction<'_>, a: &Approval) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE approvals SET state = ?2, decisions = ?3 WHERE id = ?1 AND state = 'pending'",
            params![a.id, a.state.as_str(), encode(&a.decisions)],
        )
        .map_err(db)?;
    Ok(n == 1)
}

/// Takes one decision (see [`crate::adapters::store::Store::decide_approval`]).
pub(super) fn decide(c: &mut Connection, id: &str, d: Decision, now: Timestamp) -> Result<Decided> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let decided = decide_row(get(&tx, id)?, d, now);
    if let Decided::Taken(_, a) = &decided
        && !write(&tx, a)?
    {
        return Err(StoreError::Database(format!(
            "approval {id} changed during its decision"
        )));
    }
    tx.commit().map_err(db)?;
    Ok(decided)
}

/// Times out a pending approval past its deadline; returns it as it stands.
pub(super) fn expire(c: &mut Connection, id: &str, now: Timestamp) -> Result<Option<Approval>> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let Some(mut a) = get(&tx, id)? else {
        return Ok(None);
    };
    if let Some(state) = expire_row(&a, now) {
        a.state = state;
        write(&tx, &a)?;
    }
    tx.commit().map_err(db)?;
    Ok(Some(a))
}

/// Keeps where an approval's request was posted on a route (the first kept stays).
pub(super) fn keep_message(c: &mut Connection, id: &str, route: &str, message: &str) -> Result<()> {
    c.execute(
        "INSERT INTO page_threads (incident_id, route, thread) VALUES (?1, ?2, ?3)
         ON CONFLICT (incident_id, route) DO NOTHING",
        params![id, route, message],
    )
    .map_err(db)?;
    Ok(())
}

/// Where an approval's request was posted on a route.
pub(super) fn message(c: &Connection, id: &str, route: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT thread FROM page_threads WHERE incident_id = ?1 AND route = ?2",
        params![id, route],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)
}
