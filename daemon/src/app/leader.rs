//! Leadership: which replica runs the engine, the poller and the outbox.
//!
//! The engine reads "signals since the watermark" and keeps the active incidents in memory, so
//! it assumes it is the only writer of incidents; the poller would store every series once per
//! replica; and one page must be sent once. So with several replicas exactly one of them, the
//! leader, runs those three, while every replica takes webhooks (ingest is safe from anywhere:
//! deduplicated, ordered by the store) and serves the API.
//!
//! - SQLite: one replica, always the leader.
//! - PostgreSQL: the holder of a session advisory lock ([`Leadership`]). When its connection
//!   fails, the term is lost: the duties stop (actions in flight get the shutdown deadline to
//!   finish) and the replica tries to lead again. The engine writes through a store fenced to
//!   its term, so even an engine that has not noticed the loss yet cannot commit after a new
//!   leader has started, and the ledger keeps each step at most once either way.
//!
//! Pages are delivered by the leader only (single writer of the outbox): a handover while a
//! delivery is in flight can send that page twice (it carries a stable dedup key, which
//! PagerDuty and Opsgenie collapse), never zero times.
//!
//! The duties are supervised (crash-only, see [`crate::app::supervise`]): one that panics or returns
//! on its own stops the process. The term is then released here, and the lock goes with the
//! connection when the process exits, so a standby takes over instead of waiting on a leader
//! that remediates nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapters::action::Executors;
use crate::adapters::escalate::Pager;
use crate::adapters::intake::poller::Poller;
use crate::adapters::prometheus::MetricSource;
use crate::adapters::store::Store;
use crate::adapters::store::postgres::{Leadership, PgStore};
use crate::adapters::store::sqlite::SqliteStore;
use crate::adapters::telemetry::{EngineHealth, Metrics};
use crate::app::supervise::{Supervisor, Task};
use crate::domain::time::Clock;
use crate::engine::{Engine, EngineConfig};
use crate::load::ruleset::SharedRuleset;

/// Beyond the engine's shutdown deadline, how long the duties get to stop: the poller, the
/// outbox and the digest stop at their next await; an outbox delivery in flight is what takes
/// longest, and it is delivered again by the next leader if it is cut short.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Chooses the leader among replicas.
pub enum Elector {
    /// One replica (SQLite): always the leader.
    Single(Arc<dyn Store>),
    /// Several replicas on PostgreSQL: the holder of a session advisory lock.
    Postgres(Box<Leadership>),
}

/// Opens the store named by `url` (`sqlite://PATH` or `postgres://…`) and its elector; `wake`
/// is notified when another replica stores signals. An unreachable database is an error.
pub async fn open(url: &str, wake: Arc<Notify>) -> anyhow::Result<(Arc<dyn Store>, Elector)> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(Path::new(path)).with_context(|| format!("opening store {path}"))?,
        );
        return Ok((store.clone(), Elector::Single(store)));
    }
    let pg = PgStore::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("opening the PostgreSQL store: {e}"))?;
    Ok((
        Arc::new(pg.clone()),
        Elector::Postgres(Box::new(Leadership::new(pg, wake))),
    ))
}

