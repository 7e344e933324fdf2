//! The shipped Kubernetes manifests are what they claim to be. deploy/kubernetes/ is a kustomize
//! base with overlays (sqlite, postgres-ha, enforce); every overlay is rendered with the real
//! `kubectl kustomize` (a missing kubectl fails, never skips) and each rendered object goes
//! through the checks below:
//!
//! - every document is a known Kubernetes kind and round-trips through its k8s-openapi type
//!   (serde silently drops unknown fields, so a misspelt field shows up as a difference);
//! - the Deployment is locked down (non-root, read-only root filesystem, no privilege escalation,
//!   no capabilities, seccomp), has probes on /healthz and /readyz, resources, and a grace period
//!   longer than remedyd's shutdown timeout;
//! - the Service and the PodDisruptionBudget select its pods, the bindings name roles and a
//!   service account that exist, no rule uses `*`;
//! - the ConfigMaps carry exactly rules/*.yaml and policies/*.yaml, and what the pod mounts passes
//!   `remedyd check` with the pod's own arguments and environment;
//! - the RBAC grants each Kubernetes action's requests (reference/kube.md §2) and nothing around
//!   them (tests/support/rbac.rs evaluates it with the API server's semantics).
//!
//! What this cannot prove: that a real API server accepts the objects (admission, defaulting,
//! Pod Security), that the image exists, or that the cluster's Prometheus is at prometheus_url.
//!
//! `REMEDYD_BLESS=1 cargo nextest run --test it manifests::` regenerates the remedyd-rules and
//! remedyd-policies ConfigMaps in deploy/kubernetes/base/configmap.yaml from rules/ and policies/.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, Namespace, PersistentVolumeClaim, PodSpec, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use remedyd::domain::policy::Mode;
use remedyd::load::config::Config;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::support::rbac::Rbac;

const NAMESPACE: &str = "remedyd";
const SA: &str = "remedyd";
/// The line after which deploy/kubernetes/base/configmap.yaml is generated.
const MARKER: &str = "# --- generated from rules/*.yaml and policies/*.yaml by tests/it/manifests.rs; do not edit below ---";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The kustomize base: every object the overlays share.
fn base_dir() -> PathBuf {
    root().join("deploy/kubernetes/base")
}

/// Every overlay under deploy/kubernetes/overlays/; a new one is checked without a change here.
const OVERLAYS: [&str; 3] = ["sqlite", "postgres-ha", "enforce"];

/// One overlay as `kubectl kustomize` renders it, in a directory of its own.
struct Rendered {
    overlay: &'static str,
    dir: tempfile::TempDir,
}

impl Rendered {
    fn objects(&self) -> Objects {
        Objects::load(self.dir.path())
    }

    /// The replica count the overlay sets.
    fn replicas(&self) -> i32 {
        self.the_deployment().0.spec.unwrap().replicas.unwrap_or(1)
    }

    fn the_deployment(&self) -> (Deployment, Container) {
        let d: Deployment = self.objects().one("Deployment");
        let pod = d.spec.clone().unwrap().template.spec.unwrap();
        assert_eq!(pod.containers.len(), 1, "{}: one container", self.overlay);
        let c = pod.containers[0].clone();
        (d, c)
    }
}

/// `kubectl kustomize deploy/kubernetes/overlays/NAME`.
fn render(overlay: &'static str) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let path = root().join("deploy/kubernetes/overlays").join(overlay);
    let out = crate::support::kubectl::kubectl_offline(
        dir.path(),
        &["kustomize", path.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        path.display(),
        crate::support::kubectl::text(&out)
    );
    std::fs::remove_dir_all(dir.path().join("home")).unwrap();
    std::fs::write(dir.path().join("rendered.yaml"), &out.stdout).unwrap();
    Rendered { overlay, dir }
}

/// Every overlay, rendered.
fn overlays() -> Vec<Rendered> {
    let on_disk: Vec<String> = std::fs::read_dir(root().join("deploy/kubernetes/overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let mut sorted = on_disk.clone();
    sorted.sort();
    let mut known: Vec<&str> = OVERLAYS.to_vec();
    known.sort();
    assert_eq!(sorted, known, "add the overlay to OVERLAYS");
    OVERLAYS.iter().map(|o| render(o)).collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `*.yaml` file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The documents of a YAML file (empty and comment-only documents are skipped).
fn documents(path: &Path) -> Vec<Value> {
    serde_saphyr::from_multiple(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_kube_object(doc: &Value) -> bool {
    doc.get("apiVersion").is_some() && doc.get("kind").is_some()
}

fn kind_of(doc: &Value) -> &str {
    doc.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn name_of(doc: &Value) -> String {
    let md = &doc["metadata"];
    match md.get("namespace").and_then(Value::as_str) {
        Some(ns) => format!("{}/{}", ns, md["name"].as_str().unwrap_or("?")),
        None => md["name"].as_str().unwrap_or("?").to_string(),
    }
}

/// Paths where `a` and `b` differ (`a` missing a key, `b` missing a key, different values).
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!(
                        "{path}.{k}: dropped by the typed parse (unknown field, or misplaced)"
                    )),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}.{k}: added by the typed parse"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} in the file, {b} typed")),
        _ => {}
    }
}

/// Parses `doc` into `T` and serialises it back: the result must be the document.
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    diff(doc, &back, "", &mut out);
    if out.is_empty() {
        Ok(())
    } else {
        Err(out.join("; "))
    }
}

fn check_kind(doc: &Value) -> Result<(), String> {
    match kind_of(doc) {
        "Namespace" => round_trip::<Namespace>(doc),
        "ServiceAccount" => round_trip::<ServiceAccount>(doc),
        "ClusterRole" => round_trip::<ClusterRole>(doc),
        "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(doc),
        "Role" => round_trip::<Role>(doc),
        "RoleBinding" => round_trip::<RoleBinding>(doc),
        "ConfigMap" => round_trip::<ConfigMap>(doc),
        "Deployment" => round_trip::<Deployment>(doc),
        "Service" => round_trip::<Service>(doc),
        "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(doc),
        "Secret" => round_trip::<Secret>(doc),
        "PersistentVolumeClaim" => round_trip::<PersistentVolumeClaim>(doc),
        other => Err(format!(
            "unknown kind {other:?}: add its k8s-openapi type to check_kind"
        )),
    }
}

/// The Kubernetes objects of one directory.
struct Objects {
    docs: Vec<(PathBuf, Value)>,
}

impl Objects {
    fn load(dir: &Path) -> Objects {
        let mut docs = Vec::new();
        // kustomization.yaml is kustomize's, not an object of the cluster.
        for f in yaml_files(dir)
            .into_iter()
            .filter(|f| f.file_name().is_some_and(|n| n != "kustomization.yaml"))
        {
            for d in documents(&f) {
                docs.push((f.clone(), d));
            }
        }
        assert!(!docs.is_empty(), "{}: no documents", dir.display());
        Objects { docs }
    }

    fn all<T: DeserializeOwned>(&self, kind: &str) -> Vec<T> {
        self.docs
            .iter()
            .filter(|(_, d)| kind_of(d) == kind)
            .map(|(f, d)| {
                serde_json::from_value(d.clone())
                    .unwrap_or_else(|e| panic!("{}: {kind} {}: {e}", f.display(), name_of(d)))
            })
            .collect()
    }

    fn one<T: DeserializeOwned>(&self, kind: &str) -> T {
        let mut all = self.all::<T>(kind);
        assert_eq!(all.len(), 1, "expected exactly one {kind}");
        all.remove(0)
    }

    fn config_map(&self, name: &str) -> ConfigMap {
        self.all::<ConfigMap>("ConfigMap")
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))
    }
}

