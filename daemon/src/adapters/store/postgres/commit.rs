//! The engine's commit: one transaction that, when fenced, first checks the leadership term
//! under a row lock, then claims ledger steps (failing the whole commit with
//! [`StoreError::AlreadyClaimed`] if any was claimed before, across replicas), then writes the
//! rest of the [`Commit`].

use super::wire::{db, encode, text};
use crate::adapters::store::{
    AlertWrite, BudgetCharge, Claim, Commit, Finished, Release, ResolveDone, Result, StoreError,
};

/// Applies `x` atomically; with `fence`, only while leadership term `fence` is current.
pub(super) async fn apply_commit(
    c: &mut deadpool_postgres::Object,
    fence: Option<i64>,
    mut x: Commit,
) -> Result<()> {
    // A commit that `Commit::skips_flush` (the rule and why it is safe) does not wait for the
    // server's WAL flush.
    let tx = c.transaction().await.map_err(db)?;
    if x.skips_flush() {
        tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
            .await
            .map_err(db)?;
    }
    if let Some(epoch) = fence {
        // FOR SHARE conflicts with the epoch bump of a new leader: either this commit finishes
        // before the new term starts (and the new leader reads it), or it sees the new epoch.
        let current: Option<i64> = tx
            .query_opt(
                "SELECT value FROM counters WHERE name = 'leader_epoch' FOR SHARE",
                &[],
            )
            .await
            .map_err(db)?
            .map(|r| r.get(0));
        if current != Some(epoch) {
            return Err(StoreError::Database(format!(
                "not the leader: leadership term {epoch} ended (current term {})",
                current.map_or("none".to_string(), |c| c.to_string())
            )));
        }
    }
    let claim = tx
        .prepare_cached(
            "INSERT INTO ledger (incident_id, ladder, step, claimed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db)?;
    for Claim {
        incident: id,
        ladder,
        step,
        at,
    } in &x.claims
    {
        let n = tx
            .execute(
                &claim,
                &[&text(id), &i32::from(*ladder), &(*step as i32), &at.0],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            tx.rollback().await.map_err(db)?;
            return Err(StoreError::AlreadyClaimed(format!(
                "{id} ladder {ladder} step {step}"
            )));
        }
    }
    let bodies = x.incident_bodies()?;
    if !x.incidents.is_empty() {
        let st = tx
            .prepare_cached(
                "INSERT INTO incidents (id, seq, rule, target_key, status, opened_at, updated_at, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                     updated_at = excluded.updated_at, body = excluded.body",
            )
            .await
            .map_err(db)?;
        for (i, body) in x.incidents.iter().zip(&bodies) {
            let Some(body) = body else { continue };
            let seq: i64 =
                i.id.rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            if !x.incidents_known()
                && let Some(counter) = crate::adapters::store::incident_counter_name(&i.id)
            {
                tx.execute(
                    "INSERT INTO counters (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)",
                    &[&counter, &seq],
                )
                .await
                .map_err(db)?;
            }
            tx.execute(
                &st,
                &[
                    &text(&i.id),
                    &seq,
                    &text(&i.rule),
                    &text(&i.target.key()),
                    &i.status().as_str(),
                    &i.opened_at.0,
                    &i.updated_at.0,
                    body,
                ],
            )
            .await
            .map_err(db)?;
        }
        write_alerts(&tx, &x).await?;
    }
    for (id, e) in &x.timeline {
        let st = tx
            .prepare_cached("INSERT INTO timeline (incident_id, at, body) VALUES ($1, $2, $3)")
            .await
            .map_err(db)?;
        tx.execute(&st, &[&text(id), &e.at.0, &encode(e)])
            .await
            .map_err(db)?;
    }
    if let Some(id) = x.processed {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ('engine_signals', $1)
             ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)",
            &[&id],
        )
        .await
        .map_err(db)?;
    }
    for (name, value) in &x.counters {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&text(name), value],
        )
        .await
        .map_err(db)?;
    }
    for (route, n) in &x.outbox {
        tx.execute(
            "INSERT INTO outbox (route, incident_id, body, next_at) VALUES ($1, $2, $3, 0)",
            &[&text(route), &text(&n.incident), &encode(n)],
        )
        .await
        .map_err(db)?;
    }
    for BudgetCharge { key, at, dry_run } in &x.budget_uses {
        tx.execute(
            "INSERT INTO budget_uses (key, at, dry_run) VALUES ($1, $2, $3)",
            &[&text(key), &at.0, dry_run],
        )
        .await
        .map_err(db)?;
    }
    for (k, at) in &x.breaker_failures {
        tx.execute(
            "INSERT INTO breaker_failures (key, at) VALUES ($1, $2)",
            &[&text(k), &at.0],
        )
        .await
        .map_err(db)?;
    }
    for (k, rec) in &x.breakers {
        tx.execute(
            "INSERT INTO breakers (key, body) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET body = excluded.body",
            &[&text(k), &encode(rec)],
        )
        .await
        .map_err(db)?;
    }
    for Finished {
        incident: id,
        ladder,
        step,
        at,
        result,
    } in &x.finished
    {
        tx.execute(
            "UPDATE ledger SET finished_at = $4, result = $5
             WHERE incident_id = $1 AND ladder = $2 AND step = $3",
            &[
                &text(id),
                &i32::from(*ladder),
                &(*step as i32),
                &at.0,
                &encode(result),
            ],
        )
        .await
        .map_err(db)?;
    }
    for Release {
        incident: id,
        ladder,
        step,
        budget_uses,
    } in &x.released
    {
        // Only a claim with no result: a finished or interrupted step keeps its row for ever.
        let n = tx
            .execute(
                "DELETE FROM ledger
                 WHERE incident_id = $1 AND ladder = $2 AND step = $3 AND finished_at IS NULL",
                &[&text(id), &i32::from(*ladder), &(*step as i32)],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            continue;
        }
        for BudgetCharge { key, at, dry_run } in budget_uses {
            tx.execute(
                "DELETE FROM budget_uses WHERE ctid IN
                 (SELECT ctid FROM budget_uses WHERE key = $1 AND at = $2 AND dry_run = $3 LIMIT 1)",
                &[&text(key), &at.0, dry_run],
            )
            .await
            .map_err(db)?;
        }
    }
    for ResolveDone {
        request: id,
        at,
        result,
    } in &x.resolves_done
    {
        tx.execute(
            "UPDATE resolve_requests SET done_at = $2, result = $3 WHERE id = $1",
            &[id, &at.0, &result.as_str()],
        )
        .await
        .map_err(db)?;
    }
    for a in &x.approvals {
        super::approvals::insert(&tx, a).await?;
    }
    let rows_written = x
        .incidents
        .iter()
        .filter(|i| !x.alerts_only.contains(&i.id));
    for i in rows_written.filter(|_| !x.incidents_known()) {
        super::approvals::void_others(&tx, i).await?;
    }
    tx.commit().await.map_err(db)
}

