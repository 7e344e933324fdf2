//! Hands-off signals on a Deployment, checked by every step that changes one (restart, undo,
//! scale, set resources) after its read and before its first write: a rollout someone else is
//! running, and a GitOps reconciler (Argo CD, Flux) that owns the object.
//!
//! A rollout in progress holds the step (`Failure::Held` before any write): the engine releases
//! its ledger claim and tries the same step again until the rollout is over or the policy's
//! `rollout_hold` has passed. A reconciler's ownership (with `gitops: refuse`) is a refusal, a
//! precondition (`Failure::Refused` before any write): the step records `step_refused` with the
//! reason, no breaker counts it, and the ladder goes on as after any refusal; its last step's
//! refusal escalates with that reason.

use serde_json::Value;

use super::error::{Failure, refuse};
use super::rollout::{Rollout, rollout_state};
use crate::adapters::action::ActionRequest;

/// The template variable carrying the policy's `gitops:` choice (`refuse` or `allow`) into a
/// step's request; absent means `refuse`, the policy default.
pub const GITOPS_VAR: &str = "policy.gitops";

/// The reconciler that owns a Deployment, as its labels and annotations say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Argo CD: its Application's name.
    ArgoCd(String),
    /// Flux: the Kustomization or HelmRelease (`kind`, `namespace/name`).
    Flux(&'static str, String),
}

impl Owner {
    /// The reconciler's product name.
    pub fn tool(&self) -> &'static str {
        match self {
            Self::ArgoCd(_) => "Argo CD",
            Self::Flux(..) => "Flux",
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ArgoCd(app) => write!(f, "Argo CD application {app}"),
            Self::Flux(kind, name) => write!(f, "Flux {kind} {name}"),
        }
    }
}

/// Argo CD's tracking annotation (`APP:GROUP/KIND:NS/NAME`), its default since 3.0.
const ARGO_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
/// Argo CD's tracking label (its default before 3.0). Helm charts set the same well-known
/// label, so on its own with `app.kubernetes.io/managed-by: Helm` it names a Helm release, not an
/// Application.
const ARGO_INSTANCE: &str = "app.kubernetes.io/instance";
/// The labels Flux's kustomize-controller and helm-controller set on what they apply.
const FLUX: [(&str, &str, &str); 2] = [
    (
        "Kustomization",
        "kustomize.toolkit.fluxcd.io/name",
        "kustomize.toolkit.fluxcd.io/namespace",
    ),
    (
        "HelmRelease",
        "helm.toolkit.fluxcd.io/name",
        "helm.toolkit.fluxcd.io/namespace",
    ),
];

/// Who reconciles this object from git, if anyone (Flux first: its labels are unambiguous).
pub fn gitops_owner(obj: &Value) -> Option<Owner> {
    let labels = &obj["metadata"]["labels"];
    let annotations = &obj["metadata"]["annotations"];
    for (kind, name, ns) in FLUX {
        if let (Some(n), Some(ns)) = (labels[name].as_str(), labels[ns].as_str()) {
            return Some(Owner::Flux(kind, format!("{ns}/{n}")));
        }
    }
    if let Some(id) = annotations[ARGO_TRACKING_ID].as_str() {
        let app = id.split(':').next().unwrap_or(id);
        return Some(Owner::ArgoCd(app.to_string()));
    }
    let helm = labels["app.kubernetes.io/managed-by"] == "Helm";
    match labels[ARGO_INSTANCE].as_str() {
        Some(app) if !helm => Some(Owner::ArgoCd(app.to_string())),
        _ => None,
    }
}

/// A rollout in progress on a Deployment, and why: kubectl's rollout viewer (`rollout status`:
/// generation not yet observed, replicas not all updated, old ones not gone, updated ones not
/// available), then the Progressing condition (a reason other than `NewReplicaSetAvailable`
/// means the controller is still moving ReplicaSets). A failed rollout
/// (`ProgressDeadlineExceeded`) is not in progress: undoing it is a remedy; a paused one is
/// left to each action's own paused check.
pub fn rollout_in_progress(d: &Value) -> Option<String> {
    if let Rollout::Waiting(why) = rollout_state(d) {
        return Some(why);
    }
    let progressing = d["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing")?;
    let reason = progressing["reason"].as_str().unwrap_or_default();
    (!matches!(
        reason,
        "NewReplicaSetAvailable" | "ProgressDeadlineExceeded" | "DeploymentPaused"
    ))
    .then(|| format!("its Progressing condition is {reason:?}, not \"NewReplicaSetAvailable\""))
}

/// The checks before a step changes Deployment `ns/name` (`d` as just read): held when a
/// rollout is in progress, refused when a reconciler owns it and the policy says `gitops: refuse`.
/// Returns the owner when the policy allows acting on it (the step then checks for a revert).
pub(super) fn before_change(
    d: &Value,
    req: &ActionRequest,
    ns: &str,
    name: &str,
) -> Result<Option<Owner>, Failure> {
    if let Some(why) = rollout_in_progress(d) {
        return Err(Failure::Held(format!(
            "rollout in progress: deployment {ns}/{name} is mid-rollout and remedyd did not start it ({why}); not changed"
        )));
    }
    let Some(owner) = gitops_owner(d) else {
        return Ok(None);
    };
    if req.vars.get(GITOPS_VAR).map(String::as_str) == Some("allow") {
        return Ok(Some(owner));
    }
    refuse(format!(
        "deployment {ns}/{name} is managed by {owner}: change it in git (policy gitops: refuse)"
    ))
}

