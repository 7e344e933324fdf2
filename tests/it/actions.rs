//! The `http` action and the webhook pager against real HTTP servers on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use remedyd::adapters::action::http::HttpExecutor;
use remedyd::adapters::action::{ActionRequest, Executor};
use remedyd::adapters::escalate::webhook::WebhookPager;
use remedyd::adapters::escalate::{Notification, NotificationKind, Pager};
use remedyd::domain::policy::{Route, Secret, Transport};

/// A receiver that answers from a script of statuses (then 200) and records what it got.
#[derive(Default)]
struct Receiver {
    script: Mutex<Vec<(u16, Option<&'static str>)>>,
    got: Mutex<Vec<(HeaderMap, serde_json::Value)>>,
}

async fn handle(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap, &'static str) {
    r.got
        .lock()
        .unwrap()
        .push((headers, serde_json::from_str(&body).unwrap_or_default()));
    let (code, retry_after) = {
        let mut s = r.script.lock().unwrap();
        if s.is_empty() {
            (200, None)
        } else {
            s.remove(0)
        }
    };
    let mut h = HeaderMap::new();
    if let Some(ra) = retry_after {
        h.insert("retry-after", ra.parse().unwrap());
    }
    (StatusCode::from_u16(code).unwrap(), h, "answer")
}

async fn receiver(script: &[(u16, Option<&'static str>)]) -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver {
        script: Mutex::new(script.to_vec()),
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/{*path}", post(handle))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, r)
}

fn request(url: &str, retries: u32) -> ActionRequest {
    ActionRequest {
        incident: "INC-2026-0007".into(),
        step: "restart".into(),
        action: "http".into(),
        params: serde_json::json!({
            "url": format!("{url}/restart/{{{{target.name}}}}"),
            "headers": {"X-Team": "{{team|sre}}"},
            "body": {"service": "{{target.name}}", "level": "{{incident.level}}"},
            "timeout": "1s",
            "retries": retries,
        }),
        vars: [("target.name", "checkout"), ("incident.level", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("finished in time")
}

#[tokio::test]
async fn http_action_retries_5xx_then_succeeds_with_the_rendered_request() {
    within(async {
        let (url, r) = receiver(&[(503, None), (502, None)]).await;
        let out = HttpExecutor::new().execute(&request(&url, 2)).await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail["attempts"], 3);
        let got = r.got.lock().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[2].1,
            serde_json::json!({"service": "checkout", "level": "2"})
        );
        assert_eq!(got[2].0["x-team"], "sre");
        assert_eq!(got[2].0["idempotency-key"], "INC-2026-0007/restart");
        assert!(
            got[2].0["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("remedyd/")
        );
    })
    .await
}

#[tokio::test]
async fn http_action_does_not_retry_4xx() {
    within(async {
        let (url, r) = receiver(&[(400, None), (200, None)]).await;
        let out = HttpExecutor::new().execute(&request(&url, 3)).await;
        assert!(!out.ok && !out.retryable, "{out:?}");
        assert!(out.summary.contains("status 400"), "{}", out.summary);
        assert_eq!(r.got.lock().unwrap().len(), 1);
    })
    .await
}

#[tokio::test]
async fn http_action_retries_connection_errors_and_reports_retryable() {
    within(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = HttpExecutor::new()
            .execute(&request(&format!("http://127.0.0.1:{port}"), 1))
            .await;
        assert!(!out.ok && out.retryable, "{out:?}");
        assert_eq!(out.detail["attempts"], 2);
    })
    .await
}

#[tokio::test]
async fn http_action_plan_is_the_exact_request_and_sends_nothing() {
    within(async {
        let (url, r) = receiver(&[]).await;
        let plan = HttpExecutor::new().plan(&request(&url, 0)).unwrap();
        assert_eq!(plan["method"], "POST");
        assert_eq!(plan["url"], format!("{url}/restart/checkout"));
        assert_eq!(plan["headers"]["Idempotency-Key"], "INC-2026-0007/restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(r.got.lock().unwrap().is_empty());
    })
    .await
}

#[test]
fn http_action_params_are_checked_at_load() {
    let e = HttpExecutor::new();
    assert!(
        e.validate(&serde_json::json!({}))
            .unwrap_err()
            .contains("missing field `url`")
    );
    assert!(
        e.validate(&serde_json::json!({"url": "http://x", "method": "GE T"}))
            .unwrap_err()
            .contains("not an HTTP method")
    );
    assert!(
        e.validate(&serde_json::json!({"url": "http://x/{{a"}))
            .unwrap_err()
            .contains("unclosed")
    );
    assert!(
        e.validate(&serde_json::json!({"url": "http://x", "retry": 1}))
            .unwrap_err()
            .contains("unknown field `retry`")
    );
    assert!(
        e.validate(&serde_json::json!({"url": "http://x", "timeout": "soon"}))
            .unwrap_err()
            .contains("not a duration")
    );
}

fn note() -> Notification {
    Notification {
        event: NotificationKind::Trigger,
        dedup_key: "remedyd/INC-2026-0007".into(),
        incident: "INC-2026-0007".into(),
        priority: "P2".into(),
        severity: "high".into(),
        status: "escalated".into(),
        service: "checkout".into(),
        namespace: "python-services".into(),
        rule: "high-error-rate".into(),
        level: 2,
        started_at: remedyd::domain::time::Timestamp(0),
        resolved_at: None,
        description: "d".into(),
        impact: "i".into(),
        reason: "ladder exhausted".into(),
        actions_taken: vec!["12:05:00 step restart succeeded".into()],
        updates: vec![],
        values: vec![],
        resolution: None,
        history: vec![],
        root_cause: "to be determined by the responder".into(),
        digest: None,
        url: None,
        approval: None,
    }
}

fn route(url: Option<String>) -> Route {
    Route::new(
        "oncall",
        Transport::Webhook {
            url: url.map(Secret::new),
        },
        "url",
        Duration::from_secs(2),
    )
}

#[tokio::test]
async fn webhook_pager_posts_the_runbook_fields() {
    within(async {
        let (url, r) = receiver(&[]).await;
        assert!(
            WebhookPager::new()
                .send(&route(Some(format!("{url}/page"))), &note())
                .await
                .unwrap()
        );
        let got = r.got.lock().unwrap();
        let body = &got[0].1;
        for field in [
            "priority",
            "severity",
            "status",
            "service",
            "started_at",
            "description",
            "impact",
            "actions_taken",
            "updates",
            "history",
            "dedup_key",
            "event",
        ] {
            assert!(body.get(field).is_some(), "missing {field}: {body}");
        }
        assert_eq!(body["event"], "trigger");
        assert_eq!(body["actions_taken"][0], "12:05:00 step restart succeeded");
    })
    .await
}

#[tokio::test]
async fn webhook_pager_reports_429_retry_after_and_4xx_as_final() {
    within(async {
        let (url, _r) = receiver(&[(429, Some("7")), (400, None)]).await;
        let p = WebhookPager::new();
        let rt = route(Some(format!("{url}/page")));
        let e = p.send(&rt, &note()).await.unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        let e = p.send(&rt, &note()).await.unwrap_err();
        assert!(!e.retryable);
        assert!(
            !e.message.contains(&url),
            "messages never carry the URL: {}",
            e.message
        );
    })
    .await
}

#[tokio::test]
async fn route_without_destination_records_only() {
    within(async {
        assert!(
            !WebhookPager::new()
                .send(&route(None), &note())
                .await
                .unwrap()
        );
    })
    .await
}
