//! The engine: the only writer of incidents. It turns stored signals into incident events, drives
//! due steps through the gates and the ledger, runs actions, and turns effects into store writes
//! and pages. Everything it decides is committed before it acts, so a restart resumes.
//!
//! One pass ([`Engine::pass`]) in its order, one file per stage:
//! - steps a failed commit may have claimed are recovered as interrupted (`actions`);
//! - people's resolve requests, then stored signals, become incident events (`signals`);
//! - due incidents are driven: staleness, the storm, deadlines, lifted pauses, and due steps
//!   through the gates and the ledger (`drive`); started steps and probes run in the
//!   background and report back (`actions`); steps that need people wait for their decision
//!   (`approvals`);
//! - open escalated incidents whose update is due tell the routes paged how they stand
//!   (`updates`);
//! - silences tied to the ladder are created, renewed and expired in Alertmanager (`silences`);
//! - every transition's effects become store writes and pages (`effects`), committed through
//!   the engine's copy of the active incidents (`cache`).
//!
//! The long-running loop that repeats passes and records what actions report is in `tasks`.

mod actions;
mod approvals;
mod cache;
mod drive;
mod effects;
mod signals;
mod silences;
mod tasks;
#[cfg(test)]
mod tests;
mod updates;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::task::TaskTracker;

use crate::adapters::action::{Executors, Outcome};
use crate::adapters::prometheus::MetricSource;
use crate::adapters::store::{Commit, Store, StoreError};
use crate::adapters::telemetry::Metrics;
use crate::domain::incident::{Incident, Probe, SilenceOp, SilenceRef};
use crate::domain::policy::Mode;
use crate::domain::time::{Clock, Timestamp};
use crate::load::ruleset::{Ruleset, SharedRuleset};

/// 12 h: three times Alertmanager's default `repeat_interval` (4 h), so that two lost re-sends
/// in a row do not make an incident stale.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Signals handled in one batch (one commit) when there is no backlog.
const SIGNAL_BATCH: usize = 256;
/// The largest batch, reached by doubling while batches come back full (a backlog); also about
/// how many signals' writes are held before a backlog's commit. When a commit wrote every
/// incident it touched with all its alerts, a fixed batch written at once made a storm of
/// thousands of alerts per incident cost the square of the backlog (a 60 s flood at 1 000
/// webhooks/s never drained); an incident's alerts are now rows written as they change, and
/// growing batches held together bound the commits per backlog.
const SIGNAL_BATCH_MAX: usize = 16_384;

/// The batch after one that came back full.
fn next_batch(batch: usize) -> usize {
    (batch * 2).min(SIGNAL_BATCH_MAX)
}
/// Finished steps waiting for the engine. 256: far more than can run at once (one per target).
const DONE_QUEUE: usize = 256;

/// A finished action.
#[derive(Clone)]
struct Done {
    incident: String,
    ladder: u8,
    step: usize,
    action: String,
    outcome: Outcome,
    /// The budget uses its claim charged, given back if the action was held before any write.
    charged: Vec<crate::adapters::store::BudgetCharge>,
}

/// What background work reports back to the engine.
enum Msg {
    /// An action returned.
    Step(Done),
    /// A verification probe returned.
    Probe {
        incident: String,
        step: usize,
        probe: Probe,
    },
    /// A verified step's change was read back (`Executor::revert_check`).
    RevertChecked {
        incident: String,
        step: usize,
        reverted: Result<Option<String>, String>,
    },
    /// A call to Alertmanager's silences API returned (`silences`): the incident as it was
    /// when the call was made (a resolved one is no longer in the cache), the operation, and
    /// what came of it.
    Silence {
        incident: Box<Incident>,
        op: SilenceOp,
        result: Result<Vec<SilenceRef>, String>,
    },
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Global mode; a policy may override it.
    pub mode: Mode,
    /// Fallback wake-up when nothing signals it: bounds how late a deadline is noticed.
    pub tick: Duration,
    /// On shutdown, how long to wait for actions in flight so their results are recorded.
    pub shutdown: Duration,
    /// An Alertmanager-driven incident none of whose alerts is heard of (not even re-sent) for
    /// this long goes stale (config `stale_after`).
    pub stale_after: Duration,
    /// Alertmanager, for the silences of policies with `silence:` (config `alertmanager_url`);
    /// `None` silences nothing.
    pub silencer: Option<Arc<crate::adapters::silence::Alertmanagers>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            mode: Mode::DryRun,
            // 1 s: deadlines (`for`, verification) are minutes; a second late is fine.
            tick: Duration::from_secs(1),
            shutdown: Duration::from_secs(10),
            stale_after: DEFAULT_STALE_AFTER,
            silencer: None,
        }
    }
}