#[test]
fn every_kubernetes_document_is_a_known_kind_and_round_trips() {
    let deploy = root().join("deploy");
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in yaml_files(&deploy) {
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        // kustomize's own files, and the overlays' patches (partial objects), are checked as
        // rendered below.
        if f.file_name().is_some_and(|n| n == "kustomization.yaml")
            || rel.starts_with("deploy/kubernetes/overlays/")
        {
            continue;
        }
        // deploy/kubernetes holds only Kubernetes objects; the other files are
        // Prometheus rules and Alertmanager config, which are not.
        let kube_only = rel.starts_with("deploy/kubernetes/");
        let docs = documents(&f);
        if kube_only && docs.is_empty() {
            failures.push(format!("{rel}: no documents"));
        }
        for doc in &docs {
            if !is_kube_object(doc) {
                if kube_only {
                    failures.push(format!("{rel}: a document without apiVersion and kind"));
                }
                continue;
            }
            checked += 1;
            if let Err(e) = check_kind(doc) {
                failures.push(format!("{rel}: {} {}: {e}", kind_of(doc), name_of(doc)));
            }
        }
    }
    assert!(checked >= 13, "only {checked} objects found under deploy/");
    for r in overlays() {
        let docs = r.objects().docs;
        assert!(
            docs.len() >= 14,
            "{}: only {} objects",
            r.overlay,
            docs.len()
        );
        for (_, doc) in &docs {
            if let Err(e) = check_kind(doc) {
                failures.push(format!(
                    "overlays/{} rendered: {} {}: {e}",
                    r.overlay,
                    kind_of(doc),
                    name_of(doc)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_misspelt_field_is_caught_by_the_round_trip() {
    let doc: Value = serde_saphyr::from_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selectr: {app: x}\n",
    )
    .unwrap();
    let err = check_kind(&doc).unwrap_err();
    assert!(err.contains(".spec.selectr"), "{err}");
    let doc: Value =
        serde_saphyr::from_str("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n").unwrap();
    assert!(check_kind(&doc).unwrap_err().contains("unknown kind"));
}

#[test]
fn namespaced_objects_name_their_namespace() {
    // Without metadata.namespace, `kubectl apply` puts the object in the context's namespace.
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    let rendered = overlays();
    let all = [Objects::load(&base_dir())]
        .into_iter()
        .chain(rendered.iter().map(Rendered::objects));
    for objects in all {
        for (f, d) in objects.docs {
            let ns = d["metadata"].get("namespace").and_then(Value::as_str);
            if cluster_scoped.contains(&kind_of(&d)) {
                assert!(
                    ns.is_none(),
                    "{}: {} is cluster-scoped",
                    f.display(),
                    name_of(&d)
                );
            } else {
                assert!(
                    ns.is_some_and(|n| !n.is_empty()),
                    "{}: {} {} has no metadata.namespace",
                    f.display(),
                    kind_of(&d),
                    name_of(&d)
                );
            }
        }
    }
}

fn shutdown_default() -> Duration {
    Config::default()
        .shutdown_deadline()
        .expect("the default shutdown_timeout parses")
}

/// The pod's security and health settings; returns what is wrong.
fn pod_problems(name: &str, spec: &PodSpec, shutdown: Duration) -> Vec<String> {
    let mut p = Vec::new();
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    if spec.host_network == Some(true) || spec.host_pid == Some(true) || spec.host_ipc == Some(true)
    {
        p.push(format!("{name}: host namespaces"));
    }
    let grace = spec.termination_grace_period_seconds.unwrap_or(30);
    if u64::try_from(grace).unwrap_or(0) <= shutdown.as_secs() {
        p.push(format!(
            "{name}: terminationGracePeriodSeconds {grace} is not above shutdown_timeout {shutdown:?}: the kubelet would kill remedyd mid-shutdown"
        ));
    }
    if spec.containers.is_empty() {
        p.push(format!("{name}: no containers"));
    }
    for c in &spec.containers {
        let n = format!("{name}: container {}", c.name);
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.run_as_non_root.or(pod_sc.run_as_non_root) != Some(true) {
            p.push(format!("{n}: runAsNonRoot is not true"));
        }
        match sc.run_as_user.or(pod_sc.run_as_user) {
            Some(u) if u != 0 => {}
            other => p.push(format!("{n}: runAsUser {other:?}")),
        }
        let seccomp = sc
            .seccomp_profile
            .clone()
            .or(pod_sc.seccomp_profile.clone())
            .map(|s| s.type_);
        if seccomp.as_deref() != Some("RuntimeDefault") {
            p.push(format!(
                "{n}: seccompProfile {seccomp:?}, want RuntimeDefault"
            ));
        }
        if sc.read_only_root_filesystem != Some(true) {
            p.push(format!("{n}: readOnlyRootFilesystem is not true"));
        }
        if sc.allow_privilege_escalation != Some(false) {
            p.push(format!("{n}: allowPrivilegeEscalation is not false"));
        }
        if sc.privileged == Some(true) {
            p.push(format!("{n}: privileged"));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.unwrap_or_default().iter().any(|d| d == "ALL") {
            p.push(format!("{n}: capabilities do not drop ALL"));
        }
        if caps.add.is_some_and(|a| !a.is_empty()) {
            p.push(format!("{n}: capabilities added"));
        }
        if !c.image.as_deref().is_some_and(|i| {
            i.rsplit_once(':')
                .is_some_and(|(_, tag)| tag != "latest" && !tag.contains('/'))
        }) {
            p.push(format!("{n}: image {:?} has no pinned tag", c.image));
        }
        p.extend(probe_problems(&n, c));
        let res = c.resources.clone().unwrap_or_default();
        let requests = res.requests.unwrap_or_default();
        let limits = res.limits.unwrap_or_default();
        for (what, map, key) in [
            ("requests", &requests, "cpu"),
            ("requests", &requests, "memory"),
            ("limits", &limits, "memory"),
        ] {
            if !map.contains_key(key) {
                p.push(format!("{n}: no resources.{what}.{key}"));
            }
        }
    }
    p
}

fn probe_problems(n: &str, c: &Container) -> Vec<String> {
    let mut p = Vec::new();
    let ports = c.ports.clone().unwrap_or_default();
    for (what, probe, path) in [
        ("livenessProbe", &c.liveness_probe, "/healthz"),
        ("readinessProbe", &c.readiness_probe, "/readyz"),
    ] {
        let Some(get) = probe.as_ref().and_then(|p| p.http_get.clone()) else {
            p.push(format!("{n}: no {what}.httpGet"));
            continue;
        };
        if get.path.as_deref() != Some(path) {
            p.push(format!("{n}: {what} path {:?}, want {path}", get.path));
        }
        let on_port = ports.iter().any(|cp| match &get.port {
            IntOrString::Int(i) => *i == cp.container_port,
            IntOrString::String(s) => cp.name.as_deref() == Some(s.as_str()),
        });
        if !on_port {
            p.push(format!(
                "{n}: {what} port {:?} is not a container port",
                get.port
            ));
        }
    }
    p
}

#[test]
fn the_deployments_are_locked_down_and_probed() {
    let mut problems = Vec::new();
    for r in overlays() {
        let dir = format!("overlays/{}", r.overlay);
        for d in r.objects().all::<Deployment>("Deployment") {
            let name = format!("{dir}: Deployment {}", d.metadata.name.unwrap_or_default());
            let spec = d.spec.expect("spec");
            let pod = spec.template.spec.expect("template.spec");
            problems.extend(pod_problems(&name, &pod, shutdown_default()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_pod_checks_catch_an_unsafe_pod() {
    let pod: PodSpec = serde_json::from_value(serde_json::json!({
        "terminationGracePeriodSeconds": 10,
        "containers": [{
            "name": "remedyd",
            "image": "remedyd:latest",
            "ports": [{"name": "http", "containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9097}},
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}
        }]
    }))
    .unwrap();
    let got = pod_problems("p", &pod, Duration::from_secs(10)).join("\n");
    for want in [
        "terminationGracePeriodSeconds 10",
        "runAsNonRoot",
        "runAsUser",
        "seccompProfile",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "drop ALL",
        "capabilities added",
        "no pinned tag",
        "livenessProbe port Int(9097)",
        "readinessProbe path",
        "resources.requests.cpu",
        "resources.limits.memory",
    ] {
        assert!(got.contains(want), "{want:?} not reported in:\n{got}");
    }
}

/// Whether `selector` (matchLabels-style) selects `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn the_service_and_the_pdb_select_the_deployments_pods() {
    for r in overlays() {
        let dir = format!("overlays/{}", r.overlay);
        let objects = r.objects();
        let deployments = objects.all::<Deployment>("Deployment");
        assert!(!deployments.is_empty(), "{dir}: no Deployment");
        // (namespace, pod labels, container ports) of each Deployment.
        let pods: Vec<_> = deployments
            .iter()
            .map(|d| {
                let spec = d.spec.clone().unwrap();
                let labels = spec.template.metadata.clone().unwrap().labels.unwrap();
                let own = spec.selector.match_labels.clone().unwrap_or_default();
                assert!(
                    selects(&own, &labels) && spec.selector.match_expressions.is_none(),
                    "{dir}: Deployment {:?} does not select its own template",
                    d.metadata.name
                );
                let ports: Vec<_> = spec
                    .template
                    .spec
                    .clone()
                    .unwrap()
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.clone().unwrap_or_default())
                    .collect();
                (d.metadata.namespace.clone(), labels, ports)
            })
            .collect();
        for s in objects.all::<Service>("Service") {
            let spec = s.spec.clone().unwrap();
            let selector = spec.selector.clone().unwrap_or_default();
            let target = pods
                .iter()
                .find(|(ns, labels, _)| *ns == s.metadata.namespace && selects(&selector, labels));
            let Some((_, _, ports)) = target else {
                panic!(
                    "{dir}: Service {:?} selects no Deployment's pods",
                    s.metadata.name
                );
            };
            for p in spec.ports.unwrap_or_default() {
                let ok = match p.target_port.clone().unwrap_or(IntOrString::Int(p.port)) {
                    IntOrString::Int(i) => ports.iter().any(|cp| cp.container_port == i),
                    IntOrString::String(n) => ports.iter().any(|cp| cp.name.as_deref() == Some(&n)),
                };
                assert!(
                    ok,
                    "{dir}: Service port {:?}: targetPort is not a container port",
                    p.name
                );
            }
        }
        let pdbs = objects.all::<PodDisruptionBudget>("PodDisruptionBudget");
        // Two replicas: a drain never takes both. One: a PDB of minAvailable 1 would block
        // every node drain, so there is none.
        let want = usize::from(r.replicas() > 1);
        assert_eq!(
            pdbs.len(),
            want,
            "{dir}: {want} PodDisruptionBudget for {} replicas",
            r.replicas()
        );
        for pdb in pdbs {
            let spec = pdb.spec.clone().unwrap();
            let selector = spec
                .selector
                .clone()
                .unwrap()
                .match_labels
                .unwrap_or_default();
            assert!(
                pods.iter()
                    .any(|(ns, labels, _)| *ns == pdb.metadata.namespace
                        && selects(&selector, labels)),
                "{dir}: PodDisruptionBudget {:?} selects no Deployment's pods",
                pdb.metadata.name
            );
            assert_eq!(
                spec.min_available,
                Some(IntOrString::Int(1)),
                "{dir}: minAvailable 1"
            );
        }
    }
}

#[test]
fn the_bindings_name_existing_roles_and_the_service_account_and_no_rule_uses_a_wildcard() {
    for r in overlays() {
        check_bindings(&r.objects());
    }
}

fn check_bindings(objects: &Objects) {
    let sa: ServiceAccount = objects.one("ServiceAccount");
    assert_eq!(sa.metadata.name.as_deref(), Some(SA));
    assert_eq!(sa.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        sa.automount_service_account_token,
        Some(true),
        "remedyd uses the in-cluster config: the token must be mounted"
    );
    let ns: Namespace = objects.one("Namespace");
    assert_eq!(ns.metadata.name.as_deref(), Some(NAMESPACE));

    let roles = objects.all::<Role>("Role");
    let cluster_roles = objects.all::<ClusterRole>("ClusterRole");
    let mut bound = Vec::new();
    let check_subjects =
        |what: &str, subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
            let subjects = subjects.clone().unwrap_or_default();
            assert!(!subjects.is_empty(), "{what}: no subjects");
            for s in subjects {
                assert_eq!(s.kind, "ServiceAccount", "{what}: subject {s:?}");
                assert_eq!(
                    (s.namespace.as_deref(), s.name.as_str()),
                    (
                        sa.metadata.namespace.as_deref(),
                        sa.metadata.name.as_deref().unwrap()
                    ),
                    "{what}: the subject is not the ServiceAccount of serviceaccount.yaml"
                );
            }
        };
    for b in objects.all::<ClusterRoleBinding>("ClusterRoleBinding") {
        let what = format!("ClusterRoleBinding {:?}", b.metadata.name);
        assert_eq!(b.role_ref.kind, "ClusterRole", "{what}");
        assert_eq!(b.role_ref.api_group, "rbac.authorization.k8s.io", "{what}");
        assert!(
            cluster_roles
                .iter()
                .any(|r| r.metadata.name.as_deref() == Some(&b.role_ref.name)),
            "{what}: no ClusterRole {}",
            b.role_ref.name
        );
        check_subjects(&what, &b.subjects);
        bound.push(b.role_ref.name.clone());
    }
    for b in objects.all::<RoleBinding>("RoleBinding") {
        let what = format!(
            "RoleBinding {:?}/{:?}",
            b.metadata.namespace, b.metadata.name
        );
        assert_eq!(b.role_ref.api_group, "rbac.authorization.k8s.io", "{what}");
        let exists = match b.role_ref.kind.as_str() {
            "ClusterRole" => cluster_roles
                .iter()
                .any(|r| r.metadata.name.as_deref() == Some(&b.role_ref.name)),
            "Role" => roles.iter().any(|r| {
                r.metadata.name.as_deref() == Some(&b.role_ref.name)
                    && r.metadata.namespace == b.metadata.namespace
            }),
            other => panic!("{what}: roleRef kind {other}"),
        };
        assert!(
            exists,
            "{what}: no {} {} in its namespace",
            b.role_ref.kind, b.role_ref.name
        );
        check_subjects(&what, &b.subjects);
        bound.push(b.role_ref.name.clone());
    }
    let names: Vec<String> = roles
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .chain(
            cluster_roles
                .iter()
                .map(|r| r.metadata.name.clone().unwrap()),
        )
        .collect();
    for n in &names {
        assert!(bound.contains(n), "role {n} is bound by nothing");
    }
    assert_eq!(
        names.len(),
        4,
        "remedyd-node-drain, remedyd-workloads, remedyd-coredns, remedyd-cluster-evidence: {names:?}"
    );

    let rules = roles
        .iter()
        .flat_map(|r| r.rules.clone().unwrap_or_default())
        .chain(cluster_roles.iter().flat_map(|r| {
            assert!(
                r.aggregation_rule.is_none(),
                "aggregated ClusterRole {:?}",
                r.metadata.name
            );
            r.rules.clone().unwrap_or_default()
        }));
    for r in rules {
        let all = r
            .verbs
            .iter()
            .chain(r.api_groups.iter().flatten())
            .chain(r.resources.iter().flatten())
            .chain(r.resource_names.iter().flatten());
        for x in all {
            assert!(!x.contains('*'), "a wildcard in {r:?}");
        }
        // Non-resource URLs: the API server's health checks only, read only (level 3's
        // evidence), never /metrics, /debug or a prefix.
        if let Some(urls) = &r.non_resource_urls {
            assert_eq!(urls, &["/livez", "/readyz"], "non-resource URLs in {r:?}");
            assert_eq!(r.verbs, ["get"], "non-resource URLs in {r:?}");
        }
        for v in &r.verbs {
            assert!(
                !["escalate", "bind", "impersonate", "deletecollection"].contains(&v.as_str()),
                "verb {v} in {r:?}"
            );
        }
        for res in r.resources.iter().flatten() {
            assert!(
                !["secrets", "configmaps", "leases", "serviceaccounts/token"]
                    .contains(&res.as_str()),
                "resource {res} in {r:?}"
            );
        }
    }
}

/// Where deployment.yaml mounts a volume, by volume name; `subPath` mounts as the full path.
fn mounts(c: &Container) -> BTreeMap<String, String> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect()
}

fn env_value(c: &Container, name: &str) -> Option<EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name).cloned()
}

#[test]
fn the_deployment_wires_config_secrets_and_service_account() {
    for r in overlays() {
        check_wiring(&r);
    }
}

fn check_wiring(r: &Rendered) {
    let objects = r.objects();
    let (d, c) = r.the_deployment();
    let spec = d.spec.clone().unwrap();
    let replicas = if r.overlay == "sqlite" { 1 } else { 2 };
    assert_eq!(spec.replicas, Some(replicas), "{}", r.overlay);
    let pod = spec.template.spec.clone().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(SA));
    assert_ne!(pod.automount_service_account_token, Some(false));
    assert_eq!(d.metadata.namespace.as_deref(), Some(NAMESPACE));

    // Volumes: ConfigMaps shipped here; Secrets created by the operator.
    let mut volume_sources = BTreeMap::new();
    for v in pod.volumes.clone().unwrap_or_default() {
        if let Some(cm) = &v.config_map {
            let name = cm.name.clone();
            objects.config_map(&name);
            volume_sources.insert(v.name.clone(), name);
        } else if let Some(s) = &v.secret {
            volume_sources.insert(v.name.clone(), s.secret_name.clone().unwrap());
        } else if let Some(pvc) = &v.persistent_volume_claim {
            assert_eq!(r.overlay, "sqlite", "only the SQLite store needs a volume");
            let claims = objects.all::<PersistentVolumeClaim>("PersistentVolumeClaim");
            assert!(
                claims
                    .iter()
                    .any(|c| c.metadata.name.as_deref() == Some(pvc.claim_name.as_str())),
                "{}: no PersistentVolumeClaim {}",
                r.overlay,
                pvc.claim_name
            );
            volume_sources.insert(v.name.clone(), pvc.claim_name.clone());
        } else {
            assert!(
                v.empty_dir.is_some(),
                "volume {} is neither ConfigMap, Secret, PVC nor emptyDir",
                v.name
            );
        }
    }
    let mounted = mounts(&c);
    assert_eq!(
        mounted.get("tmp").map(String::as_str),
        Some("/tmp"),
        "an emptyDir on /tmp"
    );
    let writable_pvc = |name: &str| {
        pod.volumes
            .iter()
            .flatten()
            .any(|v| v.name == name && v.persistent_volume_claim.is_some())
    };
    for m in c.volume_mounts.iter().flatten() {
        assert!(
            m.read_only == Some(true) || m.name == "tmp" || writable_pvc(&m.name),
            "{}: {} is mounted writable",
            r.overlay,
            m.name
        );
    }

    // serve --config PATH, where PATH is remedyd-config's remedyd.toml.
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{args:?}");
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1].clone())
        .expect("--config");
    let config_mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == config_path)
        .expect("the --config file is a mount");
    assert_eq!(config_mount.sub_path.as_deref(), Some("remedyd.toml"));
    assert_eq!(volume_sources[&config_mount.name], "remedyd-config");

    // The config's directories are the rules and policies ConfigMaps.
    let cfg = embedded_config(&objects);
    let dir_of = |cm: &str| {
        let vol = volume_sources
            .iter()
            .find(|(_, src)| src.as_str() == cm)
            .map(|(v, _)| v.clone())
            .unwrap_or_else(|| panic!("no volume of {cm}"));
        PathBuf::from(&mounted[&vol])
    };
    assert_eq!(cfg.rules, dir_of("remedyd-rules"));
    assert_eq!(cfg.policies, dir_of("remedyd-policies"));

    // The listen port is the container port the Service and the probes use.
    let port = cfg.listen_addr().expect("listen parses").port();
    let ports = c.ports.clone().unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(i32::from(port), ports[0].container_port);
    assert_eq!(ports[0].name.as_deref(), Some("http"));

    // The store: on PostgreSQL its URL from Secret remedyd-store; on SQLite a file on the PVC.
    let store = env_value(&c, "REMEDYD_STORE").expect("REMEDYD_STORE");
    if r.overlay == "sqlite" {
        let url = store.value.expect("a sqlite:// URL");
        let file = url.strip_prefix("sqlite://").expect("a sqlite:// URL");
        let on_pvc = c.volume_mounts.iter().flatten().any(|m| {
            writable_pvc(&m.name) && m.read_only != Some(true) && file.starts_with(&m.mount_path)
        });
        assert!(on_pvc, "{file} is not on the writable PVC mount");
        let strategy = spec.strategy.clone().unwrap_or_default();
        assert_eq!(
            strategy.type_.as_deref(),
            Some("Recreate"),
            "a rolling update would run two pods on one SQLite file"
        );
    } else {
        let sref = store
            .value_from
            .and_then(|v| v.secret_key_ref)
            .expect("from a Secret");
        assert_eq!(
            (sref.name.as_str(), sref.key.as_str()),
            ("remedyd-store", "url")
        );
        assert_ne!(sref.optional, Some(true));
    }
    // The token file from remedyd-webhook.
    let token_file = env_value(&c, "REMEDYD_WEBHOOK_TOKEN_FILE")
        .and_then(|e| e.value)
        .expect("REMEDYD_WEBHOOK_TOKEN_FILE");
    let webhook_vol = volume_sources
        .iter()
        .find(|(_, s)| s.as_str() == "remedyd-webhook")
        .map(|(v, _)| v.clone())
        .expect("a volume of Secret remedyd-webhook");
    let item = Path::new(&token_file)
        .strip_prefix(&mounted[&webhook_vol])
        .expect("the token file is in the remedyd-webhook mount");
    let secret = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == webhook_vol)
        .and_then(|v| v.secret.clone())
        .unwrap();
    let items = secret.items.clone().unwrap_or_default();
    assert!(
        items.iter().any(|i| Path::new(&i.path) == item),
        "{token_file} is not an item of the remedyd-webhook volume: {items:?}"
    );
    // The file is readable by the pod's user: through fsGroup when the mode hides it from others.
    let mode = secret.default_mode.unwrap_or(0o644);
    if mode & 0o004 == 0 {
        let sc = pod.security_context.clone().unwrap();
        assert!(
            mode & 0o040 != 0 && sc.fs_group.is_some(),
            "mode {mode:o} without fsGroup"
        );
    }
    // Every REMEDYD_ variable is a config key or named by the shipped policies, and every
    // variable the policies name (routes' url_env, actions' dsn_env) is set.
    let named = policy_variables();
    let set: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for name in &set {
        let key = name
            .strip_prefix("REMEDYD_")
            .expect("REMEDYD_ variables only");
        assert!(
            remedyd::load::config::KEYS.contains(&key.to_lowercase().as_str())
                || named.contains(*name),
            "{name} is neither a config key nor named by policies/"
        );
    }
    for name in &named {
        assert!(
            set.contains(&name.as_str()),
            "policies/ read {name}; the Deployment does not set it"
        );
    }
    // The Service's REMEDYD_* link variables are off.
    assert_eq!(pod.enable_service_links, Some(false));
}

/// The environment variables the shipped policies read (outside comments).
fn policy_variables() -> std::collections::BTreeSet<String> {
    let re = regex::Regex::new(r"\bREMEDYD_[A-Z0-9_]+").unwrap();
    let mut out = std::collections::BTreeSet::new();
    for text in shipped("policies").values() {
        for line in text.lines() {
            let code = line.split(" #").next().unwrap();
            if code.trim_start().starts_with('#') {
                continue;
            }
            out.extend(re.find_iter(code).map(|m| m.as_str().to_string()));
        }
    }
    assert!(
        !out.is_empty(),
        "the policies name no variable: is the scan broken?"
    );
    out
}

/// remedyd.toml of ConfigMap remedyd-config.
fn embedded_toml(objects: &Objects) -> String {
    objects
        .config_map("remedyd-config")
        .data
        .unwrap_or_default()
        .remove("remedyd.toml")
        .expect("remedyd-config has remedyd.toml")
}

/// The embedded remedyd.toml through the project's loader: defaults, then the file, into
/// `Config` (unknown keys and bad values fail). `Config::load` would also validate it, which
/// needs the token file of the pod; `remedyd check` below does that with the pod's environment.
fn embedded_config(objects: &Objects) -> Config {
    Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(&embedded_toml(objects)))
        .extract()
        .unwrap_or_else(|e| panic!("remedyd-config remedyd.toml: {e}"))
}

