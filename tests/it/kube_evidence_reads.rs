//! The read-only evidence of runbook procedure 5 (`kube_network_evidence`) and of level 3
//! (`kube_cluster_evidence`) against the fake API server, with kubectl as the oracle for what
//! is read (`kubectl get svc/X endpoints/X`, `kubectl get networkpolicy,ingress`, `kubectl get
//! nodes`, `kubectl get --raw /readyz`, `kubectl get events -A --field-selector type=Warning`).
//!
//! What the fake cannot prove: it has no endpoints controller (the tests write the Endpoints and
//! EndpointSlices a Service would have), and it does not run the API server's health checks
//! (`/readyz` answers what the test sets, in the real server's format).

use std::collections::BTreeSet;
use std::time::Duration;

use remedyd::adapters::action::{ActionRequest, Executors, Outcome};
use serde_json::{Value, json};

use crate::support::fake_kube::{FakeKube, fixtures};
use crate::support::kubectl;

const NS: &str = "python-services";

struct Env {
    fake: FakeKube,
    dir: tempfile::TempDir,
    exec: Executors,
}

impl Env {
    async fn new() -> Self {
        let fake = FakeKube::start().await;
        let dir = tempfile::tempdir().unwrap();
        let exec = Executors::builtin_for(Some(fake.kubeconfig(dir.path())));
        Env { fake, dir, exec }
    }
    async fn run(&self, action: &str, params: Value, target: (&str, &str)) -> Outcome {
        let mut vars = remedyd::domain::template::Vars::new();
        vars.insert("target.namespace".into(), target.0.into());
        vars.insert("target.name".into(), target.1.into());
        let req = ActionRequest {
            incident: "INC-2026-0001".into(),
            step: "s".into(),
            action: action.into(),
            params,
            vars,
        };
        let e = self.exec.get(action).expect("registered");
        e.validate(&req.params).expect("valid params");
        tokio::time::timeout(Duration::from_secs(60), e.execute(&req))
            .await
            .expect("the action finishes within 60 s")
    }
    /// Paths of the resource requests (no discovery), and whether any was not a GET.
    fn reads(&self) -> (BTreeSet<String>, Vec<String>) {
        let reqs = self.fake.requests();
        let writes = reqs
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        let paths = reqs
            .iter()
            .filter(|r| !kubectl::is_discovery(&r.path))
            .map(|r| r.path.clone())
            .collect();
        (paths, writes)
    }
}

fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
}

