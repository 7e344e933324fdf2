//! Webhook ingest benchmark (issue 16, method of perf-anchors.md): the release binary pinned to
//! CPU 0, this load generator on CPU 1 (run it as `taskset -c 1 cargo bench --bench ingest`).
//!
//! 1. CPU per webhook against the ceiling: the same bodies, the same load generator, in the same
//!    invocation, first against the ceiling (this binary re-executed as a bare axum handler that
//!    parses the body with serde and answers 200, also pinned to CPU 0), then against remedyd
//!    (durable ingest, rules matched by the engine; its CPU counted until the engine has handled
//!    every accepted alert). The ratio is the figure, not the machine. Between the two runs, the
//!    **durable floor** (`FLOOR_ENV`): remedyd's own intake and encoder, and each alert stored
//!    under its unique key in SQLite before the 200, as cheaply as remedyd's store does it. Its ratio to
//!    the ceiling is what durability alone costs here; remedyd's to the floor is remedyd's own work
//!    (rules, incidents, metrics).
//! 2. Sustained: light load (about 100 webhooks/s) p50/p99, next to the disk's own floor (a
//!    4 KiB write and `fdatasync` every 10 ms, without SQLite) and the durable floor's under
//!    the same light load, then `BENCH_SUSTAINED_SECONDS` (60)
//!    at the maximum rate: throughput, p50/p99, resident memory sampled every 0.5 s, and every
//!    accepted alert stored and matched.
//!
//! Knobs: `BENCH_SECONDS` (20) per saturation run, `BENCH_SUSTAINED_SECONDS` (60; 0 skips part
//! 2), `BENCH_ALERTS` (1 or 50: only that body).
//!
//! Bodies follow perf-anchors.md: 11 labels, 3 annotations; "fresh" mode gives every request new
//! alerts (new startsAt), so deduplication never short-cuts the work.

#[path = "../tests/support/services.rs"]
mod services;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RULES: &str = r#"
rules:
  - name: restart-service
    match: ['remediation="restart-service"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}", namespace: "{{namespace}}"}
    policy: record
"#;

// A ladder with no automated step: the bench measures ingest and matching, not actions.
const POLICY: &str = r#"
routes: [{name: oncall, type: webhook, url_env: REMEDYD_BENCH_UNSET}]
limits: {namespaces: [python-services]}
policies:
  - name: record
    escalate_to: oncall
    levels: [{level: 1}, {level: 2}]
"#;

fn body(n: usize, seq: u64) -> String {
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let svc = format!("svc-{}", (seq as usize * n + i) % 200);
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "severity": "critical", "env": "prod", "team": "payments",
                           "service": svc, "cluster": "eu-1", "namespace": "python-services", "job": "python",
                           "instance": format!("10.0.0.{i}:8080"), "pod": format!("{svc}-7d9f-{i}"), "remediation": "restart-service"},
                "annotations": {"summary": "5xx ratio above 5%", "description": "The error rate is above the SLO for 5 minutes.", "runbook_url": "https://runbooks.example/high-error-rate"},
                "startsAt": format!("2026-11-26T09:{:02}:{:02}.{:03}Z", (seq / 60_000) % 60, (seq / 1000) % 60, seq % 1000),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph?g0.expr=sum+by+%28service%29+%28rate%28http_requests_total%7Bstatus%3D~%225..%22%7D%5B5m%5D%29%29&g0.tab=1",
                "fingerprint": format!("{:016x}", (seq as usize * n + i) % 200 * 7919 + 1),
            })
        })
        .collect();
    serde_json::json!({
        "receiver": "remedyd", "status": "firing", "alerts": alerts, "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "remediation": "restart-service"}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093", "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0
    })
    .to_string()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn ticks_per_sec() -> u64 {
    // USER_HZ is 100 on Linux x86_64.
    100
}

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What serves the load: remedyd itself, or the ceiling (this bench binary re-executed as a bare
/// axum handler that parses the same body with serde and answers 200).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Remedyd,
    Ceiling,
    Floor,
}

