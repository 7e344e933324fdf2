//! Resource usage from `metrics.k8s.io` (what `kubectl top pod -l SELECTOR` shows): CPU in
//! millicores and memory in MiB per container of the Deployment's pods. A cluster without
//! metrics-server answers 404 (the group is not served) or 503 (its APIService is down): the
//! evidence then says so instead of failing.

use serde_json::{Map, Value, json};

use super::objects::list_all;
use super::request::path;
use super::session::Session;

/// The note when the metrics API is not there.
pub const NOT_SERVED: &str = "metrics.k8s.io is not served: no usage figures";

/// A Kubernetes quantity as a number of its base unit (cores, bytes): metrics-server writes CPU
/// in nanocores (`1234567n`) and memory in KiB (`523264Ki`); the rest of the suffixes for safety.
pub fn amount(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mul = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * mul)
}

/// One decimal place, as people read usage.
fn tenths(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// `{pod: {container: {cpu_millicores, memory_mib}}}` from a PodMetrics list.
pub fn usage_of(items: &[Value]) -> Value {
    let mut pods = Map::new();
    for p in items {
        let Some(pod) = p["metadata"]["name"].as_str() else {
            continue;
        };
        let mut per = Map::new();
        for c in p["containers"].as_array().into_iter().flatten() {
            let Some(name) = c["name"].as_str() else {
                continue;
            };
            let cpu = c["usage"]["cpu"].as_str().and_then(amount);
            let mem = c["usage"]["memory"].as_str().and_then(amount);
            per.insert(
                name.to_string(),
                json!({
                    "cpu_millicores": cpu.map(|v| tenths(v * 1000.0)),
                    "memory_mib": mem.map(|v| tenths(v / (1024.0 * 1024.0))),
                }),
            );
        }
        pods.insert(pod.to_string(), Value::Object(per));
    }
    Value::Object(pods)
}

/// Reads the usage of the pods matching `selector` in `ns`. When the metrics API is not served
/// or the read failed, the evidence's `usage` is the note saying so (it reaches the page).
pub(super) async fn read(s: &mut Session, ns: &str, selector: &str) -> Value {
    let collection = path("metrics.k8s.io/v1beta1", ns, "pods");
    match list_all(s, &collection, Some(selector), None, None).await {
        Ok(items) => usage_of(&items),
        Err(e) if matches!(e.code, 404 | 503) => {
            s.notes.push(NOT_SERVED.to_string());
            json!(NOT_SERVED)
        }
        Err(e) => {
            let note = format!("usage of the pods unavailable: {e}");
            s.notes.push(note.clone());
            json!(note)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_server_quantities_become_millicores_and_mib() {
        assert_eq!(amount("250m"), Some(0.25));
        assert_eq!(amount("1234567n").map(|v| tenths(v * 1000.0)), Some(1.2));
        assert_eq!(
            amount("523264Ki").map(|v| tenths(v / 1048576.0)),
            Some(511.0)
        );
        assert_eq!(amount("12x"), None);
        let u = usage_of(&[json!({
            "metadata": {"name": "checkout-1"},
            "containers": [{"name": "app", "usage": {"cpu": "870000000n", "memory": "128Mi"}}]
        })]);
        assert_eq!(
            u,
            json!({"checkout-1": {"app": {"cpu_millicores": 870.0, "memory_mib": 128.0}}})
        );
    }
}
