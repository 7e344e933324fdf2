//! The engine's commit: one transaction that claims ledger steps first (failing the whole commit
//! with [`StoreError::AlreadyClaimed`] if any was claimed before), then writes the rest of the
//! [`Commit`].

use rusqlite::{Connection, params};

use super::rows::{db, encode};
use crate::adapters::store::{
    AlertWrite, BudgetCharge, Claim, Commit, Finished, Release, ResolveDone, Result, StoreError,
};
use crate::domain::incident::Incident;

/// Applies `c` atomically.
///
/// A commit that [`Commit::skips_flush`] (where the rule and why it is safe are) is written
/// with `synchronous=NORMAL` for that transaction: no fsync of its own.
pub(super) fn apply_commit(conn: &mut Connection, c: Commit) -> Result<()> {
    if !c.skips_flush() {
        if durability_lost() {
            ensure_durable(conn)?;
        }
        return apply_durably(conn, c);
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db)?;
    let r = apply_durably(conn, c);
    // Back to durable commits for everything else; until that succeeds no write proceeds
    // ([`ensure_durable`] runs before each).
    r.and(ensure_durable(conn))
}

thread_local! {
    /// Whether this thread's connection may be left at `synchronous=NORMAL` (restoring `FULL`
    /// failed). Per thread because each SQLite store's connection lives on a thread of its own,
    /// where both its commits and its ingest run: the flag is that connection's, not the process's.
    static NOT_DURABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes sure the connection commits durably (`synchronous=FULL`) before a write that must be.
pub(super) fn ensure_durable(conn: &Connection) -> Result<()> {
    let r = conn.pragma_update(None, "synchronous", "FULL");
    NOT_DURABLE.with(|f| f.set(r.is_err()));
    r.map_err(db)
}

/// Whether a failed restore left this thread's connection without durable commits.
pub(super) fn durability_lost() -> bool {
    NOT_DURABLE.with(std::cell::Cell::get)
}

/// Runs `sql` through the connection's statement cache: parsing and planning the commit's
/// statements again on every commit was a seventh of the process's CPU in a storm (profile of
/// 2026-11-28, 1 alert per webhook).
fn cached(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(p)
}

/// Applies `c` in one transaction.
fn apply_durably(conn: &mut Connection, mut c: Commit) -> Result<()> {
    let tx = conn.transaction().map_err(db)?;
    for Claim {
        incident: id,
        ladder,
        step,
        at,
    } in &c.claims
    {
        let n = cached(
                &tx,
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
    let bodies = c.incident_bodies()?;
    apply_rest(&tx, &c, &bodies).map_err(db)?;
    write_alerts(&tx, &c).map_err(db)?;
    tx.commit().map_err(db)
}

/// The alerts of the incidents `c` carries, kept in rows apart from their bodies: the changes
/// `c` lists, or all of them when it lists none.
fn write_alerts(tx: &rusqlite::Transaction<'_>, c: &Commit) -> rusqlite::Result<()> {
    let mut set = tx.prepare_cached(
        "INSERT INTO incident_alerts (incident_id, fingerprint, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (incident_id, fingerprint) DO UPDATE SET body = excluded.body",
    )?;
    let mut unset = tx.prepare_cached(
        "DELETE FROM incident_alerts WHERE incident_id = ?1 AND fingerprint = ?2",
    )?;
    let mut clear = tx.prepare_cached("DELETE FROM incident_alerts WHERE incident_id = ?1")?;
    let mut all = |i: &Incident, set: &mut rusqlite::CachedStatement<'_>| {
        clear.execute(params![i.id])?;
        for (fp, a) in &i.active {
            set.execute(params![i.id, fp, encode(a)])?;
        }
        Ok::<_, rusqlite::Error>(())
    };
    let Some(writes) = &c.alerts else {
        return c.incidents.iter().try_for_each(|i| all(i, &mut set));
    };
    for w in writes {
        match w {
            AlertWrite::Set(id, fp, a) => {
                set.execute(params![id, fp, encode(a)])?;
            }
            AlertWrite::Unset(id, fp) => {
                unset.execute(params![id, fp])?;
            }
            AlertWrite::All(id) => {
                if let Some(i) = c.incidents.iter().find(|i| i.id == *id) {
                    all(i, &mut set)?;
                }
            }
        }
    }
    Ok(())
}

/// Everything in `c` but the claims and the incidents' alerts; `bodies` are the incidents'
/// (`None`: its row is current, [`Commit::alerts_only`]).
fn apply_rest(
    tx: &rusqlite::Transaction<'_>,
    c: &Commit,
    bodies: &[Option<String>],
) -> rusqlite::Result<()> {
    for (i, body) in c.incidents.iter().zip(bodies) {
        let Some(body) = body else { continue };
        let seq: i64 =
            i.id.rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        if !c.incidents_known() {
            if let Some(counter) = crate::adapters::store::incident_counter_name(&i.id) {
                cached(
                    tx,
                    "INSERT INTO counters (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                    params![counter, seq],
                )?;
            }
            super::approvals::void_others(tx, i)?;
        }
        cached(tx,
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
                body
            ],
        )?;
    }
    for a in &c.approvals {
        super::approvals::insert(tx, a)?;
    }
    for (id, e) in &c.timeline {
        cached(
            tx,
            "INSERT INTO timeline (incident_id, at, body) VALUES (?1, ?2, ?3)",
            params![id, e.at.0, encode(e)],
        )?;
    }
    if let Some(id) = c.processed {
        cached(
            tx,
            "INSERT INTO counters (name, value) VALUES ('engine_signals', ?1)
             ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            params![id],
        )?;
    }
    for (route, n) in &c.outbox {
        cached(
            tx,
            "INSERT INTO outbox (route, incident_id, body, next_at) VALUES (?1, ?2, ?3, 0)",
            params![route, n.incident, encode(n)],
        )?;
    }
    for BudgetCharge { key, at, dry_run } in &c.budget_uses {
        cached(
            tx,
            "INSERT INTO budget_uses (key, at, dry_run) VALUES (?1, ?2, ?3)",
            params![key, at.0, *dry_run as i64],
        )?;
    }
    for (k, at) in &c.breaker_failures {
        cached(
            tx,
            "INSERT INTO breaker_failures (key, at) VALUES (?1, ?2)",
            params![k, at.0],
        )?;
    }
    for (k, rec) in &c.breakers {
        cached(
            tx,
            "INSERT INTO breakers (key, body) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET body = excluded.body",
            params![k, encode(rec)],
        )?;
    }
    for (name, value) in &c.counters {
        cached(
            tx,
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
        cached(
            tx,
            "UPDATE ledger SET finished_at = ?4, result = ?5 WHERE incident_id = ?1 AND ladder = ?2 AND step = ?3",
            params![id, *ladder as i64, *step as i64, at.0, encode(result)],
        )?;
    }
    for Release {
        incident: id,
        ladder,
        step,
        budget_uses,
    } in &c.released
    {
        // Only a claim with no result: a finished or interrupted step keeps its row for ever.
        let n = cached(
            tx,
            "DELETE FROM ledger WHERE incident_id = ?1 AND ladder = ?2 AND step = ?3 AND finished_at IS NULL",
            params![id, *ladder as i64, *step as i64],
        )?;
        if n == 0 {
            continue;
        }
        for BudgetCharge { key, at, dry_run } in budget_uses {
            cached(tx,
                "DELETE FROM budget_uses WHERE rowid IN
                 (SELECT rowid FROM budget_uses WHERE key = ?1 AND at = ?2 AND dry_run = ?3 LIMIT 1)",
                params![key, at.0, *dry_run as i64],
            )?;
        }
    }
    for ResolveDone {
        request: id,
        at,
        result,
    } in &c.resolves_done
    {
        cached(
            tx,
            "UPDATE resolve_requests SET done_at = ?2, result = ?3 WHERE id = ?1",
            params![id, at.0, result.as_str()],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::adapters::store::sqlite::SqliteStore;
    use crate::adapters::store::{Commit, Store};

    /// The fsync-free watermark commit must not leave the connection that way: every later
    /// ingest and commit is durable again.
    #[tokio::test]
    async fn a_watermark_only_commit_leaves_commits_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let synchronous = || {
            store.call(|c| {
                c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
                    .map_err(super::db)
            })
        };
        assert_eq!(synchronous().await.unwrap(), 2, "FULL at open");
        store
            .commit(Commit {
                processed: Some(7),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            synchronous().await.unwrap(),
            2,
            "FULL after the watermark commit"
        );
        assert_eq!(store.counter("engine_signals".into()).await.unwrap(), 7);
    }
}
