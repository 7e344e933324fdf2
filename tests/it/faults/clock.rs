//! Clock jumps between restarts, through the clock seam: remedyd in-process on one SQLite store,
//! restarted with a clock set forward or back (`OffsetClock`: the system time plus an offset).
//!
//! What a jump does (README, `domain/policy/budget.rs`, `adapters/store/sqlite/queries.rs`,
//! `adapters/escalate/digest.rs`):
//! - budgets count the uses recorded after `now - per`; a use recorded "in the future" (the clock
//!   went back) still counts, so a backward jump never frees budget;
//! - breakers stay open while `now < opened_at + cooldown`: a backward jump keeps them open;
//! - a forward jump past a verification deadline ends verification (failed, escalated) and never
//!   runs the step again: the ledger holds its claim;
//! - the digest: the time it was last queued is stored (`counters.digest_sent`), so a backward
//!   jump past a digest already sent does not send it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use remedyd::adapters::action::Executors;
use remedyd::adapters::clock::SystemClock;
use remedyd::adapters::escalate::NotificationKind;
use remedyd::app::Parts;
use remedyd::domain::policy::Mode;
use remedyd::domain::time::{Clock, Timestamp};
use remedyd::load::config::Config;
use tokio_util::sync::CancellationToken;

use crate::support::daemon::{CapturingPager, ROUTES, TestExecutor, WAIT, alert_payload};
use crate::support::services::{wait_until, within};

/// The system time plus an offset that the test sets (a jump of the wall clock).
#[derive(Default)]
struct OffsetClock(AtomicI64);

impl OffsetClock {
    fn set(&self, offset_ms: i64) {
        self.0.store(offset_ms, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        Timestamp(SystemClock.now().0 + self.0.load(Ordering::SeqCst))
    }
}

/// remedyd in this process on `dir`'s store, with the test executor, a capturing pager and
/// `clock`.
struct Running {
    url: String,
    exec: Arc<TestExecutor>,
    pager: Arc<CapturingPager>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(
    dir: &std::path::Path,
    rules: &str,
    policies: &str,
    clock: Arc<OffsetClock>,
) -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
    std::fs::create_dir_all(dir.join("policies")).expect("policies dir");
    std::fs::write(dir.join("rules/rules.yaml"), rules).expect("rules");
    std::fs::write(dir.join("policies/routes.yaml"), ROUTES).expect("routes");
    std::fs::write(dir.join("policies/policies.yaml"), policies).expect("policies");
    let cfg = Config {
        rules: dir.join("rules"),
        policies: dir.join("policies"),
        store: format!("sqlite://{}", dir.join("r.db").display()),
        mode: Mode::Enforce,
        ..Config::default()
    };
    let exec = Arc::new(TestExecutor::default());
    let pager = Arc::new(CapturingPager::default());
    let mut executors = Executors::builtin_for(None);
    executors.register("test", exec.clone());
    let parts = Parts {
        executors,
        pager: pager.clone(),
        clock,
        source: None,
        faults: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(remedyd::app::run(cfg, parts, listener, stop.clone()));
    Running {
        url,
        exec,
        pager,
        stop,
        handle,
    }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("stops in time")
            .expect("no panic")
            .expect("stops cleanly");
    }

    async fn post(&self, body: String) -> serde_json::Value {
        let r = reqwest::Client::new()
            .post(format!("{}/webhook/alertmanager", self.url))
            .body(body)
            .send()
            .await
            .expect("POST the webhook");
        assert_eq!(r.status(), 200);
        r.json().await.expect("JSON")
    }

    async fn incidents(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value = reqwest::get(format!("{}/api/v1/incidents", self.url))
            .await
            .expect("GET incidents")
            .json()
            .await
            .expect("JSON");
        v["incidents"].as_array().cloned().unwrap_or_default()
    }

