//! The outbox's delivery guarantees, with a recording pager scripted per route (answer, retry
//! with or without `Retry-After`, give up, hang) over the real SQLite store: per (incident,
//! route) pages arrive in enqueue order — a resolve never before its trigger, even while the
//! trigger is retried — and a route that hangs or fails does not hold up another route's pages.
//! Passes are driven by hand with a manual clock; the hanging route runs the real delivery loop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use remedyd::adapters::escalate::outbox::{deliver_due, run};
use remedyd::adapters::escalate::{
    Notification, NotificationKind, Pager, PagerError, notification,
};
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::adapters::store::{Commit, Store};
use remedyd::adapters::telemetry::Metrics;
use remedyd::domain::BoxFuture;
use remedyd::domain::policy::{Route, Transport};
use remedyd::domain::time::{Clock, ManualClock};
use remedyd::load::ruleset::Ruleset;
use remedyd::load::ruleset::SharedRuleset;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use NotificationKind::{Resolve, Trigger};

use crate::support::story;

/// How a route's receiver answers one send.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    /// Delivered.
    Ok,
    /// A retryable failure, with `Retry-After` seconds or none.
    Retry(Option<u64>),
    /// A final failure (a 4xx): the page is given up.
    Fail,
    /// No answer until the test releases it, then delivered.
    Hang,
}

/// A pager that records every send in arrival order and answers from a script per route
/// (`Ok` once the script is used up).
struct Recording {
    scripts: Mutex<HashMap<String, VecDeque<Answer>>>,
    /// (route, incident, event, answer), in the order the sends arrived.
    arrivals: Mutex<Vec<(String, String, NotificationKind, Answer)>>,
    /// Routes whose hanging send has returned.
    returned: Mutex<Vec<String>>,
    /// One permit per hanging send to let go.
    release: Semaphore,
}

impl Recording {
    fn new() -> Self {
        Recording {
            scripts: Mutex::default(),
            arrivals: Mutex::default(),
            returned: Mutex::default(),
            release: Semaphore::new(0),
        }
    }

    fn script(&self, route: &str, answers: &[Answer]) {
        self.scripts
            .lock()
            .unwrap()
            .insert(route.into(), answers.iter().copied().collect());
    }

    /// What `route` received so far: (incident, event, answer).
    fn of(&self, route: &str) -> Vec<(String, NotificationKind, Answer)> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.0 == route)
            .map(|a| (a.1.clone(), a.2, a.3))
            .collect()
    }

    /// Waits until `route` has received `n` sends; fails with `why` if that does not happen.
    async fn wait_for(&self, route: &str, n: usize, why: &str) {
        let arrived = async {
            while self.of(route).len() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), arrived)
            .await
            .is_err()
        {
            panic!("{why}: route {route} received {:?}", self.of(route));
        }
    }
}

impl Pager for Recording {
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async move {
            let answer = self
                .scripts
                .lock()
                .unwrap()
                .get_mut(&route.name)
                .and_then(VecDeque::pop_front)
                .unwrap_or(Answer::Ok);
            self.arrivals.lock().unwrap().push((
                route.name.clone(),
                n.incident.clone(),
                n.event,
                answer,
            ));
            let failed = |retryable, retry_after: Option<u64>| PagerError {
                retryable,
                message: format!("route {}: scripted failure", route.name),
                retry_after: retry_after.map(Duration::from_secs),
            };
            match answer {
                Answer::Ok => Ok(true),
                Answer::Retry(after) => Err(failed(true, after)),
                Answer::Fail => Err(failed(false, None)),
                Answer::Hang => {
                    self.release
                        .acquire()
                        .await
                        .expect("the semaphore is never closed")
                        .forget();
                    self.returned.lock().unwrap().push(route.name.clone());
                    Ok(true)
                }
            }
        })
    }
}

/// Routes `a` and `b`; the recording pager ignores their (absent) destinations.
fn routes() -> SharedRuleset {
    let route = |name| {
        Route::new(
            name,
            Transport::Webhook { url: None },
            "url",
            Duration::from_secs(2),
        )
    };
    let rs = Ruleset {
        routes: [("a".into(), route("a")), ("b".into(), route("b"))].into(),
        ..Default::default()
    };
    Arc::new(RwLock::new(Arc::new(rs)))
}

/// A page of `incident`, frozen from a known escalated incident.
fn page(incident: &str, event: NotificationKind) -> Notification {
    let s = story::escalated();
    let mut n = notification(&s.incident, &s.timeline, event, "why");
    n.incident = incident.into();
    n
}

