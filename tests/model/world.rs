//! The harness around the real engine: SQLite store (behind the spy), manual clock, recording
//! executors and pager, a metric source the history controls, the real poller and outbox, and
//! the real ruleset loader. [`World::apply`] applies one event and [`World::settle`] runs the
//! daemon until nothing is left to do at that instant; the model then checks what happened. On
//! PostgreSQL ([`World::new_pg`]) two replicas share the database and a restart moves leadership.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use remedyd::adapters::action::Executors;
use remedyd::adapters::intake::poller::Poller;
use remedyd::adapters::store::postgres::{Leadership, PgStore, Term};
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::adapters::store::{Pause, Store};
use remedyd::adapters::telemetry::Metrics;
use remedyd::domain::policy::Mode;
use remedyd::domain::signal::Labels;
use remedyd::domain::time::{Clock, ManualClock, Timestamp};
use remedyd::engine::{Engine, EngineConfig};
use remedyd::load::ruleset::Ruleset;
use remedyd::load::ruleset::SharedRuleset;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::fakes::{Lab, RecPager, Source, executors, series};
use super::history::{AlertSpec, Event, GlobalMode, History};
use super::spy::{Log, SpyStore};

/// The instant every history starts at (2026-03-01T00:00:00Z): fixed so that ids and times are
/// the same on every run.
pub const T0: Timestamp = Timestamp(1_772_323_200_000);

/// Rounds of pass → wait → record per event before the daemon must be at rest (a round that
/// writes nothing and calls nothing). A ladder of three steps needs four at one instant.
const ROUNDS: usize = 12;

/// Yields allowed for the tasks of one round to finish. They are immediate unless hung; this
/// bounds a task that never finishes (a hang the model reports).
const YIELDS: usize = 10_000;

// === impl World ===

/// Alertmanager's fingerprint stand-in: FNV-1a of the sorted labels.
pub fn fingerprint(labels: &Labels) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([1]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The labels of an alert.
pub fn labels(a: &AlertSpec) -> Labels {
    let mut l = series(a.svc);
    l.insert("alertname".into(), a.name.as_str().into());
    l.insert("severity".into(), a.sev.as_str().into());
    l
}

fn at(secs: i64) -> Timestamp {
    Timestamp(T0.0 + secs * 1000)
}

/// An Alertmanager v4 body for these alerts.
fn payload(alerts: &[AlertSpec], now: Timestamp) -> String {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let l = labels(a);
            serde_json::json!({
                "status": if a.firing { "firing" } else { "resolved" },
                "labels": l,
                "annotations": {"summary": "model"},
                "startsAt": at(a.starts).to_rfc3339(),
                "endsAt": if a.firing { "0001-01-01T00:00:00Z".to_string() } else { now.to_rfc3339() },
                "generatorURL": "",
                "fingerprint": fingerprint(&l),
            })
        })
        .collect();
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    serde_json::json!({
        "version": "4", "status": status, "receiver": "remedyd", "groupKey": "{}:{}",
        "truncatedAlerts": 0, "alerts": alerts,
    })
    .to_string()
}

/// Rulesets already loaded, by the text of their files: histories share configurations, and
/// the loader (YAML, PromQL checks) costs more than a whole history's events in a debug build.
static LOADED: Mutex<BTreeMap<String, Arc<Ruleset>>> = Mutex::new(BTreeMap::new());

/// Loads one variant's files with the real loader, from a temporary directory (once per
/// distinct text in this process).
pub fn load(files: &[(String, String)], executors: &Executors) -> Result<Arc<Ruleset>, String> {
    let key: String = files.iter().map(|(p, t)| format!("{p}\n{t}\n")).collect();
    if let Some(rs) = LOADED.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(rs.clone());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    for sub in ["rules", "policies"] {
        std::fs::create_dir_all(dir.path().join(sub))
            .map_err(|e| format!("creating {sub}/: {e}"))?;
    }
    for (path, text) in files {
        std::fs::write(dir.path().join(path), text).map_err(|e| format!("writing {path}: {e}"))?;
    }
    let rs = remedyd::load::ruleset::load(
        &dir.path().join("rules"),
        &dir.path().join("policies"),
        executors,
    )
    .map_err(|d| format!("the generated rules and policies do not load:\n{d}"))?;
    let rs = Arc::new(rs);
    LOADED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, rs.clone());
    Ok(rs)
}

