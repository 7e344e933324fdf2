//! The API server's answers that `kube_evidence` reads (the pods list, a container's log, the
//! events, `metrics.k8s.io`'s PodMetrics, the Deployment) and `kube_network_evidence` reads (the
//! Service, its Endpoints and EndpointSlices, NetworkPolicies, Ingresses), each corrupted in turn
//! through the
//! fake API server's `answer_raw` switch. Whatever comes back, the evidence is bounded (no string
//! of it is longer than a log excerpt, the record is at most 1 MiB), the summary is one line
//! naming the Deployment, and once redacted as the engine does, a secret a log held is gone.

use remedyd::adapters::action::{ActionRequest, Executors};
use remedyd::domain::redact::{redact, redact_json};
use serde_json::{Value, json};

use super::mutate::{
    CONTENT_TYPES, Figures, Rng, absurd, body, cases, mutate_json, one_line, run_cases, short,
};
use super::probe::SECRETS;
use crate::support::fake_kube::{FakeKube, fixtures};

/// Characters of one container's log kept in the evidence (remedyd's `LOG_CHARS`).
const LOG_CHARS: usize = 16 * 1024;
/// Characters of any other string of the evidence (a name, a reason, an event's message).
const FIELD_CHARS: usize = 1_000;

fn ns(i: usize) -> String {
    format!("fz{i:04}")
}

/// Web's two pods in `ns`: `a` ready, `b` crash-looping (restarted, waiting, last exit Error).
fn pods(ns: &str) -> [Value; 2] {
    let labels = json!({"app": "web"});
    let a = fixtures::pod(ns, "web-a", "node-1", labels.clone(), None);
    let mut b = fixtures::pod(ns, "web-b", "node-1", labels, None);
    b["status"]["conditions"][0]["status"] = json!("False");
    b["status"]["containerStatuses"] = json!([{"name": "main", "restartCount": 2, "ready": false,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]);
    [a, b]
}

fn event(ns: &str, object: (&str, &str), i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("ev-{i}"), "namespace": ns, "creationTimestamp": "2026-11-28T10:00:00Z"},
        "involvedObject": {"kind": object.0, "name": object.1, "namespace": ns},
        "type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container main",
        "count": 7, "lastTimestamp": format!("2026-11-28T10:0{i}:00Z")})
}

fn pod_metrics(ns: &str, pod: &str) -> Value {
    json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
        "metadata": {"name": pod, "namespace": ns, "labels": {"app": "web"}},
        "timestamp": "2026-11-28T10:00:00Z", "window": "15s",
        "containers": [{"name": "main", "usage": {"cpu": "870123456n", "memory": "507084Ki"}}]})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "99"}, "items": items})
}

/// A log as a crashing container might write it, corrupted: huge, binary, escapes, secrets.
fn log_text(rng: &mut Rng, planted: Option<&str>) -> Vec<u8> {
    let mut b: Vec<u8> = match rng.below(6) {
        0 => Vec::new(),
        1 => vec![b'x'; 1 << 20],
        2 => "panic: runtime error\n".repeat(20_000).into_bytes(),
        3 => vec![0xff, 0xfe, 0x00, 0x1b, b'[', b'3', b'1', b'm', b'\r'],
        4 => "\x1b[31mERROR\x1b[0m db down\r\n\t\u{202e}".as_bytes().to_vec(),
        _ => b"2026-11-28T10:00:00Z INFO starting\n2026-11-28T10:00:01Z ERROR db: connection refused\n"
            .to_vec(),
    };
    if let Some(secret) = planted {
        // At the end, where the tail the evidence keeps is.
        b.extend_from_slice(b"\n");
        b.extend_from_slice(secret.as_bytes());
        b.extend_from_slice(b"\n");
    }
    b
}

