//! Updates every `update_every` to the routes paged while an escalated incident is open (issue
//! 13 §4): on the manual clock, through the real engine, store and outbox.

use std::time::Duration;

use super::{Answer, RULES, Rig, policy, within};
use crate::adapters::escalate::NotificationKind::{self, Resolve, Trigger, Update};
use crate::adapters::store::Store;
use crate::domain::signal::Status;
use crate::domain::time::Clock;

const MIN: Duration = Duration::from_secs(60);

/// The policy: one remediation, escalating to `oncall`.
fn policies(update_every: Option<&str>) -> String {
    let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1m}}";
    let p = policy("", steps);
    match update_every {
        Some(u) => p.replace(
            "    escalate_to: oncall\n",
            &format!("    escalate_to: oncall\n    update_every: {u}\n"),
        ),
        None => p,
    }
}

/// One remediation that fails: the incident is escalated to `oncall` at once.
fn rig(update_every: Option<&str>) -> Rig {
    let rig = Rig::new(RULES, &policies(update_every));
    rig.fix.script.lock().unwrap().push(Answer::Fail);
    rig
}

fn kinds(rig: &Rig) -> Vec<(String, NotificationKind)> {
    rig.pages().into_iter().map(|(r, k, _)| (r, k)).collect()
}

fn oncall(kinds: &[NotificationKind]) -> Vec<(String, NotificationKind)> {
    kinds.iter().map(|k| ("oncall".to_string(), *k)).collect()
}

#[tokio::test]
async fn an_escalated_incident_is_updated_every_15_minutes_until_it_resolves() {
    within(async {
        let mut rig = rig(None);
        let start = rig.clock.now();
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.status("checkout").await, "escalated");
        assert_eq!(kinds(&rig), oncall(&[Trigger]));
        rig.advance_by(14 * MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger]), "not before 15m");
        rig.advance_by(MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update]), "at +15m");
        rig.advance_by(15 * MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update, Update]), "at +30m");
        let sent = rig.pages.0.lock().unwrap().clone();
        let (first, second) = (&sent[1].1, &sent[2].1);
        assert_eq!(
            first.dedup_key, sent[0].1.dedup_key,
            "same incident, same key"
        );
        assert_eq!(first.status, "escalated");
        assert!(
            first.reason.starts_with("update: still escalated"),
            "{}",
            first.reason
        );
        assert!(
            first.updates.iter().any(|u| u.contains("fix")),
            "the first update covers the failed step: {:?}",
            first.updates
        );
        assert_eq!(
            second.updates,
            vec![format!("nothing new since {}", start.plus(15 * MIN).hms())],
            "the second covers only the 15 minutes since the first"
        );
        let now = rig.clock.now();
        rig.alert("checkout", "warning", Status::Resolved, now)
            .await;
        assert_eq!(rig.status("checkout").await, "resolved");
        rig.advance_by(60 * MIN, 5 * MIN).await;
        assert_eq!(
            kinds(&rig),
            oncall(&[Trigger, Update, Update, Resolve]),
            "none after the resolve"
        );
    })
    .await
}

#[tokio::test]
async fn a_restart_between_updates_neither_repeats_nor_skips_one() {
    within(async {
        let mut rig = rig(None);
        rig.fire("checkout", "warning").await;
        rig.advance_by(10 * MIN, MIN).await;
        rig.restart();
        rig.advance_by(5 * MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update]), "not skipped");
        // Restarted just after an update: the new engine reads the advanced schedule.
        rig.restart();
        rig.settle().await;
        rig.advance_by(14 * MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update]), "not repeated");
        rig.restart();
        rig.advance_by(MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update, Update]));
    })
    .await
}

#[tokio::test]
async fn a_long_outage_sends_one_update_and_keeps_the_cadence() {
    within(async {
        let mut rig = rig(Some("10m"));
        rig.fire("checkout", "warning").await;
        // Down for 35 minutes (no pass): one update, not three, then the next on the 10s.
        rig.clock.advance(35 * MIN);
        rig.restart();
        rig.settle().await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update]));
        rig.advance_by(4 * MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update]));
        rig.advance_by(MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update, Update]), "at +40m");
    })
    .await
}