/// The harness for one history.
pub struct World {
    /// The fact log.
    pub log: Log,
    /// The clock.
    pub clock: Arc<ManualClock>,
    /// The store, behind the spy.
    pub store: Arc<dyn Store>,
    /// The store itself, for reads that are not the engine's (I8 snapshots).
    pub raw: Arc<dyn Store>,
    /// Variants loaded so far (a reload loads its variant, as the daemon's reload does).
    rulesets: Vec<Option<Arc<Ruleset>>>,
    /// The variants' files.
    files: Vec<Vec<(String, String)>>,
    /// The variant in effect.
    pub variant: usize,
    shared: SharedRuleset,
    executors: Executors,
    /// Executors' shared state.
    pub lab: Arc<Lab>,
    /// The pager.
    pub pager: Arc<RecPager>,
    source: Arc<Source>,
    metrics: Arc<Metrics>,
    engine: Engine,
    poller: Poller,
    tasks: TaskTracker,
    wake: Arc<Notify>,
    /// Global mode.
    pub mode: Mode,
    /// `stale_after` of the engine.
    pub stale_after: Duration,
    /// On PostgreSQL: the two replicas and the leader's term.
    replicas: Option<Box<Replicas>>,
    /// Commits that an engine which had lost leadership still got through (must stay 0).
    pub fenced_commits: usize,
    /// The engine of the replica that lost leadership, not told yet.
    deposed: Option<Engine>,
}

/// Two replicas on one PostgreSQL database; one leads.
struct Replicas {
    leadership: [Leadership; 2],
    term: Option<Term>,
    leader: usize,
    cancel: CancellationToken,
}

/// How long a replica may take to become the leader once the other let go: the lock is free
/// at once, and a standby polls it every second.
const TERM_WAIT: Duration = Duration::from_secs(20);

impl World {
    /// A fresh world for `h` on an in-memory SQLite store.
    pub fn new(h: &History) -> Result<Self, String> {
        let sqlite = SqliteStore::open(std::path::Path::new(":memory:"))
            .map_err(|e| format!("opening the SQLite store: {e}"))?;
        Self::on_store(h, Arc::new(sqlite))
    }

    /// A fresh world for `h` on `inner`.
    /// A fresh world for `h` on two replicas of the PostgreSQL database at `url` (fresh): the
    /// engine runs in the leader; a restart moves leadership to the other replica.
    pub async fn new_pg(h: &History, url: &str) -> Result<Self, String> {
        let connect = || async {
            PgStore::connect(url)
                .await
                .map_err(|e| format!("connecting to PostgreSQL: {e}"))
        };
        let (a, b) = (connect().await?, connect().await?);
        let replicas = [
            Leadership::new(a.clone(), Arc::new(Notify::new())),
            Leadership::new(b, Arc::new(Notify::new())),
        ];
        let cancel = CancellationToken::new();
        let term = tokio::time::timeout(TERM_WAIT, replicas[0].acquire(&cancel))
            .await
            .ok()
            .flatten()
            .ok_or("replica A did not become the leader of a fresh database")?;
        let mut world = Self::on_store(h, Arc::new(term.store.clone()))?;
        world.raw = Arc::new(a);
        world.replicas = Some(Box::new(Replicas {
            leadership: replicas,
            term: Some(term),
            leader: 0,
            cancel,
        }));
        Ok(world)
    }

