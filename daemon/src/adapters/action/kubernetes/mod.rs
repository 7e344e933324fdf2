//! Kubernetes actions (runbook procedures 1, 2, 4, 5 and node drain) with kubectl's semantics.
//!
//! Every action reads what it acts on first, then sends the same requests kubectl would (method,
//! path, query, content type and body; `reference/kube.md` §2), with these deliberate
//! differences, each safer than kubectl's default:
//!
//! - every wait is bounded (`wait`, `timeout`); a Deployment change waits for kubectl's rollout
//!   viewer and a failed rollout fails the step;
//! - `kube_set_resources` names its containers (kubectl's default `*` hits sidecars too);
//! - scale is HPA-aware, drain keeps `min_ready_nodes`, deleting pods never takes more than a
//!   share of the ready ones;
//! - the client's own retry layer is off: 409 and 5xx are retried here (bounded, recorded), a
//!   PDB's 429 during drain every 5 s up to the drain timeout, and 403 trips the breaker.
//!
//! Namespaces come from the incident's target, so `limits.namespaces` governs every workload
//! action; `kube-system` is refused except by the two DNS actions, which act on CoreDNS only.
//! In dry-run, reads go to the cluster and writes are recorded, exactly as they would be sent.

mod node;
pub mod quantity;
mod undo;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ConstantBuilder, Retryable};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ActionRequest, BoxFuture, Executor, Executors, Outcome};
use crate::domain::template::Template;

/// Sent with every request: the API server's audit log and default field managers name us.
pub const USER_AGENT: &str = concat!("remedyd/", env!("CARGO_PKG_VERSION"));
/// The only namespace workload actions never touch (the DNS actions own it).
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// Bound of one request (a watch is bounded by its own wait).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach the cluster: the `kubeconfig` key, else in-cluster or `~/.kube/config`.
pub struct Cluster {
    kubeconfig: Option<PathBuf>,
    client: tokio::sync::Mutex<Option<::kube::Client>>,
    metrics: std::sync::OnceLock<Arc<crate::adapters::telemetry::Metrics>>,
}

impl Cluster {
    /// A cluster reached on first use.
    pub fn new(kubeconfig: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            kubeconfig,
            client: tokio::sync::Mutex::new(None),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Where requests are counted (`remedyd_kube_requests_total`); set once by the daemon.
    pub fn set_metrics(&self, m: Arc<crate::adapters::telemetry::Metrics>) {
        let _ = self.metrics.set(m);
    }

    /// The client, built once it succeeds (a failure is retried on the next use).
    pub async fn client(&self) -> Result<::kube::Client, String> {
        let mut slot = self.client.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = match &self.kubeconfig {
            Some(p) => {
                let kc = ::kube::config::Kubeconfig::read_from(p)
                    .map_err(|e| format!("kubeconfig {}: {e}", p.display()))?;
                ::kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| format!("kubeconfig {}: {e}", p.display()))?
            }
            None => ::kube::Config::infer().await.map_err(|e| {
                format!(
                    "no cluster: not in a pod and no usable ~/.kube/config ({e}); set `kubeconfig`"
                )
            })?,
        };
        // Retries are ours: bounded, recorded, and never hiding a PDB's 429 inside the client.
        cfg.default_retry = false;
        cfg.connect_timeout = Some(Duration::from_secs(10));
        cfg.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(USER_AGENT),
        ));
        let c = ::kube::Client::try_from(cfg).map_err(|e| format!("kube client: {e}"))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Checks that the cluster answers (enforce mode's startup check).
    pub async fn preflight(&self) -> Result<String, String> {
        let c = self.client().await?;
        let v = tokio::time::timeout(REQUEST_TIMEOUT, c.apiserver_version())
            .await
            .map_err(|_| "the API server did not answer /version within 30 s".to_string())?
            .map_err(|e| format!("the API server is not reachable: {e}"))?;
        Ok(v.git_version)
    }
}

