//! HTTP probes' configuration (issue 13 §2): the `probe_allow` key (a list, or comma-separated as
//! the environment gives it) and `remedyd check` reporting a probe whose literal host is not
//! allowed. The probes themselves, against loopback servers, are tested through the engine in
//! `daemon/src/engine/tests/probe.rs`.

use std::path::Path;

use remedyd::adapters::action::Executors;
use remedyd::load::config::{Config, Overrides};

const RULES: &str = r#"
rules:
  - name: svc-down
    match: ['alertname="ServiceDown"']
    level: 1
    target: {kind: deployment, name: "{{service}}"}
    policy: p
"#;

/// Three probes: a literal host that is not allowed (line 12), a literal host that is (line
/// 14), and a host from a label, which only the run can check (line 17).
const POLICIES: &str = r#"routes:
  - {name: oncall, type: webhook, url: "http://127.0.0.1:1/page"}
policies:
  - name: p
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: gateway
            action: http_probe
            with:
              url: "http://10.0.0.9:8001/health"
          - name: service
            action: http_probe
            with: {url: "http://health.internal/api/health/service/{{service}}"}
          - name: restart
            action: http
            with: {url: "http://127.0.0.1:1/restart"}
            verify: {http: "http://{{service}}:8001/health", successes: 2, within: 1m}
"#;

fn setup(dir: &Path, probe_allow: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("rules/r.yaml"), RULES).unwrap();
    std::fs::write(dir.join("policies/p.yaml"), POLICIES).unwrap();
    let cfg = dir.join("remedyd.toml");
    std::fs::write(
        &cfg,
        format!(
            "rules = {:?}\npolicies = {:?}\n{probe_allow}\n",
            dir.join("rules"),
            dir.join("policies")
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn probe_allow_is_a_list_or_comma_separated_entries() {
    let dir = tempfile::tempdir().unwrap();
    for line in [
        r#"probe_allow = ["health.internal", "10.0.0.9:8001", "[::1]:9"]"#,
        r#"probe_allow = "health.internal, 10.0.0.9:8001,[::1]:9""#,
    ] {
        let path = setup(dir.path(), line);
        let cfg = Config::load(Some(&path), &Overrides::default()).unwrap();
        let allow = cfg.probe_allow().unwrap();
        assert!(
            allow.allows("health.internal", 80),
            "{line}: a host alone allows any port"
        );
        assert!(allow.allows("health.internal", 8443), "{line}");
        assert!(allow.allows("10.0.0.9", 8001), "{line}");
        assert!(
            !allow.allows("10.0.0.9", 8002),
            "{line}: host:port allows that port only"
        );
        assert!(allow.allows("::1", 9), "{line}");
        assert!(!allow.allows("10.0.0.10", 8001), "{line}");
    }
}

#[test]
fn probe_allow_is_empty_by_default_and_a_bad_entry_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::load(Some(&setup(dir.path(), "")), &Overrides::default()).unwrap();
    assert!(
        cfg.probe_allow().unwrap().is_empty(),
        "safe default: nothing may be probed"
    );
    let bad = setup(dir.path(), r#"probe_allow = ["http://health.internal/"]"#);
    let err = Config::load(Some(&bad), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("probe_allow") && err.contains("http://health.internal/"),
        "{err}"
    );
}

#[test]
fn check_reports_a_literal_probe_host_that_is_not_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = setup(dir.path(), r#"probe_allow = ["health.internal"]"#);
    let cfg = Config::load(Some(&path), &Overrides::default()).unwrap();
    let Err(d) = remedyd::app::load_ruleset(&cfg, &Executors::builtin()) else {
        panic!("the literal host 10.0.0.9:8001 is not allowed, yet the policies loaded");
    };
    let text = d.to_string();
    assert_eq!(
        d.len(),
        1,
        "only the literal host that is not allowed: {text}"
    );
    assert!(text.contains("p.yaml:"), "{text}");
    assert!(text.contains("with.url"), "{text}");
    assert!(
        text.contains("10.0.0.9:8001") && text.contains("not in probe_allow"),
        "{text}"
    );
    assert!(text.contains("\"gateway\""), "names the step: {text}");

    // Allowed: the same policies pass.
    let path = setup(
        dir.path(),
        r#"probe_allow = ["health.internal", "10.0.0.9:8001"]"#,
    );
    let cfg = Config::load(Some(&path), &Overrides::default()).unwrap();
    assert!(remedyd::app::load_ruleset(&cfg, &Executors::builtin()).is_ok());
}

#[test]
fn the_environment_gives_probe_allow_comma_separated() {
    let dir = tempfile::tempdir().unwrap();
    let path = setup(dir.path(), "");
    let run = |allow: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_remedyd"))
            .args(["check", "--config"])
            .arg(&path)
            .env("REMEDYD_PROBE_ALLOW", allow)
            .output()
            .unwrap()
    };
    let out = run("health.internal,10.0.0.9:8001");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("health.internal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("10.0.0.9:8001") && stderr.contains("probe_allow"),
        "{stderr}"
    );
}
