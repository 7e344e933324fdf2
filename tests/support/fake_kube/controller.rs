//! Test-stepped controllers: the deployment controller (ReplicaSets, revisions and the
//! `revisionHistoryLimit` cleanup, pods, status, conditions) and the kubelet (removes terminating
//! pods).
#![allow(dead_code)]

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::Rollout;
use super::resources::{self, ResDef};
use super::store::{State, canonical, fnv, normalize, now, safe_encode};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const HASH: &str = "pod-template-hash";

fn def(group: &str, version: &str, resource: &str) -> &'static ResDef {
    resources::by_resource(group, version, resource).unwrap()
}

fn deployments() -> &'static ResDef {
    def("apps", "v1", "deployments")
}
fn replicasets() -> &'static ResDef {
    def("apps", "v1", "replicasets")
}
fn pods() -> &'static ResDef {
    def("", "v1", "pods")
}
fn nodes() -> &'static ResDef {
    def("", "v1", "nodes")
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

pub fn revision(o: &Value) -> i64 {
    o["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The template without the pod-template-hash label, in semantic normal form.
pub fn template_key(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH);
    }
    normalize(&t)
}

fn controller_uid(o: &Value) -> Option<String> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| s(&r["uid"]))
}

fn owner_ref(kind: &str, o: &Value) -> Value {
    json!([{
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": o["metadata"]["name"],
        "uid": o["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

fn owned(st: &State, def: &ResDef, ns: &str, uid: &str) -> Vec<Value> {
    st.list(def, ns)
        .into_iter()
        .filter(|o| controller_uid(o).as_deref() == Some(uid))
        .collect()
}

fn percent_or_int(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(p) if p.ends_with('%') => {
            let pct: f64 = p.trim_end_matches('%').parse().unwrap_or(25.0);
            let x = total as f64 * pct / 100.0;
            if round_up {
                x.ceil() as i64
            } else {
                x.floor() as i64
            }
        }
        Value::String(p) => p.parse().unwrap_or(0),
        _ => {
            let x = total as f64 * 0.25;
            if round_up {
                x.ceil() as i64
            } else {
                x.floor() as i64
            }
        }
    }
}

fn copy_annotations(d: &Value, into: &mut Map<String, Value>) {
    if let Some(a) = d["metadata"]["annotations"].as_object() {
        for (k, v) in a {
            if [
                LAST_APPLIED,
                REVISION,
                HISTORY,
                DESIRED,
                MAX,
                "deprecated.deployment.rollback.to",
            ]
            .contains(&k.as_str())
            {
                continue;
            }
            into.insert(k.clone(), v.clone());
        }
    }
}

/// One pass of the deployment controller over every deployment.
pub fn step(st: &mut State) {
    gc(st);
    reconcile(st);
    let mut stuck: HashSet<(String, String)> = HashSet::new();
    for d in st.list(deployments(), "") {
        sync_deployment(st, &d, &mut stuck);
    }
    sync_pods(st, &stuck);
    for d in st.list(deployments(), "") {
        update_status(st, &d, &stuck);
    }
    for d in st.list(deployments(), "") {
        cleanup_history(st, &d);
    }
}

/// A GitOps reconciler with self-heal (Argo CD `selfHeal`, Flux's drift correction): every
/// field registered by `FakeKube::reconcile` that differs from git's value is put back, before
/// the deployment controller looks, so no rollout of the changed value ever completes.
fn reconcile(st: &mut State) {
    let wanted: Vec<_> = st
        .reconciled
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((ns, name), fields) in wanted {
        let Some(mut d) = st.get(deployments(), &ns, &name).cloned() else {
            continue;
        };
        let mut drift = false;
        for (ptr, git) in &fields {
            if let Some(v) = d.pointer_mut(ptr)
                && v != git
            {
                *v = git.clone();
                drift = true;
            }
        }
        if drift {
            st.replace(deployments(), &ns, &name, d, false, true)
                .expect("the reconciler writes back a valid deployment");
        }
    }
}

/// The controller's `cleanupDeployment` (`pkg/controller/deployment/sync.go`): once a rollout is
/// complete, old ReplicaSets beyond `spec.revisionHistoryLimit` go, oldest revision first; one
/// that still has replicas is skipped (and still counts). Without the field, nothing goes (the
/// API server defaults it to 10; the fake does no defaulting).
fn cleanup_history(st: &mut State, d: &Value) {
    let ns = s(&d["metadata"]["namespace"]);
    let name = s(&d["metadata"]["name"]);
    let Some(d) = st.get(deployments(), &ns, &name).cloned() else {
        return;
    };
    let Some(limit) = d["spec"]["revisionHistoryLimit"].as_i64() else {
        return;
    };
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = &d["status"];
    let complete = status["updatedReplicas"].as_i64() == Some(replicas)
        && status["replicas"].as_i64() == Some(replicas)
        && status["availableReplicas"].as_i64() == Some(replicas)
        && status["observedGeneration"] == d["metadata"]["generation"];
    if !complete {
        return;
    }
    let tkey = template_key(&d["spec"]["template"]);
    let mut olds: Vec<Value> = owned(st, replicasets(), &ns, &s(&d["metadata"]["uid"]))
        .into_iter()
        .filter(|rs| template_key(&rs["spec"]["template"]) != tkey)
        .filter(|rs| rs["metadata"].get("deletionTimestamp").is_none())
        .collect();
    let diff = olds.len() as i64 - limit;
    if diff <= 0 {
        return;
    }
    olds.sort_by_key(revision);
    for rs in olds.iter().take(diff as usize) {
        if rs["spec"]["replicas"].as_i64().unwrap_or(0) != 0
            || rs["status"]["replicas"].as_i64().unwrap_or(0) != 0
        {
            continue;
        }
        st.remove_now(replicasets(), &ns, &s(&rs["metadata"]["name"]));
    }
}

/// Removes ReplicaSets whose owning Deployment is gone, and their pods.
fn gc(st: &mut State) {
    let uids: HashSet<String> = st
        .list(deployments(), "")
        .iter()
        .map(|d| s(&d["metadata"]["uid"]))
        .collect();
    for rs in st.list(replicasets(), "") {
        let owner_is_deploy = rs["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|r| r["controller"] == true && r["kind"] == "Deployment")
            });
        if owner_is_deploy && controller_uid(&rs).is_some_and(|u| !uids.contains(&u)) {
            let ns = s(&rs["metadata"]["namespace"]);
            let rs_uid = s(&rs["metadata"]["uid"]);
            st.remove_now(replicasets(), &ns, &s(&rs["metadata"]["name"]));
            for p in owned(st, pods(), &ns, &rs_uid) {
                let _ = st.delete(pods(), &ns, &s(&p["metadata"]["name"]), &json!({}), None);
            }
        }
    }
}

fn sync_deployment(st: &mut State, d: &Value, stuck: &mut HashSet<(String, String)>) {
    let ns = s(&d["metadata"]["namespace"]);
    let name = s(&d["metadata"]["name"]);
    let uid = s(&d["metadata"]["uid"]);
    let paused = d["spec"]["paused"] == true;
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let template = d["spec"]["template"].clone();
    let tkey = template_key(&template);
    let rss = owned(st, replicasets(), &ns, &uid);
    let max_rev = rss.iter().map(revision).max().unwrap_or(0);
    let found = rss
        .iter()
        .find(|rs| template_key(&rs["spec"]["template"]) == tkey)
        .cloned();
    if paused && found.is_none() {
        return;
    }
    let surge = percent_or_int(
        &d["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        replicas,
        true,
    );
    let new_rs = match found {
        None => {
            let hash = safe_encode(fnv(&canonical(&tkey)), 10);
            let rs_name = format!("{name}-{hash}");
            let mut t = template.clone();
            t["metadata"]["labels"][HASH] = json!(hash);
            let mut sel = d["spec"]["selector"].clone();
            sel["matchLabels"][HASH] = json!(hash);
            let mut ann = Map::new();
            copy_annotations(d, &mut ann);
            ann.insert(REVISION.into(), json!((max_rev + 1).to_string()));
            ann.insert(DESIRED.into(), json!(replicas.to_string()));
            ann.insert(MAX.into(), json!((replicas + surge).to_string()));
            let rs = json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name,
                    "namespace": ns,
                    "labels": t["metadata"]["labels"],
                    "annotations": ann,
                    "ownerReferences": owner_ref("Deployment", d),
                },
                "spec": {"replicas": 0, "selector": sel, "template": t},
            });
            match st.insert_new(replicasets(), &ns, rs) {
                Ok(v) => v,
                Err(_) => return,
            }
        }
        Some(rs) => {
            let mut new = rs.clone();
            let ann = new["metadata"]["annotations"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut ann2 = ann.clone();
            copy_annotations(d, &mut ann2);
            let rev = revision(&rs);
            if rev < max_rev || rev == 0 {
                ann2.insert(REVISION.into(), json!((max_rev + 1).to_string()));
                if rev > 0 {
                    let hist = ann.get(HISTORY).and_then(Value::as_str).unwrap_or_default();
                    let h = if hist.is_empty() {
                        rev.to_string()
                    } else {
                        format!("{hist},{rev}")
                    };
                    ann2.insert(HISTORY.into(), json!(h));
                }
            }
            ann2.insert(DESIRED.into(), json!(replicas.to_string()));
            ann2.insert(MAX.into(), json!((replicas + surge).to_string()));
            new["metadata"]["annotations"] = Value::Object(ann2);
            st.replace(
                replicasets(),
                &ns,
                &s(&rs["metadata"]["name"]),
                new,
                false,
                true,
            )
            .unwrap_or(rs)
        }
    };
    let rs_name = s(&new_rs["metadata"]["name"]);

    // The deployment's revision annotation follows its new ReplicaSet.
    let rev = new_rs["metadata"]["annotations"][REVISION].clone();
    if d["metadata"]["annotations"][REVISION] != rev {
        let mut nd = d.clone();
        if !nd["metadata"]["annotations"].is_object() {
            nd["metadata"]["annotations"] = json!({});
        }
        nd["metadata"]["annotations"][REVISION] = rev;
        let _ = st.replace(deployments(), &ns, &name, nd, false, true);
    }
    if paused {
        return;
    }

    let mode = st
        .rollouts
        .get(&(ns.clone(), name.clone()))
        .copied()
        .unwrap_or(Rollout::Complete);
    let entry = st
        .progress
        .entry((ns.clone(), name.clone()))
        .or_insert((rs_name.clone(), 0));
    if entry.0 != rs_name {
        *entry = (rs_name.clone(), 0);
    }
    entry.1 += 1;
    let steps = entry.1;
    let olds: Vec<Value> = owned(st, replicasets(), &ns, &uid)
        .into_iter()
        .filter(|r| s(&r["metadata"]["name"]) != rs_name)
        .collect();
    let old_sum: i64 = olds
        .iter()
        .map(|r| r["spec"]["replicas"].as_i64().unwrap_or(0))
        .sum();
    let (new_count, mut old_total) = match mode {
        Rollout::Complete => (replicas, 0),
        Rollout::Slow(n) if steps >= n.max(1) => (replicas, 0),
        // Nothing old to replace (a first rollout, or one already finished): a slow mode set
        // later must not shrink the current ReplicaSet, as the real controller never does.
        Rollout::Slow(_) if old_sum == 0 => (replicas, 0),
        Rollout::Slow(n) => {
            let c = (replicas * steps as i64 / n.max(1) as i64).clamp(replicas.min(1), replicas);
            (c, (replicas - c).min(old_sum))
        }
        Rollout::Stuck => {
            stuck.insert((ns.clone(), rs_name.clone()));
            (replicas, old_sum)
        }
    };
    set_replicas(st, &ns, &rs_name, new_count);
    let mut olds = olds;
    olds.sort_by_key(|r| -revision(r));
    for r in olds {
        let cur = r["spec"]["replicas"].as_i64().unwrap_or(0);
        let give = cur.min(old_total);
        old_total -= give;
        set_replicas(st, &ns, &s(&r["metadata"]["name"]), give);
    }
}

fn set_replicas(st: &mut State, ns: &str, rs: &str, n: i64) {
    if let Some(o) = st.get(replicasets(), ns, rs).cloned()
        && o["spec"]["replicas"].as_i64() != Some(n)
    {
        let mut new = o;
        new["spec"]["replicas"] = json!(n);
        let _ = st.replace(replicasets(), ns, rs, new, false, true);
    }
}

fn ready_conditions(ready: bool) -> Value {
    let t = now();
    let st = if ready { "True" } else { "False" };
    let mut c = vec![
        json!({"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": t}),
        json!({"type": "Initialized", "status": "True", "lastTransitionTime": t}),
        json!({"type": "Ready", "status": st, "lastTransitionTime": t}),
        json!({"type": "ContainersReady", "status": st, "lastTransitionTime": t}),
        json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": t}),
    ];
    if !ready {
        c[2]["reason"] = json!("ContainersNotReady");
        c[3]["reason"] = json!("ContainersNotReady");
    }
    Value::Array(c)
}

fn pod_is_ready(p: &Value) -> bool {
    super::eviction::pod_ready(p)
}

fn pick_node(st: &mut State) -> Option<String> {
    let nodes: Vec<String> = st
        .list(nodes(), "")
        .into_iter()
        .filter(|n| n["spec"]["unschedulable"] != true)
        .map(|n| s(&n["metadata"]["name"]))
        .collect();
    if nodes.is_empty() {
        return None;
    }
    st.rr += 1;
    Some(nodes[(st.rr - 1) % nodes.len()].clone())
}

/// Creates/deletes pods so every ReplicaSet has spec.replicas active pods; readiness; RS status.
fn sync_pods(st: &mut State, stuck: &HashSet<(String, String)>) {
    for rs in st.list(replicasets(), "") {
        let ns = s(&rs["metadata"]["namespace"]);
        let name = s(&rs["metadata"]["name"]);
        let uid = s(&rs["metadata"]["uid"]);
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let ready_wanted = !stuck.contains(&(ns.clone(), name.clone()));
        let mut active: Vec<Value> = owned(st, pods(), &ns, &uid)
            .into_iter()
            .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
            .collect();
        while active.len() > want {
            let p = active.pop().unwrap();
            let _ = st.delete(pods(), &ns, &s(&p["metadata"]["name"]), &json!({}), None);
        }
        while active.len() < want {
            let t = &rs["spec"]["template"];
            let pod_name = format!("{name}-{}", st.suffix());
            let mut spec = t["spec"].clone();
            if let Some(n) = pick_node(st) {
                spec["nodeName"] = json!(n);
            }
            let mut meta = json!({
                "name": pod_name,
                "namespace": ns,
                "labels": t["metadata"]["labels"],
                "ownerReferences": owner_ref("ReplicaSet", &rs),
            });
            if let Some(a) = t["metadata"].get("annotations") {
                meta["annotations"] = a.clone();
            }
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": spec,
                "status": {
                    "phase": "Running",
                    "conditions": ready_conditions(ready_wanted),
                    "podIP": format!("10.244.0.{}", st.counter % 250 + 2),
                    "startTime": now(),
                },
            });
            match st.insert_new(pods(), &ns, pod) {
                Ok(p) => active.push(p),
                Err(_) => break,
            }
        }
        let mut ready = 0;
        for p in &active {
            if pod_is_ready(p) != ready_wanted {
                let mut np = p.clone();
                np["status"]["conditions"] = ready_conditions(ready_wanted);
                let _ = st.replace(pods(), &ns, &s(&p["metadata"]["name"]), np, true, false);
            }
            if ready_wanted {
                ready += 1;
            }
        }
        if let Some(cur) = st.get(replicasets(), &ns, &name).cloned() {
            let mut new = cur.clone();
            new["status"] = json!({
                "replicas": active.len(),
                "fullyLabeledReplicas": active.len(),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": cur["metadata"]["generation"],
            });
            let _ = st.replace(replicasets(), &ns, &name, new, true, false);
        }
    }
}

