//! A stateful fake Kubernetes API server on loopback for tests (kube.md §3.2–§3.3), checked
//! against the real kubectl in `tests/it/fake_kube.rs`.
//!
//! It serves discovery (`/version`, `/api`, `/apis`, group/version resource lists with
//! shortNames and the `deployments/scale`, `pods/eviction`, `pods/log` subresources), and
//! generic JSON CRUD for pods, nodes, events, namespaces, deployments (+`scale`, `status`),
//! replicasets, daemonsets, HPAs (autoscaling/v2), PDBs (policy/v1), leases, services,
//! endpoints, endpointslices, networkpolicies and ingresses (no endpoints controller), and
//! `/livez`/`/readyz` with answers the test sets: a global
//! monotonic resourceVersion, uid, creationTimestamp, generation rules, 409 on a stale
//! resourceVersion, merge / JSON / strategic merge patches, label and field selectors,
//! `limit`+`continue` paging, watches (with bookmarks and 410 Expired after compaction), graceful
//! pod deletion, eviction with PDB semantics, light validation (422), `metav1.Status` errors,
//! fault injection, a request log and an RBAC mode driven by an authorizer callback.
//! Controllers are stepped by the test (`step`, `kubelet_step`) or by `auto_step`.
//!
//! The server runs on its own thread with its own tokio runtime, so a test may block (e.g. run
//! kubectl synchronously) without stalling it.
//!
//! **What this fake cannot prove** (kube.md §3.3):
//! - strategic-merge-patch edge cases beyond the implemented keys (the patch strategy of a list is
//!   decided by its field name, not by the OpenAPI schema; see `smp.rs`);
//! - admission (webhooks, LimitRange defaulting, Pod Security) and defaulting in general;
//! - real RBAC evaluation: the RBAC mode only asks the test's authorizer callback;
//! - controller timing and the PDB controller's arithmetic (PDB status is set by the test;
//!   rollouts advance per `step`, not by time);
//! - API Priority and Fairness throttling;
//! - TLS, authentication plugins, HTTP/2 and protobuf (plain HTTP/1.1 JSON only).
//!
//! `crate::support::fake_kube` (tests/support/mod.rs).
#![allow(dead_code)]

pub mod controller;
pub mod eviction;
pub mod fixtures;
pub mod outage;
pub mod resources;
pub mod select;
pub mod server;
pub mod smp;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use store::State;

/// Server options.
#[derive(Debug, Clone)]
pub struct Options {
    /// The minor version `/version` reports (the kubectl dispatcher picks `kubectl.1.<minor>`).
    pub minor: String,
    /// Caps every `limit` a client asks for, to force paging.
    pub page_size: Option<usize>,
    /// Consult the authorizer (`set_authorizer`) for every resource request.
    pub rbac: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            minor: "32".into(),
            page_size: None,
            rbac: false,
        }
    }
}

/// One request as received, and the status it got.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
    /// When the request reached the handler (taken first thing, before the body is read).
    pub at: std::time::Instant,
}

/// RBAC request attributes (kube.md §3.3 #13): verb get/list/watch/create/update/patch/delete/
/// deletecollection; group "" for core; subresource "" for none; namespace "" for cluster scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// How the deployment controller advances a deployment's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// One step finishes the rollout (default).
    Complete,
    /// The rollout takes n steps; partial counts are visible in status.
    Slow(u32),
    /// New pods never become ready; Progressing gets ProgressDeadlineExceeded (status False).
    Stuck,
}

/// An API server outage (`FakeKube::set_outage`): what every connection and request meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Serving normally.
    None,
    /// Every request is answered 503 ServiceUnavailable (a Status body), nothing is changed.
    Unavailable,
    /// Connections are accepted and requests read, but nothing is ever answered.
    Hang,
    /// Connections are accepted, the request read, then closed without an answer.
    Close,
}

pub struct Shared {
    pub state: Mutex<State>,
    pub opts: Options,
    pub addr: String,
    pub drop_watches: tokio::sync::watch::Sender<u64>,
    /// The outage in force; connections open when one starts are closed.
    pub outage: tokio::sync::watch::Sender<Outage>,
}

struct Inner {
    shared: Arc<Shared>,
    url: String,
    handle: tokio::runtime::Handle,
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.drop_watches.send_modify(|n| *n += 1);
        if let Some(tx) = self.shutdown.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// A handle to the fake API server (cheap to clone; the server stops when the last handle goes).
#[derive(Clone)]
pub struct FakeKube {
    inner: Arc<Inner>,
}

fn def_for(api_version: &str, kind: &str) -> &'static resources::ResDef {
    resources::by_kind(api_version, kind)
        .unwrap_or_else(|| panic!("fake_kube does not serve {api_version} {kind}"))
}

