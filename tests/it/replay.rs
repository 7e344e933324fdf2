//! `remedyd replay` (the binary) on stores recorded by a real run: remedyd in-process on SQLite
//! and on PostgreSQL 15, real webhooks posted over HTTP, the ladder run in dry-run. Then replay
//! with the same rules (nothing differs), a looser policy and an extra rule (a step instead of a
//! page, an incident that would open), and stricter rules (a longer `for`: no step; a narrower
//! match: no incident). The store is never written: the SQLite file's bytes and mtime (once the
//! daemon has closed it), and every
//! PostgreSQL table's rows, are the same after replay. Errors: a missing or unreadable store, a
//! bad --since, rules that do not load.

use std::path::Path;
use std::process::Command;

use remedyd::domain::policy::Mode;
use serde_json::{Value, json};

use crate::support::daemon::{Daemon, ROUTES, alert_payload, now_rfc3339, payload};
use crate::support::services::{Postgres, wait_until, within};

const BIN: &str = env!("CARGO_BIN_EXE_remedyd");

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

/// A rule for DiskFull, an alert the recorded rules ignore.
const DISK_RULE: &str = r#"
  - name: disk-full
    match: ['alertname="DiskFull"']
    level: 1
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

/// One restart per target per hour: the second incident on the target is refused by the budget
/// and escalated to on-call.
fn policy(max: u32) -> String {
    format!(
        r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - name: restart
            action: http
            with: {{url: "http://127.0.0.1:9/never-used", timeout: 1s, retries: 0}}
            budget: {{max: {max}, per: 1h}}
            verify: {{resolved_within: 5m}}
            on_failure: escalate
"#
    )
}

/// Posts a one-alert payload; the webhook must take it.
async fn post(d: &Daemon, body: String) {
    let (status, answer) = d.post(&body).await;
    assert_eq!(status, 200, "{answer}");
}

/// The run the store records, in dry-run: checkout's first HighErrorRate is restarted (planned)
/// and resolves; its second is refused by the budget and pages on-call; a DiskFull alert
/// matches no rule.
async fn record(d: &Daemon) {
    let first = now_rfc3339();
    post(d, payload("firing", "checkout", "warning", "aa01", &first)).await;
    let list = d
        .wait_incidents("the first restart", |l| {
            l.len() == 1 && l[0]["status"] == "verifying"
        })
        .await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    post(
        d,
        payload("resolved", "checkout", "warning", "aa01", &first),
    )
    .await;
    d.wait_incidents("the first incident resolved", |l| {
        l.len() == 1 && l[0]["status"] == "resolved"
    })
    .await;

    let second = now_rfc3339();
    post(d, payload("firing", "checkout", "warning", "aa02", &second)).await;
    d.wait_incidents("the second incident escalated", |l| {
        l.len() == 2 && l.iter().any(|i| i["status"] == "escalated")
    })
    .await;
    let disk = json!({"alertname": "DiskFull", "service": "checkout", "severity": "warning"});
    let third = now_rfc3339();
    post(d, alert_payload("firing", disk.clone(), "aa03", &third)).await;
    post(
        d,
        payload("resolved", "checkout", "warning", "aa02", &second),
    )
    .await;
    post(d, alert_payload("resolved", disk, "aa03", &third)).await;
    d.wait_incidents("both incidents resolved", |l| {
        l.len() == 2 && l.iter().all(|i| i["status"] == "resolved")
    })
    .await;
    let timeline = d.timeline(&id).await;
    assert!(
        timeline.iter().any(|e| e["kind"] == "step_started"),
        "{timeline:#?}"
    );
}

/// Writes a rules and a policies directory under `dir/name`.
fn candidate(dir: &Path, name: &str, rules: &str, policies: &str) -> (String, String) {
    let r = dir.join(name).join("rules");
    let p = dir.join(name).join("policies");
    std::fs::create_dir_all(&r).unwrap();
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(r.join("rules.yaml"), rules).unwrap();
    std::fs::write(p.join("routes.yaml"), ROUTES).unwrap();
    std::fs::write(p.join("policies.yaml"), policies).unwrap();
    (r.display().to_string(), p.display().to_string())
}

