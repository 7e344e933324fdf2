//! Reading back what a step wrote into a Deployment a GitOps reconciler owns (the watch
//! `handsoff::watch` describes), while the step is verified: which fields were put back.

use serde_json::Value;

/// The value of a watched field in Deployment `d`: `spec.replicas`, or a container's resources.
fn watched(d: &Value, container: &Value) -> Value {
    match container.as_str() {
        None => d["spec"]["replicas"].clone(),
        Some(c) => d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"] == c)
            .map(|x| x["resources"].clone())
            .unwrap_or(Value::Null),
    }
}

/// Deployment `d` as read back against `watch` ([`watch`]): why, when a field is no longer what
/// the step wrote (its reconciler put git's value back).
pub fn check_revert(d: &Value, watch: &Value) -> Option<String> {
    let (ns, name) = (watch["namespace"].as_str()?, watch["name"].as_str()?);
    let changed: Vec<String> = watch["fields"]
        .as_array()?
        .iter()
        .filter(|f| watched(d, &f["container"]) != f["value"])
        .map(|f| {
            format!(
                "{} is {} (remedyd set {})",
                f["what"].as_str().unwrap_or("a field"),
                watched(d, &f["container"]),
                f["value"]
            )
        })
        .collect();
    (!changed.is_empty()).then(|| {
        format!(
            "reverted by {}: {ns}/{name} {} ({} keeps it as git says; change it in git)",
            watch["tool"].as_str().unwrap_or("its reconciler"),
            changed.join(", "),
            watch["owner"].as_str().unwrap_or("its reconciler")
        )
    })
}
