//! The shipped rules and policies pass `remedyd check` and their own `remedyd test` files.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_remedyd");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(ROOT)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn shipped_rule_tests_pass() {
    let (code, out) = run(
        &[
            "test",
            "rules/tests/runbook.test.yaml",
            "examples/polled/tests.yaml",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("SUCCESS").count(), 2, "{out}");
}

#[test]
fn polled_examples_pass_check_with_a_prometheus_url_and_fail_without() {
    let args = [
        "check",
        "--rules",
        "examples/polled/rules",
        "--policies",
        "examples/polled/policies",
    ];
    let (code, out) = run(
        &args,
        &[("REMEDYD_PROMETHEUS_URL", "http://127.0.0.1:9090")],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&args, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rule \"error-rate\" is polled but prometheus_url is not set"),
        "{out}"
    );
    assert!(out.contains("examples/polled/rules/levels.yaml:"), "{out}");
}

#[test]
fn a_failing_rule_test_exits_1_and_says_what_differed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        format!(
            "rules: {ROOT}/rules\npolicies: {ROOT}/policies\ntests:\n  - name: wrong level\n    alerts:\n      - at: 0s\n        labels: {{alertname: HighErrorRate, service: checkout, severity: critical}}\n    expect:\n      - at: 5s\n        incidents: [{{rule: high-error-rate, target: deployment/python-services/checkout, level: 1}}]\n"
        ),
    )
    .unwrap();
    let (code, out) = run(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("wrong level: at 5s: incidents"), "{out}");
    assert!(out.contains("level: Some(2)"), "{out}");
}
