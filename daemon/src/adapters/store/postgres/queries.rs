//! The [`Store`] interface on PostgreSQL: reads, and the small writes that are not the engine's
//! commit (pauses, outbox progress, resolve requests). Ingest hands deliveries to the
//! group-commit worker; the commit is [`apply_commit`].

use tokio::sync::oneshot;

use super::PgStore;
use super::commit::apply_commit;
use super::wire::{SIGNALS_CHANNEL, db, decode, encode, text};
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

/// The columns [`resolve_request`] reads, in its order.
const RESOLVE_COLUMNS: &str = "id, incident_id, reason, author, requested_at, done_at, result";

/// A resolve request from its row ([`RESOLVE_COLUMNS`]).
fn resolve_request(r: &tokio_postgres::Row) -> Result<ResolveRequest> {
    let id: i64 = r.try_get(0).map_err(db)?;
    let done_at: Option<i64> = r.try_get(5).map_err(db)?;
    let result: Option<String> = r.try_get(6).map_err(db)?;
    let done = match (done_at, result) {
        (Some(at), Some(result)) => Some((
            Timestamp(at),
            ResolveResult::parse(&result).ok_or_else(|| {
                StoreError::Corrupt(format!("resolve request {id}: unknown result {result:?}"))
            })?,
        )),
        _ => None,
    };
    Ok(ResolveRequest {
        id,
        incident: r.try_get(1).map_err(db)?,
        reason: r.try_get(2).map_err(db)?,
        author: r.try_get(3).map_err(db)?,
        requested_at: Timestamp(r.try_get(4).map_err(db)?),
        done,
    })
}

