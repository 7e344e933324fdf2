//! A backlog of signals (a storm, or an engine that was behind) is handled in batches that grow
//! while they come back full: when each batch wrote every incident it touched whole, with its
//! alerts, a fixed batch of 256 made a storm of thousands of alerts per incident cost the square
//! of the backlog (the chaos flood of 60 s at 1 000 webhooks/s never drained). See also
//! `coalesce`: one write per incident per pass, its alerts as rows.

use super::*;
use crate::engine::{SIGNAL_BATCH, SIGNAL_BATCH_MAX, next_batch};

/// The batches one pass takes to handle `backlog` signals.
fn batches_for(backlog: usize) -> usize {
    let (mut batch, mut left, mut batches) = (SIGNAL_BATCH, backlog, 0);
    while left > 0 {
        let n = left.min(batch);
        left -= n;
        batches += 1;
        if n == batch {
            batch = next_batch(batch);
        }
    }
    batches
}

#[test]
fn a_backlog_is_handled_in_batches_that_grow_to_the_maximum() {
    assert_eq!(batches_for(0), 0);
    assert_eq!(
        batches_for(SIGNAL_BATCH - 1),
        1,
        "no backlog: one small batch"
    );
    assert_eq!(next_batch(SIGNAL_BATCH_MAX), SIGNAL_BATCH_MAX, "bounded");
    // The flood of issue 11: 60 s at 1 000 webhooks/s, a fifth of them with 50 alerts. At 256
    // per batch that was 2 532 batches, each rewriting up to 100 incidents of 6 480 alerts.
    let flood: usize = 648_000;
    assert_eq!(flood.div_ceil(SIGNAL_BATCH), 2_532);
    let batches = batches_for(flood);
    assert!(batches <= 50, "{batches} batches for {flood} signals");
}

#[tokio::test]
async fn a_backlog_of_many_batches_joins_every_alert_to_its_incident_in_one_settle() {
    within(async {
        let mut rig = Rig::new(RULES, &policy("", LOOK_THEN_FIX));
        let now = rig.clock.now();
        let services = ["checkout", "payments", "search"];
        let signals: Vec<Signal> = (0..5_000)
            .map(|i| {
                let service = services[i % services.len()];
                let mut s = Rig::signal(service, "warning", Status::Firing, now);
                s.fingerprint = format!("{service}-{i}");
                s
            })
            .collect();
        // One delivery, then the engine: 5 000 signals are more than the first batches.
        rig.deliver(signals).await;
        let incidents = rig.store.active_incidents().await.unwrap();
        assert_eq!(incidents.len(), services.len(), "one incident per service");
        let joined: usize = incidents.iter().map(|i| i.active.len()).sum();
        assert_eq!(joined, 5_000, "every alert joined its incident");
        assert_eq!(rig.fix_calls(), services.len(), "one remediation each");
    })
    .await
}

#[tokio::test]
async fn an_alert_that_only_joins_its_incident_queues_no_copy_of_the_incident() {
    use crate::domain::incident::{Effect, Entry};
    use crate::engine::signals::{Pending, pending_effects};
    within(async {
        let mut rig = Rig::new(RULES, &policy("", LOOK_THEN_FIX));
        rig.fire("checkout", "warning").await;
        let inc = rig.store.active_incidents().await.unwrap().remove(0);
        let joined = Effect::Record(Entry {
            at: rig.clock.now(),
            kind: EntryKind::AlertJoined,
            message: "alert joined".into(),
            data: serde_json::Value::Null,
        });
        let mut queued = Vec::new();
        pending_effects(&mut queued, &inc, vec![joined]);
        pending_effects(&mut queued, &inc, vec![]);
        pending_effects(&mut queued, &inc, vec![Effect::PageResolved]);
        assert_eq!(queued.len(), 2, "nothing queued for no effect");
        assert!(matches!(&queued[0], Pending::Records(id, _) if *id == inc.id));
        assert!(matches!(&queued[1], Pending::Full(i, _) if i.id == inc.id));
    })
    .await
}