impl FakeKube {
    /// Starts on 127.0.0.1:0 with default options (minor "32").
    pub async fn start() -> FakeKube {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(o: Options) -> FakeKube {
        Self::start_blocking(o)
    }

    /// Same as `start_with`, callable outside an async context.
    pub fn start_blocking(o: Options) -> FakeKube {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, _) = tokio::sync::broadcast::channel(8192);
        let (drop_watches, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(o.minor.clone(), tx)),
            opts: o,
            addr: addr.clone(),
            drop_watches,
            outage: tokio::sync::watch::channel(Outage::None).0,
        });
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let app_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("fake-kube-{addr}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake kube runtime");
                handle_tx.send(rt.handle().clone()).unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    outage::serve(listener, app_shared, shutdown_rx).await;
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn fake kube thread");
        let handle = handle_rx.recv().expect("fake kube runtime handle");
        FakeKube {
            inner: Arc::new(Inner {
                shared,
                url: format!("http://{addr}"),
                handle,
                shutdown: Mutex::new(Some(shutdown_tx)),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.shared.state.lock().unwrap()
    }

    /// "http://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// Writes `<dir>/kubeconfig` (cluster server = url, namespace default, a token user) and
    /// returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    namespace: default\n    user: remedyd\ncurrent-context: fake\nusers:\n- name: remedyd\n  user:\n    token: fake-token\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Creates or replaces a fixture (apiVersion/kind pick the resource; namespace defaults to
    /// "default"). Sets metadata as a write would; the given status is stored as is.
    pub fn put(&self, obj: Value) -> Value {
        let def = def_for(
            obj["apiVersion"].as_str().unwrap_or_default(),
            obj["kind"].as_str().unwrap_or_default(),
        );
        let ns = if def.namespaced {
            obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("fixture needs metadata.name")
            .to_string();
        let mut st = self.state();
        let r = if st.get(def, &ns, &name).is_some() {
            st.replace(def, &ns, &name, obj, false, false)
        } else {
            st.insert_new(def, &ns, obj)
        };
        r.unwrap_or_else(|e| panic!("put {}/{name}: {}", def.resource, e.message))
    }

    /// `ns` "" for cluster-scoped kinds.
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.state()
            .get(def_for(api_version, kind), ns, name)
            .cloned()
    }

    /// All objects of a kind in `ns` ("" = all namespaces / cluster-scoped).
    pub fn list(&self, api_version: &str, kind: &str, ns: &str) -> Vec<Value> {
        self.state().list(def_for(api_version, kind), ns)
    }

    /// Removes an object at once (no grace period).
    pub fn remove(&self, api_version: &str, kind: &str, ns: &str, name: &str) {
        self.state()
            .remove_now(def_for(api_version, kind), ns, name);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// The next `times` requests with this method ("*" = any) whose path contains
    /// `path_contains` answer `status` with a proper Status body (429: retryAfterSeconds 1).
    pub fn fail(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        self.state().faults.push(store::Fault {
            method: method.into(),
            path_contains: path_contains.into(),
            status,
            remaining: times,
            raw: None,
            headers: Vec::new(),
        });
    }

    /// The next `times` requests with this method whose path contains `path_contains` are
    /// answered `status` with exactly these bytes and this content type, whatever they are
    /// (truncated, not JSON, not UTF-8): the switch `tests/it/fuzz_responses.rs` fuzzes the
    /// API server's answers with. Nothing is stored or changed.
    pub fn answer_raw(
        &self,
        method: &str,
        path_contains: &str,
        status: u16,
        content_type: &str,
        body: Vec<u8>,
        times: usize,
    ) {
        self.state().faults.push(store::Fault {
            method: method.into(),
            path_contains: path_contains.into(),
            status,
            remaining: times,
            raw: Some((content_type.into(), body)),
            headers: Vec::new(),
        });
    }

    /// The raw answer `answer_raw` set last also carries this header (any bytes; one that is
    /// not a valid header value is left out).
    pub fn raw_header(&self, name: &str, value: &[u8]) {
        if let Some(f) = self.state().faults.last_mut() {
            f.headers.push((name.into(), value.to_vec()));
        }
    }

    /// Drops every fault and raw answer not yet used up (a fuzz case's leftovers, before the
    /// next case on a cluster-wide path).
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Delays every matching request by `d` (Duration::ZERO removes the delay).
    pub fn delay(&self, method: &str, path_contains: &str, d: Duration) {
        let mut st = self.state();
        st.delays
            .retain(|x| !(x.method == method && x.path_contains == path_contains));
        if !d.is_zero() {
            st.delays.push(store::Delay {
                method: method.into(),
                path_contains: path_contains.into(),
                d,
            });
        }
    }

    /// Starts (or, with `Outage::None`, ends) an outage. Connections open when an outage
    /// starts are closed, so kept-alive ones meet it too.
    pub fn set_outage(&self, o: Outage) {
        self.inner.shared.outage.send_replace(o);
    }

    /// Ends every open watch stream (clients see the stream close and re-watch).
    pub fn drop_watches(&self) {
        self.inner.shared.drop_watches.send_modify(|n| *n += 1);
    }

    /// Forgets the watch history: watches from any earlier resourceVersion get 410 Expired.
    pub fn compact(&self) {
        self.state().compact();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    /// Changes what `/version` reports.
    pub fn set_minor(&self, minor: &str) {
        self.state().minor = minor.into();
    }

    pub fn set_rollout(&self, ns: &str, deploy: &str, r: Rollout) {
        self.state().rollouts.insert((ns.into(), deploy.into()), r);
    }

    /// Simulates a GitOps reconciler (Argo CD with self-heal, Flux) owning `ns/deploy`: the
    /// values at these JSON pointers (e.g. `/spec/replicas`) as they are now are git's, and every
    /// `step` first puts back any that a write changed. Give the Deployment the tool's labels
    /// (`fixtures::argo_cd`, `fixtures::flux`) so that remedyd can tell who owns it.
    pub fn reconcile(&self, ns: &str, deploy: &str, pointers: &[&str]) {
        let mut st = self.state();
        let d = st
            .get(
                resources::by_kind("apps/v1", "Deployment").unwrap(),
                ns,
                deploy,
            )
            .cloned()
            .unwrap_or_else(|| panic!("reconcile: no deployment {ns}/{deploy}"));
        let fields = pointers
            .iter()
            .map(|p| (p.to_string(), d.pointer(p).cloned().unwrap_or(Value::Null)))
            .collect();
        st.reconciled.insert((ns.into(), deploy.into()), fields);
    }

    /// As [`FakeKube::reconcile`], with git's values given: a reconciler that starts (or
    /// syncs a commit) after remedyd's change, and puts these values back on the next `step`.
    pub fn reconcile_to(&self, ns: &str, deploy: &str, git: &[(&str, Value)]) {
        let fields = git
            .iter()
            .map(|(p, v)| (p.to_string(), v.clone()))
            .collect();
        self.state()
            .reconciled
            .insert((ns.into(), deploy.into()), fields);
    }

    /// One pass of the deployment controller (ReplicaSets, pods, status).
    pub fn step(&self) {
        controller::step(&mut self.state());
    }

    /// Removes terminating pods (their ReplicaSets recreate them on the next `step`).
    pub fn kubelet_step(&self) {
        controller::kubelet_step(&mut self.state());
    }

    /// Runs `step` and `kubelet_step` every `period` in the background (until the fake stops).
    pub fn auto_step(&self, period: Duration) {
        let shared = self.inner.shared.clone();
        self.inner.handle.spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let mut st = shared.state.lock().unwrap();
                controller::step(&mut st);
                controller::kubelet_step(&mut st);
            }
        });
    }

    pub fn set_pod_log(&self, ns: &str, pod: &str, text: &str) {
        self.state()
            .logs
            .insert((ns.into(), pod.into()), text.into());
    }

    /// The log of one container of a pod (`previous`: of its last terminated instance).
    pub fn set_container_log(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        previous: bool,
        text: &str,
    ) {
        self.state().container_logs.insert(
            (ns.into(), pod.into(), container.into(), previous),
            text.into(),
        );
    }

    /// What `/livez` or `/readyz` (`path`) answers from now on: status and text body (a real
    /// API server answers 500 and lists `[-]check failed` lines when a check fails).
    pub fn set_health(&self, path: &str, status: u16, body: &str) {
        self.state()
            .health
            .insert(path.into(), (status, body.into()));
    }

    /// Consulted only when `Options.rbac`; a denied request gets 403 Forbidden.
    pub fn set_authorizer(&self, f: impl Fn(&Attributes) -> bool + Send + Sync + 'static) {
        self.state().authorizer = Some(Arc::new(f));
    }

    /// What RBAC mode refused, in order.
    pub fn denied(&self) -> Vec<Attributes> {
        self.state().denied.clone()
    }
}
