//! The recording fakes at the engine's seams: executors that answer what the history scripted
//! (or hang until released) and record every call, a pager whose routes go down and up, and a
//! metric source whose values the history sets.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use remedyd::adapters::action::{ActionRequest, BoxFuture, Executor, Executors, Outcome};
use remedyd::adapters::escalate::{Notification, Pager, PagerError};
use remedyd::adapters::prometheus::{MetricSource, QueryError, Sample};
use remedyd::domain::policy::Route;
use remedyd::domain::signal::Labels;
use remedyd::domain::time::{Clock, ManualClock};
use tokio::sync::oneshot;

use super::history::{OutcomeKind, SERVICES};
use super::spy::{Call, Fact, Log};

// === impl Lab ===

/// State shared by the recording executors.
pub struct Lab {
    clock: Arc<ManualClock>,
    log: Log,
    inner: Mutex<LabInner>,
}

#[derive(Default)]
struct LabInner {
    scripts: BTreeMap<String, VecDeque<OutcomeKind>>,
    hung: VecDeque<(usize, oneshot::Sender<OutcomeKind>)>,
    calls: usize,
    generation: u32,
}

impl Lab {
    /// A lab whose calls are timed by `clock` and logged in `log`.
    pub fn new(clock: Arc<ManualClock>, log: Log) -> Self {
        Self {
            clock,
            log,
            inner: Mutex::new(LabInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LabInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next call of `action` answers `o`.
    pub fn script(&self, action: &str, o: OutcomeKind) {
        self.lock()
            .scripts
            .entry(action.to_string())
            .or_default()
            .push_back(o);
    }

    /// The oldest hung call returns `o`.
    pub fn release_oldest(&self, o: OutcomeKind) {
        let hung = self.lock().hung.pop_front();
        if let Some((_, tx)) = hung {
            let _ = tx.send(o);
        }
    }

    /// Every hung call returns (the history is over).
    pub fn release_all(&self) {
        for (_, tx) in self.lock().hung.drain(..) {
            let _ = tx.send(OutcomeKind::Ok);
        }
    }

    /// A new engine (a restart): calls from now on are its.
    pub fn next_generation(&self) {
        self.lock().generation += 1;
    }

    /// Calls hung and not yet released.
    pub fn hung(&self) -> usize {
        self.lock().hung.len()
    }

    async fn call(&self, action: &str, req: &ActionRequest, dry_run: bool) -> Outcome {
        let (seq, kind, wait) = {
            let mut l = self.lock();
            let seq = l.calls;
            l.calls += 1;
            let kind = l
                .scripts
                .get_mut(action)
                .and_then(|q| q.pop_front())
                .unwrap_or(OutcomeKind::Ok);
            self.log.push(Fact::Call(Call {
                seq,
                generation: l.generation,
                action: action.to_string(),
                incident: req.incident.clone(),
                step: req.step.clone(),
                dry_run,
            }));
            let wait = (kind == OutcomeKind::Hang).then(|| {
                let (tx, rx) = oneshot::channel();
                l.hung.push_back((seq, tx));
                rx
            });
            (seq, kind, wait)
        };
        let kind = match wait {
            // A dropped sender: the history is over; the answer goes nowhere.
            Some(rx) => rx.await.unwrap_or(OutcomeKind::Fail),
            None => kind,
        };
        self.log.push(Fact::Returned(seq));
        let at = self.clock.now();
        let detail = serde_json::json!({"at": at});
        match kind {
            OutcomeKind::Ok | OutcomeKind::Hang => Outcome::ok(format!("{action} done"), detail),
            OutcomeKind::Fail => {
                Outcome::failed(false, format!("{action} failed (scripted)"), detail)
            }
            OutcomeKind::Retry => Outcome::failed(
                true,
                format!("{action}: 503 from the API (scripted)"),
                detail,
            ),
            OutcomeKind::Timeout => {
                Outcome::failed(true, format!("{action} timed out (scripted)"), detail)
            }
            OutcomeKind::NoChange => {
                Outcome::refused(format!("{action}: nothing to change (scripted)"), detail)
            }
            OutcomeKind::Denied => Outcome {
                trip_breaker: true,
                ..Outcome::failed(false, format!("{action}: 403 forbidden (scripted)"), detail)
            },
        }
    }
}

/// A recording executor for one action kind.
struct Recorder {
    kind: &'static str,
    lab: Arc<Lab>,
}

impl Executor for Recorder {
    fn validate(&self, _: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
    fn plan(&self, req: &ActionRequest) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({"action": self.kind, "target": req.vars.get("target.name")}))
    }
    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(self.lab.call(self.kind, req, false))
    }
    fn dry_run<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(self.lab.call(self.kind, req, true))
    }
    fn gathers_evidence(&self) -> bool {
        self.kind == "evidence"
    }
}