fn condition(old: &Value, typ: &str, status: &str, reason: &str, message: String) -> Value {
    let t = now();
    let prev = old["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == typ).cloned());
    let (transition, update) = match &prev {
        Some(p) if p["status"] == status && p["reason"] == reason => {
            (p["lastTransitionTime"].clone(), p["lastUpdateTime"].clone())
        }
        Some(p) if p["status"] == status => (p["lastTransitionTime"].clone(), json!(t)),
        _ => (json!(t), json!(t)),
    };
    json!({"type": typ, "status": status, "lastUpdateTime": update, "lastTransitionTime": transition, "reason": reason, "message": message})
}

fn update_status(st: &mut State, d: &Value, stuck: &HashSet<(String, String)>) {
    let ns = s(&d["metadata"]["namespace"]);
    let name = s(&d["metadata"]["name"]);
    let Some(d) = st.get(deployments(), &ns, &name).cloned() else {
        return;
    };
    let uid = s(&d["metadata"]["uid"]);
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let tkey = template_key(&d["spec"]["template"]);
    let rss = owned(st, replicasets(), &ns, &uid);
    let new_rs = rss
        .iter()
        .find(|rs| template_key(&rs["spec"]["template"]) == tkey);
    let sum = |f: &str| -> i64 {
        rss.iter()
            .map(|r| r["status"][f].as_i64().unwrap_or(0))
            .sum()
    };
    let total = sum("replicas");
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let updated = new_rs
        .map(|r| r["status"]["replicas"].as_i64().unwrap_or(0))
        .unwrap_or(0);
    let max_unavailable = percent_or_int(
        &d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        replicas,
        false,
    );
    let available_cond = if available >= replicas - max_unavailable {
        condition(
            &d,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        condition(
            &d,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let rs_name = new_rs
        .map(|r| s(&r["metadata"]["name"]))
        .unwrap_or_default();
    let progressing = if d["spec"]["paused"] == true {
        condition(
            &d,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
        )
    } else if stuck.contains(&(ns.clone(), rs_name.clone())) {
        condition(
            &d,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        )
    } else if new_rs.is_some() && updated == replicas && total == updated && available >= updated {
        condition(
            &d,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        )
    } else {
        condition(
            &d,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
        )
    };
    let mut status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": [available_cond, progressing],
    });
    let unavailable = (replicas - available).max(0);
    if unavailable > 0 {
        status["unavailableReplicas"] = json!(unavailable);
    }
    let mut nd = d.clone();
    nd["status"] = status;
    let _ = st.replace(deployments(), &ns, &name, nd, true, false);
}

/// Removes every terminating pod.
pub fn kubelet_step(st: &mut State) {
    for p in st.list(pods(), "") {
        if p["metadata"].get("deletionTimestamp").is_some() {
            st.remove_now(
                pods(),
                &s(&p["metadata"]["namespace"]),
                &s(&p["metadata"]["name"]),
            );
        }
    }
}
