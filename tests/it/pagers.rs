//! PagerDuty, Opsgenie, Slack and webhook routes: loaded from a policies file with their secrets
//! in files and env variables, sent by the dispatching `Pagers` to real HTTP receivers on
//! loopback that stand in for each service (they check what the service's API requires and
//! answer as it answers: 202, 200 `ok`, 400/404/410/422 errors, 429 with `Retry-After`, 5xx),
//! and delivered through the durable outbox. What these receivers cannot prove: that the real
//! services accept our keys and render the payloads as intended.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use remedyd::adapters::action::Executors;
use remedyd::adapters::escalate::{Notification, NotificationKind, Pager, Pagers, notification};
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::adapters::store::{Commit, Store};
use remedyd::adapters::telemetry::Metrics;
use remedyd::domain::policy::{Route, Transport};
use remedyd::domain::time::{ManualClock, Timestamp};
use remedyd::load::ruleset::Ruleset;

use crate::support::story;

/// What a receiver got.
#[derive(Clone, Debug)]
struct Got {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
}

impl Got {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

/// Answers to give, in order: (status, body, Retry-After).
type Script = Arc<Mutex<Vec<(u16, &'static str, Option<&'static str>)>>>;

/// A stand-in service: answers from a script of (status, body, Retry-After), then `default`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    script: Script,
}

impl Receiver {
    async fn start(default: (u16, &'static str)) -> Self {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let script: Script = Arc::default();
        let (g, s) = (got.clone(), script.clone());
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
                let (g, s) = (g.clone(), s.clone());
                async move {
                    g.lock().unwrap().push(Got {
                        method,
                        uri,
                        headers,
                        body,
                    });
                    let (code, text, ra) = {
                        let mut s = s.lock().unwrap();
                        if s.is_empty() {
                            (default.0, default.1, None)
                        } else {
                            s.remove(0)
                        }
                    };
                    let mut h = HeaderMap::new();
                    if let Some(ra) = ra {
                        h.insert("retry-after", ra.parse().unwrap());
                    }
                    (StatusCode::from_u16(code).unwrap(), h, text)
                }
            },
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Receiver { url, got, script }
    }
    fn script(&self, s: &[(u16, &'static str, Option<&'static str>)]) {
        *self.script.lock().unwrap() = s.to_vec();
    }
    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
    fn last(&self) -> Got {
        self.all().last().cloned().expect("a request")
    }
}

const PD_OK: (u16, &str) = (
    202,
    r#"{"status":"success","message":"Event processed","dedup_key":"remedyd/INC-2026-0042"}"#,
);
const OG_OK: (u16, &str) = (
    202,
    r#"{"result":"Request will be processed","took":0.01,"requestId":"43a29c5c"}"#,
);
const SLACK_OK: (u16, &str) = (200, "ok");

const PD_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY12";
const OG_KEY: &str = "eb243592-faa2-4ba2-a551q-1afdf565c889";
const SLACK_PATH: &str = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";

struct Setup {
    _dir: tempfile::TempDir,
    policies: std::path::PathBuf,
    rules: std::path::PathBuf,
    rs: Ruleset,
    pd: Receiver,
    og: Receiver,
    slack: Receiver,
    hook: Receiver,
}

