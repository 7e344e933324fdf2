//! `kube_rollout_undo`: roll back the release, not the restart (runbook procedure 1, "Rollback
//! (if needed)").
//!
//! kubectl's `rollout undo` returns to the second-highest revision. After a `rollout restart`
//! that is the same release again: a restart writes a new revision whose pod template differs
//! only in `kubectl.kubernetes.io/restartedAt`. So remedyd reads the history itself, groups
//! revisions into releases (templates equal but for the restart annotations), and sends kubectl's
//! request for `kubectl rollout undo --to-revision=N`, N being the newest revision of the release
//! before the current one. `changed_within` is measured from the current release's first
//! revision, so a restart never makes a release look recent.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{Failure, bad, refuse};
use super::executor::KubeAction;
use super::handsoff;
use super::objects::{deployments, list_all, read_deployment, selector_string};
use super::params::{Target, duration, fmt, params};
use super::request::path;
use super::rollout::change_and_wait;
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

/// Template annotations that restarts write and that never make a release: kubectl's
/// `rollout restart` (also what Argo CD, Lens and k9s write) and kube-rs's `Api::restart()`.
pub const RESTART_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/restartedAt",
    "kube.kubernetes.io/restartedAt",
];

/// The revision annotation the deployment controller puts on ReplicaSets and the Deployment.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a re-adopted ReplicaSet held before (comma-separated), set by the controller.
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The longest `changed_within` (a week: older than that is not "a recent release").
const MAX_CHANGED_WITHIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deployment annotations kubectl keeps from the Deployment, not from the ReplicaSet
/// (`pkg/polymorphichelpers/rollback.go`, `annotationsToSkip`).
const SKIP_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UndoParams {
    /// Deployment name (template); the target's name by default.
    #[serde(default = "super::params::default_deployment")]
    deployment: String,
    /// Bound of the rollout wait.
    #[serde(default = "super::params::default_wait")]
    wait: String,
    // Flat, not `#[serde(flatten)] Target`: `fields::names` reads a flat struct's fields, and
    // serde does not support `deny_unknown_fields` together with `flatten`.
    /// 0: the previous release; N: that revision (kubectl's `--to-revision`).
    #[serde(default)]
    to_revision: i64,
    /// Roll back only if the current release began this recently (the runbook's level-2 rollback).
    #[serde(default)]
    changed_within: Option<String>,
}

fn revision(o: &Value) -> Option<i64> {
    match o["metadata"]["annotations"][REVISION].as_str() {
        None => Some(0),
        Some(s) => s.parse().ok(),
    }
}

/// The revisions a ReplicaSet held before it was re-adopted (`revision-history`).
fn earlier_revisions(rs: &Value) -> Vec<i64> {
    rs["metadata"]["annotations"][REVISION_HISTORY]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect()
}

fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove("pod-template-hash");
    }
    t
}

/// The template as a release: without the `pod-template-hash` label and the restart annotations.
fn release_key(template: &Value) -> Value {
    let mut t = without_hash(template);
    if let Some(a) = t["metadata"]["annotations"].as_object_mut() {
        for k in RESTART_ANNOTATIONS {
            a.remove(*k);
        }
    }
    t
}

/// Equal as the API server's semantic deep-equal sees them: absent, null and empty agree.
fn semantic_eq(a: &Value, b: &Value) -> bool {
    fn norm(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(_, v)| !is_empty(v))
                    .map(|(k, v)| (k.clone(), norm(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
            other => other.clone(),
        }
    }
    fn is_empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Object(m) => m.values().all(is_empty),
            Value::Array(a) => a.is_empty(),
            _ => false,
        }
    }
    norm(a) == norm(b)
}

/// A Deployment's history read as releases (pure: the action and the unit tests share it).
#[derive(Debug, PartialEq)]
struct History {
    /// The newest revision: the one the Deployment runs (restarts included).
    current: i64,
    /// The first revision of the current release (the restarts after it are the same release).
    release_first: i64,
    /// The newest revision of the release before, if the history still holds one.
    previous: Option<i64>,
}

