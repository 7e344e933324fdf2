//! Deployment, HPA and pod actions (runbook procedures 1, 2, 4 and 5), kubectl's requests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::quantity::Quantity;
use super::{
    ActionRequest, BoxFuture, Failure, KubeAction, Session, check_template, duration, fmt, get,
    list_all, merge, namespace, params, path, render, selector_string, strategic, wait_rollout,
};

/// The longest any wait may be.
const MAX_WAIT: Duration = Duration::from_secs(30 * 60);
const CORE_DNS: &str = "coredns";
const DNS_PODS: &str = "k8s-app=kube-dns";
/// Pods listed in one evidence record.
const MAX_PODS: usize = 50;

fn default_deployment() -> String {
    "{{target.name}}".into()
}
fn default_wait() -> String {
    "5m".into()
}

/// Fields every Deployment action shares.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Target {
    /// Deployment name (template); the target's name by default.
    #[serde(default = "default_deployment")]
    deployment: String,
    /// Bound of the rollout wait.
    #[serde(default = "default_wait")]
    wait: String,
}

impl Target {
    /// Checks the template and the wait; returns the wait.
    pub(super) fn check(&self) -> Result<Duration, String> {
        check_template("deployment", &self.deployment)?;
        duration("wait", &self.wait, MAX_WAIT)
    }
    /// (namespace, Deployment name, wait) for one request.
    pub(super) fn resolve(
        &self,
        req: &ActionRequest,
    ) -> Result<(String, String, Duration), String> {
        Ok((
            namespace(req)?,
            render("deployment", &self.deployment, req)?,
            self.check()?,
        ))
    }
}

/// The Deployments collection path of a namespace.
pub(super) fn deployments(ns: &str) -> String {
    path("apps/v1", ns, "deployments")
}

/// GET of one Deployment; a failure names it.
pub(super) async fn read_deployment(
    s: &mut Session,
    ns: &str,
    name: &str,
) -> Result<Value, Failure> {
    s.read(get(&deployments(ns), name))
        .await
        .map_err(Failure::api(format!("reading deployment {ns}/{name}")))
}

/// Sends a change to a Deployment, then waits for its rollout (the gate every such step has).
pub(super) async fn change_and_wait(
    s: &mut Session,
    req: http::Request<Vec<u8>>,
    what: String,
    ns: &str,
    name: &str,
    wait: Duration,
) -> Result<String, Failure> {
    s.write::<Value>(req, true)
        .await
        .map_err(Failure::api(what))?;
    wait_rollout(s, ns, name, wait).await
}

/// A refusal (a precondition that does not hold).
pub(super) fn refuse<T>(why: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Refused(why.into()))
}

/// Parameters that do not render or parse: a refusal.
pub(super) fn bad(e: String) -> Failure {
    Failure::Refused(e)
}

// ---------------------------------------------------------------------------------------------

/// `kube_rollout_restart`: `kubectl rollout restart deployment/X`, then the rollout gate.
pub struct Restart;

impl KubeAction for Restart {
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<Target>(p)?.check().map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let (ns, name, wait) = params::<Target>(&req.params)?.resolve(req)?;
        Ok(
            json!({"patch": format!("{}/{name}?fieldManager=kubectl-rollout", deployments(&ns)), "annotation": "kubectl.kubernetes.io/restartedAt", "wait": fmt(wait)}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let (ns, name, wait) = params::<Target>(&req.params)
                .and_then(|t| t.resolve(req))
                .map_err(bad)?;
            let d = read_deployment(s, &ns, &name).await?;
            if d["spec"]["paused"] == true {
                return refuse(format!(
                    "can't restart paused deployment {ns}/{name} (run rollout resume first)"
                ));
            }
            let now = super::now_rfc3339();
            let key = "kubectl.kubernetes.io/restartedAt";
            if d["spec"]["template"]["metadata"]["annotations"][key] == now.as_str() {
                return refuse(format!(
                    "deployment {ns}/{name} was restarted within the past second"
                ));
            }
            let body = json!({"spec": {"template": {"metadata": {"annotations": {key: now}}}}});
            let req = strategic(&deployments(&ns), &name, Some("kubectl-rollout"), &body);
            let what = format!("restarting deployment {ns}/{name}");
            let done = change_and_wait(s, req, what, &ns, &name, wait).await?;
            Ok(format!("restarted deployment {ns}/{name}: {done}"))
        })
    }
}

