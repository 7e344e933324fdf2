//! The fact log: everything the engine did, in the order it happened, as seen at its seams.
//! [`SpyStore`] wraps the real store and logs each successful write (the engine's commits, the
//! outbox's bookkeeping, ingests); the recording executors and pager log their calls. The
//! invariants are checked over this log, so they see the order of writes inside one event
//! without reading the store back after each of them.

use std::sync::{Arc, Mutex};

use remedyd::adapters::store::{
    Commit, IngestResult, OutboxItem, Pause, Receipt, ResolveRequest, Result, Store, StoredSignal,
};
use remedyd::domain::BoxFuture;
use remedyd::domain::incident::{Entry, Incident, Status};
use remedyd::domain::policy::breaker::BreakerRecord;
use remedyd::domain::signal::Signal;
use remedyd::domain::time::Timestamp;

/// One executor call.
#[derive(Clone, Debug)]
pub struct Call {
    /// Position in the call log.
    pub seq: usize,
    /// Engine generation (restarts so far) that made it.
    pub generation: u32,
    /// Action kind.
    pub action: String,
    /// Incident id.
    pub incident: String,
    /// Step name.
    pub step: String,
    /// `dry_run` (true) or `execute`.
    pub dry_run: bool,
}

/// Something that happened, in order.
#[derive(Clone, Debug)]
pub enum Fact {
    /// Signals stored by ingest (webhook payloads and the poller).
    Ingest(Vec<Signal>, IngestResult),
    /// A commit the store accepted.
    Commit(Box<Commit>),
    /// An executor was called.
    Call(Call),
    /// An executor call returned.
    Returned(usize),
    /// The outbox handed these pages to the pager (id, route).
    OutboxDue(Vec<(i64, String)>),
    /// A page is done: delivered, or recorded only / given up.
    OutboxDone(i64, bool),
    /// A page is to be retried at this time.
    OutboxRetry(i64, Timestamp),
    /// Stale updates marked done, superseded by a newer update (ids).
    OutboxSuperseded(Vec<i64>),
    /// A pause was set.
    Pause(String),
    /// A pause was lifted.
    Resume(String),
    /// A person asked to resolve this incident by hand.
    ResolveRequested(String),
}

/// The shared, ordered log.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Fact>>>);

impl Log {
    /// Appends a fact.
    pub fn push(&self, f: Fact) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(f);
    }
    /// Commits logged and not yet taken.
    pub fn commits(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|f| matches!(f, Fact::Commit(_)))
            .count()
    }
    /// Facts logged and not yet taken.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    /// Takes every fact logged so far.
    pub fn drain(&self) -> Vec<Fact> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A store that logs its successful writes.
pub struct SpyStore {
    inner: Arc<dyn Store>,
    log: Log,
}

impl SpyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, log: Log) -> Self {
        Self { inner, log }
    }
}

