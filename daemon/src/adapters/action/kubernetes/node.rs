//! `kube_drain_node`: `kubectl drain NODE --ignore-daemonsets [--delete-emptydir-data]` with a
//! bounded timeout and a floor of ready nodes. On any failure the node stays cordoned (kubectl
//! never uncordons either) and the step names the pods that blocked it.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::bounded::{inline, is_name};
use super::error::{ApiError, Failure};
use super::executor::KubeAction;
use super::objects::list_all;
use super::params::{check_template, duration, fmt, params, render};
use super::request::{at, get, path, strategic};
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

/// kubectl's wait between evictions a PodDisruptionBudget refused.
const PDB_RETRY: Duration = Duration::from_secs(5);

fn default_node() -> String {
    "{{target.name}}".into()
}
fn default_timeout() -> String {
    "5m".into()
}
fn default_min_ready() -> usize {
    2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Node name (template); the target's name by default.
    #[serde(default = "default_node")]
    node: String,
    /// Bound of the whole drain: evictions, PDB retries, pods gone.
    #[serde(default = "default_timeout")]
    timeout: String,
    /// Never drain when fewer ready, schedulable nodes than this would remain.
    #[serde(default = "default_min_ready")]
    min_ready_nodes: usize,
    /// Evict pods with emptyDir volumes (their data is lost), like `--delete-emptydir-data`.
    #[serde(default)]
    delete_emptydir_data: bool,
}

impl Params {
    fn check(&self) -> Result<Duration, String> {
        check_template("node", &self.node)?;
        duration("timeout", &self.timeout, Duration::from_secs(3600))
    }
}

/// The drain action.
pub struct Drain;

