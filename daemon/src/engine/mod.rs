//! The engine: the only writer of incidents. It turns stored signals into incident events, drives
//! due steps through the gates and the ledger, runs actions, and turns effects into store writes
//! and pages. Everything it decides is committed before it acts, so a restart resumes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapters::action::{ActionRequest, Executors, Outcome};
use crate::adapters::escalate::{self, NotificationKind};
use crate::adapters::prometheus::MetricSource;
use crate::adapters::store::{Commit, Pause, ResolveResult, Store, StoreError};
use crate::adapters::telemetry::Metrics;
use crate::domain::incident::{Effect, Entry, Event, Incident, Phase, Probe, StepResult};
use crate::domain::policy::Mode;
use crate::domain::policy::breaker;
use crate::domain::policy::budget::BudgetUse;
use crate::domain::policy::gate::{
    self, BreakerInput, Decision, GateInput, PauseInfo, RefusalKind,
};
use crate::domain::policy::{Policy, Step, Verify};
use crate::domain::signal::Status as SignalStatus;
use crate::domain::time::{Clock, Timestamp};
use crate::load::ruleset::{Ruleset, SharedRuleset};

/// 12 h: three times Alertmanager's default `repeat_interval` (4 h), so that two lost re-sends
/// in a row do not make an incident stale.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(12 * 3600);
/// How often incidents are checked for staleness: one store read over their alerts; staleness
/// is hours, so a minute late is nothing.
const STALE_CHECK: Duration = Duration::from_secs(60);

/// Signals handled per pass; bounds one commit's size.
const SIGNAL_BATCH: usize = 256;
/// Resolve requests applied per pass: people ask rarely; bounds one pass's extra work.
const RESOLVE_BATCH: usize = 64;
/// Finished steps waiting for the engine. 256: far more than can run at once (one per target).
const DONE_QUEUE: usize = 256;