async fn start(kind: Kind) -> Server {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("rules/r.yaml"), RULES).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), POLICY).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let taskset = std::path::Path::new("/usr/bin/taskset").exists();
    let me = std::env::current_exe().unwrap();
    let bin = match kind {
        Kind::Remedyd => std::path::Path::new(env!("CARGO_BIN_EXE_remedyd")),
        Kind::Ceiling | Kind::Floor => me.as_path(),
    };
    let mut cmd = if taskset {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", "0"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    match kind {
        Kind::Remedyd => {
            cmd.args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--store",
                &format!("sqlite://{}", dir.path().join("b.db").display()),
            ])
            .args([
                "--rules",
                &dir.path().join("rules").display().to_string(),
                "--policies",
                &dir.path().join("policies").display().to_string(),
            ]);
        }
        Kind::Ceiling => {
            cmd.env(CEILING_ENV, format!("127.0.0.1:{port}"));
        }
        Kind::Floor => {
            cmd.env(FLOOR_ENV, format!("127.0.0.1:{port}"));
        }
    }
    #[allow(clippy::zombie_processes)] // Server::drop kills and waits.
    let child = cmd
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    for _ in 0..100 {
        if c.get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Server {
                child,
                url,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server under test did not become ready");
}

/// Set to a listen address, this binary is the ceiling: an axum handler that parses the body
/// into the same payload type remedyd's intake uses, with serde, and answers 200. Nothing else:
/// no store, no engine, no rule, no metric.
const CEILING_ENV: &str = "REMEDYD_BENCH_CEILING";

async fn ceiling(listen: String) {
    use axum::routing::post;
    async fn webhook(body: axum::body::Bytes) -> axum::http::StatusCode {
        match serde_json::from_slice::<remedyd::adapters::intake::alertmanager::Payload>(&body) {
            Ok(p) if !p.alerts.is_empty() => axum::http::StatusCode::OK,
            _ => axum::http::StatusCode::BAD_REQUEST,
        }
    }
    serve_bare(listen, post(webhook)).await;
}

/// Serves `webhook` at remedyd's webhook path, and a readiness probe: the ceiling's and the
/// floor's whole server.
async fn serve_bare(listen: String, webhook: axum::routing::MethodRouter) {
    let app = axum::Router::new()
        .route("/webhook/alertmanager", webhook)
        .route("/readyz", axum::routing::get(|| async { "ok" }));
    let l = tokio::net::TcpListener::bind(listen).await.unwrap();
    axum::serve(l, app).await.unwrap();
}

/// Set to a listen address, this binary is the **durable floor**: what any design that answers
/// only once each alert is stored must do, done as cheaply as remedyd does it and no more.
/// remedyd's own intake reads the body (`alertmanager::parse`: the serde parse the ceiling does,
/// the nesting check, an alert to a signal) and its own encoder writes each signal as one JSON
/// row (`Signal::write_json`), under a unique `(starts_at, fingerprint, status)` key, in SQLite
/// (WAL, `synchronous=FULL`, the same bundled build, so `fdatasync`) on a thread of its own that
/// commits every webhook queued when it wakes in one transaction with a cached statement; the
/// 200 waits for that commit. No receipt, no rule, no engine, no incident, no metric. remedyd's
/// CPU over this floor's is what its own work costs; the floor's over the ceiling's is what
/// durability costs on this machine.
const FLOOR_ENV: &str = "REMEDYD_BENCH_FLOOR";

/// One webhook's rows (start, fingerprint, status, body), and where to say whether they are
/// durable.
type FloorJob = (
    Vec<(i64, String, &'static str, Vec<u8>)>,
    tokio::sync::oneshot::Sender<bool>,
);

async fn floor(listen: String) {
    use axum::routing::post;
    let (tx, rx) = std::sync::mpsc::channel::<FloorJob>();
    let db = std::env::current_dir().unwrap().join("floor.db");
    std::thread::spawn(move || floor_writer(&db, &rx));
    let webhook = move |body: axum::body::Bytes| {
        let tx = tx.clone();
        async move {
            let now = remedyd::domain::time::Timestamp(0);
            let Ok((_, signals)) = remedyd::adapters::intake::alertmanager::parse(&body, now)
            else {
                return axum::http::StatusCode::BAD_REQUEST;
            };
            let mut rows = Vec::with_capacity(signals.len());
            for s in signals {
                let mut json = Vec::with_capacity(512);
                if s.write_json(&mut json).is_err() {
                    return axum::http::StatusCode::BAD_REQUEST;
                }
                rows.push((s.starts_at.0, s.fingerprint, s.status.as_str(), json));
            }
            let (done, stored) = tokio::sync::oneshot::channel();
            if tx.send((rows, done)).is_err() || stored.await != Ok(true) {
                return axum::http::StatusCode::SERVICE_UNAVAILABLE;
            }
            axum::http::StatusCode::OK
        }
    };
    serve_bare(listen, post(webhook)).await;
}

/// The floor's store thread: every webhook queued when it wakes goes into one transaction.
fn floor_writer(db: &std::path::Path, rx: &std::sync::mpsc::Receiver<FloorJob>) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE signals (id INTEGER PRIMARY KEY, starts_at INTEGER NOT NULL, \
         fingerprint TEXT NOT NULL, status TEXT NOT NULL, body TEXT NOT NULL, \
         UNIQUE (starts_at, fingerprint, status))",
    )
    .unwrap();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 64 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let stored = floor_commit(&mut conn, &jobs).is_ok();
        for (_, done) in jobs {
            let _ = done.send(stored);
        }
    }
}

