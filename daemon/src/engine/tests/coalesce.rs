//! One engine pass writes each incident it touches once, in its last state, with all the
//! pass's timeline entries in order. An incident's body holds every firing alert: a write per
//! signal batch (or per change) made resolving k alerts of an incident of n cost k·n, or
//! (batches) n per batch; the chaos flood's resolve phase went at ≈ 23 webhooks/s.

use super::*;

/// Counts every write of an incident row (insert or replace) and its body's bytes, and every
/// write of an incident's alert rows (kept apart from the body).
async fn count_incident_writes(store: &SqliteStore) {
    store
        .execute_batch(
            "CREATE TABLE incident_writes (id TEXT NOT NULL, bytes INTEGER NOT NULL);
             CREATE TRIGGER incident_inserted AFTER INSERT ON incidents
             BEGIN INSERT INTO incident_writes VALUES (new.id, length(new.body)); END;
             CREATE TRIGGER incident_updated AFTER UPDATE ON incidents
             BEGIN INSERT INTO incident_writes VALUES (new.id, length(new.body)); END;
             CREATE TABLE alert_writes (op TEXT NOT NULL);
             CREATE TRIGGER alert_inserted AFTER INSERT ON incident_alerts
             BEGIN INSERT INTO alert_writes VALUES ('set'); END;
             CREATE TRIGGER alert_updated AFTER UPDATE ON incident_alerts
             BEGIN INSERT INTO alert_writes VALUES ('set'); END;
             CREATE TRIGGER alert_deleted AFTER DELETE ON incident_alerts
             BEGIN INSERT INTO alert_writes VALUES ('unset'); END;",
        )
        .await
        .unwrap();
}

/// (writes, bytes written) of incident rows since the count began, then starts it again.
async fn take_writes(store: &SqliteStore) -> (i64, i64) {
    let n = store
        .query_i64("SELECT count(*) FROM incident_writes")
        .await
        .unwrap();
    let bytes = store
        .query_i64("SELECT coalesce(sum(bytes), 0) FROM incident_writes")
        .await
        .unwrap();
    store
        .execute_batch("DELETE FROM incident_writes")
        .await
        .unwrap();
    (n, bytes)
}

/// (alert rows set, alert rows removed) since the count began, then starts it again.
async fn take_alert_writes(store: &SqliteStore) -> (i64, i64) {
    let set = store
        .query_i64("SELECT count(*) FROM alert_writes WHERE op = 'set'")
        .await
        .unwrap();
    let unset = store
        .query_i64("SELECT count(*) FROM alert_writes WHERE op = 'unset'")
        .await
        .unwrap();
    store
        .execute_batch("DELETE FROM alert_writes")
        .await
        .unwrap();
    (set, unset)
}

/// Stores one delivery without running the engine.
pub(super) async fn ingest(rig: &Rig, signals: Vec<Signal>) {
    let receipt = Receipt {
        received_at: rig.clock.now(),
        receiver: "remedyd".into(),
        group_key: "{}".into(),
        truncated_alerts: 0,
        alerts: signals.len(),
    };
    rig.store.ingest(receipt, signals).await.unwrap();
}