impl History {
    /// `revs`: (revision, ReplicaSet template), any order. `None` when no ReplicaSet has the
    /// Deployment's template yet (the controller has not caught up with a change).
    fn of(template: &Value, revs: &[(i64, &Value)]) -> Option<History> {
        let mut revs: Vec<(i64, Value)> = revs.iter().map(|(r, t)| (*r, release_key(t))).collect();
        revs.sort_by_key(|(r, _)| -r);
        let now = release_key(template);
        let (current, key) = revs.first()?;
        if !semantic_eq(key, &now) {
            return None;
        }
        let same = revs
            .iter()
            .take_while(|(_, k)| semantic_eq(k, &now))
            .count();
        Some(History {
            current: *current,
            release_first: revs[same - 1].0,
            previous: revs.get(same).map(|(r, _)| *r),
        })
    }
}

/// `name: image` of every container and init container.
fn images(template: &Value) -> Vec<(String, String)> {
    let spec = &template["spec"];
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().into_iter().flatten())
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("?").to_string(),
                c["image"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// The images that change, `before → after` per container (added and removed ones too).
fn image_changes(before: &Value, after: &Value) -> Vec<Value> {
    let (b, a) = (images(before), images(after));
    let names: Vec<&String> = b.iter().chain(a.iter()).map(|(n, _)| n).collect();
    let mut seen = std::collections::BTreeSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.as_str()))
        .filter_map(|n| {
            let find =
                |l: &[(String, String)]| l.iter().find(|(x, _)| x == n).map(|(_, i)| i.clone());
            let (x, y) = (find(&b), find(&a));
            (x != y).then(|| json!({"container": n, "before": x, "after": y}))
        })
        .collect()
}