/// The engine.
pub struct Engine {
    store: Arc<dyn Store>,
    ruleset: SharedRuleset,
    executors: Executors,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    config: EngineConfig,
    wake: Arc<Notify>,
    running: HashSet<String>,
    cache: Option<cache::Active>,
    recover_pending: bool,
    /// Finished steps whose result could not be written (the store down, locked or full): written
    /// again at the start of every pass, oldest first, so that their real outcome lands as soon
    /// as the store takes writes again, without a restart. Few: one per action in flight.
    unrecorded: Vec<Done>,
    probing: HashSet<String>,
    /// Incidents with a read-back of their verified step's change in flight.
    checking: HashSet<String>,
    source: Option<Arc<dyn MetricSource>>,
    /// When the open storm began (its page's identity), `None` when there is none; loaded from
    /// the store ([`crate::adapters::store::STORM_COUNTER`]) on first use, so it survives restarts.
    storm: Option<Option<Timestamp>>,
    /// When incidents are next checked for staleness.
    next_stale_check: Timestamp,
    /// The last incident number given out per year (from the store, then counted here).
    numbers: HashMap<i32, i64>,
    /// The last signal batch's writes, committed with the first step they make due (one
    /// transaction: the incident opens and its first step is claimed together) or at the end
    /// of the pass. The cache already shows them; a failed commit reloads it.
    deferred: Option<Commit>,
    /// Incidents committed as resolved with a live silence, expired by the next `silences`.
    silence_ending: Vec<Incident>,
    /// Whether this engine has expired the silences remedyd created and forgot (first pass).
    silences_swept: bool,
    /// The last answer to "has a human silenced it?" per incident, and when it was asked:
    /// reused for [`silences::HUMAN_CHECK_EVERY`] (`held_by_human`).
    human_checks: HashMap<String, (Timestamp, Vec<crate::domain::incident::HumanSilence>)>,
    /// Incidents with a call to Alertmanager in flight: no other is started for them until it
    /// returns (as `running` for steps).
    silencing: HashSet<String>,
    done_tx: mpsc::Sender<Msg>,
    done_rx: mpsc::Receiver<Msg>,
}

impl Engine {
    /// A new engine; `wake` is notified by intake after signals are stored.
    pub fn new(
        store: Arc<dyn Store>,
        ruleset: SharedRuleset,
        executors: Executors,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        config: EngineConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::channel(DONE_QUEUE);
        Self {
            store,
            ruleset,
            executors,
            clock,
            metrics,
            config,
            wake,
            running: HashSet::new(),
            cache: None,
            recover_pending: false,
            unrecorded: Vec::new(),
            probing: HashSet::new(),
            checking: HashSet::new(),
            source: None,
            storm: None,
            next_stale_check: Timestamp(0),
            numbers: HashMap::new(),
            deferred: None,
            silence_ending: Vec::new(),
            silences_swept: false,
            human_checks: HashMap::new(),
            silencing: HashSet::new(),
            done_tx,
            done_rx,
        }
    }

    /// Where PromQL verifications read values (Prometheus); without one they have no data.
    pub fn with_source(mut self, source: Arc<dyn MetricSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// One pass: handle stored signals, then drive due incidents. Public for tests.
    pub async fn pass(&mut self, tasks: &TaskTracker) -> Result<(), StoreError> {
        while let Some(done) = self.unrecorded.first().cloned() {
            self.finish(done).await?;
            self.unrecorded.remove(0);
        }
        if self.recover_pending {
            self.recover().await?;
            self.recover_pending = false;
        }
        if let Err(e) = self.operator_requests().await {
            // A request that cannot be applied now must not stop remediation: it stays pending.
            self.metrics.store_error("resolve");
            tracing::warn!(error = %e, "Applying resolve requests failed; retrying on the next pass");
        }
        self.handle_signals().await?;
        let deferred = self.deferred.is_some();
        let r = self.drive(tasks).await;
        if r.is_err() && deferred {
            // The deferred batch may not be written: its signals stay after the watermark and
            // are handled again; the cache, which showed them, is reloaded from the store.
            self.deferred = None;
            self.cache = None;
        }
        r?;
        self.silences(tasks).await
    }

    /// The ruleset in force now (a reload swaps it between passes).
    fn rules(&self) -> Arc<Ruleset> {
        self.ruleset.read().expect("ruleset lock").clone()
    }
}
