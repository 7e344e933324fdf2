//! The daily digest: the pure builder over known incidents, the schedule, and one digest built
//! from a real store, queued in the outbox and delivered to a Slack stand-in.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use remedyd::adapters::escalate::digest::{enqueue, gather};
use remedyd::adapters::escalate::{NotificationKind, Pager, Pagers};
use remedyd::adapters::store::Store;
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::adapters::telemetry::Metrics;
use remedyd::domain::policy::breaker::BreakerState;
use remedyd::domain::policy::{DigestSchedule, Route, Secret, Transport, Window};
use remedyd::domain::report::digest::{self, BudgetRow, Input};
use remedyd::domain::time::ManualClock;
use remedyd::load::ruleset::Ruleset;

use crate::support::story;

fn input() -> Input {
    let stories = [
        story::escalated_then_resolved(),
        story::self_healed(),
        story::page_only_open(),
    ];
    Input {
        now: story::at(8 * 3600),
        incidents: stories
            .into_iter()
            .map(|s| (s.incident, s.timeline))
            .collect(),
        breakers: vec![
            (
                "action:http:deployment/python-services/checkout".into(),
                BreakerState::Open {
                    until: story::at(9 * 3600),
                },
            ),
            ("global".into(), BreakerState::Closed),
        ],
        budgets: vec![
            BudgetRow {
                key: "action:http:deployment/python-services/checkout".into(),
                window: Window {
                    max: 3,
                    per: Duration::from_secs(3600),
                },
                used: 3,
                dry_run: 0,
            },
            BudgetRow {
                key: "global".into(),
                window: Window {
                    max: 20,
                    per: Duration::from_secs(3600),
                },
                used: 4,
                dry_run: 0,
            },
        ],
        truncated: false,
    }
}

#[test]
fn digest_lists_incidents_actions_breakers_restarts_and_budgets() {
    let n = remedyd::domain::notification::digest(&input());
    assert_eq!(n.event, NotificationKind::Digest);
    assert_eq!(n.dedup_key, "remedyd/digest/2026-03-01");
    assert_eq!(
        n.description,
        "Last 24 h: 3 incidents opened (2 resolved, 2 escalated), 1 still open; 2 automated actions (0 failed); 1 breaker open."
    );
    let d = n.digest.as_ref().unwrap();
    assert_eq!(
        d.incidents,
        [
            "INC-2026-0042 checkout level 1 (high-error-rate): opened 12:00:00, resolved at 12:20:00 after 20m, escalated",
            "INC-2026-0043 payments level 2 (high-error-rate): opened 13:00:00, resolved at 13:02:00 after 2m",
            "INC-2026-0044 search level 1 (high-error-rate): opened 14:00:00, escalated now",
        ]
    );
    assert_eq!(
        d.actions,
        [
            "12:00:05 INC-2026-0042 restarted checkout (step restart ok)",
            "13:00:06 INC-2026-0043 rolled back payments (step rollback ok)",
        ]
    );
    assert_eq!(
        d.breakers_open,
        ["action:http:deployment/python-services/checkout: open until 2026-03-01 21:00:00 UTC"]
    );
    assert_eq!(d.most_restarted, ["python-services/checkout: 1 restart"]);
    assert_eq!(
        d.budgets_nearly_spent,
        ["action:http:deployment/python-services/checkout: 3/3 per 1h, spent"]
    );
    // Slack renders it as sections.
    let m = remedyd::adapters::escalate::slack::message(&n);
    let text = m.to_string();
    for part in [
        "remedyd daily digest · 2026-03-01",
        "*Breakers open*",
        "*Restarted most*",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
}

#[test]
fn incidents_older_than_a_day_are_not_counted_as_opened() {
    let mut i = input();
    i.now = story::at(3 * 24 * 3600);
    i.budgets.clear();
    let n = remedyd::domain::notification::digest(&i);
    let d = n.digest.unwrap();
    assert_eq!(d.totals.opened, 0);
    assert_eq!(d.totals.open_now, 1, "the page-only incident is still open");
    assert!(d.actions.is_empty());
}

#[test]
fn the_schedule_is_the_next_time_of_day_in_utc() {
    let s = DigestSchedule {
        route: "r".into(),
        hour: 8,
        minute: 0,
    };
    // 12:00 → tomorrow 08:00; 07:59 → today 08:00; exactly 08:00 → tomorrow.
    assert_eq!(digest::next_run(story::at(0), &s), story::at(20 * 3600));
    assert_eq!(
        digest::next_run(story::at(-4 * 3600 - 60), &s),
        story::at(-4 * 3600)
    );
    assert_eq!(
        digest::next_run(story::at(-4 * 3600), &s),
        story::at(20 * 3600)
    );
}

#[tokio::test]
async fn a_digest_goes_through_the_outbox_to_slack_and_never_to_a_pager() {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        let g = g.clone();
        async move {
            g.lock().unwrap().push(body);
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/services/T/B/X", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
    for s in [story::escalated_then_resolved(), story::page_only_open()] {
        s.commit(&store).await;
    }
    let slack = Route::new(
        "team",
        Transport::Slack {
            url: Some(Secret::new(url)),
        },
        "env SLACK",
        Duration::from_secs(5),
    );
    let mut rs = Ruleset::default();
    rs.routes.insert("team".into(), slack);
    let now = story::at(8 * 3600);
    enqueue(&store, &rs, "team", now).await.unwrap();
    let shared = Arc::new(RwLock::new(Arc::new(rs)));
    let metrics = Metrics::new();
    remedyd::adapters::escalate::outbox::deliver_due(
        &store,
        &Pagers::new(),
        &shared,
        &ManualClock::new(now),
        &metrics,
    )
    .await
    .unwrap();
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let b: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let text = b.to_string();
    assert!(text.contains("remedyd daily digest"), "{text}");
    assert!(
        text.contains("INC-2026-0044 search level 1"),
        "the open incident is listed: {text}"
    );
    assert_eq!(store.outbox_depth().await.unwrap(), 0);

    let pd = Route::new(
        "pd",
        Transport::PagerDuty {
            url: "http://127.0.0.1:9/".into(),
            routing_key: Some(Secret::new("k")),
        },
        "env K",
        Duration::from_secs(1),
    );
    let n = remedyd::domain::notification::digest(
        &gather(&store, &Ruleset::default(), now).await.unwrap(),
    );
    let e = Pagers::new().send(&pd, &n).await.unwrap_err();
    assert!(!e.retryable && e.message.contains("not sent to a pagerduty route"));
}