    async fn timeline(&self, id: &str) -> Vec<serde_json::Value> {
        let v: serde_json::Value = reqwest::get(format!("{}/api/v1/incidents/{id}", self.url))
            .await
            .expect("GET incident")
            .json()
            .await
            .expect("JSON");
        v["timeline"].as_array().cloned().unwrap_or_default()
    }

    fn digests(&self) -> usize {
        self.pager
            .all()
            .iter()
            .filter(|(_, n)| n.event == NotificationKind::Digest)
            .count()
    }
}

const DIGEST_RULES: &str = "rules: []\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_already_sent_is_not_sent_again_after_a_restart_with_the_clock_set_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    within(120, async {
        // The digest time: a whole minute 1 to 2 minutes ahead of the system clock; the test's
        // clock starts 1.5 s before it.
        let sys = SystemClock.now().0;
        let slot = (sys / 60_000 + 2) * 60_000;
        let clock = Arc::new(OffsetClock::default());
        clock.set(slot - 1_500 - sys);
        let t = time::OffsetDateTime::from_unix_timestamp(slot / 1000).expect("slot");
        let policies = format!(
            "digest: {{route: oncall, at: \"{:02}:{:02}\"}}\npolicies: []\n",
            t.hour(),
            t.minute()
        );
        let d = start(dir.path(), DIGEST_RULES, &policies, clock.clone()).await;
        wait_until(30, "the day's digest", || async { d.digests() == 1 }).await;
        d.stop().await;

        // Set back 5 s: the restarted daemon's clock reads before the slot it already sent.
        clock.set(clock.0.load(Ordering::SeqCst) - 5_000);
        assert!(
            clock.now().0 < slot,
            "the jump goes back past the digest time"
        );
        let d = start(dir.path(), DIGEST_RULES, &policies, clock.clone()).await;
        wait_until(
            30,
            "the clock to pass the digest time again by 3 s",
            || async { clock.now().0 > slot + 3_000 },
        )
        .await;
        assert_eq!(d.digests(), 0, "the same day's digest was sent twice");
        d.stop().await;
    })
    .await;
}

const LADDER_RULES: &str = r#"rules:
  - name: error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}"}
    policy: restart
"#;

/// A one-step `test` ladder; `extra` is added to the step (a budget) and `limits` to the file.
fn ladder(extra: &str, limits: &str) -> String {
    format!(
        r#"{limits}
policies:
  - name: restart
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: restart
            action: test
{extra}            verify: {{resolved_within: 10m}}
            on_failure: escalate
"#
    )
}

