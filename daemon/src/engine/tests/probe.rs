//! HTTP health probes (issue 13 §2) through the real engine, against real loopback servers: the
//! `http_probe` evidence action and `verify: {http: …}`, with `probe_allow`, redirects, timeouts
//! and the body cap.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// What the test server answers.
#[derive(Clone)]
enum Reply {
    /// A status and a body.
    Status(u16, String),
    /// A 302 to this URL.
    Redirect(String),
    /// Reads the request and never answers.
    Hang,
}

/// A loopback HTTP server answering from a script (the last answer repeats), counting requests.
struct Server {
    addr: String,
    hits: Arc<AtomicUsize>,
}

impl Server {
    fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => buf.push(byte[0]),
                        _ => break,
                    }
                }
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let reply = script[n.min(script.len() - 1)].clone();
                std::thread::spawn(move || {
                    let (status, extra, body) = match reply {
                        Reply::Status(s, b) => (s, String::new(), b),
                        Reply::Redirect(to) => (302, format!("Location: {to}\r\n"), String::new()),
                        Reply::Hang => {
                            std::thread::sleep(Duration::from_secs(30));
                            return;
                        }
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(body.as_bytes());
                });
            }
        });
        Server { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn ok() -> Reply {
    Reply::Status(200, "status: ok".into())
}
fn unavailable() -> Reply {
    Reply::Status(503, "status: down".into())
}

/// A policy whose level 1 is `steps`; the probe URLs come from the alert's `service` label.
fn probe_policy(steps: &str) -> String {
    policy("", steps)
}

const VERIFY_HTTP: &str = r#"          - {name: fix, action: fix, verify: {http: "http://{{service}}/health", expect_status: 200, body_contains: ok, successes: 3, within: 2m, every: 10s}}"#;

async fn timeline(rig: &Rig) -> Vec<crate::domain::incident::Entry> {
    rig.store.timeline("INC-2026-0001").await.unwrap()
}

#[tokio::test]
async fn evidence_records_status_latency_and_a_capped_excerpt_and_the_ladder_goes_on() {
    within(async {
        let big = "x".repeat(100 * 1024);
        let server = Server::start(vec![Reply::Status(503, big)]);
        let steps = "          - {name: health, action: http_probe, with: {url: \"http://{{service}}/api/health/service/{{service}}\", expect_status: 200}}\n          - {name: fix, action: fix, verify: {resolved_within: 1m}}";
        let mut rig = Rig::probing(RULES, &probe_policy(steps), &[&server.addr]);
        rig.fire(&server.addr, "warning").await;
        assert_eq!(server.hits(), 1, "one GET");
        assert_eq!(rig.fix_calls(), 1, "a 503 is evidence, not a failure: the ladder went on");
        let tl = timeline(&rig).await;
        let e = tl
            .iter()
            .find(|e| e.kind == EntryKind::StepOk && e.message.contains("health"))
            .unwrap_or_else(|| panic!("the probe's evidence is recorded: {tl:#?}"));
        assert_eq!(e.data["status"], 503);
        assert_eq!(e.data["healthy"], false);
        assert!(e.data["latency_ms"].is_u64(), "{:?}", e.data);
        assert_eq!(e.data["body_excerpt"].as_str().unwrap().chars().count(), 512);
        assert_eq!(e.data["body_truncated"], true, "100 KiB is cut at 64 KiB");
        let summary = e.data["summary"].as_str().unwrap();
        assert!(summary.contains("→ 503") && summary.contains("expected 200"), "{summary}");
    })
    .await
}

#[tokio::test]
async fn verification_passes_after_n_consecutive_successes_only() {
    within(async {
        // A success, a failure (the streak restarts), then three in a row.
        let server = Server::start(vec![ok(), unavailable(), ok(), ok(), ok()]);
        let mut rig = Rig::probing(RULES, &probe_policy(VERIFY_HTTP), &[&server.addr]);
        rig.fire(&server.addr, "warning").await;
        assert_eq!(rig.fix_calls(), 1);
        rig.advance_by(Duration::from_secs(40), Duration::from_secs(10))
            .await;
        assert_eq!(server.hits(), 4);
        let tl = timeline(&rig).await;
        assert!(
            !tl.iter().any(|e| e.kind == EntryKind::Verified),
            "two in a row is not three: {tl:#?}"
        );
        rig.advance_by(Duration::from_secs(10), Duration::from_secs(10))
            .await;
        assert_eq!(server.hits(), 5);
        let tl = timeline(&rig).await;
        let v = tl
            .iter()
            .find(|e| e.kind == EntryKind::Verified)
            .unwrap_or_else(|| panic!("verified after three in a row: {tl:#?}"));
        assert_eq!(v.data["in_a_row"], 3);
        assert_eq!(v.data["status"], 200);
        assert!(tl.iter().any(|e| e.kind == EntryKind::Probe
            && e.message.contains("0 of 3 in a row")
            && e.message.contains("503")));
    })
    .await
}

#[tokio::test]
async fn verification_fails_at_the_deadline_when_the_server_keeps_answering_503() {
    within(async {
        let server = Server::start(vec![unavailable()]);
        let mut rig = Rig::probing(RULES, &probe_policy(VERIFY_HTTP), &[&server.addr]);
        rig.fire(&server.addr, "warning").await;
        rig.advance_by(Duration::from_secs(130), Duration::from_secs(10))
            .await;
        let tl = timeline(&rig).await;
        let f = tl
            .iter()
            .find(|e| e.kind == EntryKind::VerificationFailed)
            .unwrap_or_else(|| panic!("verification failed: {tl:#?}"));
        assert!(
            f.message.contains("/health did not answer 200"),
            "{}",
            f.message
        );
        assert_eq!(rig.status(&server.addr).await, "escalated");
        assert!(server.hits() >= 11, "probed every 10s: {}", server.hits());
    })
    .await
}

#[tokio::test]
async fn verification_fails_when_the_body_does_not_match() {
    within(async {
        let server = Server::start(vec![Reply::Status(200, "status: degraded".into())]);
        let mut rig = Rig::probing(RULES, &probe_policy(VERIFY_HTTP), &[&server.addr]);
        rig.fire(&server.addr, "warning").await;
        rig.advance_by(Duration::from_secs(130), Duration::from_secs(10))
            .await;
        let tl = timeline(&rig).await;
        assert!(
            tl.iter().any(|e| e.kind == EntryKind::VerificationFailed),
            "{tl:#?}"
        );
        assert!(
            tl.iter().any(|e| e.kind == EntryKind::Probe
                && e.message.contains("body does not contain \"ok\"")),
            "{tl:#?}"
        );
        assert!(!tl.iter().any(|e| e.kind == EntryKind::Verified));
    })
    .await
}

#[tokio::test]
async fn a_label_pointing_outside_probe_allow_is_refused_and_nothing_is_requested() {
    within(async {
        let allowed = Server::start(vec![ok()]);
        let elsewhere = Server::start(vec![ok()]);
        let steps = "          - {name: health, action: http_probe, with: {url: \"http://{{service}}/health\"}}\n".to_string()
            + VERIFY_HTTP;
        let mut rig = Rig::probing(RULES, &probe_policy(&steps), &[&allowed.addr]);
        // The alert's label names a host:port that is not allowed.
        rig.fire(&elsewhere.addr, "warning").await;
        rig.advance_by(Duration::from_secs(130), Duration::from_secs(10)).await;
        assert_eq!(elsewhere.hits(), 0, "no request reached the other server");
        assert_eq!(allowed.hits(), 0);
        let tl = timeline(&rig).await;
        let refused = tl
            .iter()
            .find(|e| e.kind == EntryKind::StepRefused)
            .unwrap_or_else(|| panic!("the evidence step was refused: {tl:#?}"));
        assert!(
            refused.message.contains(&elsewhere.addr) && refused.message.contains("probe_allow"),
            "the error names the host and the key: {}",
            refused.message
        );
        assert!(
            tl.iter().any(|e| e.kind == EntryKind::ProbeNoData
                && e.message.contains("not in probe_allow")),
            "{tl:#?}"
        );
        // Nobody can tell whether the fix helped: a human.
        assert!(tl.iter().any(|e| e.kind == EntryKind::VerificationNoData), "{tl:#?}");
        assert_eq!(rig.status(&elsewhere.addr).await, "escalated");
    })
    .await
}

#[tokio::test]
async fn an_empty_probe_allow_refuses_every_probe() {
    within(async {
        let server = Server::start(vec![ok()]);
        let steps = "          - {name: health, action: http_probe, with: {url: \"http://{{service}}/health\"}}\n          - {name: fix, action: fix, verify: {resolved_within: 1m}}";
        let mut rig = Rig::probing(RULES, &probe_policy(steps), &[]);
        rig.fire(&server.addr, "warning").await;
        assert_eq!(server.hits(), 0);
        let tl = timeline(&rig).await;
        assert!(
            tl.iter().any(|e| e.kind == EntryKind::StepRefused
                && e.message.contains("probe_allow is empty")),
            "{tl:#?}"
        );
    })
    .await
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    within(async {
        let target = Server::start(vec![ok()]);
        let redirecting = Server::start(vec![Reply::Redirect(format!(
            "http://{}/health",
            target.addr
        ))]);
        // Both are allowed: the redirect is still not followed.
        let mut rig = Rig::probing(
            RULES,
            &probe_policy(VERIFY_HTTP),
            &[&target.addr, &redirecting.addr],
        );
        rig.fire(&redirecting.addr, "warning").await;
        rig.advance_by(Duration::from_secs(130), Duration::from_secs(10))
            .await;
        assert!(redirecting.hits() >= 1);
        assert_eq!(target.hits(), 0, "the redirect was not followed");
        let tl = timeline(&rig).await;
        assert!(
            tl.iter().any(|e| e.kind == EntryKind::Probe
                && e.message.contains("302")
                && e.message.contains("not followed")),
            "{tl:#?}"
        );
        assert!(tl.iter().any(|e| e.kind == EntryKind::VerificationFailed));
    })
    .await
}

#[tokio::test]
async fn a_hung_server_times_out() {
    within(async {
        let server = Server::start(vec![Reply::Hang]);
        let steps = "          - {name: health, action: http_probe, with: {url: \"http://{{service}}/health\", timeout: 1s}}\n          - {name: fix, action: fix, verify: {resolved_within: 1m}}";
        let mut rig = Rig::probing(RULES, &probe_policy(steps), &[&server.addr]);
        let started = std::time::Instant::now();
        rig.fire(&server.addr, "warning").await;
        assert!(started.elapsed() < Duration::from_secs(10), "the probe gave up after its timeout");
        assert_eq!(server.hits(), 1);
        assert_eq!(rig.fix_calls(), 1, "no answer is evidence too: the ladder went on");
        let tl = timeline(&rig).await;
        let e = tl
            .iter()
            .find(|e| e.kind == EntryKind::StepOk && e.message.contains("health"))
            .unwrap_or_else(|| panic!("{tl:#?}"));
        assert!(
            e.data["error"].as_str().unwrap().contains("timed out after 1s"),
            "{:?}",
            e.data
        );
        assert_eq!(e.data["status"], serde_json::Value::Null);
    })
    .await
}
