//! Test harness: remedyd in-process on a loopback port, reached over real HTTP, with a test
//! executor that counts calls and a pager that captures notifications.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remedyd::adapters::action::{ActionRequest, BoxFuture, Executor, Executors, Outcome};
use remedyd::adapters::clock::SystemClock;
use remedyd::adapters::escalate::{Notification, Pager, PagerError};
use remedyd::app::Parts;
use remedyd::domain::policy::Mode;
use remedyd::domain::policy::Route;
use remedyd::load::config::Config;
use tokio_util::sync::CancellationToken;

/// Every wait in these tests is bounded: a missing behaviour fails instead of hanging. 60 s:
/// generous for a loaded CI machine running tests in parallel; passing tests take far less.
pub const WAIT: Duration = Duration::from_secs(60);

/// An action kind `test`: counts calls; answers from a script (then ok).
#[derive(Default)]
pub struct TestExecutor {
    pub calls: AtomicUsize,
    pub requests: Mutex<Vec<ActionRequest>>,
    pub script: Mutex<Vec<bool>>,
    /// What a failing call says (summary, detail); "test failure" and null when unset.
    pub failure: Mutex<Option<(String, serde_json::Value)>>,
}

impl TestExecutor {
    pub fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    /// The next calls fail (`false`) or succeed (`true`) in this order.
    pub fn script(&self, outcomes: &[bool]) {
        *self.script.lock().unwrap() = outcomes.to_vec();
    }
}

impl Executor for TestExecutor {
    fn validate(&self, _: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
    fn plan(&self, req: &ActionRequest) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({"test": req.step, "target": req.vars.get("target.name")}))
    }
    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.requests.lock().unwrap().push(req.clone());
            let ok = {
                let mut s = self.script.lock().unwrap();
                if s.is_empty() { true } else { s.remove(0) }
            };
            if ok {
                Outcome::ok("test ok", serde_json::Value::Null)
            } else {
                let (summary, detail) = self
                    .failure
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| ("test failure".into(), serde_json::Value::Null));
                Outcome::failed(false, &summary, detail)
            }
        })
    }
}

/// A pager that keeps what it is given.
#[derive(Default)]
pub struct CapturingPager {
    pub sent: Mutex<Vec<(String, Notification)>>,
}

impl CapturingPager {
    pub fn all(&self) -> Vec<(String, Notification)> {
        self.sent.lock().unwrap().clone()
    }
}

impl Pager for CapturingPager {
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async move {
            self.sent
                .lock()
                .unwrap()
                .push((route.name.clone(), n.clone()));
            Ok(true)
        })
    }
}

/// Shared limits and routes; tests add their own policies.
pub const ROUTES: &str = r#"
routes:
  - name: oncall
    type: webhook
    url: http://127.0.0.1:9/never-used
  - name: owner
    type: webhook
    url: http://127.0.0.1:9/never-used
  - name: platform
    type: webhook
    url: http://127.0.0.1:9/never-used
"#;

/// remedyd running in this process.
pub struct Daemon {
    pub url: String,
    pub exec: Arc<TestExecutor>,
    pub pager: Arc<CapturingPager>,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// The webhook token, when the test configured one: `get` presents it.
    pub token: Option<String>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Starts with these rule and policy files (policies get ROUTES added) in enforce mode.
    pub async fn start(rules: &str, policies: &str) -> Self {
        Self::start_with(rules, policies, None, |_| {}).await
    }

    /// Starts on an existing directory (restart on the same store) or a new one.
    pub async fn start_with(
        rules: &str,
        policies: &str,
        dir: Option<tempfile::TempDir>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_on(rules, policies, dir, Arc::new(SystemClock), false, tweak).await
    }

    /// Like `start_with`, on `clock`; with `real_pages`, pages go out through the real pagers
    /// (the routes' HTTP endpoints) instead of the capturing pager.
    pub async fn start_on(
        rules: &str,
        policies: &str,
        dir: Option<tempfile::TempDir>,
        clock: Arc<dyn remedyd::domain::time::Clock>,
        real_pages: bool,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("rules/rules.yaml"), rules).unwrap();
        std::fs::write(dir.path().join("policies/routes.yaml"), ROUTES).unwrap();
        std::fs::write(dir.path().join("policies/policies.yaml"), policies).unwrap();
        let mut cfg = Config {
            rules: dir.path().join("rules"),
            policies: dir.path().join("policies"),
            store: format!("sqlite://{}", dir.path().join("r.db").display()),
            mode: Mode::Enforce,
            ..Config::default()
        };
        tweak(&mut cfg);
        let token = cfg.token().unwrap();
        let exec = Arc::new(TestExecutor::default());
        let pager = Arc::new(CapturingPager::default());
        let mut executors = Executors::builtin_for(cfg.kubeconfig.clone());
        executors.register("test", exec.clone());
        let parts = Parts {
            executors,
            pager: if real_pages {
                Arc::new(remedyd::adapters::escalate::Pagers::new())
            } else {
                pager.clone()
            },
            clock,
            source: None,
            faults: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let handle = tokio::spawn(remedyd::app::run(cfg, parts, listener, stop.clone()));
        Daemon {
            url,
            exec,
            pager,
            dir,
            http: reqwest::Client::new(),
            token,
            stop,
            handle,
        }
    }

    /// Stops and returns the directory (with the store) for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
        self.dir
    }

    /// Posts a webhook body; returns status and JSON.
    pub async fn post(&self, body: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/webhook/alertmanager", self.url))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Posts a webhook body with a bearer token; returns status and JSON.
    pub async fn post_authed(&self, body: &str, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/webhook/alertmanager", self.url))
            .bearer_auth(token)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn incidents(&self) -> Vec<serde_json::Value> {
        self.get("/api/v1/incidents").await["incidents"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn timeline(&self, id: &str) -> Vec<serde_json::Value> {
        self.get(&format!("/api/v1/incidents/{id}")).await["timeline"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Polls until `f` holds on the incident list (bounded by WAIT).
    pub async fn wait_incidents(
        &self,
        what: &str,
        f: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let list = self.incidents().await;
            if f(&list) {
                return list;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; incidents: {list:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until `f` holds (bounded by WAIT).
    pub async fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A fixture from tests/fixtures/alertmanager.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/alertmanager/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A one-alert HighErrorRate payload built in the test.
pub fn payload(
    status: &str,
    service: &str,
    severity: &str,
    fingerprint: &str,
    starts_at: &str,
) -> String {
    alert_payload(
        status,
        serde_json::json!({"alertname": "HighErrorRate", "service": service, "severity": severity}),
        fingerprint,
        starts_at,
    )
}

/// A one-alert payload with these labels, as Alertmanager 0.25 sends it.
pub fn alert_payload(
    status: &str,
    labels: serde_json::Value,
    fingerprint: &str,
    starts_at: &str,
) -> String {
    let ends = if status == "resolved" {
        "2099-01-01T00:00:00Z"
    } else {
        "0001-01-01T00:00:00Z"
    };
    let group_key = format!(
        "{{}}:{{alertname={:?}}}",
        labels["alertname"].as_str().unwrap_or_default()
    );
    serde_json::json!({
        "receiver": "remedyd", "status": status, "version": "4", "groupKey": group_key,
        "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": {"summary": "errors"},
            "startsAt": starts_at, "endsAt": ends, "generatorURL": "http://prom", "fingerprint": fingerprint
        }]
    })
    .to_string()
}

/// Now as RFC 3339.
pub fn now_rfc3339() -> String {
    use remedyd::domain::time::Clock;
    SystemClock.now().to_rfc3339()
}
