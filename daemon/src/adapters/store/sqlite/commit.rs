//! The engine's commit: one transaction that claims ledger steps first (failing the whole commit
//! with [`StoreError::AlreadyClaimed`] if any was claimed before), then writes the rest of the
//! [`Commit`].

use rusqlite::{Connection, params};

use super::rows::{db, encode};
use crate::adapters::store::{
    BudgetCharge, Claim, Commit, Finished, ResolveDone, Result, StoreError,
};

/// Applies `c` atomically.
pub(super) fn apply_commit(conn: &mut Connection, c: Commit) -> Result<()> {
    let tx = conn.transaction().map_err(db)?;
    for Claim {
        incident: id,
        ladder,
        step,
        at,
    } in &c.claims
    {
        let n = tx
            .execute(
                "INSERT INTO ledger (incident_id, ladder, step, claimed_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![id, *ladder as i64, *step as i64, at.0],
            )
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::AlreadyClaimed(format!(
                "{id} ladder {ladder} step {step}"
            )));
        }
    }
    apply_rest(&tx, &c).map_err(db)?;
    tx.commit().map_err(db)
}

/// Everything in `c` but the claims.
fn apply_rest(tx: &rusqlite::Transaction<'_>, c: &Commit) -> rusqlite::Result<()> {
    for i in &c.incidents {
        let seq: i64 =
            i.id.rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        if let Some(counter) = crate::adapters::store::incident_counter_name(&i.id) {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                params![counter, seq],
            )?;
        }
        super::approvals::void_others(tx, i)?;
        tx.execute(
            "INSERT INTO incidents (id, seq, rule, target_key, status, opened_at, updated_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at, body = excluded.body",
            params![
                i.id,
                seq,
                i.rule,
                i.target.key(),
                i.status().as_str(),
                i.opened_at.0,
                i.updated_at.0,
                encode(i)
            ],
        )?;
    }
    for a in &c.approvals {
        super::approvals::insert(tx, a)?;
    }
    for (id, e) in &c.timeline {
        tx.execute(
            "INSERT INTO timeline (incident_id, at, body) VALUES (?1, ?2, ?3)",
            params![id, e.at.0, encode(e)],
        )?;
    }
    if let Some(id) = c.processed {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ('engine_signals', ?1)
             ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            params![id],
        )?;
    }
    for (route, n) in &c.outbox {
        tx.execute(
            "INSERT INTO outbox (route, incident_id, body, next_at) VALUES (?1, ?2, ?3, 0)",
            params![route, n.incident, encode(n)],
        )?;
    }
    for BudgetCharge { key, at, dry_run } in &c.budget_uses {
        tx.execute(
            "INSERT INTO budget_uses (key, at, dry_run) VALUES (?1, ?2, ?3)",
            params![key, at.0, *dry_run as i64],
        )?;
    }
    for (k, at) in &c.breaker_failures {
        tx.execute(
            "INSERT INTO breaker_failures (key, at) VALUES (?1, ?2)",
            params![k, at.0],
        )?;
    }
    for (k, rec) in &c.breakers {
        tx.execute(
            "INSERT INTO breakers (key, body) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET body = excluded.body",
            params![k, encode(rec)],
        )?;
    }
    for (name, value) in &c.counters {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
    }
    for Finished {
        incident: id,
        ladder,
        step,
        at,
        result,
    } in &c.finished
    {
        tx.execute(
            "UPDATE ledger SET finished_at = ?4, result = ?5 WHERE incident_id = ?1 AND ladder = ?2 AND step = ?3",
            params![id, *ladder as i64, *step as i64, at.0, encode(result)],
        )?;
    }
    for ResolveDone {
        request: id,
        at,
        result,
    } in &c.resolves_done
    {
        tx.execute(
            "UPDATE resolve_requests SET done_at = ?2, result = ?3 WHERE id = ?1",
            params![id, at.0, result.as_str()],
        )?;
    }
    Ok(())
}