impl Store for PgStore {
    fn ingest(
        &self,
        receipt: Receipt,
        signals: Vec<Signal>,
    ) -> BoxFuture<'_, Result<IngestResult>> {
        self.op(async move {
            let (tx, rx) = oneshot::channel();
            self.ingest
                .send((receipt, signals, tx))
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
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT id, body, received_at FROM signals
                     WHERE id > greatest(coalesce((SELECT value FROM counters WHERE name = 'engine_signals'), 0), $2)
                     ORDER BY id LIMIT $1",
                )
                .await
                .map_err(db)?;
            c.query(&st, &[&(limit as i64), &after.unwrap_or(0)])
                .await
                .map_err(db)?
                .iter()
                .map(|r| {
                    Ok(StoredSignal {
                        id: r.get(0),
                        signal: decode(r.get(1))?,
                        received_at: Timestamp(r.get(2)),
                    })
                })
                .collect()
        })
    }

    fn counter(&self, name: String) -> BoxFuture<'_, Result<i64>> {
        self.op(async move {
            let c = self.client().await?;
            Ok(
                c.query_opt("SELECT value FROM counters WHERE name = $1", &[&name])
                    .await
                    .map_err(db)?
                    .map(|r| r.get(0))
                    .unwrap_or_default(),
            )
        })
    }

    fn active_incidents(&self) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.op(self.incidents_where(
            "SELECT body FROM incidents WHERE status <> 'resolved' ORDER BY opened_at, seq",
            &[],
        ))
    }

    fn commit(&self, c: Commit) -> BoxFuture<'_, Result<()>> {
        // Not bounded by OP_TIMEOUT (the pool bounds getting a connection): a client-side
        // timeout after COMMIT was sent would report a failure for a commit that may have
        // happened, and the engine would not launch a step it had claimed.
        Box::pin(async move {
            let mut client = self.client().await?;
            apply_commit(&mut client, self.fence, c).await
        })
    }

    fn count_uses(&self, key: &str, since: Timestamp, dry_run: bool) -> BoxFuture<'_, Result<u32>> {
        let key = key.to_string();
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM budget_uses WHERE key = $1 AND dry_run = $2 AND at > $3",
                )
                .await
                .map_err(db)?;
            let n: i64 = c
                .query_one(&st, &[&text(&key), &dry_run, &since.0])
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u32)
        })
    }

    fn breaker(&self, key: &str) -> BoxFuture<'_, Result<BreakerRecord>> {
        let key = key.to_string();
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT body FROM breakers WHERE key = $1")
                .await
                .map_err(db)?;
            match c.query_opt(&st, &[&text(&key)]).await.map_err(db)? {
                Some(r) => decode(r.get(0)),
                None => Ok(BreakerRecord::default()),
            }
        })
    }

    fn last_heard(
        &self,
        alerts: Vec<(String, Timestamp)>,
    ) -> BoxFuture<'_, Result<Vec<(String, Timestamp)>>> {
        self.op(async move { super::ingest::last_heard(&*self.client().await?, alerts).await })
    }

    fn prune_signals(
        &self,
        after: i64,
        before: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<crate::adapters::store::Pruned>> {
        self.op(async move {
            let mut c = self.client().await?;
            super::retention::prune(&mut c, after, before, limit).await
        })
    }

    fn breakers(&self) -> BoxFuture<'_, Result<Vec<(String, BreakerRecord)>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT key, body FROM breakers ORDER BY key")
                .await
                .map_err(db)?;
            c.query(&st, &[])
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((r.get(0), decode(r.get(1))?)))
                .collect()
        })
    }

    fn count_failures(&self, key: &str, since: Timestamp) -> BoxFuture<'_, Result<u32>> {
        let key = key.to_string();
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT COUNT(*) FROM breaker_failures WHERE key = $1 AND at > $2")
                .await
                .map_err(db)?;
            let n: i64 = c
                .query_one(&st, &[&text(&key), &since.0])
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u32)
        })
    }

    fn pauses(&self) -> BoxFuture<'_, Result<Vec<Pause>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT body FROM pauses ORDER BY scope")
                .await
                .map_err(db)?;
            c.query(&st, &[])
                .await
                .map_err(db)?
                .iter()
                .map(|r| decode(r.get(0)))
                .collect()
        })
    }

    fn set_pause(&self, p: Pause) -> BoxFuture<'_, Result<()>> {
        self.op(async move {
            let c = self.client().await?;
            c.execute(
                "INSERT INTO pauses (scope, body) VALUES ($1, $2)
                 ON CONFLICT (scope) DO UPDATE SET body = excluded.body",
                &[&text(&p.scope), &encode(&p)],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn clear_pause(&self, scope: &str) -> BoxFuture<'_, Result<bool>> {
        let scope = scope.to_string();
        self.op(async move {
            let c = self.client().await?;
            let n = c
                .execute("DELETE FROM pauses WHERE scope = $1", &[&text(&scope)])
                .await
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn add_maintenance(&self, w: NewWindow) -> BoxFuture<'_, Result<MaintenanceWindow>> {
        self.op(async move {
            let c = self.client().await?;
            super::maintenance::add(&c, w).await
        })
    }

    fn maintenance_windows(&self, now: Timestamp) -> BoxFuture<'_, Result<Vec<MaintenanceWindow>>> {
        self.op(async move {
            let c = self.client().await?;
            super::maintenance::live(&c, now).await
        })
    }

    fn cancel_maintenance(
        &self,
        id: i64,
        now: Timestamp,
        by: &str,
    ) -> BoxFuture<'_, Result<Cancelled>> {
        let by = by.to_string();
        self.op(async move {
            let mut c = self.client().await?;
            super::maintenance::cancel(&mut c, id, now, &by).await
        })
    }

    fn outbox_due(
        &self,
        now: Timestamp,
        per_route: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxItem>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT o.id, o.route, o.body, o.attempts,
                         (SELECT t.thread FROM page_threads t
                          WHERE t.incident_id = o.incident_id AND t.route = o.route)
                     FROM outbox o JOIN (
                         SELECT h.id, row_number() OVER (PARTITION BY h.route ORDER BY h.id) AS nth
                         FROM outbox h
                         WHERE h.done_at IS NULL AND h.next_at <= $1
                           AND NOT EXISTS (
                               SELECT 1 FROM outbox e
                               WHERE e.done_at IS NULL AND e.incident_id = h.incident_id
                                 AND e.route = h.route AND e.id < h.id)
                     ) d ON d.id = o.id
                     WHERE d.nth <= $2 ORDER BY o.id",
                )
                .await
                .map_err(db)?;
            c.query(&st, &[&now.0, &(per_route as i64)])
                .await
                .map_err(db)?
                .iter()
                .map(|r| {
                    Ok(OutboxItem {
                        id: r.get(0),
                        route: r.get(1),
                        notification: decode(r.get(2))?,
                        attempts: r.get::<_, i32>(3) as u32,
                        thread: r.try_get(4).map_err(db)?,
                    })
                })
                .collect()
        })
    }

    fn outbox_done(&self, id: i64, now: Timestamp, delivered: bool) -> BoxFuture<'_, Result<()>> {
        self.op(async move {
            let c = self.client().await?;
            c.execute(
                "UPDATE outbox SET done_at = $2, delivered = $3, attempts = attempts + 1 WHERE id = $1",
                &[&id, &now.0, &delivered],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn outbox_threaded(&self, id: i64, now: Timestamp, thread: &str) -> BoxFuture<'_, Result<()>> {
        let thread = thread.to_string();
        self.op(async move {
            let mut c = self.client().await?;
            super::threads::threaded(&mut c, id, now, &thread).await
        })
    }

    fn outbox_supersede(&self, id: i64, now: Timestamp) -> BoxFuture<'_, Result<Vec<i64>>> {
        self.op(async move {
            let mut c = self.client().await?;
            super::threads::supersede(&mut c, id, now).await
        })
    }

    fn outbox_retry(&self, id: i64, next_at: Timestamp, error: &str) -> BoxFuture<'_, Result<()>> {
        let error = error.to_string();
        self.op(async move {
            let c = self.client().await?;
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = $2, last_error = $3 WHERE id = $1",
                &[&id, &next_at.0, &text(&error)],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn outbox_depth(&self) -> BoxFuture<'_, Result<u64>> {
        self.op(async move {
            let c = self.client().await?;
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL", &[])
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u64)
        })
    }

    fn list_incidents(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.op(async move {
            let limit = limit as i64;
            match status {
                Some(s) => {
                    self.incidents_where(
                        "SELECT body FROM incidents WHERE status = $1
                         ORDER BY opened_at DESC, seq DESC LIMIT $2",
                        &[&s.as_str(), &limit],
                    )
                    .await
                }
                None => {
                    self.incidents_where(
                        "SELECT body FROM incidents ORDER BY opened_at DESC, seq DESC LIMIT $1",
                        &[&limit],
                    )
                    .await
                }
            }
        })
    }

    fn get_incident(&self, id: &str) -> BoxFuture<'_, Result<Option<Incident>>> {
        let id = id.to_string();
        self.op(async move {
            Ok(self
                .incidents_where("SELECT body FROM incidents WHERE id = $1", &[&text(&id)])
                .await?
                .into_iter()
                .next())
        })
    }

    fn timeline(&self, id: &str) -> BoxFuture<'_, Result<Vec<Entry>>> {
        let id = id.to_string();
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT body FROM timeline WHERE incident_id = $1 ORDER BY id")
                .await
                .map_err(db)?;
            c.query(&st, &[&text(&id)])
                .await
                .map_err(db)?
                .iter()
                .map(|r| decode(r.get(0)))
                .collect()
        })
    }

    fn count_by_status(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>> {
        self.op(async move {
            let c = self.client().await?;
            Ok(c.query(
                "SELECT status, COUNT(*) FROM incidents GROUP BY status ORDER BY status",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
        })
    }

    fn request_resolve(
        &self,
        incident: &str,
        reason: &str,
        author: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<i64>> {
        let (incident, reason, author) = (
            text(incident).into_owned(),
            text(reason).into_owned(),
            text(author).into_owned(),
        );
        self.op(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO resolve_requests (incident_id, reason, author, requested_at)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&incident, &reason, &author, &at.0],
                )
                .await
                .map_err(db)?
                .get(0);
            // Delivered at COMMIT to the leader's LISTEN connection, whichever replica leads.
            tx.execute("SELECT pg_notify($1, 'resolve')", &[&SIGNALS_CHANNEL])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(id)
        })
    }

    fn pending_resolves(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ResolveRequest>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {RESOLVE_COLUMNS} FROM resolve_requests
                     WHERE done_at IS NULL ORDER BY id LIMIT $1"
                ))
                .await
                .map_err(db)?;
            c.query(&st, &[&(limit as i64)])
                .await
                .map_err(db)?
                .iter()
                .map(resolve_request)
                .collect()
        })
    }

    fn resolve_request(&self, id: i64) -> BoxFuture<'_, Result<Option<ResolveRequest>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {RESOLVE_COLUMNS} FROM resolve_requests WHERE id = $1"
                ))
                .await
                .map_err(db)?;
            c.query_opt(&st, &[&id])
                .await
                .map_err(db)?
                .as_ref()
                .map(resolve_request)
                .transpose()
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.op(async move {
            let c = self.client().await?;
            c.simple_query("SELECT 1").await.map_err(db)?;
            Ok(())
        })
    }

    fn approval(&self, id: &str) -> BoxFuture<'_, Result<Option<Approval>>> {
        let id = id.to_string();
        self.op(async move {
            let c = self.client().await?;
            super::approvals::get(&c, &id).await
        })
    }

    fn decide_approval(
        &self,
        id: &str,
        d: Decision,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Decided>> {
        let id = id.to_string();
        self.op(async move {
            let mut c = self.client().await?;
            super::approvals::decide(&mut c, &id, d, now).await
        })
    }

    fn expire_approval(&self, id: &str, now: Timestamp) -> BoxFuture<'_, Result<Option<Approval>>> {
        let id = id.to_string();
        self.op(async move {
            let mut c = self.client().await?;
            super::approvals::expire(&mut c, &id, now).await
        })
    }

    fn keep_approval_message(
        &self,
        id: &str,
        route: &str,
        message: &str,
    ) -> BoxFuture<'_, Result<()>> {
        let (id, route, message) = (id.to_string(), route.to_string(), message.to_string());
        self.op(async move {
            let c = self.client().await?;
            super::approvals::keep_message(&c, &id, &route, &message).await
        })
    }

    fn approval_message(&self, id: &str, route: &str) -> BoxFuture<'_, Result<Option<String>>> {
        let (id, route) = (id.to_string(), route.to_string());
        self.op(async move {
            let c = self.client().await?;
            super::approvals::message(&c, &id, &route).await
        })
    }
}
