//! The revert watch: a verified step's change to an object a GitOps reconciler owns is read
//! back every 30 s and at the deadline; put back, the incident escalates (`gitops_revert`)
//! instead of going on to the next step (see the rig in `mod.rs`, helpers in `hold.rs`).

use super::*;

const ACTION_KEY: &str = "action:fix:deployment/python-services/checkout";

fn policies() -> String {
    policy("", FIX_THEN_MORE)
}

const FIX_THEN_MORE: &str = "          - {name: fix, action: fix, verify: {resolved_within: 1m}}\n          - {name: more, action: fix, verify: {resolved_within: 1m}}";

const REVERTED: &str = "reverted by Flux: python-services/checkout replicas is 3 (remedyd set 4)";

#[tokio::test]
async fn a_revert_seen_while_verifying_escalates_as_gitops_revert_instead_of_the_next_step() {
    within(async {
        let mut rig = Rig::new(RULES, &policies());
        rig.script(&[Answer::OkWatched]);
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.status("checkout").await, "verifying");
        rig.advance(Duration::from_secs(30)).await;
        assert_eq!(*rig.fix.checks.lock().unwrap(), 1, "read back after 30 s");
        assert_eq!(rig.status("checkout").await, "verifying", "as written");
        *rig.fix.reverted.lock().unwrap() = Some(REVERTED.into());
        rig.advance(Duration::from_secs(25)).await;
        assert_eq!(
            rig.status("checkout").await,
            "verifying",
            "not read again yet"
        );
        rig.advance(Duration::from_secs(5)).await;
        assert_eq!(rig.status("checkout").await, "escalated");
        assert_eq!(rig.fix_calls(), 1, "the next step does not run");
        let entries = rig.entries().await;
        let rev = entries
            .iter()
            .find(|(k, _)| k == "reverted")
            .expect("recorded");
        assert!(rev.1.contains(REVERTED), "{rev:?}");
        let esc = entries.iter().find(|(k, _)| k == "escalated").unwrap();
        assert!(esc.1.contains("step fix: reverted by Flux"), "{esc:?}");
        assert!(!entries.iter().any(|(k, _)| k == "verification_failed"));
        let text = rig.metrics.encode();
        assert!(
            text.lines()
                .any(|l| l.contains("remedyd_escalations_total") && l.contains("gitops_revert")),
            "counted as gitops_revert"
        );
        assert!(
            rig.breaker_open(ACTION_KEY).await,
            "not tried again on this target"
        );
    })
    .await
}

#[tokio::test]
async fn a_revert_just_before_the_deadline_is_read_back_before_the_step_is_judged() {
    within(async {
        let mut rig = Rig::new(RULES, &policies());
        rig.script(&[Answer::OkWatched]);
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(35)).await;
        assert_eq!(*rig.fix.checks.lock().unwrap(), 1);
        // Put back after the last periodic read, before the one-minute deadline.
        *rig.fix.reverted.lock().unwrap() = Some(REVERTED.into());
        rig.advance(Duration::from_secs(25)).await;
        assert_eq!(rig.status("checkout").await, "escalated");
        assert_eq!(
            *rig.fix.checks.lock().unwrap(),
            2,
            "read once more at the deadline"
        );
        assert_eq!(rig.fix_calls(), 1, "no next step");
        assert_eq!(rig.count("reverted").await, 1);
        assert_eq!(rig.count("verification_failed").await, 0);
    })
    .await
}

#[tokio::test]
async fn a_change_left_as_written_is_judged_as_any_verification_and_the_ladder_goes_on() {
    within(async {
        let mut rig = Rig::new(RULES, &policies());
        rig.script(&[Answer::OkWatched]);
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(65)).await;
        assert_eq!(
            *rig.fix.checks.lock().unwrap(),
            2,
            "at 30 s and at the deadline"
        );
        assert_eq!(rig.count("verification_failed").await, 1);
        assert_eq!(rig.fix_calls(), 2, "the next step ran");
        assert_eq!(rig.count("reverted").await, 0);
    })
    .await
}
