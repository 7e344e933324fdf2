//! Hands-off signals end to end (issue 15 §3): Alertmanager webhook → remedyd (in-process,
//! enforce, SQLite) → the Kubernetes actions through the real `kube::Client` → the fake API
//! server, whose Deployments carry the labels and annotations Argo CD and Flux really set and
//! whose reconciler (`FakeKube::reconcile`, `reconcile_to`) puts git's values back like a
//! self-healing one. A rollout someone else started (a spec the controller has not observed)
//! holds the step: no write while it lasts, one after it, or a page after `rollout_hold`; a
//! revert after the step is seen while it is verified.

use std::time::Duration;

use serde_json::json;

use crate::support::daemon::{Daemon, now_rfc3339, payload};
use crate::support::fake_kube::{FakeKube, Rollout, fixtures};

const NS: &str = "python-services";

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}", namespace: python-services}
    policy: service
"#;

fn policies(gitops: &str, step: &str) -> String {
    format!(
        r#"
policies:
  - name: service
    escalate_to: oncall
    gitops: {gitops}
    levels:
      - level: 1
        steps:
{step}
"#
    )
}

const RESTART: &str = r#"          - name: restart
            action: kube_rollout_restart
            with: {wait: 30s}
            verify: {resolved_within: 1m}
            on_failure: escalate
"#;

const SCALE: &str = r#"          - name: scale
            action: kube_scale
            with: {by: 1, max: 6, wait: 30s}
            verify: {resolved_within: 1m}
            on_failure: escalate
"#;

struct World {
    fake: FakeKube,
    d: Daemon,
    _kdir: tempfile::TempDir,
}

/// The fake with `checkout` (3 replicas, rolled out) as `dress` makes it, and remedyd on it.
async fn world(dress: impl Fn(serde_json::Value) -> serde_json::Value, policies: &str) -> World {
    let fake = FakeKube::start().await;
    for n in ["node-1", "node-2"] {
        fake.put(fixtures::node(n));
    }
    fake.put(dress(fixtures::deployment(
        NS,
        "checkout",
        3,
        "registry.local/checkout:1.0",
    )));
    fake.step();
    fake.step();
    let kdir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(kdir.path());
    let d = Daemon::start_with(RULES, policies, None, |c| c.kubeconfig = Some(kubeconfig)).await;
    World {
        fake,
        d,
        _kdir: kdir,
    }
}

/// Fires the alert and waits for the incident to escalate; its timeline as text.
async fn escalated(w: &World) -> String {
    let (status, _) =
        w.d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "fp-1",
            &now_rfc3339(),
        ))
        .await;
    assert_eq!(status, 200);
    let l =
        w.d.wait_incidents("escalated", |l| {
            l.len() == 1 && l[0]["status"] == "escalated"
        })
        .await;
    serde_json::to_string(&w.d.timeline(l[0]["id"].as_str().unwrap()).await).unwrap()
}

fn writes(fake: &FakeKube) -> usize {
    fake.requests()
        .iter()
        .filter(|r| !["GET", "LIST", "WATCH"].contains(&r.method.as_str()))
        .count()
}

/// Someone else's rollout of `checkout` to 2.0, mid-way: the spec changed and the deployment
/// controller has not observed it yet (generation ≠ observedGeneration).
fn start_their_rollout(fake: &FakeKube) {
    fake.set_rollout(NS, "checkout", Rollout::Slow(100));
    let mut dep = fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    dep["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.local/checkout:2.0");
    let dep = fake.put(dep);
    let status = &dep["status"];
    assert_ne!(
        dep["metadata"]["generation"], status["observedGeneration"],
        "mid-rollout: {dep}"
    );
}

async fn fire(w: &World) -> (u16, serde_json::Value) {
    let body = payload("firing", "checkout", "warning", "fp-1", &now_rfc3339());
    w.d.post(&body).await
}

