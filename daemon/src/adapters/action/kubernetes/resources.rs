//! `kube_set_resources` (runbook procedure 4, raise limits): `kubectl set resources
//! deployment/X -c NAME --limits=… --requests=…`, named containers only, within the step's
//! bounds, then the rollout gate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{Failure, bad, refuse};
use super::executor::KubeAction;
use super::handsoff;
use super::objects::{deployments, read_deployment};
use super::params::{Target, check_template, params, render};
use super::quantity::Quantity;
use super::request::strategic;
use super::rollout::change_and_wait;
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesParams {
    /// Deployment name (template); the target's name by default.
    #[serde(default = "super::params::default_deployment")]
    deployment: String,
    /// Bound of the rollout wait.
    #[serde(default = "super::params::default_wait")]
    wait: String,
    // Flat, not `#[serde(flatten)] Target`: `fields::names` reads a flat struct's fields, and
    // serde does not support `deny_unknown_fields` together with `flatten`.
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
        let wait = self.target().check()?;
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

impl ResourcesParams {
    fn target(&self) -> Target {
        Target::new(&self.deployment, &self.wait)
    }
}

impl KubeAction for SetResources {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<ResourcesParams>().to_vec()
    }
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<ResourcesParams>(p)?.check().map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let p = params::<ResourcesParams>(&req.params)?;
        p.check()?;
        let (ns, name, _) = p.target().resolve(req)?;
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
            let (ns, name, _) = p.target().resolve(req).map_err(bad)?;
            let d = read_deployment(s, &ns, &name).await?;
            let owner = handsoff::before_change(&d, req, &ns, &name)?;
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
            if let Some(owner) = owner
                && !s.dry()
            {
                // The reconciler may already have put git's resources back: re-read after the
                // wait; every changed container as it was before the step is a revert.
                let now = read_deployment(s, &ns, &name).await?;
                let resources = |cs: &Value, n: &Value| {
                    cs.as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| &c["name"] == n)
                        .map(|c| c["resources"].clone())
                };
                let before = &d["spec"]["template"]["spec"]["containers"];
                let after = &now["spec"]["template"]["spec"]["containers"];
                if changed
                    .iter()
                    .all(|c| resources(before, &c["name"]) == resources(after, &c["name"]))
                {
                    let names: Vec<&str> =
                        changed.iter().filter_map(|c| c["name"].as_str()).collect();
                    let field = format!("resources of {}", names.join(", "));
                    let why = handsoff::reverted(&owner, &ns, &name, &field, "their values");
                    return Err(Failure::Reverted(why));
                }
                // Read back again while the step is verified (the engine's revert watch).
                let fields = changed
                    .iter()
                    .filter_map(|c| c["name"].as_str())
                    .map(|n| {
                        let value = resources(after, &json!(n)).unwrap_or(Value::Null);
                        (format!("resources of {n}"), Some(n.to_string()), value)
                    })
                    .collect();
                s.detail
                    .insert("watch".into(), handsoff::watch(&owner, &ns, &name, fields));
            }
            Ok(format!("{ns}/{name}: {}; {done}", said.join(", ")))
        })
    }
}
