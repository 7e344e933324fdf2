//! Issue 11, scenario 3: the Kubernetes API server answers 503, hangs, or closes connections
//! mid-ladder (`fake_kube::Outage`), with remedyd in-process on SQLite and the real kube client.
//!
//! The promise: a step ends within its own bound (`wait`) whatever the API server does, with
//! the attempts and the last cause in its result; the failure escalates as the step says and is
//! counted by the action's breaker (docs/policies.md); nothing is written twice when the server
//! recovers; and the next incident is remediated without an operator.

use std::time::Duration;

use serde_json::Value;

use remedyd::adapters::escalate::NotificationKind;

use crate::support::daemon::{Daemon, now_rfc3339, payload};
use crate::support::fake_kube::{FakeKube, Outage, Recorded, fixtures};
use crate::support::services::within;

const NS: &str = "python-services";

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}", namespace: python-services}
    policy: service
"#;

/// One restart bounded by 3 s; the breaker of an action on a target opens after two counted
/// failures and half-opens after 3 s.
const POLICIES: &str = r#"
limits:
  breakers:
    target: {failures: 2, within: 1h, cooldown: 3s}
    global: {failures: 100, within: 1h, cooldown: 1s}
policies:
  - name: service
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: restart
            action: kube_rollout_restart
            with: {wait: 3s}
            verify: {resolved_within: 1m}
            on_failure: escalate
"#;

struct World {
    fake: FakeKube,
    d: Daemon,
    _kdir: tempfile::TempDir,
}

async fn world() -> World {
    world_with(POLICIES).await
}

async fn world_with(policies: &str) -> World {
    let fake = FakeKube::start().await;
    fake.put(fixtures::deployment(
        NS,
        "checkout",
        3,
        "registry.local/checkout:1.0",
    ));
    fake.step();
    fake.step();
    fake.auto_step(Duration::from_millis(50));
    let kdir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(kdir.path());
    let d = Daemon::start_with(RULES, policies, None, |c| c.kubeconfig = Some(kubeconfig)).await;
    // Started: enforce mode's startup check reached the API server before any outage.
    assert!(d.incidents().await.is_empty());
    World {
        fake,
        d,
        _kdir: kdir,
    }
}

fn patches(fake: &FakeKube) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

/// The incident's `kind` entry, as the timeline recorded it.
async fn entry(d: &Daemon, id: &str, kind: &str) -> Value {
    let tl = d.timeline(id).await;
    tl.iter()
        .find(|e| e["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} in {tl:#?}"))
}

impl World {
    /// Waits until the pager has been given `n` triggers, all to oncall, and no more.
    async fn triggers(&self, n: usize) {
        let count = || {
            self.d
                .pager
                .all()
                .iter()
                .filter(|(route, p)| {
                    assert_eq!(route, "oncall");
                    p.event == NotificationKind::Trigger
                })
                .count()
        };
        self.d.wait("the pages", || count() >= n).await;
        assert_eq!(count(), n, "one page per escalated incident");
    }

    /// Fires `fp` and waits until the newest incident is `status`; returns its id.
    async fn fire(&self, fp: &str, status: &str) -> String {
        let before = self.d.incidents().await.len();
        self.d
            .post(&payload(
                "firing",
                "checkout",
                "warning",
                fp,
                &now_rfc3339(),
            ))
            .await;
        let l = self
            .d
            .wait_incidents(status, |l| {
                l.len() == before + 1 && l[0]["status"] == status
            })
            .await;
        l[0]["id"].as_str().unwrap().to_string()
    }