fn network(e: &Env) {
    e.fake.put(service(NS, "web"));
    // All of web's pods failing their readiness probe: every address is not ready.
    e.fake.put(json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": NS},
        "subsets": [{"notReadyAddresses": [{"ip": "10.1.0.5", "targetRef": {"kind": "Pod", "name": "web-abc"}}],
            "ports": [{"name": "http", "port": 8080}]}]}));
    e.fake.put(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all", "namespace": NS},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
    );
    e.fake.put(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": NS},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "gateway"}}}]}]}}),
    );
    e.fake.put(json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "public", "namespace": NS},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}));
    e.fake.put(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "admin", "namespace": NS},
        "spec": {"defaultBackend": {"service": {"name": "admin", "port": {"name": "http"}}}}}),
    );
    // Another namespace's policy is not this namespace's business.
    e.fake.put(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "elsewhere", "namespace": "payments"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_evidence_names_a_service_without_ready_endpoints_and_lists_policies_and_ingresses()
{
    let e = Env::new().await;
    network(&e);
    e.fake.clear_requests();
    let o = e.run("kube_network_evidence", json!({}), (NS, "web")).await;
    assert!(o.ok, "{o:?}");
    assert!(
        o.summary
            .contains("no ready endpoints behind svc web (1 not ready"),
        "{}",
        o.summary
    );
    assert!(
        o.summary.contains("deny-all") && o.summary.contains("routing to web: public"),
        "{}",
        o.summary
    );
    let ev = &o.detail["evidence"];
    assert_eq!(ev["endpoints"]["ready"], 0);
    assert_eq!(
        ev["endpoints"]["not_ready_addresses"][0],
        "10.1.0.5 (web-abc)"
    );
    let names: BTreeSet<&str> = ev["network_policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["allow-web", "deny-all"]));
    let allow = ev["network_policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "allow-web")
        .unwrap();
    assert_eq!(allow["pod_selector"]["matchLabels"]["app"], "web");
    assert_eq!(allow["policy_types"], json!(["Ingress"]));
    let ing = ev["ingresses"].as_array().unwrap();
    let public = ing.iter().find(|i| i["name"] == "public").unwrap();
    assert_eq!(public["hosts"], json!(["web.example.com"]));
    assert_eq!(public["to_service"], true);
    let admin = ing.iter().find(|i| i["name"] == "admin").unwrap();
    assert_eq!(admin["to_service"], false);
    assert_eq!(admin["backends"], json!(["(default) admin:http"]));
    // Lists only: nothing written.
    let (paths, writes) = e.reads();
    assert!(writes.is_empty(), "{writes:?}");
    // The oracle: every object kubectl reads for the same question, remedyd reads too.
    e.fake.clear_requests();
    for args in [
        &["-n", NS, "get", "svc/web", "endpoints/web", "-o", "json"][..],
        &["-n", NS, "get", "networkpolicy,ingress", "-o", "json"][..],
    ] {
        let out = kubectl::kubectl_async(&e.fake, e.dir.path(), args).await;
        assert!(out.status.success(), "{}", kubectl::text(&out));
    }
    let (kubectl_paths, _) = e.reads();
    assert!(
        kubectl_paths.is_subset(&paths),
        "kubectl read {kubectl_paths:?}, remedyd {paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_evidence_counts_ready_endpoint_slices_and_reads_kube_dns_in_kube_system() {
    let e = Env::new().await;
    e.fake.put(service("kube-system", "kube-dns"));
    e.fake.put(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns-x1", "namespace": "kube-system",
            "labels": {"kubernetes.io/service-name": "kube-dns"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.2"], "conditions": {"ready": true}},
            {"addresses": ["10.1.0.3"], "conditions": {"ready": false}}]}),
    );
    // Another Service's slice is not counted.
    e.fake.put(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "metrics-x1", "namespace": "kube-system",
            "labels": {"kubernetes.io/service-name": "metrics"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.9"]}]}),
    );
    let o = e
        .run(
            "kube_network_evidence",
            json!({"namespace": "kube-system", "service": "kube-dns"}),
            ("", "coredns"),
        )
        .await;
    assert!(o.ok, "{o:?}");
    assert!(
        o.summary
            .contains("svc kube-dns: 1 ready endpoint(s), 1 not ready"),
        "{}",
        o.summary
    );
    assert!(e.reads().1.is_empty());
    // Any other namespace comes from the target (and limits.namespaces), never from `with:`.
    let v = e
        .exec
        .get("kube_network_evidence")
        .unwrap()
        .validate(&json!({"namespace": "payments"}));
    assert!(v.is_err(), "{v:?}");
    // A workload target in kube-system is refused, as for every workload action.
    let o = e
        .run(
            "kube_network_evidence",
            json!({}),
            ("kube-system", "kube-dns"),
        )
        .await;
    assert!(!o.ok, "{o:?}");
}

fn node(name: &str, conditions: Value) -> Value {
    let mut n = fixtures::node(name);
    n["status"]["conditions"] = conditions;
    n
}

fn warning(ns: &str, i: usize, typ: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("ev-{ns}-{i}"), "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": format!("pod-{i}"), "namespace": ns},
        "type": typ, "reason": format!("R{i}"), "message": "m", "count": 1,
        "lastTimestamp": format!("2026-11-26T10:{:02}:00Z", i)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_evidence_names_sick_nodes_a_failing_readyz_and_the_newest_warnings() {
    let e = Env::new().await;
    let ok =
        json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]);
    e.fake.put(node("node-1", ok));
    e.fake.put(node(
        "node-2",
        json!([{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]),
    ));
    e.fake.put(node(
        "node-3",
        json!([{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "True"}]),
    ));
    e.fake.set_health(
        "/readyz",
        500,
        "[+]ping ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\nreadyz check failed\n",
    );
    for i in 0..12 {
        e.fake.put(warning(NS, i, "Warning"));
        e.fake.put(warning("payments", 20 + i, "Warning"));
        e.fake.put(warning("payments", 40 + i, "Normal"));
    }
    e.fake.clear_requests();
    let o = e
        .run(
            "kube_cluster_evidence",
            json!({"events": 5}),
            ("", "cluster"),
        )
        .await;
    assert!(o.ok, "{o:?}");
    let s = &o.summary;
    assert!(s.contains("3 node(s), 1 NotReady"), "{s}");
    assert!(s.contains("node-2 NotReady (NodeStatusUnknown)"), "{s}");
    assert!(s.contains("node-3 MemoryPressure"), "{s}");
    assert!(
        s.contains("/readyz failing (500): [-]etcd failed: reason withheld"),
        "{s}"
    );
    assert!(!s.contains("/livez failing"), "{s}");
    let ev = &o.detail["evidence"];
    assert_eq!(ev["readyz"]["status"], 500);
    assert_eq!(ev["livez"]["status"], 200);
    // Nodes with problems first.
    assert_eq!(ev["nodes"][2]["name"], "node-1");
    // Warnings only, from every namespace, newest first, capped at 5.
    assert_eq!(ev["warning_events_total"], 24);
    let got: Vec<&str> = ev["warning_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["R31", "R30", "R29", "R28", "R27"]);
    let (paths, writes) = e.reads();
    assert!(writes.is_empty(), "{writes:?}");
    let ev_req = e
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/events")
        .expect("events listed across namespaces");
    assert_eq!(
        ev_req.query.get("fieldSelector").map(String::as_str),
        Some("type=Warning")
    );
    // The oracle: what kubectl reads for the same checks, remedyd reads too.
    e.fake.clear_requests();
    for args in [
        &["get", "nodes", "-o", "json"][..],
        &["get", "--raw", "/livez"][..],
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "type=Warning",
            "-o",
            "json",
        ][..],
    ] {
        let out = kubectl::kubectl_async(&e.fake, e.dir.path(), args).await;
        assert!(out.status.success(), "{args:?}: {}", kubectl::text(&out));
    }
    let (kubectl_paths, _) = e.reads();
    assert!(
        kubectl_paths.is_subset(&paths),
        "kubectl read {kubectl_paths:?}, remedyd {paths:?}"
    );
}

/// `web`'s Deployment, its pods made by the fake's controller, and a PodMetrics for each pod as
/// metrics-server would write it (CPU in nanocores, memory in KiB).
fn web_with_usage(e: &Env) -> Vec<String> {
    e.fake.put(fixtures::node("node-1"));
    e.fake
        .put(fixtures::deployment(NS, "web", 2, "registry.local/web:1.0"));
    e.fake.step();
    e.fake.step();
    let pods: Vec<String> = e
        .fake
        .list("v1", "Pod", NS)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    assert_eq!(pods.len(), 2, "the fake's controller made web's pods");
    for p in &pods {
        e.fake.put(
            json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
            "metadata": {"name": p, "namespace": NS, "labels": {"app": "web"}},
            "timestamp": "2026-11-28T10:00:00Z", "window": "15s",
            "containers": [{"name": "app", "usage": {"cpu": "870123456n", "memory": "507084Ki"}},
                           {"name": "sidecar", "usage": {"cpu": "1m", "memory": "2Mi"}}]}),
        );
    }
    // Another Deployment's pod is not web's.
    e.fake.put(
        json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
        "metadata": {"name": "api-1", "namespace": NS, "labels": {"app": "api"}},
        "containers": [{"name": "app", "usage": {"cpu": "5", "memory": "1Gi"}}]}),
    );
    pods
}

