//! Who may read what (issue 11): with a `webhook_token`, incidents, timelines and reviews need a
//! token too (their evidence can hold log lines and labels); a `read_token` reads and never
//! writes; the dashboard asks once and keeps the token in an `HttpOnly`, `SameSite=Strict`
//! cookie; `/healthz`, `/readyz` and `/metrics` stay open and carry no incident content; and
//! evidence is redacted before it is stored or paged.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::daemon::{Daemon, now_rfc3339, payload};

const WRITE: &str = "w-s3cret-write-token";
const READ: &str = "r-s3cret-read-token";
/// A service name that appears nowhere but in this test's alert.
const SERVICE: &str = "zq7-ledger";

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

const POLICY: &str = r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 1s}, on_failure: escalate}
"#;

async fn start() -> (Daemon, String) {
    let d = Daemon::start_with(RULES, POLICY, None, |c| {
        c.webhook_token = Some(WRITE.into());
        c.read_token = Some(READ.into());
    })
    .await;
    d.exec.script(&[false]);
    let r = d
        .http
        .post(format!("{}/webhook/alertmanager", d.url))
        .bearer_auth(WRITE)
        .body(payload(
            "firing",
            SERVICE,
            "warning",
            "acce550000000001",
            &now_rfc3339(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list = d
        .wait_incidents("escalated", |l| {
            l.len() == 1 && l[0]["status"] == "escalated"
        })
        .await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    (d, id)
}

/// GET with an optional bearer token: status and body.
async fn get(d: &Daemon, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = d.http.get(format!("{}{path}", d.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_incidents_need_a_token_and_the_read_token_reads_but_never_writes() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (d, id) = start().await;
        let one = format!("/api/v1/incidents/{id}");
        for path in ["/api/v1/incidents", one.as_str()] {
            for bad in [None, Some("wrong")] {
                let (code, body) = get(&d, path, bad).await;
                assert_eq!(
                    code,
                    StatusCode::UNAUTHORIZED,
                    "{path} with {bad:?}: {body}"
                );
                let v: Value = serde_json::from_str(&body).expect("a JSON error");
                assert!(
                    v["error"].as_str().unwrap().contains("read_token"),
                    "{body}"
                );
                assert!(!body.contains(SERVICE), "a refusal shows nothing: {body}");
            }
            for good in [READ, WRITE] {
                let (code, body) = get(&d, path, Some(good)).await;
                assert_eq!(code, StatusCode::OK, "{path}: {body}");
                assert!(body.contains(SERVICE), "{path}: {body}");
            }
        }
        // The read token writes nothing: webhook, pause, resolve.
        let post = |path: &str, token: &str, body: &str| {
            d.http
                .post(format!("{}{path}", d.url))
                .bearer_auth(token)
                .body(body.to_string())
                .send()
        };
        let alert = payload(
            "firing",
            "other",
            "warning",
            "acce550000000002",
            &now_rfc3339(),
        );
        for (path, body) in [
            ("/webhook/alertmanager", alert.as_str()),
            ("/api/v1/pause", r#"{"reason": "x", "author": "r"}"#),
            (
                &format!("/api/v1/incidents/{id}/resolve") as &str,
                r#"{"reason": "x", "author": "r"}"#,
            ),
        ] {
            let r = post(path, READ, body).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        assert_eq!(
            d.incidents().await.len(),
            1,
            "the read token's alert was not taken"
        );
        let r = post("/api/v1/pause", WRITE, r#"{"reason": "x", "author": "w"}"#)
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // Health and metrics stay open, and the metrics carry no incident content.
        for path in ["/healthz", "/readyz", "/metrics"] {
            let (code, body) = get(&d, path, None).await;
            assert_eq!(code, StatusCode::OK, "{path}: {body}");
            // Nothing of the incident; only the path asked for comes back (in the form's `next`).
            assert!(!body.contains(SERVICE), "{path}: {body}");
        }
        d.stop().await;
    })
    .await
    .expect("finished in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_a_token_once_and_keeps_it_in_a_strict_httponly_cookie() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (d, id) = start().await;
        let page = format!("/incidents/{id}");
        let review = format!("/incidents/{id}/review.md");
        for path in ["/", page.as_str(), review.as_str()] {
            let (code, body) = get(&d, path, None).await;
            assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
            assert!(body.contains("id=login-form"), "{path}: {body}");
            // Nothing of the incident; only the path asked for comes back (in the form's `next`).
            assert!(!body.contains(SERVICE), "{path}: {body}");
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let origin = d.url.clone();
        let login = |token: &str, next: &str, origin: &str| {
            http.post(format!("{}/ui/login", d.url))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", origin)
                .body(format!(
                    "token={}&next={}",
                    urlencode(token),
                    urlencode(next)
                ))
                .send()
        };
        let r = login("wrong", &page, &origin).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().get("set-cookie").is_none());
        let r = login(READ, &page, "http://evil.example").await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "another site cannot log in"
        );
        assert!(r.headers().get("set-cookie").is_none());

        // The read token: back to the page asked for, with the cookie.
        let r = login(READ, &page, &origin).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], page.as_str());
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(
            !set.contains(READ),
            "the cookie does not hold the token in clear: {set}"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        let with_cookie = |path: &str, cookie: &str| {
            http.get(format!("{}{path}", d.url))
                .header("cookie", cookie)
                .send()
        };
        for path in ["/", page.as_str(), review.as_str()] {
            let r = with_cookie(path, &cookie).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert!(r.text().await.unwrap().contains(SERVICE), "{path}");
        }
        // The read cookie does not pause; the write cookie does, without retyping the token.
        let pause = |cookie: &str| {
            http.post(format!("{}/ui/pause", d.url))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", origin.as_str())
                .header("cookie", cookie)
                .body("scope=global&reason=freeze&author=r")
                .send()
        };
        assert_eq!(
            pause(&cookie).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let r = login(WRITE, "//evil.example/x", &origin).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/", "only a path on this site");
        let write_cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            pause(&write_cookie).await.unwrap().status(),
            StatusCode::SEE_OTHER
        );
        // Logging out clears the cookie.
        let r = http
            .post(format!("{}/ui/logout", d.url))
            .header("origin", origin.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(
            r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        d.stop().await;
    })
    .await
    .expect("finished in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_that_looks_like_secrets_is_redacted_before_it_is_stored_or_paged() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let d = Daemon::start(RULES, POLICY).await;
        d.exec.script(&[false]);
        *d.exec.failure.lock().unwrap() = Some((
            "connect to postgres://app:hunter2@db:5432/shop refused".into(),
            serde_json::json!({
                "logs": [
                    "starting",
                    "auth header Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
                    "retrying with password=hunter2 user=app",
                ],
                "env": {"DB_PASSWORD": "hunter2", "HOME": "/srv"},
            }),
        ));
        let (code, _) = d
            .post(&payload(
                "firing",
                SERVICE,
                "warning",
                "acce550000000003",
                &now_rfc3339(),
            ))
            .await;
        assert_eq!(code, 200);
        let list = d
            .wait_incidents("escalated", |l| {
                l.len() == 1 && l[0]["status"] == "escalated"
            })
            .await;
        let id = list[0]["id"].as_str().unwrap();
        d.wait("the page", || !d.pager.all().is_empty()).await;
        let stored = serde_json::to_string(&d.timeline(id).await).unwrap();
        let paged = serde_json::to_string(&d.pager.all()).unwrap();
        for (what, text) in [("timeline", &stored), ("page", &paged)] {
            assert!(!text.contains("hunter2"), "{what} holds a password: {text}");
            assert!(
                !text.contains("eyJhbGciOiJIUzI1NiJ9"),
                "{what} holds a bearer token: {text}"
            );
            assert!(text.contains("[redacted]"), "{what}: {text}");
            // What is not secret is still there for the responder.
            assert!(
                text.contains("retrying with password=[redacted] user=app"),
                "{what}: {text}"
            );
            assert!(text.contains("/srv"), "{what}: {text}");
        }
        d.stop().await;
    })
    .await
    .expect("finished in time")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}