/// Runs `remedyd replay ARGS` in `dir` (whose rules/ and policies/ are the config's, the
/// baseline); returns the exit code, stdout and stderr.
fn replay(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("replay")
        .args(args)
        .current_dir(dir)
        .env_remove("REMEDYD_CONFIG")
        .env_remove("REMEDYD_STORE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `replay --format json`, which must succeed.
fn replay_json(dir: &Path, store: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--since", "1h", "--store", store, "--format", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = replay(dir, &args);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A diff's changes as (field, before, after), incident by incident in opening order.
fn changes(diff: &Value) -> Vec<Vec<(String, Value, Value)>> {
    diff["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["field"].as_str().unwrap().to_string(),
                        f["before"].clone(),
                        f["after"].clone(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Every expectation on the replays of the recorded run, on either store.
fn assert_replays(dir: &Path, store: &str) {
    // The recorded rules and policies: replay reproduces what happened.
    let same = replay_json(dir, store, &[]);
    assert_eq!(same["signals"], 6, "{same:#}");
    assert_eq!(same["recorded"].as_array().unwrap().len(), 2, "{same:#}");
    assert_eq!(same["recorded"][0]["steps"], json!(["restart"]), "{same:#}");
    assert_eq!(same["recorded"][1]["pages"], json!(["oncall"]), "{same:#}");
    assert_eq!(
        same["recorded"][1]["budgets_hit"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        same["vs_recorded"],
        json!({"not_opened": [], "opened": [], "changed": [], "same": 2}),
        "{same:#}"
    );
    assert!(
        same["baseline"].is_null() && same["vs_baseline"].is_null(),
        "{same:#}"
    );

    // Looser: three restarts an hour, and a rule for DiskFull.
    let (rules, policies) = candidate(dir, "loose", &format!("{RULES}{DISK_RULE}"), &policy(3));
    let loose = replay_json(dir, store, &["--rules", &rules, "--policies", &policies]);
    for diff in [&loose["vs_recorded"], &loose["vs_baseline"]] {
        assert_eq!(diff["same"], 1, "{loose:#}");
        assert_eq!(diff["not_opened"], json!([]), "{loose:#}");
        let opened = diff["opened"].as_array().unwrap();
        assert_eq!(opened.len(), 1, "{loose:#}");
        assert_eq!(opened[0]["rule"], "disk-full");
        assert_eq!(opened[0]["steps"], json!(["restart"]));
        assert_eq!(opened[0]["status"], "resolved");
        let c = changes(diff);
        assert_eq!(c.len(), 1, "{loose:#}");
        assert_eq!(c[0][0], ("steps".into(), json!([]), json!(["restart"])));
        assert_eq!(c[0][1], ("pages".into(), json!(["oncall"]), json!([])));
        assert_eq!(c[0][2].0, "budgets_hit");
        assert_eq!(c[0][2].2, json!([]));
        assert_eq!(c[0].len(), 3, "{loose:#}");
    }

    // Stricter: the alert must fire for an hour before anything is done.
    let strict_rules = RULES.replace("policy: remediate", "policy: remediate\n    for: 1h");
    let (rules, policies) = candidate(dir, "strict", &strict_rules, &policy(1));
    let strict = replay_json(dir, store, &["--rules", &rules, "--policies", &policies]);
    let c = changes(&strict["vs_recorded"]);
    assert_eq!(c.len(), 2, "{strict:#}");
    assert_eq!(c[0], [("steps".into(), json!(["restart"]), json!([]))]);
    assert_eq!(c[1][0], ("pages".into(), json!(["oncall"]), json!([])));
    assert_eq!(c[1][1].0, "budgets_hit");
    assert_eq!(changes(&strict["vs_baseline"]), c);
    let (code, text, err) = replay(
        dir,
        &[
            "--since",
            "1h",
            "--store",
            store,
            "--rules",
            &rules,
            "--policies",
            &policies,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains(
            "against what happened: 0 would not open, 0 would open, 2 would change, 0 the same"
        ),
        "{text}"
    );
    assert!(text.contains("steps: [\"restart\"] -> []"), "{text}");

    // Stricter still: the rule only covers payments, so neither incident opens.
    let narrow = RULES.replace(
        "['alertname=\"HighErrorRate\"']",
        "['alertname=\"HighErrorRate\"', 'service=\"payments\"']",
    );
    let (rules, policies) = candidate(dir, "narrow", &narrow, &policy(1));
    let none = replay_json(dir, store, &["--rules", &rules, "--policies", &policies]);
    let gone = none["vs_recorded"]["not_opened"].as_array().unwrap();
    assert_eq!(gone.len(), 2, "{none:#}");
    assert_eq!(gone[0]["id"], same["recorded"][0]["id"]);
    assert_eq!(none["replayed"], json!([]));
}

/// The bytes and modification time of a file.
fn snapshot(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().modified().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_sqlite_store_shows_the_differences_and_never_writes_the_store() {
    within(240, async {
        let d = Daemon::start_with(RULES, &policy(1), None, |c| c.mode = Mode::DryRun).await;
        record(&d).await;
        let dir = d.stop().await;
        let db = dir.path().join("r.db");
        let store = format!("sqlite://{}", db.display());
        // The daemon is gone: what the file holds is what it recorded.
        // The store's thread closes its connection just after the daemon stops, and that last
        // close checkpoints the write-ahead log into the file and removes it.
        let wal = dir.path().join("r.db-wal");
        wait_until(60, "the daemon's store to close", || {
            let gone = !wal.exists();
            async move { gone }
        })
        .await;
        let before = snapshot(&db);
        let path = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || assert_replays(&path, &store))
            .await
            .unwrap();
        assert!(before == snapshot(&db), "replay changed {}", db.display());
    })
    .await;
}

/// Every table's rows, as one digest per table.
async fn pg_contents(pg: &Postgres, db: &str) -> Vec<(String, i64, String)> {
    let c = pg.client(db).await;
    let tables: Vec<String> = c
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() >= 8, "{tables:?}");
    let mut out = Vec::new();
    for t in tables {
        let r = c
            .query_one(
                &format!(
                    "SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push((t, r.get(0), r.get(1)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_postgres_store_shows_the_same_differences_and_writes_no_row() {
    within(300, async {
        let pg = Postgres::start().await;
        let url = pg.create_database("replay").await;
        let store = url.clone();
        let d = Daemon::start_with(RULES, &policy(1), None, move |c| {
            c.mode = Mode::DryRun;
            c.store = store;
        })
        .await;
        record(&d).await;
        let dir = d.stop().await;
        let before = pg_contents(&pg, "replay").await;
        let signals = before.iter().find(|t| t.0 == "signals").unwrap().1;
        assert_eq!(signals, 6, "{before:?}");
        let path = dir.path().to_path_buf();
        let u = url.clone();
        tokio::task::spawn_blocking(move || assert_replays(&path, &u))
            .await
            .unwrap();
        assert_eq!(pg_contents(&pg, "replay").await, before);
    })
    .await;
}

#[test]
fn a_missing_or_unreadable_store_a_bad_since_and_bad_rules_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, policies) = candidate(dir.path(), "ok", RULES, &policy(1));
    let with = |store: &str, since: &str| {
        replay(
            dir.path(),
            &[
                "--since",
                since,
                "--store",
                store,
                "--rules",
                &rules,
                "--policies",
                &policies,
            ],
        )
    };

    let missing = dir.path().join("nowhere.db");
    let (code, _, err) = with(&format!("sqlite://{}", missing.display()), "7d");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("no store at {}", missing.display())),
        "{err}"
    );
    assert!(!missing.exists(), "replay created {}", missing.display());

    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        "this is not a database, it is a text file of some length...",
    )
    .unwrap();
    let (code, _, err) = with(&format!("sqlite://{}", garbage.display()), "7d");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&garbage.display().to_string()), "{err}");
    assert!(err.contains("not a database"), "{err}");

    let (code, _, err) = with(&format!("sqlite://{}", garbage.display()), "last week");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "--since: \"last week\" is neither a duration (7d, 12h, 90m) nor an RFC 3339 time"
        ),
        "{err}"
    );

    let (code, _, err) = with("mysql://db/x", "7d");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("valid: sqlite://PATH or postgres://"), "{err}");

    let (bad, _) = candidate(
        dir.path(),
        "bad",
        "rules:\n  - name: high-error-rate\n    match: ['alertname=\"HighErrorRate\"']\n    level: 1\n    target: {kind: deployment, name: \"{{service}}\"}\n    policy: no-such-policy\n",
        &policy(1),
    );
    let (code, _, err) = replay(
        dir.path(),
        &[
            "--since",
            "7d",
            "--store",
            &format!("sqlite://{}", missing.display()),
            "--rules",
            &bad,
            "--policies",
            &policies,
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad/rules/rules.yaml:6: policy: rule \"high-error-rate\" names policy \"no-such-policy\""),
        "{err}"
    );
}

