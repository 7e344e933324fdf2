//! The runbook's Kubernetes scenarios end to end: Alertmanager webhook → remedyd (in-process,
//! enforce mode, real SQLite) → Kubernetes actions through the real `kube::Client` → the stateful
//! fake API server (tests/support/fake_kube; what it cannot prove is listed there) → timeline,
//! breaker and pages.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon;
use crate::support::daemon::{Daemon, now_rfc3339, payload};
use crate::support::fake_kube;
use crate::support::fake_kube::{FakeKube, Rollout, fixtures};

const NS: &str = "python-services";

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}", namespace: python-services}
    policy: service
  - name: node-not-ready
    match: ['alertname="KubeNodeNotReady"']
    level: 1
    target: {kind: node, name: "{{node}}"}
    policy: node
"#;

fn policies(service_steps: &str) -> String {
    format!(
        r#"
policies:
  - name: service
    escalate_to: oncall
    levels:
      - level: 1
        steps:
{service_steps}
  - name: node
    escalate_to: platform
    levels:
      - level: 1
        steps:
          - name: drain
            action: kube_drain_node
            with: {{timeout: 6s, min_ready_nodes: 1}}
            verify: {{resolved_within: 1m}}
            on_failure: escalate
"#
    )
}

const RESTART: &str = r#"          - name: evidence
            action: kube_evidence
          - name: restart
            action: kube_rollout_restart
            with: {wait: 30s}
            verify: {resolved_within: 1m}
            on_failure: escalate
"#;

struct World {
    fake: FakeKube,
    d: Daemon,
    _kdir: tempfile::TempDir,
}

async fn world(steps: &str) -> World {
    world_with(RULES, &policies(steps)).await
}

async fn world_with(rules: &str, policies: &str) -> World {
    let fake = FakeKube::start().await;
    for n in ["node-1", "node-2", "node-3"] {
        fake.put(fixtures::node(n));
    }
    fake.put(fixtures::deployment(
        NS,
        "checkout",
        3,
        "registry.local/checkout:1.0",
    ));
    fake.step();
    fake.step();
    let kdir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.kubeconfig(kdir.path());
    let d = Daemon::start_with(rules, policies, None, |c| c.kubeconfig = Some(kubeconfig)).await;
    World {
        fake,
        d,
        _kdir: kdir,
    }
}

fn node_alert(status: &str, node: &str, fp: &str, starts_at: &str) -> String {
    daemon::alert_payload(
        status,
        json!({"alertname": "KubeNodeNotReady", "node": node}),
        fp,
        starts_at,
    )
}

async fn timeline_text(d: &Daemon, id: &str) -> String {
    serde_json::to_string(&d.timeline(id).await).unwrap()
}

