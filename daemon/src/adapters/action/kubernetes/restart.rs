//! `kube_rollout_restart`: `kubectl rollout restart deployment/X` (runbook procedure 1), then
//! the rollout gate.

use serde_json::{Value, json};

use super::error::{Failure, bad, refuse};
use super::executor::KubeAction;
use super::handsoff;
use super::objects::{deployments, read_deployment};
use super::params::{Target, fmt, params};
use super::request::strategic;
use super::rollout::change_and_wait;
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

/// `kube_rollout_restart`: `kubectl rollout restart deployment/X`, then the rollout gate.
pub struct Restart;

impl KubeAction for Restart {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<Target>().to_vec()
    }
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
            handsoff::before_change(&d, req, &ns, &name)?;
            let now = now_rfc3339();
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

/// The current time as kubectl writes `restartedAt` (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