#[tokio::test]
async fn update_every_0_sends_none() {
    within(async {
        for off in ["0", "off"] {
            let mut rig = rig(Some(off));
            rig.fire("checkout", "warning").await;
            assert_eq!(rig.status("checkout").await, "escalated");
            rig.advance_by(60 * MIN, 5 * MIN).await;
            assert_eq!(kinds(&rig), oncall(&[Trigger]), "update_every: {off}");
        }
    })
    .await
}

#[test]
fn a_bad_update_every_names_file_line_and_field() {
    for (value, says) in [
        ("soon", "is not a duration"),
        ("30s", "too often for updates"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (rd, pd) = (dir.path().join("rules"), dir.path().join("policies"));
        std::fs::create_dir_all(&rd).unwrap();
        std::fs::create_dir_all(&pd).unwrap();
        let yaml = format!(
            "routes:\n  - {{name: oncall, type: webhook, url: \"http://127.0.0.1:9/\"}}\npolicies:\n  - name: p\n    escalate_to: oncall\n    update_every: {value}\n    levels:\n      - level: 1\n"
        );
        std::fs::write(pd.join("p.yaml"), yaml).unwrap();
        let e = match crate::load::ruleset::load(
            &rd,
            &pd,
            &crate::adapters::action::Executors::builtin(),
        ) {
            Ok(_) => panic!("update_every: {value} loaded"),
            Err(d) => d.to_string(),
        };
        assert!(
            e.contains("p.yaml:6: update_every") && e.contains(says),
            "{e}"
        );
    }
}

#[test]
fn an_update_is_sent_to_webhooks_as_event_update() {
    let n = crate::adapters::escalate::sample_update();
    let v = serde_json::to_value(&n).unwrap_or_default();
    assert_eq!(v["event"], "update");
}

#[tokio::test]
async fn a_reload_that_turns_updates_on_schedules_incidents_already_escalated() {
    within(async {
        let mut rig = rig(Some("off"));
        rig.fire("checkout", "warning").await;
        rig.advance_by(20 * MIN, 5 * MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger]));
        rig.reload_policies(&policies(Some("10m")));
        // The next pass (a second later in a running engine) starts the schedule.
        rig.settle().await;
        rig.advance_by(9 * MIN, MIN).await;
        assert_eq!(
            kinds(&rig),
            oncall(&[Trigger]),
            "one interval after the reload"
        );
        rig.advance_by(MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update]));
        // Turned off again: none.
        rig.reload_policies(&policies(Some("0")));
        rig.advance_by(30 * MIN, 5 * MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update]));
    })
    .await
}

#[tokio::test]
async fn each_update_sent_is_in_the_timeline_with_its_routes_and_value_and_in_the_review() {
    within(async {
        let mut rig = rig(None);
        rig.fire("checkout", "warning").await;
        rig.advance_by(30 * MIN, MIN).await;
        assert_eq!(kinds(&rig), oncall(&[Trigger, Update, Update]));
        let list = rig.store.list_incidents(None, 100).await.unwrap();
        let inc = list.first().expect("the incident").clone();
        let timeline = rig.store.timeline(&inc.id).await.unwrap();
        let sent: Vec<_> = timeline
            .iter()
            .filter(|e| e.kind == crate::domain::incident::EntryKind::UpdateSent)
            .collect();
        assert_eq!(sent.len(), 2, "one entry per update sent");
        let pages = rig.pages.0.lock().unwrap().clone();
        for (e, (_, n)) in sent.iter().zip(&pages[1..]) {
            assert_eq!(e.data["routes"], serde_json::json!(["oncall"]));
            assert_eq!(e.data["status"], "escalated");
            assert_eq!(e.data["value"], serde_json::json!(n.values.last()));
            assert!(
                e.message
                    .starts_with("update sent to oncall: still escalated; "),
                "{}",
                e.message
            );
        }
        assert_eq!(sent[1].at.since(sent[0].at), 15 * MIN);
        // The second update does not report the first as news.
        assert!(
            !pages[2].1.updates.iter().any(|u| u.contains("update sent")),
            "{:?}",
            pages[2].1.updates
        );
        let review = crate::domain::report::review::render(&inc, &timeline);
        assert_eq!(
            review.matches("update sent to oncall").count(),
            2,
            "{review}"
        );
    })
    .await
}
