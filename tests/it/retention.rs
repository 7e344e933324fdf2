//! Signal retention (`signal_retention`): what `Store::prune_signals` removes and keeps, the same
//! on SQLite and on a real PostgreSQL 15, and the leader's removal loop over many batches.

use std::sync::Arc;
use std::time::Duration;

use remedyd::adapters::store::postgres::PgStore;
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::adapters::store::{Commit, Pruned, Receipt, Store, retention};
use remedyd::adapters::telemetry::Metrics;
use remedyd::domain::signal::{Signal, Source, Status};
use remedyd::domain::time::{ManualClock, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::support::services::Postgres;

const DAY: i64 = 24 * 3600 * 1000;
/// When the old signals arrived.
const T: i64 = 1_790_000_000_000;

fn firing(fp: &str) -> Signal {
    Signal {
        source: Source::Webhook,
        status: Status::Firing,
        labels: [("alertname".to_string(), "HighErrorRate".to_string())].into(),
        annotations: Default::default(),
        starts_at: Timestamp(T - 1000),
        ends_at: None,
        fingerprint: fp.into(),
        generator_url: String::new(),
        value: None,
        rule: None,
        level: None,
    }
}

fn at(received_at: i64, alerts: usize) -> Receipt {
    Receipt {
        received_at: Timestamp(received_at),
        receiver: "r".into(),
        group_key: "g".into(),
        truncated_alerts: 0,
        alerts,
    }
}

/// Marks every signal up to `id` handled, as the engine does.
async fn handled(store: &dyn Store, id: i64) {
    store
        .commit(Commit {
            processed: Some(id),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn ids(store: &dyn Store) -> Vec<(i64, String)> {
    store
        .pending_signals(10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.signal.fingerprint))
        .collect()
}

/// The contract both stores keep.
async fn suite(store: Arc<dyn Store>) {
    let s = &*store;
    s.ingest(at(T, 5), ["a", "b", "k", "c", "d"].map(firing).to_vec())
        .await
        .unwrap();
    // "k" keeps firing: Alertmanager re-sends it ten days later (a duplicate, heard of).
    let r = s
        .ingest(at(T + 10 * DAY, 1), vec![firing("k")])
        .await
        .unwrap();
    assert_eq!(r.duplicates, 1);
    s.ingest(at(T + 20 * DAY, 1), vec![firing("young")])
        .await
        .unwrap();
    let all = ids(s).await;
    assert_eq!(all.len(), 6, "{all:?}");
    let id = |fp: &str| all.iter().find(|(_, f)| f == fp).unwrap().0;
    // The engine has handled a, b, k and c; not d nor young.
    handled(s, id("c")).await;

    // Before T + 1 ms: a, b and c go; k stays (re-sent since), d stays (not handled).
    let p = s.prune_signals(0, Timestamp(T + 1), 1000).await.unwrap();
    assert_eq!(
        p,
        Pruned {
            signals: 3,
            receipts: 1,
            next: Some(id("c")),
        },
        "the window ends at the last handled row, which was old: look further"
    );
    let p = s
        .prune_signals(id("c"), Timestamp(T + 1), 1000)
        .await
        .unwrap();
    assert_eq!(
        p,
        Pruned::default(),
        "nothing handled after c: the round is over"
    );
    assert_eq!(
        s.last_heard(vec![
            ("k".into(), Timestamp(T - 1000)),
            ("a".into(), Timestamp(T - 1000))
        ])
        .await
        .unwrap(),
        vec![("k".to_string(), Timestamp(T + 10 * DAY))],
        "k is still heard of; a is gone"
    );

    // Everything handled, and everything older than the cut: all go but the newest row.
    handled(s, id("young")).await;
    let p = s
        .prune_signals(0, Timestamp(T + 100 * DAY), 1000)
        .await
        .unwrap();
    assert_eq!((p.signals, p.receipts), (2, 2), "{p:?}");
    assert_eq!(p.next, Some(id("d")));
    // A re-send of k is now new again: its row is gone, as its retention said.
    // The next signal gets an id after the engine's watermark, so the engine reads it.
    s.ingest(at(T + 100 * DAY, 1), vec![firing("next")])
        .await
        .unwrap();
    let pending = ids(s).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].1, "next");
    assert!(pending[0].0 > id("young"), "{pending:?}");
    // A window that stops at a young row ends the round even if rows after it were older.
    let p = s.prune_signals(0, Timestamp(T + 1), 1000).await.unwrap();
    assert_eq!(p, Pruned::default(), "the newest handled row stays");
}

#[tokio::test]
async fn sqlite_prunes_what_the_retention_lets_go_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    tokio::time::timeout(Duration::from_secs(30), suite(Arc::new(store)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prunes_what_the_retention_lets_go_and_keeps_the_rest() {
    let pg = Postgres::start().await;
    let store = PgStore::connect(&pg.url())
        .await
        .unwrap_or_else(|e| panic!("connecting the store: {e}"));
    tokio::time::timeout(Duration::from_secs(60), suite(Arc::new(store)))
        .await
        .unwrap();
}

/// The leader's loop removes a backlog of several batches in one round, and leaves what the
/// engine has not handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_loop_removes_a_backlog_in_batches_and_keeps_unhandled_signals() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let old = 2 * retention::BATCH + 500;
    for chunk in 0..old / 50 {
        let batch = (0..50)
            .map(|i| firing(&format!("h{}", chunk * 50 + i)))
            .collect();
        store.ingest(at(T, 50), batch).await.unwrap();
    }
    let last_handled = ids(&*store).await.last().unwrap().0;
    handled(&*store, last_handled).await;
    let unhandled = (0..10).map(|i| firing(&format!("u{i}"))).collect();
    store.ingest(at(T, 10), unhandled).await.unwrap();

    let metrics = Arc::new(Metrics::new());
    let clock = Arc::new(ManualClock::new(Timestamp(T + 31 * DAY)));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(retention::run(
        store.clone(),
        Duration::from_secs(30 * 24 * 3600),
        clock,
        metrics.clone(),
        cancel.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while metrics.signals_pruned.get() < old as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pruned {} of {old} within 30 s",
            metrics.signals_pruned.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The round is over: nothing more goes, however long we wait for another batch.
    tokio::time::sleep(retention::PAUSE * 3).await;
    assert_eq!(metrics.signals_pruned.get(), old as u64);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let left = ids(&*store).await;
    assert_eq!(left.len(), 10, "the unhandled signals stay: {left:?}");
    assert!(left.iter().all(|(_, fp)| fp.starts_with('u')), "{left:?}");
}