/// An API error, or a transport one (`code` 0).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status; 0 when no answer came.
    pub code: u16,
    /// `Status.reason` (`Conflict`, `Forbidden`, `TooManyRequests`…).
    pub reason: String,
    /// `Status.message`.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.code == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} {}: {}", self.code, self.reason, self.message)
        }
    }
}

impl ApiError {
    fn from_kube(e: ::kube::Error) -> Self {
        Self::from_kube_ref(&e)
    }
    fn from_kube_ref(e: &::kube::Error) -> Self {
        match e {
            ::kube::Error::Api(s) => Self {
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            other => Self {
                code: 0,
                reason: String::new(),
                message: other.to_string(),
            },
        }
    }
    /// Worth another try later: no answer, 429 or 5xx.
    pub fn transient(&self) -> bool {
        self.code == 0 || self.code == 429 || self.code >= 500
    }
}

/// Why an action stopped.
#[derive(Debug)]
pub enum Failure {
    /// The API refused or failed.
    Api(String, ApiError),
    /// A check of ours (bounds, paused, PDB past the timeout…).
    Refused(String),
}

impl Failure {
    fn api(what: impl Into<String>) -> impl FnOnce(ApiError) -> Failure {
        let what = what.into();
        move |e| Failure::Api(what, e)
    }
}

/// One action run: reads go to the cluster; writes are sent, or recorded in dry-run.
pub struct Session {
    client: ::kube::Client,
    metrics: Option<Arc<crate::adapters::telemetry::Metrics>>,
    dry: bool,
    /// Writes, in order, as sent (or as they would be): the timeline's evidence.
    writes: Vec<Value>,
    /// Every answer that was an error, retried or not.
    errors: Vec<Value>,
    reads: usize,
    /// What the action measured and decided, for the timeline.
    pub notes: Vec<String>,
    /// Extra detail (evidence, rollout status).
    pub detail: serde_json::Map<String, Value>,
}

/// A request's shape, as recorded and as compared with kubectl.
fn describe(req: &http::Request<Vec<u8>>) -> Value {
    let body: Value = if req.body().is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(req.body())
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(req.body()).into_owned()))
    };
    json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query().unwrap_or(""),
        "content_type": req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        "body": body,
    })
}

/// kube-core writes `?&fieldManager=…` when a patch has no other parameter; send kubectl's
/// `?fieldManager=…` instead (servers read both alike, but the request should be kubectl's).
fn tidy(mut req: http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    if let Some(q) = req.uri().query()
        && (q.starts_with('&') || q.is_empty())
    {
        let q = q.trim_start_matches('&');
        let pq = if q.is_empty() {
            req.uri().path().to_string()
        } else {
            format!("{}?{q}", req.uri().path())
        };
        if let Ok(uri) = pq.parse() {
            *req.uri_mut() = uri;
        }
    }
    req
}

fn clone_req(req: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut b = http::Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone());
    for (k, v) in req.headers() {
        b = b.header(k, v);
    }
    b.body(req.body().clone())
        .expect("a copy of a valid request")
}

impl Session {
    fn new(
        client: ::kube::Client,
        metrics: Option<Arc<crate::adapters::telemetry::Metrics>>,
        dry: bool,
    ) -> Self {
        Self {
            client,
            metrics,
            dry,
            writes: Vec::new(),
            errors: Vec::new(),
            reads: 0,
            notes: Vec::new(),
            detail: Default::default(),
        }
    }

    /// A session for work done in parallel, merged back with `absorb`.
    pub fn fork(&self) -> Self {
        Self::new(self.client.clone(), self.metrics.clone(), self.dry)
    }

    /// Takes a forked session's record.
    pub fn absorb(&mut self, other: Session) {
        self.writes.extend(other.writes);
        self.errors.extend(other.errors);
        self.reads += other.reads;
        self.notes.extend(other.notes);
    }

