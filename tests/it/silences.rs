//! Alertmanager silences tied to the ladder (issue 15 §1), against two real Alertmanager 0.25
//! replicas clustered on loopback, with remedyd in-process: the silence covers exactly the
//! incident's alert and gossips to both replicas, is renewed, and is expired on resolve and on
//! escalation; a human's silence holds the ladder (or not); one replica down still works, both
//! down only records the failure; forgotten silences are expired at start-up.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::{Daemon, alert_payload, now_rfc3339};
use crate::support::services::{Alertmanager, free_port, http, wait_until};

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level_from: {label: severity, map: {warning: 1}}
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

/// One remediation (that evidence does not silence is a domain test); `SILENCE` is the policy's
/// `silence:` value: silences of 2 s, renewed every second, so a renewal is seen in seconds.
const POLICY: &str = r#"
policies:
  - name: remediate
    silence: SILENCE
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 5m}, on_failure: escalate}
"#;

const HOLD: &str = "{for: 2s, max: 1h, respect_human_silences: hold}";
const IGNORE: &str = "{for: 2s, max: 1h, respect_human_silences: ignore}";

/// Every wait here is bounded by this.
const SECS: u64 = 60;

fn labels() -> Value {
    json!({"alertname": "HighErrorRate", "service": "checkout", "severity": "warning", "team": "payments"})
}

/// Two clustered replicas.
async fn pair() -> (Alertmanager, Alertmanager) {
    let (c1, c2) = (free_port(), free_port());
    let a = Alertmanager::start_clustered(c1, c2).await;
    let b = Alertmanager::start_clustered(c2, c1).await;
    (a, b)
}

async fn daemon(urls: Vec<String>, silence: &str) -> Daemon {
    Daemon::start_with(RULES, &POLICY.replace("SILENCE", silence), None, move |c| {
        c.alertmanager_url = urls;
        c.external_url = Some("https://remedyd.example.com".into());
    })
    .await
}

/// Posts the alert to every replica (as Prometheus does to an HA pair); its fingerprint.
async fn fire(ams: &[&Alertmanager]) -> String {
    let l = labels();
    let pairs: Vec<(&str, &str)> = l
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    for am in ams {
        am.post_alert(&pairs, None).await;
    }
    let v: Value = get(&ams[0].url(), "/api/v2/alerts").await;
    v[0]["fingerprint"]
        .as_str()
        .expect("the alert's fingerprint")
        .to_string()
}

/// Alertmanager's webhook for the alert (firing or resolved) to remedyd.
async fn notify(d: &Daemon, status: &str, fingerprint: &str) {
    let (code, _) = d
        .post(&alert_payload(
            status,
            labels(),
            fingerprint,
            &now_rfc3339(),
        ))
        .await;
    assert_eq!(code, 200);
}

async fn get(url: &str, path: &str) -> Value {
    http()
        .get(format!("{url}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}{path}: {e}"))
        .json()
        .await
        .expect("JSON")
}

/// Silences on `url` created by `by` in `state` (`active`, `expired`).
async fn silences(url: &str, by: &str, state: &str) -> Vec<Value> {
    let v = get(url, "/api/v2/silences").await;
    v.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["createdBy"] == by && s["status"]["state"] == state)
        .cloned()
        .collect()
}

/// Creates a silence as a person (or as a forgetful remedyd) would; its id.
async fn silence_as(url: &str, by: &str, comment: &str, matchers: Value) -> String {
    let now = remedyd::domain::time::Timestamp(chrono_now_ms());
    let body = json!({
        "matchers": matchers, "startsAt": now, "endsAt": now.plus(Duration::from_secs(3600)),
        "createdBy": by, "comment": comment,
    });
    let r: Value = http()
        .post(format!("{url}/api/v2/silences"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["silenceID"].as_str().expect("a silence id").to_string()
}

fn chrono_now_ms() -> i64 {
    use remedyd::domain::time::Clock;
    remedyd::adapters::clock::SystemClock.now().0
}

fn exact_matchers() -> Value {
    let m: Vec<Value> = labels()
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v, "isRegex": false, "isEqual": true}))
        .collect();
    Value::Array(m)
}

