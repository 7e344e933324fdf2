//! Webhook → first Kubernetes request benchmark (DESIGN.md §7: "webhook to first Kubernetes
//! request under 5 ms at p99"). remedyd runs in this process (`remedyd::app::run`, enforce mode,
//! the SQLite store with `synchronous=FULL`, the real Kubernetes executors) against the fake API
//! server of tests/support/fake_kube, which timestamps each request as its handler starts.
//!
//! Each iteration posts one firing alert for a service of its own (a new fingerprint and a
//! Deployment of its own, so every alert opens a new incident whose one step is
//! `kube_rollout_restart`) and measures, from just before the POST:
//! - `first request`: the fake receiving the first request whose path names that Deployment (the
//!   executor's GET);
//! - `200`: the webhook's answer (the signal stored durably);
//! - `200 → first request`: the engine's share.
//!
//! The engine's share is split with timestamps from its own log events (a tracing layer that
//! only notes times): the 200 → "Incident opened" (signals read), → the `step` span opening (the
//! signal batch committed, gates read, the step claimed in the ledger), → the request at the fake
//! (executor). Two durable SQLite transactions (each one `fsync` of the WAL) lie on this path:
//! the webhook's ingest, and the signal batch that opens the incident with its first step's
//! ledger claim; for
//! scale, the latency of one `fsync` on the store's filesystem is measured too.
//!
//! Between iterations the rollout is completed (`step`), the alert resolved, the incident
//! closed, the Deployment and its ReplicaSets and pods removed from the fake, the next
//! Deployment created, and the daemon left idle for 20 ms: this measures light load, one alert
//! at a time.
//!
//! Run: `cargo bench --bench kube_first_request` (BENCH_ITERATIONS, default 300, after 20
//! warm-up iterations; BENCH_STORE_DIR puts the SQLite store under that directory, default the
//! system temp directory).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use remedyd::adapters::action::{BoxFuture, Executors};
use remedyd::adapters::clock::SystemClock;
use remedyd::adapters::escalate::{Notification, Pager, PagerError};
use remedyd::app::Parts;
use remedyd::domain::policy::Mode;
use remedyd::domain::policy::Route;
use remedyd::domain::time::Clock;
use remedyd::load::config::Config;
use support::fake_kube::{FakeKube, fixtures};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const NS: &str = "python-services";
const WARMUP: usize = 20;
/// Bounds every wait: a missing behaviour fails the benchmark instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}", namespace: python-services}
    policy: restart
"#;

// Budgets and breakers far above the run's size: every alert is allowed its restart.
const ROUTES: &str = r#"
routes:
  - name: oncall
    type: webhook
    url: http://127.0.0.1:9/never-used
limits:
  namespaces: [python-services]
  budgets:
    global: {max: 100000, per: 1h}
    namespace: {max: 100000, per: 1h}
    rule: {max: 100000, per: 1h}
    action_target: {max: 100000, per: 1h}
  breakers:
    target: {failures: 100000, within: 1h, cooldown: 1m}
    global: {failures: 100000, within: 1h, cooldown: 1m}
"#;

const POLICIES: &str = r#"
policies:
  - name: restart
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: restart
            action: kube_rollout_restart
            with: {wait: 1m}
            verify: {resolved_within: 5m}
            on_failure: escalate
"#;

/// Pages go nowhere: the benchmark measures the path to the cluster.
struct DropPager;

impl Pager for DropPager {
    fn send<'a>(
        &'a self,
        _: &'a Route,
        _: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async { Ok(true) })
    }
}

/// Times of the engine's "Incident opened" event and of its `step` span opening.
#[derive(Default)]
struct Marks {
    opened: Option<Instant>,
    launched: Option<Instant>,
}

/// A tracing layer that only notes when those two happen (no formatting, no output).
#[derive(Clone, Default)]
struct MarkLayer(Arc<Mutex<Marks>>);

struct Message(bool);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}") == "Incident opened" {
            self.0 = true;
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for MarkLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let at = Instant::now();
        let mut m = Message(false);
        event.record(&mut m);
        if m.0 {
            self.0.lock().unwrap().opened.get_or_insert(at);
        }
    }
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "step" {
            self.0
                .lock()
                .unwrap()
                .launched
                .get_or_insert(Instant::now());
        }
    }
}

fn service(i: usize) -> String {
    // Fixed width: no service's name is part of another's.
    format!("svc-{i:05}")
}

fn payload(status: &str, svc: &str, fingerprint: &str, starts_at: &str) -> String {
    support::daemon::alert_payload(
        status,
        serde_json::json!({"alertname": "HighErrorRate", "service": svc, "severity": "critical", "namespace": NS}),
        fingerprint,
        starts_at,
    )
}