impl Setup {
    async fn new() -> Self {
        let pd = Receiver::start(PD_OK).await;
        let og = Receiver::start(OG_OK).await;
        let slack = Receiver::start(SLACK_OK).await;
        let hook = Receiver::start((200, "")).await;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("rules")).unwrap();
        std::fs::create_dir(p.join("policies")).unwrap();
        std::fs::write(p.join("pd.key"), format!("{PD_KEY}\n")).unwrap();
        std::fs::write(p.join("og.key"), OG_KEY).unwrap();
        std::fs::write(p.join("slack.url"), format!("{}{SLACK_PATH}\n", slack.url)).unwrap();
        std::fs::write(
            p.join("hook.url"),
            format!("{}/hook?token=s3cr3t", hook.url),
        )
        .unwrap();
        let yaml = format!(
            r#"routes:
  - name: pd
    type: pagerduty
    routing_key_file: {d}/pd.key
    url: {pd}/v2/enqueue
  - name: og
    type: opsgenie
    api_key_file: {d}/og.key
    url: {og}/
  - name: slack
    type: slack
    url_file: {d}/slack.url
    timeout: 2s
  - name: hook
    type: webhook
    url_file: {d}/hook.url
  - name: pd-missing
    type: pagerduty
    routing_key_env: REMEDYD_TEST_SURELY_UNSET_ROUTING_KEY
  - name: slack-missing
    type: slack
    url_file: {d}/no-such-file
  - name: og-env
    type: opsgenie
    api_key_env: PATH
digest: {{route: slack, at: "08:00"}}
"#,
            d = p.display(),
            pd = pd.url,
            og = og.url,
        );
        std::fs::write(p.join("policies/routes.yaml"), yaml).unwrap();
        let rs = remedyd::load::ruleset::load(
            &p.join("rules"),
            &p.join("policies"),
            &Executors::builtin(),
        )
        .unwrap_or_else(|d| panic!("{d}"));
        Setup {
            policies: p.join("policies"),
            rules: p.join("rules"),
            _dir: dir,
            rs,
            pd,
            og,
            slack,
            hook,
        }
    }
    fn route(&self, name: &str) -> &Route {
        &self.rs.routes[name]
    }
}

fn trigger() -> Notification {
    let s = story::escalated();
    let (route, reason) = s.pages[0].clone();
    assert_eq!(route, "oncall");
    notification(&s.incident, &s.timeline, NotificationKind::Trigger, &reason)
}

fn resolve() -> Notification {
    let s = story::escalated_then_resolved();
    notification(
        &s.incident,
        &s.timeline,
        NotificationKind::Resolve,
        "recovered",
    )
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("finished in time")
}

