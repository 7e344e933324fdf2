//! Actions: the `Executor` trait, its outcome, and the registry policies are checked against.

pub mod fields;
pub mod http;
pub mod http_probe;
pub mod kubernetes;
pub mod postgres;
pub mod probe;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

use crate::domain::template::Vars;

/// An HTTP client with remedyd's User-Agent over rustls + ring (installing the provider once).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("remedyd/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client builds with the ring provider installed")
}

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl ActionRequest {
    /// A step's request for an incident: the template variables are the labels of the signal
    /// that opened it, `target.*`, `incident.*` and the policies' `vars.*`.
    #[allow(clippy::too_many_arguments)]
    pub fn for_step(
        incident: &str,
        level: u8,
        rule: &str,
        target: &crate::domain::rules::Target,
        labels: &crate::domain::signal::Labels,
        vars: &std::collections::BTreeMap<String, String>,
        step: &crate::domain::policy::Step,
    ) -> Self {
        let mut all = labels.clone();
        all.insert("target.kind".into(), target.kind.as_str().into());
        all.insert("target.name".into(), target.name.clone());
        all.insert("target.namespace".into(), target.namespace.clone());
        all.insert("incident.id".into(), incident.to_string());
        all.insert("incident.level".into(), level.to_string());
        all.insert("incident.rule".into(), rule.to_string());
        for (k, v) in vars {
            all.insert(format!("vars.{k}"), v.clone());
        }
        ActionRequest {
            incident: incident.to_string(),
            step: step.name.clone(),
            action: step.action.clone(),
            params: step.params.clone(),
            vars: all,
        }
    }
}

/// What an executor is asked to do.
#[derive(Clone, Debug, Serialize)]
pub struct ActionRequest {
    /// Incident id (also the idempotency key sent with HTTP actions).
    pub incident: String,
    /// Step name.
    pub step: String,
    /// Action kind.
    pub action: String,
    /// The step's `with:`, templates unrendered.
    pub params: serde_json::Value,
    /// Template variables: labels, `target.*`, `incident.*`, `vars.*`.
    pub vars: Vars,
}

/// How an action ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// It did what was asked.
    pub ok: bool,
    /// A failure that may succeed if tried again later (5xx, connection error).
    pub retryable: bool,
    /// One line for the timeline.
    pub summary: String,
    /// Details: the request sent, responses, attempts.
    pub detail: serde_json::Value,
    /// The failure will not fix itself (the API refused our permissions): open the breaker of
    /// this action on this target now, without waiting for more failures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trip_breaker: bool,
    /// The action refused before changing anything: one of its preconditions did not hold
    /// ("nothing to roll back", "scale blocked by max"). The ladder goes on as after a failure,
    /// but no breaker counts it: nothing was tried, so nothing failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_change: bool,
    /// The action stopped before its first write because its target is busy with a change
    /// someone else is making (a rollout in progress): nothing was written, so the engine
    /// releases the step's ledger claim and tries the same step again later. An executor sets
    /// it only on a path that provably sent no write.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// A dry run: what would have been sent was recorded (under [`Outcome::WOULD_SEND`] in
    /// `detail`, which people read) and nothing was sent. Set by the code path that records
    /// instead of sending; the engine counts it apart. Not serialized: the ledger keeps the
    /// outcome as it always did, and `detail` says it.
    #[serde(skip)]
    pub dry_run: bool,
}

impl Outcome {
    /// The key of `detail` holding what a dry run would have sent.
    pub const WOULD_SEND: &'static str = "would_send";

