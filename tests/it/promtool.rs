//! The shipped Prometheus rules (deploy/prometheus-rules.yaml) are valid for the real promtool
//! (Debian's Prometheus 2.42), and their unit tests (deploy/prometheus-rules.test.yaml: warning
//! vs critical thresholds, `for`, the level-3 count) pass.

use std::path::Path;
use std::process::Command;

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
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
}

#[test]
fn shipped_prometheus_rules_pass_their_promtool_unit_tests() {
    let out = promtool(&["test", "rules", "deploy/prometheus-rules.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_shipped_alert_carries_the_labels_remedyd_targets() {
    // remedyd's rules (rules/*.yaml) name the Deployment from `service` and `namespace`, and map
    // `severity` to the level; an alert without them would open no incident or the wrong one.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus-rules.yaml"),
    )
    .unwrap();
    let alerts: Vec<&str> = text
        .split("      - alert: ")
        .skip(1)
        .map(|a| a.split("\n      - ").next().unwrap())
        .collect();
    assert_eq!(alerts.len(), 4, "{alerts:#?}");
    for a in &alerts {
        let name = a.lines().next().unwrap();
        assert!(a.contains("severity: "), "{name} has no severity");
        assert!(a.contains("runbook_url: "), "{name} has no runbook_url");
        assert!(
            a.contains("summary: ") && a.contains("description: "),
            "{name}"
        );
        if name != "MultipleServicesDown" {
            assert!(
                a.contains("by (namespace, service)")
                    || a.contains("namespace_service:http_requests_5xx:ratio_rate5m"),
                "{name} must keep the namespace and service labels"
            );
        }
    }
}

#[test]
#[should_panic(expected = "install the Debian package `prometheus`")]
fn a_missing_binary_fails_naming_the_package_to_install() {
    services::require("/nonexistent/promtool", "prometheus");
}
