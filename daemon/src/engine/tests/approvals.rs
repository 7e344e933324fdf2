//! Steps that need people (`approve:`): approved, denied, timed out (escalate or skip), two
//! people, late decisions, a restart while pending, and an incident that moves on (see the rig
//! in `mod.rs`).

use super::*;
use crate::adapters::store::Decided;
use crate::domain::approval::{
    Approval, ApprovalState, Channel, Decision, Refused, Taken, Verdict,
};

/// `fix` needs one of alice, bob (or two with `two_person`); `after` follows it.
fn approving(extra: &str) -> String {
    policy(
        "",
        &format!(
            "          - {{name: fix, action: fix, verify: {{resolved_within: 1m}}, approve: {{approvers: [alice, bob], timeout: 10m, notify: [platform]{extra}}}}}\n          - {{name: after, action: fix, verify: {{resolved_within: 1m}}}}"
        ),
    )
}

const ID: &str = "INC-2026-0001/1/0";

impl Rig {
    async fn decide(&mut self, by: &str, verdict: Verdict) -> Decided {
        let d = Decision {
            by: by.into(),
            channel: Channel::Api,
            at: self.clock.now(),
            comment: format!("{by} says {}", verdict.as_str()),
            decision: verdict,
        };
        let r = self
            .store
            .decide_approval(ID, d, self.clock.now())
            .await
            .unwrap();
        self.settle().await;
        r
    }

    async fn kinds(&self) -> Vec<String> {
        self.store
            .timeline("INC-2026-0001")
            .await
            .unwrap()
            .iter()
            .map(|e| e.kind.as_str().to_string())
            .collect()
    }

    async fn approval(&self) -> Approval {
        self.store.approval(ID).await.unwrap().expect("stored")
    }
}

#[tokio::test]
async fn an_approved_step_runs_once_and_the_timeline_says_who_approved_it() {
    within(async {
        let mut rig = Rig::new(RULES, &approving(""));
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.fix_calls(), 0, "nothing runs before approval");
        assert_eq!(rig.approval().await.state, ApprovalState::Pending);
        // The request went to the notify route, carrying the approval.
        let asks: Vec<_> = rig
            .pages
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| n.approval.is_some())
            .map(|(r, n)| (r.clone(), n.approval.clone().unwrap().id))
            .collect();
        assert_eq!(asks, vec![("platform".to_string(), ID.to_string())]);
        rig.advance(Duration::from_secs(60)).await;
        assert_eq!(rig.fix_calls(), 0, "still waiting");
        let r = rig.decide("alice", Verdict::Approve).await;
        assert!(
            matches!(r, Decided::Taken(Taken::Final(ApprovalState::Approved), _)),
            "{r:?}"
        );
        assert_eq!(rig.fix_calls(), 1, "the approved step ran");
        assert_eq!(rig.status("checkout").await, "verifying");
        let kinds = rig.kinds().await;
        let asked = kinds.iter().position(|k| k == "approval_requested");
        let decided = kinds.iter().position(|k| k == "approval_decided");
        let started = kinds.iter().position(|k| k == "step_started");
        assert!(
            asked < decided && decided < started && asked.is_some(),
            "{kinds:?}"
        );
        let tl = rig.store.timeline("INC-2026-0001").await.unwrap();
        let d = tl
            .iter()
            .find(|e| e.kind == EntryKind::ApprovalDecided)
            .unwrap();
        assert_eq!(d.data["by"], "alice");
        assert_eq!(d.data["channel"], "api");
        assert_eq!(d.data["comment"], "alice says approve");
        // A second click is refused: decided once.
        let again = rig.decide("bob", Verdict::Approve).await;
        assert!(
            matches!(again, Decided::Refused(Refused::AlreadyDecided { .. })),
            "{again:?}"
        );
        assert_eq!(rig.fix_calls(), 1);
    })
    .await
}

