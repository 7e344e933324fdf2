//! The `Store` contract, written once against `dyn Store` so that every implementation (SQLite
//! and PostgreSQL) passes the same suite; then what only sharing one PostgreSQL database between
//! replicas needs: migrations raced, ingest from several replicas ordered for the engine's
//! watermark, incident ids, leadership and its fencing, outages. PostgreSQL 15 is real (Debian's
//! package, started per test); a missing server fails the test, it is never skipped.

use std::sync::Arc;
use std::time::Duration;

use remedyd::adapters::escalate::{NotificationKind, notification};
use remedyd::adapters::store::postgres::{Leadership, PgStore};
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::adapters::store::{
    BudgetCharge, Cancelled, Claim, Commit, Finished, NewWindow, Pause, RECURS, Receipt, Release,
    ResolveDone, ResolveRequest, ResolveResult, Store, StoreError,
};
use remedyd::domain::incident::{Entry, EntryKind, Incident};
use remedyd::domain::policy::breaker::BreakerRecord;
use remedyd::domain::policy::maintenance::Weekly;
use remedyd::domain::policy::{Ladder, Policy};
use remedyd::domain::rules::{Target, TargetKind};
use remedyd::domain::signal::{Signal, Source, Status};
use remedyd::domain::time::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::support::services;
use crate::support::services::{PG_PASSWORD, Postgres};

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
    let policy = Policy::with_levels(
        "p",
        [(
            1,
            Ladder {
                steps: vec![],
                escalate_to: "oncall".into(),
            },
        )]
        .into(),
    );
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

