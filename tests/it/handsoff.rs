//! Hands-off signals end to end (issue 15 §3): Alertmanager webhook → remedyd (in-process,
//! enforce, SQLite) → the Kubernetes actions through the real `kube::Client` → the fake API
//! server, whose Deployments carry the labels and annotations Argo CD and Flux really set and
//! whose reconciler (`FakeKube::reconcile`) puts git's values back like a self-healing one.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_someone_else_started_holds_the_restart_before_any_write_and_escalates_with_why()
{
    let w = world(|d| d, &policies("refuse", RESTART)).await;
    // Someone rolls out 2.0; the controller has replaced one pod of three when the alert fires.
    w.fake.set_rollout(NS, "checkout", Rollout::Slow(100));
    let mut dep = w.fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    dep["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.local/checkout:2.0");
    w.fake.put(dep);
    w.fake.step();
    w.fake.clear_requests();
    let t = escalated(&w).await;
    assert!(
        t.contains("is mid-rollout and remedyd did not start it"),
        "{t}"
    );
    assert!(t.contains("step_refused"), "refused as a precondition: {t}");
    assert_eq!(
        writes(&w.fake),
        0,
        "nothing written: {:?}",
        w.fake.requests()
    );
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