    /// A success.
    pub fn ok(summary: impl Into<String>, detail: serde_json::Value) -> Self {
        Self {
            ok: true,
            retryable: false,
            summary: summary.into(),
            detail,
            trip_breaker: false,
            no_change: false,
            held: false,
            dry_run: false,
        }
    }
    /// A dry run that recorded `would_send` (its `detail` is `{"would_send": …}`) and sent
    /// nothing.
    pub fn dry_run(summary: impl Into<String>, would_send: serde_json::Value) -> Self {
        let mut detail = serde_json::Map::new();
        detail.insert(Self::WOULD_SEND.into(), would_send);
        Self {
            dry_run: true,
            ..Self::ok(summary, detail.into())
        }
    }
    /// This outcome, marked as a dry run's when `dry_run` (an action that builds its own
    /// `detail`, with [`Outcome::WOULD_SEND`] in it, whatever the outcome).
    pub fn in_dry_run(self, dry_run: bool) -> Self {
        Self { dry_run, ..self }
    }
    /// A refusal before any change (see [`Outcome::no_change`]).
    pub fn refused(summary: impl Into<String>, detail: serde_json::Value) -> Self {
        Self {
            no_change: true,
            ..Self::failed(false, summary, detail)
        }
    }
    /// Held before any write (see [`Outcome::held`]).
    pub fn held(summary: impl Into<String>, detail: serde_json::Value) -> Self {
        Self {
            held: true,
            ..Self::refused(summary, detail)
        }
    }
    /// A failure.
    pub fn failed(retryable: bool, summary: impl Into<String>, detail: serde_json::Value) -> Self {
        Self {
            ok: false,
            retryable,
            summary: summary.into(),
            detail,
            trip_breaker: false,
            no_change: false,
            held: false,
            dry_run: false,
        }
    }
}

/// Something a step can do.
pub trait Executor: Send + Sync + 'static {
    /// Checks `with:` at load time so that `remedyd check` reports it.
    fn validate(&self, params: &serde_json::Value) -> Result<(), String>;
    /// The names of its `with:` parameters, from the type `validate` parses
    /// ([`fields::names`]); the docs are checked against them. None by default.
    fn params(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// The exact request it would send (dry-run records this).
    fn plan(&self, req: &ActionRequest) -> Result<serde_json::Value, String>;
    /// Does it.
    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome>;
    /// In dry-run: what it would do, touching nothing. The default records the plan; an action
    /// that must read state to know what it would do (which queries it would cancel) overrides
    /// it with a read-only look.
    fn dry_run<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.plan(req) {
                Ok(p) => Outcome::dry_run("dry-run: recorded the request, sent nothing", p),
                Err(e) => Outcome::failed(
                    false,
                    format!("cannot build the request: {e}"),
                    serde_json::Value::Null,
                ),
            }
        })
    }
    /// Reads back what a step of this action wrote (`watch`, which it left under `"watch"` in
    /// its outcome's `detail`) while the step is verified: `Ok(Some(why))` when a reconciler put
    /// it back, `Ok(None)` when it is as written, `Err` when it could not be read. Only reads,
    /// each request within its own deadline. Actions that leave no watch never get here.
    fn revert_check<'a>(
        &'a self,
        watch: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        let _ = watch;
        Box::pin(async { Ok(None) })
    }
    /// Evidence actions only read: their steps need no verification and the ladder goes on.
    fn gathers_evidence(&self) -> bool {
        false
    }
}

/// Wraps an executor so that its dry-run is the plan alone.
struct PlanOnly(Arc<dyn Executor>);

impl Executor for PlanOnly {
    fn validate(&self, params: &serde_json::Value) -> Result<(), String> {
        self.0.validate(params)
    }
    fn params(&self) -> Vec<&'static str> {
        self.0.params()
    }
    fn plan(&self, req: &ActionRequest) -> Result<serde_json::Value, String> {
        self.0.plan(req)
    }
    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        // Never called: `remedyd test` runs every policy in dry-run.
        Box::pin(async move {
            Outcome::failed(
                false,
                format!("{}: not executed in tests", req.action),
                serde_json::Value::Null,
            )
        })
    }
    fn gathers_evidence(&self) -> bool {
        self.0.gathers_evidence()
    }
}

