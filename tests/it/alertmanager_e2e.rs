//! End to end with the real Prometheus 2.42 and Alertmanager 0.25 (Debian's packages) on
//! loopback and remedyd in-process: exporter → Prometheus (the shipped deploy/prometheus-rules.yaml
//! with short windows) → Alertmanager (Bearer token) → remedyd's webhook → incident → the `test`
//! action → resolved webhook → verified. A missing binary fails the test with the package to
//! install (tests/support/services.rs); it is never skipped.
//!
//! Alertmanager runs the shipped deploy/alertmanager/alertmanager.yml (`amtool check-config` clean),
//! rewritten for loopback only where it must be: see [`shipped_alertmanager_config`].
//!
//! What these tests prove that the fixture tests (tests/it/core_loop.rs) do not: the payloads, headers,
//! timings, retries and resolve notifications are Alertmanager's own, not our idea of them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::daemon;
use crate::support::daemon::Daemon;
use crate::support::services::{
    AMTOOL, Alertmanager, Exporter, Prometheus, SERVICE_WAIT, eventually, metric_value, require,
};

const TOKEN: &str = "t0ken";

/// HighErrorRate by severity (the shape of rules/error-rate.yaml), deployment {{service}}.
const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"', 'severity=~"warning|critical"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}", namespace: "{{namespace|python-services}}"}
    policy: remediate
"#;

/// One `test` step per level; verification by the alert resolving within 2 minutes.
const POLICY: &str = r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 2m}}
      - level: 2
        escalate_to: owner
        steps:
          - {name: rollback, action: test, verify: {resolved_within: 2m}, on_failure: escalate}
"#;

/// The shipped Prometheus rules with a test-sized window: `[5m]` → `[10s]`, and the critical
/// rule's `for: 1m` → 0s. The warning keeps its `for: 2m`, as in production: on the way down the
/// ratio passes through 2-5 % for a few seconds, and that transient must not fire a level-1 alert
/// (the promtool unit test checks the same at full scale). With `for: 0s` it would fire, join the
/// incident or, if it arrived after the critical's resolve, open a second one.
fn shipped_prometheus_rules_fast() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus-rules.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fast = text.replace("[5m]", "[10s]").replace("for: 1m", "for: 0s");
    assert!(
        !fast.contains("[5m]") && !fast.contains("for: 1m") && fast.contains("for: 2m"),
        "deploy/prometheus-rules.yaml changed shape; update shipped_prometheus_rules_fast:\n{fast}"
    );
    fast
}

const SHIPPED_ALERTMANAGER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/alertmanager/alertmanager.yml"
);

/// deploy/alertmanager/alertmanager.yml for loopback. Rewritten, and nothing else:
/// - the remedyd receiver's `url` → this daemon's webhook, its `credentials_file` → a file
///   holding [`TOKEN`] (so the Bearer token still comes from a file);
/// - the people's receiver: PagerDuty's `url` → a closed loopback port, `routing_key_file` → a
///   dummy key file (nothing leaves the machine);
/// - every `group_wait` and `group_interval` → 1s (the test's timings);
/// - with `group_by`, the remedyd route's grouping (to put several services in one notification).
///
/// The routes, matchers, `send_resolved`, `max_alerts`, `continue` and repeat intervals are the
/// file's own.
fn shipped_alertmanager_config(webhook_url: &str, group_by: Option<&[&str]>) -> String {
    let text = std::fs::read_to_string(SHIPPED_ALERTMANAGER).unwrap();
    let mut cfg: Value = serde_saphyr::from_str(&text).unwrap();
    let fast = |r: &mut Value| {
        for k in ["group_wait", "group_interval"] {
            if r.get(k).is_some() {
                r[k] = json!("1s");
            }
        }
    };
    fast(&mut cfg["route"]);
    let mut remedyd_routes = 0;
    for r in cfg["route"]["routes"].as_array_mut().expect("routes") {
        fast(r);
        if r["receiver"] == "remedyd" {
            remedyd_routes += 1;
            if let Some(g) = group_by {
                r["group_by"] = json!(g);
            }
        }
    }
    let (mut hooks, mut pagers) = (0, 0);
    for r in cfg["receivers"].as_array_mut().expect("receivers") {
        for h in r["webhook_configs"].as_array_mut().into_iter().flatten() {
            let auth = &mut h["http_config"]["authorization"];
            assert!(auth["credentials_file"].is_string(), "{auth}");
            auth["credentials_file"] = json!("@DIR@/remedyd-token");
            h["url"] = json!(webhook_url);
            hooks += 1;
        }
        for p in r["pagerduty_configs"].as_array_mut().into_iter().flatten() {
            p["routing_key_file"] = json!("@DIR@/pagerduty-routing-key");
            p["url"] = json!("http://127.0.0.1:9/v2/enqueue");
            pagers += 1;
        }
    }
    assert_eq!(
        (remedyd_routes, hooks, pagers),
        (1, 1, 1),
        "deploy/alertmanager/alertmanager.yml changed shape; update shipped_alertmanager_config"
    );
    // JSON is YAML.
    serde_json::to_string_pretty(&cfg).unwrap()
}

