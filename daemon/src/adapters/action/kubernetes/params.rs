//! A step's `with:` parameters: deserialised with the failing field named, templates rendered
//! to Kubernetes object names, bounded durations, the target's namespace, and the fields every
//! Deployment action shares (`deployment`, `wait`).

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::dns::SYSTEM_NAMESPACE;
use crate::adapters::action::ActionRequest;
use crate::domain::template::Template;

/// The longest any wait may be.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(30 * 60);

/// The Deployment (or HPA) a step acts on by default: the target's.
pub(super) fn default_deployment() -> String {
    "{{target.name}}".into()
}
/// The rollout wait by default.
pub(super) fn default_wait() -> String {
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
    /// The shared fields, as a parameter type holding them flat gives them.
    pub(super) fn new(deployment: &str, wait: &str) -> Self {
        Self {
            deployment: deployment.to_string(),
            wait: wait.to_string(),
        }
    }
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