    /// True in dry-run.
    pub fn dry(&self) -> bool {
        self.dry
    }

    async fn send_once<T: DeserializeOwned>(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<T, ApiError> {
        let method = req.method().to_string();
        let r = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request::<T>(req)).await {
            Ok(r) => r.map_err(ApiError::from_kube),
            Err(_) => Err(ApiError {
                code: 0,
                reason: String::new(),
                message: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            }),
        };
        self.count(method, r.as_ref().err());
        r
    }

    fn count(&self, method: String, err: Option<&ApiError>) {
        if let Some(m) = &self.metrics {
            let code = match err {
                None => "2xx".to_string(),
                Some(e) if e.code == 0 => "error".to_string(),
                Some(e) => e.code.to_string(),
            };
            m.kube_requests
                .get_or_create(&crate::adapters::telemetry::KubeLabels { method, code })
                .inc();
        }
    }

    /// Sends `req`, retrying the errors `retry` accepts up to `times` more times, 1 s apart.
    /// Retried errors go into `api_errors`; the final one too for a write (a read's final 404
    /// is often the answer it waits for).
    async fn send<T: DeserializeOwned>(
        &mut self,
        req: http::Request<Vec<u8>>,
        times: usize,
        retry: impl Fn(&ApiError) -> bool,
        write: bool,
    ) -> Result<T, ApiError> {
        let shape = describe(&req);
        let errors = std::sync::Mutex::new(Vec::new());
        let r = (|| async { self.send_once::<T>(clone_req(&req)).await })
            .retry(
                ConstantBuilder::default()
                    .with_delay(Duration::from_secs(1))
                    .with_max_times(times),
            )
            .when(retry)
            .notify(|e, _| {
                errors.lock().expect("errors").push(
                    json!({"request": shape.clone(), "error": e.to_string(), "retried": true}),
                )
            })
            .await;
        self.errors.extend(errors.into_inner().expect("errors"));
        if let (true, Err(e)) = (write, &r) {
            self.errors
                .push(json!({"request": shape, "error": e.to_string(), "retried": false}));
        }
        r
    }

    /// A read, retried on no answer, 429 and 5xx (3 tries in all).
    pub async fn read<T: DeserializeOwned>(
        &mut self,
        req: http::Request<Vec<u8>>,
    ) -> Result<T, ApiError> {
        self.reads += 1;
        self.send(tidy(req), 2, ApiError::transient, false).await
    }

    /// A read of a plain-text body (pod logs).
    pub async fn read_text(&mut self, req: http::Request<Vec<u8>>) -> Result<String, ApiError> {
        self.reads += 1;
        let r = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request_text(req)).await {
            Ok(r) => r.map_err(ApiError::from_kube),
            Err(_) => Err(ApiError {
                code: 0,
                reason: String::new(),
                message: "no answer within 30 s".into(),
            }),
        };
        self.count("GET".into(), r.as_ref().err());
        r
    }

    /// A write. Dry-run records it and answers `None`. Otherwise it is sent; no answer and 5xx
    /// are retried (5 tries in all), 409 too when `conflicts` (a patch without a precondition:
    /// kubectl retries those too), and the answer is returned.
    pub async fn write<T: DeserializeOwned>(
        &mut self,
        req: http::Request<Vec<u8>>,
        conflicts: bool,
    ) -> Result<Option<T>, ApiError> {
        let req = tidy(req);
        self.writes.push(describe(&req));
        if self.dry {
            return Ok(None);
        }
        let retry = |e: &ApiError| e.code == 0 || e.code >= 500 || (conflicts && e.code == 409);
        self.send(req, 4, retry, true).await.map(Some)
    }

    /// A write sent once, its error returned as is (eviction: the caller owns the 429 loop).
    pub async fn write_once(
        &mut self,
        req: http::Request<Vec<u8>>,
    ) -> Result<Option<Value>, ApiError> {
        let req = tidy(req);
        self.writes.push(describe(&req));
        if self.dry {
            return Ok(None);
        }
        self.send(req, 0, |_| false, true).await.map(Some)
    }

    /// The client (for watches).
    pub fn client(&self) -> &::kube::Client {
        &self.client
    }

    fn into_detail(mut self) -> Value {
        let key = if self.dry { "would_send" } else { "requests" };
        self.detail.insert(key.into(), Value::Array(self.writes));
        self.detail.insert("reads".into(), self.reads.into());
        if !self.errors.is_empty() {
            self.detail
                .insert("api_errors".into(), Value::Array(self.errors));
        }
        if !self.notes.is_empty() {
            self.detail.insert("notes".into(), json!(self.notes));
        }
        Value::Object(self.detail)
    }
}