/// Signals the engine has handled as matched, by its metric.
fn matched(rig: &Rig) -> u64 {
    rig.metrics
        .encode()
        .lines()
        .find(|l| {
            l.starts_with("remedyd_signals_total")
                && l.contains("source=\"webhook\"")
                && l.contains("status=\"matched\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn checkout(i: usize, status: Status, at: Timestamp) -> Signal {
    let mut s = Rig::signal("checkout", "warning", status, at);
    s.fingerprint = format!("checkout-{i}");
    s
}

#[tokio::test]
async fn resolving_many_alerts_of_a_big_incident_in_one_pass_writes_it_once() {
    within(async {
        let mut rig = Rig::new(RULES, &policy("", LOOK_THEN_FIX));
        let at = rig.clock.now();
        rig.deliver(
            (0..3_000)
                .map(|i| checkout(i, Status::Firing, at))
                .collect(),
        )
        .await;
        let inc = rig.store.active_incidents().await.unwrap().remove(0);
        assert_eq!(inc.active.len(), 3_000);
        let entries_before = rig.store.timeline(&inc.id).await.unwrap().len();
        assert_eq!(matched(&rig), 3_000);
        count_incident_writes(&rig.store).await;

        // 1 200 resolves in one delivery: more than one signal batch (256, then 512, ...).
        let resolved: Vec<usize> = (0..1_200).map(|i| (i * 7) % 3_000).collect();
        ingest(
            &rig,
            resolved
                .iter()
                .map(|i| checkout(*i, Status::Resolved, at))
                .collect(),
        )
        .await;
        rig.engine.pass(&rig.tasks).await.unwrap();
        // Each signal handled once: a batch reads on past those the pass holds uncommitted.
        assert_eq!(matched(&rig), 4_200);

        let (writes, bytes) = take_writes(&rig.store).await;
        let stored = rig.store.get_incident(&inc.id).await.unwrap().unwrap();
        assert_eq!(stored.active.len(), 1_800, "every resolve applied");
        // Alerts leaving an incident that stays open change only its alerts, which are rows
        // apart from its own: that row is not written at all (`Commit::alerts_only`).
        assert_eq!((writes, bytes), (0, 0), "the incident's own row is left");
        assert_eq!(
            take_alert_writes(&rig.store).await,
            (0, 1_200),
            "one row removed per resolved alert, no other alert written"
        );

        // Every resolve's timeline entry, in the order the alerts resolved.
        let timeline = rig.store.timeline(&inc.id).await.unwrap();
        let entries: Vec<_> = timeline[entries_before..]
            .iter()
            .filter(|e| e.kind == EntryKind::AlertResolved)
            .collect();
        let fingerprints: Vec<String> = entries
            .iter()
            .map(|e| {
                e.data["fingerprint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let expected: Vec<String> = resolved.iter().map(|i| format!("checkout-{i}")).collect();
        assert_eq!(fingerprints, expected);
        assert_eq!(
            entries.last().map(|e| e.message.as_str()),
            Some("alert checkout-2393 resolved; 1800 still firing")
        );

        // Another pass with nothing new writes nothing.
        rig.engine.pass(&rig.tasks).await.unwrap();
        assert_eq!(take_writes(&rig.store).await, (0, 0));
        assert_eq!(take_alert_writes(&rig.store).await, (0, 0));

        // A restarted engine reads the incident back whole, and resolving the rest resolves it.
        rig.restart();
        ingest(
            &rig,
            (0..3_000)
                .map(|i| checkout(i, Status::Resolved, at))
                .collect(),
        )
        .await;
        rig.engine.pass(&rig.tasks).await.unwrap();
        assert_eq!(rig.status("checkout").await, "resolved");
        let after = rig.store.get_incident(&inc.id).await.unwrap().unwrap();
        assert!(after.active.is_empty());
        assert_eq!(take_alert_writes(&rig.store).await, (0, 1_800));
        // Resolving changes its row: written once for the pass, in its last state, and its
        // body holds no alerts.
        let (writes, bytes) = take_writes(&rig.store).await;
        assert_eq!(writes, 1, "the incident is written once for the pass");
        let body = serde_json::to_string(&after).unwrap().len() as i64;
        assert_eq!(bytes, body, "one body's bytes, in its last state");
    })
    .await
}

#[tokio::test]
async fn an_incident_opened_and_started_in_one_pass_is_written_once() {
    within(async {
        let mut rig = Rig::new(RULES, &policy("", LOOK_THEN_FIX));
        count_incident_writes(&rig.store).await;
        let at = rig.clock.now();
        ingest(&rig, vec![checkout(0, Status::Firing, at)]).await;
        // The signal opens the incident; drive() claims its first step: one commit, one write.
        rig.engine.pass(&rig.tasks).await.unwrap();
        let (writes, _) = take_writes(&rig.store).await;
        let inc = rig.store.active_incidents().await.unwrap().remove(0);
        let kinds: Vec<EntryKind> = rig
            .store
            .timeline(&inc.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds.first(), Some(&EntryKind::Opened));
        assert!(kinds.contains(&EntryKind::StepStarted), "{kinds:?}");
        assert!(inc.is_acting(), "the step is claimed: {:?}", inc.phase);
        assert_eq!(writes, 1, "opened and started in one pass: written once");
        rig.tasks.close();
        rig.tasks.wait().await;
    })
    .await
}
