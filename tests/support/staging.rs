//! The Kubernetes staging suite: the workload actions on a Deployment of `pause` containers in a
//! namespace of its own, through the API only. `tests/it/kube_actions.rs` runs it against the
//! fake API server on every run (so the suite itself is known to work); the opt-in target
//! `tests/staging.rs` runs it against a real cluster (`REMEDYD_TEST_KUBECONFIG`, by hand).

use std::path::PathBuf;

use remedyd::adapters::action::{ActionRequest, Executors};
use serde_json::{Value, json};

use super::fake_kube::fixtures;

/// A request for `action` on the Deployment `target` (namespace, name).
fn request(action: &str, params: Value, target: (&str, &str)) -> ActionRequest {
    let mut vars = remedyd::domain::template::Vars::new();
    vars.insert("target.namespace".into(), target.0.into());
    vars.insert("target.name".into(), target.1.into());
    vars.insert("target.kind".into(), "deployment".into());
    ActionRequest {
        incident: "INC-2026-0001".into(),
        step: "s".into(),
        action: action.into(),
        params,
        vars,
    }
}

/// The staging suite: the workload actions, in order, on a Deployment it creates in a namespace
/// of its own (`remedyd-test-<pid>`), which it deletes at the end. Only the API is used, so it
/// runs against a real cluster (`REMEDYD_TEST_KUBECONFIG`, by hand, with real controllers) and
/// against the fake (every run, so the suite itself is known to work). Drain is left out: on a
/// real cluster it would disturb other workloads.
pub async fn suite(kubeconfig: PathBuf) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", kubeconfig.display()));
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("a usable kubeconfig");
    let client = kube::Client::try_from(cfg).expect("a client");
    let exec = Executors::builtin_for(Some(kubeconfig));
    let ns = format!("remedyd-test-{}", std::process::id());
    let nss: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    nss.create(
        &Default::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
    )
    .await
    .expect("creating the test namespace");
    let deps: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(client.clone(), &ns);
    let pause = "registry.k8s.io/pause:3.9";
    let mut d = fixtures::deployment(&ns, "web", 2, pause);
    d["spec"]["template"]["spec"]["containers"][1]["image"] = json!(pause);
    d["spec"]["template"]["spec"]["containers"][1]["args"] = json!([]);
    deps.create(&Default::default(), &serde_json::from_value(d).unwrap())
        .await
        .expect("creating the test Deployment");
    let steps = [
        ("kube_rollout_status", json!({"wait": "3m"})),
        ("kube_evidence", json!({})),
        ("kube_rollout_restart", json!({"wait": "3m"})),
        ("kube_scale", json!({"replicas": 3, "max": 4, "wait": "3m"})),
        (
            "kube_set_resources",
            json!({"containers": ["app"], "limits": {"memory": "+50%"}, "max": {"memory": "1Gi"}, "wait": "3m"}),
        ),
        ("kube_rollout_undo", json!({"wait": "3m"})),
        (
            "kube_delete_pods",
            json!({"deployment": "web", "max_share": 0.5, "wait": "3m"}),
        ),
    ];
    for (action, params) in steps {
        let req = request(action, params, (&ns, "web"));
        let e = exec.get(action).unwrap();
        e.validate(&req.params).unwrap();
        let o = e.execute(&req).await;
        assert!(o.ok, "{action}: {o:?}");
    }
    let web = deps.get("web").await.unwrap();
    let spec = web.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let limits = spec.template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    // Undone: back to the template before set_resources (memory limit 256Mi).
    assert_eq!(limits["memory"].0, "256Mi");
    let _ = nss.delete(&ns, &Default::default()).await;
}
