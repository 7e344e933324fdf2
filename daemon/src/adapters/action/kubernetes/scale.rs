//! `kube_scale` (runbook procedure 2): `kubectl scale deployment/X --replicas=N`, within the
//! step's bounds and HPA-aware (an HPA's minReplicas is raised instead, as a direct scale would be
//! reverted); with `dns`, `kube_dns_scale` on kube-system/coredns.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::dns::{CORE_DNS, SYSTEM_NAMESPACE};
use super::error::{Failure, bad, refuse};
use super::executor::KubeAction;
use super::handsoff;
use super::objects::{deployments, list_all, read_deployment};
use super::params::{
    MAX_WAIT, check_template, default_deployment, default_wait, duration, namespace, params, render,
};
use super::request::{merge, patch, path};
use super::rollout::change_and_wait;
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

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

/// The parameters `kube_dns_scale` refuses (`ScaleParams::check`): it always acts on
/// kube-system/coredns and never on its HPA.
const DNS_FIXED: &[&str] = &["deployment", "hpa"];

fn default_hpa() -> String {
    "raise".into()
}

impl ScaleParams {
    fn check(&self, dns: bool) -> Result<Duration, String> {
        if dns && self.deployment != default_deployment() {
            return Err("deployment: kube_dns_scale always scales kube-system/coredns".into());
        }
        if dns && self.hpa != default_hpa() {
            return Err("hpa: kube_dns_scale always refuses an HPA-managed coredns".into());
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
            Ok((SYSTEM_NAMESPACE.into(), CORE_DNS.into()))
        } else {
            Ok((namespace(req)?, render("deployment", &p.deployment, req)?))
        }
    }
}

impl KubeAction for Scale {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<ScaleParams>()
            .iter()
            .copied()
            .filter(|n| !(self.dns && DNS_FIXED.contains(n)))
            .collect()
    }
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
            let owner = handsoff::before_change(&d, req, &ns, &name)?;
            let current = match &d["spec"]["replicas"] {
                Value::Null => 1,
                v => match v.as_i64().filter(|n| (0..=i64::from(i32::MAX)).contains(n)) {
                    Some(n) => n,
                    // An answer no API server gives (replicas is an int32 >= 0): nothing is
                    // computed from it, let alone written back.
                    None => {
                        return refuse(format!(
                            "{ns}/{name}: spec.replicas {v} in the API server's answer is not a replica count"
                        ));
                    }
                },
            };
            let (min, max) = (p.min.unwrap_or(1), p.max);
            let want = match (p.replicas, p.by) {
                (Some(n), _) => n,
                (None, Some(by)) => current.saturating_add(by).clamp(min, max),
                (None, None) => return refuse("scale: give replicas or by"),
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
            .map_err(Failure::api(format!(
                "listing HPAs in {ns} (scaling {name})"
            )))?;
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
            let req = patch(&deployments(&ns), &name, Some("scale"), None, &body);
            let what = format!("scaling {ns}/{name}");
            let done = change_and_wait(s, req, what, &ns, &name, wait).await?;
            if let Some(owner) = owner
                && !s.dry()
            {
                // The reconciler may already have put git's count back: re-read after the wait.
                let now = read_deployment(s, &ns, &name).await?;
                if now["spec"]["replicas"].as_i64().unwrap_or(1) == current {
                    let why =
                        handsoff::reverted(&owner, &ns, &name, "replicas", &current.to_string());
                    return Err(Failure::Reverted(why));
                }
                // Read back again while the step is verified (the engine's revert watch).
                let fields = vec![("replicas".into(), None, now["spec"]["replicas"].clone())];
                s.detail
                    .insert("watch".into(), handsoff::watch(&owner, &ns, &name, fields));
            }
            Ok(format!(
                "scaled {ns}/{name} from {current} to {want} replicas: {done}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{KubeAction, Scale};

    #[test]
    fn kube_dns_scale_refuses_an_hpa_or_deployment_it_would_ignore_and_does_not_list_them() {
        let dns = Scale { dns: true };
        assert!(dns.validate(&json!({"by": 1, "max": 6})).is_ok());
        let err = dns
            .validate(&json!({"by": 1, "max": 6, "hpa": "refuse"}))
            .unwrap_err();
        assert!(err.starts_with("hpa: "), "{err}");
        assert!(
            dns.validate(&json!({"by": 1, "max": 6, "deployment": "web"}))
                .is_err()
        );
        let listed = dns.params();
        assert!(!listed.contains(&"hpa") && !listed.contains(&"deployment"));
        let plain = Scale { dns: false }.params();
        assert!(plain.contains(&"hpa") && plain.contains(&"deployment") && plain.contains(&"max"));
    }
}
