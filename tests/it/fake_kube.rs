//! Conformance of the fake Kubernetes API server (`tests/support/fake_kube`) against the real
//! kubectl (the image's google-cloud-cli dispatcher with bundled kubectl 1.27..1.33): the fake must
//! behave like an API server for kubectl's rollout, scale, patch, set, delete, drain and cordon,
//! its strategic merge patch must agree with `kubectl patch --local`, and the request traces must
//! match kube.md §2. A missing kubectl fails these tests (it never skips).
//!
//! What the fake cannot prove is listed at the top of `tests/support/fake_kube/mod.rs`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_kube;
use crate::support::fake_kube::{FakeKube, Options, Rollout, fixtures};
use crate::support::kubectl;
use crate::support::kubectl::{kubectl_async as kc, normalise, text};

const NS: &str = "default";

/// kubectl on a blocking thread, so the test's runtime (and `auto_step`) keep running.
fn ok(o: &Output) {
    assert!(o.status.success(), "kubectl failed: {}", text(o));
}

fn deploy(fake: &FakeKube, name: &str) -> Value {
    fake.get("apps/v1", "Deployment", NS, name)
        .expect("deployment")
}

/// A fake with deployment `web` (2 replicas) rolled out on nodes n1, n2.
async fn web() -> (FakeKube, tempfile::TempDir) {
    let fake = FakeKube::start().await;
    fake.put(fixtures::node("n1"));
    fake.put(fixtures::node("n2"));
    fake.put(fixtures::deployment(NS, "web", 2, "nginx:1.27"));
    fake.step();
    (fake, tempfile::tempdir().unwrap())
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `kubectl patch --local --type=strategic` (the real apimachinery code) on `obj`.
fn kubectl_smp(dir: &Path, obj: &Value, patch: &Value) -> Value {
    let file = dir.join("obj.json");
    std::fs::write(&file, obj.to_string()).unwrap();
    let patch = patch.to_string();
    let out = kubectl::kubectl_offline(
        dir,
        &[
            "patch",
            "--local",
            "-f",
            file.to_str().unwrap(),
            "--type=strategic",
            "-p",
            &patch,
            "-o",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "kubectl patch --local: {}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fixture_setup_rolls_out_on_one_step() {
    let (fake, _dir) = web().await;
    let d = deploy(&fake, "web");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(d["status"]["updatedReplicas"], 2);
    assert_eq!(d["status"]["availableReplicas"], 2);
    let rs = fake.list("apps/v1", "ReplicaSet", NS);
    assert_eq!(rs.len(), 1);
    let pods = fake.list("v1", "Pod", NS);
    assert_eq!(pods.len(), 2);
    let nodes: Vec<&str> = pods
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    assert!(
        nodes.contains(&"n1") && nodes.contains(&"n2"),
        "round-robin: {nodes:?}"
    );
    let hash = rs[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert!(
        pods[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with(&format!("web-{hash}-"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_restart_matches_kube_md_2_1() {
    let (fake, dir) = web().await;
    let gen_before = deploy(&fake, "web")["metadata"]["generation"]
        .as_i64()
        .unwrap();
    fake.clear_requests();
    ok(&kc(&fake, dir.path(), &["rollout", "restart", "deployment/web"]).await);
    let d = deploy(&fake, "web");
    let at = d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .unwrap();
    assert!(
        at.ends_with('Z') && at.len() == 20,
        "second precision, UTC: {at}"
    );
    assert_eq!(
        d["metadata"]["generation"].as_i64().unwrap(),
        gen_before + 1
    );
    assert_eq!(
        normalise(&fake.requests()),
        vec![
            json!({"method": "GET", "path": "/apis/apps/v1/namespaces/default/deployments/web", "query": {}, "content_type": null, "body": null}),
            json!({
                "method": "PATCH",
                "path": "/apis/apps/v1/namespaces/default/deployments/web",
                "query": {"fieldManager": "kubectl-rollout"},
                "content_type": "application/strategic-merge-patch+json",
                "body": {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "<ts>"}}}}}
            }),
        ]
    );
    // The controller rolls out a second ReplicaSet.
    fake.step();
    assert_eq!(fake.list("apps/v1", "ReplicaSet", NS).len(), 2);
    assert_eq!(
        deploy(&fake, "web")["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_status_waits_for_a_slow_rollout() {
    let (fake, dir) = web().await;
    fake.set_rollout(NS, "web", Rollout::Slow(3));
    ok(&kc(&fake, dir.path(), &["rollout", "restart", "deployment/web"]).await);
    fake.clear_requests();
    let status = {
        let (f, d) = (fake.clone(), dir.path().to_path_buf());
        tokio::spawn(async move {
            kc(
                &f,
                &d,
                &["rollout", "status", "deployment/web", "--timeout=20s"],
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        fake.step();
        fake.kubelet_step();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = status.await.unwrap();
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Waiting for deployment \"web\" rollout to finish"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("deployment \"web\" successfully rolled out"),
        "{}",
        text(&out)
    );
    let reqs = normalise(&fake.requests());
    assert_eq!(
        reqs[0]["path"],
        "/apis/apps/v1/namespaces/default/deployments/web"
    );
    assert_eq!(reqs[1]["query"]["fieldSelector"], "metadata.name=web");
    assert_eq!(reqs[2]["query"]["watch"], "true");
    assert_eq!(reqs[2]["query"]["allowWatchBookmarks"], "true");
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_status_fails_on_a_stuck_rollout() {
    let (fake, dir) = web().await;
    fake.set_rollout(NS, "web", Rollout::Stuck);
    ok(&kc(&fake, dir.path(), &["rollout", "restart", "deployment/web"]).await);
    fake.step();
    let d = deploy(&fake, "web");
    let prog = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(
        (prog["status"].as_str(), prog["reason"].as_str()),
        (Some("False"), Some("ProgressDeadlineExceeded"))
    );
    let out = kc(
        &fake,
        dir.path(),
        &["rollout", "status", "deployment/web", "--timeout=10s"],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deployment \"web\" exceeded its progress deadline"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_undo_matches_kube_md_2_2_and_readopts_the_old_replicaset() {
    let (fake, dir) = web().await;
    let rev1 = fake.list("apps/v1", "ReplicaSet", NS)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&kc(
        &fake,
        dir.path(),
        &["set", "image", "deployment/web", "app=nginx:1.28"],
    )
    .await);
    fake.step();
    assert_eq!(
        deploy(&fake, "web")["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    fake.clear_requests();
    ok(&kc(&fake, dir.path(), &["rollout", "undo", "deployment/web"]).await);
    let reqs = normalise(&fake.requests());
    let shape: Vec<(String, String, Value)> = reqs
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().into(),
                r["path"].as_str().unwrap().into(),
                r["query"].clone(),
            )
        })
        .collect();
    let dpath = "/apis/apps/v1/namespaces/default/deployments/web".to_string();
    assert_eq!(
        shape,
        vec![
            ("GET".into(), dpath.clone(), json!({})),
            ("GET".into(), dpath.clone(), json!({})),
            (
                "GET".into(),
                "/apis/apps/v1/namespaces/default/replicasets".into(),
                json!({"labelSelector": "app=web"})
            ),
            ("PATCH".into(), dpath.clone(), json!({})),
        ]
    );
    assert_eq!(reqs[3]["content_type"], "application/json-patch+json");
    let ops = reqs[3]["body"].as_array().unwrap();
    assert_eq!(ops[0]["op"], "replace");
    assert_eq!(ops[0]["path"], "/spec/template");
    assert_eq!(
        ops[0]["value"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert!(
        ops[0]["value"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );
    assert_eq!(
        ops[1],
        json!({"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "2"}})
    );
    fake.step();
    let d = deploy(&fake, "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let rs = fake.get("apps/v1", "ReplicaSet", NS, &rev1).unwrap();
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(rs["spec"]["replicas"], 2);
    assert_eq!(
        fake.list("apps/v1", "ReplicaSet", NS).len(),
        2,
        "no third ReplicaSet"
    );
    // Undoing to the current template is skipped without a PATCH.
    fake.clear_requests();
    let out = kc(
        &fake,
        dir.path(),
        &["rollout", "undo", "deployment/web", "--to-revision=3"],
    )
    .await;
    ok(&out);
    assert!(text(&out).contains("skipped rollback"), "{}", text(&out));
    assert!(fake.requests().iter().all(|r| r.method != "PATCH"));
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_patches_the_scale_subresource() {
    let (fake, dir) = web().await;
    let gen_before = deploy(&fake, "web")["metadata"]["generation"]
        .as_i64()
        .unwrap();
    fake.clear_requests();
    ok(&kc(
        &fake,
        dir.path(),
        &["scale", "deployment/web", "--replicas=4"],
    )
    .await);
    assert_eq!(
        normalise(&fake.requests())[1],
        json!({
            "method": "PATCH",
            "path": "/apis/apps/v1/namespaces/default/deployments/web/scale",
            "query": {},
            "content_type": "application/merge-patch+json",
            "body": {"spec": {"replicas": 4}}
        })
    );
    let d = deploy(&fake, "web");
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(
        d["metadata"]["generation"].as_i64().unwrap(),
        gen_before + 1
    );
    fake.step();
    assert_eq!(
        fake.list("apps/v1", "ReplicaSet", NS).len(),
        1,
        "no new ReplicaSet"
    );
    assert_eq!(fake.list("v1", "Pod", NS).len(), 4);
    // Precondition mode: GET + PUT /scale with the resourceVersion.
    ok(&kc(
        &fake,
        dir.path(),
        &[
            "scale",
            "deployment/web",
            "--current-replicas=4",
            "--replicas=3",
        ],
    )
    .await);
    assert_eq!(deploy(&fake, "web")["spec"]["replicas"], 3);
    let out = kc(
        &fake,
        dir.path(),
        &[
            "scale",
            "deployment/web",
            "--current-replicas=9",
            "--replicas=1",
        ],
    )
    .await;
    assert!(
        !out.status.success() && text(&out).contains("Expected replicas to be 9, was 3"),
        "{}",
        text(&out)
    );
    // Validation.
    let out = kc(
        &fake,
        dir.path(),
        &[
            "patch",
            "deployment/web",
            "--subresource=scale",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":-1}}"#,
        ],
    )
    .await;
    assert!(
        !out.status.success() && text(&out).contains("must be greater than or equal to 0"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_hpa_merge_and_validation() {
    let (fake, dir) = web().await;
    fake.put(fixtures::hpa(NS, "web", "web", 2, 5));
    fake.clear_requests();
    ok(&kc(
        &fake,
        dir.path(),
        &[
            "patch",
            "hpa",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReplicas":3,"maxReplicas":10}}"#,
        ],
    )
    .await);
    let reqs = normalise(&fake.requests());
    assert_eq!(
        reqs[1]["path"],
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web"
    );
    assert_eq!(reqs[1]["query"], json!({"fieldManager": "kubectl-patch"}));
    assert_eq!(reqs[1]["content_type"], "application/merge-patch+json");
    let h = fake
        .get("autoscaling/v2", "HorizontalPodAutoscaler", NS, "web")
        .unwrap();
    assert_eq!(
        (
            h["spec"]["minReplicas"].as_i64(),
            h["spec"]["maxReplicas"].as_i64()
        ),
        (Some(3), Some(10))
    );
    assert_eq!(h["metadata"]["generation"], 2);
    assert_eq!(h["spec"]["metrics"].as_array().unwrap().len(), 2);
    // A strategic patch of the atomic metrics list replaces it whole.
    let cpu = r#"{"spec":{"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":60}}}]}}"#;
    ok(&kc(&fake, dir.path(), &["patch", "hpa", "web", "-p", cpu]).await);
    let h = fake
        .get("autoscaling/v2", "HorizontalPodAutoscaler", NS, "web")
        .unwrap();
    assert_eq!(
        h["spec"]["metrics"].as_array().unwrap().len(),
        1,
        "metrics is atomic"
    );
    // max < min is rejected with 422.
    let out = kc(
        &fake,
        dir.path(),
        &[
            "patch",
            "hpa",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"maxReplicas":2}}"#,
        ],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is invalid") && text(&out).contains("spec.maxReplicas"),
        "{}",
        text(&out)
    );
    assert_eq!(fake.requests().last().unwrap().status, 422);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_resources_keeps_the_sidecar() {
    let (fake, dir) = web().await;
    fake.clear_requests();
    ok(&kc(
        &fake,
        dir.path(),
        &[
            "set",
            "resources",
            "deployment/web",
            "-c",
            "app",
            "--limits=cpu=200m",
        ],
    )
    .await);
    let reqs = normalise(&fake.requests());
    assert_eq!(
        reqs[1],
        json!({
            "method": "PATCH",
            "path": "/apis/apps/v1/namespaces/default/deployments/web",
            "query": {"fieldManager": "kubectl-set"},
            "content_type": "application/strategic-merge-patch+json",
            "body": {"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"name": "app", "resources": {"limits": {"cpu": "200m"}}}]
            }}}}
        })
    );
    let d = deploy(&fake, "web");
    let cs = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[1]["name"], "sidecar");
    assert_eq!(
        cs[0]["resources"],
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}})
    );
    // requests > limits: 422.
    let out = kc(
        &fake,
        dir.path(),
        &[
            "set",
            "resources",
            "deployment/web",
            "-c",
            "app",
            "--requests=cpu=300m",
        ],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("must be less than or equal to cpu limit"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_pods_by_label_waits_for_replacements() {
    let (fake, dir) = web().await;
    let before: Vec<String> = fake
        .list("v1", "Pod", NS)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().into())
        .collect();
    fake.auto_step(Duration::from_millis(200));
    fake.clear_requests();
    ok(&kc(
        &fake,
        dir.path(),
        &["delete", "pod", "-l", "app=web", "--timeout=20s"],
    )
    .await);
    let reqs = normalise(&fake.requests());
    assert_eq!(reqs[0]["query"], json!({"labelSelector": "app=web"}));
    let deletes: Vec<&Value> = reqs.iter().filter(|r| r["method"] == "DELETE").collect();
    assert_eq!(deletes.len(), 2);
    assert_eq!(
        deletes[0]["body"],
        json!({"propagationPolicy": "Background"})
    );
    assert_eq!(deletes[0]["content_type"], "application/json");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<String> = fake
        .list("v1", "Pod", NS)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().into())
        .collect();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );
}

/// web (2 pods, one per node), a DaemonSet pod, an emptyDir pod and a mirror pod on n1.
async fn drain_setup(allowed: i64) -> (FakeKube, tempfile::TempDir) {
    let (fake, dir) = web().await;
    fake.put(fixtures::daemonset("kube-system", "fluent"));
    fake.put(fixtures::daemonset_pod("kube-system", "fluent", "n1"));
    fake.put(fixtures::emptydir_pod(NS, "cache", "n1"));
    fake.put(fixtures::mirror_pod("kube-system", "etcd-n1", "n1"));
    fake.put(fixtures::pdb(NS, "web", json!({"app": "web"}), allowed));
    (fake, dir)
}

fn pods_on(fake: &FakeKube, node: &str) -> Vec<String> {
    fake.list("v1", "Pod", "")
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_blocked_by_a_pdb_retries_429_and_times_out_cordoned() {
    let (fake, dir) = drain_setup(0).await;
    let web_on_n1: Vec<String> = pods_on(&fake, "n1")
        .into_iter()
        .filter(|p| p.starts_with("web-"))
        .collect();
    assert_eq!(web_on_n1.len(), 1);
    fake.clear_requests();
    let out = kc(
        &fake,
        dir.path(),
        &[
            "drain",
            "n1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=7s",
        ],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{t}"
    );
    assert!(t.contains("will retry after 5s"), "{t}");
    assert_eq!(
        fake.get("v1", "Node", "", "n1").unwrap()["spec"]["unschedulable"],
        true,
        "stays cordoned"
    );
    assert!(fake.get("v1", "Pod", NS, &web_on_n1[0]).is_some());
    let reqs = fake.requests();
    let evictions: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.ends_with(&format!("{}/eviction", web_on_n1[0])))
        .collect();
    assert!(evictions.len() >= 2, "retried: {}", evictions.len());
    assert!(evictions.iter().all(|r| r.status == 429));
    assert_eq!(
        evictions[0].body.as_ref().unwrap(),
        &json!({"kind": "Eviction", "apiVersion": "policy/v1", "metadata": {"name": web_on_n1[0], "namespace": "default", "creationTimestamp": null}, "deleteOptions": {}})
    );
    let list = reqs.iter().find(|r| r.path == "/api/v1/pods").unwrap();
    assert_eq!(
        list.query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=n1")
    );
    // The emptyDir pod (no PDB) was evicted: it is terminating.
    assert!(
        fake.get("v1", "Pod", NS, "cache").unwrap()["metadata"]
            .get("deletionTimestamp")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_evicts_when_the_pdb_allows() {
    let (fake, dir) = drain_setup(1).await;
    fake.auto_step(Duration::from_millis(200));
    let out = kc(
        &fake,
        dir.path(),
        &[
            "drain",
            "n1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=20s",
        ],
    )
    .await;
    ok(&out);
    assert!(text(&out).contains("node/n1 drained"), "{}", text(&out));
    let left = pods_on(&fake, "n1");
    assert_eq!(
        left.len(),
        2,
        "only the DaemonSet and mirror pods stay: {left:?}"
    );
    assert!(left.contains(&"fluent-n1".to_string()) && left.contains(&"etcd-n1".to_string()));
    let pdb = fake
        .get("policy/v1", "PodDisruptionBudget", NS, "web")
        .unwrap();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert_eq!(pdb["status"]["disruptedPods"].as_object().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pods_on(&fake, "n2")
            .iter()
            .filter(|p| p.starts_with("web-"))
            .count(),
        2,
        "replacement scheduled on n2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cordon_patches_once() {
    let (fake, dir) = web().await;
    fake.clear_requests();
    ok(&kc(&fake, dir.path(), &["cordon", "n1"]).await);
    assert_eq!(
        normalise(&fake.requests()),
        vec![
            json!({"method": "GET", "path": "/api/v1/nodes/n1", "query": {}, "content_type": null, "body": null}),
            json!({"method": "PATCH", "path": "/api/v1/nodes/n1", "query": {}, "content_type": "application/strategic-merge-patch+json", "body": {"spec": {"unschedulable": true}}}),
        ]
    );
    fake.clear_requests();
    let out = kc(&fake, dir.path(), &["cordon", "n1"]).await;
    ok(&out);
    assert!(text(&out).contains("already cordoned"), "{}", text(&out));
    assert!(fake.requests().iter().all(|r| r.method != "PATCH"));
}

#[tokio::test(flavor = "multi_thread")]
async fn strategic_merge_agrees_with_kubectl_patch_local() {
    let dir = tempfile::tempdir().unwrap();
    let mut dep = fixtures::deployment(NS, "web", 2, "nginx:1.27");
    dep["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
    dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}]);
    dep["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]);
    dep["metadata"]["annotations"] = json!({"a": "1", "b": "2"});
    let hpa = fixtures::hpa(NS, "web", "web", 2, 5);
    let cases: Vec<(&str, &Value, Value)> = vec![
        (
            "container resources merge (kubectl set resources)",
            &dep,
            json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "app", "resources": {"limits": {"cpu": "200m"}}}]}}}}),
        ),
        (
            "env by name",
            &dep,
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "B", "value": "x"}, {"name": "C", "value": "y"}]}]}}}}),
        ),
        (
            "null deletes",
            &dep,
            json!({"metadata": {"annotations": {"a": null}}, "spec": {"template": {"spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": null}}}]}}}}),
        ),
        (
            "$setElementOrder reorders and places a new element",
            &dep,
            json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "init"}, {"name": "app"}],
            "containers": [{"name": "init", "image": "busybox"}]}}}}),
        ),
        (
            "volumeMounts by mountPath",
            &dep,
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "volumeMounts": [{"mountPath": "/tmp", "name": "data", "readOnly": true}, {"mountPath": "/cache", "name": "tmp"}]}]}}}}),
        ),
        (
            "$patch delete in a merge list, ports by containerPort",
            &dep,
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"},
            {"name": "app", "ports": [{"containerPort": 9090, "name": "metrics"}]}]}}}}),
        ),
        (
            "volumes by name, atomic args",
            &dep,
            json!({"spec": {"template": {"spec": {
            "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory"}}],
            "containers": [{"name": "sidecar", "args": ["sleep", "10"]}]}}}}),
        ),
        (
            "patch list order for new and existing elements",
            &dep,
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "9"}]}]}}}}),
        ),
        (
            "$patch replace on a map",
            &dep,
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "resources": {"$patch": "replace", "limits": {"cpu": "1"}}}]}}}}),
        ),
        (
            "finalizers merge as a set",
            &dep,
            json!({"metadata": {"finalizers": ["b", "a"]}}),
        ),
        (
            "HPA metrics are atomic",
            &hpa,
            json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}}),
        ),
        (
            "restart annotation",
            &dep,
            json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-26T09:41:57Z"}}}}}),
        ),
    ];
    let mut failures = Vec::new();
    for (name, obj, patch) in cases {
        let ours = fake_kube::smp::apply(obj, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        let theirs = kubectl_smp(dir.path(), obj, &patch);
        let (ours, theirs) = (
            fake_kube::store::normalize(&ours),
            fake_kube::store::normalize(&theirs),
        );
        if ours != theirs {
            failures.push(format!("{name}:\n fake:    {ours}\n kubectl: {theirs}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_resource_version_is_a_409_conflict() {
    let (fake, dir) = web().await;
    let stale = deploy(&fake, "web");
    fake.step(); // nothing changes: same resourceVersion
    ok(&kc(
        &fake,
        dir.path(),
        &["scale", "deployment/web", "--replicas=3"],
    )
    .await);
    // PUT with the old resourceVersion (kubectl replace).
    let file = dir.path().join("stale.json");
    std::fs::write(&file, stale.to_string()).unwrap();
    let out = kc(
        &fake,
        dir.path(),
        &["replace", "--validate=false", "-f", file.to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "the object has been modified; please apply your changes to the latest version"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(fake.requests().last().unwrap().status, 409);
    // A patch carrying metadata.resourceVersion.
    let url = format!(
        "{}/apis/apps/v1/namespaces/default/deployments/web",
        fake.url()
    );
    let rv = stale["metadata"]["resourceVersion"].as_str().unwrap();
    let resp = http()
        .patch(&url)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"metadata": {"resourceVersion": rv, "labels": {"x": "y"}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            body["kind"].as_str(),
            body["reason"].as_str(),
            body["code"].as_i64()
        ),
        (Some("Status"), Some("Conflict"), Some(409))
    );
    // Unsupported patch type.
    let resp = http()
        .patch(&url)
        .header("content-type", "application/apply-patch+yaml")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    // An injected 429 carries Retry-After.
    fake.fail("GET", "/deployments/web", 429, 1);
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(
        http().get(&url).send().await.unwrap().status().as_u16(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_events_and_expires_old_resource_versions() {
    let (fake, _dir) = web().await;
    let url = format!("{}/apis/apps/v1/namespaces/default/deployments", fake.url());
    let rv = deploy(&fake, "web")["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let watch = {
        let url = format!(
            "{url}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=2&fieldSelector=metadata.name%3Dweb"
        );
        tokio::spawn(async move { http().get(url).send().await.unwrap().text().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = deploy(&fake, "web");
    d["spec"]["replicas"] = json!(5);
    fake.put(d);
    let events: Vec<Value> = watch
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        types.contains(&"MODIFIED") && types.contains(&"BOOKMARK"),
        "{types:?}"
    );
    let m = events.iter().find(|e| e["type"] == "MODIFIED").unwrap();
    assert_eq!(m["object"]["spec"]["replicas"], 5);
    // After compaction an old resourceVersion is expired (an ERROR event with a 410 Status, as
    // the apiserver's watch cache answers; kube-runtime's watcher then re-lists).
    fake.compact();
    let body = http()
        .get(format!("{url}?watch=true&resourceVersion={rv}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ev: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(
        (
            ev["object"]["code"].as_i64(),
            ev["object"]["reason"].as_str()
        ),
        (Some(410), Some("Expired"))
    );
    // kubectl copes with a watch that starts from the list it just made.
    let out = kc(
        &fake,
        _dir.path(),
        &["get", "deployments", "--watch", "--request-timeout=2s"],
    )
    .await;
    assert!(text(&out).contains("web"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_pages_with_limit_and_continue() {
    let fake = FakeKube::start_with(Options {
        page_size: Some(2),
        ..Options::default()
    })
    .await;
    for i in 0..5 {
        fake.put(fixtures::bare_pod(NS, &format!("p{i}"), "n1"));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = kc(
        &fake,
        dir.path(),
        &["get", "pods", "--chunk-size=2", "-o", "name"],
    )
    .await;
    ok(&out);
    let names: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(
        names,
        vec!["pod/p0", "pod/p1", "pod/p2", "pod/p3", "pod/p4"]
    );
    let lists: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/namespaces/default/pods")
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(
        lists
            .iter()
            .all(|r| r.query.get("limit").map(String::as_str) == Some("2"))
    );
    assert!(!lists[0].query.contains_key("continue") && lists[1].query.contains_key("continue"));
    // The option caps bigger pages too; a cluster-wide list works.
    let out = kc(&fake, dir.path(), &["get", "pods", "-A", "-o", "name"]).await;
    ok(&out);
    assert_eq!(std::str::from_utf8(&out.stdout).unwrap().lines().count(), 5);
    assert!(fake.requests().iter().any(
        |r| r.path == "/api/v1/pods" && r.query.get("limit").map(String::as_str) == Some("500")
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_scale_set_resources_and_cordon_are_the_same_for_kubectl_1_27_to_1_33() {
    let mut traces = Vec::new();
    for minor in 27..=33 {
        let fake = FakeKube::start_with(Options {
            minor: minor.to_string(),
            ..Options::default()
        })
        .await;
        fake.put(fixtures::deployment(NS, "web", 1, "nginx:1.27"));
        fake.put(fixtures::node("n1"));
        fake.step();
        fake.clear_requests();
        let dir = tempfile::tempdir().unwrap();
        for args in [
            &["rollout", "restart", "deployment/web"][..],
            &["scale", "deployment/web", "--replicas=3"],
            &[
                "set",
                "resources",
                "deployment/web",
                "-c",
                "app",
                "--limits=memory=512Mi",
            ],
            &["cordon", "n1"],
        ] {
            ok(&kc(&fake, dir.path(), args).await);
        }
        let reqs = fake.requests();
        let ua = reqs
            .iter()
            .rev()
            .find_map(|r| r.user_agent.clone())
            .unwrap_or_default();
        assert!(
            ua.contains(&format!("v1.{minor}.")),
            "minor {minor} dispatched to {ua}"
        );
        traces.push((minor, normalise(&reqs)));
    }
    let reference = traces.iter().find(|(m, _)| *m == 32).unwrap().1.clone();
    let writes = reference.iter().filter(|r| r["method"] == "PATCH").count();
    assert_eq!(
        writes, 4,
        "restart, scale, set resources, cordon: {reference:#?}"
    );
    for (minor, t) in &traces {
        assert_eq!(t, &reference, "kubectl 1.{minor} differs from 1.32");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_client_works_against_the_fake() {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let (fake, dir) = drain_setup(0).await;
    let kc_path = fake.kubeconfig(dir.path());
    let kubeconfig = kube::config::Kubeconfig::read_from(&kc_path).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let d = deploys.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let listed = pods
        .list(&ListParams::default().labels("app in (web)").limit(1))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.metadata.continue_.is_some());
    // Eviction blocked by the PDB: 429 with the DisruptionBudget cause.
    let victim = listed.items[0].metadata.name.clone().unwrap();
    let eviction = k8s_openapi::api::policy::v1::Eviction {
        metadata: kube::api::ObjectMeta {
            name: Some(victim.clone()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        delete_options: None,
    };
    let err = pods
        .create_subresource::<_, kube::core::Status>(
            "eviction",
            &victim,
            &PostParams::default(),
            &eviction,
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests")),
        other => panic!("{other:?}"),
    }
    // A watcher sees the controller's status updates.
    let stream = kube::runtime::watcher(
        deploys.clone(),
        kube::runtime::watcher::Config::default().fields("metadata.name=web"),
    );
    let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("web"));
    fake.step();
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.status.unwrap().updated_replicas, Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_mode_denies_with_403_and_records_attributes() {
    let fake = FakeKube::start_with(Options {
        rbac: true,
        ..Options::default()
    })
    .await;
    fake.put(fixtures::deployment(NS, "web", 1, "nginx:1.27"));
    fake.step();
    fake.set_authorizer(|a| {
        a.resource == "deployments" && a.subresource.is_empty() && a.verb == "get"
    });
    let dir = tempfile::tempdir().unwrap();
    let out = kc(
        &fake,
        dir.path(),
        &["scale", "deployment/web", "--replicas=2"],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("forbidden"), "{}", text(&out));
    let denied = fake.denied();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(
        denied[0],
        fake_kube::Attributes {
            verb: "patch".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            namespace: NS.into(),
            name: "web".into(),
        }
    );
    // Pod logs are text/plain.
    let pod = fake.list("v1", "Pod", NS)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    fake.set_pod_log(NS, &pod, "hello\n");
    fake.set_authorizer(|_| true);
    let out = kc(&fake, dir.path(), &["logs", &pod, "-c", "app"]).await;
    ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn old_replicasets_beyond_the_revision_history_limit_are_removed_oldest_first() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let fake = FakeKube::start().await;
        let dir = tempfile::tempdir().unwrap();
        fake.put(fixtures::node("n1"));
        let mut d = fixtures::deployment(NS, "web", 2, "nginx:1.27");
        d["spec"]["revisionHistoryLimit"] = json!(2);
        fake.put(d);
        fake.step();
        for (i, image) in ["nginx:1.28", "nginx:1.29", "nginx:1.30", "nginx:1.31"]
            .iter()
            .enumerate()
        {
            ok(&kc(
                &fake,
                dir.path(),
                &["set", "image", "deployment/web", &format!("app={image}")],
            )
            .await);
            fake.step();
            fake.step();
            let kept = fake.list("apps/v1", "ReplicaSet", NS).len();
            assert_eq!(kept, (i + 2).min(3), "after revision {}", i + 2);
        }
        // kubectl reads the same history: revisions 3 and 4 kept, 5 current.
        let out = kc(&fake, dir.path(), &["rollout", "history", "deployment/web"]).await;
        ok(&out);
        let revs: Vec<String> = text(&out)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.parse::<i64>().is_ok())
            .map(str::to_string)
            .collect();
        assert_eq!(revs, ["3", "4", "5"], "{}", text(&out));
    })
    .await
    .expect("within 120 s");
}