/// What only the leader runs, and what it runs with.
pub struct Duties {
    /// The current rules and policies.
    pub ruleset: SharedRuleset,
    /// Action kinds.
    pub executors: Executors,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Metrics (`remedyd_leader` is set here).
    pub metrics: Arc<Metrics>,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Wakes the engine (intake, the poller, other replicas' NOTIFY).
    pub wake: Arc<Notify>,
    /// Wakes the outbox.
    pub outbox_wake: Arc<Notify>,
    /// Delivers pages.
    pub pager: Arc<dyn Pager>,
    /// Polled rules and PromQL verification read here; `None` without Prometheus.
    pub source: Option<Arc<dyn MetricSource>>,
    /// Actions in flight, awaited at shutdown.
    pub tasks: TaskTracker,
    /// Spawns the duties; the first that fails stops the process.
    pub supervisor: Arc<Supervisor>,
    /// Whether the engine runs here, and since when (`/readyz`).
    pub health: Arc<EngineHealth>,
    /// How long handled signals are kept (config `signal_retention`); `None` keeps them.
    pub signal_retention: Option<std::time::Duration>,
}

impl Duties {
    /// Starts the engine, the poller (with a source), the digest and the outbox on `store`
    /// until `cancel`, each supervised.
    fn start(&self, store: Arc<dyn Store>, cancel: &CancellationToken) -> Vec<JoinHandle<()>> {
        let store = self.supervisor.duty_store(store);
        let sup = &self.supervisor;
        let mut engine = Engine::new(
            store.clone(),
            self.ruleset.clone(),
            self.executors.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.engine.clone(),
            self.wake.clone(),
        );
        let mut handles = Vec::new();
        if let Some(src) = &self.source {
            engine = engine.with_source(src.clone());
            let poller = Poller::new(
                store.clone(),
                self.ruleset.clone(),
                src.clone(),
                self.clock.clone(),
                self.metrics.clone(),
                self.wake.clone(),
            );
            handles.push(sup.spawn(Task::Poller, cancel, poller.run(cancel.clone())));
        }
        handles.push(sup.spawn(
            Task::Engine,
            cancel,
            engine.run(cancel.clone(), self.tasks.clone()),
        ));
        // The daily digest is a leader duty too: one digest, whatever the number of replicas.
        handles.push(sup.spawn(
            Task::Digest,
            cancel,
            crate::adapters::escalate::digest::run(
                store.clone(),
                self.ruleset.clone(),
                self.clock.clone(),
                self.outbox_wake.clone(),
                cancel.clone(),
            ),
        ));
        // Removing old signals is a leader duty: one replica deletes, the others only ingest.
        if let Some(retention) = self.signal_retention {
            handles.push(sup.spawn(
                Task::Retention,
                cancel,
                crate::adapters::store::retention::run(
                    store.clone(),
                    retention,
                    self.clock.clone(),
                    self.metrics.clone(),
                    cancel.clone(),
                ),
            ));
        }
        handles.push(sup.spawn(
            Task::Outbox,
            cancel,
            crate::adapters::escalate::outbox::run(
                store,
                self.pager.clone(),
                self.ruleset.clone(),
                self.clock.clone(),
                self.metrics.clone(),
                self.outbox_wake.clone(),
                cancel.clone(),
            ),
        ));
        handles
    }
}

/// Runs the duties whenever this replica leads, until `cancel` (which the supervisor also
/// cancels when a duty fails); returns once they have stopped (the engine waits up to its
/// shutdown deadline for actions in flight) and the term is released.
pub async fn run(elector: Elector, duties: Duties, cancel: CancellationToken) {
    loop {
        let (store, term): (Arc<dyn Store>, _) = match &elector {
            Elector::Single(s) => (s.clone(), None),
            Elector::Postgres(l) => match l.acquire(&cancel).await {
                Some(t) => (Arc::new(t.store.clone()), Some(t)),
                None => return,
            },
        };
        let lost = term.as_ref().map(|t| t.lost()).unwrap_or_default();
        duties.metrics.leader.set(1);
        duties.health.started(duties.clock.now());
        let term_cancel = cancel.child_token();
        let handles = duties.start(store, &term_cancel);
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = lost.cancelled() => tracing::error!(
                "Lost leadership: stopping the engine, the poller and the outbox; webhooks are still taken"
            ),
        }
        term_cancel.cancel();
        stop_duties(handles, duties.engine.shutdown + STOP_GRACE).await;
        duties.health.stopped();
        duties.metrics.leader.set(0);
        if let Some(t) = term {
            t.release().await;
        }
        if cancel.is_cancelled() {
            return;
        }
    }
}

/// Waits for the duties to stop, at most `limit`; what is still running then is aborted (an
/// outbox delivery cut short is delivered again; the engine has recorded what it could).
async fn stop_duties(handles: Vec<JoinHandle<()>>, limit: Duration) {
    let aborts: Vec<_> = handles.iter().map(JoinHandle::abort_handle).collect();
    if tokio::time::timeout(limit, futures::future::join_all(handles))
        .await
        .is_err()
    {
        tracing::warn!(
            limit = %crate::domain::time::fmt_duration(limit),
            "Leader duties did not stop in time; aborting them"
        );
        for a in aborts {
            a.abort();
        }
    }
}