/// Checks every string and key of the evidence against its bound; the longest found.
pub(super) fn longest(v: &Value, in_logs: bool, case: usize) -> usize {
    let bound = |s: &str, logs: bool| {
        let n = s.chars().count();
        let max = if logs { LOG_CHARS + 1 } else { FIELD_CHARS };
        assert!(
            n <= max,
            "case {case}: a string of {n} characters: {:?}",
            short(s)
        );
        n
    };
    match v {
        Value::String(s) => bound(s, in_logs),
        Value::Array(a) => a
            .iter()
            .map(|x| longest(x, in_logs, case))
            .max()
            .unwrap_or(0),
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| {
                bound(k, false).max(longest(x, in_logs || k == "logs" || k == "body", case))
            })
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_evidence_reads_are_bounded_one_line_and_redacted() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let exec = Executors::builtin_for(Some(fake.kubeconfig(dir.path())));
    let n = cases(120).min(400);
    let mut rng = Rng(0x0a1e_5eed_0000_0008);
    fake.put(fixtures::node("node-1"));
    let mut plan = Vec::new();
    for i in 0..n {
        let ns = ns(i);
        fake.put(fixtures::namespace(&ns));
        let d = fixtures::deployment(&ns, "web", 2, "registry.local/web:1.0");
        fake.put(d.clone());
        let [a, b] = pods(&ns);
        fake.put(a.clone());
        fake.put(b.clone());
        for (k, o) in [("Deployment", "web"), ("Pod", "web-b")].iter().enumerate() {
            fake.put(event(&ns, *o, k));
        }
        fake.put(pod_metrics(&ns, "web-a"));
        fake.put(pod_metrics(&ns, "web-b"));
        fake.set_container_log(&ns, "web-b", "main", false, "ERROR db: connection refused");
        fake.set_container_log(&ns, "web-b", "main", true, "panic: boom");
        let status = *rng.pick(&[200, 200, 200, 200, 200, 200, 200, 403, 404, 500]);
        let ct = rng.pick(CONTENT_TYPES).to_string();
        let target = rng.below(5);
        let mut planted = None;
        let (path, bytes, times) = match target {
            0 => {
                let mut l = list("PodList", vec![a, b]);
                // The fields the summary is built from, hit often.
                for p in [
                    "/items/1/status/phase",
                    "/items/1/metadata/name",
                    "/items/1/spec/containers/0/name",
                    "/items/1/status/containerStatuses/0/state/waiting/reason",
                ] {
                    if rng.below(4) == 0
                        && let Some(slot) = l.pointer_mut(p)
                    {
                        *slot = absurd(&mut rng);
                    }
                }
                (
                    format!("/api/v1/namespaces/{ns}/pods"),
                    body(&mut rng, &l),
                    3,
                )
            }
            1 => {
                planted = (rng.below(2) == 0).then(|| *rng.pick(SECRETS));
                let text = log_text(&mut rng, planted.map(|s| s.0));
                (format!("/namespaces/{ns}/pods/web-b/log"), text, 2)
            }
            2 => {
                let l = list("EventList", vec![event(&ns, ("Deployment", "web"), 0)]);
                (
                    format!("/api/v1/namespaces/{ns}/events"),
                    body(&mut rng, &l),
                    6,
                )
            }
            3 => {
                let l = list("PodMetricsList", vec![pod_metrics(&ns, "web-a")]);
                let b = serde_json::to_vec(&mutate_json(&mut rng, &l)).unwrap_or_default();
                (
                    format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"),
                    b,
                    3,
                )
            }
            _ => {
                let mut d = d;
                d["status"] = json!({"replicas": 2, "readyReplicas": 1, "observedGeneration": 1,
                    "conditions": [{"type": "Available", "status": "True", "message": "ok"}]});
                (
                    format!("/namespaces/{ns}/deployments/web"),
                    body(&mut rng, &d),
                    3,
                )
            }
        };
        let status = if target == 1 && rng.below(2) == 0 {
            200
        } else {
            status
        };
        fake.answer_raw("GET", &path, status, &ct, bytes, times);
        let mut vars = remedyd::domain::template::Vars::new();
        vars.insert("target.namespace".into(), ns.clone());
        vars.insert("target.name".into(), "web".into());
        vars.insert("target.kind".into(), "deployment".into());
        let req = ActionRequest {
            incident: format!("INC-2026-{i:04}"),
            step: "evidence".into(),
            action: "kube_evidence".into(),
            params: json!({}),
            vars,
        };
        plan.push((req, planted.map(|s| s.1)));
    }
    let mut f = Figures::new("kubernetes evidence reads");
    let mut hidden = 0;
    let (reqs, planted): (Vec<_>, Vec<_>) = plan.into_iter().unzip();
    let outcomes = run_cases(&exec, reqs).await;
    for (i, (o, planted)) in outcomes.into_iter().zip(planted).enumerate() {
        let summary = redact(&o.summary);
        let detail = redact_json(&o.detail);
        let stored = serde_json::to_string(&detail).unwrap_or_default();
        let object = format!("{}/web", ns(i));
        assert!(one_line(&summary, 2_000), "case {i}: {:?}", short(&summary));
        assert!(
            summary.contains(&object),
            "case {i}: names {object}: {:?}",
            short(&summary)
        );
        assert!(
            stored.len() <= 1 << 20,
            "case {i}: {} bytes of evidence",
            stored.len()
        );
        longest(&detail, false, i);
        if let Some(secret) = planted {
            hidden += usize::from(o.detail.to_string().contains(secret));
            assert!(
                !stored.contains(secret) && !summary.contains(secret),
                "case {i}: {secret} kept"
            );
        }
        f.count(o.ok, &summary);
    }
    f.report();
    eprintln!(
        "fuzz kubernetes evidence reads: {hidden} planted secrets reached the raw evidence, all redacted"
    );
    assert!(hidden > 2, "the redaction must be exercised: {hidden}");
    assert!(
        f.parsed > 20 && f.refused > 5,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}

/// What `kube_network_evidence` reads in `ns` for Service `web`: the Service, its Endpoints and
/// EndpointSlice, a NetworkPolicy and an Ingress routing to it.
fn network_objects(ns: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": ns},
            "subsets": [{"notReadyAddresses": [{"ip": "10.1.0.5", "targetRef": {"kind": "Pod", "name": "web-b"}}],
                "addresses": [{"ip": "10.1.0.4", "targetRef": {"kind": "Pod", "name": "web-a"}}],
                "ports": [{"name": "http", "port": 8080}]}]}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-x1", "namespace": ns, "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.4"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "web-a"}},
                          {"addresses": ["10.1.0.5"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "web-b"}}]}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "allow-web", "namespace": ns},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "gateway"}}}]}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "public", "namespace": ns},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "web.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_network_evidence_reads_are_bounded_and_one_line() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let exec = Executors::builtin_for(Some(fake.kubeconfig(dir.path())));
    let n = cases(100).min(400);
    let mut rng = Rng(0x0a1e_5eed_0000_000a);
    let mut plan = Vec::new();
    for i in 0..n {
        let ns = format!("nw{i:04}");
        fake.put(fixtures::namespace(&ns));
        let objects = network_objects(&ns);
        for o in &objects {
            fake.put(o.clone());
        }
        let k = rng.below(objects.len());
        let list_of = |kind: &str, o: &Value| json!({"kind": format!("{kind}List"), "apiVersion": o["apiVersion"], "metadata": {}, "items": [o]});
        let (path, base) = match k {
            0 => (format!("/namespaces/{ns}/services/web"), objects[0].clone()),
            1 => (
                format!("/namespaces/{ns}/endpoints/web"),
                objects[1].clone(),
            ),
            2 => (
                format!("/namespaces/{ns}/endpointslices"),
                list_of("EndpointSlice", &objects[2]),
            ),
            3 => (
                format!("/namespaces/{ns}/networkpolicies"),
                list_of("NetworkPolicy", &objects[3]),
            ),
            _ => (
                format!("/namespaces/{ns}/ingresses"),
                list_of("Ingress", &objects[4]),
            ),
        };
        let status = *rng.pick(&[200, 200, 200, 200, 200, 200, 403, 404, 500]);
        let ct = rng.pick(CONTENT_TYPES).to_string();
        fake.answer_raw("GET", &path, status, &ct, body(&mut rng, &base), 3);
        let mut vars = remedyd::domain::template::Vars::new();
        vars.insert("target.namespace".into(), ns.clone());
        vars.insert("target.name".into(), "web".into());
        vars.insert("target.kind".into(), "deployment".into());
        plan.push(ActionRequest {
            incident: format!("INC-2026-{i:04}"),
            step: "network".into(),
            action: "kube_network_evidence".into(),
            params: json!({}),
            vars,
        });
    }
    let mut f = Figures::new("kubernetes network evidence reads");
    for (i, o) in run_cases(&exec, plan).await.into_iter().enumerate() {
        let summary = redact(&o.summary);
        let detail = redact_json(&o.detail);
        let stored = serde_json::to_string(&detail).unwrap_or_default();
        let ns = format!("nw{i:04}");
        assert!(one_line(&summary, 2_000), "case {i}: {:?}", short(&summary));
        assert!(
            summary.contains(&ns),
            "case {i}: names {ns}: {:?}",
            short(&summary)
        );
        assert!(
            stored.len() <= 1 << 20,
            "case {i}: {} bytes of evidence",
            stored.len()
        );
        longest(&detail, false, i);
        f.count(o.ok, &summary);
    }
    f.report();
    assert!(
        f.parsed > 20 && f.refused > 5,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}
