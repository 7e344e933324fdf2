//! The lists the writing actions decide from, each corrupted in turn through the fake API
//! server's `answer_raw` switch: `kube_drain_node`'s node, node list and pods on the node, and
//! `kube_delete_pods`'s Deployment (its selector) and pods list. Whatever the answer, the
//! outcome is one line naming the node or the Deployment's namespace, and every write the fake
//! server saw (a cordon, an eviction, a DELETE) is of an object the uncorrupted fixture would
//! have selected: the node, a controller-owned pod on it, a pod of the Deployment's selector.
//! A DaemonSet's pod, a mirror pod and a bystander outside the selector are never touched.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use remedyd::adapters::action::{ActionRequest, Executors};
use serde_json::{Value, json};

use super::mutate::{CONTENT_TYPES, Figures, Rng, absurd, body, cases, run_cases, short};
use crate::support::fake_kube::{FakeKube, Recorded, fixtures};

/// The namespace of the drained nodes' workload pods.
pub(super) const SHOP: &str = "shop";

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "99"}, "items": items})
}

/// The writes of the request log: anything but a read.
fn writes(log: &[Recorded]) -> Vec<(String, String)> {
    log.iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD" | "OPTIONS"))
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

/// A fake API server a drain can run on: three other Ready nodes (the drain's
/// `min_ready_nodes`), the workload's and `kube-system`'s namespaces, and the DaemonSet whose
/// pods a drain leaves alone; with the kubeconfig's directory and the executors on it.
pub(super) async fn drain_cluster() -> (FakeKube, tempfile::TempDir, Executors) {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let exec = Executors::builtin_for(Some(fake.kubeconfig(dir.path())));
    for o in ["node-a", "node-b", "node-c"] {
        fake.put(fixtures::node(o));
    }
    fake.put(fixtures::namespace(SHOP));
    fake.put(fixtures::namespace("kube-system"));
    fake.put(fixtures::daemonset(SHOP, "agent"));
    (fake, dir, exec)
}

/// Case `i`'s node and its three pods: `web-<i>` (a ReplicaSet's: evicted), `agent-<node>` (the
/// DaemonSet's: ignored) and `etcd-<node>` (a mirror pod: ignored).
fn drain_fixture(fake: &FakeKube, i: usize) -> (String, [Value; 3]) {
    let node = format!("dn{i:04}");
    fake.put(fixtures::node(&node));
    let web = fake.put(fixtures::pod(
        SHOP,
        &format!("web-{i}"),
        &node,
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
    ));
    let ds = fake.put(fixtures::daemonset_pod(SHOP, "agent", &node));
    let mirror = fake.put(fixtures::mirror_pod(
        "kube-system",
        &format!("etcd-{node}"),
        &node,
    ));
    (node, [web, ds, mirror])
}

/// The pods list of a drain, corrupted; the fields the filters decide from hit often.
fn pods_answer(rng: &mut Rng, pods: &[Value; 3]) -> Vec<u8> {
    let mut l = list("PodList", pods.to_vec());
    for p in [
        "/items/0/metadata/name",
        "/items/0/metadata/namespace",
        "/items/1/metadata/ownerReferences/0/kind",
        "/items/1/metadata/ownerReferences/0/name",
        "/items/1/metadata/name",
        "/items/1/status/phase",
        "/items/2/metadata/annotations/kubernetes.io~1config.mirror",
        "/items/2/metadata/ownerReferences/0/kind",
        "/items/2/metadata/name",
    ] {
        if rng.below(6) == 0
            && let Some(slot) = l.pointer_mut(p)
        {
            *slot = absurd(rng);
        }
    }
    if rng.below(6) == 0
        && let Some(Value::Object(m)) = l.pointer_mut("/items/2/metadata")
    {
        m.remove("annotations");
    }
    match rng.below(3) {
        0 => serde_json::to_vec(&l).unwrap_or_default(),
        _ => body(rng, &l),
    }
}

/// One drain case: its number, the faults to set (path, status, content type, body, times).
type DrainCase = (usize, Vec<(String, u16, String, Vec<u8>, usize)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_evicts_only_the_nodes_controller_pods_whatever_the_lists_say() {
    // The pods and nodes lists are cluster-wide: one fake API server per lane, its cases one
    // at a time, the faults a case left unused cleared before the next.
    const LANES: usize = 4;
    let n = cases(32).min(400);
    let mut rng = Rng(0x0a1e_5eed_0000_000b);
    let mut lanes = Vec::new();
    for _ in 0..LANES {
        let (fake, dir, exec) = drain_cluster().await;
        // The kubelet's part: an evicted pod goes (no Deployment here for the controller).
        fake.auto_step(Duration::from_millis(100));
        lanes.push((fake, dir, exec));
    }
    let mut plan: Vec<Vec<DrainCase>> = vec![Vec::new(); LANES];
    let mut untouchable = Vec::new();
    for i in 0..n {
        let lane = i % LANES;
        let fake = &lanes[lane].0;
        let (node, pods) = drain_fixture(fake, i);
        untouchable.push((lane, "kube-system", format!("etcd-{node}")));
        untouchable.push((lane, SHOP, format!("agent-{node}")));
        let status = *rng.pick(&[200, 200, 200, 200, 200, 200, 403, 404, 500]);
        let ct = rng.pick(CONTENT_TYPES).to_string();
        let stored_node = fake.get("v1", "Node", "", &node).unwrap_or_default();
        let faults = match rng.below(5) {
            0 => {
                let mut nd = stored_node;
                if rng.below(2) == 0 {
                    nd["spec"]["unschedulable"] = absurd(&mut rng);
                }
                vec![(
                    format!("/api/v1/nodes/{node}"),
                    status,
                    ct,
                    body(&mut rng, &nd),
                    3,
                )]
            }
            1 => {
                let others: Vec<Value> = ["node-a", "node-b", "node-c"]
                    .iter()
                    .map(|o| fixtures::node(o))
                    .chain([stored_node.clone()])
                    .collect();
                let l = list("NodeList", others);
                let good = serde_json::to_vec(&stored_node).unwrap_or_default();
                // The node's own read first, answered as stored: the list alone is corrupted.
                vec![
                    (
                        format!("/api/v1/nodes/{node}"),
                        200,
                        "application/json".into(),
                        good,
                        1,
                    ),
                    ("/api/v1/nodes".into(), status, ct, body(&mut rng, &l), 3),
                ]
            }
            _ => {
                let bytes = pods_answer(&mut rng, &pods);
                vec![("/api/v1/pods".into(), status, ct, bytes, 3)]
            }
        };
        plan[lane].push((i, faults));
    }
    let mut f = Figures::new("kubernetes drain lists");
    let outcomes = futures::stream::iter(lanes.iter().zip(plan))
        .map(|((fake, _, exec), cases)| async move {
            let e = exec.get("kube_drain_node").expect("registered").clone();
            let mut out = Vec::new();
            for (i, faults) in cases {
                for (path, status, ct, bytes, times) in faults {
                    fake.answer_raw("GET", &path, status, &ct, bytes, times);
                }
                let node = format!("dn{i:04}");
                let mut vars = remedyd::domain::template::Vars::new();
                vars.insert("target.name".into(), node.clone());
                vars.insert("target.kind".into(), "node".into());
                let req = ActionRequest {
                    incident: format!("INC-2026-{i:04}"),
                    step: "drain".into(),
                    action: "kube_drain_node".into(),
                    params: json!({"timeout": "30s", "min_ready_nodes": 2}),
                    vars,
                };
                e.validate(&req.params).expect("valid params");
                let o = tokio::time::timeout(Duration::from_secs(120), e.execute(&req))
                    .await
                    .unwrap_or_else(|_| panic!("case {i}: no outcome within 120 s"));
                fake.clear_faults();
                out.push((i, o));
            }
            out
        })
        .buffer_unordered(LANES)
        .collect::<Vec<_>>()
        .await;
    for (i, o) in outcomes.into_iter().flatten() {
        let node = format!("dn{i:04}");
        f.outcome(i, &o, 2_000, &node);
    }
    // Every write of every lane: a cordon of a case's node, an eviction of a case's web pod.
    let allowed: BTreeSet<(String, String)> = (0..n)
        .flat_map(|i| {
            [
                ("PATCH".to_string(), format!("/api/v1/nodes/dn{i:04}")),
                (
                    "POST".to_string(),
                    format!("/api/v1/namespaces/{SHOP}/pods/web-{i}/eviction"),
                ),
            ]
        })
        .collect();
    let (mut cordons, mut evictions) = (0, 0);
    for (fake, _, _) in &lanes {
        for (method, path) in writes(&fake.requests()) {
            assert!(
                allowed.contains(&(method.clone(), path.clone())),
                "a write outside the step's target: {method} {}",
                short(&path)
            );
            if path.ends_with("/eviction") {
                evictions += 1;
            } else {
                cordons += 1;
            }
        }
    }
    for (lane, ns, pod) in &untouchable {
        assert!(
            lanes[*lane].0.get("v1", "Pod", ns, pod).is_some(),
            "{ns}/{pod} was evicted"
        );
    }
    f.report();
    eprintln!(
        "fuzz kubernetes drain lists: {cordons} cordons, {evictions} evictions, all of the cases' own node and web pod"
    );
    assert!(
        f.parsed > 3 && f.refused > 3,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
    assert!(evictions > 3, "some answers must lead to an eviction");
}

/// Case `i`'s namespace: Deployment `web` (selector `app=web`), its pods `web-a` (ready) and
/// `web-b` (not ready), and `db-0` (`app=db`), which no step on `web` may touch.
fn delete_fixture(fake: &FakeKube, ns: &str) -> (Value, [Value; 3]) {
    fake.put(fixtures::namespace(ns));
    let d = fake.put(fixtures::deployment(ns, "web", 2, "registry.local/web:1.0"));
    let a = fake.put(fixtures::pod(
        ns,
        "web-a",
        "node-1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
    ));
    let mut b = fixtures::pod(
        ns,
        "web-b",
        "node-1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web-rs")),
    );
    b["status"]["conditions"][0]["status"] = json!("False");
    let b = fake.put(b);
    let db = fake.put(fixtures::pod(
        ns,
        "db-0",
        "node-1",
        json!({"app": "db"}),
        Some(("StatefulSet", "db")),
    ));
    (d, [a, b, db])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_pods_deletes_only_the_selectors_pods_whatever_the_lists_say() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let exec = Executors::builtin_for(Some(fake.kubeconfig(dir.path())));
    let n = cases(48).min(400);
    let mut rng = Rng(0x0a1e_5eed_0000_000c);
    fake.put(fixtures::node("node-1"));
    // The kubelet's part only: a deleted pod goes (the Deployment controller would add pods).
    let kubelet = fake.clone();
    tokio::spawn(async move {
        loop {
            kubelet.kubelet_step();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut plan = Vec::new();
    for i in 0..n {
        let ns = format!("dp{i:04}");
        let (d, [a, b, _]) = delete_fixture(&fake, &ns);
        let status = *rng.pick(&[200, 200, 200, 200, 200, 200, 403, 404, 500]);
        let ct = rng.pick(CONTENT_TYPES).to_string();
        let (path, bytes) = if rng.below(4) == 0 {
            let mut d = d;
            if rng.below(2) == 0 {
                d["spec"]["selector"]["matchLabels"]["app"] = absurd(&mut rng);
            }
            (
                format!("/namespaces/{ns}/deployments/web"),
                body(&mut rng, &d),
            )
        } else {
            let mut l = list("PodList", vec![a, b]);
            for p in [
                "/items/0/metadata/name",
                "/items/1/metadata/name",
                "/items/1/metadata/deletionTimestamp",
                "/items/0/status/conditions/0/status",
            ] {
                if rng.below(5) == 0
                    && let Some(slot) = l.pointer_mut(p)
                {
                    *slot = absurd(&mut rng);
                }
            }
            let bytes = match rng.below(3) {
                0 => serde_json::to_vec(&l).unwrap_or_default(),
                _ => body(&mut rng, &l),
            };
            (format!("/namespaces/{ns}/pods"), bytes)
        };
        fake.answer_raw("GET", &path, status, &ct, bytes, 3);
        let mut vars = remedyd::domain::template::Vars::new();
        vars.insert("target.namespace".into(), ns.clone());
        vars.insert("target.name".into(), "web".into());
        vars.insert("target.kind".into(), "deployment".into());
        plan.push(ActionRequest {
            incident: format!("INC-2026-{i:04}"),
            step: "delete".into(),
            action: "kube_delete_pods".into(),
            params: json!({"deployment": "{{target.name}}", "max_share": 0.5,
                "only_unready": rng.below(4) > 0, "wait": "2s"}),
            vars,
        });
    }
    let mut f = Figures::new("kubernetes delete-pods lists");
    for (i, o) in run_cases(&exec, plan).await.into_iter().enumerate() {
        let ns = format!("dp{i:04}");
        f.outcome(i, &o, 2_000, &ns);
    }
    let allowed: BTreeSet<(String, String)> = (0..n)
        .flat_map(|i| {
            ["web-a", "web-b"].map(|p| {
                (
                    "DELETE".to_string(),
                    format!("/api/v1/namespaces/dp{i:04}/pods/{p}"),
                )
            })
        })
        .collect();
    let mut deletes = 0;
    for (method, path) in writes(&fake.requests()) {
        assert!(
            allowed.contains(&(method.clone(), path.clone())),
            "a write outside the step's target: {method} {}",
            short(&path)
        );
        deletes += 1;
    }
    for i in 0..n {
        let ns = format!("dp{i:04}");
        assert!(
            fake.get("v1", "Pod", &ns, "db-0").is_some(),
            "{ns}/db-0 was deleted"
        );
    }
    f.report();
    eprintln!("fuzz kubernetes delete-pods lists: {deletes} deletes, all of the selector's pods");
    assert!(
        f.parsed > 3 && f.refused > 3,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
    assert!(deletes > 3, "some answers must lead to a delete");
}
