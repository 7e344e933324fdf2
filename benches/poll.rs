//! Polling benchmark (issue: 1 000 polled rules at a 15 s interval against the real Prometheus):
//! cycle time (remedyd_poll_cycle_duration_seconds) and CPU of remedyd and of Prometheus.
//! Run: `cargo bench --bench poll` (BENCH_SECONDS, default 60; BENCH_RULES, default 1000).

#[path = "../tests/support/services.rs"]
mod services;

use std::process::{Command, Stdio};
use std::time::Duration;

use services::{Exporter, Prometheus};

fn pid_of(port: u16) -> Option<u32> {
    // The Prometheus child listening on `port`: found by its command line.
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("prometheus")
            && cmd.contains(&format!("127.0.0.1:{port}"))
            && cmd.contains("--config.file")
        {
            return Some(pid);
        }
    }
    None
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
        .unwrap_or(60);
    let n: usize = std::env::var("BENCH_RULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let exporter = Exporter::start().await;
    for i in 0..50 {
        exporter.set_rate(&format!("svc-{i}"), "200", 100.0);
        exporter.set_rate(
            &format!("svc-{i}"),
            "500",
            if i % 10 == 0 { 3.0 } else { 0.5 },
        );
    }
    let prom = Prometheus::start(&[exporter.target()], "", None).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let mut rules = String::from("rules:\n");
    for i in 0..n {
        let svc = format!("svc-{}", i % 50);
        rules.push_str(&format!(
            "  - name: rate-{i}\n    query: 'sum by (service) (rate(http_requests_total{{service=\"{svc}\",status=~\"5..\"}}[1m])) / sum by (service) (rate(http_requests_total{{service=\"{svc}\"}}[1m]))'\n    every: 15s\n    levels:\n      - {{level: 2, above: 0.05}}\n      - {{level: 1, above: 0.02, clear: 0.015}}\n    target: {{kind: deployment, name: \"{{{{service}}}}\", namespace: python-services}}\n    policy: record\n"
        ));
    }
    std::fs::write(dir.path().join("rules/r.yaml"), rules).unwrap();
    std::fs::write(
        dir.path().join("policies/p.yaml"),
        "routes: [{name: oncall, type: webhook, url_env: REMEDYD_BENCH_UNSET}]\npolicies:\n  - name: record\n    escalate_to: oncall\n    levels: [{level: 1}, {level: 2}]\n",
    )
    .unwrap();
    let port = services::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_remedyd"))
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
        .env("REMEDYD_PROMETHEUS_URL", prom.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = reqwest::Client::new();
    for _ in 0..100 {
        if c.get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let Prometheus scrape a little so that rates exist.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let prom_pid = prom
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .and_then(pid_of);
    let (r0, p0) = (
        services::cpu_ticks(child.id()),
        prom_pid.map_or(0, services::cpu_ticks),
    );
    let m0 = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let m1 = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (r1, p1) = (
        services::cpu_ticks(child.id()),
        prom_pid.map_or(0, services::cpu_ticks),
    );
    let cycles = metric(&m1, "remedyd_poll_cycle_duration_seconds_count")
        - metric(&m0, "remedyd_poll_cycle_duration_seconds_count");
    let cycle_sum = metric(&m1, "remedyd_poll_cycle_duration_seconds_sum")
        - metric(&m0, "remedyd_poll_cycle_duration_seconds_sum");
    let queries = metric(&m1, "remedyd_prometheus_queries_total{result=\"ok\"}")
        - metric(&m0, "remedyd_prometheus_queries_total{result=\"ok\"}");
    let failed = (metric(
        &m1,
        "remedyd_prometheus_queries_total{result=\"unavailable\"}",
    ) + metric(&m1, "remedyd_prometheus_queries_total{result=\"rejected\"}"))
    .max(0.0);
    let incidents = metric(&m1, "remedyd_incidents{");
    println!(
        "| polled rules | window s | cycles | mean cycle s | queries ok | queries failed (total) | remedyd CPU % of one core | Prometheus CPU % | incidents |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {secs} | {cycles:.0} | {:.3} | {queries:.0} | {failed:.0} | {:.1} | {:.1} | {incidents:.0} |",
        cycle_sum / cycles.max(1.0),
        (r1 - r0) as f64 / secs as f64,
        (p1 - p0) as f64 / secs as f64,
    );
    let _ = child.kill();
    let _ = child.wait();
}
