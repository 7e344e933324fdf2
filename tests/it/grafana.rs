//! deploy/grafana-dashboard.json queries only metrics remedyd exports: every `remedyd_*` name in
//! its PromQL is found in `/metrics` of a running remedyd (in process, real HTTP) after it has
//! taken one webhook, and the ones a webhook must move have samples. The action counters exist
//! from start-up: an action that has not finished yet must not hide the family.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::daemon::{Daemon, now_rfc3339, payload};

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
          - {name: restart, action: test, verify: {resolved_within: 30s}}
"#;

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_exported() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json");
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
        assert_eq!(dash["uid"], "remedyd");
        let mut queries = Vec::new();
        exprs(&dash, &mut queries);
        assert!(queries.len() >= 15, "{queries:?}");
        let re = regex::Regex::new(r"\bremedyd_[a-z0-9_]+").unwrap();
        let wanted: BTreeSet<String> = queries
            .iter()
            .flat_map(|q| re.find_iter(q).map(|m| m.as_str().to_string()))
            .collect();

        let d = Daemon::start(RULES, POLICY).await;
        // Before any action: the action counters the failure ratio needs are there, at 0 (the
        // dashboard's action panel would otherwise show nothing until the first action ends).
        let before = d.metrics().await;
        for outcome in ["ok", "failed"] {
            let series = format!("remedyd_actions_total{{kind=\"test\",outcome=\"{outcome}\"}} 0");
            assert!(
                before.lines().any(|l| l == series),
                "{series} before any action:\n{before}"
            );
        }
        let (status, _) = d
            .post(&payload(
                "firing",
                "checkout",
                "warning",
                "feed000000000001",
                &now_rfc3339(),
            ))
            .await;
        assert_eq!(status, 200);
        d.wait_incidents("the incident", |l| l.len() == 1).await;
        let text = d.metrics().await;
        // Families (`# TYPE name kind`) and the sample names each kind exposes.
        let mut exported: BTreeMap<String, String> = BTreeMap::new();
        let mut sampled: BTreeSet<String> = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                let (name, kind) = (it.next().unwrap(), it.next().unwrap());
                let names: &[&str] = match kind {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                for suffix in names {
                    exported.insert(format!("{name}{suffix}"), kind.to_string());
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let name = line.split(['{', ' ']).next().unwrap();
                sampled.insert(name.to_string());
            }
        }
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|m| !exported.contains_key(*m))
            .collect();
        assert!(
            missing.is_empty(),
            "the dashboard queries metrics remedyd does not export: {missing:?}\n/metrics:\n{text}"
        );
        for m in [
            "remedyd_webhook_requests_total",
            "remedyd_webhook_duration_seconds_bucket",
            "remedyd_signals_total",
            "remedyd_incidents",
            "remedyd_pager_outbox_depth",
            "remedyd_leader",
        ] {
            assert!(wanted.contains(m), "the dashboard shows {m}");
            assert!(
                sampled.contains(m),
                "{m} has no sample after a webhook:\n{text}"
            );
        }
        d.stop().await;
    })
    .await
    .expect("finished in time")
}