/// The metrics requests in the fake's log, as (path, query).
fn metrics_reads(e: &Env) -> Vec<(String, Vec<(String, String)>)> {
    e.fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.path
                .starts_with("/apis/metrics.k8s.io/v1beta1/namespaces/")
        })
        .map(|r| (r.path.clone(), r.query.clone().into_iter().collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_reads_usage_per_container_from_metrics_k8s_io_as_kubectl_top_pod_does() {
    let e = Env::new().await;
    let pods = web_with_usage(&e);
    e.fake.clear_requests();
    let o = e.run("kube_evidence", json!({}), (NS, "web")).await;
    assert!(o.ok, "{o:?}");
    let usage = &o.detail["evidence"]["usage"];
    for p in &pods {
        assert_eq!(usage[p]["app"]["cpu_millicores"], 870.1, "{usage}");
        assert_eq!(usage[p]["app"]["memory_mib"], 495.2, "{usage}");
        assert_eq!(usage[p]["sidecar"]["cpu_millicores"], 1.0, "{usage}");
        assert_eq!(usage[p]["sidecar"]["memory_mib"], 2.0, "{usage}");
    }
    assert!(usage.get("api-1").is_none(), "only web's pods: {usage}");
    let ours = metrics_reads(&e);
    assert_eq!(ours.len(), 1, "{ours:?}");

    // The oracle: kubectl top pod -l app=web sends the same metrics request.
    e.fake.clear_requests();
    let out = kubectl::kubectl_async(
        &e.fake,
        e.dir.path(),
        &["top", "pod", "-n", NS, "-l", "app=web"],
    )
    .await;
    assert!(out.status.success(), "{}", kubectl::text(&out));
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        shown.contains(&pods[0]) && !shown.contains("api-1"),
        "{shown}"
    );
    let theirs = metrics_reads(&e);
    assert_eq!(
        theirs.first(),
        ours.first(),
        "kubectl's metrics request: {theirs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_says_so_when_metrics_k8s_io_is_not_served() {
    for status in [404, 503] {
        let e = Env::new().await;
        web_with_usage(&e);
        e.fake.fail("GET", "/apis/metrics.k8s.io/", status, 100);
        let o = e.run("kube_evidence", json!({}), (NS, "web")).await;
        assert!(o.ok, "evidence goes on without usage: {o:?}");
        assert_eq!(
            o.detail["evidence"]["usage"], "metrics.k8s.io is not served: no usage figures",
            "{status}"
        );
        assert!(
            o.detail["evidence"]["pods"]
                .as_array()
                .is_some_and(|p| p.len() == 2)
        );
    }
}
