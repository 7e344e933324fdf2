//! The core loop through the real HTTP API: webhook → rules → incidents → ladder → actions →
//! escalation, on the real SQLite store. The `test` action counts calls; the pager captures pages.

use std::time::Duration;

use remedyd::domain::incident::EntryKind;

use crate::support::daemon::{Daemon, fixture, now_rfc3339, payload};

/// HighErrorRate by severity; deployment {{service}}.
const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

/// One `test` step per level; short verification so that tests run in seconds.
const POLICY: &str = r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 2s}}
      - level: 2
        escalate_to: owner
        steps:
          - {name: rollback, action: test, verify: {resolved_within: 2s}, on_failure: escalate}
"#;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test finished in time")
}

#[tokio::test]
async fn single_alert_fixture_opens_one_incident_and_runs_one_action() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        let (status, body) = d.post(&fixture("01-firing-single-alert.json")).await;
        assert_eq!((status, body["stored"].as_u64()), (200, Some(1)));
        d.wait("the action", || d.exec.count() == 1).await;
        let list = d
            .wait_incidents("verifying", |l| {
                l.len() == 1 && l[0]["status"] == "verifying"
            })
            .await;
        let inc = &list[0];
        assert_eq!(inc["rule"], "high-error-rate");
        assert_eq!(inc["level"], 2);
        assert_eq!(inc["target"]["name"], "checkout");
        assert_eq!(inc["target"]["namespace"], "python-services");
        assert!(inc["id"].as_str().unwrap().starts_with("INC-20"));
        assert_eq!(
            d.exec.requests.lock().unwrap()[0].vars["target.name"],
            "checkout"
        );
        let tl = d.timeline(inc["id"].as_str().unwrap()).await;
        let kinds: Vec<&str> = tl.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["opened", "step_started", "step_ok", "verifying"]);
        // The values behind the decision: budgets consulted before the step.
        assert!(tl[1]["data"]["gates"]["budgets"].as_array().unwrap().len() >= 3);
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn same_payload_twice_gives_one_incident_and_one_action() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        let body = fixture("01-firing-single-alert.json");
        assert_eq!(d.post(&body).await.1["stored"], 1);
        assert_eq!(d.post(&body).await.1["duplicates"], 1);
        d.wait("the action", || d.exec.count() == 1).await;
        // A re-send after the step (Alertmanager's repeat) is still a duplicate.
        assert_eq!(d.post(&body).await.1["duplicates"], 1);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(d.incidents().await.len(), 1);
        assert_eq!(d.exec.count(), 1);
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn grouped_payload_gives_one_incident_per_alert() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        assert_eq!(
            d.post(&fixture("02-firing-grouped-3-alerts.json")).await.1["stored"],
            3
        );
        let list = d.wait_incidents("three incidents", |l| l.len() == 3).await;
        let mut services: Vec<&str> = list
            .iter()
            .map(|i| i["target"]["name"].as_str().unwrap())
            .collect();
        services.sort();
        assert_eq!(services, ["checkout", "payments", "search"]);
        d.wait("three actions", || d.exec.count() == 3).await;
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn resolved_alert_while_waiting_cancels_the_pending_step_and_nothing_runs() {
    within(async {
        let rules = RULES.replace("policy: remediate", "policy: remediate\n    for: 3s");
        let d = Daemon::start(&rules, POLICY).await;
        let starts = now_rfc3339();
        assert_eq!(
            d.post(&payload(
                "firing",
                "checkout",
                "warning",
                "aaaa000000000001",
                &starts
            ))
            .await
            .0,
            200
        );
        d.wait_incidents("open", |l| l.len() == 1 && l[0]["status"] == "open")
            .await;
        assert_eq!(
            d.post(&payload(
                "resolved",
                "checkout",
                "warning",
                "aaaa000000000001",
                &starts
            ))
            .await
            .0,
            200
        );
        let list = d
            .wait_incidents("resolved", |l| l.len() == 1 && l[0]["status"] == "resolved")
            .await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            d.exec.count(),
            0,
            "a resolved alert never triggers an action"
        );
        let tl = d.timeline(list[0]["id"].as_str().unwrap()).await;
        assert!(tl.iter().any(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .contains("pending steps cancelled")
        }));
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn resolved_alert_without_an_incident_never_acts() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        assert_eq!(d.post(&fixture("04-resolved.json")).await.0, 200);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(d.incidents().await.is_empty());
        assert_eq!(d.exec.count(), 0);
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn resolve_after_the_step_verifies_and_resolves_the_incident() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        let starts = now_rfc3339();
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "bbbb000000000001",
            &starts,
        ))
        .await;
        d.wait("the action", || d.exec.count() == 1).await;
        d.post(&payload(
            "resolved",
            "checkout",
            "warning",
            "bbbb000000000001",
            &starts,
        ))
        .await;
        let list = d
            .wait_incidents("resolved", |l| l[0]["status"] == "resolved")
            .await;
        let tl = d.timeline(list[0]["id"].as_str().unwrap()).await;
        assert!(tl.iter().any(|e| e["kind"] == "verified"), "{tl:#?}");
        assert!(
            d.pager.all().is_empty(),
            "nobody is paged for a self-healed incident"
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn failed_verification_exhausts_the_ladder_and_pages_with_the_history_then_resolves() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        let starts = now_rfc3339();
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "cccc000000000001",
            &starts,
        ))
        .await;
        let list = d
            .wait_incidents("escalated", |l| {
                l.len() == 1 && l[0]["status"] == "escalated"
            })
            .await;
        assert_eq!(d.exec.count(), 1);
        d.wait("the page", || !d.pager.all().is_empty()).await;
        let (route, n) = d.pager.all()[0].clone();
        assert_eq!(route, "oncall");
        assert_eq!(n.incident, list[0]["id"].as_str().unwrap());
        assert_eq!(
            (n.priority.as_str(), n.service.as_str()),
            ("P3", "checkout")
        );
        assert!(n.reason.contains("ladder exhausted"), "{}", n.reason);
        assert_eq!(n.actions_taken.len(), 1);
        assert!(
            n.history
                .iter()
                .any(|e| e.kind == EntryKind::VerificationFailed)
        );
        d.post(&payload(
            "resolved",
            "checkout",
            "warning",
            "cccc000000000001",
            &starts,
        ))
        .await;
        d.wait("the resolve page", || d.pager.all().len() == 2)
            .await;
        assert_eq!(
            d.pager.all()[1].1.event,
            remedyd::adapters::escalate::NotificationKind::Resolve
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn level_two_alert_supersedes_level_one_on_the_same_target() {
    within(async {
        let rules = RULES.replace("policy: remediate", "policy: remediate\n    for: 2s");
        let d = Daemon::start(&rules, POLICY).await;
        let starts = now_rfc3339();
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "dddd000000000001",
            &starts,
        ))
        .await;
        d.post(&payload(
            "firing",
            "checkout",
            "critical",
            "dddd000000000002",
            &starts,
        ))
        .await;
        d.wait("the action", || d.exec.count() == 1).await;
        let list = d
            .wait_incidents("one level-2 incident", |l| {
                l.len() == 1 && l[0]["level"] == 2
            })
            .await;
        assert_eq!(d.exec.requests.lock().unwrap()[0].step, "rollback");
        let tl = d.timeline(list[0]["id"].as_str().unwrap()).await;
        assert!(tl.iter().any(|e| e["kind"] == "superseded"));
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn spent_budget_escalates_instead_of_acting() {
    within(async {
        let policy = r#"
policies:
  - name: remediate
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - {name: first, action: test, budget: {max: 1, per: 1h}, verify: {resolved_within: 1s}}
          - {name: second, action: test, budget: {max: 1, per: 1h}, verify: {resolved_within: 1s}}
"#;
        let d = Daemon::start(RULES, policy).await;
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "eeee000000000001",
            &now_rfc3339(),
        ))
        .await;
        let list = d
            .wait_incidents("escalated", |l| {
                l.len() == 1 && l[0]["status"] == "escalated"
            })
            .await;
        assert_eq!(
            d.exec.count(),
            1,
            "the second step shares the action × target budget"
        );
        d.wait("the page", || !d.pager.all().is_empty()).await;
        assert!(
            d.pager.all()[0].1.reason.contains(
                "budget spent: action:test:deployment/python-services/checkout 1/1 per 1h"
            ),
            "{}",
            d.pager.all()[0].1.reason
        );
        let tl = d.timeline(list[0]["id"].as_str().unwrap()).await;
        assert!(tl.iter().any(|e| e["kind"] == "refused"));
        let m = d.metrics().await;
        assert!(
            m.contains("remedyd_refusals_total{reason=\"budget\"} 1"),
            "{m}"
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn breaker_opens_after_k_failures_and_half_opens_after_the_cooldown() {
    within(async {
        let policy = r#"
limits:
  breakers:
    target: {failures: 2, within: 1h, cooldown: 3s}
    global: {failures: 100, within: 1h, cooldown: 1s}
policies:
  - name: remediate
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - {name: a, action: test, verify: {resolved_within: 1s}}
          - {name: b, action: test, verify: {resolved_within: 1s}}
          - {name: c, action: test, verify: {resolved_within: 1s}}
"#;
        let d = Daemon::start(RULES, policy).await;
        d.exec.script(&[false, false]);
        let starts = now_rfc3339();
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "ffff000000000001",
            &starts,
        ))
        .await;
        d.wait_incidents("escalated", |l| {
            l.len() == 1 && l[0]["status"] == "escalated"
        })
        .await;
        assert_eq!(
            d.exec.count(),
            2,
            "the third step is refused by the open breaker"
        );
        d.wait("the page", || !d.pager.all().is_empty()).await;
        assert!(
            d.pager.all()[0]
                .1
                .reason
                .contains("breaker action:test:deployment/python-services/checkout open until")
        );
        // After the cool-down a new incident on the same target gets one trial, which succeeds.
        d.post(&payload(
            "resolved",
            "checkout",
            "warning",
            "ffff000000000001",
            &starts,
        ))
        .await;
        d.wait_incidents("resolved", |l| l[0]["status"] == "resolved")
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "ffff000000000001",
            &now_rfc3339(),
        ))
        .await;
        d.wait("the half-open trial", || d.exec.count() == 3).await;
        let list = d
            .wait_incidents("verifying", |l| {
                l.len() == 2 && l[0]["status"] == "verifying"
            })
            .await;
        let tl = d.timeline(list[0]["id"].as_str().unwrap()).await;
        assert_eq!(
            tl[1]["data"]["gates"]["breakers"]["action:test:deployment/python-services/checkout"],
            "half_open"
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn pause_suspends_and_pages_and_resume_continues_the_ladder() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        let r = d
            .http
            .post(format!("{}/api/v1/pause", d.url))
            .body(r#"{"reason":"deploy freeze","author":"alice"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = d
            .http
            .post(format!("{}/api/v1/pause", d.url))
            .body(r#"{"author":"alice"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "a pause needs a reason");
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "abab000000000001",
            &now_rfc3339(),
        ))
        .await;
        d.wait_incidents("suspended", |l| {
            l.len() == 1 && l[0]["status"] == "suspended"
        })
        .await;
        d.wait("the page", || !d.pager.all().is_empty()).await;
        assert!(
            d.pager.all()[0]
                .1
                .reason
                .contains("paused (global) by alice: deploy freeze")
        );
        assert_eq!(d.exec.count(), 0);
        let r = d
            .http
            .post(format!("{}/api/v1/resume", d.url))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        d.wait("the action after resume", || d.exec.count() == 1)
            .await;
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn storm_guard_stops_workload_actions_and_pages_once() {
    within(async {
        let policy = format!(
            "limits:\n  storm_guard: {{max_targets: 2, route: platform}}\n{}",
            POLICY.trim_start()
        );
        let rules = RULES.replace("policy: remediate", "policy: remediate\n    for: 2s");
        let d = Daemon::start(&rules, &policy).await;
        let starts = now_rfc3339();
        for (svc, fp) in [
            ("checkout", "1111000000000001"),
            ("payments", "1111000000000002"),
            ("search", "1111000000000003"),
        ] {
            d.post(&payload("firing", svc, "warning", fp, &starts))
                .await;
        }
        d.wait_incidents("three escalated", |l| {
            l.len() == 3 && l.iter().all(|i| i["status"] == "escalated")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(d.exec.count(), 0, "no workload action during a storm");
        let pages = d.pager.all();
        assert_eq!(pages.len(), 1, "one page for the storm: {pages:#?}");
        assert_eq!(pages[0].0, "platform");
        assert_eq!(pages[0].1.updates.len(), 3);
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn second_rule_on_a_busy_target_is_held_until_the_first_ladder_finishes() {
    within(async {
        let rules = format!("{RULES}\n  - name: other-rule\n    match: ['alertname=\"HighErrorRate\"']\n    level: 1\n    target: {{kind: deployment, name: \"{{{{service}}}}\"}}\n    policy: remediate\n");
        let d = Daemon::start(&rules, POLICY).await;
        d.post(&payload("firing", "checkout", "warning", "cdcd000000000001", &now_rfc3339())).await;
        let list = d.wait_incidents("one held", |l| l.len() == 2 && l.iter().any(|i| i["phase"]["phase"] == "held")).await;
        assert_eq!(d.exec.count(), 1);
        let held = list.iter().find(|i| i["phase"]["phase"] == "held").unwrap();
        assert!(held["phase"]["reason"].as_str().unwrap().starts_with("held: target busy with INC-"));
        // When the first ladder escalates (verification fails after 2 s), the held one runs.
        d.wait("the held step", || d.exec.count() == 2).await;
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn bad_payloads_get_400_naming_the_field_and_store_nothing() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        let body = fixture("02-firing-grouped-3-alerts.json")
            .replace("\"2026-11-26T09:41:29.811Z\"", "12");
        let (status, err) = d.post(&body).await;
        assert_eq!(status, 400);
        assert!(
            err["error"]
                .as_str()
                .unwrap()
                .starts_with("alerts[2].startsAt: invalid type: integer `12`"),
            "{err}"
        );
        let (status, err) = d.post("not json").await;
        assert_eq!(status, 400);
        assert!(err["error"].as_str().unwrap().starts_with("body:"), "{err}");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(
            d.incidents().await.is_empty(),
            "nothing of a rejected payload is stored"
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn body_over_the_limit_gets_413() {
    within(async {
        let d = Daemon::start_with(RULES, POLICY, None, |c| c.max_body = 2048).await;
        let big = fixture("02-firing-grouped-3-alerts.json").replace(
            "\"summary\": \"5xx",
            &format!("\"pad\": \"{}\", \"summary\": \"5xx", "x".repeat(4096)),
        );
        let (status, err) = d.post(&big).await;
        assert_eq!(status, 413);
        assert!(
            err["error"]
                .as_str()
                .unwrap()
                .starts_with("body: larger than max_body (2048 bytes)"),
            "{err}"
        );
        assert_eq!(d.post(&fixture("01-firing-single-alert.json")).await.0, 200);
        let m = d.metrics().await;
        assert!(
            m.contains("remedyd_webhook_requests_total{code=\"413\"} 1"),
            "{m}"
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn truncated_payload_is_recorded_and_missing_alerts_are_not_resolved() {
    within(async {
        let d = Daemon::start(RULES, POLICY).await;
        d.post(&fixture("02-firing-grouped-3-alerts.json")).await;
        d.wait_incidents("three", |l| l.len() == 3).await;
        // The next notification carries one alert and says two were cut: nothing resolves.
        let mut v: serde_json::Value =
            serde_json::from_str(&fixture("02-firing-grouped-3-alerts.json")).unwrap();
        v["alerts"].as_array_mut().unwrap().truncate(1);
        v["truncatedAlerts"] = 2.into();
        let (status, body) = d.post(&v.to_string()).await;
        assert_eq!((status, body["truncated_alerts"].as_u64()), (200, Some(2)));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(
            d.incidents()
                .await
                .iter()
                .all(|i| i["status"] != "resolved")
        );
        let m = d.metrics().await;
        assert!(m.contains("remedyd_truncated_alerts_total 2"), "{m}");
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn restart_resumes_an_incident_waiting_for_its_for_from_the_store() {
    within(async {
        let rules = RULES.replace("policy: remediate", "policy: remediate\n    for: 3s");
        let d = Daemon::start(&rules, POLICY).await;
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "efef000000000001",
            &now_rfc3339(),
        ))
        .await;
        d.wait_incidents("open", |l| l.len() == 1).await;
        let dir = d.stop().await;
        let d = Daemon::start_with(&rules, POLICY, Some(dir), |_| {}).await;
        d.wait("the action after restart", || d.exec.count() == 1)
            .await;
        assert_eq!(d.incidents().await.len(), 1);
        // Numbering goes on from the store after a restart: never a number twice.
        d.post(&payload(
            "firing",
            "payments",
            "warning",
            "efef000000000002",
            &now_rfc3339(),
        ))
        .await;
        let l = d
            .wait_incidents("a second incident", |l| l.len() == 2)
            .await;
        let mut ids: Vec<&str> = l.iter().map(|i| i["id"].as_str().unwrap()).collect();
        ids.sort();
        let year = &ids[0][4..8];
        assert_eq!(
            ids,
            [format!("INC-{year}-0001"), format!("INC-{year}-0002")]
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn dry_run_records_the_exact_request_and_sends_nothing() {
    within(async {
        let policy = r#"
policies:
  - name: remediate
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: restart
            action: http
            with:
              url: "http://127.0.0.1:9/restart/{{target.namespace}}/{{target.name}}"
              body: {incident: "{{incident.id}}", severity: "{{severity}}"}
            verify: {resolved_within: 1m}
"#;
        let d = Daemon::start_with(RULES, policy, None, |c| {
            c.mode = remedyd::domain::policy::Mode::DryRun
        })
        .await;
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "fefe000000000001",
            &now_rfc3339(),
        ))
        .await;
        let list = d
            .wait_incidents("verifying", |l| {
                l.len() == 1 && l[0]["status"] == "verifying"
            })
            .await;
        let id = list[0]["id"].as_str().unwrap();
        let tl = d.timeline(id).await;
        let req = &tl.iter().find(|e| e["kind"] == "step_started").unwrap()["data"]["request"];
        assert_eq!(req["method"], "POST");
        assert_eq!(
            req["url"],
            "http://127.0.0.1:9/restart/python-services/checkout"
        );
        assert_eq!(
            req["body"],
            serde_json::json!({"incident": id, "severity": "warning"})
        );
        assert_eq!(req["headers"]["Idempotency-Key"], format!("{id}/restart"));
        assert!(
            tl.iter()
                .any(|e| e["kind"] == "step_ok" && e["data"]["would_send"] == *req)
        );
        // The engine counts the outcome as a dry run's (it says so itself).
        let metrics = d.metrics().await;
        assert!(
            metrics.contains(r#"remedyd_actions_total{kind="http",outcome="dry_run"} 1"#),
            "{metrics}"
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn steps_without_a_budget_use_the_action_target_limit() {
    within(async {
        let policy = r#"
limits:
  budgets:
    action_target: {max: 1, per: 1h}
policies:
  - name: remediate
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - {name: first, action: test, verify: {resolved_within: 1s}}
          - {name: second, action: test, verify: {resolved_within: 1s}}
"#;
        let d = Daemon::start(RULES, policy).await;
        d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "abcd000000000009",
            &now_rfc3339(),
        ))
        .await;
        d.wait_incidents("escalated", |l| {
            l.len() == 1 && l[0]["status"] == "escalated"
        })
        .await;
        assert_eq!(d.exec.count(), 1);
        d.wait("the page", || !d.pager.all().is_empty()).await;
        assert!(
            d.pager.all()[0].1.reason.contains("1/1 per 1h"),
            "{}",
            d.pager.all()[0].1.reason
        );
        d.stop().await;
    })
    .await
}