fn describe(changes: &[Value]) -> String {
    if changes.is_empty() {
        return "same images (the pod template differs elsewhere)".into();
    }
    changes
        .iter()
        .map(|c| {
            let show = |v: &Value| v.as_str().unwrap_or("(none)").to_string();
            format!(
                "{} {} → {}",
                c["container"].as_str().unwrap_or("?"),
                show(&c["before"]),
                show(&c["after"])
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `kube_rollout_undo`: back to the previous release with kubectl's request for
/// `rollout undo --to-revision=N`, then the rollout gate.
pub struct Undo;

impl UndoParams {
    fn target(&self) -> Target {
        Target::new(&self.deployment, &self.wait)
    }
}

impl KubeAction for Undo {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<UndoParams>().to_vec()
    }
    fn validate(&self, p: &Value) -> Result<(), String> {
        let u = params::<UndoParams>(p)?;
        u.target().check()?;
        if u.to_revision < 0 {
            return Err("to_revision: must be 0 (previous release) or a revision number".into());
        }
        if let Some(w) = &u.changed_within {
            duration("changed_within", w, MAX_CHANGED_WITHIN)?;
        }
        Ok(())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let u = params::<UndoParams>(&req.params)?;
        let (ns, name, wait) = u.target().resolve(req)?;
        Ok(
            json!({"patch": format!("{}/{name}", deployments(&ns)), "content_type": "application/json-patch+json", "to_revision": u.to_revision, "ignored_annotations": RESTART_ANNOTATIONS, "changed_within": u.changed_within, "wait": fmt(wait)}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let u = params::<UndoParams>(&req.params).map_err(bad)?;
            let (ns, name, wait) = u.target().resolve(req).map_err(bad)?;
            let d = read_deployment(s, &ns, &name).await?;
            handsoff::before_change(&d, req, &ns, &name)?;
            let Some(uid) = d["metadata"]["uid"].as_str().map(str::to_string) else {
                return refuse(format!("deployment {ns}/{name} has no metadata.uid"));
            };
            let sel = selector_string(&d["spec"]["selector"]).map_err(bad)?;
            let all = list_all(
                s,
                &path("apps/v1", &ns, "replicasets"),
                Some(&sel),
                None,
                None,
            )
            .await
            .map_err(Failure::api(format!("listing replicasets of {ns}/{name}")))?;
            // kubectl keeps the ReplicaSets this Deployment controls; unparsable revisions are
            // ignored, absent ones are 0.
            let owned: Vec<(i64, &Value)> = all
                .iter()
                .filter(|rs| {
                    rs["metadata"]["ownerReferences"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|o| o["controller"] == true && o["uid"] == uid.as_str())
                })
                .filter_map(|rs| Some((revision(rs)?, rs)))
                .collect();
            let by_rev = |r: i64| owned.iter().find(|(x, _)| *x == r).map(|(_, rs)| *rs);
            let templates: Vec<(i64, &Value)> = owned
                .iter()
                .map(|(r, rs)| (*r, &rs["spec"]["template"]))
                .collect();
            let history = History::of(&d["spec"]["template"], &templates);
            // kubectl checks this after picking the revision; first here, so that a template
            // changed while paused is not reported as a controller that has not caught up.
            if d["spec"]["paused"] == true {
                return refuse(
                    "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again",
                );
            }
            if u.to_revision == 0 {
                match &history {
                    None if owned.is_empty() => {
                        return refuse(format!(
                            "nothing to roll back: no rollout history found for deployment {ns}/{name}"
                        ));
                    }
                    None => {
                        return refuse(format!(
                            "not rolled back: no ReplicaSet of {ns}/{name} has its current template yet (the deployment controller has not caught up)"
                        ));
                    }
                    Some(h) if h.previous.is_none() => {
                        let restarts = if h.current > h.release_first {
                            format!(
                                "; revisions {}..{} are restarts of revision {} (they differ only in {})",
                                h.release_first + 1,
                                h.current,
                                h.release_first,
                                RESTART_ANNOTATIONS.join(", ")
                            )
                        } else {
                            String::new()
                        };
                        // The controller keeps `revisionHistoryLimit` old ReplicaSets: many
                        // restarts can push the previous release out of the history.
                        let gone = if h.release_first > 1 {
                            format!(
                                "; revisions before {} are no longer kept (revisionHistoryLimit {})",
                                h.release_first,
                                d["spec"]["revisionHistoryLimit"]
                                    .as_i64()
                                    .map_or("unset".to_string(), |l| l.to_string())
                            )
                        } else {
                            String::new()
                        };
                        return refuse(format!(
                            "nothing to roll back: deployment {ns}/{name} has no earlier release in its history (current revision {}{restarts}{gone})",
                            h.current
                        ));
                    }
                    Some(_) => {}
                }
            }
            if let Some(w) = &u.changed_within {
                let within = duration("changed_within", w, MAX_CHANGED_WITHIN).map_err(bad)?;
                let Some(h) = &history else {
                    return refuse(format!(
                        "not rolled back: no ReplicaSet of {ns}/{name} has its current template, so when it was released is unknown"
                    ));
                };
                let first = by_rev(h.release_first).unwrap_or(&Value::Null);
                let created = first["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("");
                let Ok(t) = crate::domain::time::Timestamp::parse_rfc3339(created) else {
                    return refuse(format!(
                        "not rolled back: the ReplicaSet of revision {} of {ns}/{name} has no readable creationTimestamp ({created:?})",
                        h.release_first
                    ));
                };
                let now = crate::domain::time::Clock::now(&crate::adapters::clock::SystemClock);
                let age = now.since(t);
                if age > within {
                    return refuse(format!(
                        "not rolled back: the current release of {ns}/{name} (revision {}, first rolled out as revision {}) is {} old, more than changed_within {}",
                        h.current,
                        h.release_first,
                        fmt(age),
                        fmt(within)
                    ));
                }
                s.notes.push(format!(
                    "the current release (revision {}) was first rolled out {} ago, within {}",
                    h.release_first,
                    fmt(age),
                    fmt(within)
                ));
            }
            let to = if u.to_revision > 0 {
                u.to_revision
            } else {
                match &history {
                    Some(History {
                        previous: Some(p),
                        release_first,
                        current,
                    }) => {
                        // A re-adopted ReplicaSet: the current release went back to an older
                        // template. The "previous" revision is then the newer release that was
                        // rolled back; undoing again would bring it back.
                        let first = by_rev(*release_first).unwrap_or(&Value::Null);
                        let oldest = earlier_revisions(first)
                            .into_iter()
                            .chain([*release_first])
                            .min()
                            .unwrap_or(*release_first);
                        if *p > oldest {
                            return refuse(format!(
                                "not rolled back: revision {current} of {ns}/{name} already went back to the template of revision {oldest}; undoing it would bring back revision {p}, a newer release"
                            ));
                        }
                        *p
                    }
                    _ => {
                        return refuse(format!(
                            "nothing to roll back: deployment {ns}/{name} has no earlier release"
                        ));
                    }
                }
            };
            let Some(rs) = by_rev(to) else {
                return refuse(format!("unable to find specified revision {to} in history"));
            };
            let template = without_hash(&rs["spec"]["template"]);
            if semantic_eq(&template, &without_hash(&d["spec"]["template"])) {
                return refuse(format!(
                    "skipped rollback (current template already matches revision {to})"
                ));
            }
            let from = history
                .as_ref()
                .map(|h| h.current)
                .or_else(|| revision(&d))
                .unwrap_or(0);
            let changes = image_changes(&d["spec"]["template"], &template);
            s.detail.insert(
                "rollback".into(),
                json!({
                    "from_revision": from,
                    "to_revision": to,
                    "release_first_revision": history.as_ref().map(|h| h.release_first),
                    "images": changes,
                    "ignored_annotations": RESTART_ANNOTATIONS,
                }),
            );
            let mut annotations = serde_json::Map::new();
            for k in SKIP_ANNOTATIONS {
                if let Some(v) = d["metadata"]["annotations"].get(*k) {
                    annotations.insert(k.to_string(), v.clone());
                }
            }
            for (k, v) in rs["metadata"]["annotations"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if !SKIP_ANNOTATIONS.contains(&k.as_str()) {
                    annotations.insert(k.clone(), v.clone());
                }
            }
            let body = json!([
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            ]);
            let patch: json_patch::Patch =
                serde_json::from_value(body).map_err(|e| bad(e.to_string()))?;
            let req = super::request::patch(
                &deployments(&ns),
                &name,
                None,
                None,
                &::kube::api::Patch::Json(patch),
            );
            let restarts = match &history {
                Some(h) if h.current > h.release_first => format!(
                    "; revisions {}..{} were restarts of revision {}",
                    h.release_first + 1,
                    h.current,
                    h.release_first
                ),
                _ => String::new(),
            };
            let change = format!(
                "from revision {from} to revision {to}: {}{restarts}",
                describe(&changes)
            );
            let what = format!("rolling back deployment {ns}/{name} {change}");
            // The timeline and the page say what changed even when the rollout then fails.
            match change_and_wait(s, req, what, &ns, &name, wait).await {
                Ok(done) => Ok(format!(
                    "rolled back deployment {ns}/{name} {change}; {done}"
                )),
                Err(Failure::Refused(why)) => Err(Failure::Refused(format!(
                    "rolled back deployment {ns}/{name} {change}; then {why}"
                ))),
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str, restarted: Option<&str>) -> Value {
        let mut t = json!({
            "metadata": {"labels": {"app": "web", "pod-template-hash": image.len().to_string()}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        });
        if let Some(at) = restarted {
            t["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/restartedAt": at});
        }
        t
    }

    #[test]
    fn restarts_belong_to_the_release_they_restart() {
        let (v1, v2) = (template("web:1", None), template("web:2", None));
        let r1 = template("web:2", Some("2026-11-28T04:00:00Z"));
        let r2 = template("web:2", Some("2026-11-28T04:05:00Z"));
        let h = History::of(&r2, &[(1, &v1), (4, &r2), (2, &v2), (3, &r1)]);
        assert_eq!(
            h,
            Some(History {
                current: 4,
                release_first: 2,
                previous: Some(1)
            })
        );
    }

    #[test]
    fn a_deployment_only_ever_restarted_has_no_previous_release() {
        let v1 = template("web:1", None);
        let r1 = template("web:1", Some("2026-11-28T04:00:00Z"));
        let h = History::of(&r1, &[(1, &v1), (2, &r1)]);
        assert_eq!(
            h,
            Some(History {
                current: 2,
                release_first: 1,
                previous: None
            })
        );
    }

    #[test]
    fn a_template_without_its_replicaset_yet_has_no_history() {
        let v1 = template("web:1", None);
        assert_eq!(History::of(&template("web:2", None), &[(1, &v1)]), None);
    }

    #[test]
    fn image_changes_name_each_container_before_and_after() {
        let c = image_changes(&template("web:2", None), &template("web:1", None));
        assert_eq!(describe(&c), "app web:2 → web:1");
        assert_eq!(
            describe(&image_changes(
                &template("web:1", Some("x")),
                &template("web:1", None)
            )),
            "same images (the pod template differs elsewhere)"
        );
    }
}
