//! Fixture builders (plain JSON; `FakeKube::put` stores them).
#![allow(dead_code)]

use serde_json::{Value, json};

/// `app=<name>` everywhere; containers `app` (requests cpu 100m / memory 128Mi, limits cpu 500m /
/// memory 256Mi) and `sidecar`; progressDeadlineSeconds 600; RollingUpdate 25%/25%.
pub fn deployment(ns: &str, name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "500m", "memory": "256Mi"}
                            }
                        },
                        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]}
                    ],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30
                }
            }
        }
    })
}

/// `d` as Argo CD applies it for Application `app`: its tracking annotation
/// (`APP:GROUP/KIND:NAMESPACE/NAME`, the default since Argo CD 3.0) and the instance label.
pub fn argo_cd(mut d: Value, app: &str) -> Value {
    let (ns, name) = (
        d["metadata"]["namespace"].clone(),
        d["metadata"]["name"].clone(),
    );
    let id = format!(
        "{app}:apps/Deployment:{}/{}",
        ns.as_str().unwrap_or_default(),
        name.as_str().unwrap_or_default()
    );
    d["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = json!(id);
    d["metadata"]["labels"]["app.kubernetes.io/instance"] = json!(app);
    d
}

/// `d` as Flux's kustomize-controller applies it for Kustomization `ks_ns/ks`.
pub fn flux(mut d: Value, ks_ns: &str, ks: &str) -> Value {
    d["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] = json!(ks);
    d["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"] = json!(ks_ns);
    d
}

/// `d` as Flux's helm-controller installs it for HelmRelease `hr_ns/hr`.
pub fn flux_helm(mut d: Value, hr_ns: &str, hr: &str) -> Value {
    d["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] = json!(hr);
    d["metadata"]["labels"]["helm.toolkit.fluxcd.io/namespace"] = json!(hr_ns);
    d["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("Helm");
    d
}

/// A Ready, schedulable node.
pub fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
            "nodeInfo": {"kubeletVersion": "v1.32.4"}
        }
    })
}

/// autoscaling/v2 HPA with a cpu Utilization 80 metric and a memory AverageValue metric.
pub fn hpa(ns: &str, name: &str, target_deploy: &str, min: i64, max: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target_deploy},
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "512Mi"}}}
            ]
        }
    })
}

/// A PDB (minAvailable 1) whose status is already observed: `disruptionsAllowed` as given,
/// desiredHealthy 1, currentHealthy 1 + allowed.
pub fn pdb(ns: &str, name: &str, match_labels: Value, disruptions_allowed: i64) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": match_labels}},
        "status": {
            "observedGeneration": 1,
            "disruptionsAllowed": disruptions_allowed,
            "currentHealthy": 1 + disruptions_allowed,
            "desiredHealthy": 1,
            "expectedPods": 1 + disruptions_allowed,
            "conditions": [{
                "type": "DisruptionAllowed",
                "status": if disruptions_allowed > 0 { "True" } else { "False" },
                "reason": if disruptions_allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1
            }]
        }
    })
}

pub fn daemonset(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": "registry.k8s.io/pause:3.10"}]}
            }
        }
    })
}

/// A running, ready pod on `node`. `owner`: (kind, name) of its controller, if any.
pub fn pod(ns: &str, name: &str, node: &str, labels: Value, owner: Option<(&str, &str)>) -> Value {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "busybox:1.36"}],
            "terminationGracePeriodSeconds": 30
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "PodScheduled", "status": "True"}
            ]
        }
    });
    if let Some((kind, oname)) = owner {
        let api_version = if kind == "Node" { "v1" } else { "apps/v1" };
        p["metadata"]["ownerReferences"] = json!([{
            "apiVersion": api_version,
            "kind": kind,
            "name": oname,
            "uid": format!("00000000-0000-4000-8000-{:012x}", super::store::fnv(oname) & 0xffff_ffff_ffff),
            "controller": true,
            "blockOwnerDeletion": true
        }]);
    }
    p
}

/// A pod of DaemonSet `ds` on `node`, named `<ds>-<node>` (put the DaemonSet too, via `daemonset`).
pub fn daemonset_pod(ns: &str, ds: &str, node: &str) -> Value {
    pod(
        ns,
        &format!("{ds}-{node}"),
        node,
        json!({"app": ds}),
        Some(("DaemonSet", ds)),
    )
}

/// A pod without any owner reference.
pub fn bare_pod(ns: &str, name: &str, node: &str) -> Value {
    pod(ns, name, node, json!({"run": name}), None)
}

/// A static pod's mirror (annotation `kubernetes.io/config.mirror`, owned by the Node).
pub fn mirror_pod(ns: &str, name: &str, node: &str) -> Value {
    let mut p = pod(
        ns,
        name,
        node,
        json!({"component": name}),
        Some(("Node", node)),
    );
    p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "0123456789abcdef", "kubernetes.io/config.source": "file"});
    p
}

/// A ReplicaSet-owned (by `<name>-rs`, not stored) pod with an emptyDir volume.
pub fn emptydir_pod(ns: &str, name: &str, node: &str) -> Value {
    let mut p = pod(
        ns,
        name,
        node,
        json!({"app": name}),
        Some(("ReplicaSet", &format!("{name}-rs"))),
    );
    p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "scratch", "mountPath": "/scratch"}]);
    p
}

/// A namespace.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}
