//! No silent death: remedyd is crash-only. A long-running task (engine, poller, outbox, digest,
//! the leadership loop, the SIGHUP reloader) that panics or stops on its own makes `app::run`
//! fail and the process exit non-zero, with intake closed; a normal stop still ends cleanly.
//! `/readyz` fails while signals wait for an engine that completes no pass.
//!
//! Faults come through the test-only seam `app::Parts::faults` (`None` in production): a panic
//! injected into a named task, or a wrapper around the store the leader's duties use. The one
//! test of the real binary uses the debug-only `REMEDYD_TEST_PANIC`, to see the panic hook and
//! the exit status.
//!
//! What these tests cannot prove: that an orchestrator restarts the process (restart recovery
//! itself is covered by tests/it/process.rs and tests/it/ha.rs), or a task that hangs without
//! panicking (that shows as a stalled engine on `/readyz`, tested here, not as an exit).
//!
//! Every test runs under a timeout, and every wait polls against a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use remedyd::adapters::action::{BoxFuture, Executors};
use remedyd::adapters::clock::SystemClock;
use remedyd::adapters::prometheus::{MetricSource, QueryError, Sample};
use remedyd::adapters::store::{
    Commit, IngestResult, OutboxItem, Pause, Receipt, Store, StoreError, StoredSignal,
};
use remedyd::app::Parts;
use remedyd::app::supervise::{Fault, Faults, StoreLayer, Task};
use remedyd::domain::incident::{Entry, Incident, Status};
use remedyd::domain::policy::Mode;
use remedyd::domain::policy::breaker::BreakerRecord;
use remedyd::domain::signal::Signal;
use remedyd::domain::time::{Clock, ManualClock, Timestamp};
use remedyd::load::config::Config;
use tokio_util::sync::CancellationToken;

use crate::support::daemon::{CapturingPager, ROUTES, TestExecutor, now_rfc3339, payload};
use crate::support::services;
use crate::support::services::{Postgres, metric_value, wait_until, within};

/// A failure must stop the daemon within this. Generous for a loaded machine: the stop itself
/// takes well under a second (the shutdown deadline is 2 s here).
const STOP_WITHIN: Duration = Duration::from_secs(20);

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

const POLICY: &str = r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 1m}}
      - level: 2
        escalate_to: owner
        steps:
          - {name: rollback, action: test, verify: {resolved_within: 1m}}
"#;

// ---------------------------------------------------------------------------------------------
// remedyd in this process, with the seam

/// A Prometheus that answers every query with no series: lets the poller run without one.
struct EmptySource;

