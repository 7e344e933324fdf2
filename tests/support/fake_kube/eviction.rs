//! `POST pods/{name}/eviction` with the semantics of `pkg/registry/core/pod/storage/eviction.go`
//! (kube.md §2.8 "Server-side eviction semantics"). PDB status comes from the test.
#![allow(dead_code)]

use serde_json::{Value, json};

use super::resources;
use super::select;
use super::store::{ApiError, State, now};

pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn too_many(msg_cause: String, retry_after: u64) -> ApiError {
    let mut e = ApiError::new(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
    )
    .details(json!({"causes": [{"reason": "DisruptionBudget", "message": msg_cause}]}));
    if retry_after > 0 {
        e.retry_after = Some(retry_after);
    }
    e
}

pub fn evict(
    st: &mut State,
    ns: &str,
    name: &str,
    body: Option<&Value>,
) -> Result<Value, ApiError> {
    let pods = resources::by_resource("", "v1", "pods").unwrap();
    let pdbs = resources::by_resource("policy", "v1", "poddisruptionbudgets").unwrap();
    let body = body.cloned().unwrap_or(json!({}));
    if let Some(bn) = body["metadata"]["name"].as_str()
        && !bn.is_empty()
        && bn != name
    {
        return Err(
            ApiError::bad_request("name in URL does not match name in Eviction object")
                .details(json!({"name": name, "kind": "Eviction", "group": "policy"})),
        );
    }
    let opts = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    let Some(pod) = st.get(pods, ns, name).cloned() else {
        return Err(ApiError::not_found(pods, name));
    };
    let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed" | "Pending")
        || pod["metadata"].get("deletionTimestamp").is_some()
    {
        st.delete(pods, ns, name, &opts, None)?;
        return Ok(success);
    }
    let matching: Vec<Value> = st
        .list(pdbs, ns)
        .into_iter()
        .filter(|p| {
            p["spec"].get("selector").is_some_and(|s| {
                select::matches(
                    &select::from_label_selector(Some(s)),
                    pod["metadata"].get("labels"),
                )
            })
        })
        .collect();
    if matching.len() > 1 {
        return Err(ApiError::new(
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    let Some(pdb) = matching.into_iter().next() else {
        st.delete(pods, ns, name, &opts, None)?;
        return Ok(success);
    };
    let pdb_name = pdb["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let status = &pdb["status"];
    let current = status["currentHealthy"].as_i64().unwrap_or(0);
    let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
    if !pod_ready(&pod) {
        let always = pdb["spec"]["unhealthyPodEvictionPolicy"].as_str() == Some("AlwaysAllow");
        if always || (current >= desired && desired > 0) {
            st.delete(pods, ns, name, &opts, None)?;
            return Ok(success);
        }
    }
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    if observed < generation {
        return Err(too_many(
            format!("The disruption budget {pdb_name} is still being processed by the server."),
            10,
        ));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed < 0 {
        return Err(ApiError::new(
            403,
            "Forbidden",
            "pdb disruptions allowed is negative",
        ));
    }
    if allowed == 0 {
        return Err(too_many(
            format!(
                "The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"
            ),
            0,
        ));
    }
    let mut new = pdb.clone();
    new["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if !new["status"]["disruptedPods"].is_object() {
        new["status"]["disruptedPods"] = json!({});
    }
    new["status"]["disruptedPods"][name] = json!(now());
    st.replace(pdbs, ns, &pdb_name, new, true, false)?;
    st.delete(pods, ns, name, &opts, None)?;
    Ok(success)
}