/// One incident on `checkout` whose step runs with `outcome` (and is resolved), then a restart
/// with the clock moved by `jump_ms` and a new alert on the same target. Returns the second
/// daemon's step count and the second incident's timeline.
async fn act_jump_act(
    policies: &str,
    outcome: bool,
    jump_ms: i64,
) -> (usize, Vec<serde_json::Value>) {
    let labels = serde_json::json!({"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"});
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(OffsetClock::default());
    let d = start(dir.path(), LADDER_RULES, policies, clock.clone()).await;
    d.exec.script(&[outcome]);
    let first = clock.now().to_rfc3339();
    d.post(alert_payload("firing", labels.clone(), "fp-1", &first))
        .await;
    wait_until(30, "the first step", || async { d.exec.count() == 1 }).await;
    d.post(alert_payload("resolved", labels.clone(), "fp-1", &first))
        .await;
    wait_until(30, "the first incident resolved", || async {
        d.incidents()
            .await
            .iter()
            .all(|i| i["status"] == "resolved")
    })
    .await;
    d.stop().await;

    clock.set(jump_ms);
    let d = start(dir.path(), LADDER_RULES, policies, clock.clone()).await;
    let again = clock.now().to_rfc3339();
    d.post(alert_payload("firing", labels, "fp-2", &again))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let id = loop {
        let list = d.incidents().await;
        if let Some(i) = list.iter().find(|i| i["status"] != "resolved") {
            break i["id"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second incident: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_until(30, "the second incident's step decided", || async {
        d.timeline(&id)
            .await
            .iter()
            .any(|e| e["kind"] == "refused" || e["kind"] == "step_started")
    })
    .await;
    let timeline = d.timeline(&id).await;
    let count = d.exec.count();
    d.stop().await;
    (count, timeline)
}

fn refused_by(timeline: &[serde_json::Value], what: &str) -> bool {
    timeline
        .iter()
        .any(|e| e["kind"] == "refused" && e.to_string().contains(what))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_before_a_backward_clock_jump_still_counts_after_the_restart() {
    within(120, async {
        let policies = ladder("            budget: {max: 1, per: 1h}\n", "");
        let (count, timeline) = act_jump_act(&policies, true, -30 * 60_000).await;
        assert_eq!(count, 0, "a backward jump freed the budget: {timeline:#?}");
        assert!(refused_by(&timeline, "budget"), "{timeline:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_window_passed_by_a_forward_clock_jump_allows_the_next_step() {
    within(120, async {
        let policies = ladder("            budget: {max: 1, per: 1h}\n", "");
        let (count, timeline) = act_jump_act(&policies, true, 61 * 60_000).await;
        assert_eq!(count, 1, "the window has passed: {timeline:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_before_a_backward_clock_jump_stays_open_after_the_restart() {
    within(120, async {
        let limits = "limits:\n  breakers:\n    target: {failures: 1, within: 1h, cooldown: 30m}\n";
        let policies = ladder("", limits);
        let (count, timeline) = act_jump_act(&policies, false, -10 * 60_000).await;
        assert_eq!(
            count, 0,
            "a backward jump closed the breaker: {timeline:#?}"
        );
        assert!(refused_by(&timeline, "breaker"), "{timeline:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_cool_down_passed_by_a_forward_clock_jump_gives_one_trial() {
    within(120, async {
        let limits = "limits:\n  breakers:\n    target: {failures: 1, within: 1h, cooldown: 30m}\n";
        let policies = ladder("", limits);
        let (count, timeline) = act_jump_act(&policies, false, 31 * 60_000).await;
        assert_eq!(count, 1, "half-open: one trial: {timeline:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_clock_jump_past_a_verification_deadline_escalates_once_and_runs_nothing_again() {
    let labels = serde_json::json!({"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"});
    let policies = ladder("", "");
    let dir = tempfile::tempdir().expect("temp dir");
    within(120, async {
        let clock = Arc::new(OffsetClock::default());
        let d = start(dir.path(), LADDER_RULES, &policies, clock.clone()).await;
        let started = clock.now().to_rfc3339();
        d.post(alert_payload("firing", labels.clone(), "fp-v", &started))
            .await;
        wait_until(30, "the step, then verification", || async {
            d.exec.count() == 1
                && d.incidents()
                    .await
                    .iter()
                    .any(|i| i["status"] == "verifying")
        })
        .await;
        d.stop().await;

        // 11 minutes forward: past `resolved_within: 10m` while the alert still fires.
        clock.set(11 * 60_000);
        let d = start(dir.path(), LADDER_RULES, &policies, clock.clone()).await;
        wait_until(30, "the escalation", || async {
            d.incidents()
                .await
                .iter()
                .any(|i| i["status"] == "escalated")
        })
        .await;
        let list = d.incidents().await;
        let id = list[0]["id"].as_str().unwrap_or_default().to_string();
        let kinds: Vec<String> = d
            .timeline(&id)
            .await
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(d.exec.count(), 0, "the step ran again: {kinds:?}");
        let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
        assert_eq!(count("step_started"), 1, "{kinds:?}");
        assert_eq!(count("verification_failed"), 1, "{kinds:?}");
        wait_until(30, "the page", || async { !d.pager.all().is_empty() }).await;
        let pages = d.pager.all();
        assert_eq!(pages.len(), 1, "one page: {pages:#?}");
        assert_eq!(pages[0].0, "oncall");
        d.stop().await;
    })
    .await;
}