fn patches(fake: &FakeKube) -> Vec<fake_kube::Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_alert_gathers_evidence_restarts_waits_for_the_rollout_and_resolves() {
    let w = world(RESTART).await;
    w.fake.auto_step(Duration::from_millis(50));
    let started = now_rfc3339();
    let (status, _) =
        w.d.post(&payload("firing", "checkout", "warning", "fp-1", &started))
            .await;
    assert_eq!(status, 200);
    let l =
        w.d.wait_incidents("verifying after the restart", |l| {
            l.len() == 1 && l[0]["status"] == "verifying"
        })
        .await;
    let id = l[0]["id"].as_str().unwrap().to_string();
    let t = timeline_text(&w.d, &id).await;
    let (ev, rs) = (
        t.find("kube_evidence").unwrap(),
        t.find("successfully rolled out").unwrap(),
    );
    assert!(ev < rs, "evidence is recorded before the restart: {t}");
    assert!(t.contains("3 pod(s), 3 ready"), "{t}");
    let p = patches(&w.fake);
    assert_eq!(p.len(), 1, "one restart");
    assert_eq!(
        p[0].query.get("fieldManager").map(String::as_str),
        Some("kubectl-rollout")
    );
    assert!(p[0].user_agent.as_deref().unwrap().starts_with("remedyd/"));

    w.d.post(&payload(
        "resolved", "checkout", "warning", "fp-1", &started,
    ))
    .await;
    w.d.wait_incidents("resolved", |l| l[0]["status"] == "resolved")
        .await;
    assert_eq!(patches(&w.fake).len(), 1, "nothing done twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_past_its_progress_deadline_is_rolled_back_to_the_previous_image_then_escalated()
{
    let w = world(
        r#"          - name: restart
            action: kube_rollout_restart
            with: {wait: 30s}
            verify: {resolved_within: 1m}
            on_failure: next
          - name: rollback
            action: kube_rollout_undo
            with: {wait: 30s}
            verify: {resolved_within: 1m}
            on_failure: escalate
"#,
    )
    .await;
    // A second revision exists, so there is something to roll back to.
    let mut dep = w.fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    dep["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.local/checkout:2.0");
    w.fake.put(dep);
    w.fake.step();
    w.fake.step();
    w.fake.set_rollout(NS, "checkout", Rollout::Stuck);
    w.fake.auto_step(Duration::from_millis(50));
    w.d.post(&payload(
        "firing",
        "checkout",
        "warning",
        "fp-2",
        &now_rfc3339(),
    ))
    .await;
    let l =
        w.d.wait_incidents("escalated", |l| {
            l.len() == 1 && l[0]["status"] == "escalated"
        })
        .await;
    let t = timeline_text(&w.d, l[0]["id"].as_str().unwrap()).await;
    assert!(t.contains("exceeded its progress deadline"), "{t}");
    let p = patches(&w.fake);
    assert_eq!(p.len(), 2, "restart, then undo");
    assert_eq!(
        p[0].content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        p[1].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    // The previous release (1.0), not the template from before the restart (2.0).
    let dep = w.fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/checkout:1.0"
    );
    let change = "from revision 3 to revision 1: app registry.local/checkout:2.0 → registry.local/checkout:1.0";
    assert!(t.contains(change), "{t}");
    w.d.wait("the page", || !w.d.pager.all().is_empty()).await;
    let pages = w.d.pager.all();
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].0, "oncall");
    assert!(
        pages[0]
            .1
            .actions_taken
            .iter()
            .any(|a| a.contains("rollback") && a.contains(change)),
        "{:?}",
        pages[0].1.actions_taken
    );
}

/// The shipped `policies/runbook.yaml` as it is (only the owner route renamed to the test's), so
/// that the shipped level-1 ladder itself is proven to take the runbook's "Rollback (if needed)"
/// when the restart's rollout fails, before on-call is paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_level_1_rolls_back_a_failed_restart_before_paging() {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/runbook.yaml"),
    )
    .unwrap()
    .replace("escalate_to: service-owner", "escalate_to: owner");
    let rules = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}", namespace: python-services}
    policy: service-degradation