/// `kube_rollout_status`: kubectl's rollout viewer as a step of its own, bounded by `wait`.
pub struct Status;

impl KubeAction for Status {
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<Target>(p)?.check().map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let (ns, name, wait) = params::<Target>(&req.params)?.resolve(req)?;
        Ok(
            json!({"watch": format!("{}?fieldSelector=metadata.name%3D{name}", deployments(&ns)), "wait": fmt(wait)}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let (ns, name, wait) = params::<Target>(&req.params)
                .and_then(|t| t.resolve(req))
                .map_err(bad)?;
            wait_rollout(s, &ns, &name, wait).await
        })
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleParams {
    #[serde(default = "default_deployment")]
    deployment: String,
    #[serde(default = "default_wait")]
    wait: String,
    /// An absolute count…
    #[serde(default)]
    replicas: Option<i64>,
    /// …or a change from the current count (`+2`, `-1`).
    #[serde(default)]
    by: Option<i64>,
    /// Bounds: the step never leaves them.
    #[serde(default)]
    min: Option<i64>,
    max: i64,
    /// With an HPA on the Deployment: `raise` its minReplicas (and maxReplicas if needed) to
    /// the new count, or `refuse`.
    #[serde(default = "default_hpa")]
    hpa: String,
}

fn default_hpa() -> String {
    "raise".into()
}

impl ScaleParams {
    fn check(&self, dns: bool) -> Result<Duration, String> {
        if dns && self.deployment != default_deployment() {
            return Err("deployment: kube_dns_scale always scales kube-system/coredns".into());
        }
        check_template("deployment", &self.deployment)?;
        let min = self.min.unwrap_or(1);
        match (self.replicas, self.by) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("set exactly one of `replicas` or `by`".into());
            }
            (Some(n), None) if n < min || n > self.max => {
                return Err(format!(
                    "replicas: {n} is outside min {min}..max {}",
                    self.max
                ));
            }
            (None, Some(0)) => return Err("by: 0 changes nothing".into()),
            _ => {}
        }
        if min < 0 || self.max < min {
            return Err(format!("min {min} and max {} are not a range", self.max));
        }
        if !["raise", "refuse"].contains(&self.hpa.as_str()) {
            return Err(format!("hpa: {:?} is not raise or refuse", self.hpa));
        }
        duration("wait", &self.wait, MAX_WAIT)
    }
}

/// `kube_scale` (and `kube_dns_scale` for kube-system/coredns): `kubectl scale`, HPA-aware.
pub struct Scale {
    /// The DNS variant.
    pub dns: bool,
}

impl Scale {
    fn names(&self, p: &ScaleParams, req: &ActionRequest) -> Result<(String, String), String> {
        if self.dns {
            Ok((super::SYSTEM_NAMESPACE.into(), CORE_DNS.into()))
        } else {
            Ok((namespace(req)?, render("deployment", &p.deployment, req)?))
        }
    }
}