/// Every row of `jobs` in one durable transaction.
fn floor_commit(conn: &mut rusqlite::Connection, jobs: &[FloorJob]) -> rusqlite::Result<()> {
    let t = conn.transaction()?;
    {
        let mut insert = t.prepare_cached(
            "INSERT INTO signals (starts_at, fingerprint, status, body) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?;
        for (starts_at, fingerprint, status, body) in jobs.iter().flat_map(|(rows, _)| rows) {
            let body =
                rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(body));
            insert.execute((starts_at, fingerprint, status, body))?;
        }
    }
    t.commit()
}

async fn metric(c: &reqwest::Client, url: &str, series: &str) -> f64 {
    let text = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Closed-loop load: `conns` connections posting for `secs`, each pausing `think` between requests.
async fn load(
    url: &str,
    alerts: usize,
    conns: usize,
    secs: u64,
    think: Duration,
    seq: Arc<AtomicU64>,
) -> (u64, u64, Vec<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let url = format!("{url}/webhook/alertmanager");
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let (mut ok, mut bad, mut lat) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let b = body(alerts, seq.fetch_add(1, Ordering::Relaxed));
                let t = Instant::now();
                match c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => bad += 1,
                }
                lat.push(t.elapsed());
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
            }
            (ok, bad, lat)
        }));
    }
    let (mut ok, mut bad, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        let (o, b, l) = t.await.unwrap();
        ok += o;
        bad += b;
        lat.extend(l);
    }
    lat.sort();
    (ok, bad, lat)
}

/// How long the light load lasts.
const LIGHT_SECS: u64 = 15;

/// About 100 webhooks/s: 2 connections, 20 ms between requests, for [`LIGHT_SECS`].
async fn light_load(url: &str, alerts: usize, seq: &Arc<AtomicU64>) -> (u64, u64, Vec<Duration>) {
    load(
        url,
        alerts,
        2,
        LIGHT_SECS,
        Duration::from_millis(20),
        seq.clone(),
    )
    .await
}

/// The disk's own floor under a durable answer: one 4 KiB overwrite and `fdatasync` every 10 ms
/// for `seconds`, in the directory the stores live in (what SQLite's WAL commit does at light
/// load, without SQLite). A webhook answered only once durable cannot beat its tail.
fn disk_floor(seconds: u64) -> Vec<Duration> {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("floor")).unwrap();
    f.set_len(4 << 20).unwrap();
    f.sync_all().unwrap();
    let page = [7u8; 4096];
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut i = 0u64;
    while Instant::now() < end {
        f.seek(SeekFrom::Start((i % 1024) * 4096)).unwrap();
        f.write_all(&page).unwrap();
        let t = Instant::now();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
        i += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    lat
}

