//! A step held before any write (someone else's rollout in progress): tried again every 15 s,
//! run once when the rollout is over, escalated after `rollout_hold`; its claim and budget uses
//! given back, no breaker charged; a restart while held resumes the hold, a crash during a
//! re-try is an interruption (never run twice); a resolve, a pause or an approval meet it sanely.

use super::*;
use crate::domain::approval::{Channel, Decision, Verdict};
use crate::domain::policy::HOLD_RECHECK;

const FIX: &str = "          - {name: fix, action: fix, verify: {resolved_within: 1m}}";
const ACTION_KEY: &str = "action:fix:deployment/python-services/checkout";

/// The policy with `rollout_hold` set.
fn holding(hold: &str, steps: &str) -> String {
    policy("", steps).replace(
        "    escalate_to: oncall\n",
        &format!("    escalate_to: oncall\n    rollout_hold: {hold}\n"),
    )
}

impl Rig {
    pub(super) fn script(&self, answers: &[Answer]) {
        *self.fix.script.lock().unwrap() = answers.to_vec();
    }

    pub(super) async fn entries(&self) -> Vec<(String, String)> {
        self.store
            .timeline("INC-2026-0001")
            .await
            .unwrap()
            .iter()
            .map(|e| (e.kind.as_str().to_string(), e.message.clone()))
            .collect()
    }

    pub(super) async fn count(&self, kind: &str) -> usize {
        self.entries()
            .await
            .iter()
            .filter(|(k, _)| k == kind)
            .count()
    }
}

#[tokio::test]
async fn a_held_step_is_tried_again_and_runs_once_after_the_rollout_finishes() {
    within(async {
        let mut rig = Rig::new(RULES, &holding("10m", FIX));
        rig.script(&[Answer::Held, Answer::Held, Answer::Held]);
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.fix_calls(), 1, "tried once");
        assert_eq!(rig.status("checkout").await, "open", "held: no step ran");
        assert_eq!(
            rig.uses(ACTION_KEY, false).await,
            0,
            "the use is given back"
        );
        assert_eq!(rig.uses("global", false).await, 0);
        // Not before the re-check interval.
        rig.advance(HOLD_RECHECK - Duration::from_secs(5)).await;
        assert_eq!(rig.fix_calls(), 1, "not tried again before 15 s");
        rig.advance(Duration::from_secs(5)).await;
        assert_eq!(rig.fix_calls(), 2, "tried again after 15 s");
        rig.advance(HOLD_RECHECK).await;
        assert_eq!(rig.fix_calls(), 3);
        // The rollout is over: the fourth try runs for real (the script is empty: ok).
        rig.advance(HOLD_RECHECK).await;
        assert_eq!(rig.fix_calls(), 4);
        assert_eq!(rig.status("checkout").await, "verifying");
        rig.advance(Duration::from_secs(30)).await;
        assert_eq!(rig.fix_calls(), 4, "it runs once, and is not tried again");
        assert_eq!(rig.uses(ACTION_KEY, false).await, 1, "one use: the run");
        assert_eq!(rig.uses("global", false).await, 1);
        assert!(!rig.breaker_open(ACTION_KEY).await);
        let entries = rig.entries().await;
        let kinds: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "step_held").count(),
            1,
            "one entry for the hold, not one per try: {kinds:?}"
        );
        assert_eq!(kinds.iter().filter(|k| **k == "step_started").count(), 1);
        let held = kinds.iter().position(|k| *k == "step_held").unwrap();
        let over = kinds.iter().position(|k| *k == "hold_over").unwrap();
        let ok = kinds.iter().position(|k| *k == "step_ok").unwrap();
        assert!(held < over && over < ok, "{kinds:?}");
        assert!(
            entries[held].1.contains("rollout in progress")
                && entries[held].1.contains("tried again every 15s"),
            "{:?}",
            entries[held]
        );
        assert!(
            entries[over].1.contains("3 tries held"),
            "{:?}",
            entries[over]
        );
        assert!(!kinds.contains(&"step_refused") && !kinds.contains(&"escalated"));
    })
    .await
}

#[tokio::test]
async fn a_hold_that_outlasts_rollout_hold_escalates_with_its_reason_and_charges_nothing() {
    within(async {
        let limits = "  breakers:\n    target: {failures: 1, within: 1h, cooldown: 10m}";
        let policies = policy(limits, FIX).replace(
            "    escalate_to: oncall\n",
            "    escalate_to: oncall\n    rollout_hold: 1m\n",
        );
        let mut rig = Rig::new(RULES, &policies);
        rig.script(&[Answer::Held; 20]);
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(55)).await;
        assert_eq!(rig.status("checkout").await, "open", "still held");
        assert!(rig.pages().is_empty(), "nobody paged while held");
        rig.advance(Duration::from_secs(10)).await;
        assert_eq!(rig.status("checkout").await, "escalated");
        // Tries at 0, 15, 30, 45 and 60 s: the last one at the bound, then the page.
        assert_eq!(rig.fix_calls(), 5);
        assert_eq!(
            rig.pages(),
            vec![(
                "oncall".to_string(),
                NotificationKind::Trigger,
                "INC-2026-0001".to_string()
            )]
        );
        let entries = rig.entries().await;
        let esc = entries.iter().find(|(k, _)| k == "escalated").unwrap();
        assert!(
            esc.1
                .contains("step fix held for 1m (5 tries): rollout in progress"),
            "{esc:?}"
        );
        let label =
            rig.metrics.encode().lines().any(|l| {
                l.contains("remedyd_escalations_total") && l.contains("rollout_in_progress")
            });
        assert!(label, "the escalation is counted as rollout_in_progress");
        assert_eq!(rig.uses(ACTION_KEY, false).await, 0, "no budget spent");
        assert!(!rig.breaker_open(ACTION_KEY).await, "a hold is no failure");
        rig.advance(Duration::from_secs(60)).await;
        assert_eq!(rig.fix_calls(), 5, "nothing is tried after the escalation");
    })
    .await
}

