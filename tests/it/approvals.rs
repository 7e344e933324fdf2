//! Human approval of a step (issue 15 §2) end to end: Alertmanager webhook → remedyd
//! (in-process, enforce, SQLite, its real pagers) → the approval request through the Slack Web
//! API route to a loopback `chat.postMessage` receiver (Approve/Deny buttons) → decisions over
//! real HTTP: Slack clicks signed in the test (v0 HMAC-SHA256 with the signing secret) and the
//! token API → the approved `kube_scale` through the real `kube::Client` to the fake API server.
//! Forged, stale, replayed, unlisted and late requests are refused, and nothing is written to the
//! cluster for them. Time is a manual clock: the timeout is reached by moving it, not by waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remedyd::domain::time::{Clock, ManualClock};

use crate::support::daemon::{Daemon, WAIT, payload};
use crate::support::fake_kube::{FakeKube, fixtures};

const NS: &str = "python-services";
const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TOKEN: &str = "write-token-approvals";
const READ_TOKEN: &str = "read-token-approvals";
const SLACK_TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}", namespace: python-services}
    policy: service
"#;

type Kept = Arc<Mutex<Vec<serde_json::Value>>>;

/// A `chat.postMessage` stand-in that keeps every message and answers `ok` with a `ts`, and a
/// `chat.update` one that keeps every edit.
async fn slack_api() -> (String, Kept, Kept) {
    let got: Kept = Arc::default();
    let edits: Kept = Arc::default();
    let g = got.clone();
    let e = edits.clone();
    let app = axum::Router::new()
        .route(
            "/api/chat.update",
            axum::routing::post(move |body: String| {
                let e = e.clone();
                async move {
                    let b: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let answer =
                        serde_json::json!({"ok": true, "channel": b["channel"], "ts": b["ts"]});
                    e.lock().unwrap().push(b);
                    answer.to_string()
                }
            }),
        )
        .route(
            "/api/chat.postMessage",
            axum::routing::post(move |body: String| {
                let g = g.clone();
                async move {
                    let b: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let mut g = g.lock().unwrap();
                    g.push(b);
                    let ts = format!("1764320400.{:06}", 100 * g.len());
                    serde_json::json!({"ok": true, "channel": "C0OPS12345", "ts": ts}).to_string()
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got, edits)
}

fn policies(dir: &std::path::Path, api: &str, approve: &str) -> String {
    std::fs::write(dir.join("slack.token"), format!("{SLACK_TOKEN}\n")).unwrap();
    format!(
        r##"
routes:
  - name: chat
    type: slack
    token_file: {}/slack.token
    channel: "#ops"
    url: {api}
    timeout: 2s
policies:
  - name: service
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: scale
            action: kube_scale
            with: {{by: 1, max: 6, wait: 1s}}
            verify: {{resolved_within: 5m}}
            on_failure: escalate
            approve: {{{approve}}}
"##,
        dir.display()
    )
}

struct World {
    fake: FakeKube,
    d: Daemon,
    clock: Arc<ManualClock>,
    slack: Kept,
    edits: Kept,
    kdir: tempfile::TempDir,
    api: String,
}

const APPROVE: &str = "approvers: [alice, U024BE7LH], timeout: 10m, notify: [chat]";

async fn world(approve: &str) -> World {
    let fake = FakeKube::start().await;
    fake.put(fixtures::deployment(
        NS,
        "checkout",
        3,
        "registry.local/checkout:1.0",
    ));
    fake.step();
    let kdir = tempfile::tempdir().unwrap();
    let (api, slack, edits) = slack_api().await;
    let clock = Arc::new(ManualClock::new(
        remedyd::adapters::clock::SystemClock.now(),
    ));
    let d = start(&fake, &kdir, &api, clock.clone(), approve, None).await;
    World {
        fake,
        d,
        clock,
        slack,
        edits,
        kdir,
        api,
    }
}

async fn start(
    fake: &FakeKube,
    kdir: &tempfile::TempDir,
    api: &str,
    clock: Arc<ManualClock>,
    approve: &str,
    dir: Option<tempfile::TempDir>,
) -> Daemon {
    let kubeconfig = fake.kubeconfig(kdir.path());
    let p = policies(kdir.path(), api, approve);
    Daemon::start_on(RULES, &p, dir, clock, true, |c| {
        c.kubeconfig = Some(kubeconfig);
        c.webhook_token = Some(TOKEN.into());
        c.read_token = Some(READ_TOKEN.into());
        c.slack_signing_secret = Some(SECRET.into());
    })
    .await
}

fn writes(fake: &FakeKube) -> Vec<String> {
    fake.requests()
        .iter()
        .filter(|r| !["GET", "LIST", "WATCH"].contains(&r.method.as_str()))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Polls until `f` holds (bounded by WAIT).
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl World {
    /// Fires the alert and waits for the incident to await approval; its id.
    async fn awaiting(&self) -> String {
        let at = self.clock.now().to_rfc3339();
        let (status, _) = self
            .d
            .post_authed(
                &payload("firing", "checkout", "warning", "fp-1", &at),
                TOKEN,
            )
            .await;
        assert_eq!(status, 200);
        until("the incident to await approval", async || {
            let inc = self.d.get("/api/v1/incidents").await["incidents"][0].clone();
            (inc["phase"]["phase"] == "awaiting_approval")
                .then(|| inc["id"].as_str().unwrap().to_string())
        })
        .await
    }

    /// The Slack message with the buttons, once the outbox sent it.
    async fn request(&self) -> serde_json::Value {
        until("the approval request in Slack", async || {
            self.slack.lock().unwrap().first().cloned()
        })
        .await
    }

    /// A Slack click signed as Slack signs it, at `at` (Unix seconds); (status, JSON).
    async fn click(&self, body: &str, at: i64, secret: &str) -> (u16, serde_json::Value) {
        let sig = sign(secret, at, body);
        self.send(body, at, &sig).await
    }

    async fn send(&self, body: &str, at: i64, sig: &str) -> (u16, serde_json::Value) {
        let r = self
            .d
            .http
            .post(format!("{}/api/v1/slack/interactions", self.d.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", at.to_string())
            .header("x-slack-signature", sig)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    async fn api(
        &self,
        id: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .d
            .http
            .post(format!("{}/api/v1/incidents/{id}/approvals", self.d.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    }

    /// Lets a started rollout finish and stops remedyd while the fake API server still answers:
    /// an action left waiting on a server that is gone would outlive the test.
    async fn end(self) {
        self.fake.step();
        self.fake.step();
        self.d.stop().await;
    }

    fn now_secs(&self) -> i64 {
        self.clock.now().0 / 1000
    }
}

/// `v0=` + hex(HMAC-SHA256(secret, "v0:{at}:{body}")).
fn sign(secret: &str, at: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("v0:{at}:{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

/// The form body Slack posts for a click on `action_id` with `value` by `user`.
fn click_body(action_id: &str, value: &str, user: (&str, &str)) -> String {
    let payload = serde_json::json!({
        "type": "block_actions",
        "user": {"id": user.0, "username": user.1, "name": user.1, "team_id": "T0001"},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "remedyd_approval",
                     "value": value, "action_ts": "1764320400.000100"}],
        "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
    });
    let mut enc = String::new();
    for b in payload.to_string().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                enc.push(b as char)
            }
            b' ' => enc.push('+'),
            _ => enc.push_str(&format!("%{b:02X}")),
        }
    }
    format!("payload={enc}")
}

/// The buttons of the request: (action_id, value) each.
fn buttons(msg: &serde_json::Value) -> Vec<(String, String)> {
    msg["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_slack_click_approves_and_forged_stale_unlisted_and_replayed_ones_are_refused() {
    let w = world(APPROVE).await;
    let id = w.awaiting().await;
    let msg = w.request().await;
    let b = buttons(&msg);
    let approval = format!("{id}/1/0");
    assert_eq!(
        b,
        vec![
            ("remedyd_approve".to_string(), approval.clone()),
            ("remedyd_deny".to_string(), approval.clone())
        ],
        "{msg:#}"
    );
    assert!(
        writes(&w.fake).is_empty(),
        "nothing written before approval"
    );
    let approve = click_body("remedyd_approve", &approval, ("U024BE7LH", "carol"));
    let now = w.now_secs();
    // Forged: signed with another secret, or the body changed after signing.
    let (s, j) = w.click(&approve, now, "not-the-secret").await;
    assert_eq!(s, 401, "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("X-Slack-Signature does not match"),
        "{j}"
    );
    let sig = sign(SECRET, now, &approve);
    let tampered = click_body("remedyd_approve", &approval, ("U024BE7LH", "mallory"));
    assert_eq!(w.send(&tampered, now, &sig).await.0, 401);
    // Stale: signed correctly, but more than 5 minutes old (or ahead).
    let (s, j) = w.click(&approve, now - 301, SECRET).await;
    assert_eq!(s, 401, "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("older or newer than 5 minutes"),
        "{j}"
    );
    assert_eq!(w.click(&approve, now + 301, SECRET).await.0, 401);
    // Signed, but by someone not on the allowlist.
    let stranger = click_body("remedyd_approve", &approval, ("U999", "mallory"));
    let (s, j) = w.click(&stranger, now, SECRET).await;
    assert_eq!(s, 403, "{j}");
    assert!(
        writes(&w.fake).is_empty(),
        "nothing written for refused clicks"
    );
    // The real click.
    let (s, j) = w.send(&approve, now, &sig).await;
    assert_eq!(s, 200, "{j}");
    assert!(
        j["text"]
            .as_str()
            .unwrap()
            .contains("approved by U024BE7LH via slack"),
        "{j}"
    );
    // Replayed: the very same signed request again.
    let (s, j) = w.send(&approve, now, &sig).await;
    assert_eq!(s, 401, "{j}");
    assert!(j["error"].as_str().unwrap().contains("replayed"), "{j}");
    // The approved step wrote to the cluster, once.
    let scaled = until("the scale", async || {
        let w = writes(&w.fake);
        (!w.is_empty()).then_some(w)
    })
    .await;
    assert!(
        scaled.iter().all(|r| r.contains("deployments/checkout")),
        "{scaled:?}"
    );
    let dep = w.fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    assert_eq!(dep["spec"]["replicas"], 4);
    // Who, when, through which channel: in the timeline and the review.
    let tl = w.d.timeline(&id).await;
    let decided = tl
        .iter()
        .find(|e| e["kind"] == "approval_decided")
        .expect("decided entry");
    assert_eq!(decided["data"]["by"], "U024BE7LH");
    assert_eq!(decided["data"]["channel"], "slack");
    let review =
        w.d.http
            .get(format!("{}/incidents/{id}/review.md", w.d.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(
        review.contains("approved by U024BE7LH via slack"),
        "{review}"
    );
    // A second click on the same (now past) step is refused as decided.
    let later = click_body("remedyd_deny", &approval, ("U024BE7LH", "carol"));
    let (s, j) = w.click(&later, w.now_secs(), SECRET).await;
    assert_eq!(s, 409, "{j}");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_cannot_decide_and_a_denied_step_writes_nothing() {
    let w = world(APPROVE).await;
    let id = w.awaiting().await;
    let deny =
        serde_json::json!({"decision": "deny", "by": "alice", "comment": "not during the sale"});
    let (s, _) = w.api(&id, READ_TOKEN, deny.clone()).await;
    assert_eq!(s, 401, "a read-only token must not decide");
    let (s, j) = w
        .api(
            &id,
            TOKEN,
            serde_json::json!({"decision": "approve", "by": "mallory"}),
        )
        .await;
    assert_eq!(s, 403, "{j}");
    let (s, j) = w.api(&id, TOKEN, deny).await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["state"], "denied");
    w.d.wait_incidents("escalated", |l| l[0]["status"] == "escalated")
        .await;
    let tl = serde_json::to_string(&w.d.timeline(&id).await).unwrap();
    assert!(tl.contains("denied by alice via api"), "{tl}");
    assert!(tl.contains("not during the sale"), "{tl}");
    assert!(writes(&w.fake).is_empty(), "{:?}", writes(&w.fake));
    let (s, j) = w
        .api(
            &id,
            TOKEN,
            serde_json::json!({"decision": "approve", "by": "alice"}),
        )
        .await;
    assert_eq!(s, 409, "{j}");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_after_the_timeout_is_refused_and_the_incident_escalates() {
    let w = world(APPROVE).await;
    let id = w.awaiting().await;
    let approval = format!("{id}/1/0");
    w.clock.advance(Duration::from_secs(600));
    w.d.wait_incidents("escalated", |l| l[0]["status"] == "escalated")
        .await;
    let (s, j) = w
        .api(
            &id,
            TOKEN,
            serde_json::json!({"decision": "approve", "by": "alice"}),
        )
        .await;
    assert_eq!(s, 409, "{j}");
    let body = click_body("remedyd_approve", &approval, ("U024BE7LH", "carol"));
    let (s, j) = w.click(&body, w.now_secs(), SECRET).await;
    assert_eq!(s, 409, "{j}");
    assert!(j["text"].as_str().unwrap().contains("timed_out"), "{j}");
    let tl = serde_json::to_string(&w.d.timeline(&id).await).unwrap();
    assert!(tl.contains("approval_timed_out"), "{tl}");
    assert!(writes(&w.fake).is_empty(), "{:?}", writes(&w.fake));
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_survives_a_restart_and_two_person_needs_two_people() {
    let w = world(&format!("{APPROVE}, two_person: true")).await;
    let id = w.awaiting().await;
    let (s, j) = w
        .api(
            &id,
            TOKEN,
            serde_json::json!({"decision": "approve", "by": "alice"}),
        )
        .await;
    assert_eq!(s, 202, "{j}");
    let (s, j) = w
        .api(
            &id,
            TOKEN,
            serde_json::json!({"decision": "approve", "by": "alice"}),
        )
        .await;
    assert_eq!(s, 409, "the same person twice: {j}");
    let World {
        fake,
        d,
        clock,
        slack,
        edits,
        kdir,
        api,
    } = w;
    let dir = d.stop().await;
    assert!(writes(&fake).is_empty());
    let d = start(
        &fake,
        &kdir,
        &api,
        clock.clone(),
        &format!("{APPROVE}, two_person: true"),
        Some(dir),
    )
    .await;
    let w = World {
        fake,
        d,
        clock,
        slack,
        edits,
        kdir,
        api,
    };
    let approval = format!("{id}/1/0");
    let body = click_body("remedyd_approve", &approval, ("U024BE7LH", "carol"));
    let (s, j) = w.click(&body, w.now_secs(), SECRET).await;
    assert_eq!(s, 200, "{j}");
    until("the scale after the restart", async || {
        (!writes(&w.fake).is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        w.slack
            .lock()
            .unwrap()
            .iter()
            .filter(|m| !buttons(m).is_empty())
            .count(),
        1,
        "asked once, not again after the restart"
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_form_approves_a_waiting_step_with_the_write_token_only() {
    let w = world(APPROVE).await;
    let id = w.awaiting().await;
    let page =
        w.d.http
            .get(format!("{}/incidents/{id}", w.d.url))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(page.contains("id=approval-form"), "{page}");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |token: &str| {
        vec![
            ("decision", "approve".to_string()),
            ("by", "alice".to_string()),
            ("comment", "checked the graphs".to_string()),
            ("token", token.to_string()),
        ]
    };
    let url = format!("{}/ui/incidents/{id}/approval", w.d.url);
    let r = no_redirects
        .post(&url)
        .form(&form(READ_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the read token cannot approve");
    let r = no_redirects
        .post(&url)
        .form(&form(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(&format!("/incidents/{id}?notice=")), "{to}");
    until("the scale", async || {
        (!writes(&w.fake).is_empty()).then_some(())
    })
    .await;
    let tl = w.d.timeline(&id).await;
    let d = tl.iter().find(|e| e["kind"] == "approval_decided").unwrap();
    assert_eq!(d["data"]["channel"], "dashboard");
    assert_eq!(d["data"]["comment"], "checked the graphs");
    w.end().await;
}

/// Two replicas on one PostgreSQL 15, the same signed Slack click sent to both at once (Slack
/// retries, or a load balancer duplicating): one decides, the other answers 409, and the step
/// runs exactly once, on whichever replica leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_receiving_the_same_click_decide_once_and_the_step_runs_once() {
    let pg = crate::support::services::Postgres::start().await;
    let policy = r#"
policies:
  - name: service
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: fix
            action: test
            verify: {resolved_within: 5m}
            approve: {approvers: [U024BE7LH], timeout: 10m, notify: [platform]}
"#;
    let url = pg.url();
    let replica = |url: String| async move {
        Daemon::start_on(
            RULES,
            policy,
            None,
            Arc::new(remedyd::adapters::clock::SystemClock),
            false,
            move |c| {
                c.store = url;
                c.webhook_token = Some(TOKEN.into());
                c.slack_signing_secret = Some(SECRET.into());
            },
        )
        .await
    };
    let a = replica(url.clone()).await;
    let b = replica(url).await;
    let at = remedyd::adapters::clock::SystemClock.now();
    let (s, j) = a
        .post_authed(
            &payload("firing", "checkout", "warning", "fp-1", &at.to_rfc3339()),
            TOKEN,
        )
        .await;
    assert_eq!(s, 200, "{j}");
    let id = until("the incident to await approval", async || {
        let inc = b.get("/api/v1/incidents").await["incidents"][0].clone();
        (inc["phase"]["phase"] == "awaiting_approval")
            .then(|| inc["id"].as_str().unwrap().to_string())
    })
    .await;
    let body = click_body(
        "remedyd_approve",
        &format!("{id}/1/0"),
        ("U024BE7LH", "carol"),
    );
    let now = remedyd::adapters::clock::SystemClock.now().0 / 1000;
    let sig = sign(SECRET, now, &body);
    let send = |d: &Daemon| {
        d.http
            .post(format!("{}/api/v1/slack/interactions", d.url))
            .header("x-slack-request-timestamp", now.to_string())
            .header("x-slack-signature", sig.clone())
            .body(body.clone())
            .send()
    };
    let (ra, rb) = tokio::join!(send(&a), send(&b));
    let mut codes = [ra.unwrap().status().as_u16(), rb.unwrap().status().as_u16()];
    codes.sort();
    assert_eq!(
        codes,
        [200, 409],
        "one replica decides, the other is told it is decided"
    );
    until("the step to run", async || {
        (a.exec.count() + b.exec.count() >= 1).then_some(())
    })
    .await;
    // Past a few engine passes on both replicas: a second run would have started by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.exec.count() + b.exec.count(), 1, "exactly once");
    let tl = a.timeline(&id).await;
    let decided = tl
        .iter()
        .filter(|e| e["kind"] == "approval_decided")
        .count();
    let started = tl.iter().filter(|e| e["kind"] == "step_started").count();
    assert_eq!((decided, started), (1, 1), "{tl:#?}");
    a.stop().await;
    b.stop().await;
}

impl World {
    /// The edits of the request's message, once the first arrived and a few outbox passes
    /// later (a second one would have been sent by then).
    async fn edits_settled(&self) -> Vec<serde_json::Value> {
        until("the request's message to be edited", async || {
            (!self.edits.lock().unwrap().is_empty()).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.edits.lock().unwrap().clone()
    }
}

/// The edit replaces the request (same channel and `ts`), has no buttons left, and says `what`.
fn assert_edit(edits: &[serde_json::Value], request: &serde_json::Value, what: &[&str]) {
    assert_eq!(
        edits.len(),
        1,
        "exactly one edit per final decision: {edits:#?}"
    );
    let e = &edits[0];
    assert_eq!(e["channel"], "C0OPS12345", "{e:#}");
    assert_eq!(
        e["ts"], "1764320400.000100",
        "the request's own message: {e:#}"
    );
    assert!(buttons(e).is_empty(), "no buttons left: {e:#}");
    assert!(!buttons(request).is_empty());
    let all = e.to_string();
    for w in what {
        assert!(all.contains(w), "{w:?} not in {e:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_approval_replaces_the_request_message_once() {
    let w = world(APPROVE).await;
    let id = w.awaiting().await;
    let request = w.request().await;
    let approval = format!("{id}/1/0");
    let body = click_body("remedyd_approve", &approval, ("U024BE7LH", "carol"));
    let (s, j) = w.click(&body, w.now_secs(), SECRET).await;
    assert_eq!(s, 200, "{j}");
    let edits = w.edits_settled().await;
    assert_edit(
        &edits,
        &request,
        &[
            "✅ APPROVED",
            &id,
            "approved by U024BE7LH via slack",
            "Approval approved",
        ],
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_denial_and_a_timeout_each_replace_the_request_message_once() {
    let w = world(APPROVE).await;
    let id = w.awaiting().await;
    let request = w.request().await;
    let deny =
        serde_json::json!({"decision": "deny", "by": "alice", "comment": "not during the sale"});
    let (s, j) = w.api(&id, TOKEN, deny).await;
    assert_eq!(s, 200, "{j}");
    let edits = w.edits_settled().await;
    assert_edit(
        &edits,
        &request,
        &[
            "⛔ DENIED",
            "denied by alice via api",
            "not during the sale",
        ],
    );
    w.end().await;

    let w = world(APPROVE).await;
    let _id = w.awaiting().await;
    let request = w.request().await;
    w.clock.advance(Duration::from_secs(600));
    w.d.wait_incidents("escalated", |l| l[0]["status"] == "escalated")
        .await;
    let edits = w.edits_settled().await;
    assert_edit(
        &edits,
        &request,
        &["⌛ TIMED OUT", "Approval timed_out", "Nobody decided"],
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_incident_voids_its_approval_and_replaces_the_request_message_once() {
    let w = world(APPROVE).await;
    let _id = w.awaiting().await;
    let request = w.request().await;
    let at = w.clock.now().to_rfc3339();
    let (s, _) =
        w.d.post_authed(
            &payload("resolved", "checkout", "warning", "fp-1", &at),
            TOKEN,
        )
        .await;
    assert_eq!(s, 200);
    w.d.wait_incidents("resolved", |l| l[0]["status"] == "resolved")
        .await;
    let edits = w.edits_settled().await;
    assert_edit(&edits, &request, &["NO LONGER NEEDED", "Approval void"]);
    assert!(writes(&w.fake).is_empty(), "{:?}", writes(&w.fake));
    w.end().await;
}
