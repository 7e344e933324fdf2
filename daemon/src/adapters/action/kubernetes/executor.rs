//! What one Kubernetes action kind is (`KubeAction`), and how one runs as an `Executor`: a
//! session on the cluster, the outcome (ok, refused, failed, retry) and RBAC tripping the breaker.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::cluster::Cluster;
use super::error::Failure;
use super::objects::read_deployment;
use super::revert;
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture, Executor, Outcome};

/// What one action kind does.
pub trait KubeAction: Send + Sync + 'static {
    /// Checks `with:`.
    fn validate(&self, params: &Value) -> Result<(), String>;
    /// The names of its `with:` parameters (`fields::names` of the type `validate` parses).
    fn params(&self) -> Vec<&'static str>;
    /// A short description of the requests, before reading anything (for `remedyd test`).
    fn plan(&self, req: &ActionRequest) -> Result<Value, String>;
    /// Runs it; the summary on success.
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>>;
    /// Only reads.
    fn evidence(&self) -> bool {
        false
    }
}

/// The bound of a step that has no `wait` or `timeout` of its own (the evidence actions, an HPA
/// patch): a few reads or one write take seconds on a healthy API server; two minutes leave room
/// for a slow one and its retries, and are less than every default wait (5m).
pub const DEFAULT_STEP_BUDGET: Duration = Duration::from_secs(120);

/// How far past its deadline an action may run before it is cut: the session's requests and the
/// rollout wait end by the deadline themselves, so this only catches a wait of some other kind.
const OVERRUN: Duration = Duration::from_secs(1);

/// A step's time budget: its `wait` (Deployment actions) or `timeout` (drain), else
/// [`DEFAULT_STEP_BUDGET`]. Everything the action does, retries included, ends within it.
pub fn step_budget(params: &Value) -> Duration {
    ["wait", "timeout"]
        .iter()
        .find_map(|k| params.get(k).and_then(Value::as_str))
        .and_then(|s| crate::domain::time::parse_duration(s).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_STEP_BUDGET)
}

/// An action kind bound to a cluster.
pub struct KubeExecutor {
    pub(super) cluster: Arc<Cluster>,
    pub(super) action: Box<dyn KubeAction>,
}

impl KubeExecutor {
    async fn go(&self, req: &ActionRequest, dry: bool) -> Outcome {
        if let Err(e) = self.action.plan(req) {
            return Outcome::failed(false, format!("cannot build the request: {e}"), Value::Null);
        }
        let client = match self.cluster.client().await {
            Ok(c) => c,
            Err(e) if dry => {
                let mut o = Outcome::dry_run(
                    format!("dry-run: cluster not reachable ({e}); recorded the plan only"),
                    json!([]),
                );
                o.detail["plan"] = self.action.plan(req).unwrap_or_default();
                return o;
            }
            Err(e) => return Outcome::failed(true, e, Value::Null),
        };
        let budget = step_budget(&req.params);
        let deadline = tokio::time::Instant::now() + budget;
        let mut s = Session::new(client, self.cluster.metrics.get().cloned(), dry, deadline);
        // Every request and wait of the session ends by the deadline; this bound catches
        // whatever else an action might await.
        let r =
            match tokio::time::timeout_at(deadline + OVERRUN, self.action.run(&mut s, req)).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Api(
                    format!("{} on {} cut at its deadline", req.action, target_of(req)),
                    s.deadline_error(budget),
                )),
            };
        let wrote = !s.writes.is_empty();
        let mut detail = s.into_detail();
        let outcome = match r {
            Ok(summary) if dry => Outcome::ok(format!("dry-run: {summary}"), detail),
            // Dry-run with the cluster out of reach: what can be known without reading.
            Err(Failure::Api(what, e)) if dry && e.code == 0 => {
                detail["plan"] = self.action.plan(req).unwrap_or_default();
                Outcome::ok(
                    format!("dry-run: cluster not reachable ({what}: {e}); recorded the plan only"),
                    detail,
                )
            }
            Ok(summary) => Outcome::ok(summary, detail),
            // Held before the first write: the step did not run and is tried again later.
            Err(Failure::Held(why)) if !wrote => Outcome::held(why, detail),
            Err(Failure::Held(why)) => Outcome::failed(false, why, detail),
            // Refused before the first write: a precondition, not a failed remediation.
            Err(Failure::Refused(why)) if !wrote => Outcome::refused(why, detail),
            Err(Failure::Refused(why)) => Outcome::failed(false, why, detail),
            Err(Failure::Reverted(why)) => {
                let mut o = Outcome::failed(false, why, detail);
                o.trip_breaker = true;
                o
            }
            Err(Failure::Api(what, e)) => {
                let mut o = Outcome::failed(e.transient(), format!("{what}: {e}"), detail);
                if e.code == 403 || e.code == 401 {
                    // Permissions do not fix themselves: stop this action on this target.
                    o.trip_breaker = true;
                    o.summary
                        .push_str(" (RBAC: see deploy/kubernetes/base/rbac.yaml)");
                }
                o
            }
        };
        // A dry session recorded its writes instead of sending them (`detail` holds them under
        // `would_send`), whatever the outcome.
        outcome.in_dry_run(dry)
    }
}

