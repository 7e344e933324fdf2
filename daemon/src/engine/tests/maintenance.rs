//! Maintenance windows set through the API (stored): they hold a step exactly as a window of a
//! policies file does, end by themselves, and release the incident when cancelled.

use super::*;
use crate::adapters::store::{Cancelled, NewWindow};

const FIX: &str = "          - {name: fix, action: fix, verify: {resolved_within: 1m}}";

/// Stores a window over `scope` from now for `len`.
async fn window(rig: &Rig, scope: &str, len: Duration) -> i64 {
    let now = rig.clock.now();
    rig.store
        .add_maintenance(NewWindow {
            scope: scope.into(),
            starts_at: now,
            ends_at: now.plus(len),
            weekly: None,
            reason: "pg upgrade".into(),
            author: "alice".into(),
            created_at: now,
        })
        .await
        .unwrap()
        .id
}

async fn timeline(rig: &Rig) -> String {
    serde_json::to_string(&rig.store.timeline("INC-2026-0001").await.unwrap()).unwrap()
}

#[tokio::test]
async fn a_stored_window_holds_the_step_with_its_reason_until_it_ends() {
    within(async {
        let mut rig = Rig::new(RULES, &policy("", FIX));
        // A window on another rule holds nothing; one on this rule holds its incidents.
        window(&rig, "rule:other", Duration::from_secs(3600)).await;
        let id = window(&rig, "rule:r", Duration::from_secs(600)).await;
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.status("checkout").await, "suspended");
        assert_eq!(rig.fix_calls(), 0, "held by the window");
        let t = timeline(&rig).await;
        assert!(
            t.contains(&format!(
                r#"automation paused (rule:r) by maintenance: maintenance window #{id} \"pg upgrade\" (by alice) until 10:10 UTC"#
            )),
            "{t}"
        );
        // Still held just before the end; the window ends by itself and the ladder continues.
        rig.advance(Duration::from_secs(595)).await;
        assert_eq!(rig.fix_calls(), 0, "held until the window ends");
        rig.advance(Duration::from_secs(5)).await;
        assert_eq!(rig.fix_calls(), 1, "the step runs once the window ended");
        assert_eq!(rig.status("checkout").await, "verifying");
        assert!(timeline(&rig).await.contains("automation resumed"));
        assert!(
            rig.store
                .maintenance_windows(rig.clock.now())
                .await
                .unwrap()
                .iter()
                .all(|w| w.id != id),
            "an ended window is no longer listed"
        );
    })
    .await
}

#[tokio::test]
async fn cancelling_a_stored_window_releases_the_incident_at_the_next_pass() {
    within(async {
        let mut rig = Rig::new(RULES, &policy("", FIX));
        let id = window(&rig, "namespace:python-services", Duration::from_secs(7200)).await;
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(60)).await;
        assert_eq!(rig.status("checkout").await, "suspended");
        assert_eq!(rig.fix_calls(), 0);
        let now = rig.clock.now();
        assert!(matches!(
            rig.store.cancel_maintenance(id, now, "bob").await.unwrap(),
            Cancelled::Done(_)
        ));
        rig.advance(Duration::from_secs(5)).await;
        assert_eq!(rig.fix_calls(), 1, "the cancel released the step");
        assert_eq!(rig.status("checkout").await, "verifying");
    })
    .await
}