#[tokio::test]
async fn routes_load_with_secrets_from_files_and_env_and_never_show_them() {
    within(async {
        let s = Setup::new().await;
        match &s.route("pd").transport {
            Transport::PagerDuty { url, routing_key } => {
                assert_eq!(url, &format!("{}/v2/enqueue", s.pd.url));
                assert_eq!(routing_key.as_ref().unwrap().expose(), PD_KEY, "trimmed");
            }
            other => panic!("{other:?}"),
        }
        match &s.route("og-env").transport {
            Transport::Opsgenie { api_key, .. } => assert_eq!(
                api_key.as_ref().unwrap().expose(),
                std::env::var("PATH").unwrap()
            ),
            other => panic!("{other:?}"),
        }
        assert!(s.route("pd").note().is_none());
        let note = s.route("pd-missing").note().expect("a note");
        assert!(
            note.contains("REMEDYD_TEST_SURELY_UNSET_ROUTING_KEY") && note.contains("recorded"),
            "{note}"
        );
        let note = s.route("slack-missing").note().expect("a note");
        assert!(note.contains("cannot be read"), "{note}");
        let debug = format!("{:?}", s.rs.routes);
        for secret in [PD_KEY, OG_KEY, SLACK_PATH, "s3cr3t"] {
            assert!(!debug.contains(secret), "{secret} in Debug output: {debug}");
        }
        assert_eq!(
            s.rs.digest
                .as_ref()
                .map(|d| (d.route.as_str(), d.hour, d.minute)),
            Some(("slack", 8, 0))
        );
        // `remedyd check` accepts them and notes the routes that will only record.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_remedyd"))
            .args(["check", "--rules"])
            .arg(&s.rules)
            .arg("--policies")
            .arg(&s.policies)
            .current_dir(s._dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("note: route \"pd-missing\" (pagerduty) has no destination"),
            "{stdout}"
        );
        assert!(stdout.contains("note: route \"slack-missing\""), "{stdout}");
        for secret in [PD_KEY, OG_KEY, SLACK_PATH, "s3cr3t"] {
            assert!(
                !stdout.contains(secret),
                "{secret} printed by check: {stdout}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn pagerduty_trigger_and_resolve_follow_events_api_v2() {
    within(async {
        let s = Setup::new().await;
        let p = Pagers::new();
        assert!(p.send(s.route("pd"), &trigger()).await.unwrap());
        let got = s.pd.last();
        assert_eq!(got.method, Method::POST);
        assert_eq!(got.uri.path(), "/v2/enqueue");
        assert!(got.headers["content-type"].to_str().unwrap().starts_with("application/json"));
        let b = got.json();
        assert_eq!(b["routing_key"], PD_KEY);
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], "remedyd/INC-2026-0042");
        let payload = &b["payload"];
        let summary = payload["summary"].as_str().unwrap();
        assert!(summary.len() <= 1024 && summary.contains("INC-2026-0042") && summary.contains("checkout"), "{summary}");
        assert_eq!(payload["source"], "python-services/checkout");
        assert_eq!(payload["severity"], "warning", "level 1 is a warning");
        assert_eq!(payload["timestamp"], "2026-03-01T12:00:00.000Z");
        let d = &payload["custom_details"];
        assert_eq!(d["actions_taken"][0], "12:00:05 restarted checkout (step restart ok)");
        let values = d["values"].to_string();
        assert!(values.contains("0.073 → 0.061 → 0.055 → 0.052 (needs below 0.05): failed"), "{values}");
        assert!(values.contains("budgets after step restart"), "{values}");
        assert!(d["updates"].as_array().unwrap().iter().any(|u| u.as_str().unwrap().contains("4 probes")), "{d}");
        assert_eq!(d["root_cause"], "to be determined by the responder");

        assert!(p.send(s.route("pd"), &resolve()).await.unwrap());
        let b = s.pd.last().json();
        assert_eq!(b["event_action"], "resolve");
        assert_eq!(b["dedup_key"], "remedyd/INC-2026-0042");
        assert_eq!(b["routing_key"], PD_KEY);
        assert!(b.get("payload").is_none(), "{b}");

        // Severity follows the level.
        assert_eq!(remedyd::adapters::escalate::pagerduty::severity(3), "critical");
        assert_eq!(remedyd::adapters::escalate::pagerduty::severity(2), "error");

        // 400 is final (with PagerDuty's reason), 429 and 5xx are retried.
        s.pd.script(&[
            (400, r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#, None),
            (429, "", None),
            (503, "", None),
        ]);
        let e = p.send(s.route("pd"), &trigger()).await.unwrap_err();
        assert!(!e.retryable);
        assert!(e.message.contains("status 400: invalid event"), "{}", e.message);
        assert!(!e.message.contains(PD_KEY));
        let e = p.send(s.route("pd"), &trigger()).await.unwrap_err();
        assert!(e.retryable && e.retry_after.is_none(), "{e:?}");
        let e = p.send(s.route("pd"), &trigger()).await.unwrap_err();
        assert!(e.retryable, "{e:?}");
    })
    .await
}

#[tokio::test]
async fn opsgenie_creates_the_alert_and_closes_it_by_alias() {
    within(async {
        let s = Setup::new().await;
        let p = Pagers::new();
        assert!(p.send(s.route("og"), &trigger()).await.unwrap());
        let got = s.og.last();
        assert_eq!((got.method.as_str(), got.uri.path()), ("POST", "/v2/alerts"));
        assert_eq!(got.headers["authorization"], format!("GenieKey {OG_KEY}"));
        let b = got.json();
        let message = b["message"].as_str().unwrap();
        assert!(message.chars().count() <= 130, "{message}");
        assert!(message.starts_with("[P3] INC-2026-0042 checkout"), "{message}");
        assert_eq!(b["alias"], "remedyd/INC-2026-0042");
        assert_eq!(b["priority"], "P3");
        assert_eq!(b["entity"], "python-services/checkout");
        assert!(b["details"].as_object().unwrap().values().all(|v| v.is_string()), "details are strings: {b}");
        assert!(b["details"]["actions_taken"].as_str().unwrap().contains("restarted checkout"));
        assert!(b["description"].as_str().unwrap().contains("Measured values:"));

        assert!(p.send(s.route("og"), &resolve()).await.unwrap());
        let got = s.og.last();
        assert_eq!(got.uri.path(), "/v2/alerts/remedyd%2FINC-2026-0042/close");
        assert_eq!(got.uri.query(), Some("identifierType=alias"));
        assert_eq!(got.headers["authorization"], format!("GenieKey {OG_KEY}"));
        let note = got.json()["note"].as_str().unwrap().to_string();
        assert!(note.starts_with("resolved at 2026-03-01 12:20:00 UTC, 20m after it opened"), "{note}");

        s.og.script(&[
            (422, r#"{"message":"Request body is not processable. Please check the errors.","errors":{"message":"Message can not be empty."},"took":0.001,"requestId":"x"}"#, None),
            (401, r#"{"message":"Could not authenticate","took":0.0,"requestId":"y"}"#, None),
            (429, "", Some("2")),
        ]);
        let e = p.send(s.route("og"), &trigger()).await.unwrap_err();
        assert!(!e.retryable && e.message.contains("status 422"), "{e:?}");
        let e = p.send(s.route("og"), &trigger()).await.unwrap_err();
        assert!(!e.retryable && e.message.contains("Could not authenticate"), "{e:?}");
        assert!(!e.message.contains(OG_KEY));
        let e = p.send(s.route("og"), &trigger()).await.unwrap_err();
        assert!(e.retryable && e.retry_after == Some(Duration::from_secs(2)), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn slack_gets_readable_blocks_and_its_errors_are_mapped() {
    within(async {
        let s = Setup::new().await;
        let p = Pagers::new();
        assert!(p.send(s.route("slack"), &trigger()).await.unwrap());
        let got = s.slack.last();
        assert_eq!(got.uri.path(), SLACK_PATH);
        let b = got.json();
        assert!(b["text"].as_str().unwrap().contains("INC-2026-0042"));
        let blocks = b["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(header.contains("P3 INC-2026-0042 · checkout"), "{header}");
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        for f in [
            "*Status*\nescalated",
            "*Severity*\nwarning (P3)",
            "*Level*\n1",
            "*Started*\n2026-03-01 12:00:00 UTC",
        ] {
            assert!(fields.contains(&f), "{f:?} not in {fields:?}");
        }
        let all = b.to_string();
        assert!(
            all.contains("*Actions taken*")
                && all.contains("• 12:00:05 restarted checkout (step restart ok)"),
            "{all}"
        );
        assert!(all.contains("*Measured values*"), "{all}");
        let context = blocks.last().unwrap();
        assert_eq!(context["type"], "context");
        assert!(
            context["elements"][0]["text"]
                .as_str()
                .unwrap()
                .contains("ladder exhausted"),
            "{context}"
        );

        assert!(p.send(s.route("slack"), &resolve()).await.unwrap());
        let b = s.slack.last().json();
        let header = b["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(header.contains("RESOLVED"), "{header}");
        assert!(b.to_string().contains("*Resolution*"), "{b}");

        s.slack.script(&[
            (400, "invalid_payload", None),
            (404, "no_service", None),
            (410, "channel_is_archived", None),
            (429, "rate_limited", Some("3")),
            (500, "rollup_error", None),
        ]);
        for want in ["invalid_payload", "no_service", "channel_is_archived"] {
            let e = p.send(s.route("slack"), &trigger()).await.unwrap_err();
            assert!(!e.retryable && e.message.contains(want), "{e:?}");
            assert!(
                !e.message.contains("XXXXXXXX") && !e.message.contains(&s.slack.url),
                "the URL is a secret: {}",
                e.message
            );
        }
        let e = p.send(s.route("slack"), &trigger()).await.unwrap_err();
        assert!(
            e.retryable && e.retry_after == Some(Duration::from_secs(3)),
            "{e:?}"
        );
        let e = p.send(s.route("slack"), &trigger()).await.unwrap_err();
        assert!(e.retryable, "{e:?}");
    })
    .await
}

#[tokio::test]
async fn webhook_route_from_a_file_posts_the_notification_and_hides_the_url() {
    within(async {
        let s = Setup::new().await;
        let p = Pagers::new();
        assert!(p.send(s.route("hook"), &trigger()).await.unwrap());
        let got = s.hook.last();
        assert_eq!(got.uri.query(), Some("token=s3cr3t"));
        let b = got.json();
        assert_eq!(b["event"], "trigger");
        assert_eq!(b["values"][0], "verification after step restart: 0.073 → 0.061 → 0.055 → 0.052 (needs below 0.05): failed");
        s.hook.script(&[(403, "forbidden", None)]);
        let e = p.send(s.route("hook"), &trigger()).await.unwrap_err();
        assert!(!e.retryable && !e.message.contains("s3cr3t"), "{e:?}");
        // Connection refused: retried, and the message does not carry the URL either.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let r = Route::new(
            "down",
            Transport::Slack { url: Some(remedyd::domain::policy::Secret::new(format!("http://127.0.0.1:{port}{SLACK_PATH}"))) },
            "env X",
            Duration::from_secs(2),
        );
        let e = p.send(&r, &trigger()).await.unwrap_err();
        assert!(e.retryable && !e.message.contains("XXXXXXXX"), "{e:?}");
    })
    .await
}

#[tokio::test]
async fn a_route_without_its_secret_records_and_sends_nothing() {
    within(async {
        let s = Setup::new().await;
        let p = Pagers::new();
        assert!(!p.send(s.route("pd-missing"), &trigger()).await.unwrap());
        assert!(!p.send(s.route("slack-missing"), &trigger()).await.unwrap());
        assert!(s.pd.all().is_empty() && s.slack.all().is_empty());
    })
    .await
}

#[tokio::test]
async fn outbox_retries_429_after_retry_after_and_gives_up_on_4xx_counting_it_failed() {
    within(async {
        let s = Setup::new().await;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        let t0 = story::at(0);
        let clock = ManualClock::new(t0);
        let metrics = Metrics::new();
        let shared = Arc::new(RwLock::new(Arc::new(s.rs.clone())));
        let mut c = Commit::default();
        c.outbox.push(("slack".into(), trigger()));
        c.outbox.push(("pd".into(), trigger()));
        store.commit(c).await.unwrap();
        s.slack.script(&[(429, "rate_limited", Some("30"))]);
        s.pd.script(&[(
            400,
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["x"]}"#,
            None,
        )]);
        let pagers = Pagers::new();
        remedyd::adapters::escalate::outbox::deliver_due(
            &store, &pagers, &shared, &clock, &metrics,
        )
        .await
        .unwrap();
        let text = metrics.encode();
        assert!(
            text.contains(r#"remedyd_pages_total{route="pd",result="failed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"remedyd_pages_total{route="slack",result="retry"} 1"#),
            "{text}"
        );
        assert_eq!(
            store.outbox_depth().await.unwrap(),
            1,
            "the Slack page waits"
        );
        assert!(
            store
                .outbox_due(t0.plus(Duration::from_secs(29)), 10)
                .await
                .unwrap()
                .is_empty(),
            "Retry-After is honoured"
        );
        clock.advance(Duration::from_secs(31));
        remedyd::adapters::escalate::outbox::deliver_due(
            &store, &pagers, &shared, &clock, &metrics,
        )
        .await
        .unwrap();
        assert!(
            metrics
                .encode()
                .contains(r#"remedyd_pages_total{route="slack",result="delivered"} 1"#)
        );
        assert_eq!(store.outbox_depth().await.unwrap(), 0);
        assert_eq!(s.slack.all().len(), 2);
        assert_eq!(s.pd.all().len(), 1, "a 400 is not retried");
        let _: Timestamp = t0;
    })
    .await
}

fn load_err(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("secret.url"), "not-a-url-but-a-s3cr3t").unwrap();
    let yaml = yaml.replace("DIR", &dir.path().display().to_string());
    std::fs::write(dir.path().join("policies/p.yaml"), yaml).unwrap();
    match remedyd::load::ruleset::load(
        &dir.path().join("rules"),
        &dir.path().join("policies"),
        &Executors::builtin(),
    ) {
        Ok(_) => panic!("loaded"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn misconfigured_routes_are_errors_with_file_and_line() {
    let e = load_err(
        "routes:\n  - name: s\n    type: slack\n    url: https://hooks.slack.com/services/x\n",
    );
    assert!(
        e.contains("p.yaml:2: routes.url") && e.contains("a Slack webhook URL is a secret"),
        "{e}"
    );
    let e = load_err("routes:\n  - name: p\n    type: pagerduty\n");
    assert!(
        e.contains("needs exactly one of `routing_key_env` or `routing_key_file`"),
        "{e}"
    );
    let e =
        load_err("routes:\n  - name: o\n    type: opsgenie\n    api_key_env: A\n    url_env: B\n");
    assert!(
        e.contains("`url_env` does not apply to a opsgenie route"),
        "{e}"
    );
    let e = load_err("routes:\n  - name: x\n    type: teams\n    url: http://x\n");
    assert!(
        e.contains("unknown route type \"teams\"; valid: webhook, pagerduty, opsgenie, slack"),
        "{e}"
    );
    let e = load_err("routes:\n  - name: w\n    type: webhook\n    url_file: DIR/secret.url\n");
    assert!(
        e.contains("the URL from file") && e.contains("must start with http"),
        "{e}"
    );
    assert!(
        !e.contains("s3cr3t"),
        "the secret is not in the message: {e}"
    );
    let e = load_err(
        "routes:\n  - name: p\n    type: pagerduty\n    routing_key_env: K\ndigest: {route: p, at: \"08:00\"}\n",
    );
    assert!(
        e.contains("digest.route") && e.contains("would page someone"),
        "{e}"
    );
    let e = load_err(
        "routes:\n  - name: w\n    type: webhook\n    url: http://x\ndigest: {route: w, at: \"8am\"}\n",
    );
    assert!(e.contains("digest.at") && e.contains("HH:MM"), "{e}");
    let e = load_err("digest: {route: nowhere, at: \"08:00\"}\n");
    assert!(e.contains("route \"nowhere\" is not defined"), "{e}");
}

/// The escalated story's trigger, with an evidence step that read `lines` log lines (about 1 MB
/// for 16 000), as `kube_evidence` records it.
fn trigger_with_evidence(lines: usize) -> Notification {
    let mut n = trigger();
    let log: Vec<String> = (0..lines)
        .map(|i| {
            format!(
                "2026-03-01T11:59:{:02}Z level=error msg=\"upstream timeout\" line={i}",
                i % 60
            )
        })
        .collect();
    let entry = serde_json::json!({
        "at": n.started_at, "kind": "step_ok", "message": "step pod-evidence succeeded",
        "data": {"summary": "python-services/checkout: 2 pod(s), 1 ready", "retryable": false,
                 "evidence": {"pods": [{"name": "checkout-7d9", "restarts": 5}],
                              "usage": {"checkout-7d9": {"app": {"cpu_millicores": 870, "memory_mib": 495.2}}},
                              "logs": {"checkout-7d9": {"app": log.join("\n")}}}}
    });
    n.history.push(serde_json::from_value(entry).unwrap());
    n
}

const PAGE: &str = "https://remedyd.example.com/ops/incidents/INC-2026-0042";

#[tokio::test]
async fn every_pager_carries_the_evidence_and_the_incident_link_within_its_limits() {
    within(async {
        let s = Setup::new().await;
        let p = remedyd::adapters::escalate::Linked::new(
            Arc::new(Pagers::new()),
            "https://remedyd.example.com/ops".into(),
        );
        let n = trigger_with_evidence(16_000);
        let note = format!("all of it: {PAGE}");
        for route in ["pd", "og", "slack", "hook"] {
            assert!(p.send(s.route(route), &n).await.unwrap(), "{route}");
        }

        // PagerDuty: the whole event within 512 KB, the evidence in custom_details, cut last.
        let pd = s.pd.last();
        assert!(pd.body.len() <= 512 * 1024, "{} bytes", pd.body.len());
        let b = pd.json();
        assert_eq!(b["client_url"], PAGE);
        assert_eq!(b["links"][0]["href"], PAGE);
        let d = &b["payload"]["custom_details"];
        assert_eq!(d["incident_url"], PAGE);
        let ev = d["evidence"].as_str().unwrap();
        assert!(
            ev.starts_with("== 12:00:00 step pod-evidence: python-services/checkout"),
            "{}",
            &ev[..100]
        );
        assert!(ev.contains("msg=\"upstream timeout\" line=0\n"));
        assert!(ev.ends_with(&note), "{}", &ev[ev.len() - 200..]);

        // Opsgenie: description, details (keys and values together) and the note, each within
        // its limit and each saying where the rest is.
        let og = s.og.last().json();
        let chars = |v: &serde_json::Value| v.as_str().unwrap().chars().count();
        assert!(chars(&og["description"]) <= 15_000);
        assert!(og["description"].as_str().unwrap().ends_with(&note));
        let details = og["details"].as_object().unwrap();
        let total: usize = details
            .iter()
            .map(|(k, v)| k.chars().count() + chars(v))
            .sum();
        assert!(total <= 8_000, "{total}");
        assert_eq!(details["incident_url"], PAGE);
        assert!(details["evidence"].as_str().unwrap().ends_with(&note));
        assert!(chars(&og["note"]) <= 25_000);
        let og_note = og["note"].as_str().unwrap();
        assert!(
            og_note.contains("usage.checkout-7d9.app.cpu_millicores: 870\n")
                || og_note.contains("logs.checkout-7d9.app:\n")
        );
        assert!(og_note.ends_with(&note));

        // Slack: at most 50 blocks, no section over 3 000 characters, the evidence in sections
        // and the last block links to the incident.
        let sl = s.slack.last().json();
        let blocks = sl["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        let texts: Vec<&str> = blocks
            .iter()
            .filter_map(|b| b["text"]["text"].as_str())
            .collect();
        assert!(texts.iter().all(|t| t.chars().count() <= 3_000));
        assert!(sl["text"].as_str().unwrap().chars().count() <= 40_000);
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("*Evidence*\n== 12:00:00 step pod-evidence"))
        );
        assert!(texts.iter().any(|t| t.ends_with(&note)));
        assert_eq!(
            texts.last().copied(),
            Some(format!("<{PAGE}|Open INC-2026-0042 in remedyd>").as_str())
        );

        // The webhook: the notification whole (no limit of its own), with the link.
        let hook = s.hook.last().json();
        assert_eq!(hook["url"], PAGE);
        let logged = hook["history"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| e["data"]["evidence"]["logs"]["checkout-7d9"]["app"].as_str())
            .unwrap();
        assert!(logged.ends_with("line=15999"));

        // Without external_url the pages name the review command instead.
        assert!(Pagers::new().send(s.route("pd"), &n).await.unwrap());
        let b = s.pd.last().json();
        assert!(b.get("client_url").is_none());
        assert!(
            b["payload"]["custom_details"]["evidence"]
                .as_str()
                .unwrap()
                .ends_with("all of it: see `remedyd review INC-2026-0042`")
        );
    })
    .await
}