/// The alerts of the incidents `x` carries, kept in rows apart from their bodies: the changes
/// `x` lists, or all of them when it lists none. A row's body is `[fingerprint, alert]`: the
/// key column holds the fingerprint as [`text`] stores it (no NUL), the body as it was.
async fn write_alerts(tx: &deadpool_postgres::Transaction<'_>, x: &Commit) -> Result<()> {
    let set = tx
        .prepare_cached(
            "INSERT INTO incident_alerts (incident_id, fingerprint, body) VALUES ($1, $2, $3)
             ON CONFLICT (incident_id, fingerprint) DO UPDATE SET body = excluded.body",
        )
        .await
        .map_err(db)?;
    let unset = tx
        .prepare_cached("DELETE FROM incident_alerts WHERE incident_id = $1 AND fingerprint = $2")
        .await
        .map_err(db)?;
    let clear = tx
        .prepare_cached("DELETE FROM incident_alerts WHERE incident_id = $1")
        .await
        .map_err(db)?;
    let mut whole: Vec<&crate::domain::incident::Incident> = Vec::new();
    match &x.alerts {
        None => whole.extend(&x.incidents),
        Some(writes) => {
            for w in writes {
                match w {
                    AlertWrite::Set(id, fp, a) => {
                        tx.execute(&set, &[&text(id), &text(fp), &encode(&(fp, a))])
                            .await
                            .map_err(db)?;
                    }
                    AlertWrite::Unset(id, fp) => {
                        tx.execute(&unset, &[&text(id), &text(fp)])
                            .await
                            .map_err(db)?;
                    }
                    AlertWrite::All(id) => {
                        let Some(i) = x.incidents.iter().find(|i| i.id == *id) else {
                            continue;
                        };
                        tx.execute(&clear, &[&text(&i.id)]).await.map_err(db)?;
                        for (fp, a) in &i.active {
                            tx.execute(&set, &[&text(&i.id), &text(fp), &encode(&(fp, a))])
                                .await
                                .map_err(db)?;
                        }
                    }
                }
            }
        }
    }
    for i in whole {
        tx.execute(&clear, &[&text(&i.id)]).await.map_err(db)?;
        for (fp, a) in &i.active {
            tx.execute(&set, &[&text(&i.id), &text(fp), &encode(&(fp, a))])
                .await
                .map_err(db)?;
        }
    }
    Ok(())
}