/// A request builder for a path (kube-core's, which kube's typed `Api` uses).
pub fn at(path: impl Into<String>) -> ::kube::core::Request {
    ::kube::core::Request::new(path.into())
}

/// A `GET` of one object.
pub fn get(collection: &str, name: &str) -> http::Request<Vec<u8>> {
    at(collection)
        .get(name, &Default::default())
        .expect("a valid object name (checked when rendered)")
}

/// The collection path of a namespaced resource.
pub fn path(group_version: &str, ns: &str, resource: &str) -> String {
    let base = if group_version == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group_version}")
    };
    format!("{base}/namespaces/{ns}/{resource}")
}

/// A patch of an object, or of its `subresource`, with an optional field manager; the content
/// type follows the patch kind (strategic, merge or JSON), as kubectl's `--type`.
pub fn patch(
    collection: &str,
    name: &str,
    subresource: Option<&str>,
    manager: Option<&str>,
    body: &::kube::api::Patch<Value>,
) -> http::Request<Vec<u8>> {
    let pp = ::kube::api::PatchParams {
        field_manager: manager.map(str::to_string),
        ..Default::default()
    };
    let r = at(collection);
    match subresource {
        Some(sub) => r.patch_subresource(sub, name, &pp, body),
        None => r.patch(name, &pp, body),
    }
    .expect("a valid patch request (names are checked when rendered)")
}

/// A strategic merge patch of an object.
pub fn strategic(
    collection: &str,
    name: &str,
    manager: Option<&str>,
    body: &Value,
) -> http::Request<Vec<u8>> {
    patch(
        collection,
        name,
        None,
        manager,
        &::kube::api::Patch::Strategic(body.clone()),
    )
}

/// A merge patch of an object.
pub fn merge(
    collection: &str,
    name: &str,
    manager: Option<&str>,
    body: &Value,
) -> http::Request<Vec<u8>> {
    patch(
        collection,
        name,
        None,
        manager,
        &::kube::api::Patch::Merge(body.clone()),
    )
}

/// A list with a label and/or field selector, kubectl's way (no limit unless paging).
pub fn list(
    collection: &str,
    labels: Option<&str>,
    fields: Option<&str>,
    limit: Option<u32>,
    cont: Option<&str>,
) -> http::Request<Vec<u8>> {
    let mut lp = ::kube::api::ListParams::default();
    if let Some(l) = labels {
        lp = lp.labels(l);
    }
    if let Some(f) = fields {
        lp = lp.fields(f);
    }
    if let Some(n) = limit {
        lp = lp.limit(n);
    }
    if let Some(c) = cont {
        lp = lp.continue_token(c);
    }
    at(collection).list(&lp).expect("a valid list request")
}