/// Polls `f` every millisecond until it returns something (bounded by WAIT).
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn count(http: &reqwest::Client, url: &str, status: &str) -> usize {
    let v: serde_json::Value = http
        .get(format!("{url}/api/v1/incidents?status={status}&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["incidents"].as_array().map_or(0, Vec::len)
}

/// Milliseconds from `a` to `b` (negative when `b` comes first).
fn ms(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64() * 1000.0
    } else {
        -((a - b).as_secs_f64() * 1000.0)
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn row(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
        pct(&v, 0.5),
        pct(&v, 0.9),
        pct(&v, 0.99),
        v[v.len() - 1]
    );
}

/// Latency of a 4 KiB append + fsync in `dir` (what a WAL commit does), in ms (p50, p99 of 200).
fn fsync_ms(dir: &std::path::Path) -> (f64, f64) {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = [0u8; 4096];
    let mut v = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        f.write_all(&block).unwrap();
        f.sync_all().unwrap();
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    v.sort_by(f64::total_cmp);
    (pct(&v, 0.5), pct(&v, 0.99))
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; test runners (`cargo test --all-targets`, nextest) that
    // build and start every target must not run the benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let marks = MarkLayer::default();
    tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(
            marks.clone(),
            tracing_subscriber::filter::Targets::new()
                .with_target("remedyd::engine", tracing::Level::INFO),
        ))
        .init();

    let dir = match std::env::var_os("BENCH_STORE_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let total = WARMUP + iterations;
    let fake = FakeKube::start().await;
    let kubeconfig = fake.kubeconfig(dir.path());

    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("rules/rules.yaml"), RULES).unwrap();
    std::fs::write(dir.path().join("policies/routes.yaml"), ROUTES).unwrap();
    std::fs::write(dir.path().join("policies/policies.yaml"), POLICIES).unwrap();
    let cfg = Config {
        rules: dir.path().join("rules"),
        policies: dir.path().join("policies"),
        store: format!("sqlite://{}", dir.path().join("r.db").display()),
        mode: Mode::Enforce,
        kubeconfig: Some(kubeconfig.clone()),
        ..Config::default()
    };
    let parts = Parts {
        executors: Executors::builtin_for(Some(kubeconfig)),
        pager: Arc::new(DropPager),
        clock: Arc::new(SystemClock),
        source: None,
        faults: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let daemon = tokio::spawn(remedyd::app::run(cfg, parts, listener, stop.clone()));
    let http = reqwest::Client::new();
    until("remedyd to be ready", async || {
        let r = http.get(format!("{url}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let (fsync_p50, fsync_p99) = fsync_ms(dir.path());

    let (mut first, mut ok, mut engine) = (Vec::new(), Vec::new(), Vec::new());
    let (mut read, mut decide, mut exec) = (Vec::new(), Vec::new(), Vec::new());
    let mut not_get = 0;
    let webhook = format!("{url}/webhook/alertmanager");
    for i in 0..total {
        let svc = service(i);
        let fingerprint = format!("{:016x}", i + 1);
        let starts_at = SystemClock.now().to_rfc3339();
        let body = payload("firing", &svc, &fingerprint, &starts_at);
        // This alert's Deployment, rolled out; the fake holds only it (its controller steps
        // every object, so the state stays small).
        fake.put(fixtures::deployment(NS, &svc, 2, "registry.local/app:1.0"));
        fake.step();
        fake.step();
        // The daemon idle before the alert: one alert at a time, light load.
        tokio::time::sleep(Duration::from_millis(20)).await;
        fake.clear_requests();
        *marks.0.lock().unwrap() = Marks::default();

        let t0 = Instant::now();
        let r = http
            .post(&webhook)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let t200 = Instant::now();
        assert_eq!(r.status().as_u16(), 200, "webhook answered {}", r.status());
        let (t1, method) = until("the first Kubernetes request", async || {
            fake.requests()
                .into_iter()
                .find(|r| r.path.contains(&svc))
                .map(|r| (r.at, r.method))
        })
        .await;
        let (opened, launched) = {
            let m = marks.0.lock().unwrap();
            (m.opened, m.launched)
        };

        // Finish the rollout, resolve the alert and wait for the incident to close, so that
        // the next alert meets an idle daemon.
        until("the restart's PATCH", async || {
            fake.requests()
                .iter()
                .any(|r| r.method == "PATCH" && r.path.contains(&svc))
                .then_some(())
        })
        .await;
        until("the step to finish", async || {
            fake.step();
            (count(&http, &url, "verifying").await == 1).then_some(())
        })
        .await;
        let r = http
            .post(&webhook)
            .header("content-type", "application/json")
            .body(payload("resolved", &svc, &fingerprint, &starts_at))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        until("the incident to resolve", async || {
            (count(&http, &url, "verifying").await == 0).then_some(())
        })
        .await;
        for (api, kind) in [
            ("apps/v1", "Deployment"),
            ("apps/v1", "ReplicaSet"),
            ("v1", "Pod"),
        ] {
            for o in fake.list(api, kind, NS) {
                fake.remove(api, kind, NS, o["metadata"]["name"].as_str().unwrap());
            }
        }

        if i < WARMUP {
            continue;
        }
        if method != "GET" {
            not_get += 1;
        }
        first.push(ms(t0, t1));
        ok.push(ms(t0, t200));
        engine.push(ms(t200, t1));
        if let (Some(o), Some(l)) = (opened, launched) {
            read.push(ms(t200, o));
            decide.push(ms(o, l));
            exec.push(ms(l, t1));
        }
    }
    let resolved = count(&http, &url, "resolved").await;
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, daemon).await;

    println!(
        "{iterations} alerts one at a time (after {WARMUP} warm-up), store in {}; fsync there: p50 {fsync_p50:.2} ms, p99 {fsync_p99:.2} ms",
        dir.path().parent().unwrap_or(dir.path()).display()
    );
    println!("| ms | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    row("webhook sent → first Kubernetes request", first);
    row("webhook sent → 200", ok);
    row("200 → first Kubernetes request", engine);
    if read.len() == iterations {
        row("  200 → incident opened (engine woken, signals read)", read);
        row(
            "  incident opened → step launched (signals committed, gates read, step claimed)",
            decide,
        );
        row("  step launched → request at the API server", exec);
    }
    println!(
        "first requests that were not a GET: {not_get}; incidents resolved: {resolved} of {total}"
    );
}