    /// Resolves `fp` and waits until no incident is open.
    async fn resolve(&self, fp: &str) {
        self.d
            .post(&payload(
                "resolved",
                "checkout",
                "warning",
                fp,
                &now_rfc3339(),
            ))
            .await;
        self.d
            .wait_incidents("all resolved", |l| {
                l.iter().all(|i| i["status"] == "resolved")
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_api_server_fails_the_step_within_its_wait_and_after_it_recovers_the_next_incident_is_remediated_once()
 {
    within(120, async {
        let w = world().await;
        w.fake.set_outage(Outage::Hang);
        let id = w.fire("fp-hang", "escalated").await;
        let failed = entry(&w.d, &id, "step_failed").await;
        let text = failed.to_string();
        assert!(
            text.contains("Kubernetes API did not answer within 3s (1 attempt)"),
            "the step ends at its 3s wait, naming the attempts: {text}"
        );
        assert!(text.contains("no answer within"), "the last cause: {text}");
        assert!(
            patches(&w.fake).is_empty(),
            "a hanging server processed nothing"
        );
        w.resolve("fp-hang").await;

        w.fake.set_outage(Outage::None);
        let id = w.fire("fp-after", "verifying").await;
        assert!(
            entry(&w.d, &id, "step_ok")
                .await
                .to_string()
                .contains("successfully rolled out"),
            "remediated without an operator"
        );
        w.resolve("fp-after").await;
        assert_eq!(patches(&w.fake).len(), 1, "one restart, none repeated");
        w.triggers(1).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connections_and_503s_are_retried_recorded_counted_by_the_breaker_and_service_resumes()
 {
    within(120, async {
        let w = world().await;

        // Connections closed without an answer: the read is tried 3 times, each recorded.
        w.fake.set_outage(Outage::Close);
        let id = w.fire("fp-close", "escalated").await;
        let failed = entry(&w.d, &id, "step_failed").await;
        let text = failed.to_string();
        assert!(
            text.contains("Kubernetes API did not answer within") && text.contains("(3 attempts)"),
            "{text}"
        );
        let retried: Vec<u64> = failed["data"]["api_errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no api_errors: {text}"))
            .iter()
            .filter_map(|e| e["attempt"].as_u64())
            .collect();
        assert_eq!(retried, [1, 2], "each retried attempt is recorded: {text}");
        let m = w.d.metrics().await;
        assert!(
            m.contains(r#"remedyd_kube_requests_total{method="GET",code="error"} 3"#),
            "every attempt counted:\n{m}"
        );
        w.resolve("fp-close").await;

        // 503 to everything: retried, then the second counted failure opens the breaker.
        w.fake.set_outage(Outage::Unavailable);
        let id = w.fire("fp-503", "escalated").await;
        let text =
            w.d.timeline(&id)
                .await
                .iter()
                .map(Value::to_string)
                .collect::<String>();
        assert!(
            text.contains("503 ServiceUnavailable") && text.contains("(3 attempts in"),
            "{text}"
        );
        assert!(
            text.contains("breaker_opened"),
            "two counted failures open it: {text}"
        );
        assert!(patches(&w.fake).is_empty(), "nothing was written");
        w.resolve("fp-503").await;

        // The server is back; the breaker holds until its cool-down, then one trial remediates.
        w.fake.set_outage(Outage::None);
        let id = w.fire("fp-held", "escalated").await;
        assert!(
            entry(&w.d, &id, "refused")
                .await
                .to_string()
                .contains("breaker"),
            "the open breaker refuses"
        );
        assert!(patches(&w.fake).is_empty(), "the open breaker sent nothing");
        w.resolve("fp-held").await;
        // The cool-down (3 s) is a wait of the breaker's, not a measured duration.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let id = w.fire("fp-trial", "verifying").await;
        assert!(
            entry(&w.d, &id, "step_ok")
                .await
                .to_string()
                .contains("successfully rolled out"),
            "the half-open trial remediates"
        );
        w.resolve("fp-trial").await;
        assert_eq!(patches(&w.fake).len(), 1, "one restart, none repeated");
        w.triggers(3).await;
    })
    .await
}

/// A rollout wait that never hears from the API server is an outage: the step fails (and the
/// breaker counts it), instead of being a rollout that "did not finish" (a refusal nothing counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_wait_that_never_hears_from_a_hanging_api_server_fails_the_step() {
    within(60, async {
        let w = world_with(&POLICIES.replace("kube_rollout_restart", "kube_rollout_status")).await;
        w.fake.set_outage(Outage::Hang);
        let id = w.fire("fp-status", "escalated").await;
        let text = entry(&w.d, &id, "step_failed").await.to_string();
        assert!(
            text.contains("watching deployment python-services/checkout: Kubernetes API did not answer within 3s"),
            "{text}"
        );
        let tl = w.d.timeline(&id).await;
        assert!(!tl.iter().any(|e| e["kind"] == "step_refused"), "{tl:#?}");
    })
    .await
}