impl Store for SpyStore {
    fn approval(
        &self,
        id: &str,
    ) -> BoxFuture<'_, Result<Option<remedyd::domain::approval::Approval>>> {
        self.inner.approval(id)
    }
    fn decide_approval(
        &self,
        id: &str,
        d: remedyd::domain::approval::Decision,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<remedyd::adapters::store::Decided>> {
        self.inner.decide_approval(id, d, now)
    }
    fn expire_approval(
        &self,
        id: &str,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<remedyd::domain::approval::Approval>>> {
        self.inner.expire_approval(id, now)
    }
    fn keep_approval_message(
        &self,
        id: &str,
        route: &str,
        message: &str,
    ) -> BoxFuture<'_, Result<()>> {
        self.inner.keep_approval_message(id, route, message)
    }
    fn approval_message(&self, id: &str, route: &str) -> BoxFuture<'_, Result<Option<String>>> {
        self.inner.approval_message(id, route)
    }
    fn ingest(
        &self,
        receipt: Receipt,
        signals: Vec<Signal>,
    ) -> BoxFuture<'_, Result<IngestResult>> {
        Box::pin(async move {
            let copy = signals.clone();
            let r = self.inner.ingest(receipt, signals).await?;
            self.log.push(Fact::Ingest(copy, r));
            Ok(r)
        })
    }
    fn pending_signals_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredSignal>>> {
        self.inner.pending_signals_after(after, limit)
    }
    fn incident_counter(&self, year: i32) -> BoxFuture<'_, Result<i64>> {
        self.inner.incident_counter(year)
    }
    fn active_incidents(&self) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.inner.active_incidents()
    }
    fn commit(&self, c: Commit) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let copy = c.clone();
            self.inner.commit(c).await?;
            self.log.push(Fact::Commit(Box::new(copy)));
            Ok(())
        })
    }
    fn count_uses(&self, key: &str, since: Timestamp, dry_run: bool) -> BoxFuture<'_, Result<u32>> {
        self.inner.count_uses(key, since, dry_run)
    }
    fn breaker(&self, key: &str) -> BoxFuture<'_, Result<BreakerRecord>> {
        self.inner.breaker(key)
    }
    fn gate_reads(
        &self,
        uses: Vec<(String, Timestamp)>,
        dry_run: bool,
        breakers: Vec<String>,
    ) -> BoxFuture<'_, Result<(Vec<u32>, Vec<BreakerRecord>)>> {
        self.inner.gate_reads(uses, dry_run, breakers)
    }
    fn breakers(&self) -> BoxFuture<'_, Result<Vec<(String, BreakerRecord)>>> {
        self.inner.breakers()
    }
    fn count_failures(&self, key: &str, since: Timestamp) -> BoxFuture<'_, Result<u32>> {
        self.inner.count_failures(key, since)
    }
    fn pauses(&self) -> BoxFuture<'_, Result<Vec<Pause>>> {
        self.inner.pauses()
    }
    fn set_pause(&self, p: Pause) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let scope = p.scope.clone();
            self.inner.set_pause(p).await?;
            self.log.push(Fact::Pause(scope));
            Ok(())
        })
    }
    fn clear_pause(&self, scope: &str) -> BoxFuture<'_, Result<bool>> {
        let scope = scope.to_string();
        Box::pin(async move {
            let r = self.inner.clear_pause(&scope).await?;
            self.log.push(Fact::Resume(scope));
            Ok(r)
        })
    }
    fn add_maintenance(
        &self,
        w: remedyd::adapters::store::NewWindow,
    ) -> BoxFuture<'_, Result<remedyd::adapters::store::MaintenanceWindow>> {
        self.inner.add_maintenance(w)
    }
    fn maintenance_windows(
        &self,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<remedyd::adapters::store::MaintenanceWindow>>> {
        self.inner.maintenance_windows(now)
    }
    fn cancel_maintenance(
        &self,
        id: i64,
        now: Timestamp,
        by: &str,
    ) -> BoxFuture<'_, Result<remedyd::adapters::store::Cancelled>> {
        self.inner.cancel_maintenance(id, now, by)
    }
    fn outbox_due(
        &self,
        now: Timestamp,
        per_route: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxItem>>> {
        Box::pin(async move {
            let items = self.inner.outbox_due(now, per_route).await?;
            self.log.push(Fact::OutboxDue(
                items.iter().map(|i| (i.id, i.route.clone())).collect(),
            ));
            Ok(items)
        })
    }
    fn outbox_done(&self, id: i64, now: Timestamp, delivered: bool) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.inner.outbox_done(id, now, delivered).await?;
            self.log.push(Fact::OutboxDone(id, delivered));
            Ok(())
        })
    }
    fn outbox_threaded(&self, id: i64, now: Timestamp, thread: &str) -> BoxFuture<'_, Result<()>> {
        let thread = thread.to_string();
        Box::pin(async move {
            self.inner.outbox_threaded(id, now, &thread).await?;
            self.log.push(Fact::OutboxDone(id, true));
            Ok(())
        })
    }
    fn outbox_supersede(&self, id: i64, now: Timestamp) -> BoxFuture<'_, Result<Vec<i64>>> {
        Box::pin(async move {
            let ids = self.inner.outbox_supersede(id, now).await?;
            if !ids.is_empty() {
                self.log.push(Fact::OutboxSuperseded(ids.clone()));
            }
            Ok(ids)
        })
    }
    fn outbox_retry(&self, id: i64, next_at: Timestamp, error: &str) -> BoxFuture<'_, Result<()>> {
        let error = error.to_string();
        Box::pin(async move {
            self.inner.outbox_retry(id, next_at, &error).await?;
            self.log.push(Fact::OutboxRetry(id, next_at));
            Ok(())
        })
    }
    fn outbox_depth(&self) -> BoxFuture<'_, Result<u64>> {
        self.inner.outbox_depth()
    }
    fn list_incidents(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.inner.list_incidents(status, limit)
    }
    fn get_incident(&self, id: &str) -> BoxFuture<'_, Result<Option<Incident>>> {
        self.inner.get_incident(id)
    }
    fn timeline(&self, id: &str) -> BoxFuture<'_, Result<Vec<Entry>>> {
        self.inner.timeline(id)
    }
    fn count_by_status(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>> {
        self.inner.count_by_status()
    }
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.ping()
    }
    fn counter(&self, name: String) -> BoxFuture<'_, Result<i64>> {
        self.inner.counter(name)
    }
    fn prune_signals(
        &self,
        after: i64,
        before: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<remedyd::adapters::store::Pruned>> {
        self.inner.prune_signals(after, before, limit)
    }
    fn last_heard(
        &self,
        alerts: Vec<(String, Timestamp)>,
    ) -> BoxFuture<'_, Result<Vec<(String, Timestamp)>>> {
        self.inner.last_heard(alerts)
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
        Box::pin(async move {
            let id = self
                .inner
                .request_resolve(&incident, &reason, &author, at)
                .await?;
            self.log.push(Fact::ResolveRequested(incident));
            Ok(id)
        })
    }
    fn pending_resolves(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ResolveRequest>>> {
        self.inner.pending_resolves(limit)
    }
    fn resolve_request(&self, id: i64) -> BoxFuture<'_, Result<Option<ResolveRequest>>> {
        self.inner.resolve_request(id)
    }
}
