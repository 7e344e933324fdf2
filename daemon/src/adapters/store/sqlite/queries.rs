//! The [`Store`] interface on SQLite: reads, and the small writes that are not the engine's
//! commit (pauses, outbox progress, resolve requests). Each runs on the connection's thread;
//! ingest is queued for the group commit, and the commit is [`apply_commit`].

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::commit::apply_commit;
use super::rows::{db, decode, encode};
use super::{Job, SqliteStore};
use crate::adapters::store::{Cancelled, Decided, MaintenanceWindow, NewWindow};
use crate::adapters::store::{
    Commit, IngestResult, OutboxItem, Pause, Receipt, ResolveRequest, ResolveResult, Result, Store,
    StoreError, StoredSignal,
};
use crate::domain::BoxFuture;
use crate::domain::approval::{Approval, Decision};
use crate::domain::incident::{Entry, Incident, Status};
use crate::domain::policy::breaker::BreakerRecord;
use crate::domain::signal::Signal;
use crate::domain::time::Timestamp;

/// The incidents whose body `sql` selects.
fn incidents_where(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Incident>> {
    let mut st = c.prepare_cached(sql).map_err(db)?;
    let rows = st
        .query_map(p, |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    rows.iter()
        .map(|b| super::rows::with_alerts(c, decode(b)?))
        .collect()
}

/// The columns [`resolve_row`] reads, in its order.
const RESOLVE_COLUMNS: &str = "id, incident_id, reason, author, requested_at, done_at, result";

/// A resolve request's row, as read.
type ResolveRow = (
    i64,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

/// Reads a [`ResolveRow`] ([`RESOLVE_COLUMNS`]).
fn resolve_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResolveRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

/// A resolve request from its row.
fn resolve_request(row: ResolveRow) -> Result<ResolveRequest> {
    let (id, incident, reason, author, requested_at, done_at, result) = row;
    let done = match (done_at, result) {
        (Some(at), Some(r)) => Some((
            Timestamp(at),
            ResolveResult::parse(&r).ok_or_else(|| {
                StoreError::Corrupt(format!("resolve request {id}: unknown result {r:?}"))
            })?,
        )),
        _ => None,
    };
    Ok(ResolveRequest {
        id,
        incident,
        reason,
        author,
        requested_at: Timestamp(requested_at),
        done,
    })
}

impl Store for SqliteStore {
    fn ingest(
        &self,
        receipt: Receipt,
        signals: Vec<Signal>,
    ) -> BoxFuture<'_, Result<IngestResult>> {
        Box::pin(async move {
            // Encoded here, on the caller's thread, while the signals are fresh in its cache:
            // the connection's thread, which every write waits for, only binds them.
            let bodies = super::ingest::Bodies::encode(&signals)?;
            let (tx, rx) = oneshot::channel();
            self.tx
                .send(Job::Ingest(receipt, signals, bodies, tx))
                .await
                .map_err(|_| StoreError::Unavailable)?;
            rx.await.map_err(|_| StoreError::Unavailable)?
        })
    }

    fn pending_signals_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredSignal>>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send(Job::Pending(after, limit, tx))
                .await
                .map_err(|_| StoreError::Unavailable)?;
            rx.await.map_err(|_| StoreError::Unavailable)?
        })
    }

    fn counter(&self, name: String) -> BoxFuture<'_, Result<i64>> {
        self.call(move |c| {
            c.query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(db)
        })
    }

    fn active_incidents(&self) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.call(|c| {
            incidents_where(
                c,
                "SELECT body FROM incidents WHERE status != 'resolved' ORDER BY opened_at, seq",
                [],
            )
        })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<()>> {
        self.call(move |c| apply_commit(c, commit))
    }

    fn count_uses(&self, key: &str, since: Timestamp, dry_run: bool) -> BoxFuture<'_, Result<u32>> {
        let key = key.to_string();
        self.call(move |c| count_uses(c, &key, since, dry_run))
    }

    fn breaker(&self, key: &str) -> BoxFuture<'_, Result<BreakerRecord>> {
        let key = key.to_string();
        self.call(move |c| breaker(c, &key))
    }

    fn gate_reads(
        &self,
        uses: Vec<(String, Timestamp)>,
        dry_run: bool,
        breakers: Vec<String>,
    ) -> BoxFuture<'_, Result<(Vec<u32>, Vec<BreakerRecord>)>> {
        // One trip to the store thread instead of one per key.
        self.call(move |c| {
            let counts = uses
                .iter()
                .map(|(k, since)| count_uses(c, k, *since, dry_run))
                .collect::<Result<Vec<_>>>()?;
            let records = breakers
                .iter()
                .map(|k| breaker(c, k))
                .collect::<Result<Vec<_>>>()?;
            Ok((counts, records))
        })
    }

    fn last_heard(
        &self,
        alerts: Vec<(String, Timestamp)>,
    ) -> BoxFuture<'_, Result<Vec<(String, Timestamp)>>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT coalesce(last_seen, received_at) FROM signals
                     WHERE starts_at = ?1 AND fingerprint = ?2 AND status = 'firing'",
                )
                .map_err(db)?;
            let mut latest: std::collections::BTreeMap<String, Timestamp> = Default::default();
            for (fp, start) in alerts {
                let at: Option<i64> = st
                    .query_row(params![start.0, fp], |r| r.get(0))
                    .optional()
                    .map_err(db)?;
                if let Some(at) = at {
                    let e = latest.entry(fp).or_insert(Timestamp(at));
                    *e = (*e).max(Timestamp(at));
                }
            }
            Ok(latest.into_iter().collect())
        })
    }

    fn prune_signals(
        &self,
        after: i64,
        before: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<crate::adapters::store::Pruned>> {
        self.call(move |c| super::retention::prune(c, after, before, limit))
    }

    fn breakers(&self) -> BoxFuture<'_, Result<Vec<(String, BreakerRecord)>>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached("SELECT key, body FROM breakers ORDER BY key")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(k, b)| Ok((k, decode(&b)?)))
                .collect()
        })
    }

    fn count_failures(&self, key: &str, since: Timestamp) -> BoxFuture<'_, Result<u32>> {
        let key = key.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM breaker_failures WHERE key = ?1 AND at > ?2",
                params![key, since.0],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u32)
            .map_err(db)
        })
    }

    fn pauses(&self) -> BoxFuture<'_, Result<Vec<Pause>>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached("SELECT body FROM pauses ORDER BY scope")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.iter().map(|b| decode(b)).collect()
        })
    }

    fn set_pause(&self, p: Pause) -> BoxFuture<'_, Result<()>> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO pauses (scope, body) VALUES (?1, ?2) ON CONFLICT (scope) DO UPDATE SET body = excluded.body",
                params![p.scope, encode(&p)],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    fn clear_pause(&self, scope: &str) -> BoxFuture<'_, Result<bool>> {
        let scope = scope.to_string();
        self.call(move |c| {
            c.execute("DELETE FROM pauses WHERE scope = ?1", params![scope])
                .map(|n| n > 0)
                .map_err(db)
        })
    }

    fn add_maintenance(&self, w: NewWindow) -> BoxFuture<'_, Result<MaintenanceWindow>> {
        self.call(move |c| super::maintenance::add(c, w))
    }

    fn maintenance_windows(&self, now: Timestamp) -> BoxFuture<'_, Result<Vec<MaintenanceWindow>>> {
        self.call(move |c| super::maintenance::live(c, now))
    }

    fn cancel_maintenance(
        &self,
        id: i64,
        now: Timestamp,
        by: &str,
    ) -> BoxFuture<'_, Result<Cancelled>> {
        let by = by.to_string();
        self.call(move |c| super::maintenance::cancel(c, id, now, &by))
    }

    fn outbox_due(
        &self,
        now: Timestamp,
        per_route: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxItem>>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT o.id, o.route, o.body, o.attempts,
                         (SELECT t.thread FROM page_threads t
                          WHERE t.incident_id = o.incident_id AND t.route = o.route)
                     FROM outbox o JOIN (
                         SELECT h.id, row_number() OVER (PARTITION BY h.route ORDER BY h.id) AS nth
                         FROM outbox h
                         WHERE h.done_at IS NULL AND h.next_at <= ?1
                           AND NOT EXISTS (
                               SELECT 1 FROM outbox e
                               WHERE e.done_at IS NULL AND e.incident_id = h.incident_id
                                 AND e.route = h.route AND e.id < h.id)
                     ) d ON d.id = o.id
                     WHERE d.nth <= ?2 ORDER BY o.id",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![now.0, per_route as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(id, route, body, attempts, thread)| {
                    Ok(OutboxItem {
                        id,
                        route,
                        notification: decode(&body)?,
                        attempts: attempts as u32,
                        thread,
                    })
                })
                .collect()
        })
    }

    fn outbox_done(&self, id: i64, now: Timestamp, delivered: bool) -> BoxFuture<'_, Result<()>> {
        self.call(move |c| {
            c.execute(
                "UPDATE outbox SET done_at = ?2, delivered = ?3, attempts = attempts + 1 WHERE id = ?1",
                params![id, now.0, delivered as i64],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    fn outbox_threaded(&self, id: i64, now: Timestamp, thread: &str) -> BoxFuture<'_, Result<()>> {
        let thread = thread.to_string();
        self.call(move |c| super::threads::threaded(c, id, now, &thread))
    }

    fn outbox_supersede(&self, id: i64, now: Timestamp) -> BoxFuture<'_, Result<Vec<i64>>> {
        self.call(move |c| super::threads::supersede(c, id, now))
    }

    fn outbox_retry(&self, id: i64, next_at: Timestamp, error: &str) -> BoxFuture<'_, Result<()>> {
        let error = error.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, next_at.0, error],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    fn outbox_depth(&self) -> BoxFuture<'_, Result<u64>> {
        self.call(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM outbox WHERE done_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(db)
        })
    }

    fn list_incidents(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.call(move |c| match status {
            Some(s) => incidents_where(
                c,
                "SELECT body FROM incidents WHERE status = ?1 ORDER BY opened_at DESC, seq DESC LIMIT ?2",
                params![s.as_str(), limit as i64],
            ),
            None => incidents_where(
                c,
                "SELECT body FROM incidents ORDER BY opened_at DESC, seq DESC LIMIT ?1",
                params![limit as i64],
            ),
        })
    }

    fn get_incident(&self, id: &str) -> BoxFuture<'_, Result<Option<Incident>>> {
        let id = id.to_string();
        self.call(move |c| {
            Ok(
                incidents_where(c, "SELECT body FROM incidents WHERE id = ?1", params![id])?
                    .into_iter()
                    .next(),
            )
        })
    }

    fn timeline(&self, id: &str) -> BoxFuture<'_, Result<Vec<Entry>>> {
        let id = id.to_string();
        self.call(move |c| {
            let mut st = c
                .prepare_cached("SELECT body FROM timeline WHERE incident_id = ?1 ORDER BY id")
                .map_err(db)?;
            let rows = st
                .query_map(params![id], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.iter().map(|b| decode(b)).collect()
        })
    }

    fn count_by_status(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached("SELECT status, COUNT(*) FROM incidents GROUP BY status")
                .map_err(db)?;
            st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)
        })
    }

    fn request_resolve(
        &self,
        incident: &str,
        reason: &str,
        author: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<i64>> {
        let (incident, reason, author) =
            (incident.to_string(), reason.to_string(), author.to_string());
        // One replica: the caller wakes the engine in this process; another process (the CLI)
        // is picked up at the engine's next tick.
        self.call(move |c| {
            c.execute(
                "INSERT INTO resolve_requests (incident_id, reason, author, requested_at) VALUES (?1, ?2, ?3, ?4)",
                params![incident, reason, author, at.0],
            )
            .map_err(db)?;
            Ok(c.last_insert_rowid())
        })
    }

    fn pending_resolves(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ResolveRequest>>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {RESOLVE_COLUMNS} FROM resolve_requests WHERE done_at IS NULL ORDER BY id LIMIT ?1"
                ))
                .map_err(db)?;
            let rows = st
                .query_map(params![limit as i64], resolve_row)
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter().map(resolve_request).collect()
        })
    }

    fn resolve_request(&self, id: i64) -> BoxFuture<'_, Result<Option<ResolveRequest>>> {
        self.call(move |c| {
            c.prepare_cached(&format!(
                "SELECT {RESOLVE_COLUMNS} FROM resolve_requests WHERE id = ?1"
            ))
            .and_then(|mut st| st.query_row(params![id], resolve_row).optional())
            .map_err(db)?
            .map(resolve_request)
            .transpose()
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.call(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db))
    }

    fn approval(&self, id: &str) -> BoxFuture<'_, Result<Option<Approval>>> {
        let id = id.to_string();
        self.call(move |c| super::approvals::get(c, &id))
    }

    fn decide_approval(
        &self,
        id: &str,
        d: Decision,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Decided>> {
        let id = id.to_string();
        self.call(move |c| super::approvals::decide(c, &id, d, now))
    }

    fn expire_approval(&self, id: &str, now: Timestamp) -> BoxFuture<'_, Result<Option<Approval>>> {
        let id = id.to_string();
        self.call(move |c| super::approvals::expire(c, &id, now))
    }

    fn keep_approval_message(
        &self,
        id: &str,
        route: &str,
        message: &str,
    ) -> BoxFuture<'_, Result<()>> {
        let (id, route, message) = (id.to_string(), route.to_string(), message.to_string());
        self.call(move |c| super::approvals::keep_message(c, &id, &route, &message))
    }

    fn approval_message(&self, id: &str, route: &str) -> BoxFuture<'_, Result<Option<String>>> {
        let (id, route) = (id.to_string(), route.to_string());
        self.call(move |c| super::approvals::message(c, &id, &route))
    }
}

/// Budget uses of `key` since `since` in the given mode.
fn count_uses(c: &Connection, key: &str, since: Timestamp, dry_run: bool) -> Result<u32> {
    c.prepare_cached("SELECT COUNT(*) FROM budget_uses WHERE key = ?1 AND dry_run = ?2 AND at > ?3")
        .and_then(|mut st| {
            st.query_row(params![key, dry_run as i64, since.0], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|n| n as u32)
        .map_err(db)
}

/// A breaker's record (default when never touched).
fn breaker(c: &Connection, key: &str) -> Result<BreakerRecord> {
    let body: Option<String> = c
        .prepare_cached("SELECT body FROM breakers WHERE key = ?1")
        .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
        .map_err(db)?;
    body.map(|b| decode(&b))
        .transpose()
        .map(Option::unwrap_or_default)
}