/// The one incident's timeline kinds.
async fn kinds(d: &Daemon) -> Vec<String> {
    let list = d.incidents().await;
    let Some(id) = list.first().and_then(|i| i["id"].as_str()) else {
        return Vec::new();
    };
    d.timeline(id)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn wait_kind(d: &Daemon, kind: &str) {
    wait_until(SECS, &format!("timeline entry {kind}"), || async {
        kinds(d).await.iter().any(|k| k == kind)
    })
    .await;
}

/// Matchers as a sorted map name → (value, isEqual, isRegex), to compare exactly.
/// `remedyd_silence_calls_total{op, result}` as the daemon exports it.
async fn silence_calls(d: &Daemon, op: &str, result: &str) -> u64 {
    let m = d.metrics().await;
    let series = format!(r#"remedyd_silence_calls_total{{op="{op}",result="{result}"}} "#);
    m.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("{series} missing:\n{m}"))
        .trim()
        .parse()
        .unwrap()
}

fn matcher_set(m: &Value) -> BTreeMap<String, (Value, Value, Value)> {
    m.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap().to_string();
            (
                name,
                (
                    m["value"].clone(),
                    m["isEqual"].clone(),
                    m["isRegex"].clone(),
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_ladder_silences_exactly_its_alert_on_both_replicas_renews_and_expires_on_resolve() {
    let (a, b) = pair().await;
    let d = daemon(vec![a.url(), b.url()], HOLD).await;
    let fp = fire(&[&a, &b]).await;
    notify(&d, "firing", &fp).await;
    wait_kind(&d, "silenced").await;
    wait_until(SECS, "the restart ran", || async { d.exec.count() == 1 }).await;
    let id = d.incidents().await[0]["id"].as_str().unwrap().to_string();
    for am in [&a, &b] {
        wait_until(SECS, "the silence on both replicas", || async {
            silences(&am.url(), "remedyd", "active").await.len() == 1
        })
        .await;
        let s = &silences(&am.url(), "remedyd", "active").await[0];
        assert_eq!(matcher_set(&s["matchers"]), matcher_set(&exact_matchers()));
        let comment = s["comment"].as_str().unwrap();
        assert!(comment.contains(&id), "{comment}");
        assert!(
            comment.contains(&format!("https://remedyd.example.com/incidents/{id}")),
            "{comment}"
        );
    }
    // The alert is silenced in Alertmanager: no page to the humans while remedyd acts.
    let alerts = get(&a.url(), "/api/v2/alerts").await;
    assert_eq!(alerts[0]["status"]["state"], "suppressed", "{alerts}");
    let first_end = silences(&a.url(), "remedyd", "active").await[0]["endsAt"].clone();
    wait_kind(&d, "silence_renewed").await;
    wait_until(SECS, "the renewed end on the replica", || async {
        silences(&a.url(), "remedyd", "active")
            .await
            .first()
            .is_some_and(|s| s["endsAt"] != first_end)
    })
    .await;
    let inc = &d.incidents().await[0];
    assert!(
        !inc["silence"]["ids"].as_array().unwrap().is_empty(),
        "{inc}"
    );
    let page = d
        .http
        .get(format!("{}/incidents/{id}", d.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sid = inc["silence"]["ids"][0]["id"].as_str().unwrap();
    assert!(page.contains("id=silence") && page.contains(sid), "{page}");
    // The alert resolves: the silence is expired at once, on both replicas.
    notify(&d, "resolved", &fp).await;
    wait_kind(&d, "silence_expired").await;
    for am in [&a, &b] {
        wait_until(SECS, "no active remedyd silence", || async {
            silences(&am.url(), "remedyd", "active").await.is_empty()
        })
        .await;
    }
    // Every call is counted: one create, its renewals, one expiry, none failed.
    assert_eq!(silence_calls(&d, "create", "ok").await, 1);
    assert!(silence_calls(&d, "renew", "ok").await >= 1);
    assert_eq!(silence_calls(&d, "expire", "ok").await, 1);
    assert!(silence_calls(&d, "check", "ok").await >= 1);
    for op in ["create", "renew", "expire", "check"] {
        assert_eq!(silence_calls(&d, op, "error").await, 0, "{op}");
    }
    d.stop().await;
}

#[tokio::test]
async fn escalation_expires_the_silence_so_the_humans_are_paged() {
    let (a, b) = pair().await;
    let d = daemon(vec![a.url(), b.url()], HOLD).await;
    d.exec.script(&[false]);
    let fp = fire(&[&a, &b]).await;
    notify(&d, "firing", &fp).await;
    wait_kind(&d, "escalated").await;
    wait_kind(&d, "silenced").await;
    wait_kind(&d, "silence_expired").await;
    wait_until(SECS, "no active remedyd silence", || async {
        silences(&b.url(), "remedyd", "active").await.is_empty()
    })
    .await;
    assert_eq!(silences(&a.url(), "remedyd", "expired").await.len(), 1);
    let alerts = get(&a.url(), "/api/v2/alerts").await;
    assert_eq!(alerts[0]["status"]["state"], "active", "{alerts}");
    d.stop().await;
}

#[tokio::test]
async fn a_human_silence_holds_the_ladder_under_hold_and_not_under_ignore() {
    let (a, b) = pair().await;
    let fp = fire(&[&a, &b]).await;
    let human = silence_as(&a.url(), "alice", "looking into it", exact_matchers()).await;
    let d = daemon(vec![a.url(), b.url()], HOLD).await;
    notify(&d, "firing", &fp).await;
    wait_kind(&d, "held_by_human_silence").await;
    assert_eq!(d.exec.count(), 0, "a human is on it: nothing ran");
    assert_eq!(d.incidents().await[0]["status"], "open");
    // Alice lifts her silence: the ladder goes on, and silences as usual.
    let r = http()
        .delete(format!("{}/api/v2/silence/{human}", a.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    wait_kind(&d, "silenced").await;
    wait_until(SECS, "the ladder ran", || async { d.exec.count() == 1 }).await;
    d.stop().await;

    let human = silence_as(&b.url(), "bob", "watching", exact_matchers()).await;
    let d = daemon(vec![a.url(), b.url()], IGNORE).await;
    notify(&d, "firing", &fp).await;
    wait_kind(&d, "silenced").await;
    wait_until(SECS, "ignored: the ladder ran", || async {
        d.exec.count() == 1
    })
    .await;
    assert!(!kinds(&d).await.iter().any(|k| k == "held_by_human_silence"));
    // Bob's silence is his: untouched.
    let s = get(&b.url(), &format!("/api/v2/silence/{human}")).await;
    assert_eq!(s["status"]["state"], "active");
    d.stop().await;
}

#[tokio::test]
async fn one_replica_down_still_silences_and_both_down_only_records_the_failure() {
    let (mut a, b) = pair().await;
    let fp = fire(&[&a, &b]).await;
    a.kill();
    let d = daemon(vec![a.url(), b.url()], HOLD).await;
    notify(&d, "firing", &fp).await;
    wait_kind(&d, "silenced").await;
    assert_eq!(silences(&b.url(), "remedyd", "active").await.len(), 1);
    notify(&d, "resolved", &fp).await;
    wait_kind(&d, "silence_expired").await;
    assert!(silences(&b.url(), "remedyd", "active").await.is_empty());
    d.stop().await;

    let mut b = b;
    b.kill();
    let d = daemon(vec![a.url(), b.url()], HOLD).await;
    notify(&d, "firing", &fp).await;
    wait_kind(&d, "silence_failed").await;
    wait_until(SECS, "the restart ran anyway", || async {
        d.exec.count() == 1
    })
    .await;
    let tl = d
        .timeline(d.incidents().await[0]["id"].as_str().unwrap())
        .await;
    let failed = tl.iter().find(|e| e["kind"] == "silence_failed").unwrap();
    let msg = failed["message"].as_str().unwrap();
    assert!(msg.contains(&a.url()) && msg.contains(&b.url()), "{msg}");
    assert!(silence_calls(&d, "create", "error").await >= 1);
    assert_eq!(silence_calls(&d, "create", "ok").await, 0);
    d.stop().await;
}

#[tokio::test]
async fn forgotten_remedyd_silences_are_expired_at_start_and_a_humans_is_left_alone() {
    let (a, b) = pair().await;
    let m = json!([{"name": "alertname", "value": "Gone", "isRegex": false, "isEqual": true}]);
    let forgotten = silence_as(
        &a.url(),
        "remedyd",
        "remedyd incident INC-2020-0001: remedyd is remediating x (rule r)",
        m.clone(),
    )
    .await;
    let human = silence_as(&a.url(), "carol", "maintenance", m).await;
    let d = daemon(vec![a.url(), b.url()], HOLD).await;
    for am in [&a, &b] {
        wait_until(SECS, "the forgotten silence expired", || async {
            let s = get(&am.url(), &format!("/api/v2/silence/{forgotten}")).await;
            s["status"]["state"] == "expired"
        })
        .await;
    }
    let s = get(&a.url(), &format!("/api/v2/silence/{human}")).await;
    assert_eq!(
        s["status"]["state"], "active",
        "a human's silence is left alone"
    );
    d.stop().await;
}

#[tokio::test]
async fn after_a_restart_the_stored_silence_is_renewed_not_swept_as_forgotten() {
    let (a, b) = pair().await;
    let urls = vec![a.url(), b.url()];
    let d = daemon(urls.clone(), HOLD).await;
    let fp = fire(&[&a, &b]).await;
    notify(&d, "firing", &fp).await;
    wait_kind(&d, "silenced").await;
    let sid = d.incidents().await[0]["silence"]["ids"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let renewals = |k: &[String]| k.iter().filter(|k| *k == "silence_renewed").count();
    let before = renewals(&kinds(&d).await);
    let dir = d.stop().await;
    let policy = POLICY.replace("SILENCE", HOLD);
    let d = Daemon::start_with(RULES, &policy, Some(dir), move |c| {
        c.alertmanager_url = urls
    })
    .await;
    wait_until(SECS, "a renewal after the restart", || async {
        renewals(&kinds(&d).await) > before
    })
    .await;
    let s = get(&a.url(), &format!("/api/v2/silence/{sid}")).await;
    assert_eq!(
        s["status"]["state"], "active",
        "the incident's own silence is kept: {s}"
    );
    d.stop().await;
}
