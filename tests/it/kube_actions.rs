//! The Kubernetes actions against the stateful fake API server (tests/support/fake_kube), through
//! the real `kube::Client` over loopback HTTP, with the real kubectl as the oracle: from the same
//! fixture state, kubectl and remedyd must send the same writes (method, path, query, content
//! type, JSON body; timestamps masked, Go's `null`/`{}` defaults pruned), and every read kubectl
//! makes remedyd makes too (kubectl's builder reads some objects twice; remedyd once; remedyd
//! adds the rollout watch kubectl runs as a separate `rollout status`).
//!
//! What this cannot prove (see tests/support/fake_kube/mod.rs): strategic-merge edge cases beyond
//! the implemented keys, admission, real RBAC evaluation (RBAC mode checks our own manifests),
//! controller timing and PDB arithmetic, APF throttling, TLS/auth/HTTP2. The staging suite
//! (tests/support/staging.rs) runs the workload actions here against the fake on every run, and
//! against a real cluster in a namespace of its own in the opt-in target `tests/staging.rs`
//! (humans' staging runs, `--features staging`; never in CI).

use std::time::Duration;

use remedyd::adapters::action::{ActionRequest, Executors, Outcome};
use serde_json::{Value, json};

use crate::support::fake_kube::{FakeKube, Options, Recorded, Rollout, fixtures};
use crate::support::kubectl;
use crate::support::rbac;
use crate::support::staging;

const NS: &str = "python-services";

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

struct Env {
    fake: FakeKube,
    dir: tempfile::TempDir,
    exec: Executors,
}

impl Env {
    async fn new() -> Self {
        Self::with(Options::default()).await
    }
    async fn with(o: Options) -> Self {
        let fake = FakeKube::start_with(o).await;
        let dir = tempfile::tempdir().unwrap();
        let exec = Executors::builtin_for(Some(fake.kubeconfig(dir.path())));
        Env { fake, dir, exec }
    }
    /// A Deployment `web` (3 replicas) rolled out, on two nodes.
    fn web(&self) {
        for n in ["node-1", "node-2", "node-3"] {
            self.fake.put(fixtures::node(n));
        }
        self.fake
            .put(fixtures::deployment(NS, "web", 3, "registry.local/web:1.0"));
        self.fake.step();
        self.fake.step();
    }
    async fn run(&self, action: &str, params: Value) -> Outcome {
        self.run_on(action, params, (NS, "web")).await
    }
    async fn run_on(&self, action: &str, params: Value, target: (&str, &str)) -> Outcome {
        let req = request(action, params, target);
        let e = self.exec.get(action).expect("registered");
        e.validate(&req.params).expect("valid params");
        tokio::time::timeout(Duration::from_secs(60), e.execute(&req))
            .await
            .expect("the action finishes within 60 s")
    }
    async fn dry(&self, action: &str, params: Value) -> Outcome {
        let req = request(action, params, (NS, "web"));
        self.exec.get(action).unwrap().dry_run(&req).await
    }
    fn deployment(&self) -> Value {
        self.fake
            .get("apps/v1", "Deployment", NS, "web")
            .expect("web exists")
    }
    async fn kubectl(&self, args: &[&str]) -> std::process::Output {
        kubectl::kubectl_async(&self.fake, self.dir.path(), args).await
    }
}

/// Drops `null`s and empty objects (Go's typed encoding adds `creationTimestamp: null` and
/// `resources: {}` where k8s-openapi omits them; the server reads both the same).
fn prune(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), prune(v)))
                .filter(|(_, v)| !(v.is_null() || v.as_object().is_some_and(|m| m.is_empty())))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(prune).collect()),
        o => o.clone(),
    }
}

fn writes(reqs: &[Recorded]) -> Vec<Value> {
    kubectl::normalise(reqs)
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .map(|r| prune(&r))
        .collect()
}

fn reads(reqs: &[Recorded]) -> std::collections::BTreeSet<String> {
    kubectl::normalise(reqs)
        .into_iter()
        .filter(|r| r["method"] == "GET" && r["query"]["watch"].is_null())
        .map(|r| format!("{} {}", r["path"].as_str().unwrap(), r["query"]))
        .collect()
}

/// Runs kubectl on one fake and remedyd on another, both set up by `setup`; compares the traces.
async fn parity(
    setup: impl Fn(&Env),
    args: &[&str],
    action: &str,
    params: Value,
    ordered: bool,
) -> (Env, Outcome) {
    let a = Env::new().await;
    setup(&a);
    a.fake.clear_requests();
    a.fake.auto_step(Duration::from_millis(50));
    let out = a.kubectl(args).await;
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        kubectl::text(&out)
    );
    let theirs = a.fake.requests();

    let b = Env::new().await;
    setup(&b);
    b.fake.clear_requests();
    b.fake.auto_step(Duration::from_millis(50));
    let outcome = b.run(action, params).await;
    assert!(outcome.ok, "{action}: {outcome:?}");
    let ours = b.fake.requests();

    let (mut tw, mut ow) = (writes(&theirs), writes(&ours));
    if !ordered {
        tw.sort_by_key(|v| v.to_string());
        ow.sort_by_key(|v| v.to_string());
    }
    assert_eq!(
        ow,
        tw,
        "{action} must send kubectl's writes\nremedyd: {}\nkubectl: {}",
        serde_json::to_string_pretty(&ow).unwrap(),
        serde_json::to_string_pretty(&tw).unwrap()
    );
    let missing: Vec<_> = reads(&theirs).difference(&reads(&ours)).cloned().collect();
    assert!(
        missing.is_empty(),
        "{action}: kubectl read {missing:?}, remedyd did not"
    );
    for r in ours.iter().filter(|r| !kubectl::is_discovery(&r.path)) {
        let ua = r.user_agent.as_deref().unwrap_or_default();
        assert!(
            ua.starts_with("remedyd/"),
            "{} {} sent User-Agent {ua:?}",
            r.method,
            r.path
        );
    }
    (b, outcome)
}