// === impl RecPager ===

/// A pager whose routes are up or down as the history says; it records every attempt.
#[derive(Default)]
pub struct RecPager {
    down: Mutex<BTreeMap<String, bool>>,
    /// Every attempt: route, notification, delivered.
    pub sent: Mutex<Vec<(String, Notification, bool)>>,
}

impl RecPager {
    /// A route's deliveries fail (`false`) or succeed.
    pub fn set_up(&self, route: &str, up: bool) {
        self.down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(route.to_string(), !up);
    }

    /// Whether a route's deliveries succeed now.
    pub fn up(&self, route: &str) -> bool {
        !self
            .down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .copied()
            .unwrap_or(false)
    }
}

impl Pager for RecPager {
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async move {
            let ok = self.up(&route.name);
            self.sent.lock().unwrap_or_else(|e| e.into_inner()).push((
                route.name.clone(),
                n.clone(),
                ok,
            ));
            if ok {
                Ok(true)
            } else {
                Err(PagerError {
                    retryable: true,
                    message: format!("route {} is down (scripted)", route.name),
                    retry_after: None,
                })
            }
        })
    }
}

// === impl Source ===

/// Query values the history sets: the polled error ratio and the verification health value.
#[derive(Default)]
pub struct Source {
    values: Mutex<BTreeMap<(&'static str, usize), f64>>,
}

impl Source {
    /// Sets (or, with `None`, removes) a series' value.
    pub fn set(&self, metric: &'static str, svc: usize, v: Option<f64>) {
        let mut m = self.values.lock().unwrap_or_else(|e| e.into_inner());
        match v {
            Some(v) => m.insert((metric, svc), v),
            None => m.remove(&(metric, svc)),
        };
    }
}

/// A service's series labels.
pub fn series(svc: usize) -> Labels {
    [
        ("service".to_string(), SERVICES[svc].0.to_string()),
        ("namespace".to_string(), SERVICES[svc].1.to_string()),
    ]
    .into()
}

impl MetricSource for Source {
    fn query<'a>(&'a self, promql: &'a str) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>> {
        Box::pin(async move {
            let m = self.values.lock().unwrap_or_else(|e| e.into_inner());
            let (metric, only) = if promql == "svc_error_ratio" {
                ("svc_error_ratio", None)
            } else if let Some(rest) = promql.strip_prefix("svc_health{service=\"") {
                let name = rest.trim_end_matches("\"}");
                ("svc_health", SERVICES.iter().position(|(n, _)| *n == name))
            } else {
                return Err(QueryError::Rejected(format!("unknown query {promql}")));
            };
            Ok(m.iter()
                .filter(|((k, svc), _)| *k == metric && only.is_none_or(|o| o == *svc))
                .map(|((_, svc), v)| Sample {
                    labels: series(*svc),
                    value: *v,
                })
                .collect())
        })
    }
}

/// The recording executors.
pub fn executors(lab: &Arc<Lab>) -> Executors {
    let mut e = Executors::default();
    for kind in super::history::ACTIONS {
        e.register(
            kind,
            Arc::new(Recorder {
                kind,
                lab: lab.clone(),
            }),
        );
    }
    e
}
