//! Matching benchmark (issue: 10 000 rules must match an alert in under 50 µs at p99): the time
//! to find every rule an alert matches, through the rule index (what the engine does) and by
//! trying every rule in turn (what it did before), for 100, 1 000 and 10 000 rules.
//!
//! The rules are a realistic mix, in Alertmanager's matcher syntax:
//! - 70 % name their alert (`alertname="…"`), half of them with a regex on the namespace;
//! - 15 % name two alerts with a regex alternation (`alertname=~"A|B"`);
//! - 10 % name their alert, a severity, and exclude a service (`service!="…"`);
//! - 3 % name no alert: a regex on `job` with a literal prefix (`batch-7-.*`, filed by prefix);
//! - 2 % name no alert: a regex on `job` that starts with a wildcard (tried for every alert).
//!
//! Alerts are drawn from the alerts the rules name (90 %) and from unknown ones (10 %).
//! Run: `cargo bench --bench rules` (BENCH_ALERTS per size, default 20 000).

use std::time::Instant;

use remedyd::domain::diag::Diagnostics;
use remedyd::domain::rules::{RawRuleFile, Rule, compile};
use remedyd::domain::signal::{Labels, Signal, Source, Status};
use remedyd::domain::time::Timestamp;
use remedyd::load::ruleset::Ruleset;

/// A small deterministic generator: the same rules and alerts on every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn rules(n: usize, g: &mut Gen) -> Vec<Rule> {
    let mut yaml = String::from("rules:\n");
    for i in 0..n {
        let matchers = match g.below(100) {
            0..70 if i % 2 == 0 => format!(r#"'alertname="Alert{i}"', 'namespace=~"prod-.*"'"#),
            0..70 => format!(r#"'alertname="Alert{i}"'"#),
            70..85 => format!(r#"'alertname=~"Alert{i}|AlertB{i}"'"#),
            85..95 => {
                format!(r#"'alertname="Alert{i}"', 'severity="critical"', 'service!="canary-{i}"'"#)
            }
            95..98 => format!(r#"'job=~"batch-{i}-.*"'"#),
            _ => format!(r#"'job=~".*-nightly-{i}"'"#),
        };
        yaml.push_str(&format!(
            "  - name: r{i}\n    match: [{matchers}]\n    level: 1\n    target: {{kind: deployment, name: '{{{{service}}}}'}}\n    policy: p\n"
        ));
    }
    let raw: RawRuleFile = match serde_saphyr::from_str(&yaml) {
        Ok(r) => r,
        Err(e) => panic!("generated rules do not parse: {e}"),
    };
    let mut diag = Diagnostics::default();
    let out = compile("bench.yaml", raw, &mut diag);
    assert!(diag.is_empty(), "generated rules: {diag:?}");
    out
}

fn alert(n: usize, g: &mut Gen) -> Signal {
    let mut labels = Labels::new();
    let i = g.below(n);
    let name = if g.below(10) == 0 {
        format!("Unknown{i}")
    } else {
        format!("Alert{i}")
    };
    labels.insert("alertname".into(), name);
    let ns = if g.below(2) == 0 {
        "prod-eu"
    } else {
        "staging"
    };
    labels.insert("namespace".into(), ns.into());
    labels.insert("service".into(), format!("svc-{}", g.below(50)));
    labels.insert("job".into(), format!("batch-{}-x", g.below(n)));
    let sev = if g.below(3) == 0 {
        "critical"
    } else {
        "warning"
    };
    labels.insert("severity".into(), sev.into());
    Signal {
        source: Source::Webhook,
        status: Status::Firing,
        labels,
        annotations: Labels::new(),
        starts_at: Timestamp(0),
        ends_at: None,
        fingerprint: format!("{:016x}", g.next()),
        generator_url: String::new(),
        value: None,
        rule: None,
        level: None,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Times each alert's match; returns (p50, p99, max) in µs and the matches found.
fn measure(alerts: &[Signal], mut f: impl FnMut(&Signal) -> usize) -> ([f64; 3], usize) {
    let mut times = Vec::with_capacity(alerts.len());
    let mut found = 0;
    for a in alerts {
        let t = Instant::now();
        found += std::hint::black_box(f(a));
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let max = times.last().copied().unwrap_or_default();
    (
        [percentile(&times, 0.5), percentile(&times, 0.99), max],
        found,
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let per_size: usize = std::env::var("BENCH_ALERTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    println!("rules   | index p50 | index p99 | index max | scan p50 | scan p99 | matched");
    println!("------- | --------- | --------- | --------- | -------- | -------- | -------");
    for n in [100, 1_000, 10_000] {
        let mut g = Gen(0x2545_f491_4f6c_dd1d ^ n as u64);
        let rs = Ruleset {
            rules: rules(n, &mut g),
            ..Ruleset::default()
        };
        let alerts: Vec<Signal> = (0..per_size).map(|_| alert(n, &mut g)).collect();
        // The first call files the rules (once per ruleset load); not what a match costs.
        let _ = rs.candidates(&alerts[0]).count();
        let matches = |r: &Rule, a: &Signal| !matches!(r.evaluate(a), Ok(None));
        let (indexed, found_i) = measure(&alerts, |a| {
            rs.candidates(a).filter(|r| matches(r, a)).count()
        });
        let (scan, found_s) = measure(&alerts, |a| {
            rs.rules.iter().filter(|r| matches(r, a)).count()
        });
        assert_eq!(found_i, found_s, "the index lost or added matches");
        println!(
            "{n:>7} | {:>7.2}µs | {:>7.2}µs | {:>7.1}µs | {:>6.1}µs | {:>6.1}µs | {found_i}/{per_size}",
            indexed[0], indexed[1], indexed[2], scan[0], scan[1]
        );
    }
}