async fn enqueue(store: &SqliteStore, pages: &[(&str, &str, NotificationKind)]) {
    let outbox = pages
        .iter()
        .map(|(route, inc, event)| (route.to_string(), page(inc, *event)))
        .collect();
    store
        .commit(Commit {
            outbox,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The store, a recording pager, routes `a` and `b`, a manual clock: passes driven by hand.
struct Passes {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    pager: Recording,
    rs: SharedRuleset,
    clock: ManualClock,
    metrics: Metrics,
}

impl Passes {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
        Passes {
            _dir: dir,
            store,
            pager: Recording::new(),
            rs: routes(),
            clock: ManualClock::new(story::at(0)),
            metrics: Metrics::new(),
        }
    }

    /// One pass of the outbox at the clock's time.
    async fn pass(&self) {
        deliver_due(
            &self.store,
            &self.pager,
            &self.rs,
            &self.clock,
            &self.metrics,
        )
        .await
        .unwrap();
    }
}

fn inc(id: &str, event: NotificationKind, answer: Answer) -> (String, NotificationKind, Answer) {
    (id.into(), event, answer)
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("finished in time")
}

#[tokio::test]
async fn a_resolve_never_overtakes_its_trigger_while_the_trigger_is_retried() {
    within(async {
        let t = Passes::new();
        let (store, pager, clock) = (&t.store, &t.pager, &t.clock);
        // The incident paged both routes and resolved before anything was sent.
        enqueue(
            store,
            &[
                ("a", "INC-1", Trigger),
                ("a", "INC-1", Resolve),
                ("b", "INC-1", Trigger),
                ("b", "INC-1", Resolve),
            ],
        )
        .await;
        pager.script("a", &[Answer::Retry(Some(3)), Answer::Retry(None)]);

        t.pass().await;
        assert_eq!(
            pager.of("a"),
            [inc("INC-1", Trigger, Answer::Retry(Some(3)))],
            "the resolve waits behind the trigger being retried"
        );
        // Route b: its trigger went through, which makes its resolve due in the same call.
        assert_eq!(
            pager.of("b"),
            [
                inc("INC-1", Trigger, Answer::Ok),
                inc("INC-1", Resolve, Answer::Ok)
            ]
        );

        // Before Retry-After has passed: route b goes on, route a sends nothing.
        clock.advance(Duration::from_secs(2));
        t.pass().await;
        assert_eq!(pager.of("a").len(), 1, "Retry-After is honoured");
        assert_eq!(
            pager.of("b"),
            [
                inc("INC-1", Trigger, Answer::Ok),
                inc("INC-1", Resolve, Answer::Ok)
            ],
            "route a's retries do not hold up route b"
        );

        // Second failure (backoff 2 s), then the trigger goes through, then the resolve.
        clock.advance(Duration::from_secs(1));
        t.pass().await;
        clock.advance(Duration::from_secs(1));
        t.pass().await;
        assert_eq!(pager.of("a").len(), 2, "backoff is honoured");
        clock.advance(Duration::from_secs(1));
        t.pass().await;
        t.pass().await;
        assert_eq!(
            pager.of("a"),
            [
                inc("INC-1", Trigger, Answer::Retry(Some(3))),
                inc("INC-1", Trigger, Answer::Retry(None)),
                inc("INC-1", Trigger, Answer::Ok),
                inc("INC-1", Resolve, Answer::Ok),
            ]
        );
        assert_eq!(store.outbox_depth().await.unwrap(), 0);
        let text = t.metrics.encode();
        for want in [
            r#"remedyd_pages_total{route="a",result="retry"} 2"#,
            r#"remedyd_pages_total{route="a",result="delivered"} 2"#,
            r#"remedyd_pages_total{route="b",result="delivered"} 2"#,
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    })
    .await
}

#[tokio::test]
async fn a_given_up_trigger_lets_its_resolve_go() {
    within(async {
        let t = Passes::new();
        let (store, pager, clock) = (&t.store, &t.pager, &t.clock);
        enqueue(store, &[("a", "INC-1", Trigger), ("a", "INC-1", Resolve)]).await;
        pager.script("a", &[Answer::Retry(None), Answer::Fail]);

        t.pass().await;
        assert_eq!(pager.of("a"), [inc("INC-1", Trigger, Answer::Retry(None))]);
        clock.advance(Duration::from_secs(1));
        t.pass().await;
        // The trigger is given up, which lets the resolve go in the same call.
        assert_eq!(
            pager.of("a"),
            [
                inc("INC-1", Trigger, Answer::Retry(None)),
                inc("INC-1", Trigger, Answer::Fail),
                inc("INC-1", Resolve, Answer::Ok),
            ]
        );
        assert_eq!(store.outbox_depth().await.unwrap(), 0, "nothing is left");
        assert!(
            t.metrics
                .encode()
                .contains(r#"remedyd_pages_total{route="a",result="failed"} 1"#),
            "the given-up page is counted"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_route_does_not_hold_up_another_routes_page() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("r.db")).unwrap());
        let pager = Arc::new(Recording::new());
        let clock = Arc::new(ManualClock::new(story::at(0)));
        let (wake, cancel) = (Arc::new(Notify::new()), CancellationToken::new());
        pager.script("a", &[Answer::Hang]);
        enqueue(&store, &[("a", "INC-1", Trigger)]).await;
        let outbox = tokio::spawn(run(
            store.clone(),
            pager.clone(),
            routes(),
            clock.clone() as Arc<dyn Clock>,
            Arc::new(Metrics::new()),
            wake.clone(),
            cancel.clone(),
        ));
        pager.wait_for("a", 1, "route a's page is sent").await;

        // While route a hangs, another incident pages route b.
        enqueue(&store, &[("b", "INC-2", Trigger)]).await;
        wake.notify_one();
        pager
            .wait_for("b", 1, "route b's page arrives while route a hangs")
            .await;
        assert!(
            pager.returned.lock().unwrap().is_empty(),
            "route a was still hanging when route b's page arrived"
        );
        while store.outbox_depth().await.unwrap() > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Route a answers at last: its page is recorded as delivered, once.
        pager.release.add_permits(1);
        while store.outbox_depth().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pager.of("a"), [inc("INC-1", Trigger, Answer::Hang)]);
        assert_eq!(pager.of("b"), [inc("INC-2", Trigger, Answer::Ok)]);
        cancel.cancel();
        outbox.await.unwrap();
    })
    .await
}
