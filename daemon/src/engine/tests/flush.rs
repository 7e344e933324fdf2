//! Which of the engine's commits wait for their own flush to disk. In a storm of alerts joining
//! (or restarting in) open incidents, each delivery paid two fsyncs: ingest's, and the engine's
//! for alert rows and timeline entries it can derive again from the stored signals. Those are
//! now written without one (`Commit::rederivable`, `Commit::skips_flush`); anything that opens,
//! resolves or re-levels an incident, claims a step or pages still waits for it.
//!
//! Observed on the real SQLite store: triggers log the connection's `synchronous` setting as
//! each row is written (2 = FULL, the commit's own fsync; 1 = NORMAL, none).

use super::coalesce::ingest;
use super::*;

/// Logs, per timeline entry, alert row and ledger claim written, the `synchronous` setting of
/// the transaction writing it.
async fn log_flushes(store: &SqliteStore) {
    store
        .execute_batch(
            "CREATE TABLE flushes (what TEXT NOT NULL, sync INTEGER NOT NULL);
             CREATE TRIGGER entry_flush AFTER INSERT ON timeline BEGIN
               INSERT INTO flushes SELECT json_extract(new.body, '$.kind'), synchronous FROM pragma_synchronous;
             END;
             CREATE TRIGGER alert_set_flush AFTER INSERT ON incident_alerts BEGIN
               INSERT INTO flushes SELECT 'alert_row', synchronous FROM pragma_synchronous;
             END;
             CREATE TRIGGER alert_update_flush AFTER UPDATE ON incident_alerts BEGIN
               INSERT INTO flushes SELECT 'alert_row', synchronous FROM pragma_synchronous;
             END;
             CREATE TRIGGER incident_insert_flush AFTER INSERT ON incidents BEGIN
               INSERT INTO flushes SELECT 'incident_row', synchronous FROM pragma_synchronous;
             END;
             CREATE TRIGGER incident_update_flush AFTER UPDATE ON incidents BEGIN
               INSERT INTO flushes SELECT 'incident_row', synchronous FROM pragma_synchronous;
             END;
             CREATE TRIGGER claim_flush AFTER INSERT ON ledger BEGIN
               INSERT INTO flushes SELECT 'claim', synchronous FROM pragma_synchronous;
             END;",
        )
        .await
        .unwrap();
}

/// Per kind of row logged, in name order: (kind, rows, the lowest and highest setting they
/// were written under); then starts the log again.
async fn take(store: &SqliteStore) -> Vec<(String, i64, i64, i64)> {
    let rows = store
        .query_rows(
            "SELECT what, count(*), min(sync), max(sync) FROM flushes GROUP BY what ORDER BY what",
        )
        .await
        .unwrap();
    store.execute_batch("DELETE FROM flushes").await.unwrap();
    rows
}

fn owned(rows: &[(&str, i64, i64, i64)]) -> Vec<(String, i64, i64, i64)> {
    rows.iter()
        .map(|(w, n, lo, hi)| (w.to_string(), *n, *lo, *hi))
        .collect()
}

fn checkout(i: usize, severity: &str, status: Status, at: Timestamp) -> Signal {
    let mut s = Rig::signal("checkout", severity, status, at);
    s.fingerprint = format!("checkout-{i}");
    s
}

#[tokio::test]
async fn only_what_the_engine_can_derive_again_skips_the_fsync() {
    within(async {
        let mut rig = Rig::new(RULES, &policy("", LOOK_THEN_FIX));
        log_flushes(&rig.store).await;
        let at = rig.clock.now();

        // Opening the incident and claiming its steps: durable.
        rig.deliver(vec![checkout(0, "warning", Status::Firing, at)])
            .await;
        let opened = take(&rig.store).await;
        assert!(
            opened.iter().all(|(_, _, lo, _)| *lo == 2),
            "opening and acting are written durably: {opened:?}"
        );
        assert!(opened.iter().any(|(w, _, _, _)| w == "claim"), "{opened:?}");
        assert_eq!(rig.fix_calls(), 1, "the fix ran");

        // Four alerts join the open incident (its fix is being verified): alert rows and
        // timeline entries only, derived from stored signals.
        rig.clock.advance(Duration::from_secs(1));
        ingest(
            &rig,
            (1..5)
                .map(|i| checkout(i, "warning", Status::Firing, at))
                .collect(),
        )
        .await;
        rig.engine.pass(&rig.tasks).await.unwrap();
        assert_eq!(
            take(&rig.store).await,
            owned(&[
                ("alert_joined", 4, 1, 1),
                ("alert_row", 4, 1, 1),
                ("incident_row", 1, 1, 1)
            ])
        );

        // One restarts (a new start, its resolve lost): its alert row, no fsync, and not the
        // incident's row, which did not change (`Commit::alerts_only`).
        let later = at.plus(Duration::from_secs(30));
        rig.clock.advance(Duration::from_secs(1));
        ingest(&rig, vec![checkout(2, "warning", Status::Firing, later)]).await;
        rig.engine.pass(&rig.tasks).await.unwrap();
        assert_eq!(take(&rig.store).await, owned(&[("alert_row", 1, 1, 1)]));

        // One of five resolves: the incident stays open.
        rig.clock.advance(Duration::from_secs(1));
        ingest(&rig, vec![checkout(3, "warning", Status::Resolved, at)]).await;
        rig.engine.pass(&rig.tasks).await.unwrap();
        assert_eq!(
            take(&rig.store).await,
            owned(&[("alert_resolved", 1, 1, 1)])
        );

        // One at a higher level raises the incident's level: durable.
        ingest(&rig, vec![checkout(5, "critical", Status::Firing, at)]).await;
        rig.engine.pass(&rig.tasks).await.unwrap();
        let raised = take(&rig.store).await;
        assert!(
            raised.iter().all(|(_, _, lo, _)| *lo == 2),
            "a new level is written durably: {raised:?}"
        );

        // The rest resolve: the incident resolves, durably, in the same pass's commit.
        ingest(
            &rig,
            [0, 1, 2, 4, 5]
                .into_iter()
                .map(|i| {
                    let sev = if i == 5 { "critical" } else { "warning" };
                    checkout(i, sev, Status::Resolved, at)
                })
                .collect(),
        )
        .await;
        rig.engine.pass(&rig.tasks).await.unwrap();
        assert_eq!(rig.status("checkout").await, "resolved");
        let resolved = take(&rig.store).await;
        assert!(
            resolved.iter().all(|(_, _, lo, _)| *lo == 2),
            "resolving is written durably: {resolved:?}"
        );

        // Every later ingest and commit is durable again (the connection is back at FULL).
        let sync = rig
            .store
            .query_i64("SELECT synchronous FROM pragma_synchronous")
            .await
            .unwrap();
        assert_eq!(sync, 2);
    })
    .await
}
