//! Resolving an incident by hand through the real HTTP API and the dashboard's form, on the real
//! SQLite store with the real engine: the engine applies the request (the fronts never write
//! the incident), the timeline records who and why, a running step finishes and is recorded but
//! nothing further runs, and every route that was paged gets its resolve after its trigger.
//! `remedyd resolve` (the binary, SQLite and PostgreSQL) is tested in tests/it/process.rs and
//! tests/it/ha.rs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use remedyd::adapters::escalate::NotificationKind;
use serde_json::{Value, json};

use crate::support::daemon;
use crate::support::daemon::{Daemon, now_rfc3339, payload};

const TOKEN: &str = "resolve-s3cret";

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

/// A failing `test` step escalates to on-call: the incident is paged.
const PAGED: &str = r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 1s}, on_failure: escalate}
"#;

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test finished in time")
}

async fn start() -> Daemon {
    Daemon::start_with(RULES, PAGED, None, |c| {
        c.webhook_token = Some(TOKEN.into());
    })
    .await
}

/// Posts a firing HighErrorRate for `service` (level 1) with the token.
async fn fire(d: &Daemon, service: &str, fingerprint: &str) {
    let r = d
        .http
        .post(format!("{}/webhook/alertmanager", d.url))
        .bearer_auth(TOKEN)
        .body(payload(
            "firing",
            service,
            "warning",
            fingerprint,
            &now_rfc3339(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The id of the only incident once it has `status`.
async fn only_incident(d: &Daemon, status: &str) -> String {
    let list = d
        .wait_incidents(status, |l| l.len() == 1 && l[0]["status"] == status)
        .await;
    list[0]["id"].as_str().unwrap().to_string()
}

/// `POST /api/v1/incidents/{id}/resolve` with `body`: status and JSON.
async fn resolve(d: &Daemon, id: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = d
        .http
        .post(format!("{}/api/v1/incidents/{id}/resolve", d.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

fn by_hand_entries(timeline: &[Value]) -> Vec<Value> {
    timeline
        .iter()
        .filter(|e| e["kind"] == "resolved_by_hand")
        .cloned()
        .collect()
}

#[tokio::test]
async fn resolving_by_hand_records_who_and_why_and_the_paged_route_gets_its_resolve_after_the_trigger()
 {
    within(async {
        let d = start().await;
        d.exec.script(&[false]);
        fire(&d, "checkout", "e5e5000000000001").await;
        let id = only_incident(&d, "escalated").await;
        d.wait("the trigger", || d.pager.all().len() == 1).await;

        let (status, body) = resolve(
            &d,
            &id,
            r#"{"reason": "false alarm: load test in staging", "author": "alice"}"#,
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["status"], "resolved");
        assert!(body["resolved_at"].is_string(), "{body}");
        let entries = by_hand_entries(body["timeline"].as_array().unwrap());
        assert_eq!(entries.len(), 1, "{body:#}");
        assert_eq!(entries[0]["data"]["author"], "alice");
        assert_eq!(
            entries[0]["data"]["reason"],
            "false alarm: load test in staging"
        );
        let message = entries[0]["message"].as_str().unwrap();
        assert!(
            message.contains("alice") && message.contains("false alarm: load test in staging"),
            "{message}"
        );
        // The API reads what the engine committed.
        assert_eq!(
            d.get(&format!("/api/v1/incidents/{id}")).await["status"],
            "resolved"
        );

        d.wait("the resolve page", || d.pager.all().len() == 2)
            .await;
        let pages = d.pager.all();
        let sent: Vec<(&str, &str, NotificationKind)> = pages
            .iter()
            .map(|(route, n)| (route.as_str(), n.incident.as_str(), n.event))
            .collect();
        assert_eq!(
            sent,
            [
                ("oncall", id.as_str(), NotificationKind::Trigger),
                ("oncall", id.as_str(), NotificationKind::Resolve),
            ]
        );
        let resolve_page = &pages[1].1;
        assert_eq!(
            resolve_page.reason,
            "resolved by hand by alice: false alarm: load test in staging"
        );
        assert!(
            resolve_page
                .resolution
                .as_deref()
                .is_some_and(|r| r.contains("resolved by hand by alice")),
            "{:?}",
            resolve_page.resolution
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn resolve_by_hand_needs_the_token_a_reason_and_an_author_and_answers_404_and_409() {
    within(async {
        let d = start().await;
        d.exec.script(&[false]);
        fire(&d, "checkout", "e5e5000000000002").await;
        let id = only_incident(&d, "escalated").await;
        let good = r#"{"reason": "noise", "author": "bob"}"#;

        assert_eq!(resolve(&d, &id, good, None).await.0, 401);
        assert_eq!(resolve(&d, &id, good, Some("wrong")).await.0, 401);

        let (status, body) = resolve(&d, &id, "", Some(TOKEN)).await;
        assert_eq!(status, 400);
        assert_eq!(
            body["error"],
            "reason: required (why the incident is resolved by hand); author: required (who resolves it)"
        );
        let (status, body) = resolve(&d, &id, r#"{"reason": "noise"}"#, Some(TOKEN)).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "author: required (who resolves it)");
        let (status, body) = resolve(
            &d,
            &id,
            r#"{"reason": "  ", "author": "bob"}"#,
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            body["error"],
            "reason: required (why the incident is resolved by hand)"
        );
        let (status, body) = resolve(
            &d,
            &id,
            r#"{"reason": "noise", "author": "bob", "force": true}"#,
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, 400);
        assert!(
            body["error"].as_str().unwrap().contains("unknown field `force`"),
            "{body}"
        );
        // None of the refused requests touched the incident.
        assert_eq!(
            d.get(&format!("/api/v1/incidents/{id}")).await["status"],
            "escalated"
        );

        let (status, body) = resolve(&d, "INC-1999-0001", good, Some(TOKEN)).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], "no incident INC-1999-0001");

        assert_eq!(resolve(&d, &id, good, Some(TOKEN)).await.0, 200);
        let (status, body) = resolve(&d, &id, good, Some(TOKEN)).await;
        assert_eq!(status, 409);
        assert_eq!(body["error"], format!("{id} is already resolved"));
        let tl = d.timeline(&id).await;
        assert_eq!(by_hand_entries(&tl).len(), 1, "resolved once: {tl:#?}");
        d.stop().await;
    })
    .await
}

/// An `http` action target that answers after `delay`, counting requests.
async fn slow_target(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/restart", listener.local_addr().unwrap());
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn a_step_running_when_resolved_by_hand_finishes_and_is_recorded_and_nothing_further_runs() {
    within(async {
        let (url, hits) = slow_target(Duration::from_secs(3)).await;
        // A slow restart that would be followed by the `test` step if it did not help.
        let policy = format!(
            r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - name: restart
            action: http
            with: {{url: "{url}", timeout: 10s, retries: 0}}
            verify: {{resolved_within: 1s}}
            on_failure: next
          - {{name: scale-up, action: test, verify: {{resolved_within: 1s}}}}
"#
        );
        let d = Daemon::start_with(RULES, &policy, None, |c| {
            c.webhook_token = Some(TOKEN.into());
        })
        .await;
        fire(&d, "checkout", "e5e5000000000003").await;
        let id = only_incident(&d, "remediating").await;
        d.wait("the restart request", || hits.load(Ordering::SeqCst) == 1)
            .await;

        let (status, body) = resolve(
            &d,
            &id,
            r#"{"reason": "fixed by hand", "author": "carol"}"#,
            Some(TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "resolved");
        let message = by_hand_entries(body["timeline"].as_array().unwrap())[0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("step 1 was running"), "{message}");

        // The restart comes back after the resolve: recorded, and the ladder does not go on.
        let deadline = tokio::time::Instant::now() + daemon::WAIT;
        let tl = loop {
            let tl = d.timeline(&id).await;
            if tl.iter().any(|e| e["kind"] == "step_finished") {
                break tl;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the late step result is never recorded: {tl:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let kinds: Vec<&str> = tl.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        let by_hand = kinds.iter().position(|k| *k == "resolved_by_hand").unwrap();
        let finished = kinds.iter().position(|k| *k == "step_finished").unwrap();
        assert!(by_hand < finished, "{kinds:?}");
        // Longer than the restart's verification: a ladder still running would start scale-up.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(d.exec.count(), 0, "nothing runs after the resolve");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(
            d.get(&format!("/api/v1/incidents/{id}")).await["status"],
            "resolved"
        );
        d.stop().await;
    })
    .await
}

#[tokio::test]
async fn the_incident_page_form_resolves_by_hand_with_the_token_and_both_fields() {
    within(async {
        let d = start().await;
        d.exec.script(&[false]);
        fire(&d, "checkout", "e5e5000000000004").await;
        let id = only_incident(&d, "escalated").await;
        let page_url = format!("{}/incidents/{id}", d.url);
        let page = d
            .http
            .get(&page_url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains(&format!(
                "<form method=post action=\"/ui/incidents/{id}/resolve\" id=resolve-form"
            )),
            "{page}"
        );
        assert!(page.contains("name=token"), "the form asks for the token");

        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let host = d.url.trim_start_matches("http://").to_string();
        let post = |body: &str, origin: &str| {
            no_redirect
                .post(format!("{}/ui/incidents/{id}/resolve", d.url))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", origin.to_string())
                .body(body.to_string())
                .send()
        };
        let same = format!("http://{host}");
        assert_eq!(
            post("reason=noise&author=dave&token=", &same)
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(
            post(
                &format!("reason=noise&author=dave&token={TOKEN}"),
                "http://evil.example"
            )
            .await
            .unwrap()
            .status(),
            403
        );
        let r = post(&format!("reason=noise&author=&token={TOKEN}"), &same)
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let text = r.text().await.unwrap();
        assert!(text.contains("author: required"), "{text}");
        assert_eq!(
            d.get(&format!("/api/v1/incidents/{id}")).await["status"],
            "escalated",
            "refused forms change nothing"
        );

        let r = post(
            &format!("reason=deploy+rolled+back+by+hand&author=dave&token={TOKEN}"),
            &same,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 303);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(
            location,
            format!("/incidents/{id}?notice=Resolved+{id}+by+hand")
        );
        let inc = d.get(&format!("/api/v1/incidents/{id}")).await;
        assert_eq!(inc["status"], "resolved");
        let entries = by_hand_entries(inc["timeline"].as_array().unwrap());
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0]["data"],
            json!({"author": "dave", "reason": "deploy rolled back by hand", "status_before": "escalated", "firing": ["e5e5000000000004"]})
        );
        let page = d
            .http
            .get(format!("{}{location}", d.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains(&format!("<p class=notice id=notice>Resolved {id} by hand</p>")),
            "{page}"
        );
        assert!(!page.contains("id=resolve-form"), "no form once resolved");
        assert!(!page.contains(TOKEN), "the token is never put in a page");
        d.stop().await;
    })
    .await
}