/// After a change to a reconciled Deployment: `field` (what was changed, as people read it) is
/// back to its value before the step, so the reconciler reverted it. Escalating beats flapping.
pub(super) fn reverted(owner: &Owner, ns: &str, name: &str, field: &str, old: &str) -> String {
    format!(
        "reverted by {}: {ns}/{name} {field} is back to {old} after the step ({owner} keeps it as git says; change it in git)",
        owner.tool()
    )
}

/// What a step wrote into Deployment `ns/name`, which `owner` reconciles, for the engine to
/// read back while the step is verified (`revert::check_revert`): `fields` are (what, as people read
/// it; the container, or none for `spec.replicas`; the value as read after the step).
pub(super) fn watch(
    owner: &Owner,
    ns: &str,
    name: &str,
    fields: Vec<(String, Option<String>, Value)>,
) -> Value {
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|(what, container, value)| serde_json::json!({"what": what, "container": container, "value": value}))
        .collect();
    serde_json::json!({"namespace": ns, "name": name, "owner": owner.to_string(), "tool": owner.tool(), "fields": fields})
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::revert::check_revert;
    use super::*;

    fn done() -> Value {
        json!({
            "metadata": {"name": "web", "generation": 3},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
        })
    }

    #[test]
    fn a_watched_field_put_back_is_a_revert_naming_its_owner_and_one_as_written_is_not() {
        let owner = Owner::ArgoCd("shop".into());
        let res = json!({"limits": {"memory": "1Gi"}});
        let w = watch(
            &owner,
            "ns",
            "web",
            vec![
                ("replicas".into(), None, json!(4)),
                ("resources of app".into(), Some("app".into()), res.clone()),
            ],
        );
        let mut d = json!({"spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "app", "resources": res}]}}}});
        assert_eq!(check_revert(&d, &w), None);
        d["spec"]["replicas"] = json!(3);
        let why = check_revert(&d, &w).unwrap();
        assert_eq!(
            why,
            "reverted by Argo CD: ns/web replicas is 3 (remedyd set 4) (Argo CD application shop keeps it as git says; change it in git)"
        );
        d["spec"]["replicas"] = json!(4);
        d["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"limits": {"memory": "512Mi"}});
        assert!(
            check_revert(&d, &w)
                .unwrap()
                .contains("resources of app is")
        );
    }

    #[test]
    fn a_finished_rollout_is_not_in_progress() {
        assert_eq!(rollout_in_progress(&done()), None);
    }

    #[test]
    fn an_unobserved_generation_is_a_rollout_in_progress() {
        let mut d = done();
        d["metadata"]["generation"] = json!(4);
        let why = rollout_in_progress(&d).unwrap();
        assert!(why.contains("spec update to be observed"), "{why}");
    }

    #[test]
    fn updated_replicas_short_of_the_spec_is_a_rollout_in_progress() {
        let mut d = done();
        d["status"]["updatedReplicas"] = json!(1);
        let why = rollout_in_progress(&d).unwrap();
        assert!(why.contains("1 out of 2 new replicas"), "{why}");
        let mut d = done();
        d["status"]["availableReplicas"] = json!(1);
        let why = rollout_in_progress(&d).unwrap();
        assert!(
            why.contains("1 of 2 updated replicas are available"),
            "{why}"
        );
    }

    #[test]
    fn a_progressing_condition_other_than_new_replicaset_available_is_in_progress() {
        let mut d = done();
        d["status"]["conditions"][0]["reason"] = json!("ReplicaSetUpdated");
        let why = rollout_in_progress(&d).unwrap();
        assert!(why.contains("\"ReplicaSetUpdated\""), "{why}");
        d["status"]["conditions"][0]["reason"] = json!("ProgressDeadlineExceeded");
        assert_eq!(rollout_in_progress(&d), None, "a failed rollout is undo's");
    }

    #[test]
    fn argo_cd_is_found_by_its_annotation_or_its_label_but_not_a_helm_release() {
        let d = json!({"metadata": {"annotations": {ARGO_TRACKING_ID: "shop:apps/Deployment:python-services/web"}}});
        assert_eq!(gitops_owner(&d), Some(Owner::ArgoCd("shop".into())));
        let d = json!({"metadata": {"labels": {ARGO_INSTANCE: "shop"}}});
        assert_eq!(gitops_owner(&d), Some(Owner::ArgoCd("shop".into())));
        let d = json!({"metadata": {"labels": {ARGO_INSTANCE: "redis", "app.kubernetes.io/managed-by": "Helm"}}});
        assert_eq!(gitops_owner(&d), None);
        assert_eq!(
            gitops_owner(&json!({"metadata": {"labels": {"app": "web"}}})),
            None
        );
    }

    #[test]
    fn flux_needs_both_its_name_and_namespace_labels() {
        let d = json!({"metadata": {"labels": {
            "kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}});
        let owner = gitops_owner(&d).unwrap();
        assert_eq!(owner.to_string(), "Flux Kustomization flux-system/apps");
        let d = json!({"metadata": {"labels": {"helm.toolkit.fluxcd.io/name": "web"}}});
        assert_eq!(gitops_owner(&d), None);
        let d = json!({"metadata": {"labels": {
            "helm.toolkit.fluxcd.io/name": "web", "helm.toolkit.fluxcd.io/namespace": "apps"}}});
        assert_eq!(gitops_owner(&d).unwrap().tool(), "Flux");
    }
}
