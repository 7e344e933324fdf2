//! `kube_delete_pods` (runbook procedure 5): `kubectl delete pod -l SELECTOR`, in batches that
//! never take more than `max_share` of the ready pods, each waited on until readiness is back;
//! with `dns`, `kube_dns_restart_pods` on CoreDNS's pods in kube-system.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::bounded::{inline, is_name};
use super::dns::{DNS_PODS, SYSTEM_NAMESPACE};
use super::error::{Failure, bad, refuse};
use super::executor::KubeAction;
use super::objects::{list_all, read_deployment, ready, selector_string};
use super::params::{
    MAX_WAIT, check_template, default_wait, duration, fmt, namespace, params, render,
};
use super::request::{at, get, path};
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

fn default_share() -> f64 {
    0.25
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    /// Pods of this Deployment (its selector)…
    #[serde(default)]
    deployment: Option<String>,
    /// …or of this label selector.
    #[serde(default)]
    selector: Option<String>,
    /// Never more than this share of the ready pods down at once.
    #[serde(default = "default_share")]
    max_share: f64,
    /// Only pods that are not ready (otherwise every selected pod, in batches).
    #[serde(default)]
    only_unready: bool,
    /// Bound of the whole step (replacements ready).
    #[serde(default = "default_wait")]
    wait: String,
}

/// The parameters `kube_dns_restart_pods` refuses (`DeleteParams::check`): it always selects
/// CoreDNS's pods.
const DNS_FIXED: &[&str] = &["deployment", "selector"];

impl DeleteParams {
    fn check(&self, dns: bool) -> Result<Duration, String> {
        if dns && (self.deployment.is_some() || self.selector.is_some()) {
            return Err(format!(
                "kube_dns_restart_pods always selects {DNS_PODS} in kube-system"
            ));
        }
        if !dns && self.deployment.is_some() == self.selector.is_some() {
            return Err("set exactly one of `deployment` or `selector`".into());
        }
        if let Some(d) = &self.deployment {
            check_template("deployment", d)?;
        }
        if let Some(s) = &self.selector
            && (s.is_empty() || s.contains("{{"))
        {
            return Err("selector: a literal, non-empty label selector".into());
        }
        if !(self.max_share > 0.0 && self.max_share <= 1.0) {
            return Err(format!("max_share: {} is not in (0, 1]", self.max_share));
        }
        duration("wait", &self.wait, MAX_WAIT)
    }
}

/// `kube_delete_pods` (and `kube_dns_restart_pods`): `kubectl delete pod -l …` in batches.
pub struct DeletePods {
    /// The DNS variant.
    pub dns: bool,
}