#[test]
fn the_embedded_config_is_dry_run_with_secrets_from_the_environment() {
    for r in overlays() {
        check_embedded_config(&r);
    }
}

fn check_embedded_config(r: &Rendered) {
    let objects = r.objects();
    let cfg = embedded_config(&objects);
    assert_eq!(
        cfg.mode,
        Mode::DryRun,
        "ship dry-run; the comment says how to enforce"
    );
    // Dry-run unless the overlay is enforce, which overrides the key in the environment.
    let (d, c) = r.the_deployment();
    let mode = env_value(&c, "REMEDYD_MODE").map(|e| e.value.expect("a plain value"));
    match r.overlay {
        "enforce" => assert_eq!(mode.as_deref(), Some("enforce")),
        other => assert_eq!(mode, None, "{other} must stay dry-run"),
    }
    assert_eq!(cfg.listen, "0.0.0.0:8080");
    assert!(cfg.prometheus_url.is_some(), "prometheus_url");
    assert_eq!(cfg.kubeconfig, None, "in-cluster config");
    assert_eq!(cfg.log_format, "json");
    cfg.shutdown_deadline().expect("shutdown_timeout parses");
    let raw = Figment::from(Toml::string(&embedded_toml(&objects)));
    for secret in ["store", "webhook_token", "webhook_token_file"] {
        assert!(
            raw.find_value(secret).is_err(),
            "{secret} is set in the ConfigMap: it comes from a Secret through the environment"
        );
    }
    // The grace period covers the configured shutdown timeout, not only the default.
    let grace = d
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .termination_grace_period_seconds
        .unwrap();
    let shutdown = cfg.shutdown_deadline().unwrap().max(shutdown_default());
    assert!(
        u64::try_from(grace).unwrap() > shutdown.as_secs(),
        "terminationGracePeriodSeconds {grace} <= shutdown_timeout {shutdown:?}"
    );
}