/// A step with `approve:` (the reviewed step `restart`).
fn approve_policy(step: &str) -> String {
    format!(
        r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - name: {step}
            action: http
            with: {{url: "http://127.0.0.1:9/never-used", timeout: 1s, retries: 0}}
            verify: {{resolved_within: 5m}}
            on_failure: escalate
            approve: {{approvers: [alice], timeout: 10m}}
"#
    )
}

/// Recorded: checkout's step approved by alice through the API (then planned, dry-run);
/// payments' still waiting when the daemon stops. Replayed with the same rules, checkout's step
/// is decided by alice's recorded decision at its recorded time, and payments' would wait; with
/// the step renamed, no recorded decision matches it, and checkout's would wait too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_feeds_the_recorded_approval_decisions_and_says_which_steps_would_wait() {
    within(240, replay_of_recorded_approvals(None)).await;
}

/// The same on PostgreSQL 15: the decisions are read from its `approvals` table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_postgres_store_feeds_its_recorded_approval_decisions() {
    within(300, async {
        let pg = Postgres::start().await;
        let url = pg.create_database("replay_approvals").await;
        replay_of_recorded_approvals(Some(url)).await;
    })
    .await;
}

/// Records the approvals run on SQLite (`None`) or on the PostgreSQL at `pg`, then replays it.
async fn replay_of_recorded_approvals(pg: Option<String>) {
    {
        let on = pg.clone();
        let d = Daemon::start_with(RULES, &approve_policy("restart"), None, move |c| {
            c.mode = Mode::DryRun;
            if let Some(url) = on {
                c.store = url;
            }
        })
        .await;
        let at = now_rfc3339();
        post(&d, payload("firing", "checkout", "warning", "ab01", &at)).await;
        let l = d
            .wait_incidents("checkout awaiting approval", |l| {
                l.len() == 1 && l[0]["phase"]["phase"] == "awaiting_approval"
            })
            .await;
        let id = l[0]["id"].as_str().unwrap().to_string();
        let r = d
            .http
            .post(format!("{}/api/v1/incidents/{id}/approvals", d.url))
            .json(&json!({"decision": "approve", "by": "alice", "comment": "go"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        d.wait_incidents("the approved step planned", |l| {
            l.len() == 1 && l[0]["status"] == "verifying"
        })
        .await;
        post(
            &d,
            payload("firing", "payments", "warning", "ab02", &now_rfc3339()),
        )
        .await;
        d.wait_incidents("payments awaiting approval", |l| {
            l.len() == 2 && l.iter().any(|i| i["phase"]["phase"] == "awaiting_approval")
        })
        .await;
        let dir = d.stop().await;
        let store = pg.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("r.db").display()));
        let path = dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let same = replay_json(&path, &store, &[]);
            let replayed = same["replayed"].as_array().unwrap();
            let of = |svc: &str| {
                replayed
                    .iter()
                    .find(|o| o["target"].as_str().unwrap().ends_with(svc))
                    .unwrap_or_else(|| panic!("{svc}: {same:#}"))
                    .clone()
            };
            let checkout = of("/checkout");
            assert_eq!(checkout["steps"], json!(["restart"]), "{checkout:#}");
            let a = &checkout["approvals"][0];
            assert_eq!(a["step"], "restart", "{checkout:#}");
            assert_eq!(a["result"], "approved", "{checkout:#}");
            let line = a["decisions"][0].as_str().unwrap();
            assert!(line.starts_with("approved by alice via api at "), "{line}");
            assert!(line.ends_with("(\"go\")"), "{line}");
            assert_eq!(
                same["recorded"][0]["approvals"][0]["decisions"], a["decisions"],
                "the same person, channel, time and comment as recorded"
            );
            let payments = of("/payments");
            assert_eq!(payments["steps"], json!([]), "{payments:#}");
            assert_eq!(
                payments["approvals"][0]["result"], "waiting",
                "{payments:#}"
            );
            assert_eq!(same["vs_recorded"]["same"], 2, "{same:#}");

            let (code, text, err) = replay(&path, &["--since", "1h", "--store", &store]);
            assert_eq!(code, 0, "{err}");
            assert!(
                text.contains(
                    "step restart: approved by the recorded decision(s): approved by alice via api"
                ),
                "{text}"
            );
            assert!(
                text.contains(
                    "payments: step restart: would wait for approval: no recorded decision"
                ),
                "{text}"
            );

            // Renamed: the recorded decision was for another step; the replay would wait.
            let (rules, policies) = candidate(&path, "renamed", RULES, &approve_policy("bounce"));
            let renamed = replay_json(&path, &store, &["--rules", &rules, "--policies", &policies]);
            for o in renamed["replayed"].as_array().unwrap() {
                assert_eq!(o["steps"], json!([]), "{o:#}");
                assert_eq!(o["approvals"][0]["step"], "bounce", "{o:#}");
                assert_eq!(o["approvals"][0]["result"], "waiting", "{o:#}");
            }
        })
        .await
        .unwrap();
    }
}