/// Every item of a list, following `continue` pages of `limit`.
pub async fn list_all(
    s: &mut Session,
    collection: &str,
    labels: Option<&str>,
    fields: Option<&str>,
    limit: Option<u32>,
) -> Result<Vec<Value>, ApiError> {
    let mut items = Vec::new();
    let mut cont: Option<String> = None;
    loop {
        let page: Value = s
            .read(list(collection, labels, fields, limit, cont.as_deref()))
            .await?;
        if let Some(a) = page["items"].as_array() {
            items.extend(a.iter().cloned());
        }
        match page["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() && limit.is_some() => cont = Some(c.to_string()),
            _ => return Ok(items),
        }
    }
}

/// A label selector object rendered as a string, as kubectl's `LabelSelectorAsSelector`.
pub fn selector_string(sel: &Value) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            parts.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default().to_string();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        values.sort_unstable();
        let s = match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            op => return Err(format!("unknown selector operator {op:?}")),
        };
        parts.push((key, s));
    }
    if parts.is_empty() {
        return Err("the selector is empty (it would select everything)".into());
    }
    parts.sort();
    Ok(parts
        .into_iter()
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(","))
}

/// kubectl's rollout viewer (`DeploymentStatusViewer`) on one Deployment.
#[derive(Debug, PartialEq)]
pub enum Rollout {
    /// Not finished: why.
    Waiting(String),
    /// Finished.
    Done(String),
    /// Failed for good (deadline exceeded, deleted).
    Failed(String),
}

/// Evaluates a Deployment as kubectl's viewer does (absent fields count as 0).
pub fn rollout_state(d: &Value) -> Rollout {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let st = &d["status"];
    if n(&d["metadata"]["generation"]) > n(&st["observedGeneration"]) {
        return Rollout::Waiting("Waiting for deployment spec update to be observed...".into());
    }
    let progressing = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing");
    if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Rollout::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let (updated, replicas, available) = (
        n(&st["updatedReplicas"]),
        n(&st["replicas"]),
        n(&st["availableReplicas"]),
    );
    if let Some(want) = d["spec"]["replicas"].as_i64()
        && updated < want
    {
        return Rollout::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return Rollout::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return Rollout::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    Rollout::Done(format!("deployment {name:?} successfully rolled out"))
}

/// Waits (bounded) for a Deployment's rollout, over a list+watch of that one object.
pub async fn wait_rollout(
    s: &mut Session,
    ns: &str,
    name: &str,
    wait: Duration,
) -> Result<String, Failure> {
    if s.dry() {
        s.notes
            .push(format!("would wait up to {} for the rollout", fmt(wait)));
        return Ok("dry-run: rollout not awaited".into());
    }
    let api: ::kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        ::kube::Api::namespaced(s.client().clone(), ns);
    let cfg = ::kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
    let started = Instant::now();
    let mut stream = ::kube::runtime::watcher(api, cfg).boxed();
    let mut last = String::from("no status seen yet");
    let mut seen = Vec::<String>::new();
    let result = tokio::time::timeout(wait, async {
        while let Some(ev) = stream.next().await {
            let obj = match ev {
                Ok(::kube::runtime::watcher::Event::Apply(d))
                | Ok(::kube::runtime::watcher::Event::InitApply(d)) => d,
                Ok(::kube::runtime::watcher::Event::Delete(_)) => {
                    return Err(Failure::Refused(format!(
                        "deployment {ns}/{name} was deleted during the rollout"
                    )));
                }
                Ok(_) => continue,
                Err(e) => {
                    // Refused (RBAC, gone): waiting cannot help. Anything else the watcher
                    // recovers from by itself (it re-lists); record it and go on to the bound.
                    if let Some(api) = watch_refusal(&e) {
                        return Err(Failure::Api(
                            format!("watching deployment {ns}/{name}"),
                            api,
                        ));
                    }
                    last = format!("watch error: {e}");
                    continue;
                }
            };
            let v = serde_json::to_value(&obj).unwrap_or_default();
            if v["spec"]["paused"] == true {
                return Err(Failure::Refused(format!(
                    "deployment {ns}/{name} is paused: its rollout cannot finish"
                )));
            }
            match rollout_state(&v) {
                Rollout::Done(m) => return Ok(m),
                Rollout::Failed(m) => return Err(Failure::Refused(m)),
                Rollout::Waiting(m) => {
                    if seen.last() != Some(&m) {
                        seen.push(m.clone());
                    }
                    last = m;
                }
            }
        }
        Err(Failure::Refused("the watch ended".into()))
    })
    .await;
    s.detail.insert(
        "rollout".into(),
        json!({"waited": fmt(started.elapsed()), "progress": seen}),
    );
    match result {
        Ok(r) => r,
        Err(_) => Err(Failure::Refused(format!(
            "rollout of {ns}/{name} not finished after {}: {last}",
            fmt(wait)
        ))),
    }
}

/// A watch error that waiting will not fix: 401, 403, 404.
fn watch_refusal(e: &::kube::runtime::watcher::Error) -> Option<ApiError> {
    use ::kube::runtime::watcher::Error as W;
    let api = match e {
        W::InitialListFailed(k) | W::WatchStartFailed(k) | W::WatchFailed(k) => {
            ApiError::from_kube_ref(k)
        }
        W::WatchError(s) => ApiError {
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        W::NoResourceVersion => return None,
    };
    matches!(api.code, 401 | 403 | 404).then_some(api)
}

/// A duration as a person reads it.
pub use crate::domain::time::fmt_duration as fmt;

/// Parses a bounded duration parameter.
pub fn duration(field: &str, s: &str, max: Duration) -> Result<Duration, String> {
    let d = crate::domain::time::parse_duration(s).map_err(|e| format!("{field}: {e}"))?;
    if d.is_zero() {
        return Err(format!(
            "{field}: must be more than 0 (every wait is bounded)"
        ));
    }
    if d > max {
        return Err(format!("{field}: {s} is more than {}", fmt(max)));
    }
    Ok(d)
}

/// A step's `with:` (absent = `{}`), an error naming the field (`containers: …`).
pub fn params<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    let v = if v.is_null() { json!({}) } else { v.clone() };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let p = e.path().to_string();
        if p == "." {
            e.inner().to_string()
        } else {
            format!("{p}: {}", e.inner())
        }
    })
}

