//! Reading what an action acts on: every page of a list (`kubectl get -l`), a Deployment, its
//! label selector as kubectl prints it, and whether a pod is ready.

use serde_json::Value;

use super::error::{ApiError, Failure};
use super::request::{get, list, path};
use super::session::Session;

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

/// A pod counts as ready: not being deleted, and its `Ready` condition `True`.
pub(super) fn ready(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}