    /// A fresh world for `h` on `inner`.
    pub fn on_store(h: &History, inner: Arc<dyn Store>) -> Result<Self, String> {
        let log = Log::default();
        let clock = Arc::new(ManualClock::new(T0));
        let lab = Arc::new(Lab::new(clock.clone(), log.clone()));
        let executors = executors(&lab);
        let first = load(&h.variants[0], &executors)?;
        let mut rulesets = vec![None; h.variants.len()];
        rulesets[0] = Some(first.clone());
        let store: Arc<dyn Store> = Arc::new(SpyStore::new(inner.clone(), log.clone()));
        let shared: SharedRuleset = Arc::new(RwLock::new(first));
        let mode = match h.mode {
            GlobalMode::DryRun => Mode::DryRun,
            GlobalMode::Enforce => Mode::Enforce,
        };
        let metrics = Arc::new(Metrics::new());
        let source = Arc::new(Source::default());
        let wake = Arc::new(Notify::new());
        let stale_after = h
            .stale_after
            .map_or(remedyd::engine::DEFAULT_STALE_AFTER, Duration::from_secs);
        let (engine, poller) = Self::build(
            &store,
            &shared,
            &executors,
            &clock,
            &metrics,
            &source,
            &wake,
            mode,
            stale_after,
        );
        Ok(Self {
            log,
            clock,
            store,
            raw: inner,
            rulesets,
            files: h.variants.clone(),
            variant: 0,
            shared,
            executors,
            lab,
            pager: Arc::new(RecPager::default()),
            source,
            metrics,
            engine,
            poller,
            tasks: TaskTracker::new(),
            wake,
            mode,
            stale_after,
            replicas: None,
            fenced_commits: 0,
            deposed: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        store: &Arc<dyn Store>,
        shared: &SharedRuleset,
        executors: &Executors,
        clock: &Arc<ManualClock>,
        metrics: &Arc<Metrics>,
        source: &Arc<Source>,
        wake: &Arc<Notify>,
        mode: Mode,
        stale_after: Duration,
    ) -> (Engine, Poller) {
        let clock: Arc<dyn Clock> = clock.clone();
        let engine = Engine::new(
            store.clone(),
            shared.clone(),
            executors.clone(),
            clock.clone(),
            metrics.clone(),
            EngineConfig {
                mode,
                stale_after,
                ..Default::default()
            },
            wake.clone(),
        )
        .with_source(source.clone());
        let poller = Poller::new(
            store.clone(),
            shared.clone(),
            source.clone(),
            clock,
            metrics.clone(),
            wake.clone(),
        );
        (engine, poller)
    }

    /// The ruleset in effect.
    pub fn ruleset(&self) -> Arc<Ruleset> {
        self.shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies one event (without running the daemon).
    pub async fn apply(&mut self, e: &Event) -> Result<(), String> {
        let now = self.clock.now();
        match e {
            Event::Wait(s) => self.clock.advance(Duration::from_secs(*s)),
            Event::Alerts(alerts) => {
                let body = payload(alerts, now);
                let (receipt, signals) =
                    remedyd::adapters::intake::alertmanager::parse(body.as_bytes(), now)
                        .map_err(|e| format!("the generated payload does not parse: {e}"))?;
                self.store
                    .ingest(receipt, signals)
                    .await
                    .map_err(|e| format!("ingest: {e}"))?;
            }
            Event::Poll(svc, v) => self.source.set("svc_error_ratio", *svc, *v),
            Event::Health(svc, v) => self.source.set("svc_health", *svc, *v),
            Event::Next(action, o) => self.lab.script(action, *o),
            Event::Release(o) => self.lab.release_oldest(*o),
            Event::Pause(scope) => self
                .store
                .set_pause(Pause {
                    scope: scope.clone(),
                    reason: "model".into(),
                    author: "model".into(),
                    since: now,
                })
                .await
                .map_err(|e| format!("pause: {e}"))?,
            Event::Resume(scope) => {
                self.store
                    .clear_pause(scope)
                    .await
                    .map_err(|e| format!("resume: {e}"))?;
            }
            Event::Route(route, up) => self.pager.set_up(route, *up),
            Event::Reload(v) => {
                let v = (*v).min(self.files.len() - 1);
                let rs = match &self.rulesets[v] {
                    Some(rs) => rs.clone(),
                    None => {
                        let rs = load(&self.files[v], &self.executors)?;
                        self.rulesets[v] = Some(rs.clone());
                        rs
                    }
                };
                self.variant = v;
                *self.shared.write().unwrap_or_else(|e| e.into_inner()) = rs;
            }
            Event::Restart => self.restart().await?,
            Event::ResolveByHand(n) => {
                let id = format!("INC-{}-{n:04}", now.year());
                self.store
                    .request_resolve(&id, "model", "model", now)
                    .await
                    .map_err(|e| format!("resolve request: {e}"))?;
            }
        }
        Ok(())
    }

    /// Drops the engine and the poller (all their memory) and builds new ones on the same store;
    /// the new engine recovers as `run` does.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.lab.next_generation();
        if let Some(r) = self.replicas.as_mut() {
            // Leadership moves: the leader lets go, the other replica takes over with a new
            // term. The old engine is not told: it runs once more at the next event (with new
            // signals to handle) and must write nothing.
            if let Some(term) = r.term.take() {
                term.release().await;
            }
            let next = 1 - r.leader;
            let term = tokio::time::timeout(TERM_WAIT, r.leadership[next].acquire(&r.cancel))
                .await
                .ok()
                .flatten()
                .ok_or_else(|| format!("replica {next} did not take over leadership"))?;
            r.leader = next;
            self.store = Arc::new(SpyStore::new(
                Arc::new(term.store.clone()),
                self.log.clone(),
            ));
            r.term = Some(term);
        }
        let (engine, poller) = Self::build(
            &self.store,
            &self.shared,
            &self.executors,
            &self.clock,
            &self.metrics,
            &self.source,
            &self.wake,
            self.mode,
            self.stale_after,
        );
        let old = std::mem::replace(&mut self.engine, engine);
        if self.replicas.is_some() {
            self.deposed = Some(old);
        }
        self.poller = poller;
        self.engine
            .recover_interrupted()
            .await
            .map_err(|e| format!("engine recovery: {e}"))
    }

    /// Runs the daemon at this instant until it rests: a poll cycle, then rounds of an engine
    /// pass, its tasks, and their results.
    /// `poll: false` skips the poll cycle (after a restart, whose new poller would otherwise
    /// poll every rule at once: new data, not a change the restart made).
    pub async fn settle(&mut self, poll: bool) -> Result<(), String> {
        if poll {
            if let Some(mut deposed) = self.deposed.take() {
                let before = self.log.commits();
                let _ = deposed.pass(&self.tasks).await;
                self.fenced_commits += self.log.commits() - before;
            }
            self.poller
                .cycle()
                .await
                .map_err(|e| format!("poll cycle: {e}"))?;
        }
        for _ in 0..ROUNDS {
            let before = self.log.len();
            self.engine
                .pass(&self.tasks)
                .await
                .map_err(|e| format!("engine pass: {e}"))?;
            let mut yields = 0;
            while self.tasks.len() > self.lab.hung() {
                if yields == YIELDS {
                    return Err(format!(
                        "{} task(s) of the engine neither finished nor hung in an executor",
                        self.tasks.len() - self.lab.hung()
                    ));
                }
                tokio::task::yield_now().await;
                yields += 1;
            }
            self.engine
                .record_finished()
                .await
                .map_err(|e| format!("recording finished steps: {e}"))?;
            if self.log.len() == before {
                return Ok(());
            }
        }
        Err(format!(
            "the engine still writes after {ROUNDS} passes at one instant (it never rests)"
        ))
    }

    /// One outbox delivery pass, as the outbox task does.
    pub async fn deliver(&self) -> Result<(), String> {
        remedyd::adapters::escalate::outbox::deliver_due(
            &*self.store,
            &*self.pager,
            &self.shared,
            &*(self.clock.clone() as Arc<dyn Clock>),
            &self.metrics,
        )
        .await
        .map_err(|e| format!("outbox delivery: {e}"))
    }

    /// Gives up leadership (PostgreSQL) so that the next history's replicas can lead.
    pub async fn close(&mut self) {
        if let Some(r) = self.replicas.as_mut() {
            r.cancel.cancel();
            if let Some(term) = r.term.take() {
                term.release().await;
            }
        }
    }

    /// Releases every hung call (the history is over).
    pub fn release_all(&self) {
        self.lab.release_all();
    }
}