/// Executors by action kind.
#[derive(Clone, Default)]
pub struct Executors {
    kinds: BTreeMap<String, Arc<dyn Executor>>,
    cluster: Option<Arc<kubernetes::Cluster>>,
    prober: Option<Arc<probe::Prober>>,
}

impl Executors {
    /// The built-in actions; the Kubernetes ones reach the cluster of `kubeconfig` (or
    /// in-cluster / `~/.kube/config` when `None`) on first use.
    pub fn builtin_for(kubeconfig: Option<std::path::PathBuf>) -> Self {
        let mut e = Self::default();
        e.register("http", Arc::new(http::HttpExecutor::new()));
        e.set_probe_allow(crate::load::ProbeAllowList::default());
        e.register("postgres_evidence", Arc::new(postgres::Evidence));
        e.register("postgres_cancel_queries", Arc::new(postgres::CancelQueries));
        let cluster = kubernetes::Cluster::new(kubeconfig);
        kubernetes::register(&mut e, cluster.clone());
        e.cluster = Some(cluster);
        e
    }
    /// The built-in actions with the default cluster (`check`, `simulate`, tests).
    pub fn builtin() -> Self {
        Self::builtin_for(None)
    }
    /// The cluster the Kubernetes actions use, if registered.
    pub fn cluster(&self) -> Option<&Arc<kubernetes::Cluster>> {
        self.cluster.as_ref()
    }
    /// The hosts and ports HTTP probes may reach (`probe_allow`): the `http_probe` action and
    /// `verify: {http: …}` use them. Until set, every probe is refused.
    pub fn set_probe_allow(&mut self, allow: crate::load::ProbeAllowList) {
        let prober = Arc::new(probe::Prober::new(allow));
        self.register(
            "http_probe",
            Arc::new(http_probe::HttpProbe::new(prober.clone())),
        );
        self.prober = Some(prober);
    }
    /// The prober of `verify: {http: …}` (refusing every URL when none was set).
    pub fn prober(&self) -> Arc<probe::Prober> {
        self.prober
            .clone()
            .unwrap_or_else(|| Arc::new(probe::Prober::new(crate::load::ProbeAllowList::default())))
    }
    /// Adds or replaces an action kind.
    pub fn register(&mut self, kind: &str, exec: Arc<dyn Executor>) {
        self.kinds.insert(kind.to_string(), exec);
    }
    /// The same kinds, but whose dry-run only plans and reads nothing (for `remedyd test`,
    /// which must not depend on databases or clusters being reachable).
    pub fn plan_only(&self) -> Self {
        Self {
            kinds: self
                .kinds
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        Arc::new(PlanOnly(e.clone())) as Arc<dyn Executor>,
                    )
                })
                .collect(),
            cluster: None,
            prober: self.prober.clone(),
        }
    }
    /// Every kind with its parameter names, in name order.
    pub fn catalogue(&self) -> Vec<(&str, Vec<&'static str>)> {
        self.kinds
            .iter()
            .map(|(k, e)| (k.as_str(), e.params()))
            .collect()
    }
    /// Looks up a kind.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Executor>> {
        self.kinds.get(kind)
    }
    /// Validates a step's action and parameters.
    pub fn validate(&self, kind: &str, params: &serde_json::Value) -> Result<(), String> {
        match self.kinds.get(kind) {
            Some(e) => e.validate(params).map_err(|e| format!("{kind}: {e}")),
            None => Err(format!(
                "unknown action {kind:?}; available: {}",
                self.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

impl crate::load::ruleset::ActionCatalogue for Executors {
    fn validate(&self, kind: &str, params: &serde_json::Value) -> Result<(), String> {
        Executors::validate(self, kind, params)
    }
    fn gathers_evidence(&self, kind: &str) -> bool {
        self.get(kind).is_some_and(|e| e.gathers_evidence())
    }
}