/// Renders a template parameter (`{{target.name}}` by default).
pub fn render(field: &str, t: &str, req: &ActionRequest) -> Result<String, String> {
    let v = Template::parse(t)
        .and_then(|t| t.render(&req.vars))
        .map_err(|e| format!("{field}: {e}"))?;
    if v.is_empty() {
        return Err(format!("{field}: rendered empty"));
    }
    // DNS-1123 names: also keeps paths and selectors from being injected through labels.
    if !v
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        || v.len() > 253
    {
        return Err(format!("{field}: {v:?} is not a Kubernetes object name"));
    }
    Ok(v)
}

/// Checks a template parameter at load time.
pub fn check_template(field: &str, t: &str) -> Result<(), String> {
    Template::parse(t)
        .map(|_| ())
        .map_err(|e| format!("{field}: {e}"))
}

/// The namespace of the incident's target, refusing `kube-system` for workload actions.
pub fn namespace(req: &ActionRequest) -> Result<String, String> {
    let ns = req
        .vars
        .get("target.namespace")
        .cloned()
        .unwrap_or_default();
    if ns.is_empty() {
        return Err(
            "the target has no namespace (workload actions need a namespaced target)".into(),
        );
    }
    if ns == SYSTEM_NAMESPACE {
        return Err(format!(
            "{SYSTEM_NAMESPACE} is touched only by kube_dns_scale and kube_dns_restart_pods"
        ));
    }
    Ok(ns)
}

/// What one action kind does.
pub trait KubeAction: Send + Sync + 'static {
    /// Checks `with:`.
    fn validate(&self, params: &Value) -> Result<(), String>;
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