#[tokio::test]
async fn a_restart_while_held_resumes_the_hold_and_runs_the_step_once() {
    within(async {
        let mut rig = Rig::new(RULES, &holding("10m", FIX));
        rig.script(&[Answer::Held]);
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.fix_calls(), 1);
        rig.restart();
        rig.engine.recover_interrupted().await.unwrap();
        rig.settle().await;
        assert_eq!(rig.fix_calls(), 1, "the restart does not run it early");
        rig.advance(HOLD_RECHECK).await;
        assert_eq!(rig.fix_calls(), 2, "the stored hold is tried again");
        assert_eq!(rig.status("checkout").await, "verifying");
        assert_eq!(rig.count("hold_over").await, 1);
        rig.advance(Duration::from_secs(30)).await;
        assert_eq!(rig.fix_calls(), 2, "once");
    })
    .await
}

#[tokio::test]
async fn a_crash_during_a_re_try_is_an_interruption_and_the_step_never_runs_twice() {
    within(async {
        let mut rig = Rig::new(RULES, &holding("10m", FIX));
        rig.script(&[Answer::Held, Answer::Hang]);
        rig.fire("checkout", "warning").await;
        // The re-try is claimed and its action starts, then the process dies in it.
        rig.clock.advance(HOLD_RECHECK);
        let doomed = TaskTracker::new();
        rig.engine.pass(&doomed).await.unwrap();
        while rig.fix_calls() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            rig.status("checkout").await,
            "remediating",
            "claimed, running"
        );
        rig.restart();
        rig.engine.recover_interrupted().await.unwrap();
        rig.settle().await;
        assert_eq!(rig.count("step_interrupted").await, 1);
        assert_eq!(
            rig.status("checkout").await,
            "verifying",
            "verified, not re-run"
        );
        // Its verification fails and the ladder (one step) is exhausted: never run again.
        rig.advance(Duration::from_secs(120)).await;
        assert_eq!(rig.status("checkout").await, "escalated");
        assert_eq!(rig.fix_calls(), 2, "at most once");
        assert_eq!(
            rig.uses(ACTION_KEY, false).await,
            1,
            "the claim that may have run"
        );
    })
    .await
}

#[tokio::test]
async fn an_alert_resolving_while_held_resolves_the_incident_and_nothing_runs() {
    within(async {
        let mut rig = Rig::new(RULES, &holding("10m", FIX));
        rig.script(&[Answer::Held]);
        rig.fire("checkout", "warning").await;
        let start = rig.start;
        rig.alert("checkout", "warning", Status::Resolved, start)
            .await;
        assert_eq!(rig.status("checkout").await, "resolved");
        rig.advance(Duration::from_secs(120)).await;
        assert_eq!(rig.fix_calls(), 1, "nothing runs after the resolve");
        assert!(rig.pages().is_empty());
    })
    .await
}

#[tokio::test]
async fn a_pause_during_a_hold_suspends_and_the_step_is_tried_afresh_after_it() {
    within(async {
        let mut rig = Rig::new(RULES, &holding("1m", FIX));
        rig.script(&[Answer::Held]);
        rig.fire("checkout", "warning").await;
        let pause = crate::adapters::store::Pause {
            scope: "global".into(),
            reason: "freeze".into(),
            author: "alice".into(),
            since: rig.clock.now(),
        };
        rig.store.set_pause(pause).await.unwrap();
        rig.advance(HOLD_RECHECK).await;
        assert_eq!(rig.status("checkout").await, "suspended");
        // Paused for longer than rollout_hold: the pause ends the hold, it does not time it out.
        rig.advance(Duration::from_secs(120)).await;
        assert_eq!(rig.fix_calls(), 1, "nothing tried while paused");
        rig.store.clear_pause("global").await.unwrap();
        rig.settle().await;
        assert_eq!(rig.fix_calls(), 2, "tried afresh once the pause lifts");
        assert_eq!(rig.status("checkout").await, "verifying");
    })
    .await
}

#[tokio::test]
async fn an_approved_step_that_is_held_is_not_asked_for_again() {
    within(async {
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1m}, approve: {approvers: [alice], timeout: 10m, notify: [platform]}}";
        let mut rig = Rig::new(RULES, &holding("10m", steps));
        rig.script(&[Answer::Held]);
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.fix_calls(), 0, "waits for approval");
        let d = Decision {
            by: "alice".into(),
            channel: Channel::Api,
            at: rig.clock.now(),
            comment: "go".into(),
            decision: Verdict::Approve,
        };
        rig.store
            .decide_approval("INC-2026-0001/1/0", d, rig.clock.now())
            .await
            .unwrap();
        rig.settle().await;
        assert_eq!(rig.fix_calls(), 1, "approved, tried, held");
        rig.advance(HOLD_RECHECK).await;
        assert_eq!(rig.fix_calls(), 2, "tried again without a new approval");
        assert_eq!(rig.count("approval_requested").await, 1);
        assert_eq!(rig.status("checkout").await, "verifying");
    })
    .await
}