impl MetricSource for EmptySource {
    fn query<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

struct Daemon {
    url: String,
    exec: Arc<TestExecutor>,
    stop: CancellationToken,
    run: tokio::task::JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct Setup {
    store: Option<String>,
    clock: Arc<dyn Clock>,
    faults: Arc<Faults>,
    source: Option<Arc<dyn MetricSource>>,
}

impl Setup {
    fn new(faults: Faults) -> Self {
        Self {
            store: None,
            clock: Arc::new(SystemClock),
            faults: Arc::new(faults),
            source: None,
        }
    }
}

impl Daemon {
    async fn start(setup: Setup) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
        std::fs::create_dir_all(dir.path().join("policies")).expect("policies dir");
        std::fs::write(dir.path().join("rules/rules.yaml"), RULES).expect("rules");
        std::fs::write(dir.path().join("policies/routes.yaml"), ROUTES).expect("routes");
        std::fs::write(dir.path().join("policies/policies.yaml"), POLICY).expect("policies");
        let cfg = Config {
            rules: dir.path().join("rules"),
            policies: dir.path().join("policies"),
            store: setup
                .store
                .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("r.db").display())),
            mode: Mode::Enforce,
            shutdown_timeout: "2s".into(),
            ..Config::default()
        };
        let exec = Arc::new(TestExecutor::default());
        let mut executors = Executors::builtin_for(None);
        executors.register("test", exec.clone());
        let parts = Parts {
            executors,
            pager: Arc::new(CapturingPager::default()),
            clock: setup.clock,
            source: setup.source,
            faults: Some(setup.faults),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let stop = CancellationToken::new();
        let run = tokio::spawn(remedyd::app::run(cfg, parts, listener, stop.clone()));
        let d = Daemon {
            url,
            exec,
            stop,
            run,
            http: services::http(),
            _dir: dir,
        };
        wait_until(30, "the daemon to serve /healthz", || async {
            d.http
                .get(format!("{}/healthz", d.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        d
    }

    /// Posts a one-alert webhook for `service`; the status, or `None` when nothing answers.
    async fn post(&self, service: &str) -> Option<u16> {
        let body = payload("firing", service, "critical", service, &now_rfc3339());
        self.http
            .post(format!("{}/webhook/alertmanager", self.url))
            .body(body)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// `/readyz`: status and body.
    async fn readyz(&self) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}/readyz", self.url))
            .send()
            .await
            .expect("GET /readyz");
        let status = r.status().as_u16();
        (status, r.text().await.expect("readyz body"))
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        metric_value(&text, series)
    }

    /// Waits for `run` to end (bounded) and answers its result.
    async fn ended(self) -> (anyhow::Result<()>, Duration, String) {
        let started = Instant::now();
        let r = tokio::time::timeout(STOP_WITHIN, self.run)
            .await
            .unwrap_or_else(|_| panic!("app::run still running {STOP_WITHIN:?} later"))
            .expect("app::run itself does not panic");
        (r, started.elapsed(), self.url)
    }
}

/// Whether anything at `url` answers 200 to a webhook.
async fn webhook_answers_200(url: &str) -> bool {
    let body = payload("firing", "late", "critical", "late", &now_rfc3339());
    services::http()
        .post(format!("{url}/webhook/alertmanager"))
        .body(body)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// Starts a healthy daemon (a webhook answers 200 and its step runs), makes `task` fail with
/// `fault`, and checks that `app::run` returns that failure promptly and intake is closed.
async fn a_fault_stops_the_daemon(task: Task, fault: Fault, expect: &str) {
    within(90, async {
        let faults = Faults::new();
        let mut setup = Setup::new(faults);
        setup.source = Some(Arc::new(EmptySource));
        let faults = setup.faults.clone();
        let d = Daemon::start(setup).await;
        assert_eq!(d.post("checkout").await, Some(200));
        wait_until(30, "the engine to run the step", || async {
            d.exec.count() == 1
        })
        .await;
        assert_eq!(d.metric("remedyd_leader").await, 1.0);

        faults.inject(task, fault);
        let (r, took, url) = d.ended().await;
        let e = r.expect_err("app::run returns the failure");
        assert_eq!(e.to_string(), expect);
        assert!(took < STOP_WITHIN, "stopping took {took:?}");
        assert!(
            !webhook_answers_200(&url).await,
            "a webhook still answers 200 after the {task} task failed"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_panic_makes_run_fail_and_closes_intake() {
    a_fault_stops_the_daemon(
        Task::Engine,
        Fault::Panic,
        "the engine task panicked: fault injected into the engine task",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_panic_makes_run_fail_and_closes_intake() {
    a_fault_stops_the_daemon(
        Task::Outbox,
        Fault::Panic,
        "the outbox task panicked: fault injected into the outbox task",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_panic_makes_run_fail_and_closes_intake() {
    a_fault_stops_the_daemon(
        Task::Poller,
        Fault::Panic,
        "the poller task panicked: fault injected into the poller task",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_panic_makes_run_fail_and_closes_intake() {
    a_fault_stops_the_daemon(
        Task::Digest,
        Fault::Panic,
        "the digest task panicked: fault injected into the digest task",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_panic_makes_run_fail_and_closes_intake() {
    a_fault_stops_the_daemon(
        Task::Retention,
        Fault::Panic,
        "the retention task panicked: fault injected into the retention task",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_of_the_leadership_loop_makes_run_fail_and_closes_intake() {
    a_fault_stops_the_daemon(
        Task::Leadership,
        Fault::Panic,
        "the leadership task panicked: fault injected into the leadership task",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloader_panic_makes_run_fail_and_closes_intake() {
    a_fault_stops_the_daemon(
        Task::Reloader,
        Fault::Panic,
        "the reloader task panicked: fault injected into the reloader task",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_returns_on_its_own_makes_run_fail_too() {
    a_fault_stops_the_daemon(
        Task::Engine,
        Fault::Return,
        "the engine task stopped without being asked to",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_stop_still_ends_cleanly_with_every_task_running() {
    within(60, async {
        let mut setup = Setup::new(Faults::new());
        setup.source = Some(Arc::new(EmptySource));
        let d = Daemon::start(setup).await;
        assert_eq!(d.post("checkout").await, Some(200));
        wait_until(30, "the engine to run the step", || async {
            d.exec.count() == 1
        })
        .await;
        d.stop.cancel();
        let (r, _, url) = d.ended().await;
        r.expect("a requested stop is not a failure");
        assert!(!webhook_answers_200(&url).await);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Readiness and a stalled engine

/// The store the leader's duties see: while `stalled`, reading pending signals fails, so no
/// engine pass completes (the API, intake and the readiness check use the real store).
struct StalledReads {
    inner: Arc<dyn Store>,
    stalled: Arc<AtomicBool>,
}

fn stalled_reads(stalled: Arc<AtomicBool>) -> StoreLayer {
    Arc::new(move |inner| {
        Arc::new(StalledReads {
            inner,
            stalled: stalled.clone(),
        })
    })
}

impl Store for StalledReads {
    fn approval(
        &self,
        id: &str,
    ) -> BoxFuture<'_, Result<Option<remedyd::domain::approval::Approval>, StoreError>> {
        self.inner.approval(id)
    }
    fn decide_approval(
        &self,
        id: &str,
        d: remedyd::domain::approval::Decision,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<remedyd::adapters::store::Decided, StoreError>> {
        self.inner.decide_approval(id, d, now)
    }
    fn expire_approval(
        &self,
        id: &str,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<remedyd::domain::approval::Approval>, StoreError>> {
        self.inner.expire_approval(id, now)
    }
    fn keep_approval_message(
        &self,
        id: &str,
        route: &str,
        message: &str,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.keep_approval_message(id, route, message)
    }
    fn approval_message(
        &self,
        id: &str,
        route: &str,
    ) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        self.inner.approval_message(id, route)
    }
    fn pending_signals_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredSignal>, StoreError>> {
        if self.stalled.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(StoreError::Database("reads stalled by the test".into()))
            });
        }
        self.inner.pending_signals_after(after, limit)
    }
    fn ingest(
        &self,
        r: Receipt,
        s: Vec<Signal>,
    ) -> BoxFuture<'_, Result<IngestResult, StoreError>> {
        self.inner.ingest(r, s)
    }
    fn incident_counter(&self, year: i32) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.inner.incident_counter(year)
    }
    fn active_incidents(&self) -> BoxFuture<'_, Result<Vec<Incident>, StoreError>> {
        self.inner.active_incidents()
    }
    fn counter(&self, name: String) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.inner.counter(name)
    }
    fn prune_signals(
        &self,
        after: i64,
        before: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<remedyd::adapters::store::Pruned, StoreError>> {
        self.inner.prune_signals(after, before, limit)
    }
    fn last_heard(
        &self,
        alerts: Vec<(String, Timestamp)>,
    ) -> BoxFuture<'_, Result<Vec<(String, Timestamp)>, StoreError>> {
        self.inner.last_heard(alerts)
    }
    fn request_resolve(
        &self,
        incident: &str,
        reason: &str,
        author: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.inner.request_resolve(incident, reason, author, at)
    }
    fn pending_resolves(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<remedyd::adapters::store::ResolveRequest>, StoreError>> {
        self.inner.pending_resolves(limit)
    }
    fn resolve_request(
        &self,
        id: i64,
    ) -> BoxFuture<'_, Result<Option<remedyd::adapters::store::ResolveRequest>, StoreError>> {
        self.inner.resolve_request(id)
    }
    fn commit(&self, c: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.commit(c)
    }
    fn count_uses(
        &self,
        key: &str,
        since: Timestamp,
        dry_run: bool,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        self.inner.count_uses(key, since, dry_run)
    }
    fn breaker(&self, key: &str) -> BoxFuture<'_, Result<BreakerRecord, StoreError>> {
        self.inner.breaker(key)
    }
    fn gate_reads(
        &self,
        uses: Vec<(String, Timestamp)>,
        dry_run: bool,
        breakers: Vec<String>,
    ) -> BoxFuture<'_, Result<(Vec<u32>, Vec<BreakerRecord>), StoreError>> {
        self.inner.gate_reads(uses, dry_run, breakers)
    }
    fn breakers(&self) -> BoxFuture<'_, Result<Vec<(String, BreakerRecord)>, StoreError>> {
        self.inner.breakers()
    }
    fn count_failures(
        &self,
        key: &str,
        since: Timestamp,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        self.inner.count_failures(key, since)
    }
    fn pauses(&self) -> BoxFuture<'_, Result<Vec<Pause>, StoreError>> {
        self.inner.pauses()
    }
    fn set_pause(&self, p: Pause) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.set_pause(p)
    }
    fn clear_pause(&self, scope: &str) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.inner.clear_pause(scope)
    }
    fn add_maintenance(
        &self,
        w: remedyd::adapters::store::NewWindow,
    ) -> BoxFuture<'_, Result<remedyd::adapters::store::MaintenanceWindow, StoreError>> {
        self.inner.add_maintenance(w)
    }
    fn maintenance_windows(
        &self,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<remedyd::adapters::store::MaintenanceWindow>, StoreError>> {
        self.inner.maintenance_windows(now)
    }
    fn cancel_maintenance(
        &self,
        id: i64,
        now: Timestamp,
        by: &str,
    ) -> BoxFuture<'_, Result<remedyd::adapters::store::Cancelled, StoreError>> {
        self.inner.cancel_maintenance(id, now, by)
    }
    fn outbox_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxItem>, StoreError>> {
        self.inner.outbox_due(now, limit)
    }
    fn outbox_done(
        &self,
        id: i64,
        now: Timestamp,
        delivered: bool,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.outbox_done(id, now, delivered)
    }
    fn outbox_threaded(
        &self,
        id: i64,
        now: Timestamp,
        thread: &str,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.outbox_threaded(id, now, thread)
    }
    fn outbox_supersede(
        &self,
        id: i64,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<i64>, StoreError>> {
        self.inner.outbox_supersede(id, now)
    }
    fn outbox_retry(
        &self,
        id: i64,
        next_at: Timestamp,
        error: &str,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.outbox_retry(id, next_at, error)
    }
    fn outbox_depth(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.outbox_depth()
    }
    fn list_incidents(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Incident>, StoreError>> {
        self.inner.list_incidents(status, limit)
    }
    fn get_incident(&self, id: &str) -> BoxFuture<'_, Result<Option<Incident>, StoreError>> {
        self.inner.get_incident(id)
    }
    fn timeline(&self, id: &str) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>> {
        self.inner.timeline(id)
    }
    fn count_by_status(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>> {
        self.inner.count_by_status()
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.ping()
    }
}

/// The engine's last-pass gauge as a timestamp.
async fn last_pass(d: &Daemon) -> Timestamp {
    let secs = d.metric("remedyd_engine_last_pass_timestamp_seconds").await;
    Timestamp((secs * 1000.0).round() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_signals_wait_for_a_stalled_engine_and_recovers_after_a_pass() {
    within(90, async {
        let stalled = Arc::new(AtomicBool::new(true));
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let start = clock.now();
        let mut setup = Setup::new(Faults::new().with_duty_store(stalled_reads(stalled.clone())));
        setup.clock = clock.clone();
        let d = Daemon::start(setup).await;
        assert_eq!(d.readyz().await.0, 200);
        assert_eq!(last_pass(&d).await, Timestamp(0), "no pass has completed");

        // Pending, but the engine has not been stuck for engine_stall_after (60 s) yet.
        assert_eq!(d.post("checkout").await, Some(200));
        clock.advance(Duration::from_secs(59));
        assert_eq!(d.readyz().await.0, 200);

        clock.advance(Duration::from_secs(2));
        let (status, body) = d.readyz().await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("engine stalled: signals are waiting and no engine pass has completed for 1m 1s (engine_stall_after = 1m)"),
            "{body}"
        );

        // The store answers again: the next pass completes, handles the signal, and /readyz
        // is ready again; the gauge holds the engine clock's time of that pass.
        stalled.store(false, Ordering::SeqCst);
        wait_until(30, "/readyz to be ready after a pass", || async {
            d.readyz().await.0 == 200
        })
        .await;
        assert_eq!(last_pass(&d).await, start.plus(Duration::from_secs(61)));
        wait_until(30, "the engine to run the step", || async {
            d.exec.count() == 1
        })
        .await;

        // Stuck again with nothing pending: an idle engine is not reported stalled.
        stalled.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(120));
        assert_eq!(d.readyz().await.0, 200);

        d.stop.cancel();
        d.ended().await.0.expect("clean stop");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: the standby takes over from a leader whose engine died

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_panic_on_the_postgres_leader_hands_leadership_to_the_standby_which_stays_ready()
{
    let pg = Postgres::start().await;
    let url = pg.create_database("supervise").await;
    within(120, async {
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let stalled = Arc::new(AtomicBool::new(true));

        let mut a = Setup::new(Faults::new().with_duty_store(stalled_reads(stalled.clone())));
        a.store = Some(url.clone());
        a.clock = clock.clone();
        let a_faults = a.faults.clone();
        let a = Daemon::start(a).await;
        wait_until(30, "replica A to lead", || async {
            a.metric("remedyd_leader").await == 1.0
        })
        .await;
        let mut b = Setup::new(Faults::new());
        b.store = Some(url.clone());
        b.clock = clock.clone();
        let b = Daemon::start(b).await;
        assert_eq!(b.metric("remedyd_leader").await, 0.0);

        // A signal waits for A's engine, which cannot pass. The follower B has no engine
        // running: it stays ready (it takes webhooks); the leader A reports its stall.
        assert_eq!(b.post("checkout").await, Some(200));
        clock.advance(Duration::from_secs(61));
        assert_eq!(a.readyz().await.0, 503);
        assert_eq!(b.readyz().await, (200, "ready\n".to_string()));

        // A's engine dies: A stops and gives up the lock; B leads and handles the signal.
        a_faults.inject(Task::Engine, Fault::Panic);
        let (r, _, a_url) = a.ended().await;
        assert_eq!(
            r.expect_err("A fails").to_string(),
            "the engine task panicked: fault injected into the engine task"
        );
        assert!(!webhook_answers_200(&a_url).await);
        wait_until(30, "replica B to lead", || async {
            b.metric("remedyd_leader").await == 1.0
        })
        .await;
        wait_until(30, "B's engine to run the step", || async {
            b.exec.count() == 1
        })
        .await;
        assert_eq!(b.readyz().await.0, 200);
        b.stop.cancel();
        b.ended().await.0.expect("clean stop");
    })
    .await;
    drop(pg);
}

// ---------------------------------------------------------------------------------------------
// The real binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_a_task_panic_through_tracing_and_exits_1() {
    within(60, async {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
        std::fs::create_dir_all(dir.path().join("policies")).expect("policies dir");
        std::fs::write(dir.path().join("rules/rules.yaml"), RULES).expect("rules");
        std::fs::write(dir.path().join("policies/routes.yaml"), ROUTES).expect("routes");
        let dry_policy = POLICY.replace(
            "action: test",
            "action: http, with: {url: \"http://127.0.0.1:9/x\"}",
        );
        std::fs::write(dir.path().join("policies/policies.yaml"), dry_policy).expect("policies");
        let log_path = dir.path().join("remedyd.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_remedyd"));
        for (k, _) in std::env::vars() {
            if k.starts_with("REMEDYD_") {
                cmd.env_remove(k);
            }
        }
        let port = services::free_port();
        let mut child = cmd
            .current_dir(dir.path())
            .args(["--rules", "rules", "--policies", "policies", "serve"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--store", "sqlite://r.db"])
            .env("REMEDYD_LOG_FORMAT", "json")
            .env("REMEDYD_TEST_PANIC", "engine")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn remedyd");
        let deadline = Instant::now() + STOP_WITHIN;
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "remedyd still running {STOP_WITHIN:?} after its engine panicked:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let log = std::fs::read_to_string(&log_path).expect("read the log");
        assert_eq!(status.code(), Some(1), "{status}\n{log}");
        let events: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let panic = events
            .iter()
            .find(|e| e["fields"]["message"] == "Panic")
            .unwrap_or_else(|| panic!("no tracing event for the panic:\n{log}"));
        assert_eq!(panic["level"], "ERROR", "{log}");
        assert_eq!(
            panic["fields"]["panic"], "fault injected into the engine task",
            "{log}"
        );
        assert!(
            panic["fields"]["location"]
                .as_str()
                .is_some_and(|l| l.contains("supervise.rs")),
            "{log}"
        );
        assert!(
            events.iter().any(|e| e["level"] == "ERROR"
                && e["fields"]["task"] == "engine"
                && e["fields"]["error"]
                    == "the engine task panicked: fault injected into the engine task"),
            "no error naming the task:\n{log}"
        );
        assert!(
            !webhook_answers_200(&format!("http://127.0.0.1:{port}")).await,
            "{log}"
        );
    })
    .await;
}