/// `rules/*.yaml` or `policies/*.yaml` (not subdirectories), by file name.
fn shipped(dir: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(root().join(dir)).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            out.insert(
                p.file_name().unwrap().to_string_lossy().to_string(),
                read(&p),
            );
        }
    }
    assert!(!out.is_empty(), "no {dir}/*.yaml");
    out
}

/// A string as a YAML value at `indent` spaces: a literal block when it can say the string
/// exactly, else a double-quoted (JSON) scalar.
fn yaml_string(s: &str, indent: usize) -> String {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    let body = s.trim_end_matches('\n');
    let literal_ok = !body.is_empty()
        && !body.starts_with(' ')
        && !body.starts_with('\n')
        && body
            .chars()
            .all(|c| c == '\n' || (!c.is_control() && c != '\u{feff}'))
        && body
            .lines()
            .all(|l| l == l.trim_end() || !l.trim().is_empty());
    if !literal_ok {
        return serde_json::to_string(s).unwrap();
    }
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let pad = " ".repeat(indent);
    let mut out = format!("|{chomp}\n");
    for l in s.strip_suffix('\n').unwrap_or(s).split('\n') {
        if !l.is_empty() {
            out.push_str(&pad);
            out.push_str(l);
        }
        out.push('\n');
    }
    out.pop();
    out
}