async fn timeline_of_the_one(w: &World) -> String {
    let l = w.d.wait_incidents("one incident", |l| l.len() == 1).await;
    serde_json::to_string(&w.d.timeline(l[0]["id"].as_str().unwrap()).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_someone_else_started_holds_the_restart_and_it_runs_once_after_the_rollout() {
    // Flux's helm-controller owns it and the policy allows acting on it.
    let w = world(
        |d| fixtures::flux_helm(d, "apps", "checkout"),
        &policies("allow", RESTART),
    )
    .await;
    start_their_rollout(&w.fake);
    w.fake.clear_requests();
    let (status, _) = fire(&w).await;
    assert_eq!(status, 200);
    let pager = w.d.pager.clone();
    let mut t = String::new();
    for _ in 0..200 {
        t = timeline_of_the_one(&w).await;
        if t.contains("step_held") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        t.contains("held before any change: rollout in progress: deployment python-services/checkout is mid-rollout and remedyd did not start it (Waiting for deployment spec update to be observed...)"),
        "{t}"
    );
    assert!(
        !t.contains("step_refused") && !t.contains("escalated"),
        "{t}"
    );
    // Held through its first re-try (15 s later): reads only, no write, nobody paged.
    let gets = |fake: &FakeKube| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/deployments/checkout"))
            .count()
    };
    w.d.wait("the first re-try", || gets(&w.fake) >= 2).await;
    assert_eq!(
        writes(&w.fake),
        0,
        "nothing written while held: {:?}",
        w.fake.requests()
    );
    assert!(pager.all().is_empty(), "nobody paged while held");
    // Their rollout finishes; the next re-try restarts it, once.
    w.fake.set_rollout(NS, "checkout", Rollout::Complete);
    w.fake.step();
    w.fake.step();
    assert_eq!(writes(&w.fake), 0, "still nothing written");
    w.fake.auto_step(Duration::from_millis(50));
    w.d.wait_incidents("verifying after the restart", |l| {
        l[0]["status"] == "verifying"
    })
    .await;
    let patches: Vec<_> = w
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "exactly one restart: {patches:?}");
    let t = timeline_of_the_one(&w).await;
    assert!(t.contains("hold_over") && t.contains("step_ok"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_outlasts_rollout_hold_escalates_as_rollout_in_progress_without_a_write() {
    let policies = policies("refuse", SCALE).replace(
        "    gitops: refuse\n",
        "    gitops: refuse\n    rollout_hold: 0\n",
    );
    let w = world(|d| d, &policies).await;
    start_their_rollout(&w.fake);
    w.fake.clear_requests();
    let t = escalated(&w).await;
    assert!(
        t.contains("step scale held for 0s (1 tries): rollout in progress: deployment python-services/checkout is mid-rollout"),
        "{t}"
    );
    assert_eq!(
        writes(&w.fake),
        0,
        "nothing written: {:?}",
        w.fake.requests()
    );
    let pager = w.d.pager.clone();
    w.d.wait("the page with the reason", || {
        pager
            .all()
            .iter()
            .any(|(route, n)| route == "oncall" && format!("{n:?}").contains("rollout in progress"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argo_cd_deployment_is_refused_under_gitops_refuse_and_the_page_says_change_it_in_git() {
    let w = world(|d| fixtures::argo_cd(d, "shop"), &policies("refuse", SCALE)).await;
    w.fake.clear_requests();
    let t = escalated(&w).await;
    assert!(
        t.contains("is managed by Argo CD application shop: change it in git"),
        "{t}"
    );
    assert_eq!(
        writes(&w.fake),
        0,
        "nothing written: {:?}",
        w.fake.requests()
    );
    let pager = w.d.pager.clone();
    w.d.wait("the page with the reason", || {
        pager.all().iter().any(|(route, n)| {
            route == "oncall" && format!("{n:?}").contains("Argo CD application shop")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_flux_puts_back_is_noticed_as_reverted_and_escalated_not_repeated() {
    let w = world(
        |d| fixtures::flux(d, "flux-system", "apps"),
        &policies("allow", SCALE),
    )
    .await;
    w.fake.reconcile(NS, "checkout", &["/spec/replicas"]);
    w.fake.auto_step(Duration::from_millis(50));
    w.fake.clear_requests();
    let t = escalated(&w).await;
    assert!(
        t.contains("reverted by Flux: python-services/checkout replicas is back to 3"),
        "{t}"
    );
    let scales: Vec<_> = w
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(scales.len(), 1, "one scale, never repeated: {scales:?}");
    let d = w.fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    assert_eq!(d["spec"]["replicas"], 3, "git's count stands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_holds_the_ladder_with_its_name_and_end_then_the_ladder_continues() {
    // A one-off window over the namespace, open now and closing in a few seconds.
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let end = now + time::Duration::seconds(8);
    let window = format!(
        r#"
maintenance:
  - name: db-upgrade
    scope: namespace:{NS}
    start: "{}"
    end: "{}"
"#,
        fmt(now - time::Duration::minutes(1)),
        fmt(end)
    );
    let w = world(|d| d, &(policies("refuse", SCALE) + &window)).await;
    w.fake.auto_step(Duration::from_millis(50));
    w.fake.clear_requests();
    let (status, _) =
        w.d.post(&payload(
            "firing",
            "checkout",
            "warning",
            "fp-1",
            &now_rfc3339(),
        ))
        .await;
    assert_eq!(status, 200);
    let l =
        w.d.wait_incidents("suspended by the window", |l| {
            l.len() == 1 && l[0]["status"] == "suspended"
        })
        .await;
    let id = l[0]["id"].as_str().unwrap().to_string();
    let t = serde_json::to_string(&w.d.timeline(&id).await).unwrap();
    let hm = &fmt(end)[11..16];
    assert!(
        t.contains(&format!("maintenance window db-upgrade until {hm} UTC")),
        "{t}"
    );
    assert_eq!(writes(&w.fake), 0, "nothing written during the window");
    // The window closes: the ladder continues and scales.
    w.d.wait_incidents("verifying after the scale", |l| {
        l[0]["status"] == "verifying"
    })
    .await;
    let t = serde_json::to_string(&w.d.timeline(&id).await).unwrap();
    assert!(t.contains("automation resumed"), "{t}");
    assert_eq!(writes(&w.fake), 1, "one scale after the window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_cd_putting_the_scale_back_after_the_step_is_seen_while_verifying_and_escalated() {
    let w = world(|d| fixtures::argo_cd(d, "shop"), &policies("allow", SCALE)).await;
    w.fake.auto_step(Duration::from_millis(50));
    w.fake.clear_requests();
    let (status, _) = fire(&w).await;
    assert_eq!(status, 200);
    let l =
        w.d.wait_incidents("verifying after the scale", |l| {
            l.len() == 1 && l[0]["status"] == "verifying"
        })
        .await;
    let id = l[0]["id"].as_str().unwrap().to_string();
    let d = w.fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    assert_eq!(
        d["spec"]["replicas"], 4,
        "scaled, and kept through the step"
    );
    // Argo CD syncs git (3 replicas) after the step: self-heal puts the count back.
    w.fake
        .reconcile_to(NS, "checkout", &[("/spec/replicas", json!(3))]);
    w.d.wait_incidents("escalated by the revert", |l| l[0]["status"] == "escalated")
        .await;
    let t = serde_json::to_string(&w.d.timeline(&id).await).unwrap();
    assert!(
        t.contains("reverted by Argo CD: python-services/checkout replicas is 3 (remedyd set 4) (Argo CD application shop keeps it as git says; change it in git)"),
        "{t}"
    );
    assert!(t.contains("\"kind\":\"reverted\""), "{t}");
    assert!(!t.contains("verification_failed"), "{t}");
    let patches = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert_eq!(patches, 1, "one scale, never repeated");
    let pager = w.d.pager.clone();
    w.d.wait("the page naming the revert", || {
        pager
            .all()
            .iter()
            .any(|(route, n)| route == "oncall" && format!("{n:?}").contains("reverted by Argo CD"))
    })
    .await;
}