/// Writes `inc` whole again (its row and all its alerts) and checks it reads back as it is.
async fn put_back(store: &dyn Store, inc: &Incident) {
    store
        .commit(Commit {
            incidents: vec![inc.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.get_incident(&inc.id).await.unwrap().unwrap(), *inc);
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
            Receipt {
                received_at: Timestamp(5),
                ..receipt(3)
            },
            vec![
                signal("a", 1, Status::Firing),
                signal("a", 2, Status::Firing),
                signal("a", 1, Status::Resolved),
            ],
        )
        .await
        .unwrap();
    assert_eq!((r.stored, r.duplicates), (2, 1));
    // A re-sent firing alert is a duplicate, but it is heard of (stale incidents). Alerts are
    // looked up by (fingerprint, start); the latest of a fingerprint's starts asked is answered.
    let heard = |alerts: &[(&str, i64)]| {
        let alerts = alerts
            .iter()
            .map(|(f, s)| (f.to_string(), Timestamp(*s)))
            .collect();
        let store = store.clone();
        async move {
            store
                .last_heard(alerts)
                .await
                .unwrap()
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    let h = heard(&[("a", 1), ("b", 1), ("never", 1)]).await;
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h["a"], Timestamp(5), "the re-send counts");
    assert_eq!(h["b"], Timestamp(1));
    // Its restart (start 2, stored at 5) is heard of under its own start only.
    let r = store
        .ingest(
            Receipt {
                received_at: Timestamp(7),
                ..receipt(1)
            },
            vec![signal("b", 1, Status::Firing)],
        )
        .await
        .unwrap();
    assert_eq!(r.duplicates, 1);
    let h = heard(&[("a", 2), ("b", 9), ("a", 9)]).await;
    assert_eq!(h.len(), 1, "no alert b started at 9: {h:?}");
    assert_eq!(h["a"], Timestamp(5), "a under its restart");
    let h = heard(&[("a", 1), ("a", 2), ("b", 1)]).await;
    assert_eq!(h["b"], Timestamp(7), "b re-sent at 7");
    assert_eq!(h["a"], Timestamp(5), "the latest of a's two starts");
    let pending = store.pending_signals(10).await.unwrap();
    assert_eq!(pending.len(), 4);
    assert!(
        pending.windows(2).all(|w| w[0].id < w[1].id),
        "oldest first"
    );

    // A commit is atomic and marks signals processed; committing an incident advances its
    // year's counter (the engine numbers new incidents after it).
    assert_eq!(store.incident_counter(2026).await.unwrap(), 0);
    let id = "INC-2026-0001".to_string();
    let inc = incident(&id, "checkout");
    let entry = Entry {
        at: Timestamp(10),
        kind: EntryKind::Opened,
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
        approvals: Vec::new(),
        rederivable: false,
        alerts_only: Default::default(),
        released: Vec::new(),
        incidents: vec![inc.clone()],
        timeline: vec![(id.clone(), entry.clone())],
        processed: pending.iter().map(|p| p.id).max(),
        outbox: vec![("oncall".into(), n)],
        budget_uses: vec![
            BudgetCharge {
                key: "global".into(),
                at: Timestamp(100),
                dry_run: false,
            },
            BudgetCharge {
                key: "global".into(),
                at: Timestamp(200),
                dry_run: true,
            },
        ],
        breaker_failures: vec![("k".into(), Timestamp(100))],
        breakers: vec![(
            "k".into(),
            BreakerRecord {
                opened_at: Some(Timestamp(100)),
                trial_since: Some(Timestamp(150)),
                trial_by: Some(id.clone()),
                reset_at: None,
            },
        )],
        claims: vec![Claim {
            incident: id.clone(),
            ladder: 1,
            step: 0,
            at: Timestamp(10),
        }],
        finished: vec![],
        counters: vec![(remedyd::adapters::store::STORM_COUNTER.into(), 42)],
        resolves_done: vec![],
        alerts: None,
    };
    store.commit(c).await.unwrap();
    // Named engine state is set exactly (the open storm), and can be cleared.
    assert_eq!(
        store
            .counter(remedyd::adapters::store::STORM_COUNTER.into())
            .await
            .unwrap(),
        42
    );
    assert_eq!(
        store.breaker("k").await.unwrap().trial_by.as_deref(),
        Some(id.as_str()),
        "the trial's holder is kept"
    );
    assert_eq!(store.incident_counter(2026).await.unwrap(), 1);
    assert_eq!(store.incident_counter(2027).await.unwrap(), 0);
    assert!(store.pending_signals(10).await.unwrap().is_empty());
    assert_eq!(store.get_incident(&id).await.unwrap().unwrap(), inc);
    assert_eq!(store.timeline(&id).await.unwrap(), vec![entry]);
    assert_eq!(store.active_incidents().await.unwrap().len(), 1);

    // An incident's alerts are kept apart from its body: a commit listing their changes writes
    // those (one joined, one left), one listing none writes them all. The first is one the
    // engine can derive again from its signals, which the store writes without waiting for its
    // flush to disk (`Commit::skips_flush`): it lands all the same.
    let mut changed = inc.clone();
    let first = inc
        .active
        .keys()
        .next()
        .cloned()
        .expect("opened with its alert");
    let alert = changed.active.remove(&first).expect("its alert");
    changed.active.insert("fp-joined".into(), alert);
    let mut writes = Vec::new();
    remedyd::adapters::store::alert_writes(Some(&inc), &changed, &mut writes);
    assert_eq!(writes.len(), 2, "{writes:?}");
    store
        .commit(Commit {
            incidents: vec![changed.clone()],
            alerts: Some(writes),
            processed: Some(1),
            rederivable: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.get_incident(&id).await.unwrap().unwrap(), changed);
    assert_eq!(store.active_incidents().await.unwrap(), vec![changed]);
    put_back(&*store, &inc).await;

    // An incident whose own row is current (`Commit::alerts_only`: only its alerts changed)
    // has its alerts written and its row left as it is. The engine marks only incidents whose
    // row did not change; this one's level changed too, which shows that the store skipped it.
    let mut restarted = inc.clone();
    let alert = restarted.active.get_mut(&first).expect("its alert");
    alert.restarted = Some(Timestamp(9_000));
    restarted.level = 3;
    let mut writes = Vec::new();
    remedyd::adapters::store::alert_writes(Some(&inc), &restarted, &mut writes);
    store
        .commit(Commit {
            incidents: vec![restarted.clone()],
            alerts: Some(writes),
            alerts_only: [id.clone()].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let stored = store.get_incident(&id).await.unwrap().unwrap();
    assert_eq!(stored.level, inc.level, "the row is not written");
    assert_eq!(
        stored.active, restarted.active,
        "the alerts are written, the restart with them"
    );
    put_back(&*store, &inc).await;

    // The ledger: a step is claimed once; a second claim fails the whole commit.
    let mut changed = inc.clone();
    changed.level = 3;
    let again = Commit {
        incidents: vec![changed],
        claims: vec![Claim {
            incident: id.clone(),
            ladder: 1,
            step: 0,
            at: Timestamp(20),
        }],
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

    released_claims(&*store).await;

    // One open incident per (rule, target).
    let dup = Commit {
        incidents: vec![incident("INC-2026-0002", "checkout")],
        ..Default::default()
    };
    assert!(store.commit(dup).await.is_err());
    assert_eq!(
        store.incident_counter(2026).await.unwrap(),
        1,
        "a refused commit counts nothing"
    );
    let other = Commit {
        incidents: vec![incident("INC-2026-0003", "payments")],
        ..Default::default()
    };
    store.commit(other).await.unwrap();
    assert_eq!(
        store.incident_counter(2026).await.unwrap(),
        3,
        "a refused commit counts nothing"
    );
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

    // A NUL in label-derived text (a fingerprint, a target, a budget key) is stored, deduplicated
    // and counted like any other character.
    let odd = || vec![signal("nul\0fp", 1, Status::Firing)];
    let r = store.ingest(receipt(1), odd()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (1, 0));
    let r = store.ingest(receipt(1), odd()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 1));
    let inc = incident("INC-2026-0009", "check\0out");
    let key = format!("action:http:{}", inc.target.key());
    store
        .commit(Commit {
            incidents: vec![inc.clone()],
            claims: vec![Claim {
                incident: inc.id.clone(),
                ladder: 1,
                step: 0,
                at: Timestamp(10),
            }],
            budget_uses: vec![BudgetCharge {
                key: key.clone(),
                at: Timestamp(100),
                dry_run: false,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.get_incident(&inc.id).await.unwrap(), Some(inc));
    assert_eq!(
        store.count_uses(&key, Timestamp(50), false).await.unwrap(),
        1
    );
    resolve_requests(&*store).await;
    maintenance_windows(&*store).await;
    crate::store_approvals::approvals(&*store).await;
    store.ping().await.unwrap();
}

fn window(scope: &str, starts_at: i64, ends_at: i64) -> NewWindow {
    NewWindow {
        scope: scope.into(),
        starts_at: Timestamp(starts_at),
        ends_at: Timestamp(ends_at),
        weekly: None,
        reason: "pg upgrade".into(),
        author: "alice".into(),
        created_at: Timestamp(starts_at.min(10)),
    }
}

/// Maintenance windows set through the API: stored with an id and read back as written; listed
/// while open or to come (by start), never once ended or cancelled; cancelled once.
async fn maintenance_windows(store: &dyn Store) {
    assert_eq!(
        store.maintenance_windows(Timestamp(0)).await.unwrap(),
        vec![]
    );
    let later = store
        .add_maintenance(window("rule:r", 5_000, 9_000))
        .await
        .unwrap();
    let open = store
        .add_maintenance(window("namespace:db", 1_000, 3_000))
        .await
        .unwrap();
    assert_ne!(later.id, open.id, "each window its own id");
    assert_eq!(open.scope, "namespace:db");
    assert_eq!(open.cancelled_at, None);
    assert_eq!(
        store.maintenance_windows(Timestamp(2_000)).await.unwrap(),
        vec![open.clone(), later.clone()],
        "open and future windows, by start, as written"
    );
    assert_eq!(
        store.maintenance_windows(Timestamp(3_000)).await.unwrap(),
        vec![later.clone()],
        "a window is over at its end"
    );
    // Cancel: once; an ended window and an unknown id are told apart.
    let Cancelled::Done(c) = store
        .cancel_maintenance(later.id, Timestamp(4_000), "bob")
        .await
        .unwrap()
    else {
        panic!("a future window is cancelled");
    };
    assert_eq!(c.cancelled_at, Some(Timestamp(4_000)));
    assert_eq!(c.cancelled_by.as_deref(), Some("bob"));
    assert_eq!(
        store.maintenance_windows(Timestamp(4_000)).await.unwrap(),
        vec![],
        "a cancelled window is not listed"
    );
    match store
        .cancel_maintenance(later.id, Timestamp(4_500), "carol")
        .await
        .unwrap()
    {
        Cancelled::Over(w) => assert_eq!(
            (w.cancelled_at, w.cancelled_by.as_deref()),
            (Some(Timestamp(4_000)), Some("bob")),
            "the first cancel stands, with who made it"
        ),
        other => panic!("cancelled twice: {other:?}"),
    }
    assert!(matches!(
        store
            .cancel_maintenance(open.id, Timestamp(3_000), "bob")
            .await
            .unwrap(),
        Cancelled::Over(_)
    ));
    assert_eq!(
        store
            .cancel_maintenance(open.id.max(later.id) + 100, Timestamp(0), "bob")
            .await
            .unwrap(),
        Cancelled::Unknown
    );
    // Weekly (migration 8): stored with its days and times, listed until cancelled, read back
    // as written; its `ends_at` is the far end, so it never ends by itself.
    let mut weekly = window("namespace:db", 6_000, RECURS.0);
    weekly.weekly = Some(Weekly {
        day: "sat".into(),
        from: "02:00".into(),
        to: "04:00".into(),
    });
    let weekly = store.add_maintenance(weekly).await.unwrap();
    assert_eq!(
        store
            .maintenance_windows(Timestamp(RECURS.0 - 1))
            .await
            .unwrap(),
        vec![weekly.clone()],
        "a weekly window is live until cancelled, read back with its weekly times"
    );
    assert_eq!(weekly.weekly.as_ref().map(|w| w.day.as_str()), Some("sat"));
    let Cancelled::Done(c) = store
        .cancel_maintenance(weekly.id, Timestamp(7_000), "dave")
        .await
        .unwrap()
    else {
        panic!("a weekly window is cancelled");
    };
    assert_eq!(c.weekly, weekly.weekly);
    assert_eq!(c.cancelled_by.as_deref(), Some("dave"));
    assert_eq!(
        store.maintenance_windows(Timestamp(7_000)).await.unwrap(),
        vec![]
    );
}

/// Resolve requests: stored pending, oldest first, until the engine's commit marks them done
/// with a result that reads back as written.
async fn resolve_requests(store: &dyn Store) {
    assert!(store.pending_resolves(10).await.unwrap().is_empty());
    let first = store
        .request_resolve("INC-2026-0009", "noise", "alice", Timestamp(500))
        .await
        .unwrap();
    // A NUL (which PostgreSQL's TEXT cannot hold) is stored, not refused.
    let second = store
        .request_resolve("INC-1999-0001", "nul\0reason", "bob", Timestamp(501))
        .await
        .unwrap();
    assert!(second > first);
    let pending = store.pending_resolves(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(
        pending[0],
        ResolveRequest {
            id: first,
            incident: "INC-2026-0009".into(),
            reason: "noise".into(),
            author: "alice".into(),
            requested_at: Timestamp(500),
            done: None,
        }
    );
    assert_eq!(store.pending_resolves(1).await.unwrap().len(), 1);
    store
        .commit(Commit {
            resolves_done: vec![ResolveDone {
                request: first,
                at: Timestamp(502),
                result: ResolveResult::Resolved,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = store.pending_resolves(10).await.unwrap();
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), [second]);
    assert_eq!(
        store.resolve_request(first).await.unwrap().unwrap().done,
        Some((Timestamp(502), ResolveResult::Resolved))
    );
    store
        .commit(Commit {
            resolves_done: vec![ResolveDone {
                request: second,
                at: Timestamp(503),
                result: ResolveResult::UnknownIncident,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(store.pending_resolves(10).await.unwrap().is_empty());
    assert_eq!(
        store.resolve_request(second).await.unwrap().unwrap().done,
        Some((Timestamp(503), ResolveResult::UnknownIncident))
    );
    assert_eq!(store.resolve_request(second + 100).await.unwrap(), None);
}

/// A claim released (its action held before any write) may be claimed again and gives back
/// its budget uses, one row each; a finished claim is never released.
async fn released_claims(store: &dyn Store) {
    let id = "INC-2026-0090".to_string();
    let charge = |at: i64| BudgetCharge {
        key: "action:fix:released".into(),
        at: Timestamp(at),
        dry_run: false,
    };
    let claim = |at: i64| Claim {
        incident: id.clone(),
        ladder: 1,
        step: 2,
        at: Timestamp(at),
    };
    let uses = || store.count_uses("action:fix:released", Timestamp(0), false);
    // Another step charged the same key at the same instant: only one row goes back.
    let first = Commit {
        claims: vec![claim(700)],
        budget_uses: vec![charge(700), charge(700)],
        ..Default::default()
    };
    store.commit(first).await.unwrap();
    assert_eq!(uses().await.unwrap(), 2);
    let release = |at: i64| Commit {
        released: vec![Release {
            incident: id.clone(),
            ladder: 1,
            step: 2,
            budget_uses: vec![charge(at)],
        }],
        ..Default::default()
    };
    store.commit(release(700)).await.unwrap();
    assert_eq!(
        uses().await.unwrap(),
        1,
        "the held claim's use is given back"
    );
    let second = Commit {
        claims: vec![claim(800)],
        budget_uses: vec![charge(800)],
        ..Default::default()
    };
    store
        .commit(second)
        .await
        .expect("a released step is claimed again");
    let finished = Commit {
        finished: vec![Finished {
            incident: id.clone(),
            ladder: 1,
            step: 2,
            at: Timestamp(900),
            result: serde_json::json!({"ok": true}),
        }],
        ..Default::default()
    };
    store.commit(finished).await.unwrap();
    store.commit(release(800)).await.unwrap();
    assert_eq!(
        uses().await.unwrap(),
        2,
        "a finished claim gives nothing back"
    );
    let third = Commit {
        claims: vec![claim(1000)],
        ..Default::default()
    };
    assert!(
        matches!(
            store.commit(third).await,
            Err(StoreError::AlreadyClaimed(_))
        ),
        "a finished step is never claimed again"
    );
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

/// A page of `incident` (an incident id, `STORM-…` or `DIGEST-…`).
fn page(incident_id: &str, event: NotificationKind) -> remedyd::adapters::escalate::Notification {
    let mut n = notification(&incident("INC-2026-0001", "checkout"), &[], event, "why");
    n.incident = incident_id.into();
    n
}

/// What `outbox_due` returns at `now`, as (route, incident, event), oldest first.
async fn due(
    store: &dyn Store,
    now: i64,
    per_route: usize,
) -> Vec<(String, String, NotificationKind)> {
    store
        .outbox_due(Timestamp(now), per_route)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.route, i.notification.incident, i.notification.event))
        .collect()
}

/// The id of the pending page (route, incident, event).
async fn page_id(
    store: &dyn Store,
    now: i64,
    route: &str,
    incident: &str,
    event: NotificationKind,
) -> i64 {
    store
        .outbox_due(Timestamp(now), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|i| {
            i.route == route && i.notification.incident == incident && i.notification.event == event
        })
        .unwrap_or_else(|| panic!("{route} {incident} {event:?} is due at {now}"))
        .id
}

fn row(route: &str, incident: &str, event: NotificationKind) -> (String, String, NotificationKind) {
    (route.into(), incident.into(), event)
}

/// Per (incident, route) the outbox hands out pages strictly in enqueue order: a resolve is not
/// due while its trigger waits for a retry, nor in the pass that delivers the trigger; only
/// once the trigger is done (delivered, recorded or given up). Other routes of the incident and
/// other incidents of the route are not held. A backlog on one route does not hide another's.
async fn outbox_order(store: Arc<dyn Store>) {
    use NotificationKind::{Resolve, Trigger};
    let s = &*store;
    store
        .commit(Commit {
            outbox: vec![
                ("oncall".into(), page("INC-2026-0001", Trigger)),
                ("oncall".into(), page("INC-2026-0001", Resolve)),
                ("owner".into(), page("INC-2026-0001", Trigger)),
                ("oncall".into(), page("INC-2026-0002", Trigger)),
                ("platform".into(), page("STORM-1", Trigger)),
                ("platform".into(), page("STORM-1", Resolve)),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        due(s, 0, 10).await,
        [
            row("oncall", "INC-2026-0001", Trigger),
            row("owner", "INC-2026-0001", Trigger),
            row("oncall", "INC-2026-0002", Trigger),
            row("platform", "STORM-1", Trigger),
        ],
        "only the first page of each (incident, route)"
    );

    // The trigger fails and is retried later: neither it nor its resolve is due meanwhile.
    let trigger = page_id(s, 0, "oncall", "INC-2026-0001", Trigger).await;
    store
        .outbox_retry(trigger, Timestamp(1000), "503")
        .await
        .unwrap();
    assert_eq!(
        due(s, 999, 10).await,
        [
            row("owner", "INC-2026-0001", Trigger),
            row("oncall", "INC-2026-0002", Trigger),
            row("platform", "STORM-1", Trigger),
        ],
        "a resolve is not due while its trigger waits for a retry"
    );

    // A storm page given up lets its resolve go; delivered pages let nothing else change.
    for (route, inc) in [("owner", "INC-2026-0001"), ("oncall", "INC-2026-0002")] {
        let id = page_id(s, 999, route, inc, Trigger).await;
        store.outbox_done(id, Timestamp(999), true).await.unwrap();
    }
    let storm = page_id(s, 999, "platform", "STORM-1", Trigger).await;
    store
        .outbox_done(storm, Timestamp(999), false)
        .await
        .unwrap();
    assert_eq!(
        due(s, 999, 10).await,
        [row("platform", "STORM-1", Resolve)],
        "a given-up trigger lets its resolve go"
    );
    let storm_resolve = page_id(s, 999, "platform", "STORM-1", Resolve).await;
    store
        .outbox_done(storm_resolve, Timestamp(999), true)
        .await
        .unwrap();

    // The trigger's retry time comes: the trigger first, the resolve only once it is done.
    assert_eq!(
        due(s, 1000, 10).await,
        [row("oncall", "INC-2026-0001", Trigger)]
    );
    store
        .outbox_done(trigger, Timestamp(1001), true)
        .await
        .unwrap();
    assert_eq!(
        due(s, 1001, 10).await,
        [row("oncall", "INC-2026-0001", Resolve)]
    );
    let resolve = page_id(s, 1001, "oncall", "INC-2026-0001", Resolve).await;
    store
        .outbox_done(resolve, Timestamp(1002), true)
        .await
        .unwrap();
    assert!(due(s, 5000, 10).await.is_empty());
    assert_eq!(store.outbox_depth().await.unwrap(), 0);

    // Three incidents page `busy`, then one pages `quiet`: with two per route, `quiet` is
    // still handed out.
    let outbox = ["INC-2026-0003", "INC-2026-0004", "INC-2026-0005"]
        .into_iter()
        .map(|inc| ("busy".to_string(), page(inc, Trigger)))
        .chain([("quiet".to_string(), page("INC-2026-0006", Trigger))])
        .collect();
    store
        .commit(Commit {
            outbox,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        due(s, 5000, 2).await,
        [
            row("busy", "INC-2026-0003", Trigger),
            row("busy", "INC-2026-0004", Trigger),
            row("quiet", "INC-2026-0006", Trigger),
        ],
        "at most two per route, oldest first"
    );
}

#[tokio::test]
async fn sqlite_outbox_holds_a_resolve_behind_its_retried_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    tokio::time::timeout(Duration::from_secs(30), outbox_order(Arc::new(store)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_holds_a_resolve_behind_its_retried_trigger() {
    let pg = Postgres::start().await;
    let store = pg_store(&pg.url()).await;
    bounded("the outbox order", PG_TEST, outbox_order(Arc::new(store))).await;
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

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// Every PostgreSQL test: bounded, so a hang fails instead of blocking the run.
const PG_TEST: Duration = Duration::from_secs(120);

async fn bounded<T>(what: &str, within: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(within, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {within:?}"))
}

async fn pg_store(url: &str) -> PgStore {
    PgStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting the store: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_store_contract() {
    let pg = Postgres::start().await;
    let store = pg_store(&pg.url()).await;
    assert!(
        !store.database().contains(PG_PASSWORD),
        "{}",
        store.database()
    );
    bounded("the contract suite", PG_TEST, suite(Arc::new(store))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_set_through_one_replica_is_seen_and_cancelled_by_another() {
    let pg = Postgres::start().await;
    let url = pg.url();
    bounded("maintenance windows across replicas", PG_TEST, async {
        let (a, b) = (pg_store(&url).await, pg_store(&url).await);
        let w = a
            .add_maintenance(window("global", 1_000, 9_000))
            .await
            .unwrap();
        assert_eq!(
            b.maintenance_windows(Timestamp(2_000)).await.unwrap(),
            vec![w.clone()]
        );
        assert!(matches!(
            b.cancel_maintenance(w.id, Timestamp(2_000), "bob")
                .await
                .unwrap(),
            Cancelled::Done(_)
        ));
        assert_eq!(
            a.maintenance_windows(Timestamp(2_000)).await.unwrap(),
            vec![]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_starting_together_migrate_once_and_reconnect_to_their_data() {
    let pg = Postgres::start().await;
    let url = pg.url();
    bounded("migrations", PG_TEST, async {
        // Four replicas start at once on an empty database.
        let stores: Vec<PgStore> = futures_join_all((0..4).map(|_| {
            let url = url.clone();
            async move { pg_store(&url).await }
        }))
        .await;
        let c = pg.client(services::PG_DATABASE).await;
        let versions: Vec<i32> = c
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Each migration applied once, in order (5: page threads and superseded updates).
        let want: Vec<i32> = (1..=versions.len().max(5) as i32).collect();
        assert_eq!(versions, want, "each migration applied once");
        // Migration 9: signals are keyed by start first (docs/performance.md).
        let keys: Vec<String> = c
            .query(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint
                 WHERE conrelid = 'signals'::regclass AND contype = 'u'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(keys, ["UNIQUE (starts_at, fingerprint, status)"]);
        stores[0]
            .ingest(receipt(1), vec![signal("a", 1, Status::Firing)])
            .await
            .unwrap();
        drop(stores);
        let store = pg_store(&url).await;
        assert_eq!(
            store.pending_signals(10).await.unwrap().len(),
            1,
            "migrations are idempotent and data stays"
        );
    })
    .await;
}

/// Joins futures without a futures crate: spawned on the runtime, awaited in order.
async fn futures_join_all<T: Send + 'static>(
    fs: impl Iterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_from_two_replicas_never_slips_under_the_engine_watermark() {
    // Two replicas take webhooks concurrently while an engine consumes "signals after the
    // watermark" and advances it. Every stored signal must be handed to the engine exactly once:
    // a signal that commits with an id below one already consumed would be skipped for ever.
    let pg = Postgres::start().await;
    let a = Arc::new(pg_store(&pg.url()).await);
    let b = Arc::new(pg_store(&pg.url()).await);
    const N: usize = 400;
    bounded("ingest and consume", PG_TEST, async {
        let producers: Vec<_> = (0..N)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let r = s
                        .ingest(
                            receipt(2),
                            vec![
                                signal(&format!("fp{i}"), 1, Status::Firing),
                                signal(&format!("fp{i}"), 1, Status::Firing),
                            ],
                        )
                        .await
                        .unwrap();
                    assert_eq!((r.stored, r.duplicates), (1, 1));
                })
            })
            .collect();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let engine = a.clone();
        let consumer = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut seen: Vec<String> = Vec::new();
                loop {
                    // Read `done` first: an empty read after every producer returned is final.
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                    let batch = engine.pending_signals(7).await.unwrap();
                    let Some(last) = batch.last() else {
                        if finished {
                            return seen;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    };
                    seen.extend(batch.iter().map(|p| p.signal.fingerprint.clone()));
                    engine
                        .commit(Commit {
                            processed: Some(last.id),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            })
        };
        for p in producers {
            p.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen = bounded("the consumer", Duration::from_secs(60), consumer)
            .await
            .unwrap();
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "a signal was handed over twice");
        let missing: Vec<String> = (0..N)
            .map(|i| format!("fp{i}"))
            .filter(|f| unique.binary_search(f).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "{} stored signal(s) slipped under the watermark and were never handed over, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert!(a.pending_signals(10).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_counter_never_goes_back_across_replicas() {
    let pg = Postgres::start().await;
    let a = Arc::new(pg_store(&pg.url()).await);
    let b = Arc::new(pg_store(&pg.url()).await);
    // Commits from both replicas, out of order: the counter is the highest number committed,
    // so a new leader reading it never hands out a number already used.
    for (s, n) in [(&a, 3), (&b, 7), (&a, 5)] {
        s.commit(Commit {
            incidents: vec![incident(&format!("INC-2026-{n:04}"), &format!("svc{n}"))],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(b.incident_counter(2026).await.unwrap(), 7);
    assert_eq!(a.incident_counter(2026).await.unwrap(), 7);
}

/// A Commit that opens incident `id` on `name` and claims its first step.
fn opening(id: &str, name: &str) -> Commit {
    Commit {
        incidents: vec![incident(id, name)],
        claims: vec![Claim {
            incident: id.into(),
            ladder: 1,
            step: 0,
            at: Timestamp(10),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over_when_its_session_ends() {
    let pg = Postgres::start().await;
    let url = pg.url();
    let a = Leadership::new(pg_store(&url).await, Arc::new(Notify::new()));
    let b = Leadership::new(pg_store(&url).await, Arc::new(Notify::new()));
    let cancel = CancellationToken::new();
    bounded("leadership", PG_TEST, async {
        let term_a = bounded("A leads", Duration::from_secs(10), a.acquire(&cancel))
            .await
            .expect("A leads");
        let b_task = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let t = b.acquire(&cancel).await;
                (b, t)
            })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!b_task.is_finished(), "B leads while A holds the lock");

        // A's engine writes through its fenced store.
        term_a.store.commit(opening("INC-2026-0001", "checkout")).await.unwrap();

        // A's session is ended by the server (as when its node is partitioned and the server
        // times it out): A notices, and B takes over within a bounded time.
        let c = pg.client(services::PG_DATABASE).await;
        let n = c
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(n, 1, "one session holds the leadership lock");
        let started = std::time::Instant::now();
        bounded("A notices the loss", Duration::from_secs(10), term_a.lost().cancelled()).await;
        let (_b, term_b) = bounded("B leads", Duration::from_secs(10), b_task).await.unwrap();
        let term_b = term_b.expect("B leads");
        eprintln!("failover after the leader's session ended: {:?}", started.elapsed());
        assert!(term_b.epoch > term_a.epoch, "{} > {}", term_b.epoch, term_a.epoch);

        // Fencing: A's engine, still running, can no longer commit; B's can.
        let stale = term_a.store.commit(opening("INC-2026-0002", "payments")).await;
        assert!(
            matches!(&stale, Err(StoreError::Database(m)) if m.contains("not the leader")),
            "{stale:?}"
        );
        assert!(
            term_b.store.get_incident("INC-2026-0002").await.unwrap().is_none(),
            "nothing of a fenced commit is written"
        );
        term_b.store.commit(opening("INC-2026-0002", "payments")).await.unwrap();
        // The ledger holds across terms: A's claim stands for B.
        assert!(matches!(
            term_b.store.commit(opening("INC-2026-0001", "checkout")).await,
            Err(StoreError::AlreadyClaimed(_))
        ));
        term_a.release().await;
        term_b.release().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_term_hands_over_at_once_and_ingest_anywhere_wakes_the_leader() {
    let pg = Postgres::start().await;
    let url = pg.url();
    let wake_a = Arc::new(Notify::new());
    let a = Leadership::new(pg_store(&url).await, wake_a.clone());
    let wake_b = Arc::new(Notify::new());
    let b = Leadership::new(pg_store(&url).await, wake_b.clone());
    let other = pg_store(&url).await;
    let cancel = CancellationToken::new();
    bounded("handover", PG_TEST, async {
        let term_a = a.acquire(&cancel).await.expect("A leads");
        // A webhook stored by another replica wakes the leader's engine (LISTEN/NOTIFY).
        other
            .ingest(receipt(1), vec![signal("a", 1, Status::Firing)])
            .await
            .unwrap();
        bounded("A's wake-up", Duration::from_secs(5), wake_a.notified()).await;
        let b_task = {
            let cancel = cancel.clone();
            tokio::spawn(async move { b.acquire(&cancel).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = std::time::Instant::now();
        term_a.release().await;
        let term_b = bounded("B leads", Duration::from_secs(5), b_task)
            .await
            .unwrap()
            .expect("B leads");
        eprintln!("handover after release: {:?}", started.elapsed());
        other
            .ingest(receipt(1), vec![signal("b", 1, Status::Firing)])
            .await
            .unwrap();
        bounded("B's wake-up", Duration::from_secs(5), wake_b.notified()).await;
        // A standby gives up when told to.
        let c = Leadership::new(pg_store(&url).await, Arc::new(Notify::new()));
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(c.acquire(&stop).await.is_none());
        term_b.release().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_request_stored_by_any_replica_wakes_the_leader() {
    let pg = Postgres::start().await;
    let url = pg.url();
    let wake = Arc::new(Notify::new());
    let leader = Leadership::new(pg_store(&url).await, wake.clone());
    let other = pg_store(&url).await;
    let cancel = CancellationToken::new();
    bounded("wake-up", PG_TEST, async {
        let term = leader.acquire(&cancel).await.expect("leads");
        other
            .request_resolve("INC-2026-0001", "noise", "alice", Timestamp(1))
            .await
            .unwrap();
        bounded(
            "the leader's wake-up",
            Duration::from_secs(5),
            wake.notified(),
        )
        .await;
        assert_eq!(term.store.pending_resolves(10).await.unwrap().len(), 1);
        term.release().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_fails_fast_while_the_database_is_down_and_recovers_without_reopening() {
    let mut pg = Postgres::start().await;
    let store = pg_store(&pg.url()).await;
    bounded("outage", PG_TEST, async {
        store
            .ingest(receipt(1), vec![signal("before", 1, Status::Firing)])
            .await
            .unwrap();
        pg.crash();
        let started = std::time::Instant::now();
        let r = store
            .ingest(receipt(1), vec![signal("during", 1, Status::Firing)])
            .await;
        let took = started.elapsed();
        assert!(r.is_err(), "{r:?}");
        eprintln!("ingest with the database down failed after {took:?}: {r:?}");
        assert!(
            took < Duration::from_secs(6),
            "an outage must fail the webhook fast enough for a 503 within Alertmanager's 10 s: {took:?}"
        );
        assert!(store.ping().await.is_err());
        pg.restart().await;
        // The pool replaces its dead connections; no reopen.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match store
                .ingest(receipt(1), vec![signal("after", 1, Status::Firing)])
                .await
            {
                Ok(r) => {
                    assert_eq!(r.stored, 1);
                    break;
                }
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "no recovery: {e}\n{}", pg.logs());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let fps: Vec<String> = store
            .pending_signals(10)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.signal.fingerprint)
            .collect();
        assert_eq!(fps, ["before", "after"], "what was acknowledged survived the crash");
    })
    .await;
}

/// The SQLite store hands the engine the signals ingest just stored from memory instead of
/// reading them back (`adapters/store/sqlite/recent.rs`). Generated histories interleave ingest
/// (with duplicates), the engine's reads, commits of its cursor and reads again without one (a
/// failed engine commit), rows written by another connection, floods past the memory's cap and
/// reopening; after every read, what the store handed out must equal what the table holds after
/// the cursor, read through a second connection. Replay a failure with
/// `REMEDYD_RECENT_SEED=<seed>`.
#[tokio::test]
async fn sqlite_engine_reads_from_memory_exactly_what_the_table_holds() {
    use crate::support::fuzz::Rng;
    let seeds: Vec<u64> = match std::env::var("REMEDYD_RECENT_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => (1..=6).collect(),
    };
    for seed in seeds {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut next_fp = 0u64;
        let mut cursor = 0i64;
        let mut handed = 0usize;
        let table_after = |c: &rusqlite::Connection,
                           after: i64,
                           limit: usize|
         -> Vec<(i64, String)> {
            let mut st = c
                .prepare("SELECT id, fingerprint FROM signals WHERE id > ?1 ORDER BY id LIMIT ?2")
                .unwrap();
            st.query_map(rusqlite::params![after, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
        };
        for step in 0..200 {
            let what = rng.below(100);
            let ctx = format!("seed {seed}, step {step}");
            if what < 45 {
                // Ingest a delivery: new alerts, sometimes re-sends of earlier ones.
                let flood = rng.below(10) == 0;
                // A flood reaches past the memory's cap (8 192 signals) alone or with another.
                let n = 1 + rng.below(if flood { 10_000 } else { 20 });
                let mut batch = Vec::new();
                for _ in 0..n {
                    if next_fp > 0 && rng.below(4) == 0 {
                        let fp = rng.below(next_fp as usize);
                        batch.push(signal(&format!("fp{fp}"), fp as i64, Status::Firing));
                    } else {
                        batch.push(signal(
                            &format!("fp{next_fp}"),
                            next_fp as i64,
                            Status::Firing,
                        ));
                        next_fp += 1;
                    }
                }
                store.ingest(receipt(n), batch).await.unwrap();
            } else if what < 50 {
                // Another connection writes a row (a second process on the same file).
                other
                    .execute(
                        "INSERT INTO signals (receipt_id, fingerprint, starts_at, status, source, received_at, body)
                         VALUES (NULL, ?1, ?2, 'firing', 'webhook', 1, ?3)",
                        rusqlite::params![
                            format!("fp{next_fp}"),
                            next_fp as i64,
                            serde_json::to_string(&signal(&format!("fp{next_fp}"), next_fp as i64, Status::Firing)).unwrap()
                        ],
                    )
                    .unwrap();
                next_fp += 1;
            } else if what < 53 {
                drop(store);
                store = SqliteStore::open(&path).unwrap();
            } else {
                // The engine reads; most of the time it commits its cursor after.
                let limit = 1 + rng.below(300);
                let got: Vec<(i64, String)> = store
                    .pending_signals(limit)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| (s.id, s.signal.fingerprint))
                    .collect();
                assert_eq!(
                    got,
                    table_after(&other, cursor, limit),
                    "{ctx}: read after {cursor}"
                );
                handed += got.len();
                if rng.below(5) != 0
                    && let Some((last, _)) = got.last()
                {
                    store
                        .commit(Commit {
                            processed: Some(*last),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    cursor = *last;
                }
            }
        }
        assert!(handed > 0, "seed {seed}: the history read nothing");
    }
}

/// Migration 10: a store written before it (an incident's alerts inside its body) is read
/// with its alerts, which move to rows of their own; the body keeps none.
#[tokio::test]
async fn sqlite_migration_10_moves_an_incidents_alerts_out_of_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut inc = incident("INC-2026-0001", "checkout");
    let alert = inc
        .active
        .values()
        .next()
        .cloned()
        .expect("opened with its alert");
    inc.active.insert("fp-second".into(), alert);
    {
        let store = SqliteStore::open(&path).unwrap();
        put_back(&store, &inc).await;
    }
    // As a store before migration 10 held it: the alerts in the body, no table of them.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let body = serde_json::to_string(&inc).unwrap();
        c.execute("UPDATE incidents SET body = ?1", [&body])
            .unwrap();
        c.execute_batch("DROP TABLE incident_alerts; PRAGMA user_version = 9;")
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let back = store.get_incident("INC-2026-0001").await.unwrap().unwrap();
    assert_eq!(back, inc, "read back with its alerts");
    assert_eq!(store.active_incidents().await.unwrap(), vec![inc.clone()]);
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = c
        .query_row("SELECT count(*) FROM incident_alerts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2, "one row per alert");
    let body: String = c
        .query_row("SELECT body FROM incidents", [], |r| r.get(0))
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["active"],
        serde_json::json!({}),
        "the body keeps no alert"
    );
}

/// Migration 10 on PostgreSQL: an incident's alerts move from its body to rows, a fingerprint
/// holding a NUL (which `jsonb` refuses) included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_10_moves_an_incidents_alerts_out_of_its_body() {
    let pg = Postgres::start().await;
    let url = pg.url();
    bounded("migration 10", PG_TEST, async {
        let mut inc = incident("INC-2026-0001", "checkout");
        let alert = inc
            .active
            .values()
            .next()
            .cloned()
            .expect("opened with its alert");
        inc.active.insert("fp-with-\0-nul".into(), alert);
        let store = pg_store(&url).await;
        put_back(&store, &inc).await;
        drop(store);
        // As a store before migration 10 held it: the alerts in the body, no table of them.
        let c = pg.client(services::PG_DATABASE).await;
        let body = serde_json::to_string(&inc).unwrap();
        c.execute("UPDATE incidents SET body = $1", &[&body])
            .await
            .unwrap();
        c.batch_execute(
            "DROP TABLE incident_alerts; DELETE FROM schema_migrations WHERE version = 10;",
        )
        .await
        .unwrap();
        let store = pg_store(&url).await;
        assert_eq!(store.get_incident(&inc.id).await.unwrap().unwrap(), inc);
        assert_eq!(store.active_incidents().await.unwrap(), vec![inc.clone()]);
        let rows: i64 = c
            .query_one("SELECT count(*) FROM incident_alerts", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 2, "one row per alert");
        let body: String = c
            .query_one("SELECT body FROM incidents", &[])
            .await
            .unwrap()
            .get(0);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body["active"],
            serde_json::json!({}),
            "the body keeps no alert"
        );
    })
    .await;
}