fn config_map_yaml(name: &str, files: &BTreeMap<String, String>) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n  labels:\n    app.kubernetes.io/name: remedyd\ndata:\n"
    );
    for (file, text) in files {
        assert!(
            !file.is_empty()
                && file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
            "{file}: not a valid ConfigMap key"
        );
        out.push_str(&format!("  {file}: {}\n", yaml_string(text, 4)));
    }
    out
}

#[test]
fn yaml_string_says_every_string_exactly() {
    for s in [
        "a: 1\n",
        "a: 1",
        "a: 1\n\n\n",
        "a:\n  - b\n\n# c\n",
        "  leading",
        "\nleading newline\n",
        "tab\there\n",
        "trailing space \nx\n",
        "",
        "\n",
        "crlf\r\n",
        "'quote' \"double\" \\ #\n",
    ] {
        let yaml = format!("k: {}\n", yaml_string(s, 2));
        let back: BTreeMap<String, String> =
            serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{s:?} as\n{yaml}\n: {e}"));
        assert_eq!(back["k"], s, "as\n{yaml}");
    }
}

/// ConfigMap `name` of `objects` (`what`: the base or a rendered overlay) holds exactly `files`.
fn check_config_map(what: &str, objects: &Objects, name: &str, files: &BTreeMap<String, String>) {
    let cm = objects.config_map(name);
    let data = cm.data.clone().unwrap_or_default();
    let stale: std::collections::BTreeSet<&String> = files
        .keys()
        .chain(data.keys())
        .filter(|k| files.get(*k) != data.get(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "{what}: {name} differs from the repository in {stale:?}: run REMEDYD_BLESS=1 cargo nextest run --test it manifests::"
    );
    assert!(cm.binary_data.is_none(), "{what}: {name} has binaryData");
}

#[test]
fn the_rules_and_policies_config_maps_are_the_shipped_files() {
    let path = base_dir().join("configmap.yaml");
    let text = read(&path);
    let Some(at) = text.find(&format!("\n{MARKER}\n")) else {
        panic!("{}: the marker line is missing:\n{MARKER}", path.display());
    };
    let head = &text[..at + MARKER.len() + 2];
    let rules = shipped("rules");
    let policies = shipped("policies");
    let want = format!(
        "{head}{}---\n{}",
        config_map_yaml("remedyd-rules", &rules),
        config_map_yaml("remedyd-policies", &policies)
    );
    if std::env::var_os("REMEDYD_BLESS").is_some() {
        if want != text {
            // Through a rename, so that the other tests never read half a file.
            let tmp = path.with_extension("yaml.blessing");
            std::fs::write(&tmp, &want).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            eprintln!("rewrote {}", path.display());
        }
    } else {
        let mut all = vec![("base".to_string(), Objects::load(&base_dir()))];
        for r in overlays() {
            all.push((format!("overlays/{}", r.overlay), r.objects()));
        }
        for (what, objects) in &all {
            for (name, files) in [("remedyd-rules", &rules), ("remedyd-policies", &policies)] {
                check_config_map(what, objects, name, files);
            }
        }
        assert!(
            want == text,
            "{} is not as generated (same data, other text): run REMEDYD_BLESS=1 cargo nextest run --test it manifests::",
            path.display()
        );
    }
    // `kubectl apply` (client-side) copies each object into an annotation limited to 256 KiB.
    let size: usize = rules
        .values()
        .chain(policies.values())
        .map(String::len)
        .sum();
    assert!(
        size < 200 * 1024,
        "{size} bytes of rules and policies: use kubectl apply --server-side"
    );
}

#[test]
fn what_the_pod_mounts_passes_remedyd_check_with_the_pods_arguments_and_environment() {
    for r in overlays() {
        check_pod_passes_remedyd_check(&r);
    }
}

fn check_pod_passes_remedyd_check(r: &Rendered) {
    let objects = r.objects();
    let (d, c) = r.the_deployment();
    let tmp = tempfile::tempdir().unwrap();
    // The pod's filesystem, under tmp: each mount path maps to a directory of tmp.
    let mut map: Vec<(String, PathBuf)> = Vec::new();
    let pod = d.spec.unwrap().template.spec.unwrap();
    for m in c.volume_mounts.iter().flatten() {
        let vol = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .unwrap();
        let local = tmp.path().join(&m.name);
        if let Some(cm) = &vol.config_map {
            let data = objects.config_map(&cm.name).data.unwrap_or_default();
            match &m.sub_path {
                Some(sub) => {
                    std::fs::write(&local, &data[sub]).unwrap();
                }
                None => {
                    std::fs::create_dir(&local).unwrap();
                    for (k, v) in data {
                        std::fs::write(local.join(k), v).unwrap();
                    }
                }
            }
        } else if let Some(s) = &vol.secret {
            std::fs::create_dir(&local).unwrap();
            for i in s.items.iter().flatten() {
                std::fs::write(local.join(&i.path), "test-token\n").unwrap();
            }
        } else {
            std::fs::create_dir(&local).unwrap();
        }
        map.push((m.mount_path.clone(), local));
    }
    let local = |p: &str| -> String {
        map.iter()
            .find_map(|(mp, l)| {
                Path::new(p).strip_prefix(mp).ok().map(|rest| {
                    l.join(rest)
                        .display()
                        .to_string()
                        .trim_end_matches('/')
                        .to_string()
                })
            })
            .unwrap_or_else(|| panic!("{p} is on no mounted volume"))
    };

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_remedyd"));
    cmd.current_dir(tmp.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REMEDYD_") {
            cmd.env_remove(k);
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            let v = if v.starts_with('/') {
                local(v)
            } else if let Some(file) = v.strip_prefix("sqlite://") {
                format!("sqlite://{}", local(file))
            } else {
                v.clone()
            };
            cmd.env(&e.name, v);
        } else if let Some(s) = e
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref())
        {
            match (s.name.as_str(), s.key.as_str(), s.optional) {
                ("remedyd-store", "url", _) => {
                    cmd.env(
                        &e.name,
                        "postgres://remedyd:secret@postgres.db.svc:5432/remedyd",
                    );
                }
                (_, _, Some(true)) => {}
                other => panic!("{}: no test value for Secret {other:?}", e.name),
            }
        } else {
            panic!("{}: neither a value nor a Secret", e.name);
        }
    }
    // The pod's arguments, with `check` for `serve` and the paths in the config mapped too.
    let cfg = embedded_config(&objects);
    let mut args: Vec<String> = c.args.clone().unwrap();
    args[0] = "check".into();
    for a in args.iter_mut().skip(1) {
        if a.starts_with('/') {
            *a = local(a);
        }
    }
    args.extend([
        "--rules".into(),
        local(&cfg.rules.display().to_string()),
        "--policies".into(),
        local(&cfg.policies.display().to_string()),
    ]);
    let out = cmd.args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "overlays/{}: remedyd {args:?}: {}\n{stdout}{stderr}",
        r.overlay,
        out.status
    );
    let mode = if r.overlay == "enforce" {
        "mode enforce"
    } else {
        "mode dry-run"
    };
    assert!(
        stdout.starts_with("ok: ") && stdout.contains(mode),
        "overlays/{}: want {mode}: {stdout}",
        r.overlay
    );
}