/// An action kind bound to a cluster.
pub struct KubeExecutor {
    cluster: Arc<Cluster>,
    action: Box<dyn KubeAction>,
}

impl KubeExecutor {
    async fn go(&self, req: &ActionRequest, dry: bool) -> Outcome {
        if let Err(e) = self.action.plan(req) {
            return Outcome::failed(false, format!("cannot build the request: {e}"), Value::Null);
        }
        let client = match self.cluster.client().await {
            Ok(c) => c,
            Err(e) if dry => {
                return Outcome::ok(
                    format!("dry-run: cluster not reachable ({e}); recorded the plan only"),
                    json!({"would_send": [], "plan": self.action.plan(req).unwrap_or_default()}),
                );
            }
            Err(e) => return Outcome::failed(true, e, Value::Null),
        };
        let mut s = Session::new(client, self.cluster.metrics.get().cloned(), dry);
        let r = self.action.run(&mut s, req).await;
        let wrote = !s.writes.is_empty();
        let mut detail = s.into_detail();
        match r {
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
            // Refused before the first write: a precondition, not a failed remediation.
            Err(Failure::Refused(why)) if !wrote => Outcome::refused(why, detail),
            Err(Failure::Refused(why)) => Outcome::failed(false, why, detail),
            Err(Failure::Api(what, e)) => {
                let mut o = Outcome::failed(e.transient(), format!("{what}: {e}"), detail);
                if e.code == 403 || e.code == 401 {
                    // Permissions do not fix themselves: stop this action on this target.
                    o.trip_breaker = true;
                    o.summary
                        .push_str(" (RBAC: see deploy/kubernetes/rbac.yaml)");
                }
                o
            }
        }
    }
}

impl Executor for KubeExecutor {
    fn validate(&self, params: &Value) -> Result<(), String> {
        self.action.validate(params)
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
}

/// Action kinds, by name.
pub const KINDS: &[&str] = &[
    "kube_evidence",
    "kube_rollout_restart",
    "kube_rollout_status",
    "kube_rollout_undo",
    "kube_scale",
    "kube_hpa_patch",
    "kube_set_resources",
    "kube_delete_pods",
    "kube_drain_node",
    "kube_dns_scale",
    "kube_dns_restart_pods",
];

/// Registers every Kubernetes action on one cluster.
pub fn register(e: &mut Executors, cluster: Arc<Cluster>) {
    let mk = |a: Box<dyn KubeAction>| -> Arc<dyn Executor> {
        Arc::new(KubeExecutor {
            cluster: cluster.clone(),
            action: a,
        })
    };
    e.register("kube_evidence", mk(Box::new(workload::Evidence)));
    e.register("kube_rollout_restart", mk(Box::new(workload::Restart)));
    e.register("kube_rollout_status", mk(Box::new(workload::Status)));
    e.register("kube_rollout_undo", mk(Box::new(undo::Undo)));
    e.register("kube_scale", mk(Box::new(workload::Scale { dns: false })));
    e.register("kube_hpa_patch", mk(Box::new(workload::HpaPatch)));
    e.register("kube_set_resources", mk(Box::new(workload::SetResources)));
    e.register(
        "kube_delete_pods",
        mk(Box::new(workload::DeletePods { dns: false })),
    );
    e.register("kube_drain_node", mk(Box::new(node::Drain)));
    e.register(
        "kube_dns_scale",
        mk(Box::new(workload::Scale { dns: true })),
    );
    e.register(
        "kube_dns_restart_pods",
        mk(Box::new(workload::DeletePods { dns: true })),
    );
}

/// True when a policy step uses a Kubernetes action.
pub fn used_by(rs: &crate::load::ruleset::Ruleset) -> bool {
    rs.policies.values().any(|p| {
        p.levels
            .values()
            .any(|l| l.steps.iter().any(|s| KINDS.contains(&s.action.as_str())))
    })
}

/// The current time as kubectl writes `restartedAt` (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