impl KubeAction for Scale {
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<ScaleParams>(p)?.check(self.dns).map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let p = params::<ScaleParams>(&req.params)?;
        p.check(self.dns)?;
        let (ns, name) = self.names(&p, req)?;
        Ok(
            json!({"patch": format!("{}/{name}/scale", deployments(&ns)), "replicas": p.replicas, "by": p.by, "min": p.min.unwrap_or(1), "max": p.max}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let p = params::<ScaleParams>(&req.params).map_err(bad)?;
            let wait = p.check(self.dns).map_err(bad)?;
            let (ns, name) = self.names(&p, req).map_err(bad)?;
            let d = read_deployment(s, &ns, &name).await?;
            let current = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let (min, max) = (p.min.unwrap_or(1), p.max);
            let want = match (p.replicas, p.by) {
                (Some(n), _) => n,
                (None, Some(by)) => (current + by).clamp(min, max),
                _ => unreachable!("checked"),
            };
            if p.by.is_some_and(|b| b > 0) && current >= max {
                return refuse(format!(
                    "scale blocked: {ns}/{name} already has {current} replicas, the step's max is {max}"
                ));
            }
            if p.by.is_some_and(|b| b < 0) && current <= min {
                return refuse(format!(
                    "scale blocked: {ns}/{name} already has {current} replicas, the step's min is {min}"
                ));
            }
            if want == current {
                return Ok(format!("{ns}/{name} already has {current} replicas"));
            }
            s.notes.push(format!(
                "replicas {current} -> {want} (bounds {min}..{max})"
            ));
            let hpas = list_all(
                s,
                &path("autoscaling/v2", &ns, "horizontalpodautoscalers"),
                None,
                None,
                None,
            )
            .await
            .map_err(Failure::api(format!("listing HPAs in {ns}")))?;
            let hpa = hpas.iter().find(|h| {
                let r = &h["spec"]["scaleTargetRef"];
                r["kind"] == "Deployment" && r["name"] == name.as_str()
            });
            if let Some(h) = hpa {
                let hname = h["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let (hmin, hmax) = (
                    h["spec"]["minReplicas"].as_i64().unwrap_or(1),
                    h["spec"]["maxReplicas"].as_i64().unwrap_or(0),
                );
                if self.dns || p.hpa == "refuse" {
                    return refuse(format!(
                        "HPA {ns}/{hname} manages {name}'s replicas ({hmin}..{hmax}) and would revert a direct scale; not scaled"
                    ));
                }
                if want <= hmin {
                    return refuse(format!(
                        "HPA {ns}/{hname} manages {name}'s replicas and already keeps at least {hmin}; not scaled"
                    ));
                }
                let mut spec = json!({"minReplicas": want});
                if hmax < want {
                    spec["maxReplicas"] = want.into();
                }
                let hpas_path = path("autoscaling/v2", &ns, "horizontalpodautoscalers");
                s.write::<Value>(
                    merge(
                        &hpas_path,
                        &hname,
                        Some("kubectl-patch"),
                        &json!({"spec": spec}),
                    ),
                    true,
                )
                .await
                .map_err(Failure::api(format!("patching HPA {ns}/{hname}")))?;
                return Ok(format!(
                    "raised HPA {ns}/{hname} minReplicas {hmin} -> {want} (it manages {name}; a direct scale would be reverted)"
                ));
            }
            let body = ::kube::api::Patch::Merge(json!({"spec": {"replicas": want}}));
            let req = super::patch(&deployments(&ns), &name, Some("scale"), None, &body);
            let what = format!("scaling {ns}/{name}");
            let done = change_and_wait(s, req, what, &ns, &name, wait).await?;
            Ok(format!(
                "scaled {ns}/{name} from {current} to {want} replicas: {done}"
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HpaParams {
    /// HPA name (template); the target's name by default.
    #[serde(default = "default_deployment")]
    hpa: String,
    #[serde(default)]
    min_replicas: Option<i64>,
    #[serde(default)]
    max_replicas: Option<i64>,
    /// Target average CPU utilization, percent.
    #[serde(default)]
    cpu_utilization: Option<i64>,
    /// The highest maxReplicas this step may set (bound).
    #[serde(default)]
    max_replicas_limit: Option<i64>,
}

impl HpaParams {
    fn check(&self) -> Result<(), String> {
        check_template("hpa", &self.hpa)?;
        if self.min_replicas.is_none()
            && self.max_replicas.is_none()
            && self.cpu_utilization.is_none()
        {
            return Err("set at least one of min_replicas, max_replicas, cpu_utilization".into());
        }
        if let Some(c) = self.cpu_utilization
            && !(1..=100).contains(&c)
        {
            return Err(format!("cpu_utilization: {c} is not 1..100 (percent)"));
        }
        if let (Some(a), Some(b)) = (self.min_replicas, self.max_replicas)
            && a > b
        {
            return Err(format!("min_replicas {a} is more than max_replicas {b}"));
        }
        if self.min_replicas.is_some_and(|m| m < 1) {
            return Err("min_replicas: must be at least 1".into());
        }
        let highest = self.max_replicas.or(self.min_replicas);
        match (highest, self.max_replicas_limit) {
            (Some(_), None) => {
                Err("max_replicas_limit: required when replicas are set (the bound)".into())
            }
            (Some(h), Some(l)) if h > l => {
                Err(format!("{h} replicas is more than max_replicas_limit {l}"))
            }
            _ => Ok(()),
        }
    }
}

/// `kube_hpa_patch`: min/max replicas and the CPU target of an autoscaling/v2 HPA.
pub struct HpaPatch;

impl KubeAction for HpaPatch {
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<HpaParams>(p)?.check()
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let p = params::<HpaParams>(&req.params)?;
        let ns = namespace(req)?;
        let name = render("hpa", &p.hpa, req)?;
        Ok(
            json!({"patch": format!("{}/{name}?fieldManager=kubectl-patch", path("autoscaling/v2", &ns, "horizontalpodautoscalers")), "min_replicas": p.min_replicas, "max_replicas": p.max_replicas, "cpu_utilization": p.cpu_utilization}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let p = params::<HpaParams>(&req.params).map_err(bad)?;
            p.check().map_err(bad)?;
            let ns = namespace(req).map_err(bad)?;
            let name = render("hpa", &p.hpa, req).map_err(bad)?;
            let coll = path("autoscaling/v2", &ns, "horizontalpodautoscalers");
            // spec.metrics is an atomic list: send it whole, guarded by the resourceVersion we
            // edited, and start again from a fresh read if someone else wrote in between.
            for attempt in 1..=3 {
                let h: Value = s
                    .read(get(&coll, &name))
                    .await
                    .map_err(Failure::api(format!("reading HPA {ns}/{name}")))?;
                let mut spec = serde_json::Map::new();
                if let Some(m) = p.min_replicas {
                    spec.insert("minReplicas".into(), m.into());
                }
                if let Some(m) = p.max_replicas {
                    spec.insert("maxReplicas".into(), m.into());
                }
                let mut body = json!({});
                if let Some(cpu) = p.cpu_utilization {
                    let mut metrics = h["spec"]["metrics"].as_array().cloned().unwrap_or_default();
                    let target = json!({"type": "Utilization", "averageUtilization": cpu});
                    match metrics.iter_mut().find(|m| {
                        m["type"] == "Resource" && m["resource"]["name"] == "cpu"
                    }) {
                        Some(m) => m["resource"]["target"] = target,
                        None => metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": target}})),
                    }
                    spec.insert("metrics".into(), Value::Array(metrics));
                    body["metadata"] = json!({"resourceVersion": h["metadata"]["resourceVersion"]});
                }
                let unchanged = spec.iter().all(|(k, v)| &h["spec"][k] == v);
                if unchanged {
                    return Ok(format!("HPA {ns}/{name} already as asked (no change)"));
                }
                body["spec"] = Value::Object(spec);
                match s
                    .write::<Value>(merge(&coll, &name, Some("kubectl-patch"), &body), false)
                    .await
                {
                    Ok(_) => {
                        return Ok(format!(
                            "patched HPA {ns}/{name}: {}",
                            serde_json::to_string(&body["spec"]).unwrap_or_default()
                        ));
                    }
                    Err(e) if e.code == 409 && attempt < 3 => {
                        s.notes.push(format!(
                            "HPA {ns}/{name} changed under us (409); read again"
                        ));
                    }
                    Err(e) => return Err(Failure::Api(format!("patching HPA {ns}/{name}"), e)),
                }
            }
            unreachable!("the loop returns")
        })
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesParams {
    #[serde(flatten)]
    target: Target,
    /// Containers to change, by name (never all of them by default).
    containers: Vec<String>,
    /// New limits: a quantity, or `+N%` of the current value.
    #[serde(default)]
    limits: BTreeMap<String, String>,
    /// New requests, the same way.
    #[serde(default)]
    requests: BTreeMap<String, String>,
    /// Upper bound of every value this step sets, by resource.
    max: BTreeMap<String, String>,
}

enum Change {
    To(Quantity),
    Grow(u32),
}

fn change(field: &str, v: &str) -> Result<Change, String> {
    if let Some(p) = v.strip_prefix('+').and_then(|p| p.strip_suffix('%')) {
        let n: u32 = p
            .parse()
            .map_err(|_| format!("{field}: {v:?} is not +N%"))?;
        if n == 0 || n > 400 {
            return Err(format!("{field}: {v} is not 1..400 %"));
        }
        return Ok(Change::Grow(n));
    }
    Quantity::parse(v)
        .map(Change::To)
        .map_err(|e| format!("{field}: {e}"))
}

impl ResourcesParams {
    fn check(&self) -> Result<Duration, String> {
        let wait = self.target.check()?;
        if self.containers.is_empty() {
            return Err("containers: name at least one container".into());
        }
        for c in &self.containers {
            check_template("containers", c)?;
        }
        if self.limits.is_empty() && self.requests.is_empty() {
            return Err("set limits and/or requests".into());
        }
        for (kind, m) in [("limits", &self.limits), ("requests", &self.requests)] {
            for (k, v) in m {
                if !["cpu", "memory", "ephemeral-storage"].contains(&k.as_str()) {
                    return Err(format!("{kind}.{k}: only cpu, memory, ephemeral-storage"));
                }
                change(&format!("{kind}.{k}"), v)?;
                if !self.max.contains_key(k) {
                    return Err(format!("max.{k}: required to bound {kind}.{k}"));
                }
            }
        }
        for (k, v) in &self.max {
            Quantity::parse(v).map_err(|e| format!("max.{k}: {e}"))?;
        }
        Ok(wait)
    }
}

/// `kube_set_resources`: `kubectl set resources deployment/X -c NAME …`, within bounds.
pub struct SetResources;

impl KubeAction for SetResources {
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<ResourcesParams>(p)?.check().map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let p = params::<ResourcesParams>(&req.params)?;
        p.check()?;
        let (ns, name, _) = p.target.resolve(req)?;
        Ok(
            json!({"patch": format!("{}/{name}?fieldManager=kubectl-set", deployments(&ns)), "containers": p.containers, "limits": p.limits, "requests": p.requests}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let p = params::<ResourcesParams>(&req.params).map_err(bad)?;
            let wait = p.check().map_err(bad)?;
            let (ns, name, _) = p.target.resolve(req).map_err(bad)?;
            let d = read_deployment(s, &ns, &name).await?;
            let containers = d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut changed = Vec::new();
            let mut said = Vec::new();
            let names = p
                .containers
                .iter()
                .map(|c| render("containers", c, req))
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            for cname in &names {
                let Some(c) = containers.iter().find(|c| c["name"] == cname.as_str()) else {
                    return refuse(format!(
                        "unable to find container named {cname:?} in {ns}/{name}"
                    ));
                };
                let mut res = json!({});
                let mut after: BTreeMap<(&str, String), Quantity> = BTreeMap::new();
                for kind in ["limits", "requests"] {
                    for (k, v) in c["resources"][kind].as_object().into_iter().flatten() {
                        if let Some(q) = v.as_str().and_then(|v| Quantity::parse(v).ok()) {
                            after.insert((kind, k.clone()), q);
                        }
                    }
                }
                for (kind, m) in [("limits", &p.limits), ("requests", &p.requests)] {
                    for (k, v) in m {
                        let cur = after.get(&(kind, k.clone())).copied();
                        let new = match (change(k, v).map_err(bad)?, cur) {
                            (Change::To(q), _) => q,
                            (Change::Grow(n), Some(c)) => c.grown(n),
                            (Change::Grow(_), None) => {
                                return refuse(format!(
                                    "{cname}: {kind}.{k} is not set, so {v} of it means nothing"
                                ));
                            }
                        };
                        let max = Quantity::parse(&p.max[k]).map_err(bad)?;
                        if new.milli > max.milli {
                            return refuse(format!(
                                "{cname}: {kind}.{k} {new} would exceed the step's max {max}"
                            ));
                        }
                        if cur.map(|c| c.milli) != Some(new.milli) {
                            res[kind][k] = new.canonical().into();
                            said.push(format!(
                                "{cname} {kind}.{k} {} -> {new}",
                                cur.map(|c| c.canonical()).unwrap_or_else(|| "unset".into())
                            ));
                        }
                        after.insert((kind, k.clone()), new);
                    }
                }
                for ((kind, k), q) in &after {
                    if *kind == "requests"
                        && let Some(l) = after.get(&("limits", k.clone()))
                        && q.milli > l.milli
                    {
                        return refuse(format!(
                            "{cname}: requests.{k} {q} would exceed limits.{k} {l}"
                        ));
                    }
                }
                if res.as_object().is_some_and(|m| !m.is_empty()) {
                    changed.push(json!({"name": cname, "resources": res}));
                }
            }
            if changed.is_empty() {
                return Ok(format!(
                    "{ns}/{name}: resources already as asked (no change)"
                ));
            }
            let order: Vec<Value> = containers
                .iter()
                .map(|c| json!({"name": c["name"]}))
                .collect();
            // Changed containers in the Deployment's order, as kubectl's two-way diff has them.
            changed.sort_by_key(|c| {
                containers
                    .iter()
                    .position(|x| x["name"] == c["name"])
                    .unwrap_or(usize::MAX)
            });
            let body = json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": order,
                "containers": changed,
            }}}});
            let req = strategic(&deployments(&ns), &name, Some("kubectl-set"), &body);
            let what = format!("setting resources of {ns}/{name}");
            let done = change_and_wait(s, req, what, &ns, &name, wait).await?;
            Ok(format!("{ns}/{name}: {}; {done}", said.join(", ")))
        })
    }
}