#[test]
fn the_alertmanager_receiver_posts_to_the_service() {
    let objects = Objects::load(&base_dir());
    let svc: Service = objects.one("Service");
    let port = svc.spec.unwrap().ports.unwrap()[0].port;
    let want = format!(
        "http://{}.{}.svc:{port}/webhook/alertmanager",
        svc.metadata.name.unwrap(),
        svc.metadata.namespace.unwrap()
    );
    let am: Value =
        serde_saphyr::from_str(&read(&root().join("deploy/alertmanager/alertmanager.yml")))
            .unwrap();
    let receiver = am["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "remedyd")
        .expect("receiver remedyd");
    let hook = &receiver["webhook_configs"][0];
    assert_eq!(hook["url"], want);
    assert_eq!(hook["send_resolved"], true);
    assert_eq!(hook["max_alerts"], 0);
}

// --- RBAC -------------------------------------------------------------------------------------

/// The RBAC of every overlay as rendered (the base's, unless an overlay changes it).
fn shipped_rbac() -> Vec<(&'static str, Rbac)> {
    overlays()
        .into_iter()
        .map(|r| (r.overlay, Rbac::load(r.dir.path(), NAMESPACE, SA)))
        .collect()
}

/// (verb, group, resource, subresource, namespace, name)
type Req = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn assert_requests(all: &[(&str, Rbac)], allowed: bool, reqs: &[(&str, Req)]) {
    for (overlay, rbac) in all {
        assert_requests_of(overlay, rbac, allowed, reqs);
    }
}

fn assert_requests_of(overlay: &str, rbac: &Rbac, allowed: bool, reqs: &[(&str, Req)]) {
    let wrong: Vec<String> = reqs
        .iter()
        .filter(|(_, r)| rbac.allows(r.0, r.1, r.2, r.3, r.4, r.5) != allowed)
        .map(|(why, r)| format!("{why}: {}", Rbac::describe(r.0, r.1, r.2, r.3, r.4, r.5)))
        .collect();
    assert!(
        wrong.is_empty(),
        "overlays/{overlay}: {} but should not be:\n{}\n{}",
        if allowed { "denied" } else { "allowed" },
        wrong.join("\n"),
        rbac.dump()
    );
}

#[test]
fn rbac_allows_every_request_of_the_kubernetes_actions() {
    const NS: &str = "python-services";
    let rbac = shipped_rbac();
    // Level 3's evidence reads the API server's health checks, and nothing else outside the API.
    for (overlay, r) in &rbac {
        for url in ["/livez", "/readyz"] {
            assert!(r.allows_url("get", url), "overlays/{overlay}: get {url}");
        }
        for (verb, url) in [
            ("get", "/metrics"),
            ("get", "/debug/pprof/"),
            ("get", "/readyz/etcd"),
            ("post", "/readyz"),
        ] {
            assert!(!r.allows_url(verb, url), "overlays/{overlay}: {verb} {url}");
        }
    }
    // reference/kube.md §2: what kubectl sends for each action.
    assert_requests(
        &rbac,
        true,
        &[
            (
                "network evidence: the service and its endpoints",
                ("get", "", "services", "", NS, "checkout"),
            ),
            (
                "network evidence: the service and its endpoints",
                ("get", "", "endpoints", "", NS, "checkout"),
            ),
            (
                "network evidence: endpoint slices by service label",
                ("list", "discovery.k8s.io", "endpointslices", "", NS, ""),
            ),
            (
                "network evidence: the namespace's network policies",
                ("list", "networking.k8s.io", "networkpolicies", "", NS, ""),
            ),
            (
                "network evidence: the namespace's ingresses",
                ("list", "networking.k8s.io", "ingresses", "", NS, ""),
            ),
            (
                "network evidence: kube-dns",
                ("get", "", "services", "", "kube-system", "kube-dns"),
            ),
            (
                "network evidence: kube-dns",
                ("get", "", "endpoints", "", "kube-system", "kube-dns"),
            ),
            (
                "network evidence: kube-dns's slices",
                (
                    "list",
                    "discovery.k8s.io",
                    "endpointslices",
                    "",
                    "kube-system",
                    "",
                ),
            ),
            (
                "cluster evidence: node conditions",
                ("list", "", "nodes", "", "", ""),
            ),
            (
                "cluster evidence: Warning events in every namespace",
                ("list", "", "events", "", "", ""),
            ),
            (
                "restart: read",
                ("get", "apps", "deployments", "", NS, "checkout"),
            ),
            (
                "restart/undo/set resources: write",
                ("patch", "apps", "deployments", "", NS, "checkout"),
            ),
            (
                "undo: ReplicaSets by selector",
                ("list", "apps", "replicasets", "", NS, ""),
            ),
            (
                "rollout status: list",
                ("list", "apps", "deployments", "", NS, ""),
            ),
            (
                "rollout status: watch",
                ("watch", "apps", "deployments", "", NS, ""),
            ),
            (
                "scale: read",
                ("get", "apps", "deployments", "scale", NS, "checkout"),
            ),
            (
                "scale",
                ("patch", "apps", "deployments", "scale", NS, "checkout"),
            ),
            (
                "scale: HPA owning the deployment?",
                (
                    "list",
                    "autoscaling",
                    "horizontalpodautoscalers",
                    "",
                    NS,
                    "",
                ),
            ),
            (
                "patch hpa: read",
                (
                    "get",
                    "autoscaling",
                    "horizontalpodautoscalers",
                    "",
                    NS,
                    "checkout",
                ),
            ),
            (
                "patch hpa",
                (
                    "patch",
                    "autoscaling",
                    "horizontalpodautoscalers",
                    "",
                    NS,
                    "checkout",
                ),
            ),
            ("delete pod -l: list", ("list", "", "pods", "", NS, "")),
            (
                "delete pod",
                ("delete", "", "pods", "", NS, "checkout-7d4b9c-abcde"),
            ),
            (
                "delete pod: wait",
                ("get", "", "pods", "", NS, "checkout-7d4b9c-abcde"),
            ),
            (
                "delete pod: wait (watch)",
                ("watch", "", "pods", "", NS, ""),
            ),
            (
                "evidence: logs",
                ("get", "", "pods", "log", NS, "checkout-7d4b9c-abcde"),
            ),
            ("evidence: events", ("list", "", "events", "", NS, "")),
            ("drain: node", ("get", "", "nodes", "", "", "node-1")),
            ("drain: ready nodes gate", ("list", "", "nodes", "", "", "")),
            ("drain: cordon", ("patch", "", "nodes", "", "", "node-1")),
            (
                "drain: the node's pods, all namespaces",
                ("list", "", "pods", "", "", ""),
            ),
            (
                "drain: DaemonSet check",
                (
                    "get",
                    "apps",
                    "daemonsets",
                    "",
                    "monitoring",
                    "node-exporter",
                ),
            ),
            (
                "drain: evict",
                ("create", "", "pods", "eviction", "monitoring", "grafana-0"),
            ),
            (
                "drain: evict",
                (
                    "create",
                    "",
                    "pods",
                    "eviction",
                    NS,
                    "checkout-7d4b9c-abcde",
                ),
            ),
            (
                "drain: wait",
                ("get", "", "pods", "", "monitoring", "grafana-0"),
            ),
            (
                "coredns: read",
                ("get", "apps", "deployments", "", "kube-system", "coredns"),
            ),
            (
                "coredns: scale read",
                (
                    "get",
                    "apps",
                    "deployments",
                    "scale",
                    "kube-system",
                    "coredns",
                ),
            ),
            (
                "coredns: scale",
                (
                    "patch",
                    "apps",
                    "deployments",
                    "scale",
                    "kube-system",
                    "coredns",
                ),
            ),
            (
                "coredns: HPA?",
                (
                    "list",
                    "autoscaling",
                    "horizontalpodautoscalers",
                    "",
                    "kube-system",
                    "",
                ),
            ),
            (
                "kube-dns restart: list",
                ("list", "", "pods", "", "kube-system", ""),
            ),
            (
                "kube-dns restart: delete",
                (
                    "delete",
                    "",
                    "pods",
                    "",
                    "kube-system",
                    "coredns-5d78c9869d-x2x7q",
                ),
            ),
            (
                "kube-dns restart: wait",
                (
                    "get",
                    "",
                    "pods",
                    "",
                    "kube-system",
                    "coredns-5d78c9869d-x2x7q",
                ),
            ),
            (
                "coredns evidence",
                ("list", "", "events", "", "kube-system", ""),
            ),
        ],
    );
}

#[test]
fn rbac_denies_everything_around_them() {
    const NS: &str = "python-services";
    let rbac = shipped_rbac();
    assert_requests(
        &rbac,
        false,
        &[
            (
                "a namespace without a RoleBinding",
                ("patch", "apps", "deployments", "", "default", "web"),
            ),
            (
                "a namespace without a RoleBinding",
                ("delete", "", "pods", "", "default", "web-1"),
            ),
            (
                "a namespace without a RoleBinding",
                ("patch", "apps", "deployments", "scale", "payments", "api"),
            ),
            (
                "workload rights are per namespace, not cluster-wide",
                ("list", "apps", "deployments", "", "", ""),
            ),
            (
                "never delete nodes",
                ("delete", "", "nodes", "", "", "node-1"),
            ),
            ("no node updates", ("update", "", "nodes", "", "", "node-1")),
            (
                "drain evicts, never deletes outside the bound namespaces",
                ("delete", "", "pods", "", "monitoring", "grafana-0"),
            ),
            (
                "no create outside eviction",
                ("create", "", "pods", "", NS, ""),
            ),
            (
                "no deletecollection",
                ("deletecollection", "", "pods", "", NS, ""),
            ),
            ("no secrets", ("get", "", "secrets", "", NS, "db")),
            ("no secrets", ("list", "", "secrets", "", "", "")),
            (
                "no secrets in its own namespace",
                ("get", "", "secrets", "", "remedyd", "remedyd-store"),
            ),
            ("no configmaps", ("get", "", "configmaps", "", NS, "app")),
            (
                "no leases: leadership is a PostgreSQL lock",
                ("create", "coordination.k8s.io", "leases", "", "remedyd", ""),
            ),
            (
                "no leases",
                (
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "remedyd",
                    "remedyd-leader",
                ),
            ),
            (
                "no network policies (never deleted automatically)",
                (
                    "delete",
                    "networking.k8s.io",
                    "networkpolicies",
                    "",
                    NS,
                    "deny-all",
                ),
            ),
            (
                "network evidence only reads: no network policy changes",
                (
                    "patch",
                    "networking.k8s.io",
                    "networkpolicies",
                    "",
                    NS,
                    "deny-all",
                ),
            ),
            (
                "network evidence only reads: no ingress changes",
                ("patch", "networking.k8s.io", "ingresses", "", NS, "public"),
            ),
            (
                "network evidence only reads: no service changes",
                ("patch", "", "services", "", NS, "checkout"),
            ),
            (
                "network evidence only reads: no endpoints changes",
                ("update", "", "endpoints", "", NS, "checkout"),
            ),
            (
                "in kube-system, only kube-dns's Service",
                ("get", "", "services", "", "kube-system", "metrics-server"),
            ),
            (
                "Services are read where remedyd acts, not cluster-wide",
                ("list", "", "services", "", "", ""),
            ),
            (
                "cluster evidence lists events, it does not watch them",
                ("watch", "", "events", "", "", ""),
            ),
            (
                "no deployment deletes",
                ("delete", "apps", "deployments", "", NS, "checkout"),
            ),
            (
                "no deployment updates (kubectl patches)",
                ("update", "apps", "deployments", "", NS, "checkout"),
            ),
            (
                "no pods/exec",
                ("create", "", "pods", "exec", NS, "checkout-1"),
            ),
            (
                "no daemonset writes",
                (
                    "patch",
                    "apps",
                    "daemonsets",
                    "",
                    "monitoring",
                    "node-exporter",
                ),
            ),
            (
                "no HPA deletes",
                (
                    "delete",
                    "autoscaling",
                    "horizontalpodautoscalers",
                    "",
                    NS,
                    "checkout",
                ),
            ),
            (
                "kube-system: only coredns",
                (
                    "patch",
                    "apps",
                    "deployments",
                    "scale",
                    "kube-system",
                    "metrics-server",
                ),
            ),
            (
                "kube-system: only coredns",
                (
                    "patch",
                    "apps",
                    "deployments",
                    "",
                    "kube-system",
                    "metrics-server",
                ),
            ),
            (
                "kube-system: only coredns",
                (
                    "get",
                    "apps",
                    "deployments",
                    "",
                    "kube-system",
                    "kube-proxy",
                ),
            ),
            (
                "kube-system: resourceNames cannot allow a list",
                ("list", "apps", "deployments", "", "kube-system", ""),
            ),
            (
                "kube-system: nor a watch",
                ("watch", "apps", "deployments", "", "kube-system", ""),
            ),
            (
                "kube-system: no HPA patch",
                (
                    "patch",
                    "autoscaling",
                    "horizontalpodautoscalers",
                    "",
                    "kube-system",
                    "coredns",
                ),
            ),
            (
                "kube-system: no logs",
                ("get", "", "pods", "log", "kube-system", "coredns-1"),
            ),
            (
                "kube-system: no daemonsets beyond drain's get",
                (
                    "patch",
                    "apps",
                    "daemonsets",
                    "",
                    "kube-system",
                    "kube-proxy",
                ),
            ),
            (
                "the scale subresource is not the deployment",
                ("patch", "apps", "deployments", "status", NS, "checkout"),
            ),
            (
                "the core group is not apps",
                ("patch", "", "deployments", "", NS, "checkout"),
            ),
        ],
    );
}

#[test]
fn rbac_evaluates_bindings_like_the_api_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rbac.yml"),
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: read}
rules:
  - apiGroups: [""]
    resources: [pods, "*/status"]
    verbs: [get]
  - apiGroups: [apps]
    resources: [deployments]
    resourceNames: [web]
    verbs: [get, list, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: read}