/// The `p` quantile of `lat`, in ms (sorted here: the disk floor's samples came in time order,
/// and reported a p99 below the p50).
fn pct(lat: &[Duration], p: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    let mut sorted = lat.to_vec();
    sorted.sort_unstable();
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// One saturation run against `s`: warm-up, then `secs` of 32 closed-loop connections; the CPU
/// the server used until the engine had handled every accepted alert, per request.
struct Saturation {
    ok: u64,
    bad: u64,
    lat: Vec<Duration>,
    cpu_us: f64,
    rss_peak_kib: u64,
    rss_samples: Vec<u64>,
}

async fn saturate(
    s: &Server,
    kind: Kind,
    alerts: usize,
    secs: u64,
    seq: &Arc<AtomicU64>,
) -> Saturation {
    let pid = s.child.id();
    let c = reqwest::Client::new();
    load(&s.url, alerts, 32, 3, Duration::ZERO, seq.clone()).await;
    if kind == Kind::Remedyd {
        drained(&c, &s.url).await;
    }
    let cpu0 = services::cpu_ticks(pid);
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        tokio::spawn(async move {
            loop {
                let rss = rss_kib(pid);
                if let Ok(mut v) = samples.lock() {
                    v.push(rss);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let (ok, bad, lat) = load(&s.url, alerts, 32, secs, Duration::ZERO, seq.clone()).await;
    if kind == Kind::Remedyd {
        // The engine's work on what was accepted counts too.
        drained(&c, &s.url).await;
    }
    let cpu = services::cpu_ticks(pid) - cpu0;
    sampler.abort();
    let rss_samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    Saturation {
        ok,
        bad,
        lat,
        cpu_us: cpu as f64 * 1e6 / ticks_per_sec() as f64 / ok.max(1) as f64,
        rss_peak_kib: rss_samples.iter().copied().max().unwrap_or(0),
        rss_samples,
    }
}

/// Waits (at most 60 s) until the engine has handled every stored webhook signal.
async fn drained(c: &reqwest::Client, url: &str) {
    for _ in 0..600 {
        let (stored, matched, unmatched) = counts(c, url).await;
        if matched + unmatched >= stored {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("warning: the engine did not drain within 60 s");
}

/// (stored, matched, unmatched) webhook signals, from remedyd's own counters.
async fn counts(c: &reqwest::Client, url: &str) -> (f64, f64, f64) {
    let stored = metric(
        c,
        url,
        "remedyd_signals_total{source=\"webhook\",status=\"stored\"}",
    )
    .await;
    let matched = metric(
        c,
        url,
        "remedyd_signals_total{source=\"webhook\",status=\"matched\"}",
    )
    .await;
    let unmatched = metric(
        c,
        url,
        "remedyd_signals_total{source=\"webhook\",status=\"unmatched\"}",
    )
    .await;
    (stored, matched, unmatched)
}

#[tokio::main]
async fn main() {
    if let Ok(listen) = std::env::var(CEILING_ENV) {
        return ceiling(listen).await;
    }
    if let Ok(listen) = std::env::var(FLOOR_ENV) {
        return floor(listen).await;
    }
    // `cargo bench` passes `--bench`; test runners (`cargo test --all-targets`, nextest) that
    // build and start every target must not run a minute-long benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let sustained: u64 = std::env::var("BENCH_SUSTAINED_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let only: Option<usize> = std::env::var("BENCH_ALERTS")
        .ok()
        .and_then(|s| s.parse().ok());

    println!(
        "## CPU per webhook against the ceiling ({secs} s saturation each, same invocation)\n"
    );
    println!(
        "| alerts/webhook | ceiling CPU µs/req | durable floor CPU µs/req (× ceiling) | remedyd CPU µs/req | ratio | target | remedyd ÷ floor | remedyd sat req/s | remedyd sat p50 / p99 ms | non-2xx | alerts matched/stored |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (alerts, target) in [(1usize, 2.2), (50, 2.5)] {
        if only.is_some_and(|o| o != alerts) {
            continue;
        }
        let seq = Arc::new(AtomicU64::new(1));
        let ceil = {
            let s = start(Kind::Ceiling).await;
            saturate(&s, Kind::Ceiling, alerts, secs, &seq).await
        };
        let floor = {
            let s = start(Kind::Floor).await;
            saturate(&s, Kind::Floor, alerts, secs, &seq).await
        };
        let s = start(Kind::Remedyd).await;
        let r = saturate(&s, Kind::Remedyd, alerts, secs, &seq).await;
        let c = reqwest::Client::new();
        let (stored, matched, _) = counts(&c, &s.url).await;
        let ratio = r.cpu_us / ceil.cpu_us.max(f64::MIN_POSITIVE);
        println!(
            "| {alerts} | {:.1} | {:.1} ({:.2}×) | {:.1} | {ratio:.2}× | ≤ {target}× {} | {:.2}× | {:.0} | {:.2} / {:.2} | {} | {matched:.0}/{stored:.0} |",
            ceil.cpu_us,
            floor.cpu_us,
            floor.cpu_us / ceil.cpu_us.max(f64::MIN_POSITIVE),
            r.cpu_us,
            if ratio <= target {
                "met"
            } else {
                "**not met**"
            },
            r.cpu_us / floor.cpu_us.max(f64::MIN_POSITIVE),
            r.ok as f64 / secs as f64,
            pct(&r.lat, 0.5),
            pct(&r.lat, 0.99),
            r.bad + ceil.bad + floor.bad,
        );
    }

    if sustained == 0 {
        return;
    }
    println!("\n## Sustained and light load (remedyd, one core)\n");
    println!(
        "| alerts/webhook | phase | req/s | p50 ms | p99 ms | RSS idle → start / mid / end MiB | non-2xx | alerts matched/stored |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for alerts in [1usize, 50] {
        if only.is_some_and(|o| o != alerts) {
            continue;
        }
        let seq = Arc::new(AtomicU64::new(1_000_000));
        let s = start(Kind::Remedyd).await;
        let pid = s.child.id();
        let c = reqwest::Client::new();
        load(&s.url, alerts, 1, 1, Duration::ZERO, seq.clone()).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = rss_kib(pid);
        let (lok, lbad, light) = light_load(&s.url, alerts, &seq).await;
        drained(&c, &s.url).await;
        let (stored, matched, unmatched) = counts(&c, &s.url).await;
        let handled = matched + unmatched;
        println!(
            "| {alerts} | light (2 connections, 20 ms think) | {:.0} | {:.2} | {:.2} | {:.1} | {lbad} | {handled:.0}/{stored:.0} |",
            lok as f64 / LIGHT_SECS as f64,
            pct(&light, 0.5),
            pct(&light, 0.99),
            idle as f64 / 1024.0,
        );
        let floor = tokio::task::spawn_blocking(|| disk_floor(LIGHT_SECS))
            .await
            .unwrap();
        println!(
            "| {alerts} | the disk alone: 4 KiB write + fdatasync every 10 ms | {:.0} | {:.2} | {:.2} | — | — | — |",
            floor.len() as f64 / LIGHT_SECS as f64,
            pct(&floor, 0.5),
            pct(&floor, 0.99),
        );
        // The same light load against the durable floor (part 1): what a server that only
        // parses and stores durably answers in, on this machine, this minute.
        let (fok, fbad, flight) = {
            let f = start(Kind::Floor).await;
            light_load(&f.url, alerts, &seq).await
        };
        println!(
            "| {alerts} | the durable floor, light (2 connections, 20 ms think) | {:.0} | {:.2} | {:.2} | — | {fbad} | — |",
            fok as f64 / LIGHT_SECS as f64,
            pct(&flight, 0.5),
            pct(&flight, 0.99),
        );
        let r = saturate(&s, Kind::Remedyd, alerts, sustained, &seq).await;
        let (stored, matched, unmatched) = counts(&c, &s.url).await;
        let handled = matched + unmatched;
        let n = r.rss_samples.len();
        let at = |i: usize| r.rss_samples.get(i).copied().unwrap_or(0) as f64 / 1024.0;
        println!(
            "| {alerts} | sustained {sustained} s (32 connections) | {:.0} | {:.2} | {:.2} | {:.1} → {:.1} / {:.1} / {:.1} (peak {:.1}) | {} | {handled:.0}/{stored:.0} |",
            r.ok as f64 / sustained as f64,
            pct(&r.lat, 0.5),
            pct(&r.lat, 0.99),
            idle as f64 / 1024.0,
            at(0),
            at(n / 2),
            at(n.saturating_sub(1)),
            r.rss_peak_kib as f64 / 1024.0,
            r.bad,
        );
    }
}