// ---------------------------------------------------------------------------------------------

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

fn ready(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

impl KubeAction for DeletePods {
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<DeleteParams>(p)?.check(self.dns).map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let p = params::<DeleteParams>(&req.params)?;
        p.check(self.dns)?;
        let ns = if self.dns {
            super::SYSTEM_NAMESPACE.into()
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
                (super::SYSTEM_NAMESPACE.to_string(), DNS_PODS.to_string())
            } else {
                let ns = namespace(req).map_err(bad)?;
                let sel = match (&p.deployment, &p.selector) {
                    (Some(d), _) => {
                        let name = render("deployment", d, req).map_err(bad)?;
                        let d = read_deployment(s, &ns, &name).await?;
                        selector_string(&d["spec"]["selector"]).map_err(bad)?
                    }
                    (_, Some(sel)) => sel.clone(),
                    _ => unreachable!("checked"),
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
                    let r = super::at(pods_path.clone())
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

// ---------------------------------------------------------------------------------------------

fn default_lines() -> u32 {
    50
}
fn default_events() -> usize {
    20
}
fn default_log_pods() -> usize {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceParams {
    #[serde(default = "default_deployment")]
    deployment: String,
    /// Last log lines of each failing pod.
    #[serde(default = "default_lines")]
    log_lines: u32,
    /// How many failing pods' logs.
    #[serde(default = "default_log_pods")]
    log_pods: usize,
    /// Most recent events kept.
    #[serde(default = "default_events")]
    events: usize,
}

/// `kube_evidence`: pod phases and restarts, the logs of failing pods, recent events.
pub struct Evidence;

fn pod_summary(p: &Value) -> Value {
    let statuses: Vec<&Value> = p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let restarts: i64 = statuses
        .iter()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let waiting: Vec<&str> = statuses
        .iter()
        .filter_map(|c| c["state"]["waiting"]["reason"].as_str())
        .collect();
    let last: Vec<&str> = statuses
        .iter()
        .filter_map(|c| c["lastState"]["terminated"]["reason"].as_str())
        .collect();
    json!({
        "name": p["metadata"]["name"],
        "phase": p["status"]["phase"],
        "ready": ready(p),
        "restarts": restarts,
        "waiting": waiting,
        "last_terminated": last,
        "node": p["spec"]["nodeName"],
    })
}

impl KubeAction for Evidence {
    fn validate(&self, p: &Value) -> Result<(), String> {
        let e = params::<EvidenceParams>(p)?;
        check_template("deployment", &e.deployment)?;
        if e.log_lines > 500 || e.log_pods > 10 || e.events > 100 {
            return Err("log_lines ≤ 500, log_pods ≤ 10, events ≤ 100".into());
        }
        Ok(())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let e = params::<EvidenceParams>(&req.params)?;
        let ns = namespace(req)?;
        let name = render("deployment", &e.deployment, req)?;
        Ok(
            json!({"reads": [deployments(&ns) + "/" + &name, path("v1", &ns, "pods"), path("v1", &ns, "events")]}),
        )
    }
    fn evidence(&self) -> bool {
        true
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let e = params::<EvidenceParams>(&req.params).map_err(bad)?;
            let ns = namespace(req).map_err(bad)?;
            let name = render("deployment", &e.deployment, req).map_err(bad)?;
            let d = read_deployment(s, &ns, &name).await?;
            let sel = selector_string(&d["spec"]["selector"]).map_err(bad)?;
            let pods_path = path("v1", &ns, "pods");
            let pods = list_all(s, &pods_path, Some(&sel), None, None)
                .await
                .map_err(Failure::api(format!("listing pods of {ns}/{name}")))?;
            let summaries: Vec<Value> = pods.iter().map(pod_summary).collect();
            let failing: Vec<&Value> = summaries
                .iter()
                .filter(|p| {
                    p["ready"] == false
                        || p["restarts"].as_i64().unwrap_or(0) > 0
                        || p["waiting"].as_array().is_some_and(|w| !w.is_empty())
                })
                .collect();
            let mut logs = serde_json::Map::new();
            for p in failing.iter().take(e.log_pods) {
                let pod = p["name"].as_str().unwrap_or_default();
                let r =
                    http::Request::get(format!("{pods_path}/{pod}/log?tailLines={}", e.log_lines))
                        .body(Vec::new())
                        .map_err(|e| bad(e.to_string()))?;
                let text = match s.read_text(r).await {
                    Ok(t) => t,
                    Err(err) => format!("(logs unavailable: {err})"),
                };
                logs.insert(pod.to_string(), text.into());
            }
            let mut events = Vec::new();
            let mut names: Vec<String> = vec![name.clone()];
            names.extend(
                failing
                    .iter()
                    .take(e.log_pods)
                    .filter_map(|p| p["name"].as_str().map(str::to_string)),
            );
            for n in &names {
                match list_all(
                    s,
                    &path("v1", &ns, "events"),
                    None,
                    Some(&format!("involvedObject.name={n}")),
                    None,
                )
                .await
                {
                    Ok(evs) => events.extend(evs.into_iter().map(|ev| {
                        json!({
                            "object": format!("{}/{}", ev["involvedObject"]["kind"].as_str().unwrap_or_default(), ev["involvedObject"]["name"].as_str().unwrap_or_default()),
                            "type": ev["type"], "reason": ev["reason"], "message": ev["message"],
                            "count": ev["count"],
                            "last": ev["lastTimestamp"].as_str().or(ev["eventTime"].as_str()).or(ev["metadata"]["creationTimestamp"].as_str()),
                        })
                    })),
                    Err(err) => s.notes.push(format!("events of {n}: {err}")),
                }
            }
            events.sort_by(|a, b| b["last"].as_str().cmp(&a["last"].as_str()));
            events.truncate(e.events);
            let ready_n = summaries.iter().filter(|p| p["ready"] == true).count();
            let mut why: Vec<String> = failing
                .iter()
                .map(|p| {
                    let w = p["waiting"]
                        .as_array()
                        .and_then(|w| w.first())
                        .and_then(|w| w.as_str());
                    let l = p["last_terminated"]
                        .as_array()
                        .and_then(|w| w.first())
                        .and_then(|w| w.as_str());
                    format!(
                        "{} {}{}{} (restarts {})",
                        p["name"].as_str().unwrap_or_default(),
                        p["phase"].as_str().unwrap_or("?"),
                        w.map(|w| format!(", {w}")).unwrap_or_default(),
                        l.map(|l| format!(", last exit {l}")).unwrap_or_default(),
                        p["restarts"]
                    )
                })
                .collect();
            why.truncate(5);
            // A large Deployment's pods: the failing ones first, at most MAX_PODS in the record.
            let mut shown: Vec<&Value> = failing.clone();
            shown.extend(summaries.iter().filter(|p| !failing.contains(p)));
            shown.truncate(MAX_PODS);
            s.detail.insert(
                "evidence".into(),
                json!({
                    "deployment": {
                        "name": name, "namespace": ns,
                        "replicas": d["spec"]["replicas"], "generation": d["metadata"]["generation"],
                        "revision": d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
                        "status": d["status"],
                    },
                    "pods_total": summaries.len(),
                    "pods": shown, "logs": logs, "events": events,
                }),
            );
            Ok(format!(
                "{ns}/{name}: {} pod(s), {ready_n} ready{}; {} event(s)",
                summaries.len(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!("; failing: {}", why.join("; "))
                },
                events.len()
            ))
        })
    }
}
