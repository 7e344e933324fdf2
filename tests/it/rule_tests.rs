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

/// A rule and a policy whose one step needs approval by alice within 1m; escalation to oncall.
fn approval_world(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("rules/r.yaml"),
        "rules:\n  - name: errors\n    match: ['alertname=\"Errors\"']\n    level: 1\n    target: {kind: deployment, namespace: shop, name: \"{{service}}\"}\n    policy: fix\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/p.yaml"),
        "limits: {namespaces: [shop]}\nroutes:\n  - {name: oncall, type: webhook, url: \"http://127.0.0.1:9/x\"}\npolicies:\n  - name: fix\n    levels:\n      - level: 1\n        escalate_to: oncall\n        steps:\n          - {name: restart, action: http, with: {url: \"http://127.0.0.1:9/y\"}, verify: {resolved_within: 5m}, on_failure: escalate, approve: {approvers: [alice], timeout: 1m}}\n",
    )
    .unwrap();
}

const FIRE: &str =
    "    alerts:\n      - at: 0s\n        labels: {alertname: Errors, service: cart}\n";

#[test]
fn a_rule_test_states_approval_decisions_and_a_step_without_one_waits_until_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    approval_world(dir.path());
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        format!(
            "rules: rules\npolicies: policies\ntests:\n  - name: approved\n{FIRE}    approvals:\n      - {{at: 20s, step: restart, decision: approve, by: alice, comment: looks safe}}\n    expect:\n      - {{at: 19s, actions: [], pages: []}}\n      - {{at: 25s, actions: [restart], pages: [], incidents: [{{rule: errors, target: deployment/shop/cart, status: verifying}}]}}\n  - name: denied\n{FIRE}    approvals:\n      - {{at: 10s, step: restart, decision: deny, by: alice, target: deployment/shop/cart}}\n    expect:\n      - {{at: 15s, actions: [], pages: [oncall], incidents: [{{rule: errors, target: deployment/shop/cart, status: escalated}}]}}\n  - name: nobody decides\n{FIRE}    expect:\n      - {{at: 59s, actions: [], pages: []}}\n      - {{at: 65s, actions: [], pages: [oncall], incidents: [{{rule: errors, target: deployment/shop/cart, status: escalated}}]}}\n"
        ),
    )
    .unwrap();
    let (code, out) = run(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // A decision by someone else, or for a step nobody waits for yet, fails the case.
    std::fs::write(
        &file,
        format!(
            "rules: rules\npolicies: policies\ntests:\n  - name: stranger\n{FIRE}    approvals:\n      - {{at: 5s, step: restart, decision: approve, by: mallory}}\n    expect:\n      - {{at: 10s, actions: []}}\n  - name: too early\n    approvals:\n      - {{at: 5s, step: restart, decision: approve, by: alice}}\n    expect:\n      - {{at: 10s, actions: []}}\n"
        ),
    )
    .unwrap();
    let (code, out) = run(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("stranger: at 5s: approvals (line 9): refused: \"mallory\" is not an approver of step \"restart\""),
        "{out}"
    );
    assert!(
        out.contains("too early: at 5s: approvals (line 14): no incident waits for approval of step \"restart\""),
        "{out}"
    );
}

#[test]
fn bad_approval_decisions_in_a_rule_test_are_errors_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    approval_world(dir.path());
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "rules: rules\npolicies: policies\ntests:\n  - name: bad\n    approvals:\n      - {at: soon, step: restart, decision: approve, by: alice}\n      - {at: 5s, step: reboot, decision: approve, by: alice}\n      - {at: 5s, step: restart, decision: maybe, by: alice}\n      - {at: 5s, step: restart, decision: deny, by: \" \"}\n    expect:\n      - {at: 10s, actions: []}\n",
    )
    .unwrap();
    let (code, out) = run(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    let f = file.display();
    for want in [
        format!("{f}:6: approvals.at: "),
        format!("{f}:7: approvals.step: no step \"reboot\" with approve: in the policies"),
        format!("{f}:8: approvals.decision: unknown decision \"maybe\"; valid: approve, deny"),
        format!("{f}:9: approvals.by: required"),
    ] {
        assert!(out.contains(&want), "{want:?} not in {out}");
    }
    assert!(out.contains("ERROR"), "{out}");
    // An unknown field is refused by the parser, with its line.
    std::fs::write(
        &file,
        "rules: rules\npolicies: policies\ntests:\n  - name: bad\n    approvals:\n      - {at: 5s, step: restart, decision: approve, by: alice, when: now}\n    expect:\n      - {at: 10s, actions: []}\n",
    )
    .unwrap();
    let (code, out) = run(&["test", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{f}:6")), "{out}");
    assert!(out.contains("when"), "{out}");
}