subjects: [{kind: ServiceAccount, name: me, namespace: home}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: other-sa, namespace: b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: read}
subjects: [{kind: ServiceAccount, name: someone-else, namespace: home}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: missing-role, namespace: c}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: nope}
subjects: [{kind: ServiceAccount, name: me, namespace: home}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: elsewhere, namespace: e}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
---
# A RoleBinding can only use a Role of its own namespace.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cross, namespace: d}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: elsewhere}
subjects: [{kind: ServiceAccount, name: me, namespace: home}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: group}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: nodes}
subjects: [{kind: Group, name: "system:serviceaccounts:home", apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: nodes}
rules: [{apiGroups: [""], resources: [nodes], verbs: ["*"]}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored, namespace: a}
"#,
    )
    .unwrap();
    let r = Rbac::load(dir.path(), "home", "me");
    assert!(r.allows("get", "", "pods", "", "a", "p"));
    assert!(
        !r.allows("get", "", "pods", "", "b", "p"),
        "bound to another SA there"
    );
    assert!(
        !r.allows("get", "", "pods", "", "", "p"),
        "a RoleBinding grants no cluster scope"
    );
    assert!(
        !r.allows("get", "", "pods", "log", "a", "p"),
        "a subresource is its own resource"
    );
    assert!(r.allows("get", "", "pods", "status", "a", "p"), "*/status");
    assert!(
        r.allows("get", "", "services", "status", "a", "s"),
        "*/status"
    );
    assert!(!r.allows("get", "", "services", "", "a", "s"));
    assert!(r.allows("get", "apps", "deployments", "", "a", "web"));
    assert!(
        !r.allows("get", "apps", "deployments", "", "a", "api"),
        "resourceNames"
    );
    assert!(
        !r.allows("list", "apps", "deployments", "", "a", ""),
        "resourceNames deny a list"
    );
    assert!(
        !r.allows("create", "apps", "deployments", "", "a", ""),
        "and a create"
    );
    assert!(
        !r.allows("get", "", "configmaps", "", "d", "x"),
        "a Role of another namespace"
    );
    assert!(
        !r.allows("get", "", "configmaps", "", "e", "x"),
        "the Role is not bound in e"
    );
    assert!(
        r.allows("delete", "", "nodes", "", "", "n"),
        "group subject, verb *"
    );
    assert!(!Rbac::load(dir.path(), "other", "me").allows("delete", "", "nodes", "", "", "n"));
    assert_eq!(
        r.granting("get", "", "pods", "", "a", "p"),
        Some("RoleBinding a/read -> ClusterRole read")
    );
}

