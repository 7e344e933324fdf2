//! Maintenance windows set through the HTTP API against the real daemon (SQLite file store, the
//! real engine): a window holds a covered incident with its reason, survives a restart, and its
//! cancel lets the ladder proceed; writes need the webhook token, and a bad window is refused
//! with the field named.

use serde_json::{Value, json};

use crate::support::daemon::{Daemon, now_rfc3339, payload};
use crate::support::services::{metric_value, wait_until, within};

const TOKEN: &str = "maint-s3cret";
const READ: &str = "maint-reader";

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

const POLICIES: &str = r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 1s}, on_failure: escalate}
"#;

async fn start(dir: Option<tempfile::TempDir>) -> Daemon {
    Daemon::start_with(RULES, POLICIES, dir, |c| {
        c.webhook_token = Some(TOKEN.into());
        c.read_token = Some(READ.into());
    })
    .await
}

/// A request to the maintenance API with `token` (none: no header): status and JSON.
async fn call(
    d: &Daemon,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = d.http.request(method, format!("{}{path}", d.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn windows(d: &Daemon) -> Vec<Value> {
    let (status, body) = call(
        d,
        reqwest::Method::GET,
        "/api/v1/maintenance",
        Some(READ),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["windows"].as_array().unwrap().clone()
}

/// Waits for an engine pass that completes after this call.
async fn a_pass(d: &Daemon) {
    let series = "remedyd_engine_last_pass_timestamp_seconds";
    let before = metric_value(&d.metrics().await, series);
    wait_until(60, "an engine pass", || async {
        metric_value(&d.metrics().await, series) > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_set_through_the_api_holds_the_ladder_across_a_restart_until_cancelled() {
    within(120, async {
        let d = start(None).await;
        let (status, w) = call(
            &d,
            reqwest::Method::POST,
            "/api/v1/maintenance",
            Some(TOKEN),
            Some(json!({"scope": "rule:high-error-rate", "duration": "2h",
                        "reason": "pg upgrade", "author": "alice"})),
        )
        .await;
        assert_eq!(status, 201, "{w}");
        let id = w["id"].as_i64().unwrap();
        assert_eq!(w["scope"], "rule:high-error-rate");
        assert_eq!(w["author"], "alice");
        assert_eq!(w["cancelled_at"], Value::Null);
        assert_eq!(windows(&d).await, vec![w.clone()], "listed as stored");
        let page = d
            .http
            .get(format!("{}/", d.url))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains(&format!(
                "<td>#{id} pg upgrade</td><td>rule:high-error-rate</td>"
            )),
            "the dashboard shows the window: {page}"
        );

        // A covered alert: the incident is held with the window's reason; nothing runs.
        let (status, _) = d
            .post_authed(
                &payload("firing", "checkout", "warning", "fp-1", &now_rfc3339()),
                TOKEN,
            )
            .await;
        assert_eq!(status, 200);
        let l = d
            .wait_incidents("suspended by the window", |l| {
                l.len() == 1 && l[0]["status"] == "suspended"
            })
            .await;
        let inc = l[0]["id"].as_str().unwrap().to_string();
        let t = serde_json::to_string(&d.timeline(&inc).await).unwrap();
        assert!(
            t.contains(&format!(
                r#"by maintenance: maintenance window #{id} \"pg upgrade\" (by alice) until"#
            )),
            "{t}"
        );
        assert_eq!(d.exec.count(), 0, "held by the window");

        // A restart: the window is still there, and the new engine still holds the incident.
        let dir = d.stop().await;
        let d = start(Some(dir)).await;
        assert_eq!(windows(&d).await, vec![w.clone()], "the window survived");
        a_pass(&d).await;
        a_pass(&d).await;
        assert_eq!(d.exec.count(), 0, "still held after the restart");
        assert_eq!(d.incidents().await[0]["status"], "suspended");

        // Cancelled: the ladder proceeds.
        let path = format!("/api/v1/maintenance/{id}");
        let (status, body) = call(&d, reqwest::Method::DELETE, &path, Some(TOKEN), None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["cancelled"]["cancelled_at"].is_string(), "{body}");
        assert_eq!(
            body["cancelled"]["cancelled_by"], "unknown",
            "no author given: unknown, as for a window set without one"
        );
        d.wait("the step after the cancel", || d.exec.count() == 1)
            .await;
        let t = serde_json::to_string(&d.timeline(&inc).await).unwrap();
        assert!(t.contains("automation resumed"), "{t}");
        assert_eq!(windows(&d).await, Vec::<Value>::new(), "no longer listed");

        // Cancelled twice, or unknown.
        let (status, body) = call(&d, reqwest::Method::DELETE, &path, Some(TOKEN), None).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("already cancelled"),
            "{body}"
        );
        let (status, _) = call(
            &d,
            reqwest::Method::DELETE,
            &format!("/api/v1/maintenance/{}", id + 1000),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 404);
        d.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_a_window_needs_the_write_token_and_a_bad_one_is_refused_naming_the_field() {
    within(120, async {
        let d = start(None).await;
        let good = json!({"scope": "namespace:db", "duration": "1h", "reason": "pg upgrade"});
        let post = |token: Option<&'static str>, body: Value| {
            let d = &d;
            async move {
                call(
                    d,
                    reqwest::Method::POST,
                    "/api/v1/maintenance",
                    token,
                    Some(body),
                )
                .await
            }
        };
        assert_eq!(post(None, good.clone()).await.0, 401, "no token");
        assert_eq!(
            post(Some(READ), good.clone()).await.0,
            401,
            "the read token only reads"
        );
        let (status, _) = call(&d, reqwest::Method::GET, "/api/v1/maintenance", None, None).await;
        assert_eq!(status, 401, "reads need a token too");
        let (status, _) = call(
            &d,
            reqwest::Method::DELETE,
            "/api/v1/maintenance/1",
            Some(READ),
            None,
        )
        .await;
        assert_eq!(status, 401, "cancelling is a write");

        let past = json!({"scope": "global", "reason": "x",
                          "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2020-01-01T02:00:00Z"});
        let (status, body) = post(Some(TOKEN), past).await;
        assert_eq!(status, 400, "{body}");
        let e = body["error"].as_str().unwrap();
        assert!(
            e.starts_with("ends_at:") && e.contains("in the past"),
            "{e}"
        );
        let (status, body) = post(
            Some(TOKEN),
            json!({"scope": "team:db", "duration": "1h", "reason": "x"}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("scope:"),
            "{body}"
        );
        let (status, body) = post(
            Some(TOKEN),
            json!({"scope": "global", "duration": "8d", "reason": "x"}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("longer than 7days"),
            "{body}"
        );
        assert_eq!(
            windows(&d).await,
            Vec::<Value>::new(),
            "nothing refused was stored"
        );
        assert_eq!(post(Some(TOKEN), good).await.0, 201);
        assert_eq!(windows(&d).await.len(), 1);
        d.stop().await;
    })
    .await
}

/// A weekly window through the API, on a manual clock at Saturday 2026-11-28 03:00 UTC: stored
/// and listed with its `weekly` times, it holds a covered incident exactly as a policies file's
/// `weekly:` window (the same reason, until 04:00 UTC), lets the ladder go when its slot ends,
/// and its cancel records who cancelled it (`?author=` or the body's `author`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_window_through_the_api_holds_in_its_slot_and_its_cancel_names_who() {
    use remedyd::domain::time::{ManualClock, Timestamp};
    use std::sync::Arc;
    use std::time::Duration;
    within(120, async {
        let saturday = Timestamp::parse_rfc3339("2026-11-28T03:00:00Z").unwrap();
        let clock = Arc::new(ManualClock::new(saturday));
        let d = Daemon::start_on(RULES, POLICIES, None, clock.clone(), false, |c| {
            c.webhook_token = Some(TOKEN.into());
            c.read_token = Some(READ.into());
        })
        .await;
        let post = |body: Value| {
            let d = &d;
            async move {
                call(d, reqwest::Method::POST, "/api/v1/maintenance", Some(TOKEN), Some(body)).await
            }
        };
        // Refused, naming the field: the policies file's own messages.
        for (body, field) in [
            (json!({"scope": "global", "reason": "x", "weekly": {"day": "caturday", "from": "02:00", "to": "04:00"}}), "weekly.day:"),
            (json!({"scope": "global", "reason": "x", "weekly": {"day": "sat", "from": "2am", "to": "04:00"}}), "weekly.from:"),
            (json!({"scope": "global", "reason": "x", "weekly": {"day": "sat", "from": "23:00", "to": "01:00"}}), "weekly.to:"),
            (json!({"scope": "global", "reason": "x", "weekly": {"day": "sat", "from": "02:00"}}), "weekly:"),
            (json!({"scope": "global", "reason": "x", "duration": "1h", "weekly": {"day": "sat", "from": "02:00", "to": "04:00"}}), "duration:"),
        ] {
            let (status, b) = post(body.clone()).await;
            assert_eq!(status, 400, "{body}: {b}");
            let e = b["error"].as_str().unwrap();
            assert!(e.starts_with(field), "{body}: {e}");
        }
        let (status, w) = post(json!({"scope": "rule:high-error-rate", "reason": "backups",
                                      "author": "alice",
                                      "weekly": {"day": "Sat", "from": "02:00", "to": "04:00"}}))
        .await;
        assert_eq!(status, 201, "{w}");
        let id = w["id"].as_i64().unwrap();
        assert_eq!(w["weekly"], json!({"day": "sat", "from": "02:00", "to": "04:00"}));
        assert_eq!(w["ends_at"], "9999-12-31T23:59:59.000Z", "recurs until cancelled");
        assert_eq!(windows(&d).await, vec![w.clone()], "listed with its weekly times");

        let (status, _) = d
            .post_authed(
                &payload("firing", "checkout", "warning", "fp-1", &saturday.to_rfc3339()),
                TOKEN,
            )
            .await;
        assert_eq!(status, 200);
        let l = d
            .wait_incidents("suspended by the weekly window", |l| {
                l.len() == 1 && l[0]["status"] == "suspended"
            })
            .await;
        let inc = l[0]["id"].as_str().unwrap().to_string();
        let t = serde_json::to_string(&d.timeline(&inc).await).unwrap();
        assert!(
            t.contains(&format!(
                r#"by maintenance: maintenance window #{id} \"backups\" (by alice) until 04:00 UTC"#
            )),
            "{t}"
        );
        assert_eq!(d.exec.count(), 0, "held in the slot");
        // The slot ends at 04:00: the ladder goes on; the window stays for next Saturday.
        clock.advance(Duration::from_secs(3601));
        d.wait("the step after the slot", || d.exec.count() == 1).await;
        assert_eq!(windows(&d).await.len(), 1, "still there for next week");

        // Who cancels: both forms must agree; the query form is kept and shown.
        let path = format!("/api/v1/maintenance/{id}");
        let (status, b) = call(
            &d,
            reqwest::Method::DELETE,
            &format!("{path}?author=bob"),
            Some(TOKEN),
            Some(json!({"author": "carol"})),
        )
        .await;
        assert_eq!(status, 400, "{b}");
        assert!(b["error"].as_str().unwrap().starts_with("author:"), "{b}");
        let (status, b) = call(
            &d,
            reqwest::Method::DELETE,
            &format!("{path}?author=bob"),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["cancelled"]["cancelled_by"], "bob");
        assert_eq!(b["cancelled"]["weekly"]["day"], "sat");
        let (status, b) = call(&d, reqwest::Method::DELETE, &path, Some(TOKEN), None).await;
        assert_eq!(status, 409, "{b}");
        assert!(
            b["error"].as_str().unwrap().contains("already cancelled at")
                && b["error"].as_str().unwrap().contains("by bob"),
            "{b}"
        );
        assert_eq!(windows(&d).await, Vec::<Value>::new());

        // The body form.
        let (status, w2) = post(json!({"scope": "global", "duration": "1h", "reason": "x"})).await;
        assert_eq!(status, 201, "{w2}");
        let (status, b) = call(
            &d,
            reqwest::Method::DELETE,
            &format!("/api/v1/maintenance/{}", w2["id"]),
            Some(TOKEN),
            Some(json!({"author": "carol"})),
        )
        .await;
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["cancelled"]["cancelled_by"], "carol");
        d.stop().await;
    })
    .await
}