/// A finished action.
struct Done {
    incident: String,
    ladder: u8,
    step: usize,
    action: String,
    outcome: Outcome,
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            mode: Mode::DryRun,
            // 1 s: deadlines (`for`, verification) are minutes; a second late is fine.
            tick: Duration::from_secs(1),
            shutdown: Duration::from_secs(10),
            stale_after: DEFAULT_STALE_AFTER,
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
    cache: Option<BTreeMap<String, Incident>>,
    recover_pending: bool,
    probing: HashSet<String>,
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
            probing: HashSet::new(),
            source: None,
            storm: None,
            next_stale_check: Timestamp(0),
            numbers: HashMap::new(),
            deferred: None,
            done_tx,
            done_rx,
        }
    }

    /// The next `INC-YYYY-NNNN`. The engine is the only writer of incidents (one per leadership
    /// term, fenced), so it counts in memory from the highest committed number; a number whose
    /// commit failed is skipped, never reused.
    async fn next_incident_id(&mut self, year: i32) -> Result<String, StoreError> {
        let n = match self.numbers.get(&year) {
            Some(n) => *n,
            None => self.store.incident_counter(year).await?,
        } + 1;
        self.numbers.insert(year, n);
        Ok(format!("INC-{year}-{n:04}"))
    }

    /// Where PromQL verifications read values (Prometheus); without one they have no data.
    pub fn with_source(mut self, source: Arc<dyn MetricSource>) -> Self {
        self.source = Some(source);
        self
    }

    fn rules(&self) -> Arc<Ruleset> {
        self.ruleset.read().expect("ruleset lock").clone()
    }

    /// Runs until cancelled. Actions in flight are tracked by `tasks` so shutdown can wait.
    pub async fn run(mut self, cancel: CancellationToken, tasks: TaskTracker) {
        if let Err(e) = self.recover().await {
            tracing::error!(error = %e, "Recovery from the store failed; will retry on the next pass");
        }
        loop {
            if let Err(e) = self.pass(&tasks).await {
                self.metrics.store_error("engine");
                tracing::warn!(error = %e, "Engine pass failed; retrying");
            } else {
                self.metrics.engine_passed(self.clock.now());
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                Some(msg) = self.done_rx.recv() => {
                    if let Err(e) = self.handle(msg).await {
                        self.metrics.store_error("finish");
                        tracing::error!(error = %e, "Recording a finished step or probe failed; a step is recovered as interrupted on restart");
                    }
                }
                _ = tokio::time::sleep(self.config.tick) => {}
            }
        }
        // No new step starts. Wait (bounded) for the ones in flight so that their results are
        // recorded; what is still running at the deadline resumes as "interrupted" on restart.
        let deadline = tokio::time::Instant::now() + self.config.shutdown;
        while !self.running.is_empty() || !self.probing.is_empty() {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(msg)) => {
                    let _ = self.handle(msg).await;
                }
                _ => {
                    tracing::warn!(
                        running = self.running.len(),
                        "Shutdown deadline passed with actions in flight; they are recovered as interrupted on restart"
                    );
                    break;
                }
            }
        }
        while let Ok(msg) = self.done_rx.try_recv() {
            let _ = self.handle(msg).await;
        }
    }

    async fn handle(&mut self, msg: Msg) -> Result<(), StoreError> {
        match msg {
            Msg::Step(done) => self.finish(done).await,
            Msg::Probe {
                incident,
                step,
                probe,
            } => {
                self.probing.remove(&incident);
                let rs = self.rules();
                let now = self.clock.now();
                let Some(mut inc) = self.incident(&incident).await? else {
                    return Ok(());
                };
                let Some(policy) = rs.policies.get(&inc.policy) else {
                    return Ok(());
                };
                let fx = inc.apply(Event::Probe { step, probe }, policy, now);
                if fx.is_empty() {
                    return Ok(());
                }
                let mut c = Commit::default();
                self.effects(&inc, fx, &rs, &mut c, now).await?;
                c.incidents.push(inc);
                self.commit(c).await
            }
        }
    }

    fn launch_probe(
        &mut self,
        tasks: &TaskTracker,
        rs: &Ruleset,
        inc: &Incident,
        step: usize,
        spec: &Step,
    ) {
        let Verify::Query { query, above, .. } = &spec.verify else {
            return;
        };
        self.probing.insert(inc.id.clone());
        let vars = self.request(rs, inc, spec).vars;
        let rendered =
            crate::domain::template::Template::parse(query).and_then(|t| t.render(&vars));
        let above = *above;
        let source = self.source.clone();
        let tx = self.done_tx.clone();
        let wake = self.wake.clone();
        let incident = inc.id.clone();
        tasks.spawn(async move {
            let probe = match (rendered, source) {
                (Err(e), _) => Probe::NoData(format!("query template: {e}")),
                (Ok(_), None) => Probe::NoData("prometheus_url is not configured".into()),
                (Ok(q), Some(src)) => match src.query(&q).await {
                    Err(e) => Probe::NoData(e.to_string()),
                    Ok(samples) => {
                        let values = samples.iter().map(|s| s.value).filter(|v| !v.is_nan());
                        // The worst series decides: the highest value for a `below` bound.
                        let worst = if above {
                            values.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
                        } else {
                            values.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                        };
                        match worst {
                            Some(v) => Probe::Value(v),
                            None if samples.is_empty() => {
                                Probe::NoData("query returned no series".into())
                            }
                            None => Probe::NoData("query returned NaN".into()),
                        }
                    }
                },
            };
            let _ = tx
                .send(Msg::Probe {
                    incident,
                    step,
                    probe,
                })
                .await;
            wake.notify_one();
        });
    }

    /// What [`Self::run`] does first: steps left running by a previous process are recorded as
    /// interrupted. For harnesses that drive passes themselves (the model-based test).
    pub async fn recover_interrupted(&mut self) -> Result<(), StoreError> {
        self.recover().await
    }

    /// Records the results of the steps and probes that have already finished, without waiting
    /// for the others; returns how many. For harnesses that drive passes themselves and whose
    /// actions may hang (the model-based test), where [`Self::settle`] would wait for ever.
    pub async fn record_finished(&mut self) -> Result<usize, StoreError> {
        let mut n = 0;
        while let Ok(msg) = self.done_rx.try_recv() {
            self.handle(msg).await?;
            n += 1;
        }
        Ok(n)
    }

    /// One synchronous round for `remedyd test` and simulations: a pass, then wait for the
    /// actions and probes it started and record their results, then another pass.
    pub async fn settle(&mut self, tasks: &TaskTracker) -> Result<(), StoreError> {
        for _ in 0..4 {
            self.pass(tasks).await?;
            tasks.close();
            tasks.wait().await;
            tasks.reopen();
            let mut any = false;
            while let Ok(msg) = self.done_rx.try_recv() {
                self.handle(msg).await?;
                any = true;
            }
            if !any {
                break;
            }
        }
        Ok(())
    }

    /// One pass: handle stored signals, then drive due incidents. Public for tests.
    pub async fn pass(&mut self, tasks: &TaskTracker) -> Result<(), StoreError> {
        if self.recover_pending {
            self.recover().await?;
            self.recover_pending = false;
        }
        if let Err(e) = self.operator_requests().await {
            // A request that cannot be applied now must not stop remediation: it stays pending.
            self.metrics.store_error("resolve");
            tracing::warn!(error = %e, "Applying resolve requests failed; retrying on the next pass");
        }
        while self.signals().await? == SIGNAL_BATCH {}
        let deferred = self.deferred.is_some();
        let r = self.drive(tasks).await;
        if r.is_err() && deferred {
            // The deferred batch may not be written: its signals stay after the watermark and
            // are handled again; the cache, which showed them, is reloaded from the store.
            self.deferred = None;
            self.cache = None;
        }
        r
    }

    /// Applies people's requests to resolve incidents by hand (API, dashboard, `remedyd
    /// resolve`): each in one commit with the incident, its timeline, the resolve pages of the
    /// routes paged and the request marked done. An unknown or already resolved incident marks
    /// the request done with that result.
    async fn operator_requests(&mut self) -> Result<(), StoreError> {
        let pending = self.store.pending_resolves(RESOLVE_BATCH).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let rs = self.rules();
        for req in pending {
            let now = self.clock.now();
            let mut c = Commit::default();
            let result = match self.incident(&req.incident).await? {
                None => ResolveResult::UnknownIncident,
                Some(inc) if inc.is_resolved() => ResolveResult::AlreadyResolved,
                Some(mut inc) => {
                    // A policy removed by a reload must not keep its incidents open for ever:
                    // resolving by hand reads nothing from the policy.
                    let removed = Policy {
                        name: inc.policy.clone(),
                        description: String::new(),
                        mode: None,
                        levels: BTreeMap::new(),
                    };
                    let policy = rs.policies.get(&inc.policy).unwrap_or(&removed);
                    let event = Event::ResolvedByHand {
                        reason: req.reason.clone(),
                        author: req.author.clone(),
                    };
                    let fx = inc.apply(event, policy, now);
                    self.effects(&inc, fx, &rs, &mut c, now).await?;
                    let why = format!("resolved by hand by {}: {}", req.author, req.reason);
                    for (_, n) in &mut c.outbox {
                        if n.event == NotificationKind::Resolve {
                            n.reason = why.clone();
                        }
                    }
                    tracing::warn!(incident = %inc.id, author = %req.author, reason = %req.reason, "Incident resolved by hand");
                    c.incidents.push(inc);
                    ResolveResult::Resolved
                }
            };
            if result != ResolveResult::Resolved {
                tracing::info!(incident = %req.incident, author = %req.author, result = result.as_str(), "Resolve request not applied");
            }
            c.resolves_done.push((req.id, now, result));
            self.commit(c).await?;
        }
        Ok(())
    }

    /// Steps left running by a dead process: not run again (at most once); verification follows.
    async fn recover(&mut self) -> Result<(), StoreError> {
        let rs = self.rules();
        let now = self.clock.now();
        for mut inc in self.store.active_incidents().await? {
            let Phase::Running { ladder, step } = inc.phase else {
                continue;
            };
            // A step this process is running is not interrupted.
            if self.running.contains(&inc.id) {
                continue;
            }
            let Some(policy) = rs.policies.get(&inc.policy) else {
                continue;
            };
            tracing::warn!(incident = %inc.id, ladder, step = %policy.levels.get(&ladder).and_then(|l| l.steps.get(step)).map_or("?", |s| s.name.as_str()), "Step was running when the process stopped; not repeating it");
            let action = policy
                .levels
                .get(&ladder)
                .and_then(|l| l.steps.get(step))
                .map(|s| s.action.clone())
                .unwrap_or_default();
            self.metrics.action(&action, "interrupted");
            let fx = inc.apply(
                Event::StepFinished {
                    ladder,
                    step,
                    result: StepResult::Unknown,
                    detail: serde_json::Value::Null,
                },
                policy,
                now,
            );
            let mut c = Commit::default();
            c.finished.push((
                inc.id.clone(),
                ladder,
                step,
                now,
                serde_json::json!({"result": "interrupted"}),
            ));
            self.effects(&inc, fx, &rs, &mut c, now).await?;
            c.incidents.push(inc);
            self.commit(c).await?;
        }
        Ok(())
    }

    /// Handles up to one batch of stored signals in one commit; returns how many.
    async fn signals(&mut self) -> Result<usize, StoreError> {
        let pending = self.store.pending_signals(SIGNAL_BATCH).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let rs = self.rules();
        let now = self.clock.now();
        let cache = self.cache().await?;
        let index: BTreeMap<(String, String), String> = cache
            .values()
            .map(|i| ((i.rule.clone(), i.target.key()), i.id.clone()))
            .collect();
        // Incidents this batch works on, cloned from the cache on first touch; re-sent alerts
        // change nothing, and only incidents that differ from the cache are written.
        let mut work: BTreeMap<(String, String), Incident> = BTreeMap::new();
        let mut finished: Vec<Incident> = Vec::new();
        // Incidents this batch resolved: a later firing alert of the same key opens a new one
        // instead of reviving the cache's copy.
        let mut closed: BTreeSet<(String, String)> = BTreeSet::new();
        let mut c = Commit::default();
        let mut effects: Vec<(Incident, Vec<Effect>)> = Vec::new();
        for stored in &pending {
            let s = &stored.signal;
            c.processed = Some(stored.id);
            let mut matched = false;
            for rule in &rs.rules {
                let m = match rule.evaluate(s) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(miss) => {
                        self.metrics.signal(s.source.as_str(), "unmapped", 1);
                        tracing::warn!(rule = %miss.rule, fingerprint = %s.fingerprint, reason = %miss.reason, "Signal matched a rule but cannot be mapped");
                        continue;
                    }
                };
                matched = true;
                let Some(policy) = rs.policies.get(&m.policy) else {
                    continue;
                };
                let key = (m.rule.clone(), m.target.key());
                if !work.contains_key(&key)
                    && !closed.contains(&key)
                    && let Some(inc) = index.get(&key).and_then(|id| self.cache.as_ref()?.get(id))
                {
                    work.insert(key.clone(), inc.clone());
                }
                let event = match s.status {
                    SignalStatus::Firing => Event::Fired {
                        fingerprint: s.fingerprint.clone(),
                        starts_at: s.starts_at,
                        level: m.level,
                        for_: m.for_,
                    },
                    SignalStatus::Resolved => Event::Resolved {
                        fingerprint: s.fingerprint.clone(),
                    },
                };
                match (work.get_mut(&key), s.status) {
                    (Some(inc), _) => {
                        let fx = inc.apply(event, policy, now);
                        if !fx.is_empty() {
                            effects.push((inc.clone(), fx));
                        }
                        if inc.is_resolved() {
                            finished.extend(work.remove(&key));
                            closed.insert(key);
                        }
                    }
                    (None, SignalStatus::Firing) => {
                        let id = self.next_incident_id(now.year()).await?;
                        let (inc, fx) = Incident::open(
                            id,
                            &m.rule,
                            policy,
                            m.target.clone(),
                            s.labels.clone(),
                            s.fingerprint.clone(),
                            s.starts_at,
                            m.level,
                            m.for_,
                            now,
                        );
                        tracing::info!(incident = %inc.id, rule = %m.rule, target = %m.target.key(), level = m.level, "Incident opened");
                        effects.push((inc.clone(), fx));
                        work.insert(key, inc);
                    }
                    // A resolved alert without an open incident never acts.
                    (None, SignalStatus::Resolved) => {}
                }
            }
            if s.status == SignalStatus::Resolved {
                // A resolve reaches every incident its alert joined, even when a reload removed
                // or renamed the rule that mapped it: no incident stays open for want of a rule.
                let holders: Vec<(String, String)> = work
                    .values()
                    .chain(self.cache.iter().flat_map(|m| m.values()))
                    .filter(|i| i.active.contains_key(&s.fingerprint))
                    .map(|i| (i.rule.clone(), i.target.key()))
                    .filter(|k| !closed.contains(k))
                    .collect();
                for key in holders {
                    if !work.contains_key(&key)
                        && let Some(inc) =
                            index.get(&key).and_then(|id| self.cache.as_ref()?.get(id))
                    {
                        work.insert(key.clone(), inc.clone());
                    }
                    let Some(inc) = work.get_mut(&key) else {
                        continue;
                    };
                    let Some(policy) = rs.policies.get(&inc.policy) else {
                        continue;
                    };
                    let fx = inc.apply(
                        Event::Resolved {
                            fingerprint: s.fingerprint.clone(),
                        },
                        policy,
                        now,
                    );
                    if !fx.is_empty() {
                        matched = true;
                        effects.push((inc.clone(), fx));
                    }
                    if inc.is_resolved() {
                        finished.extend(work.remove(&key));
                        closed.insert(key);
                    }
                }
            }
            self.metrics.signal(
                s.source.as_str(),
                if matched { "matched" } else { "unmatched" },
                1,
            );
        }
        for (inc, fx) in effects {
            self.effects(&inc, fx, &rs, &mut c, now).await?;
        }
        // Resolved first: the store allows one open incident per (rule, target), and a key this
        // batch closed may have opened again.
        for inc in finished.into_iter().chain(work.into_values()) {
            if self.cache.as_ref().and_then(|m| m.get(&inc.id)) != Some(&inc) {
                c.incidents.push(inc);
            }
        }
        if pending.len() < SIGNAL_BATCH {
            // The last batch of the pass: drive() writes it with the first step it makes due.
            self.defer(c);
        } else {
            self.commit(c).await?;
        }
        Ok(pending.len())
    }

    /// Holds a commit for drive() (see `deferred`), showing it in the cache meanwhile.
    fn defer(&mut self, c: Commit) {
        if c.is_empty() {
            return;
        }
        if let Some(cache) = self.cache.as_mut() {
            for i in &c.incidents {
                if i.is_resolved() {
                    cache.remove(&i.id);
                } else {
                    cache.insert(i.id.clone(), i.clone());
                }
            }
        }
        match self.deferred.as_mut() {
            Some(d) => d.absorb(c),
            None => self.deferred = Some(c),
        }
    }

    /// The active incidents, loaded from the store once and kept current by [`Self::commit`].
    async fn cache(&mut self) -> Result<&BTreeMap<String, Incident>, StoreError> {
        if self.cache.is_none() {
            let all = self.store.active_incidents().await?;
            self.cache = Some(all.into_iter().map(|i| (i.id.clone(), i)).collect());
        }
        Ok(self.cache.as_ref().expect("just loaded"))
    }

    /// An incident, from the cache when active.
    async fn incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError> {
        if let Some(i) = self.cache().await?.get(id) {
            return Ok(Some(i.clone()));
        }
        self.store.get_incident(id).await
    }

    /// Commits and keeps the cache in step; on any error the cache is reloaded next time.
    async fn commit(&mut self, c: Commit) -> Result<(), StoreError> {
        if c.is_empty() {
            return Ok(());
        }
        let incidents = c.incidents.clone();
        match self.store.commit(c).await {
            Ok(()) => {
                if let Some(cache) = self.cache.as_mut() {
                    for i in incidents {
                        if i.is_resolved() {
                            cache.remove(&i.id);
                        } else {
                            cache.insert(i.id.clone(), i);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Memory may show what did not land (the cache, an open storm): reload both.
                self.cache = None;
                self.storm = None;
                Err(e)
            }
        }
    }

    /// Marks incidents stale that heard nothing for `stale_after`, and un-marks those heard of
    /// again. Polled rules' incidents are left out: the poller only speaks on a level change.
    async fn check_stale(&mut self, rs: &Ruleset, now: Timestamp) -> Result<(), StoreError> {
        if now < self.next_stale_check {
            return Ok(());
        }
        self.next_stale_check = now.plus(STALE_CHECK);
        let after = self.config.stale_after;
        let candidates: Vec<Incident> = self
            .cache()
            .await?
            .values()
            .filter(|i| {
                !rs.rules
                    .iter()
                    .any(|r| r.name == i.rule && r.polled.is_some())
            })
            .filter(|i| i.stale_since.is_some() || now.since(i.updated_at) >= after)
            .cloned()
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let fps: Vec<String> = candidates
            .iter()
            .flat_map(|i| i.active.keys().cloned())
            .collect();
        let heard: HashMap<String, Timestamp> =
            self.store.last_heard(fps).await?.into_iter().collect();
        for mut inc in candidates {
            let Some(policy) = rs.policies.get(&inc.policy) else {
                continue;
            };
            let last = inc
                .active
                .keys()
                .filter_map(|fp| heard.get(fp).copied())
                .max()
                .unwrap_or(inc.opened_at);
            let event = match inc.stale_since {
                Some(since) if last > since => Event::Heard { at: last },
                None if now.since(last) >= after => Event::Stale { heard: last, after },
                _ => continue,
            };
            let fx = inc.apply(event, policy, now);
            if fx.is_empty() {
                continue;
            }
            if inc.stale_since.is_some() {
                tracing::warn!(incident = %inc.id, heard = %last, "Incident is stale: none of its alerts heard of for stale_after");
            }
            let mut c = self.deferred.take().unwrap_or_default();
            self.effects(&inc, fx, rs, &mut c, now).await?;
            c.incidents.push(inc);
            self.commit(c).await?;
        }
        Ok(())
    }

    /// Ticks deadlines, resumes lifted pauses, and starts due steps.
    async fn drive(&mut self, tasks: &TaskTracker) -> Result<(), StoreError> {
        let rs = self.rules();
        let now = self.clock.now();
        self.check_stale(&rs, now).await?;
        let pauses = self.store.pauses().await?;
        let all = self.cache().await?;
        // Stale incidents (heard nothing for stale_after) hold nothing: no storm, no infrastructure.
        let targets: BTreeSet<String> = all
            .values()
            .filter(|i| i.stale_since.is_none())
            .map(|i| i.target.key())
            .collect();
        let infrastructure = all
            .values()
            .find(|i| i.level >= 3 && i.stale_since.is_none())
            .map(|i| i.id.clone());
        let mut acting: BTreeMap<String, String> = all
            .values()
            .filter(|i| i.is_acting())
            .map(|i| (i.target.key(), i.id.clone()))
            .collect();
        // Only incidents with something due are cloned and driven.
        let mut due: Vec<Incident> = all
            .values()
            .filter(|i| {
                matches!(
                    i.phase,
                    Phase::Ready | Phase::Held { .. } | Phase::Suspended { .. }
                ) || i.deadline().is_some_and(|d| d <= now)
            })
            .cloned()
            .collect();
        // Oldest deadline first: after a pause in passes (a restart, a store outage) things are
        // decided in the order they fell due, e.g. a trial's failed verification reopens its
        // breaker before another incident's later step asks it.
        due.sort_by_key(|i| (i.deadline().unwrap_or(now), i.opened_at));
        let storm = rs
            .limits
            .storm_guard
            .as_ref()
            .map(|s| (targets.len() as u32, s.max_targets));
        let storm_lines: Vec<String> = match storm {
            Some((n, max)) if n > max => all
                .values()
                .filter(|i| i.stale_since.is_none())
                .map(|i| format!("{} {} level {} ({})", i.id, i.target.key(), i.level, i.rule))
                .collect(),
            _ => Vec::new(),
        };
        let storm_open = self.storm_open().await?;
        if let (Some((n, max)), Some(began)) = (storm, storm_open)
            && n <= max
        {
            self.storm_over(&rs, began, n, max, now).await?;
        }
        for mut inc in due {
            let Some(policy) = rs.policies.get(&inc.policy) else {
                continue;
            };
            let mut before = inc.clone();
            let mut c = self.deferred.take().unwrap_or_default();
            let mut fx = inc.apply(Event::Tick, policy, now);
            if matches!(inc.phase, Phase::Suspended { .. })
                && covering_pause(&pauses, &inc).is_none()
            {
                fx.extend(inc.apply(Event::Resumed, policy, now));
            }
            if fx.iter().any(Effect::is_breaker) {
                // A failed verification counts against breakers that the next step's gates
                // read: it lands first, or that step would pass a breaker it just opened.
                self.effects(&inc, std::mem::take(&mut fx), &rs, &mut c, now)
                    .await?;
                c.incidents.push(inc.clone());
                self.commit(std::mem::take(&mut c)).await?;
                before = inc.clone();
            }
            if let Some((step, spec)) = inc.probe_due(policy, now)
                && !self.probing.contains(&inc.id)
            {
                self.launch_probe(tasks, &rs, &inc, step, spec);
            }
            let mut start = None;
            if let Some((ladder, idx, step)) = inc.due_step(policy)
                && !self.running.contains(&inc.id)
            {
                let mut input = self
                    .gate_input(
                        &rs,
                        &inc,
                        step,
                        &pauses,
                        storm,
                        infrastructure.as_ref().filter(|id| **id != inc.id),
                        acting.get(&inc.target.key()).filter(|o| **o != inc.id),
                        now,
                    )
                    .await?;
                for b in &mut input.breakers {
                    // A trial whose step is still running or being verified has not expired,
                    // however long its verification: only a trial that can no longer report
                    // (its incident moved on) expires after a cool-down.
                    if b.record.trial_since.is_some()
                        && let Some(holder) = &b.record.trial_by
                        && acting.values().any(|id| id == holder)
                    {
                        b.record.trial_since = Some(now);
                    }
                }
                match gate::evaluate(&input, now) {
                    Decision::Refuse(r) => {
                        if !(r.kind == RefusalKind::Busy && matches!(inc.phase, Phase::Held { .. }))
                        {
                            Metrics::reason(&self.metrics.refusals, r.kind.as_str());
                            tracing::info!(incident = %inc.id, gate = r.kind.as_str(), reason = %r.reason, "Step refused");
                        }
                        if r.kind == RefusalKind::Storm
                            && self.storm_open().await?.is_none()
                            && infrastructure.is_none()
                        {
                            self.storm_page(&rs, &r.reason, &storm_lines, now, &mut c);
                        }
                        fx.extend(inc.apply(Event::Refused(r), policy, now));
                    }
                    Decision::Allow { trials } => {
                        let dry_run = policy.mode.unwrap_or(self.config.mode) == Mode::DryRun;
                        let req = self.request(&rs, &inc, step);
                        let plan = self
                            .executors
                            .get(&step.action)
                            .map(|e| e.plan(&req))
                            .unwrap_or_else(|| Err(format!("unknown action {}", step.action)));
                        let detail = serde_json::json!({
                            "action": step.action, "dry_run": dry_run,
                            "request": plan.as_ref().ok(), "plan_error": plan.as_ref().err(),
                            "gates": {"budgets": input.budgets, "breakers": input.breakers.iter().map(|b| (b.key.clone(), breaker::state(&b.record, now, &b.config).as_str())).collect::<BTreeMap<_, _>>()},
                        });
                        fx.extend(inc.apply(
                            Event::StepStarted {
                                ladder,
                                step: idx,
                                detail,
                                dry_run,
                            },
                            policy,
                            now,
                        ));
                        c.claims.push((inc.id.clone(), ladder, idx, now));
                        for u in &input.budgets {
                            c.budget_uses.push((u.key.clone(), now, dry_run));
                        }
                        // A dry run passes a half-open breaker without taking its one trial:
                        // its result counts for nothing, so the trial would only be held up.
                        for t in trials.into_iter().filter(|_| !dry_run) {
                            if let Some(b) = input.breakers.iter().find(|b| b.key == t) {
                                c.breakers
                                    .push((t, breaker::on_trial(&b.record, now, &inc.id)));
                            }
                        }
                        acting.insert(inc.target.key(), inc.id.clone());
                        start = Some((ladder, idx, step.clone(), req, dry_run, plan));
                    }
                }
            }
            if inc == before && fx.is_empty() {
                if !c.is_empty() {
                    self.deferred = Some(c);
                }
                continue;
            }
            self.effects(&inc, fx, &rs, &mut c, now).await?;
            c.incidents.push(inc.clone());
            match self.commit(c).await {
                Ok(()) => {}
                Err(StoreError::AlreadyClaimed(what)) => {
                    // Another writer ran this step: never twice. Record and verify instead.
                    tracing::warn!(incident = %inc.id, claim = %what, "Step already claimed in the ledger; not running it again");
                    let mut inc = before;
                    let (ladder, step) = start.as_ref().map(|s| (s.0, s.1)).unwrap_or_default();
                    let fx = inc.apply(
                        Event::StepFinished {
                            ladder,
                            step,
                            result: StepResult::Unknown,
                            detail: serde_json::json!({"ledger": "already claimed"}),
                        },
                        policy,
                        now,
                    );
                    let mut c = Commit::default();
                    self.effects(&inc, fx, &rs, &mut c, now).await?;
                    c.incidents.push(inc);
                    self.commit(c).await?;
                    continue;
                }
                Err(e) => {
                    // The commit may have landed even though it reported an error (the
                    // connection dropped during COMMIT): the next pass re-reads the store and
                    // treats a claimed step with no action in flight as interrupted.
                    if start.is_some() {
                        self.recover_pending = true;
                    }
                    return Err(e);
                }
            }
            if let Some((ladder, idx, step, req, dry_run, plan)) = start {
                self.launch(tasks, inc.id.clone(), ladder, idx, step, req, dry_run, plan);
            }
        }
        if let Some(c) = self.deferred.take() {
            self.commit(c).await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        tasks: &TaskTracker,
        incident: String,
        ladder: u8,
        step: usize,
        spec: Step,
        req: ActionRequest,
        dry_run: bool,
        plan: Result<serde_json::Value, String>,
    ) {
        self.running.insert(incident.clone());
        let exec = self.executors.get(&spec.action).cloned();
        let tx = self.done_tx.clone();
        let wake = self.wake.clone();
        let span = tracing::info_span!("step", incident = %incident, step = %spec.name, action = %spec.action);
        tasks.spawn(tracing::Instrument::instrument(
            async move {
                let outcome = match (dry_run, plan, exec) {
                    (_, Err(e), _) => Outcome::failed(
                        false,
                        format!("cannot build the request: {e}"),
                        serde_json::Value::Null,
                    ),
                    (true, Ok(_), Some(exec)) => unwound(exec.dry_run(&req)).await,
                    (true, Ok(p), None) => Outcome::ok(
                        "dry-run: recorded the request, sent nothing",
                        serde_json::json!({"would_send": p}),
                    ),
                    (false, Ok(_), Some(exec)) => unwound(exec.execute(&req)).await,
                    (false, Ok(_), None) => Outcome::failed(
                        false,
                        format!("unknown action {}", spec.action),
                        serde_json::Value::Null,
                    ),
                };
                let _ = tx
                    .send(Msg::Step(Done {
                        incident,
                        ladder,
                        step,
                        action: spec.action.clone(),
                        outcome,
                    }))
                    .await;
                wake.notify_one();
            },
            span,
        ));
    }

    async fn finish(&mut self, done: Done) -> Result<(), StoreError> {
        self.running.remove(&done.incident);
        let rs = self.rules();
        let now = self.clock.now();
        let Some(mut inc) = self.incident(&done.incident).await? else {
            return Ok(());
        };
        let dry = done.outcome.detail.get("would_send").is_some();
        self.metrics.action(
            &done.action,
            if dry {
                "dry_run"
            } else if done.outcome.ok {
                "ok"
            } else if done.outcome.no_change {
                "no_change"
            } else {
                "failed"
            },
        );
        tracing::info!(incident = %inc.id, action = %done.action, ok = done.outcome.ok, summary = %done.outcome.summary, "Step finished");
        let result = if done.outcome.ok {
            StepResult::Ok
        } else if done.outcome.no_change {
            StepResult::NoChange {
                reason: done.outcome.summary.clone(),
            }
        } else {
            StepResult::Failed {
                error: done.outcome.summary.clone(),
                denied: done.outcome.trip_breaker,
            }
        };
        let mut detail = done.outcome.detail.clone();
        if let serde_json::Value::Object(m) = &mut detail {
            m.insert("summary".into(), done.outcome.summary.clone().into());
            m.insert("retryable".into(), done.outcome.retryable.into());
        }
        let mut c = Commit::default();
        c.finished.push((
            inc.id.clone(),
            done.ladder,
            done.step,
            now,
            serde_json::to_value(&done.outcome).unwrap_or_default(),
        ));
        if let Some(policy) = rs.policies.get(&inc.policy) {
            let fx = inc.apply(
                Event::StepFinished {
                    ladder: done.ladder,
                    step: done.step,
                    result,
                    detail,
                },
                policy,
                now,
            );
            self.effects(&inc, fx, &rs, &mut c, now).await?;
        }
        c.incidents.push(inc);
        self.commit(c).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn gate_input(
        &self,
        rs: &Ruleset,
        inc: &Incident,
        step: &Step,
        pauses: &[Pause],
        storm: Option<(u32, u32)>,
        infrastructure: Option<&String>,
        busy_with: Option<&String>,
        now: Timestamp,
    ) -> Result<GateInput, StoreError> {
        let dry_run = rs
            .policies
            .get(&inc.policy)
            .and_then(|p| p.mode)
            .unwrap_or(self.config.mode)
            == Mode::DryRun;
        let target = inc.target.key();
        let ns = (!inc.target.namespace.is_empty()).then(|| inc.target.namespace.clone());
        // Evidence only reads: it spends no budget and neither asks nor trips a breaker (it
        // would otherwise take a half-open breaker's one trial and never report on it).
        let evidence = step.verify == Verify::None;
        let mut windows = Vec::new();
        let mut breaker_keys = Vec::new();
        if !evidence {
            windows.push((
                format!("action:{}:{target}", step.action),
                step.budget.unwrap_or(rs.limits.action_target),
            ));
            windows.push((format!("rule:{}", inc.rule), rs.limits.rule));
            if let Some(ns) = &ns {
                windows.push((format!("namespace:{ns}"), rs.limits.namespace));
            }
            windows.push(("global".to_string(), rs.limits.global));
            breaker_keys.push((
                format!("action:{}:{target}", step.action),
                rs.limits.breaker_target,
            ));
            breaker_keys.push(("global".to_string(), rs.limits.breaker_global));
        }
        let (counts, records) = self
            .store
            .gate_reads(
                windows
                    .iter()
                    .map(|(k, w)| (k.clone(), now.minus(w.per)))
                    .collect(),
                dry_run,
                breaker_keys.iter().map(|(k, _)| k.clone()).collect(),
            )
            .await?;
        let budgets = windows
            .into_iter()
            .zip(counts)
            .map(|((key, window), used)| BudgetUse { key, window, used })
            .collect();
        let breakers = breaker_keys
            .into_iter()
            .zip(records)
            .map(|((key, config), record)| BreakerInput {
                key,
                record,
                config,
            })
            .collect();
        Ok(GateInput {
            paused: covering_pause(pauses, inc),
            storm,
            infrastructure: infrastructure.cloned(),
            namespace: ns.map(|n| {
                let ok = rs.limits.namespaces.contains(&n);
                (n, ok)
            }),
            busy_with: busy_with.cloned(),
            breakers,
            budgets,
        })
    }

    fn request(&self, rs: &Ruleset, inc: &Incident, step: &Step) -> ActionRequest {
        ActionRequest::for_step(
            &inc.id,
            inc.level,
            &inc.rule,
            &inc.target,
            &inc.labels,
            &rs.vars,
            step,
        )
    }

    /// When the open storm began, from memory or the store.
    async fn storm_open(&mut self) -> Result<Option<Timestamp>, StoreError> {
        if let Some(open) = self.storm {
            return Ok(open);
        }
        let at = self
            .store
            .counter(crate::adapters::store::STORM_COUNTER.to_string())
            .await?;
        let open = (at != 0).then_some(Timestamp(at));
        self.storm = Some(open);
        Ok(open)
    }

    /// The storm page: one trigger per storm to the storm guard's route, listing every target in
    /// incident (`lines`, from the cache, so incidents opened by this very pass are in it). The
    /// storm's start is committed with it, so a restart neither pages it again nor forgets it.
    fn storm_page(
        &mut self,
        rs: &Ruleset,
        reason: &str,
        lines: &[String],
        now: Timestamp,
        c: &mut Commit,
    ) {
        let Some(sg) = &rs.limits.storm_guard else {
            return;
        };
        let mut n = storm_notification(now, NotificationKind::Trigger, reason);
        n.description = format!(
            "{} targets in incident at once; workload automation stopped",
            lines.len()
        );
        n.updates = lines.to_vec();
        c.outbox.push((sg.route.clone(), n));
        c.counters
            .push((crate::adapters::store::STORM_COUNTER.to_string(), now.0));
        Metrics::reason(&self.metrics.escalations, "storm");
        tracing::warn!(route = %sg.route, reason = %reason, "Storm guard tripped; paging once");
        // Shown as open at once; a failed commit reloads it from the store.
        self.storm = Some(Some(now));
    }

    /// The storm is over (targets in incident back within the limit): its page is resolved.
    async fn storm_over(
        &mut self,
        rs: &Ruleset,
        began: Timestamp,
        n: u32,
        max: u32,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut c = Commit::default();
        if let Some(sg) = &rs.limits.storm_guard {
            let reason = format!("storm over: {n} target(s) in incident (limit {max})");
            let mut note = storm_notification(began, NotificationKind::Resolve, &reason);
            note.resolved_at = Some(now);
            note.description = reason.clone();
            c.outbox.push((sg.route.clone(), note));
            tracing::info!(route = %sg.route, "Storm over; resolving its page");
        }
        c.counters
            .push((crate::adapters::store::STORM_COUNTER.to_string(), 0));
        self.storm = None;
        self.commit(c).await?;
        self.storm = Some(None);
        Ok(())
    }

    /// Turns a transition's effects into writes.
    async fn effects(
        &self,
        inc: &Incident,
        fx: Vec<Effect>,
        rs: &Ruleset,
        c: &mut Commit,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut pages = Vec::new();
        for e in fx {
            let e_kind = match e {
                Effect::BreakerSuccess { .. } => EffectKind::Success,
                _ => EffectKind::Other,
            };
            match e {
                Effect::Record(entry) => c.timeline.push((inc.id.clone(), entry)),
                Effect::Page { route, reason } => {
                    pages.push((Some(route), reason, NotificationKind::Trigger))
                }
                Effect::PageResolved => {
                    for r in &inc.paged {
                        pages.push((
                            Some(r.clone()),
                            "recovered".into(),
                            NotificationKind::Resolve,
                        ));
                    }
                }
                Effect::BreakerFailure { action, denied } => {
                    for (key, cfg, at_once) in [
                        (
                            format!("action:{action}:{}", inc.target.key()),
                            rs.limits.breaker_target,
                            denied,
                        ),
                        ("global".into(), rs.limits.breaker_global, false),
                    ] {
                        let rec = self.store.breaker(&key).await?;
                        let since = breaker::window_start(&rec, now, &cfg);
                        let mut failures = self.store.count_failures(&key, since).await? + 1;
                        if at_once {
                            // Permission denied will not fix itself: the threshold is met now.
                            failures = failures.max(cfg.failures);
                        }
                        let next = breaker::on_failure(&rec, failures, now, &cfg);
                        if next.opened_at != rec.opened_at {
                            tracing::warn!(breaker = %key, failures, denied = at_once, "Breaker opened");
                            let message = if at_once {
                                format!("breaker {key} opened: the action was denied permission")
                            } else {
                                format!(
                                    "breaker {key} opened after {failures} failure(s) within {}",
                                    crate::domain::time::fmt_duration(cfg.within)
                                )
                            };
                            c.timeline.push((inc.id.clone(), Entry { at: now, kind: "breaker_opened".into(), message, data: serde_json::json!({"key": key, "failures": failures, "denied": at_once}) }));
                        }
                        c.breaker_failures.push((key.clone(), now));
                        c.breakers.push((key, next));
                    }
                }
                Effect::BreakerSuccess { action } | Effect::BreakerRelease { action } => {
                    let success = matches!(e_kind, EffectKind::Success);
                    for key in [
                        format!("action:{action}:{}", inc.target.key()),
                        "global".into(),
                    ] {
                        let rec = self.store.breaker(&key).await?;
                        let next = if success {
                            breaker::on_success(&rec, now, &inc.id)
                        } else {
                            breaker::on_release(&rec, &inc.id)
                        };
                        if next != rec {
                            if success {
                                tracing::info!(breaker = %key, incident = %inc.id, "Breaker closed: its trial verified");
                            }
                            c.breakers.push((key, next));
                        }
                    }
                }
            }
        }
        if pages.is_empty() {
            return Ok(());
        }
        let mut timeline = self.store.timeline(&inc.id).await?;
        timeline.extend(
            c.timeline
                .iter()
                .filter(|(id, _)| *id == inc.id)
                .map(|(_, e)| e.clone()),
        );
        for (route, reason, kind) in pages {
            let Some(route) = route else { continue };
            if kind == NotificationKind::Trigger {
                let why = match &inc.phase {
                    Phase::Suspended { .. } => "paused",
                    _ if reason.starts_with("budget") => "budget",
                    _ if reason.starts_with("breaker") => "breaker",
                    _ if reason.starts_with("ladder exhausted") => "exhausted",
                    _ => "policy",
                };
                Metrics::reason(&self.metrics.escalations, why);
                tracing::warn!(incident = %inc.id, route = %route, reason = %reason, "Escalating");
            }
            c.outbox
                .push((route, escalate::notification(inc, &timeline, kind, &reason)));
        }
        Ok(())
    }
}

/// An action's future whose panic becomes a failed outcome: the engine records it and the ladder
/// goes on, instead of the step staying "running" in memory until a restart. A panic is a bug of
/// remedyd's, so it is logged as an error and counted as a failure.
async fn unwound(f: crate::domain::BoxFuture<'_, Outcome>) -> Outcome {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %msg, "Action panicked; recording it as a failed step");
            Outcome::failed(
                false,
                format!("the action panicked (a remedyd bug): {msg}"),
                serde_json::Value::Null,
            )
        }
    }
}

/// Whether a breaker effect is a success or a release (they share the per-key loop).
enum EffectKind {
    Success,
    Other,
}

/// A storm page (trigger or resolve): one identity per storm, from when it began.
fn storm_notification(
    began: Timestamp,
    kind: NotificationKind,
    reason: &str,
) -> escalate::Notification {
    escalate::Notification {
        event: kind,
        dedup_key: format!("remedyd/storm/{}", began.0),
        incident: format!("STORM-{}", began.0),
        priority: "P1".into(),
        severity: "critical".into(),
        status: match kind {
            NotificationKind::Resolve => "resolved".into(),
            _ => "escalated".into(),
        },
        service: String::new(),
        namespace: String::new(),
        rule: "storm_guard".into(),
        level: 3,
        started_at: began,
        resolved_at: None,
        description: String::new(),
        impact: "several services down: infrastructure-level incident".into(),
        reason: reason.to_string(),
        actions_taken: Vec::new(),
        updates: Vec::new(),
        values: Vec::new(),
        resolution: None,
        history: Vec::new(),
        root_cause: String::new(),
        digest: None,
    }
}

fn covering_pause(pauses: &[Pause], inc: &Incident) -> Option<PauseInfo> {
    let scopes = [
        "global".to_string(),
        format!("rule:{}", inc.rule),
        format!("namespace:{}", inc.target.namespace),
    ];
    pauses
        .iter()
        .find(|p| scopes.contains(&p.scope))
        .map(|p| PauseInfo {
            scope: p.scope.clone(),
            reason: p.reason.clone(),
            author: p.author.clone(),
        })
}