/// The Deployment runs the image this repository builds: the tag `scripts/image.sh` gives it by
/// default (`remedyd:` and the version in Cargo.toml), as the user the Containerfile names.
#[test]
fn the_deployment_runs_the_image_scripts_image_sh_builds() {
    let script = read(&root().join("scripts/image.sh"));
    assert!(
        script.contains(r#"tag=${1:-remedyd:$version}"#),
        "scripts/image.sh no longer tags remedyd:VERSION by default: update this test and the manifests"
    );
    let containerfile = read(&root().join("Containerfile"));
    let user = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("Containerfile: no USER line");
    let uid: i64 = user
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|e| {
            panic!("Containerfile: USER {user:?} is not numeric ({e}); runAsNonRoot needs a UID")
        });
    let tag = format!("remedyd:{}", env!("CARGO_PKG_VERSION"));
    for r in overlays() {
        let (d, c) = r.the_deployment();
        assert_eq!(
            c.image.as_deref(),
            Some(tag.as_str()),
            "overlays/{}: image",
            r.overlay
        );
        let pod = d.spec.and_then(|s| s.template.spec).expect("template.spec");
        let run_as = c
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
            .or(pod.security_context.and_then(|s| s.run_as_user));
        assert_eq!(
            run_as,
            Some(uid),
            "overlays/{}: runAsUser vs Containerfile USER",
            r.overlay
        );
    }
}