/// A real Alertmanager running the shipped config in front of `d`.
async fn shipped_alertmanager(d: &Daemon, group_by: Option<&[&str]>) -> Alertmanager {
    Alertmanager::start_with_config(
        &shipped_alertmanager_config(&webhook_url(d), group_by),
        &[
            ("remedyd-token", &format!("{TOKEN}\n")),
            ("pagerduty-routing-key", "test-routing-key\n"),
        ],
    )
    .await
}

fn amtool(args: &[&str]) -> String {
    let bin = require(AMTOOL, "prometheus-alertmanager");
    let out = Command::new(&bin)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "amtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

#[test]
fn the_shipped_alertmanager_config_passes_amtool_check_config() {
    let out = amtool(&["check-config", "deploy/alertmanager/alertmanager.yml"]);
    assert!(
        out.contains("SUCCESS") && out.contains("2 receivers"),
        "{out}"
    );
}

#[test]
fn the_shipped_alertmanager_config_is_still_valid_after_the_loopback_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = shipped_alertmanager_config("http://127.0.0.1:1/webhook/alertmanager", None)
        .replace("@DIR@", &dir.path().display().to_string());
    let path = dir.path().join("alertmanager.yml");
    std::fs::write(&path, cfg).unwrap();
    let out = amtool(&["check-config", path.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_shipped_alertmanager_config_routes_remedyds_alerts_to_it_and_to_people() {
    let file = "--config.file=deploy/alertmanager/alertmanager.yml";
    let route = |alert: &str| {
        amtool(&[
            "config",
            "routes",
            "test",
            file,
            &format!("alertname={alert}"),
        ])
        .lines()
        .rfind(|l| !l.starts_with("Warning"))
        .unwrap_or("")
        .trim()
        .to_string()
    };
    // Alerts remedyd acts on: remedyd, and people too (continue: true).
    for alert in ["HighErrorRate", "MultipleServicesDown", "KubeNodeNotReady"] {
        assert_eq!(route(alert), "remedyd,oncall", "{alert}");
    }
    // remedyd's own alerts never go to remedyd; anything else goes to people.
    for alert in ["RemedydNoLeader", "RemedydEngineStalled", "SomethingElse"] {
        assert_eq!(route(alert), "oncall", "{alert}");
    }
    // Every alert the shipped Prometheus rules fire on remedyd itself is a Remedyd* alert.
    let rules = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus-rules.yaml"),
    )
    .unwrap();
    let doc: Value = serde_saphyr::from_str(&rules).unwrap();
    let own = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "remedyd-self")
        .expect("group remedyd-self");
    for r in own["rules"].as_array().unwrap() {
        let name = r["alert"].as_str().unwrap();
        assert_eq!(route(name), "oncall", "{name}");
    }
}

fn webhook_url(d: &Daemon) -> String {
    format!("{}/webhook/alertmanager", d.url)
}

fn start_daemon() -> impl std::future::Future<Output = Daemon> {
    Daemon::start_with(RULES, POLICY, None, |c| {
        c.webhook_token = Some(TOKEN.into())
    })
}

async fn remedyd_metrics(d: &Daemon) -> String {
    d.http
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

async fn wait_ready(d: &Daemon) {
    let r = eventually(SERVICE_WAIT, async || {
        match d.http.get(format!("{}/readyz", d.url)).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    r.unwrap_or_else(|last| panic!("remedyd never became ready: {last}"));
}

/// Everything a failure message needs: remedyd's incidents, what Prometheus and Alertmanager
/// hold, and their logs.
async fn diagnose(d: &Daemon, prom: Option<&Prometheus>, am: &Alertmanager) -> String {
    let mut s = format!(
        "remedyd incidents: {:#?}\nremedyd test action calls: {}\n",
        d.incidents().await,
        d.exec.count()
    );
    if let Some(p) = prom {
        s.push_str(&format!(
            "Prometheus /api/v1/alerts: {}\n",
            p.alerts().await
        ));
    }
    s.push_str(&format!(
        "Alertmanager /api/v2/alerts: {}\n",
        am.alerts().await
    ));
    if let Some(p) = prom {
        s.push_str(&p.logs());
        s.push('\n');
    }
    s.push_str(&am.logs());
    s
}

/// Polls remedyd's incident list until `f` holds, for at most SERVICE_WAIT; fails with the
/// whole stack's state.
async fn wait_incidents(
    what: &str,
    d: &Daemon,
    prom: Option<&Prometheus>,
    am: &Alertmanager,
    f: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let r = eventually(SERVICE_WAIT, async || {
        let list = d.incidents().await;
        if f(&list) {
            Ok(list)
        } else {
            Err(format!("{} incident(s)", list.len()))
        }
    })
    .await;
    match r {
        Ok(list) => list,
        Err(last) => panic!(
            "timed out after {SERVICE_WAIT:?} waiting for {what} ({last})\n{}",
            diagnose(d, prom, am).await
        ),
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(180), f)
        .await
        .expect("test finished in time (every wait inside is bounded more tightly)")
}

fn kinds(timeline: &[serde_json::Value]) -> Vec<&str> {
    timeline
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test]
async fn prometheus_alert_through_alertmanager_opens_an_incident_runs_the_ladder_and_the_resolved_webhook_closes_it()
 {
    within(async {
        let t0 = Instant::now();
        let exporter = Exporter::start().await;
        // checkout: 8 % errors (level 2, critical); payments healthy.
        exporter.set_rate("checkout", "200", 92.0);
        exporter.set_rate("checkout", "500", 8.0);
        exporter.set_rate("payments", "200", 100.0);
        exporter.set_rate("payments", "500", 0.0);

        let d = start_daemon().await;
        let am = shipped_alertmanager(&d, None).await;
        let prom = Prometheus::start(
            &[exporter.target()],
            &shipped_prometheus_rules_fast(),
            Some(&am.addr()),
        )
        .await;
        eprintln!("[{:5.1}s] stack up", t0.elapsed().as_secs_f64());

        let list = wait_incidents("the incident, acted on", &d, Some(&prom), &am, |l| {
            l.len() == 1 && l[0]["status"] == "verifying" && d.exec.count() == 1
        })
        .await;
        eprintln!(
            "[{:5.1}s] incident opened and acted on ({} scrapes)",
            t0.elapsed().as_secs_f64(),
            exporter.scrapes()
        );
        let inc = &list[0];
        let id = inc["id"].as_str().unwrap().to_string();
        assert_eq!(inc["rule"], "high-error-rate");
        assert_eq!(inc["level"], 2, "8 % errors is level 2: {inc:#}");
        assert_eq!(inc["target"]["kind"], "deployment");
        assert_eq!(inc["target"]["name"], "checkout");
        assert_eq!(inc["target"]["namespace"], "python-services");
        // The labels are Prometheus's: the rule's `by (namespace, service)` and its severity.
        assert_eq!(inc["labels"]["alertname"], "HighErrorRate");
        assert_eq!(inc["labels"]["severity"], "critical");
        assert_eq!(inc["labels"]["namespace"], "python-services");
        assert_eq!(inc["labels"]["service"], "checkout");
        {
            let reqs = d.exec.requests.lock().unwrap();
            assert_eq!(reqs.len(), 1);
            assert_eq!(reqs[0].step, "rollback");
            assert_eq!(reqs[0].vars["target.name"], "checkout");
        }
        // Alertmanager presented the token; nothing was refused.
        let m = remedyd_metrics(&d).await;
        assert!(
            metric_value(&m, "remedyd_webhook_requests_total{code=\"200\"}") >= 1.0,
            "{m}"
        );
        assert_eq!(
            metric_value(&m, "remedyd_webhook_requests_total{code=\"401\"}"),
            0.0,
            "{m}"
        );

        // The service recovers: the errors leave the [10s] window, Prometheus resolves the alert,
        // Alertmanager sends the resolved notification and the incident is verified.
        exporter.set_rate("checkout", "500", 0.0);
        let t1 = Instant::now();
        let list = wait_incidents("the incident resolved", &d, Some(&prom), &am, |l| {
            l.len() == 1 && l[0]["status"] == "resolved"
        })
        .await;
        eprintln!(
            "[{:5.1}s] resolved {:.1}s after the errors stopped",
            t0.elapsed().as_secs_f64(),
            t1.elapsed().as_secs_f64()
        );
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["level"], 2);
        let tl = d.timeline(&id).await;
        assert!(
            tl.iter().any(|e| e["kind"] == "verified"),
            "the resolve after the step verifies it: {:?}\n{tl:#?}",
            kinds(&tl)
        );
        assert_eq!(
            kinds(&tl),
            ["opened", "step_started", "step_ok", "verifying", "verified"],
            "{tl:#?}"
        );
        assert_eq!(d.exec.count(), 1, "one action for the whole incident");
        assert!(
            d.pager.all().is_empty(),
            "nobody is paged for a self-healed incident: {:#?}",
            d.pager.all()
        );
        // Nothing follows: no level-1 alert on the way down, nothing for healthy payments.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(d.incidents().await.len(), 1, "{:#?}", d.incidents().await);
        assert_eq!(d.exec.count(), 1);
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn alertmanager_grouped_notification_of_three_services_opens_one_incident_per_alert() {
    within(async {
        let d = start_daemon().await;
        // Grouped by alertname only: the three services travel in one notification.
        let am = shipped_alertmanager(&d, Some(&["alertname"])).await;
        let services = ["checkout", "payments", "search"];
        let alert = |service: &str| {
            serde_json::json!({
                "labels": {"alertname": "HighErrorRate", "severity": "critical",
                           "namespace": "python-services", "service": service},
                "annotations": {"summary": format!("5xx ratio above 5% for {service}")},
                "generatorURL": "http://127.0.0.1/test",
            })
        };
        let alerts: Vec<_> = services.iter().map(|s| alert(s)).collect();
        am.post_alerts(&alerts).await;

        let list = wait_incidents("three incidents, acted on", &d, None, &am, |l| {
            l.len() == 3 && l.iter().all(|i| i["status"] == "verifying") && d.exec.count() == 3
        })
        .await;
        let mut names: Vec<&str> = list
            .iter()
            .map(|i| i["target"]["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, services);
        assert!(list.iter().all(|i| i["level"] == 2), "{list:#?}");

        // It really was one grouped notification carrying three alerts. (The people's route
        // gets them too, `continue: true`, grouped by service: three groups of its own.)
        let all = am.groups().await;
        assert_eq!(all.len(), 4, "{all:#?}");
        let groups: Vec<_> = all
            .into_iter()
            .filter(|g| g["receiver"]["name"] == "remedyd")
            .collect();
        assert_eq!(groups.len(), 1, "{groups:#?}");
        assert_eq!(groups[0]["alerts"].as_array().unwrap().len(), 3);
        let m = remedyd_metrics(&d).await;
        assert_eq!(
            metric_value(&m, "remedyd_webhook_requests_total{code=\"200\"}"),
            1.0,
            "{m}"
        );
        assert_eq!(
            metric_value(
                &m,
                "remedyd_signals_total{source=\"webhook\",status=\"stored\"}"
            ),
            3.0,
            "{m}"
        );
        let attempts = "alertmanager_notification_requests_total{integration=\"webhook\"}";
        assert_eq!(am.metric(attempts).await, 1.0, "one delivery for the group");

        // Resolve all three explicitly (endsAt now): one resolved notification, three verified.
        let now = daemon::now_rfc3339();
        let resolved: Vec<_> = services
            .iter()
            .map(|s| {
                let mut a = alert(s);
                a["endsAt"] = now.clone().into();
                a
            })
            .collect();
        am.post_alerts(&resolved).await;
        let list = wait_incidents("three incidents resolved", &d, None, &am, |l| {
            l.len() == 3 && l.iter().all(|i| i["status"] == "resolved")
        })
        .await;
        for i in &list {
            let tl = d.timeline(i["id"].as_str().unwrap()).await;
            assert!(tl.iter().any(|e| e["kind"] == "verified"), "{tl:#?}");
        }
        assert_eq!(d.exec.count(), 3, "one action per incident");
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn alertmanager_retries_after_503_and_nothing_is_lost() {
    within(async {
        let d = start_daemon().await;
        wait_ready(&d).await;
        let am = shipped_alertmanager(&d, None).await;

        // Another writer holds the SQLite write lock: remedyd cannot store the signals, so after
        // its busy timeout it answers 503 and Alertmanager retries.
        let lock = rusqlite::Connection::open(d.dir.path().join("r.db")).unwrap();
        lock.busy_timeout(Duration::from_secs(10)).unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();

        am.post_alert(
            &[
                ("alertname", "HighErrorRate"),
                ("severity", "warning"),
                ("namespace", "python-services"),
                ("service", "checkout"),
            ],
            None,
        )
        .await;
        // Each failed delivery attempt (remedyd's 503) counts, retries inside one flush included.
        let failed = "alertmanager_notification_requests_failed_total{integration=\"webhook\"}";
        let r = eventually(SERVICE_WAIT, async || {
            let n = am.metric(failed).await;
            if n >= 1.0 {
                Ok(n)
            } else {
                Err(format!("{failed} = {n}"))
            }
        })
        .await;
        if let Err(last) = r {
            panic!(
                "Alertmanager never saw a failed delivery ({last})\n{}",
                diagnose(&d, None, &am).await
            );
        }
        assert_eq!(d.exec.count(), 0);
        lock.execute_batch("COMMIT").unwrap();
        drop(lock);

        // The retry is stored: one incident, one action; the re-sent copies are duplicates.
        wait_incidents("the incident after the retry", &d, None, &am, |l| {
            l.len() == 1 && l[0]["status"] == "verifying" && d.exec.count() == 1
        })
        .await;
        let m = remedyd_metrics(&d).await;
        assert!(
            metric_value(&m, "remedyd_webhook_requests_total{code=\"503\"}") >= 1.0,
            "remedyd answered 503 while the store was locked: {m}"
        );
        assert!(metric_value(&m, "remedyd_webhook_requests_total{code=\"200\"}") >= 1.0);
        let attempts = "alertmanager_notification_requests_total{integration=\"webhook\"}";
        assert!(am.metric(attempts).await >= 2.0, "Alertmanager retried");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(d.incidents().await.len(), 1);
        assert_eq!(d.exec.count(), 1, "retries never run a step twice");
        d.stop().await;
    })
    .await
}

/// The harness itself: `kill` (SIGKILL) and `restart` bring Prometheus back on the same port and
/// storage, with the samples scraped before the kill (tests that kill Prometheus mid-incident rely
/// on this).
#[tokio::test]
async fn harness_prometheus_restarts_on_the_same_port_and_storage() {
    within(async {
        let exporter = Exporter::start().await;
        exporter.set_rate("checkout", "200", 10.0);
        let mut prom = Prometheus::start(&[exporter.target()], "", None).await;
        let url = prom.url();
        let series = r#"http_requests_total{service="checkout",status="200"}"#;
        let before = prom.wait_for_series(series, 1).await;
        let t_before = before[0]["value"][0].as_f64().unwrap();
        prom.kill();
        assert!(prom.query("up").await.is_err(), "killed means down");
        prom.restart().await;
        assert_eq!(prom.url(), url);
        // A sample from before the kill is still there (the WAL is replayed from the same storage).
        let at = format!("{series} @ {t_before}");
        let r = prom.query(&at).await.unwrap_or_default();
        assert_eq!(r.len(), 1, "{r:?}\n{}", prom.logs());
        // And it scrapes again.
        prom.wait_for_series(
            &format!("{series} > {}", before[0]["value"][1].as_str().unwrap()),
            1,
        )
        .await;
    })
    .await
}