// --- rollout restart / status -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_sends_kubectls_patch_and_waits_for_the_rollout() {
    let (b, outcome) = parity(
        |e| e.web(),
        &["rollout", "restart", "deployment/web", "-n", NS],
        "kube_rollout_restart",
        json!({"wait": "30s"}),
        true,
    )
    .await;
    assert!(
        outcome.summary.contains("successfully rolled out"),
        "{}",
        outcome.summary
    );
    let d = b.deployment();
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(outcome.detail["requests"].as_array().unwrap().len(), 1);
    // The gate listed (and watched, if needed) the one Deployment, as kubectl's viewer does.
    assert!(b.fake.requests().iter().any(|r| {
        r.method == "GET"
            && r.path.ends_with("/deployments")
            && r.query
                .get("fieldSelector")
                .is_some_and(|f| f == "metadata.name=web")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_refuses_a_paused_deployment_and_writes_nothing() {
    let e = Env::new().await;
    e.web();
    let mut d = e.deployment();
    d["spec"]["paused"] = json!(true);
    e.fake.put(d);
    e.fake.clear_requests();
    let o = e.run("kube_rollout_restart", json!({})).await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    // Refused before any write: a precondition, which no breaker counts.
    assert!(o.no_change, "{o:?}");
    assert!(o.summary.contains("paused"), "{}", o.summary);
    assert!(writes(&e.fake.requests()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_past_its_deadline_fails_the_step_as_kubectl_status_does() {
    let e = Env::new().await;
    e.web();
    e.fake.set_rollout(NS, "web", Rollout::Stuck);
    e.fake.auto_step(Duration::from_millis(50));
    let o = e.run("kube_rollout_restart", json!({"wait": "30s"})).await;
    assert!(!o.ok, "{o:?}");
    // The restart was sent: a failed rollout is a failed remediation, not a precondition.
    assert!(!o.no_change, "{o:?}");
    assert!(
        o.summary.contains("exceeded its progress deadline"),
        "{}",
        o.summary
    );
    // kubectl agrees on the same state.
    let out = e
        .kubectl(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            NS,
            "--timeout=10s",
        ])
        .await;
    assert!(!out.status.success());
    assert!(kubectl::text(&out).contains("exceeded its progress deadline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_wait_is_bounded() {
    let e = Env::new().await;
    e.web();
    e.fake.set_rollout(NS, "web", Rollout::Slow(1000));
    e.fake.auto_step(Duration::from_millis(100));
    let o = e.run("kube_rollout_restart", json!({"wait": "2s"})).await;
    assert!(!o.ok, "{o:?}");
    assert!(o.summary.contains("not finished after 2s"), "{}", o.summary);
    assert!(
        !o.detail["rollout"]["progress"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_watch_the_rbac_refuses_fails_at_once_not_at_the_bound() {
    let e = Env::with(Options {
        rbac: true,
        ..Options::default()
    })
    .await;
    e.fake.set_authorizer(|a| {
        !(a.resource == "deployments" && (a.verb == "list" || a.verb == "watch"))
    });
    e.web();
    let o = e.run("kube_rollout_restart", json!({"wait": "30s"})).await;
    assert!(!o.ok && o.trip_breaker, "{o:?}");
    // The refusal itself, not the wait running out.
    assert!(
        o.summary.contains("watching deployment") && o.summary.contains("403"),
        "{}",
        o.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_step_matches_kubectls_verdict() {
    let e = Env::new().await;
    e.web();
    let o = e.run("kube_rollout_status", json!({"wait": "10s"})).await;
    assert!(o.ok, "{o:?}");
    let out = e
        .kubectl(&[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            NS,
            "--timeout=10s",
        ])
        .await;
    assert!(out.status.success(), "{}", kubectl::text(&out));
    assert!(kubectl::text(&out).contains("successfully rolled out"));
}

// --- rollout undo ------------------------------------------------------------------------------

/// web at revision 2 (image 2.0) with revision 1 (image 1.0) in history.
fn two_revisions(e: &Env) {
    e.web();
    let mut d = e.deployment();
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.local/web:2.0");
    e.fake.put(d);
    e.fake.step();
    e.fake.step();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_picks_kubectls_revision_and_sends_its_json_patch() {
    let (b, outcome) = parity(
        two_revisions,
        &["rollout", "undo", "deployment/web", "-n", NS],
        "kube_rollout_undo",
        json!({"wait": "30s"}),
        true,
    )
    .await;
    assert!(
        outcome.summary.contains("to revision 1"),
        "{}",
        outcome.summary
    );
    assert_eq!(
        b.deployment()["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/web:1.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_skips_when_the_template_already_matches_and_honours_changed_within() {
    let e = Env::new().await;
    two_revisions(&e);
    e.fake.auto_step(Duration::from_millis(50));
    // Back to revision 1 (now 3); undoing to revision 3 matches the current template.
    let o = e.run("kube_rollout_undo", json!({"wait": "30s"})).await;
    assert!(o.ok, "{o:?}");
    let rev = e.deployment()["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .unwrap()
        .to_string();
    e.fake.clear_requests();
    let o = e
        .run(
            "kube_rollout_undo",
            json!({"to_revision": rev.parse::<i64>().unwrap()}),
        )
        .await;
    assert!(!o.ok && o.summary.contains("skipped rollback"), "{o:?}");
    assert!(writes(&e.fake.requests()).is_empty());

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let o = e
        .run("kube_rollout_undo", json!({"changed_within": "1s"}))
        .await;
    assert!(!o.ok && o.summary.contains("changed_within"), "{o:?}");
    // Revision 3 went back to revision 1's template: undoing it again would bring back the newer
    // release (revision 2), which is a roll forward, not a rollback.
    let o = e
        .run(
            "kube_rollout_undo",
            json!({"changed_within": "10m", "wait": "30s"}),
        )
        .await;
    assert!(
        !o.ok && o.no_change && o.summary.contains("would bring back revision 2"),
        "{o:?}"
    );
    assert!(writes(&e.fake.requests()).is_empty());
}

/// Restarts `web` as kubectl does, with a fixed `restartedAt` (the same on every fake).
fn restart(e: &Env, at: &str) {
    let mut d = e.deployment();
    d["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": at});
    e.fake.put(d);
    e.fake.step();
    e.fake.step();
}

/// web: revision 1 (image 1.0), revision 2 (image 2.0), revision 3 (2.0 restarted).
fn release_then_restart(e: &Env) {
    two_revisions(e);
    restart(e, "2026-11-28T04:00:00Z");
}

fn image(d: &Value) -> &str {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_a_restart_returns_to_the_previous_release_with_kubectls_to_revision_request() {
    let (b, o) = parity(
        release_then_restart,
        &[
            "rollout",
            "undo",
            "deployment/web",
            "-n",
            NS,
            "--to-revision=1",
        ],
        "kube_rollout_undo",
        json!({"wait": "30s"}),
        true,
    )
    .await;
    assert_eq!(image(&b.deployment()), "registry.local/web:1.0");
    assert!(
        o.summary.contains("from revision 3 to revision 1")
            && o.summary
                .contains("app registry.local/web:2.0 → registry.local/web:1.0")
            && o.summary
                .contains("revisions 3..3 were restarts of revision 2"),
        "{}",
        o.summary
    );
    assert_eq!(
        o.detail["rollback"]["images"],
        json!([{"container": "app", "before": "registry.local/web:2.0", "after": "registry.local/web:1.0"}])
    );
    assert_eq!(o.detail["rollback"]["release_first_revision"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_restarts_by_remedyd_itself_brings_back_the_previous_image() {
    let e = Env::new().await;
    two_revisions(&e);
    e.fake.auto_step(Duration::from_millis(50));
    let o = e.run("kube_rollout_restart", json!({"wait": "30s"})).await;
    assert!(o.ok, "{o:?}");
    // A second restart a second later: two revisions that are both the 2.0 release.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let o = e.run("kube_rollout_restart", json!({"wait": "30s"})).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(image(&e.deployment()), "registry.local/web:2.0");
    let o = e
        .run(
            "kube_rollout_undo",
            json!({"changed_within": "10m", "wait": "30s"}),
        )
        .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(image(&e.deployment()), "registry.local/web:1.0");
    assert!(
        o.summary.contains("from revision 4 to revision 1"),
        "{}",
        o.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_only_ever_restarted_has_nothing_to_roll_back_and_nothing_is_written() {
    let e = Env::new().await;
    e.web();
    e.fake.auto_step(Duration::from_millis(50));
    let o = e.run("kube_rollout_restart", json!({"wait": "30s"})).await;
    assert!(o.ok, "{o:?}");
    e.fake.clear_requests();
    let o = e.run("kube_rollout_undo", json!({"wait": "30s"})).await;
    assert!(!o.ok, "{o:?}");
    assert!(o.no_change, "refused before writing: {o:?}");
    assert!(o.summary.contains("nothing to roll back"), "{}", o.summary);
    assert!(
        o.summary
            .contains("revisions 2..2 are restarts of revision 1"),
        "{}",
        o.summary
    );
    assert!(writes(&e.fake.requests()).is_empty());
    assert_eq!(image(&e.deployment()), "registry.local/web:1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_that_pushed_the_previous_release_out_of_the_history_leave_nothing_to_roll_back() {
    let e = Env::new().await;
    e.web();
    let mut d = e.deployment();
    d["spec"]["revisionHistoryLimit"] = json!(2);
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.local/web:2.0");
    e.fake.put(d);
    e.fake.step();
    e.fake.step();
    for at in [
        "2026-11-28T04:00:00Z",
        "2026-11-28T04:01:00Z",
        "2026-11-28T04:02:00Z",
    ] {
        restart(&e, at);
    }
    // Revisions 3 and 4 (restarts of 2.0) are kept with the current 5; 1 (1.0) and 2 are gone.
    assert_eq!(e.fake.list("apps/v1", "ReplicaSet", NS).len(), 3);
    e.fake.auto_step(Duration::from_millis(50));
    e.fake.clear_requests();
    let o = e.run("kube_rollout_undo", json!({"wait": "30s"})).await;
    assert!(!o.ok && o.no_change, "{o:?}");
    assert!(
        o.summary.contains("nothing to roll back")
            && o.summary
                .contains("revisions before 3 are no longer kept (revisionHistoryLimit 2)"),
        "{}",
        o.summary
    );
    assert!(writes(&e.fake.requests()).is_empty());
    assert_eq!(image(&e.deployment()), "registry.local/web:2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_within_is_measured_from_the_release_not_from_a_restart() {
    let e = Env::new().await;
    two_revisions(&e);
    e.fake.auto_step(Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The restart makes a ReplicaSet seconds old; the 2.0 release is older than 2 s.
    let o = e.run("kube_rollout_restart", json!({"wait": "30s"})).await;
    assert!(o.ok, "{o:?}");
    e.fake.clear_requests();
    let o = e
        .run(
            "kube_rollout_undo",
            json!({"changed_within": "2s", "wait": "30s"}),
        )
        .await;
    assert!(!o.ok && o.no_change, "{o:?}");
    assert!(
        o.summary.contains("first rolled out as revision 2")
            && o.summary.contains("more than changed_within 2s"),
        "{}",
        o.summary
    );
    assert!(writes(&e.fake.requests()).is_empty());
    assert_eq!(image(&e.deployment()), "registry.local/web:2.0");
}

// --- scale and HPA ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_sends_kubectls_merge_patch_to_the_scale_subresource() {
    let (b, _) = parity(
        |e| e.web(),
        &["scale", "deployment/web", "-n", NS, "--replicas=5"],
        "kube_scale",
        json!({"replicas": 5, "max": 8, "wait": "30s"}),
        true,
    )
    .await;
    assert_eq!(b.deployment()["spec"]["replicas"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_stays_within_its_bounds() {
    let e = Env::new().await;
    e.web();
    e.fake.auto_step(Duration::from_millis(50));
    let o = e
        .run("kube_scale", json!({"by": 2, "max": 4, "wait": "30s"}))
        .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(e.deployment()["spec"]["replicas"], 4, "clamped to max");
    e.fake.clear_requests();
    let o = e.run("kube_scale", json!({"by": 2, "max": 4})).await;
    assert!(!o.ok && o.summary.contains("scale blocked"), "{o:?}");
    assert!(writes(&e.fake.requests()).is_empty());
}

/// A failed HPA listing names the Deployment being scaled, not only its namespace (the fuzz
/// test of Deployment answers found a summary that did not, when the listing timed out on a
/// loaded machine), and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_hpa_listing_names_the_deployment_and_writes_nothing() {
    let e = Env::new().await;
    e.web();
    e.fake.fail("GET", "horizontalpodautoscalers", 403, 1);
    let o = e.run("kube_scale", json!({"replicas": 5, "max": 8})).await;
    assert!(!o.ok, "{o:?}");
    assert!(
        o.summary.contains("listing HPAs") && o.summary.contains("web"),
        "{}",
        o.summary
    );
    assert!(writes(&e.fake.requests()).is_empty());
    assert_eq!(e.deployment()["spec"]["replicas"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_raises_the_hpa_instead_of_fighting_it_or_refuses() {
    let e = Env::new().await;
    e.web();
    e.fake.put(fixtures::hpa(NS, "web", "web", 3, 5));
    let o = e.run("kube_scale", json!({"replicas": 6, "max": 8})).await;
    assert!(o.ok, "{o:?}");
    let h = e
        .fake
        .get("autoscaling/v2", "HorizontalPodAutoscaler", NS, "web")
        .unwrap();
    assert_eq!(
        (
            h["spec"]["minReplicas"].clone(),
            h["spec"]["maxReplicas"].clone()
        ),
        (json!(6), json!(6))
    );
    assert_eq!(
        e.deployment()["spec"]["replicas"],
        3,
        "the Deployment is the HPA's"
    );
    assert_eq!(
        h["spec"]["metrics"].as_array().unwrap().len(),
        2,
        "metrics untouched"
    );
    let o = e
        .run(
            "kube_scale",
            json!({"replicas": 7, "max": 8, "hpa": "refuse"}),
        )
        .await;
    assert!(!o.ok && o.summary.contains("would revert"), "{o:?}");
    assert!(o.no_change, "refused before writing: {o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_cpu_target_keeps_the_other_metrics_and_survives_a_conflict() {
    let e = Env::new().await;
    e.web();
    e.fake.put(fixtures::hpa(NS, "web", "web", 2, 5));
    e.fake.fail("PATCH", "horizontalpodautoscalers/web", 409, 1);
    let o = e
        .run(
            "kube_hpa_patch",
            json!({"cpu_utilization": 60, "max_replicas": 8, "max_replicas_limit": 10}),
        )
        .await;
    assert!(o.ok, "{o:?}");
    let h = e
        .fake
        .get("autoscaling/v2", "HorizontalPodAutoscaler", NS, "web")
        .unwrap();
    let metrics = h["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    let cpu = metrics
        .iter()
        .find(|m| m["resource"]["name"] == "cpu")
        .unwrap();
    assert_eq!(cpu["resource"]["target"]["averageUtilization"], 60);
    assert!(metrics.iter().any(|m| m["resource"]["name"] == "memory"));
    assert_eq!(h["spec"]["maxReplicas"], 8);
    let patches: Vec<Recorded> = e
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(
        patches.len(),
        2,
        "a 409, then a fresh read and a second patch"
    );
    for p in &patches {
        assert_eq!(
            p.query.get("fieldManager").map(String::as_str),
            Some("kubectl-patch")
        );
        assert!(p.body.as_ref().unwrap()["metadata"]["resourceVersion"].is_string());
    }
}

// --- set resources -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_resources_sends_kubectls_strategic_patch_and_keeps_the_sidecar() {
    let (b, o) = parity(
        |e| e.web(),
        &["set", "resources", "deployment/web", "-n", NS, "-c", "app", "--limits=memory=512Mi"],
        "kube_set_resources",
        json!({"containers": ["app"], "limits": {"memory": "512Mi"}, "max": {"memory": "2Gi"}, "wait": "30s"}),
        true,
    )
    .await;
    assert!(o.summary.contains("256Mi -> 512Mi"), "{}", o.summary);
    let cs = b.deployment()["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(cs.as_array().unwrap().len(), 2, "sidecar kept: {cs}");
    assert_eq!(cs[0]["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(cs[0]["resources"]["limits"]["cpu"], "500m");
    assert!(cs[1]["resources"]["limits"].is_null(), "sidecar untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_resources_refuses_beyond_its_max_or_requests_above_limits() {
    let e = Env::new().await;
    e.web();
    let o = e
        .run("kube_set_resources", json!({"containers": ["app"], "limits": {"memory": "+50%"}, "max": {"memory": "300Mi"}}))
        .await;
    assert!(
        !o.ok && o.summary.contains("exceed the step's max"),
        "{o:?}"
    );
    let o = e
        .run(
            "kube_set_resources",
            json!({"containers": ["app"], "requests": {"cpu": "800m"}, "max": {"cpu": "2"}}),
        )
        .await;
    assert!(
        !o.ok && o.summary.contains("would exceed limits.cpu"),
        "{o:?}"
    );
    let o = e
        .run(
            "kube_set_resources",
            json!({"containers": ["nope"], "limits": {"cpu": "1"}, "max": {"cpu": "2"}}),
        )
        .await;
    assert!(
        !o.ok && o.summary.contains("unable to find container"),
        "{o:?}"
    );
    assert!(writes(&e.fake.requests()).is_empty());
    // +50 % of 256Mi within a 2Gi max: 384Mi.
    e.fake.auto_step(Duration::from_millis(50));
    let o = e
        .run("kube_set_resources", json!({"containers": ["app"], "limits": {"memory": "+50%"}, "max": {"memory": "2Gi"}, "wait": "30s"}))
        .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(
        e.deployment()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "384Mi"
    );
}

// --- delete pods ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_pods_never_takes_more_than_its_share_and_waits_for_replacements() {
    let e = Env::new().await;
    e.web();
    let mut d = e.deployment();
    d["spec"]["replicas"] = json!(4);
    e.fake.put(d);
    e.fake.step();
    e.fake.step();
    let before: Vec<String> = e
        .fake
        .list("v1", "Pod", NS)
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(before.len(), 4);
    e.fake.clear_requests();
    e.fake.auto_step(Duration::from_millis(100));
    let o = e
        .run(
            "kube_delete_pods",
            json!({"deployment": "{{target.name}}", "max_share": 0.5, "wait": "45s"}),
        )
        .await;
    assert!(o.ok, "{o:?}");
    let reqs = e.fake.requests();
    let deletes: Vec<&Recorded> = reqs.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 4);
    for d in &deletes {
        assert_eq!(
            d.body.as_ref().unwrap(),
            &json!({"propagationPolicy": "Background"})
        );
    }
    // Never more than 2 deletions without the pods being read back in between.
    let mut run = 0;
    for r in &reqs {
        if r.method == "DELETE" {
            run += 1;
            assert!(run <= 2, "more than max_share deleted at once");
        } else if r.method == "GET" && !r.path.ends_with("/pods") {
            run = 0;
        }
    }
    let after: Vec<Value> = e.fake.list("v1", "Pod", NS);
    assert!(
        after
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .all(|p| !before.contains(&p["metadata"]["uid"].as_str().unwrap().to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_pods_sends_kubectls_delete() {
    parity(
        |e| e.web(),
        &["delete", "pod", "-l", "app=web", "-n", NS, "--wait=false"],
        "kube_delete_pods",
        json!({"selector": "app=web", "max_share": 1.0, "wait": "45s"}),
        false,
    )
    .await;
}

// --- drain --------------------------------------------------------------------------------------

/// Three nodes; web's pods spread; a DaemonSet pod on node-1.
fn cluster(e: &Env) {
    e.web();
    e.fake
        .put(fixtures::daemonset("kube-system", "node-exporter"));
    e.fake.put(fixtures::daemonset_pod(
        "kube-system",
        "node-exporter",
        "node-1",
    ));
    e.fake.put(fixtures::node("node-4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_cordons_and_evicts_like_kubectl() {
    let (b, o) = parity(
        cluster,
        &["drain", "node-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=30s"],
        "kube_drain_node",
        json!({"node": "node-1", "timeout": "30s", "min_ready_nodes": 2, "delete_emptydir_data": true}),
        false,
    )
    .await;
    assert!(o.summary.contains("drained"), "{}", o.summary);
    assert_eq!(
        b.fake.get("v1", "Node", "", "node-1").unwrap()["spec"]["unschedulable"],
        true
    );
    let left: Vec<Value> = b
        .fake
        .list("v1", "Pod", "")
        .into_iter()
        .filter(|p| {
            p["spec"]["nodeName"] == "node-1" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    assert!(
        left.iter()
            .all(|p| p["metadata"]["namespace"] == "kube-system"),
        "only the DaemonSet pod stays: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_blocked_by_a_pdb_retries_every_5s_then_gives_up_leaving_the_node_cordoned() {
    let e = Env::new().await;
    cluster(&e);
    // Another workload on the node, not covered by the PDB: evictions run in parallel, as
    // kubectl's do, so the blocked one does not hold it.
    e.fake
        .put(fixtures::deployment(NS, "api", 4, "registry.local/api:1.0"));
    e.fake.step();
    e.fake.step();
    e.fake
        .put(fixtures::pdb(NS, "web", json!({"app": "web"}), 0));
    let o = e
        .run(
            "kube_drain_node",
            json!({"node": "node-1", "timeout": "8s"}),
        )
        .await;
    assert!(!o.ok && !o.retryable, "{o:?}");
    assert!(o.summary.contains("left cordoned"), "{}", o.summary);
    assert!(
        o.summary.contains("python-services/web-"),
        "names the blocking pod: {}",
        o.summary
    );
    assert!(
        o.summary.to_lowercase().contains("disruption budget"),
        "{}",
        o.summary
    );
    assert_eq!(
        e.fake.get("v1", "Node", "", "node-1").unwrap()["spec"]["unschedulable"],
        true
    );
    let evictions: Vec<Recorded> = e
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/eviction"))
        .collect();
    let (web, api): (Vec<&Recorded>, Vec<&Recorded>) = evictions
        .iter()
        .partition(|r| r.path.contains("/pods/web-"));
    assert!(web.len() >= 2, "429 retried: {}", web.len());
    assert!(web.iter().all(|r| r.status == 429));
    assert!(!api.is_empty(), "api has a pod on node-1");
    assert!(api.iter().all(|r| r.status == 201), "{api:?}");
    let first_api = evictions
        .iter()
        .position(|r| !r.path.contains("/pods/web-"));
    let last_web = evictions
        .iter()
        .rposition(|r| r.path.contains("/pods/web-"));
    assert!(
        first_api < last_web,
        "api's eviction did not wait for web's PDB retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_enough_ready_nodes_and_refuses_unmanaged_pods_before_evicting() {
    let e = Env::new().await;
    cluster(&e);
    e.fake.clear_requests();
    let o = e
        .run(
            "kube_drain_node",
            json!({"node": "node-1", "min_ready_nodes": 4}),
        )
        .await;
    assert!(!o.ok && o.summary.contains("min_ready_nodes 4"), "{o:?}");
    assert!(writes(&e.fake.requests()).is_empty(), "not even cordoned");

    e.fake.put(fixtures::bare_pod(NS, "debug", "node-1"));
    let o = e.run("kube_drain_node", json!({"node": "node-1"})).await;
    assert!(
        !o.ok && o.summary.contains("python-services/debug"),
        "{o:?}"
    );
    assert!(
        e.fake
            .requests()
            .iter()
            .all(|r| !r.path.ends_with("/eviction"))
    );
    assert_eq!(
        e.fake.get("v1", "Node", "", "node-1").unwrap()["spec"]["unschedulable"],
        true
    );
}

// --- DNS, namespaces, dry-run, errors ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_actions_touch_coredns_only_and_workload_actions_never_kube_system() {
    let e = Env::new().await;
    e.web();
    let mut dns = fixtures::deployment("kube-system", "coredns", 2, "coredns:1.11");
    dns["spec"]["selector"] = json!({"matchLabels": {"k8s-app": "kube-dns"}});
    dns["spec"]["template"]["metadata"]["labels"] = json!({"k8s-app": "kube-dns"});
    e.fake.put(dns);
    e.fake.step();
    e.fake.step();
    e.fake.auto_step(Duration::from_millis(50));
    let o = e
        .run_on(
            "kube_dns_scale",
            json!({"by": 1, "max": 4, "wait": "30s"}),
            ("", "coredns"),
        )
        .await;
    assert!(o.ok, "{o:?}");
    assert_eq!(
        e.fake
            .get("apps/v1", "Deployment", "kube-system", "coredns")
            .unwrap()["spec"]["replicas"],
        3
    );
    let o = e
        .run_on(
            "kube_dns_restart_pods",
            json!({"max_share": 0.5, "wait": "45s"}),
            ("", "coredns"),
        )
        .await;
    assert!(o.ok, "{o:?}");
    for r in e.fake.requests().iter().filter(|r| r.method != "GET") {
        assert!(
            r.path.contains("/namespaces/kube-system/"),
            "{} {}",
            r.method,
            r.path
        );
    }
    let o = e
        .run_on(
            "kube_rollout_restart",
            json!({}),
            ("kube-system", "coredns"),
        )
        .await;
    assert!(!o.ok && o.summary.contains("kube_dns_scale"), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reads_and_records_the_exact_write_but_sends_none() {
    let e = Env::new().await;
    e.web();
    e.fake.clear_requests();
    let o = e
        .dry(
            "kube_set_resources",
            json!({"containers": ["app"], "limits": {"memory": "512Mi"}, "max": {"memory": "1Gi"}}),
        )
        .await;
    assert!(o.ok && o.dry_run, "{o:?}");
    assert!(writes(&e.fake.requests()).is_empty(), "nothing written");
    let w = &o.detail["would_send"][0];
    assert_eq!(w["method"], "PATCH");
    assert_eq!(w["query"], "fieldManager=kubectl-set");
    assert_eq!(w["content_type"], "application/strategic-merge-patch+json");
    assert_eq!(
        w["body"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_without_a_reachable_cluster_records_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let gone = {
        let fake = FakeKube::start().await;
        fake.kubeconfig(dir.path())
    }; // the fake stops here: its port answers nothing
    tokio::time::sleep(Duration::from_millis(200)).await;
    let exec = Executors::builtin_for(Some(gone));
    let req = request("kube_rollout_restart", json!({}), (NS, "web"));
    let o = exec
        .get("kube_rollout_restart")
        .unwrap()
        .dry_run(&req)
        .await;
    assert!(o.ok && o.dry_run, "{o:?}");
    assert!(o.summary.contains("cluster not reachable"), "{}", o.summary);
    assert_eq!(
        o.detail["plan"]["annotation"],
        "kubectl.kubernetes.io/restartedAt"
    );
    assert!(o.detail["would_send"].as_array().unwrap().is_empty());
    // In enforce mode the same is a retryable failure, never a silent success.
    let o = exec
        .get("kube_rollout_restart")
        .unwrap()
        .execute(&req)
        .await;
    assert!(!o.ok && o.retryable && !o.dry_run, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_conflicts_are_retried_and_forbidden_trips_the_breaker() {
    let e = Env::new().await;
    e.web();
    e.fake.auto_step(Duration::from_millis(50));
    e.fake.fail("PATCH", "deployments/web", 503, 1);
    e.fake.fail("PATCH", "deployments/web", 409, 1);
    let o = e.run("kube_rollout_restart", json!({"wait": "30s"})).await;
    assert!(o.ok, "{o:?}");
    assert_eq!(o.detail["api_errors"].as_array().unwrap().len(), 2);

    e.fake.fail("PATCH", "deployments/web", 403, 1);
    let o = e.run("kube_rollout_restart", json!({})).await;
    assert!(!o.ok && !o.retryable && o.trip_breaker, "{o:?}");
    assert!(o.summary.contains("403"), "{}", o.summary);

    e.fake.fail("PATCH", "deployments/web", 500, 10);
    let o = e.run("kube_rollout_restart", json!({})).await;
    assert!(!o.ok && o.retryable && !o.trip_breaker, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_reports_pods_restarts_logs_and_events() {
    let e = Env::new().await;
    e.web();
    let mut pods = e.fake.list("v1", "Pod", NS);
    let p = &mut pods[0];
    let name = p["metadata"]["name"].as_str().unwrap().to_string();
    p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    p["status"]["containerStatuses"] = json!([{"name": "app", "restartCount": 7, "ready": false,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"reason": "OOMKilled"}}}]);
    e.fake.put(p.clone());
    e.fake
        .set_pod_log(NS, &name, "line 1\nFATAL out of memory\n");
    e.fake.put(json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": NS},
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": NS},
        "type": "Normal", "reason": "ScalingReplicaSet", "message": "Scaled up", "lastTimestamp": "2026-11-26T10:00:00Z", "count": 1}));
    let o = e.run("kube_evidence", json!({"log_lines": 20})).await;
    assert!(o.ok, "{o:?}");
    assert!(
        o.summary.contains("CrashLoopBackOff") && o.summary.contains("OOMKilled"),
        "{}",
        o.summary
    );
    let ev = &o.detail["evidence"];
    assert_eq!(ev["pods"].as_array().unwrap().len(), 3);
    assert!(
        ev["logs"][&name]["app"]
            .as_str()
            .unwrap()
            .contains("FATAL out of memory")
    );
    // The container restarted: its previous instance's log is read too.
    assert!(ev["logs"][&name]["app (previous)"].is_string(), "{ev}");
    assert_eq!(ev["events"][0]["reason"], "ScalingReplicaSet");
    let log_req = e
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/log"))
        .unwrap();
    assert_eq!(
        log_req.query.get("tailLines").map(String::as_str),
        Some("20")
    );
    assert!(writes(&e.fake.requests()).is_empty(), "evidence only reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_reads_each_containers_log_and_the_previous_one_of_a_container_that_restarted() {
    let e = Env::new().await;
    e.web();
    let mut pods = e.fake.list("v1", "Pod", NS);
    let p = &mut pods[0];
    let name = p["metadata"]["name"].as_str().unwrap().to_string();
    p["spec"]["containers"] = json!([
        {"name": "app", "image": "registry.example/app:1"},
        {"name": "proxy", "image": "registry.example/proxy:1"},
    ]);
    p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    p["status"]["containerStatuses"] = json!([
        {"name": "app", "restartCount": 3, "ready": false,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"reason": "Error"}}},
        {"name": "proxy", "restartCount": 0, "ready": true, "state": {"running": {}}},
    ]);
    e.fake.put(p.clone());
    e.fake
        .set_container_log(NS, &name, "app", false, "app: starting\n");
    e.fake
        .set_container_log(NS, &name, "app", true, "app: panic: nil map\n");
    e.fake
        .set_container_log(NS, &name, "proxy", false, "proxy: upstream refused\n");

    // The fake answers as a real API server: no container for a two-container pod is a 400.
    let url = format!("{}/api/v1/namespaces/{NS}/pods/{name}/log", e.fake.url());
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("a container name must be specified") && body.contains("[app proxy]"),
        "{body}"
    );

    let o = e.run("kube_evidence", json!({"log_lines": 20})).await;
    assert!(o.ok, "{o:?}");
    let logs = &o.detail["evidence"]["logs"][&name];
    assert_eq!(logs["app"], "app: starting\n", "{logs}");
    assert_eq!(logs["app (previous)"], "app: panic: nil map\n", "{logs}");
    assert_eq!(logs["proxy"], "proxy: upstream refused\n", "{logs}");
    assert!(
        logs.get("proxy (previous)").is_none(),
        "proxy never restarted: {logs}"
    );
    let log_reqs: Vec<_> = e
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/log") && r.status == 200)
        .collect();
    assert_eq!(log_reqs.len(), 3, "{log_reqs:?}");
    assert!(log_reqs.iter().all(|r| r.query.contains_key("container")));
}

// --- RBAC ------------------------------------------------------------------------------------

/// Every action, with the fake answering 403 to anything deploy/kubernetes/base/rbac.yaml does not
/// grant the service account: an action needing more than the shipped RBAC fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_works_within_the_shipped_rbac() {
    let e = Env::with(Options {
        rbac: true,
        ..Options::default()
    })
    .await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/base");
    let rbac = rbac::Rbac::load(&dir, "remedyd", "remedyd");
    e.fake.set_authorizer(move |a| {
        // A non-resource URL (`/readyz`): the fake passes the path as the resource.
        if a.resource.starts_with('/') {
            return rbac.allows_url(&a.verb, &a.resource);
        }
        rbac.allows(
            &a.verb,
            &a.group,
            &a.resource,
            &a.subresource,
            &a.namespace,
            &a.name,
        )
    });
    cluster(&e);
    // A second release, so that the undo after the restart has one to go back to.
    let mut web = e.deployment();
    web["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.local/web:2.0");
    e.fake.put(web);
    let mut dns = fixtures::deployment("kube-system", "coredns", 2, "coredns:1.11");
    dns["spec"]["selector"] = json!({"matchLabels": {"k8s-app": "kube-dns"}});
    dns["spec"]["template"]["metadata"]["labels"] = json!({"k8s-app": "kube-dns"});
    e.fake.put(dns);
    e.fake.put(fixtures::hpa(NS, "web", "web", 2, 5));
    // Services for procedure 5's reads (their absence would end the read early).
    for (ns, name) in [(NS, "web"), ("kube-system", "kube-dns")] {
        e.fake.put(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}));
    }
    e.fake.step();
    e.fake.step();
    e.fake.auto_step(Duration::from_millis(50));
    let steps: Vec<(&str, Value, (&str, &str))> = vec![
        ("kube_evidence", json!({}), (NS, "web")),
        ("kube_network_evidence", json!({}), (NS, "web")),
        (
            "kube_network_evidence",
            json!({"namespace": "kube-system", "service": "kube-dns"}),
            ("", "coredns"),
        ),
        ("kube_cluster_evidence", json!({}), ("", "cluster")),
        ("kube_rollout_restart", json!({"wait": "30s"}), (NS, "web")),
        ("kube_rollout_status", json!({"wait": "30s"}), (NS, "web")),
        ("kube_rollout_undo", json!({"wait": "30s"}), (NS, "web")),
        (
            "kube_set_resources",
            json!({"containers": ["app"], "limits": {"memory": "300Mi"}, "max": {"memory": "1Gi"}, "wait": "30s"}),
            (NS, "web"),
        ),
        (
            "kube_hpa_patch",
            json!({"cpu_utilization": 70}),
            (NS, "web"),
        ),
        ("kube_scale", json!({"replicas": 4, "max": 6}), (NS, "web")),
        (
            "kube_delete_pods",
            json!({"deployment": "web", "max_share": 0.5, "wait": "45s"}),
            (NS, "web"),
        ),
        (
            "kube_dns_scale",
            json!({"by": 1, "max": 4, "wait": "30s"}),
            ("", "coredns"),
        ),
        (
            "kube_dns_restart_pods",
            json!({"max_share": 0.5, "wait": "45s"}),
            ("", "coredns"),
        ),
        (
            "kube_drain_node",
            json!({"node": "node-2", "timeout": "30s", "delete_emptydir_data": true}),
            ("", "node-2"),
        ),
    ];
    for (action, params, target) in steps {
        let o = e.run_on(action, params, target).await;
        assert!(
            o.ok,
            "{action} under the shipped RBAC: {o:?}\ndenied: {:?}",
            e.fake.denied()
        );
    }
    assert!(e.fake.denied().is_empty(), "{:?}", e.fake.denied());
    // And the RBAC mode does refuse what is not granted.
    let o = e
        .run_on("kube_rollout_restart", json!({}), ("payments", "web"))
        .await;
    assert!(!o.ok && o.trip_breaker, "{o:?}");
}

/// The staging suite against the fake, every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_suite_runs_against_the_fake() {
    let e = Env::new().await;
    for n in ["node-1", "node-2"] {
        e.fake.put(fixtures::node(n));
    }
    e.fake.auto_step(Duration::from_millis(50));
    staging::suite(e.fake.kubeconfig(e.dir.path())).await;
}
