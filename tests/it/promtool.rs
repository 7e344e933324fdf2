//! The shipped Prometheus rules (deploy/prometheus-rules.yaml) are valid for the real promtool
//! (Debian's Prometheus 2.42), and their unit tests (deploy/prometheus-rules.test.yaml: warning
//! vs critical thresholds, `for`, the level-3 count; every alert on remedyd itself) pass.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::services;

fn promtool(args: &[&str]) -> String {
    let bin = services::require(services::PROMTOOL, "prometheus");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&bin)
        .args(args)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

#[test]
fn shipped_prometheus_rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", "deploy/prometheus-rules.yaml"]);
    assert!(out.contains("SUCCESS: 14 rules found"), "{out}");
}

#[test]
fn shipped_prometheus_rules_pass_their_promtool_unit_tests() {
    let out = promtool(&["test", "rules", "deploy/prometheus-rules.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn a_failing_promtool_case_fails_the_test() {
    // The harness relies on promtool's exit status: a case whose expectation is wrong must fail.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus-rules.yaml"),
        dir.path().join("prometheus-rules.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("wrong.test.yaml"),
        "rule_files: [prometheus-rules.yaml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'remedyd_leader{namespace=\"remedyd\"}'\n        values: '1x10'\n    alert_rule_test:\n      - eval_time: 5m\n        alertname: RemedydNoLeader\n        exp_alerts: [{exp_labels: {severity: critical, namespace: remedyd}}]\n",
    )
    .unwrap();
    let bin = services::require(services::PROMTOOL, "prometheus");
    let out = Command::new(&bin)
        .args(["test", "rules", "wrong.test.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.contains("FAILED"),
        "{}: {text}",
        out.status
    );
}

/// The alerting rules of deploy/prometheus-rules.yaml, by group name.
fn shipped_alerts() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus-rules.yaml"),
    )
    .unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let mut out = Vec::new();
    for g in doc["groups"].as_array().expect("groups") {
        let group = g["name"].as_str().unwrap().to_string();
        for r in g["rules"].as_array().expect("rules") {
            if r.get("alert").is_some() {
                out.push((group.clone(), r.clone()));
            }
        }
    }
    out
}

#[test]
fn every_shipped_alert_has_for_severity_annotations_and_a_runbook() {
    let alerts = shipped_alerts();
    assert_eq!(alerts.len(), 13, "{alerts:#?}");
    for (group, a) in &alerts {
        let name = a["alert"].as_str().unwrap();
        assert!(a["for"].is_string(), "{group}/{name} has no `for`");
        assert!(
            matches!(
                a["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{group}/{name} has no severity"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                a["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{group}/{name} has no {key}"
            );
        }
    }
}

#[test]
fn every_python_services_alert_carries_the_labels_remedyd_targets() {
    // remedyd's rules (rules/*.yaml) name the Deployment from `service` and `namespace`, and map
    // `severity` to the level; an alert without them would open no incident or the wrong one.
    let alerts: Vec<_> = shipped_alerts()
        .into_iter()
        .filter(|(g, _)| g == "remedyd-python-services")
        .collect();
    assert_eq!(alerts.len(), 4, "{alerts:#?}");
    for (_, a) in &alerts {
        let name = a["alert"].as_str().unwrap();
        let expr = a["expr"].as_str().unwrap();
        if name != "MultipleServicesDown" {
            assert!(
                expr.contains("by (namespace, service)")
                    || expr.contains("namespace_service:http_requests_5xx:ratio_rate5m"),
                "{name} must keep the namespace and service labels"
            );
        }
    }
}

#[test]
fn every_alert_on_remedyd_itself_has_a_firing_promtool_case() {
    // promtool passes a rule that no case exercises; each alert on remedyd must be seen firing.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus-rules.test.yaml"),
    )
    .unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let mut firing = std::collections::BTreeSet::new();
    for t in doc["tests"].as_array().unwrap() {
        for c in t["alert_rule_test"].as_array().into_iter().flatten() {
            if c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                firing.insert(c["alertname"].as_str().unwrap().to_string());
            }
        }
    }
    let mut untested = Vec::new();
    let own: Vec<_> = shipped_alerts()
        .into_iter()
        .filter(|(g, _)| g == "remedyd-self")
        .collect();
    assert_eq!(own.len(), 9, "{own:#?}");
    for (_, a) in own {
        let name = a["alert"].as_str().unwrap().to_string();
        if !firing.contains(&name) {
            untested.push(name);
        }
    }
    assert!(
        untested.is_empty(),
        "no alert_rule_test expects these to fire: {untested:?}"
    );
}

#[test]
#[should_panic(expected = "install the Debian package `prometheus`")]
fn a_missing_binary_fails_naming_the_package_to_install() {
    services::require("/nonexistent/promtool", "prometheus");
}