#[tokio::test]
async fn a_denied_step_never_runs_and_escalates_with_the_reason() {
    within(async {
        let mut rig = Rig::new(RULES, &approving(""));
        rig.fire("checkout", "warning").await;
        rig.decide("bob", Verdict::Deny).await;
        assert_eq!(rig.fix_calls(), 0);
        assert_eq!(rig.status("checkout").await, "escalated");
        let pages = rig.pages.0.lock().unwrap().clone();
        let (route, n) = pages
            .iter()
            .find(|(_, n)| n.approval.is_none() && n.event == NotificationKind::Trigger)
            .expect("the escalation page");
        assert_eq!(route, "oncall");
        assert!(
            n.reason.contains("step fix denied by bob via api"),
            "{}",
            n.reason
        );
        // The page's history says who decided, when and why.
        assert!(
            n.updates
                .iter()
                .any(|u| u.contains("denied by bob via api") && u.contains("bob says deny")),
            "{:?}",
            n.updates
        );
        assert!(
            rig.metrics
                .encode()
                .contains(r#"remedyd_escalations_total{reason="approval_denied"} 1"#)
        );
    })
    .await
}

#[tokio::test]
async fn a_timeout_escalates_and_a_late_decision_is_refused() {
    within(async {
        let mut rig = Rig::new(RULES, &approving(""));
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(600)).await;
        assert_eq!(rig.status("checkout").await, "escalated");
        assert_eq!(rig.approval().await.state, ApprovalState::TimedOut);
        let late = rig.decide("alice", Verdict::Approve).await;
        assert!(
            matches!(
                late,
                Decided::Refused(Refused::AlreadyDecided {
                    state: "timed_out",
                    ..
                })
            ),
            "{late:?}"
        );
        assert_eq!(rig.fix_calls(), 0, "neither step ran");
        assert!(
            rig.kinds()
                .await
                .contains(&"approval_timed_out".to_string())
        );
    })
    .await
}

#[tokio::test]
async fn a_timeout_with_skip_goes_on_with_the_next_step() {
    within(async {
        let mut rig = Rig::new(RULES, &approving(", on_timeout: skip"));
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(595)).await;
        assert_eq!(rig.fix_calls(), 0, "not yet");
        rig.advance(Duration::from_secs(5)).await;
        assert_eq!(rig.fix_calls(), 1, "the next step ran instead");
        let tl = rig.store.timeline("INC-2026-0001").await.unwrap();
        let started = tl
            .iter()
            .find(|e| e.kind == EntryKind::StepStarted)
            .unwrap();
        assert!(
            started.message.contains("step after"),
            "{}",
            started.message
        );
    })
    .await
}

#[tokio::test]
async fn two_person_needs_two_different_people_and_the_same_person_twice_does_not_count() {
    within(async {
        let mut rig = Rig::new(RULES, &approving(", two_person: true"));
        rig.fire("checkout", "warning").await;
        let first = rig.decide("alice", Verdict::Approve).await;
        assert!(
            matches!(
                first,
                Decided::Taken(Taken::Waiting { have: 1, need: 2 }, _)
            ),
            "{first:?}"
        );
        let twice = rig.decide("Alice", Verdict::Approve).await;
        assert!(
            matches!(twice, Decided::Refused(Refused::SamePerson { .. })),
            "{twice:?}"
        );
        assert_eq!(rig.fix_calls(), 0, "one person is not enough");
        let stranger = rig.decide("mallory", Verdict::Approve).await;
        assert!(
            matches!(stranger, Decided::Refused(Refused::NotApprover { .. })),
            "{stranger:?}"
        );
        rig.decide("bob", Verdict::Approve).await;
        assert_eq!(rig.fix_calls(), 1);
        let by: Vec<String> = rig
            .approval()
            .await
            .decisions
            .iter()
            .map(|d| d.by.clone())
            .collect();
        assert_eq!(by, vec!["alice", "bob"]);
    })
    .await
}

#[tokio::test]
async fn a_pending_approval_survives_a_restart() {
    within(async {
        let mut rig = Rig::new(RULES, &approving(""));
        rig.fire("checkout", "warning").await;
        rig.restart();
        rig.settle().await;
        let asks = rig
            .pages
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| n.approval.is_some())
            .count();
        assert_eq!(asks, 1, "asked once, not again after the restart");
        rig.decide("alice", Verdict::Approve).await;
        assert_eq!(
            rig.fix_calls(),
            1,
            "the new engine read the decision from the store"
        );
    })
    .await
}

#[tokio::test]
async fn an_incident_that_resolves_while_waiting_voids_its_approval() {
    within(async {
        let mut rig = Rig::new(RULES, &approving(""));
        rig.fire("checkout", "warning").await;
        let start = rig.start;
        rig.alert("checkout", "warning", Status::Resolved, start)
            .await;
        assert_eq!(rig.status("checkout").await, "resolved");
        assert_eq!(rig.approval().await.state, ApprovalState::Void);
        let r = rig.decide("alice", Verdict::Approve).await;
        assert!(
            matches!(
                r,
                Decided::Refused(Refused::AlreadyDecided { state: "void", .. })
            ),
            "{r:?}"
        );
        assert_eq!(rig.fix_calls(), 0);
    })
    .await
}