impl Executor for KubeExecutor {
    fn validate(&self, params: &Value) -> Result<(), String> {
        self.action.validate(params)
    }
    fn params(&self) -> Vec<&'static str> {
        self.action.params()
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        self.action.plan(req)
    }
    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(self.go(req, false))
    }
    fn dry_run<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(self.go(req, true))
    }
    fn gathers_evidence(&self) -> bool {
        self.action.evidence()
    }
    fn revert_check<'a>(
        &'a self,
        watch: &'a Value,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let (Some(ns), Some(name)) = (watch["namespace"].as_str(), watch["name"].as_str())
            else {
                return Err(format!("not a watch: {watch}"));
            };
            let client = self.cluster.client().await?;
            let deadline = tokio::time::Instant::now() + REVERT_READ_BUDGET;
            let mut s = Session::new(client, self.cluster.metrics.get().cloned(), false, deadline);
            let d = match read_deployment(&mut s, ns, name).await {
                Ok(d) => d,
                Err(Failure::Api(what, e)) => return Err(format!("{what}: {e}")),
                Err(Failure::Refused(why) | Failure::Held(why) | Failure::Reverted(why)) => {
                    return Err(why);
                }
            };
            Ok(revert::check_revert(&d, watch))
        })
    }
}

/// The bound of one read-back of a watched Deployment: one GET (and the session's retries of
/// a transient error), far less than a verification window.
const REVERT_READ_BUDGET: Duration = Duration::from_secs(20);

/// `kind/namespace/name` of the request's target, for a line that has nothing else to name it.
fn target_of(req: &ActionRequest) -> String {
    let v = |k: &str| req.vars.get(k).map(String::as_str).unwrap_or("?");
    match req.vars.get("target.namespace").filter(|n| !n.is_empty()) {
        Some(ns) => format!("{}/{ns}/{}", v("target.kind"), v("target.name")),
        None => format!("{}/{}", v("target.kind"), v("target.name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_budget_is_its_wait_or_timeout_else_the_default() {
        assert_eq!(
            step_budget(&json!({"wait": "45s"})),
            Duration::from_secs(45)
        );
        assert_eq!(
            step_budget(&json!({"timeout": "2m", "node": "n"})),
            Duration::from_secs(120)
        );
        assert_eq!(step_budget(&Value::Null), DEFAULT_STEP_BUDGET);
        assert_eq!(step_budget(&json!({"wait": "0s"})), DEFAULT_STEP_BUDGET);
        assert_eq!(step_budget(&json!({"wait": "soon"})), DEFAULT_STEP_BUDGET);
    }
}
