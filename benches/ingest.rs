//! Webhook ingest benchmark (DESIGN.md §7, method of perf-anchors.md): the release binary
//! pinned to CPU 0, this load generator on CPU 1 (run it as `taskset -c 1 cargo bench --bench
//! ingest`). Reports CPU µs per request of the whole process (intake, store, engine), req/s at
//! saturation, p50/p99 under light load, idle and loaded RSS, and the evidence that every
//! accepted alert was matched by the engine.
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

async fn start() -> Server {
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
    let bin = env!("CARGO_BIN_EXE_remedyd");
    let mut cmd = if taskset {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    #[allow(clippy::zombie_processes)] // Server::drop kills and waits.
    let child = cmd
        .args([
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
        ])
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
    panic!("remedyd did not become ready");
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

fn pct(lat: &[Duration], p: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
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
    println!(
        "| alerts/webhook | sat req/s | CPU µs/req | sat p50 ms | sat p99 ms | light p50 ms | light p99 ms | RSS idle MiB | RSS load MiB | non-2xx | alerts matched/stored |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for alerts in [1usize, 50] {
        let s = start().await;
        let pid = s.child.id();
        let c = reqwest::Client::new();
        let seq = Arc::new(AtomicU64::new(1));
        load(&s.url, alerts, 1, 1, Duration::ZERO, seq.clone()).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = rss_kib(pid);
        // Warm-up, then saturation.
        load(&s.url, alerts, 32, 3, Duration::ZERO, seq.clone()).await;
        let cpu0 = services::cpu_ticks(pid);
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        let (ok, bad, lat) = load(&s.url, alerts, 32, secs, Duration::ZERO, seq.clone()).await;
        // Let the engine drain what was accepted, then count CPU including that work.
        let mut waited = 0;
        loop {
            let stored = metric(
                &c,
                &s.url,
                "remedyd_signals_total{source=\"webhook\",status=\"stored\"}",
            )
            .await;
            let handled = metric(
                &c,
                &s.url,
                "remedyd_signals_total{source=\"webhook\",status=\"matched\"}",
            )
            .await
                + metric(
                    &c,
                    &s.url,
                    "remedyd_signals_total{source=\"webhook\",status=\"unmatched\"}",
                )
                .await;
            if handled >= stored || waited > 600 {
                break;
            }
            waited += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cpu = services::cpu_ticks(pid) - cpu0;
        sampler.abort();
        let cpu_us = cpu as f64 * 1e6 / ticks_per_sec() as f64 / ok.max(1) as f64;
        let (_, _, light) = load(
            &s.url,
            alerts,
            4,
            15.min(secs),
            Duration::from_millis(20),
            seq.clone(),
        )
        .await;
        let stored = metric(
            &c,
            &s.url,
            "remedyd_signals_total{source=\"webhook\",status=\"stored\"}",
        )
        .await;
        let matched = metric(
            &c,
            &s.url,
            "remedyd_signals_total{source=\"webhook\",status=\"matched\"}",
        )
        .await;
        println!(
            "| {alerts} | {:.0} | {cpu_us:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {bad} | {matched:.0}/{stored:.0} |",
            ok as f64 / secs as f64,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&light, 0.5),
            pct(&light, 0.99),
            idle as f64 / 1024.0,
            peak.load(Ordering::Relaxed) as f64 / 1024.0,
        );
    }
}