fn node_ready(n: &Value) -> bool {
    n["spec"]["unschedulable"] != true
        && n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn controller(p: &Value) -> Option<&Value> {
    p["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == true)
}

/// Whether `kind` can be a controller's kind: a CamelCase Go type name or a CRD's kind (a
/// DNS-1035 label once lowercased). A corrupted answer's kind (`""`, `"-5"`, 100 000 `x`) is
/// not, and must not turn a DaemonSet's pod into one to evict.
fn is_kind(kind: &str) -> bool {
    kind.len() <= 63
        && kind.starts_with(|c: char| c.is_ascii_alphabetic())
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Why a pod of the list cannot be judged (its name, its controller reference unreadable):
/// a refusal of the drain, never an eviction.
fn unreadable(p: &Value) -> Option<&'static str> {
    let (ns, name) = key(p);
    if !is_name(&ns) || !is_name(&name) {
        return Some("its namespace or name is not a Kubernetes name");
    }
    let c = controller(p)?;
    let kind = c["kind"].as_str().unwrap_or_default();
    let owner = c["name"].as_str().unwrap_or_default();
    (!is_kind(kind) || !is_name(owner)).then_some("its controller reference is unreadable")
}

/// The first few of a list of pods for a one-line summary, then how many more.
fn few(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > SHOWN {
        s.push_str(&format!("; and {} more", items.len() - SHOWN));
    }
    s
}

fn finished(p: &Value) -> bool {
    matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

fn key(p: &Value) -> (String, String) {
    (
        p["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

impl KubeAction for Drain {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<Params>().to_vec()
    }
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<Params>(p)?.check().map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let p: Params = params(&req.params)?;
        let node = render("node", &p.node, req)?;
        Ok(
            json!({"cordon": format!("/api/v1/nodes/{node}"), "evict": "pods on the node, through pods/eviction", "timeout": p.timeout, "min_ready_nodes": p.min_ready_nodes}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let p: Params = params(&req.params).map_err(Failure::Refused)?;
            let timeout = p.check().map_err(Failure::Refused)?;
            let node = render("node", &p.node, req).map_err(Failure::Refused)?;
            let started = Instant::now();
            let n: Value = s
                .read(get("/api/v1/nodes", &node))
                .await
                .map_err(Failure::api(format!("reading node {node}")))?;
            let nodes = list_all(s, "/api/v1/nodes", None, None, None)
                .await
                .map_err(Failure::api(format!("listing nodes (draining {node})")))?;
            let others = nodes
                .iter()
                .filter(|x| x["metadata"]["name"] != node.as_str() && node_ready(x))
                .count();
            if others < p.min_ready_nodes {
                return Err(Failure::Refused(format!(
                    "not draining {node}: only {others} other ready node(s) would remain (min_ready_nodes {})",
                    p.min_ready_nodes
                )));
            }
            if n["spec"]["unschedulable"] == true {
                s.notes.push(format!("node/{node} already cordoned"));
            } else {
                s.write::<Value>(
                    strategic(
                        "/api/v1/nodes",
                        &node,
                        None,
                        &json!({"spec": {"unschedulable": true}}),
                    ),
                    true,
                )
                .await
                .map_err(Failure::api(format!("cordoning {node}")))?;
                s.notes.push(format!("node/{node} cordoned"));
            }
            let pods = list_all(
                s,
                "/api/v1/pods",
                None,
                Some(&format!("spec.nodeName={node}")),
                Some(500),
            )
            .await
            .map_err(Failure::api(format!("listing pods on {node}")))?;
            // kubectl's filters, in order; the first that refuses decides. Any refusal stops
            // the drain before anything is evicted.
            let mut evict = Vec::new();
            let mut fatal = Vec::new();
            let mut skipped = Vec::new();
            for pod in &pods {
                let (ns, name) = key(pod);
                if let Some(why) = unreadable(pod) {
                    fatal.push(format!(
                        "a pod {}/{}: {why}",
                        inline(&ns, 63),
                        inline(&name, 253)
                    ));
                    continue;
                }
                if let Some(c) = controller(pod).filter(|c| c["kind"] == "DaemonSet")
                    && !finished(pod)
                {
                    let ds = c["name"].as_str().unwrap_or_default();
                    match s
                        .read::<Value>(get(&path("apps/v1", &ns, "daemonsets"), ds))
                        .await
                    {
                        Ok(_) => {
                            skipped.push(format!("{ns}/{name} (DaemonSet {ds})"));
                            continue;
                        }
                        Err(e) if e.code == 404 => {
                            fatal.push(format!("{ns}/{name}: its DaemonSet {ds} is gone"));
                            continue;
                        }
                        Err(e) => {
                            return Err(Failure::Api(
                                format!("reading DaemonSet {ns}/{ds} (draining {node})"),
                                e,
                            ));
                        }
                    }
                }
                // A static pod's mirror: the kubelet's annotation, or (the annotation lost) its
                // owner, the Node. Deleting it through the API does nothing to the static pod.
                if !pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null()
                    || controller(pod).is_some_and(|c| c["kind"] == "Node")
                {
                    skipped.push(format!("{ns}/{name} (mirror pod)"));
                    continue;
                }
                let empty_dir = pod["spec"]["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| !v["emptyDir"].is_null());
                if empty_dir && !finished(pod) && !p.delete_emptydir_data {
                    fatal.push(format!(
                        "{ns}/{name}: has emptyDir data (set delete_emptydir_data to evict it)"
                    ));
                    continue;
                }
                if controller(pod).is_none() && !finished(pod) {
                    fatal.push(format!(
                        "{ns}/{name}: not managed by a controller (it would not come back)"
                    ));
                    continue;
                }
                evict.push((
                    ns,
                    name,
                    pod["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ));
            }
            if !skipped.is_empty() {
                s.notes.push(format!("ignored: {}", skipped.join(", ")));
            }
            if !fatal.is_empty() {
                return Err(Failure::Refused(format!(
                    "not draining {node} (left cordoned): {}",
                    few(&fatal)
                )));
            }
            // Evictions run in parallel, as kubectl's do: a PDB holding one workload's pod does
            // not hold the others'. Each has its own session, merged back in pod order.
            let runs = futures::future::join_all(evict.iter().map(|(ns, name, _)| {
                let mut f = s.fork();
                async move {
                    let r = evict_one(&mut f, ns, name, started, timeout).await;
                    (f, r)
                }
            }))
            .await;
            let mut blocked: Vec<String> = Vec::new();
            let mut pending: Vec<(String, String, String)> = Vec::new();
            let mut failed = None;
            for ((f, r), (ns, name, uid)) in runs.into_iter().zip(evict) {
                s.absorb(f);
                match r {
                    Evicted::Yes => pending.push((ns, name, uid)),
                    Evicted::Gone => {}
                    Evicted::Blocked(why) => blocked.push(format!("{ns}/{name}: {why}")),
                    Evicted::Failed(e) => {
                        failed.get_or_insert((format!("{ns}/{name}"), e));
                    }
                }
            }
            if let Some((pod, e)) = failed {
                return Err(Failure::Api(
                    format!("evicting {pod} (node {node} left cordoned)"),
                    e,
                ));
            }
            if !blocked.is_empty() {
                return Err(Failure::Refused(format!(
                    "drain of {node} timed out after {} (node left cordoned); blocked: {}",
                    fmt(timeout),
                    few(&blocked)
                )));
            }
            if !s.dry() {
                // Gone: 404 or a new UID (a StatefulSet pod recreated under the same name).
                for (ns, name, uid) in &pending {
                    let pods_path = path("v1", ns, "pods");
                    loop {
                        match s.read::<Value>(get(&pods_path, name)).await {
                            Err(e) if e.code == 404 => break,
                            Ok(p) if p["metadata"]["uid"] != uid.as_str() => break,
                            Ok(_) => {}
                            Err(e) => {
                                return Err(Failure::Api(
                                    format!("reading pod {ns}/{name} (draining {node})"),
                                    e,
                                ));
                            }
                        }
                        if started.elapsed() > timeout {
                            return Err(Failure::Refused(format!(
                                "drain of {node} timed out after {} (node left cordoned); still terminating: {ns}/{name}",
                                fmt(timeout)
                            )));
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            s.detail.insert(
                "drain".into(),
                json!({"node": node, "evicted": pending.iter().map(|(n, p, _)| format!("{n}/{p}")).collect::<Vec<_>>(), "ignored": skipped}),
            );
            Ok(format!(
                "node/{node} drained: {} pod(s) evicted in {}",
                pending.len(),
                fmt(started.elapsed())
            ))
        })
    }
}

enum Evicted {
    Yes,
    Gone,
    Blocked(String),
    Failed(ApiError),
}

/// One pod's eviction, kubectl's loop: 429 (a PodDisruptionBudget), 5xx and "namespace
/// terminating" are retried every 5 s until the drain's deadline; 404 means already gone.
async fn evict_one(
    s: &mut Session,
    ns: &str,
    name: &str,
    started: Instant,
    timeout: Duration,
) -> Evicted {
    let body = json!({
        "kind": "Eviction", "apiVersion": "policy/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "deleteOptions": {},
    });
    let pods_path = path("v1", ns, "pods");
    loop {
        let r = match at(pods_path.clone()).create_subresource(
            "eviction",
            name,
            &Default::default(),
            serde_json::to_vec(&body).unwrap_or_default(),
        ) {
            Ok(r) => r,
            Err(e) => {
                return Evicted::Failed(ApiError {
                    code: 400,
                    reason: "BadRequest".into(),
                    message: format!("cannot build the eviction request: {e}"),
                });
            }
        };
        match s.write_once(r).await {
            Ok(_) => return Evicted::Yes,
            Err(e) if e.code == 404 => return Evicted::Gone,
            Err(e)
                if e.code == 429
                    || (e.code == 403 && e.message.contains("terminat"))
                    || (500..600).contains(&e.code) =>
            {
                if started.elapsed() + PDB_RETRY > timeout {
                    // An answer with no message still says why: its status.
                    let why = if e.message.trim().is_empty() {
                        format!("{} {}", e.code, e.reason)
                    } else {
                        e.message
                    };
                    return Evicted::Blocked(why);
                }
                s.notes.push(format!(
                    "evicting {ns}/{name}: {} (will retry after 5s)",
                    e.message
                ));
                tokio::time::sleep(PDB_RETRY).await;
            }
            Err(e) => return Evicted::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(kind: Value, owner: Value, annotations: Value) -> Value {
        json!({"metadata": {"name": "agent-dn0001", "namespace": "shop", "annotations": annotations,
            "ownerReferences": [{"kind": kind, "name": owner, "controller": true}]}})
    }

    #[test]
    fn a_pod_the_list_corrupted_is_not_judged_evictable() {
        // The fuzz cases of `fuzz_responses::kube_writes`: a DaemonSet's pod whose controller
        // kind or name an answer replaced, a pod named "" or with control characters.
        for kind in ["", "-5", "99999999999999999999Ei", "\u{0}\u{202e}é\n"] {
            let p = pod(json!(kind), json!("agent"), json!({}));
            assert!(unreadable(&p).is_some(), "{kind:?}");
        }
        assert!(unreadable(&pod(json!("x".repeat(100_000)), json!("agent"), json!({}))).is_some());
        assert!(unreadable(&pod(json!("DaemonSet"), json!(""), json!({}))).is_some());
        let mut p = pod(json!("DaemonSet"), json!("agent"), json!({}));
        assert_eq!(unreadable(&p), None);
        p["metadata"]["name"] = json!("");
        assert!(unreadable(&p).is_some());
        assert!(is_kind("ReplicaSet") && is_kind("Rollout") && is_kind("Node"));
    }

    #[test]
    fn a_list_of_blocking_pods_is_cut() {
        let many: Vec<String> = (0..500).map(|i| format!("shop/web-{i}: busy")).collect();
        let s = few(&many);
        assert!(s.ends_with("; and 495 more") && s.len() < 200, "{s}");
        assert_eq!(few(&many[..1]), "shop/web-0: busy");
    }
}
