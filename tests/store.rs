//! The `Store` contract, written once against `dyn Store` so that every implementation (SQLite
//! now, PostgreSQL with its issue) passes the same suite.

use std::sync::Arc;
use std::time::Duration;

use remedyd::clock::Timestamp;
use remedyd::escalate::{NotificationKind, notification};
use remedyd::incident::{Entry, Incident};
use remedyd::policy::breaker::BreakerRecord;
use remedyd::policy::{Ladder, Policy};
use remedyd::rules::{Target, TargetKind};
use remedyd::signal::{Signal, Source, Status};
use remedyd::store::sqlite::SqliteStore;
use remedyd::store::{Commit, Pause, Receipt, Store, StoreError};

fn signal(fp: &str, starts: i64, status: Status) -> Signal {
    Signal {
        source: Source::Webhook,
        status,
        labels: [("alertname".to_string(), "HighErrorRate".to_string())].into(),
        annotations: Default::default(),
        starts_at: Timestamp(starts),
        ends_at: None,
        fingerprint: fp.into(),
        generator_url: String::new(),
        value: None,
        rule: None,
        level: None,
    }
}

fn receipt(n: usize) -> Receipt {
    Receipt {
        received_at: Timestamp(1),
        receiver: "r".into(),
        group_key: "g".into(),
        truncated_alerts: 0,
        alerts: n,
    }
}

fn incident(id: &str, name: &str) -> Incident {
    let policy = Policy {
        name: "p".into(),
        description: String::new(),
        mode: None,
        levels: [(
            1,
            Ladder {
                steps: vec![],
                escalate_to: "oncall".into(),
            },
        )]
        .into(),
    };
    Incident::open(
        id.into(),
        "r",
        &policy,
        Target {
            kind: TargetKind::Deployment,
            namespace: "ns".into(),
            name: name.into(),
        },
        Default::default(),
        "fp".into(),
        Timestamp(0),
        1,
        Duration::ZERO,
        Timestamp(10),
    )
    .0
}

async fn suite(store: Arc<dyn Store>) {
    // Ingest dedups on (fingerprint, startsAt, status); a resolve is a distinct signal.
    let r = store
        .ingest(
            receipt(2),
            vec![
                signal("a", 1, Status::Firing),
                signal("b", 1, Status::Firing),
            ],
        )
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (2, 0));
    let r = store
        .ingest(
            receipt(3),
            vec![
                signal("a", 1, Status::Firing),
                signal("a", 2, Status::Firing),
                signal("a", 1, Status::Resolved),
            ],
        )
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (2, 1));
    let pending = store.pending_signals(10).await.unwrap();
    assert_eq!(pending.len(), 4);
    assert!(
        pending.windows(2).all(|w| w[0].id < w[1].id),
        "oldest first"
    );

    // A commit is atomic and marks signals processed.
    let id = store.next_incident_id(2026).await.unwrap();
    assert_eq!(id, "INC-2026-0001");
    assert_eq!(store.next_incident_id(2026).await.unwrap(), "INC-2026-0002");
    let inc = incident(&id, "checkout");
    let entry = Entry {
        at: Timestamp(10),
        kind: "opened".into(),
        message: "m".into(),
        data: serde_json::Value::Null,
    };
    let n = notification(
        &inc,
        std::slice::from_ref(&entry),
        NotificationKind::Trigger,
        "why",
    );
    let c = Commit {
        incidents: vec![inc.clone()],
        timeline: vec![(id.clone(), entry.clone())],
        processed: pending.iter().map(|p| p.id).max(),
        outbox: vec![("oncall".into(), n)],
        budget_uses: vec![
            ("global".into(), Timestamp(100), false),
            ("global".into(), Timestamp(200), true),
        ],
        breaker_failures: vec![("k".into(), Timestamp(100))],
        breakers: vec![(
            "k".into(),
            BreakerRecord {
                opened_at: Some(Timestamp(100)),
                trial_since: None,
                reset_at: None,
            },
        )],
        claims: vec![(id.clone(), 1, 0, Timestamp(10))],
        finished: vec![],
    };
    store.commit(c).await.unwrap();
    assert!(store.pending_signals(10).await.unwrap().is_empty());
    assert_eq!(store.get_incident(&id).await.unwrap().unwrap(), inc);
    assert_eq!(store.timeline(&id).await.unwrap(), vec![entry]);
    assert_eq!(store.active_incidents().await.unwrap().len(), 1);

    // The ledger: a step is claimed once; a second claim fails the whole commit.
    let mut changed = inc.clone();
    changed.level = 3;
    let again = Commit {
        incidents: vec![changed],
        claims: vec![(id.clone(), 1, 0, Timestamp(20))],
        ..Default::default()
    };
    assert!(matches!(
        store.commit(again).await,
        Err(StoreError::AlreadyClaimed(_))
    ));
    assert_eq!(
        store.get_incident(&id).await.unwrap().unwrap().level,
        1,
        "nothing of a refused commit is written"
    );

    // One open incident per (rule, target).
    let dup = Commit {
        incidents: vec![incident("INC-2026-0002", "checkout")],
        ..Default::default()
    };
    assert!(store.commit(dup).await.is_err());
    let other = Commit {
        incidents: vec![incident("INC-2026-0003", "payments")],
        ..Default::default()
    };
    store.commit(other).await.unwrap();
    let list = store.list_incidents(None, 10).await.unwrap();
    assert_eq!(
        list.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["INC-2026-0003", "INC-2026-0001"],
        "newest first"
    );

    // Budgets count per mode inside the window; breakers and failures persist.
    assert_eq!(
        store
            .count_uses("global", Timestamp(50), false)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .count_uses("global", Timestamp(150), false)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .count_uses("global", Timestamp(50), true)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.count_failures("k", Timestamp(0)).await.unwrap(), 1);
    assert_eq!(
        store.breaker("k").await.unwrap().opened_at,
        Some(Timestamp(100))
    );
    assert_eq!(
        store.breaker("never").await.unwrap(),
        BreakerRecord::default()
    );

    // Pauses.
    let p = Pause {
        scope: "global".into(),
        reason: "freeze".into(),
        author: "alice".into(),
        since: Timestamp(5),
    };
    store.set_pause(p.clone()).await.unwrap();
    assert_eq!(store.pauses().await.unwrap(), vec![p]);
    assert!(store.clear_pause("global").await.unwrap());
    assert!(!store.clear_pause("global").await.unwrap());

    // Outbox: due, retried later, then done.
    assert_eq!(store.outbox_depth().await.unwrap(), 1);
    let due = store.outbox_due(Timestamp(0), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].notification.incident, id);
    store
        .outbox_retry(due[0].id, Timestamp(1000), "503")
        .await
        .unwrap();
    assert!(
        store
            .outbox_due(Timestamp(999), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.outbox_due(Timestamp(1000), 10).await.unwrap()[0].attempts,
        1
    );
    store
        .outbox_done(due[0].id, Timestamp(1001), true)
        .await
        .unwrap();
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    tokio::time::timeout(Duration::from_secs(30), suite(Arc::new(store)))
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlite_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .ingest(receipt(1), vec![signal("a", 1, Status::Firing)])
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.pending_signals(10).await.unwrap().len(),
        1,
        "migrations are idempotent and data stays"
    );
}

#[tokio::test]
async fn concurrent_webhooks_are_group_committed_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.ingest(
                receipt(1),
                vec![signal(&format!("fp{i}"), 1, Status::Firing)],
            )
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().stored, 1);
    }
    assert_eq!(store.pending_signals(1000).await.unwrap().len(), 200);
}