"#;
    let w = world_with(rules, &shipped).await;
    // Release 2.0 was just deployed over 1.0; its pods cannot become ready after the restart.
    let mut dep = w.fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    dep["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.local/checkout:2.0");
    w.fake.put(dep);
    w.fake.step();
    w.fake.step();
    w.fake.set_rollout(NS, "checkout", Rollout::Stuck);
    w.fake.auto_step(Duration::from_millis(50));
    w.d.post(&payload(
        "firing",
        "checkout",
        "warning",
        "fp-shipped",
        &now_rfc3339(),
    ))
    .await;
    let l =
        w.d.wait_incidents("escalated", |l| {
            l.len() == 1 && l[0]["status"] == "escalated"
        })
        .await;
    let id = l[0]["id"].as_str().unwrap();
    let t = timeline_text(&w.d, id).await;
    // The steps in order: evidence, the restart (its rollout fails), the rollback, then the page.
    let (e, r, u) = (
        t.find("evidence").expect("evidence"),
        t.find("exceeded its progress deadline")
            .expect("the restart's rollout failed"),
        t.find("from revision 3 to revision 1")
            .expect("the rollback"),
    );
    assert!(e < r && r < u, "{t}");
    let p = patches(&w.fake);
    assert_eq!(p.len(), 2, "restart, then undo: {p:?}");
    assert_eq!(
        p[0].content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        p[1].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    let dep = w.fake.get("apps/v1", "Deployment", NS, "checkout").unwrap();
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"], "registry.local/checkout:1.0",
        "back to the previous release"
    );
    w.d.wait("the page", || !w.d.pager.all().is_empty()).await;
    let pages = w.d.pager.all();
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert_eq!(pages[0].0, "oncall");
    let taken = &pages[0].1.actions_taken;
    let step = |name: &str| {
        taken
            .iter()
            .position(|a| a.contains(name))
            .unwrap_or_else(|| panic!("{name} in {taken:?}"))
    };
    assert!(step("evidence") < step("restart"), "{taken:?}");
    assert!(step("restart") < step("rollback"), "{taken:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_blocked_by_its_max_escalates_without_writing() {
    let w = world(
        r#"          - name: scale-up
            action: kube_scale
            with: {by: 2, max: 3}
            verify: {resolved_within: 1m}
            on_failure: escalate
"#,
    )
    .await;
    w.d.post(&payload(
        "firing",
        "checkout",
        "warning",
        "fp-3",
        &now_rfc3339(),
    ))
    .await;
    let l =
        w.d.wait_incidents("escalated", |l| {
            l.len() == 1 && l[0]["status"] == "escalated"
        })
        .await;
    let t = timeline_text(&w.d, l[0]["id"].as_str().unwrap()).await;
    assert!(t.contains("scale blocked"), "{t}");
    assert!(patches(&w.fake).is_empty());
    w.d.wait("the page", || !w.d.pager.all().is_empty()).await;
    assert_eq!(w.d.pager.all()[0].0, "oncall");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_blocked_by_a_pdb_escalates_with_the_node_cordoned_and_the_pods_named() {
    let w = world(RESTART).await;
    w.fake
        .put(fixtures::pdb(NS, "checkout", json!({"app": "checkout"}), 0));
    w.d.post(&node_alert("firing", "node-1", "fp-4", &now_rfc3339()))
        .await;
    let l =
        w.d.wait_incidents("escalated", |l| {
            l.len() == 1 && l[0]["status"] == "escalated"
        })
        .await;
    let t = timeline_text(&w.d, l[0]["id"].as_str().unwrap()).await;
    assert!(t.contains("left cordoned"), "{t}");
    assert!(t.contains("python-services/checkout-"), "{t}");
    assert_eq!(
        w.fake.get("v1", "Node", "", "node-1").unwrap()["spec"]["unschedulable"],
        true
    );
    w.d.wait("the page", || !w.d.pager.all().is_empty()).await;
    let page = &w.d.pager.all()[0];
    assert_eq!(page.0, "platform");
    assert!(
        serde_json::to_string(&page.1)
            .unwrap()
            .contains("disruption budget"),
        "{:?}",
        page.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_server_errors_are_retried_and_forbidden_opens_the_breaker() {
    let w = world(RESTART).await;
    w.fake.auto_step(Duration::from_millis(50));
    w.fake.fail("PATCH", "deployments/checkout", 409, 1);
    w.fake.fail("PATCH", "deployments/checkout", 503, 1);
    let started = now_rfc3339();
    w.d.post(&payload("firing", "checkout", "warning", "fp-5", &started))
        .await;
    let l =
        w.d.wait_incidents("verifying", |l| {
            l.len() == 1 && l[0]["status"] == "verifying"
        })
        .await;
    let t = timeline_text(&w.d, l[0]["id"].as_str().unwrap()).await;
    assert!(
        t.contains("409") && t.contains("503"),
        "retries are recorded: {t}"
    );
    assert!(t.contains("successfully rolled out"), "{t}");
    w.d.post(&payload(
        "resolved", "checkout", "warning", "fp-5", &started,
    ))
    .await;
    w.d.wait_incidents("resolved", |l| l[0]["status"] == "resolved")
        .await;

    // The service account loses its rights: 403, the breaker opens, a human is paged.
    w.fake.fail("PATCH", "deployments/checkout", 403, 100);
    let started = now_rfc3339();
    w.d.post(&payload("firing", "checkout", "warning", "fp-6", &started))
        .await;
    let l =
        w.d.wait_incidents("escalated", |l| {
            l.iter().any(|i| i["status"] == "escalated")
        })
        .await;
    let inc = l.iter().find(|i| i["status"] == "escalated").unwrap();
    let t = timeline_text(&w.d, inc["id"].as_str().unwrap()).await;
    assert!(
        t.contains("breaker_opened") && t.contains("denied permission"),
        "{t}"
    );
    let m = w.d.metrics().await;
    for series in [
        r#"remedyd_kube_requests_total{method="PATCH",code="403"} 1"#,
        r#"remedyd_kube_requests_total{method="PATCH",code="409"} 1"#,
        r#"remedyd_kube_requests_total{method="PATCH",code="503"} 1"#,
    ] {
        assert!(m.contains(series), "{series} missing:\n{m}");
    }
    let before = patches(&w.fake).len();
    // The next alert on that target is refused by the breaker: no request reaches the API.
    w.d.post(&payload(
        "resolved", "checkout", "warning", "fp-6", &started,
    ))
    .await;
    w.d.wait_incidents("resolved", |l| l.iter().all(|i| i["status"] == "resolved"))
        .await;
    w.d.post(&payload(
        "firing",
        "checkout",
        "warning",
        "fp-7",
        &now_rfc3339(),
    ))
    .await;
    let l =
        w.d.wait_incidents("refused", |l| {
            l.iter().filter(|i| i["status"] == "escalated").count() == 1
        })
        .await;
    let inc: &Value = l.iter().find(|i| i["status"] == "escalated").unwrap();
    let t = timeline_text(&w.d, inc["id"].as_str().unwrap()).await;
    assert!(t.contains("breaker"), "{t}");
    assert_eq!(
        patches(&w.fake).len(),
        before,
        "the open breaker sent nothing"
    );
}

/// Enforce mode with policies that use Kubernetes actions and no reachable cluster is a startup
/// error that says so; dry-run starts (it records plans when it cannot read the cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_mode_without_a_reachable_cluster_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // released: nothing listens there
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: gone\n  context: {{cluster: gone, user: u}}\ncurrent-context: gone\nusers:\n- name: u\n  user: {{token: t}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("rules/r.yaml"), RULES).unwrap();
    std::fs::write(dir.path().join("policies/routes.yaml"), daemon::ROUTES).unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), policies(RESTART)).unwrap();
    for (mode, starts) in [
        (remedyd::domain::policy::Mode::Enforce, false),
        (remedyd::domain::policy::Mode::DryRun, true),
    ] {
        let cfg = remedyd::load::config::Config {
            rules: dir.path().join("rules"),
            policies: dir.path().join("policies"),
            store: format!(
                "sqlite://{}",
                dir.path().join(format!("{mode:?}.db")).display()
            ),
            mode,
            kubeconfig: Some(kubeconfig.clone()),
            ..Default::default()
        };
        let parts = remedyd::app::Parts::for_config(&cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let run = tokio::spawn(remedyd::app::run(cfg, parts, listener, stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        if starts {
            assert!(!run.is_finished(), "dry-run starts without a cluster");
            stop.cancel();
            run.await.unwrap().unwrap();
        } else {
            let err = tokio::time::timeout(Duration::from_secs(60), run)
                .await
                .expect("fails fast")
                .unwrap()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("enforce mode") && err.contains("cluster is not usable"),
                "{err}"
            );
        }
    }
}
