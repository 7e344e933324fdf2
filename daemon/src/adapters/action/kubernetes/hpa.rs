//! `kube_hpa_patch`: `kubectl patch hpa X --type=merge` of an autoscaling/v2 HPA's min/max
//! replicas and CPU target, within the step's bound.

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{Failure, bad, refuse};
use super::executor::KubeAction;
use super::params::{check_template, default_deployment, namespace, params, render};
use super::request::{get, merge, path};
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

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
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<HpaParams>().to_vec()
    }
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
            // The last attempt returns whatever happens; this is for the compiler.
            refuse(format!("HPA {ns}/{name} kept changing under us"))
        })
    }
}