impl KubeAction for DeletePods {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<DeleteParams>()
            .iter()
            .copied()
            .filter(|n| !(self.dns && DNS_FIXED.contains(n)))
            .collect()
    }
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<DeleteParams>(p)?.check(self.dns).map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let p = params::<DeleteParams>(&req.params)?;
        p.check(self.dns)?;
        let ns = if self.dns {
            SYSTEM_NAMESPACE.into()
        } else {
            namespace(req)?
        };
        Ok(
            json!({"delete": path("v1", &ns, "pods"), "selector": p.selector.as_deref().unwrap_or(if self.dns { DNS_PODS } else { "(the deployment's)" }), "max_share": p.max_share}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let p = params::<DeleteParams>(&req.params).map_err(bad)?;
            let wait = p.check(self.dns).map_err(bad)?;
            let started = Instant::now();
            let (ns, sel) = if self.dns {
                (SYSTEM_NAMESPACE.to_string(), DNS_PODS.to_string())
            } else {
                let ns = namespace(req).map_err(bad)?;
                let sel = match (&p.deployment, &p.selector) {
                    (Some(d), _) => {
                        let name = render("deployment", d, req).map_err(bad)?;
                        let d = read_deployment(s, &ns, &name).await?;
                        selector_string(&d["spec"]["selector"])
                            .map_err(|e| bad(format!("deployment {ns}/{name}: {e}")))?
                    }
                    (_, Some(sel)) => sel.clone(),
                    (None, None) => return Err(bad("give deployment or selector".into())),
                };
                (ns, sel)
            };
            let pods_path = path("v1", &ns, "pods");
            let pods = list_all(s, &pods_path, Some(&sel), None, None)
                .await
                .map_err(Failure::api(format!("listing pods {sel} in {ns}")))?;
            let ready_before = pods.iter().filter(|p| ready(p)).count();
            // (name, uid, ready), unready pods first: they serve nothing, deleting them costs
            // no capacity.
            let mut todo: Vec<(String, String, bool)> = pods
                .iter()
                .filter(|x| x["metadata"]["deletionTimestamp"].is_null())
                .filter(|x| !p.only_unready || !ready(x))
                .map(|x| {
                    let field = |f: &str| x["metadata"][f].as_str().unwrap_or_default().to_string();
                    (field("name"), field("uid"), ready(x))
                })
                .collect();
            // A name that is not a Kubernetes name is not the API server's: nothing is deleted
            // (an empty one would make the DELETE the collection's).
            if let Some((name, _, _)) = todo.iter().find(|t| !is_name(&t.0)) {
                return refuse(format!(
                    "not deleting pods of {sel} in {ns}: the list names a pod {:?}, not a Kubernetes name",
                    inline(name, 253)
                ));
            }
            todo.sort_by_key(|t| t.2);
            if todo.is_empty() {
                return refuse(format!("no pods to delete ({sel} in {ns})"));
            }
            let unready_todo = todo.iter().filter(|t| !t.2).count();
            let batch = ((ready_before as f64) * p.max_share).floor() as usize;
            if batch == 0 && unready_todo < todo.len() {
                return refuse(format!(
                    "{ready_before} ready pod(s) of {sel} in {ns}: deleting even one is more than max_share {}",
                    p.max_share
                ));
            }
            s.notes.push(format!(
                "{} pod(s) to delete, {ready_before} ready; at most {batch} ready pod(s) at once",
                todo.len()
            ));
            let total = todo.len();
            let mut deleted = Vec::new();
            while !todo.is_empty() {
                // All unready ones may go at once; ready ones `batch` at a time.
                let take = todo.iter().take_while(|t| !t.2).count();
                let take = if take > 0 { take } else { batch.max(1) }.min(todo.len());
                let now: Vec<(String, String, bool)> = todo.drain(..take).collect();
                for (name, _, _) in &now {
                    let r = at(pods_path.clone())
                        .delete(
                            name,
                            &::kube::api::DeleteParams {
                                propagation_policy: Some(
                                    ::kube::api::PropagationPolicy::Background,
                                ),
                                ..Default::default()
                            },
                        )
                        .map_err(|e| bad(e.to_string()))?;
                    match s.write::<Value>(r, false).await {
                        Ok(_) => deleted.push(format!("{ns}/{name}")),
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(Failure::Api(format!("deleting pod {ns}/{name}"), e)),
                    }
                }
                if s.dry() {
                    continue;
                }
                // Wait until they are gone (404 or a new UID) and readiness is back.
                loop {
                    if started.elapsed() > wait {
                        return refuse(format!(
                            "deleted {} pod(s); replacements not ready after {} ({} of {} pods still to go)",
                            deleted.len(),
                            fmt(wait),
                            todo.len(),
                            total
                        ));
                    }
                    let mut gone = true;
                    for (name, uid, _) in &now {
                        match s.read::<Value>(get(&pods_path, name)).await {
                            Ok(p) if p["metadata"]["uid"] == uid.as_str() => gone = false,
                            Ok(_) => {}
                            Err(e) if e.code == 404 => {}
                            Err(e) => {
                                return Err(Failure::Api(format!("reading pod {ns}/{name}"), e));
                            }
                        }
                    }
                    if gone {
                        let pods_now = list_all(s, &pods_path, Some(&sel), None, None)
                            .await
                            .map_err(Failure::api(format!("listing pods {sel} in {ns}")))?;
                        let ready_now = pods_now.iter().filter(|p| ready(p)).count();
                        if ready_now >= ready_before {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Ok(format!(
                "deleted {} pod(s) of {sel} in {ns}; {} ready again",
                deleted.len(),
                ready_before
            ))
        })
    }
}
