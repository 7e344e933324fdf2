//! Reading what an action acts on: every page of a list (`kubectl get -l`), a Deployment, its
//! label selector as kubectl prints it, and whether a pod is ready.

use serde_json::Value;

use super::bounded::{inline, is_name};
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

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` and `.`, alphanumeric at both
/// ends (what the API server accepts).
fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain, the name a non-empty label value.
fn is_label_key(k: &str) -> bool {
    let (prefix, name) = k.rsplit_once('/').map_or((None, k), |(p, n)| (Some(p), n));
    !name.is_empty() && is_label_value(name) && prefix.is_none_or(is_name)
}

/// A selector's key or value an answer corrupted, refused by name (one line, cut).
fn bad_label(what: &str, v: &Value) -> String {
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
    format!(
        "the selector's {what} {:?} is not a label's",
        inline(&text, 63)
    )
}

/// A label selector object rendered as a string, as kubectl's `LabelSelectorAsSelector`. Keys
/// and values are checked: the selector comes from an answer, and what it selects is deleted.
pub fn selector_string(sel: &Value) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            if !is_label_key(k) {
                return Err(bad_label("key", &Value::String(k.clone())));
            }
            match v.as_str() {
                Some(v) if is_label_value(v) => parts.push((k.clone(), format!("{k}={v}"))),
                _ => return Err(bad_label("value", v)),
            }
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = match e["key"].as_str() {
            Some(k) if is_label_key(k) => k.to_string(),
            _ => return Err(bad_label("key", &e["key"])),
        };
        let mut values = Vec::new();
        for v in e["values"].as_array().into_iter().flatten() {
            match v.as_str() {
                Some(v) if is_label_value(v) => values.push(v),
                _ => return Err(bad_label("value", v)),
            }
        }
        values.sort_unstable();
        let s = match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            op => return Err(format!("unknown selector operator {:?}", inline(op, 63))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_selector_an_answer_corrupted_is_refused_in_one_line() {
        // `fuzz_responses::kube_writes`, delete-pods case 0: `app` = "\0\u{202e}é\n" became
        // the selector, and a summary of two lines.
        for v in [
            json!("\u{0}\u{202e}é\n"),
            json!(-1),
            json!(null),
            json!("x".repeat(100_000)),
            json!("-5"),
        ] {
            let e = selector_string(&json!({"matchLabels": {"app": v}})).unwrap_err();
            assert!(!e.contains('\n') && e.len() < 200, "{e}");
        }
        let e = selector_string(&json!({"matchLabels": {"a b": "x"}})).unwrap_err();
        assert!(e.contains("key"), "{e}");
        assert_eq!(
            selector_string(
                &json!({"matchLabels": {"app": "web", "app.kubernetes.io/part-of": "shop"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]})
            ),
            Ok("app=web,app.kubernetes.io/part-of=shop,tier in (a,b)".into())
        );
        assert_eq!(
            selector_string(&json!({"matchLabels": {"app": ""}})),
            Ok("app=".into())
        );
    }
}
