//! High availability: several real `remedyd` processes (the binary) on one real PostgreSQL 15.
//! Every replica takes webhooks; one leader runs the engine, the poller and the outbox.
//!
//! What these tests prove: the same alerts sent to every replica (as an Alertmanager HA pair
//! does) run each step once and page once; a leader killed with SIGKILL mid-ladder is replaced
//! and the ladder finishes without repeating a step; a database outage answers 503 and service
//! resumes on its own, with nothing acknowledged lost; an unreachable database or an unsupported
//! URL stops `serve` at startup without logging the password; `remedyd resolve` is applied by
//! whichever replica leads, and stays queued (the API answers 202) while none does.
//!
//! What they cannot prove: network partitions between a replica and the database (all runs on
//! loopback, where a dead peer is seen at once; the leader's 10 s idle-session timeout that
//! bounds a partition is not exercised), clock skew between replicas, or a PostgreSQL failover
//! to a standby server.
//!
//! Every wait is bounded; each replica's log and the server's log are printed when a test fails.

use std::fs::OpenOptions;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use remedyd::adapters::store::postgres::{Leadership, PgStore};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::support::services;
use crate::support::services::{PG_PASSWORD, Postgres, http as client, wait_until, within};

const BIN: &str = env!("CARGO_BIN_EXE_remedyd");

// ---------------------------------------------------------------------------------------------
// The HTTP receiver: target of the `http` steps (/action) and of the page route (/page).

#[derive(Default)]
struct Hits(Mutex<Vec<(String, String)>>);

async fn receive(State(s): State<Arc<Hits>>, method: Method, uri: Uri, body: String) -> StatusCode {
    if method == Method::POST {
        s.0.lock()
            .expect("hits lock")
            .push((uri.path().to_string(), body));
    }
    StatusCode::OK
}

/// Counts the POSTs it receives, by path.
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Hits>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let hits = Arc::new(Hits::default());
        let app = Router::new().fallback(receive).with_state(hits.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self { addr, hits, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn bodies(&self, path: &str) -> Vec<String> {
        self.hits
            .0
            .lock()
            .expect("hits lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn count(&self, path: &str) -> usize {
        self.bodies(path).len()
    }

    /// (incident, step) of every action request, in arrival order.
    fn actions(&self) -> Vec<(String, String)> {
        self.bodies("/action")
            .iter()
            .map(|b| {
                let v: Value = serde_json::from_str(b).expect("action body is JSON");
                (
                    v["incident"].as_str().unwrap_or_default().to_string(),
                    v["step"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Replicas

/// One `remedyd serve` process with its port and log.
struct Replica {
    name: String,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// SIGKILL, and reap.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL remedyd");
            c.wait().expect("reap remedyd");
        }
    }

    /// `remedyd_leader` from /metrics: `None` when the replica does not answer.
    async fn leads(&self) -> Option<bool> {
        let text = client()
            .get(self.url("/metrics"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(services::metric_value(&text, "remedyd_leader") == 1.0)
    }

    async fn post(&self, body: &str) -> (StatusCode, Value) {
        let resp = client()
            .post(self.url("/webhook/alertmanager"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST to {}: {e}", self.name));
        let status = resp.status();
        let text = resp.text().await.expect("webhook answer body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn incidents(&self) -> Vec<Value> {
        let v: Value = client()
            .get(self.url("/api/v1/incidents"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET incidents from {}: {e}", self.name))
            .json()
            .await
            .expect("incidents JSON");
        v["incidents"].as_array().cloned().unwrap_or_default()
    }

    async fn timeline(&self, id: &str) -> Vec<String> {
        let v: Value = client()
            .get(self.url(&format!("/api/v1/incidents/{id}")))
            .send()
            .await
            .expect("GET incident")
            .json()
            .await
            .expect("incident JSON");
        v["timeline"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A temp dir with rules and policies, the database, the receiver and the replicas. Prints
/// every log when the test fails.
struct Cluster {
    replicas: Vec<Replica>,
    rx: Receiver,
    pg: Postgres,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// PostgreSQL, the receiver, the files (a ladder of `steps` `http` steps, each verified with
    /// `resolved_within: verify`; the rule waits `for_`), and `n` replicas, each ready.
    async fn start(n: usize, steps: usize, verify: &str, for_: Option<&str>) -> Self {
        let pg = Postgres::start().await;
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
        std::fs::create_dir(dir.path().join("policies")).expect("policies dir");
        std::fs::write(dir.path().join("rules/r.yaml"), rule(for_)).expect("rules file");
        std::fs::write(
            dir.path().join("policies/p.yaml"),
            policy(&rx, steps, verify),
        )
        .expect("policies file");
        let mut c = Cluster {
            replicas: Vec::new(),
            rx,
            pg,
            dir,
        };
        let url = c.pg.url();
        for i in 0..n {
            c.spawn(&format!("replica-{i}"), &url);
        }
        for i in 0..n {
            c.ready(i).await;
        }
        c
    }

    fn spawn(&mut self, name: &str, store: &str) {
        let port = services::free_port();
        let log = self.dir.path().join(format!("{name}.log"));
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the log");
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("REMEDYD_") {
                cmd.env_remove(k);
            }
        }
        // The database URL comes from the environment, as in deploy/kubernetes (a Secret).
        cmd.env("REMEDYD_STORE", store)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--rules", "rules", "--policies", "policies", "serve"])
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--mode",
                "enforce",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out);
        let child = cmd.spawn().expect("spawn remedyd");
        self.replicas.push(Replica {
            name: name.into(),
            port,
            log,
            child: Some(child),
        });
    }

    /// Waits until replica `i` answers /readyz.
    async fn ready(&mut self, i: usize) {
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = &mut self.replicas[i];
        loop {
            if let Some(status) = r
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!("{} exited during startup with {status}", r.name);
            }
            if let Ok(resp) = http.get(r.url("/readyz")).send().await
                && resp.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within 30 s",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Index of the only leader among the running replicas, once there is exactly one.
    async fn leader(&self, secs: u64) -> usize {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let mut leaders = Vec::new();
            for (i, r) in self.replicas.iter().enumerate() {
                if r.child.is_some() && r.leads().await == Some(true) {
                    leaders.push(i);
                }
            }
            if leaders.len() == 1 {
                return leaders[0];
            }
            assert!(leaders.len() < 2, "two replicas lead at once: {leaders:?}");
            assert!(Instant::now() < deadline, "no leader within {secs} s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Incidents as the first running replica serves them (all serve the same store).
    async fn incidents(&self) -> Vec<Value> {
        let r = self
            .replicas
            .iter()
            .find(|r| r.child.is_some())
            .expect("a running replica");
        r.incidents().await
    }

    /// No log contains the database password.
    fn assert_no_password_in_logs(&self) {
        for r in &self.replicas {
            assert!(
                !r.log().contains(PG_PASSWORD),
                "{}'s log contains the database password",
                r.name
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for r in &self.replicas {
                eprintln!(
                    "--- {} log ({}) ---\n{}--- end of {} log ---",
                    r.name,
                    r.log.display(),
                    r.log(),
                    r.name
                );
            }
            eprintln!("{}", self.pg.logs());
            eprintln!("receiver: {:?}", self.rx.hits.0.lock().map(|h| h.clone()));
        }
    }
}

fn rule(for_: Option<&str>) -> String {
    let for_ = for_.map(|f| format!("    for: {f}\n")).unwrap_or_default();
    format!(
        r#"rules:
  - name: error-rate
    match:
      - alertname="HighErrorRate"
    level: 1
    target:
      kind: deployment
      name: "{{{{service}}}}"
    policy: ladder
{for_}"#
    )
}

/// A ladder of `steps` `http` steps named `step-1`…, each posting {step, incident} to the
/// receiver and verified with `resolved_within: verify`; then a page. Limits are high so that
/// only the ladder decides.
fn policy(rx: &Receiver, steps: usize, verify: &str) -> String {
    let mut out = format!(
        r#"routes:
  - name: oncall
    type: webhook
    url: "{page}"

limits:
  budgets:
    global: {{max: 100, per: 1h}}
    namespace: {{max: 100, per: 1h}}
    rule: {{max: 100, per: 1h}}
    action_target: {{max: 100, per: 1h}}
  breakers:
    target: {{failures: 100, within: 1h, cooldown: 1h}}
    global: {{failures: 100, within: 1h, cooldown: 1h}}

policies:
  - name: ladder
    escalate_to: oncall
    levels:
      - level: 1
        steps:
"#,
        page = rx.url("/page")
    );
    for i in 1..=steps {
        out.push_str(&format!(
            r#"          - name: step-{i}
            action: http
            with:
              url: "{action}"
              body:
                step: "step-{i}"
                incident: "{{{{incident.id}}}}"
              timeout: 5s
              retries: 0
            verify: {{resolved_within: {verify}}}
            on_failure: next
"#,
            action = rx.url("/action"),
        ));
    }
    out
}

/// A one-alert Alertmanager payload for `service`, firing since `starts_at`.
fn alert(service: &str, fingerprint: &str, starts_at: &str) -> String {
    serde_json::json!({
        "receiver": "remedyd", "status": "firing", "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"HighErrorRate\", service=\"{service}\"}}"),
        "truncatedAlerts": 0, "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "service": service},
        "commonAnnotations": {}, "externalURL": "http://alertmanager",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "service": service, "severity": "critical"},
            "annotations": {"summary": "errors"},
            "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus", "fingerprint": fingerprint
        }]
    })
    .to_string()
}

fn now() -> String {
    remedyd::domain::time::Clock::now(&remedyd::adapters::clock::SystemClock).to_rfc3339()
}

/// Each (incident, step) of `actions` exactly once: the counts of those seen more than once.
fn repeated(actions: &[(String, String)]) -> Vec<((String, String), usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for a in actions {
        *counts.entry(a.clone()).or_insert(0) += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).collect()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_given_the_same_alerts_run_each_step_exactly_once() {
    let c = Cluster::start(2, 3, "2s", None).await;
    within(120, async {
        let leader = c.leader(15).await;
        eprintln!("leader: {}", c.replicas[leader].name);
        // Two services; each payload goes to both replicas, three times (Alertmanager's HA pair
        // both notify, and each re-sends), concurrently.
        let started = now();
        let payloads = [
            alert("checkout", "fp-checkout", &started),
            alert("payments", "fp-payments", &started),
        ];
        let mut stored = 0;
        for _round in 0..3 {
            let mut posts = Vec::new();
            for p in &payloads {
                for r in &c.replicas {
                    posts.push(r.post(p));
                }
            }
            for (status, body) in join_all(posts).await {
                assert_eq!(status, StatusCode::OK, "{body}");
                stored += body["stored"].as_u64().expect("stored");
            }
        }
        assert_eq!(stored, 2, "each alert stored once, the rest deduplicated");

        wait_until(
            60,
            "both incidents escalated after their 3-step ladders",
            || async {
                let list = c.incidents().await;
                list.len() == 2 && list.iter().all(|i| i["status"] == "escalated")
            },
        )
        .await;
        // Past a verification window: a repeated step would have arrived by now.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let actions = c.rx.actions();
        assert_eq!(actions.len(), 6, "3 steps × 2 incidents: {actions:?}");
        assert!(repeated(&actions).is_empty(), "{actions:?}");
        assert_eq!(
            c.rx.count("/page"),
            2,
            "one page per incident: {:?}",
            c.rx.bodies("/page")
        );
        // Both replicas serve the same incidents.
        let a = c.replicas[0].incidents().await;
        let b = c.replicas[1].incidents().await;
        assert_eq!(a, b);
        assert_eq!(c.leader(5).await, leader, "leadership stayed put");
        c.assert_no_password_in_logs();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_ladder_lets_another_replica_finish_it_without_repeating_a_step() {
    let mut c = Cluster::start(3, 3, "3s", None).await;
    within(150, async {
        let body = alert("checkout", "fp-failover", &now());
        for r in &c.replicas {
            let (status, answer) = r.post(&body).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
        wait_until(20, "step-1 to reach the receiver", || async {
            c.rx.count("/action") == 1
        })
        .await;
        let old = c.leader(10).await;
        let killed_at = Instant::now();
        c.replicas[old].kill9();
        eprintln!("killed the leader {} after step-1", c.replicas[old].name);

        let new = c.leader(20).await;
        assert_ne!(new, old);
        eprintln!(
            "{} leads {:?} after the kill",
            c.replicas[new].name,
            killed_at.elapsed()
        );
        wait_until(
            60,
            "the incident escalated after its 3-step ladder",
            || async {
                let list = c.incidents().await;
                list.len() == 1 && list[0]["status"] == "escalated"
            },
        )
        .await;
        eprintln!("ladder finished {:?} after the kill", killed_at.elapsed());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let actions = c.rx.actions();
        let steps: Vec<&str> = actions.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(steps, ["step-1", "step-2", "step-3"], "{actions:?}");
        assert_eq!(c.rx.count("/page"), 1, "{:?}", c.rx.bodies("/page"));
        let id = c.incidents().await[0]["id"]
            .as_str()
            .expect("id")
            .to_string();
        let kinds = c.replicas[new].timeline(&id).await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "step_started").count(),
            3,
            "{kinds:?}"
        );
        c.assert_no_password_in_logs();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_webhooks_answer_503_and_service_resumes_when_it_returns() {
    // One step; the rule waits 3 s, so the acknowledged alert's step falls due during the outage.
    let mut c = Cluster::start(2, 1, "5m", Some("3s")).await;
    within(150, async {
        c.leader(15).await;
        let pids: Vec<Option<u32>> = c.replicas.iter().map(Replica::pid).collect();
        let (status, answer) = c.replicas[0]
            .post(&alert("checkout", "fp-before", &now()))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["stored"], 1, "{answer}");

        // The database crashes (immediate shutdown).
        c.pg.crash();
        let during = alert("payments", "fp-during", &now());
        for r in &c.replicas {
            let started = Instant::now();
            let (status, answer) = r.post(&during).await;
            let took = started.elapsed();
            eprintln!(
                "{}: HTTP {status} after {took:?} with the database down",
                r.name
            );
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
            assert!(answer["error"].is_string(), "{answer}");
            assert!(took < Duration::from_secs(6), "answered after {took:?}");
            let ready = client()
                .get(r.url("/readyz"))
                .send()
                .await
                .expect("GET /readyz");
            assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        wait_until(
            15,
            "no replica leads while the database is down",
            || async {
                let mut any = false;
                for r in &c.replicas {
                    any |= r.leads().await == Some(true);
                }
                !any
            },
        )
        .await;
        assert_eq!(c.rx.count("/action"), 0, "acted during the outage");
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Back: Alertmanager keeps re-sending the 503'd payload; it is taken without restarting
        // remedyd, and the acknowledged alert is acted on.
        c.pg.restart().await;
        let back = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            let (status, answer) = c.replicas[1].post(&during).await;
            if status == StatusCode::OK {
                break answer;
            }
            assert!(
                Instant::now() < deadline,
                "still HTTP {status} 30 s after the database was back: {answer}"
            );
            // Alertmanager's first retries come about this often.
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!(
            "webhook answered 200 {:?} after the database was back",
            back.elapsed()
        );
        assert_eq!(answer["stored"], 1, "{answer}");
        let leader = c.leader(20).await;
        eprintln!(
            "{} leads {:?} after the database was back",
            c.replicas[leader].name,
            back.elapsed()
        );
        wait_until(30, "both alerts acted on", || async {
            c.rx.count("/action") >= 2
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let actions = c.rx.actions();
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(repeated(&actions).is_empty(), "{actions:?}");
        let list = c.incidents().await;
        let mut targets: Vec<String> = list.iter().map(|i| i["target"].to_string()).collect();
        targets.sort();
        assert_eq!(list.len(), 2, "{list:#?}");
        assert!(
            targets[0].contains("checkout") && targets[1].contains("payments"),
            "{targets:?}"
        );
        for (r, pid) in c.replicas.iter_mut().zip(pids) {
            assert!(r.is_running(), "{} stopped", r.name);
            assert_eq!(r.pid(), pid, "{} was restarted", r.name);
        }
        c.assert_no_password_in_logs();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_or_unsupported_url_stops_serve_without_logging_the_password() {
    let secret = "Unreach-s3cr3t-4711";
    let port = services::free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
    std::fs::create_dir(dir.path().join("policies")).expect("policies dir");
    let cases = [
        (
            format!("postgres://remedyd:{secret}@127.0.0.1:{port}/remedyd"),
            format!("127.0.0.1:{port}"),
        ),
        (
            format!("postgres://remedyd:{secret}@127.0.0.1:{port}/remedyd?sslmode=verify-full"),
            "sslmode=verify-full needs sslrootcert".to_string(),
        ),
        (
            format!("postgres://remedyd@127.0.0.1:{port}/remedyd?password={secret}"),
            format!("127.0.0.1:{port}"),
        ),
    ];
    within(60, async {
        for (url, want) in cases {
            let log = dir.path().join("remedyd.log");
            let out = std::fs::File::create(&log).expect("log file");
            let mut child = Command::new(BIN)
                .current_dir(dir.path())
                .env("REMEDYD_STORE", &url)
                .env("RUST_LOG", "info")
                .args(["--rules", "rules", "--policies", "policies", "serve"])
                .args(["--listen", "127.0.0.1:0", "--mode", "enforce"])
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone"))
                .stderr(out)
                .spawn()
                .expect("spawn remedyd");
            let deadline = Instant::now() + Duration::from_secs(20);
            let status = loop {
                if let Some(s) = child.try_wait().expect("try_wait") {
                    break s;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("remedyd kept running with {want:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(!status.success(), "exit status {status}\n{text}");
            assert!(
                text.contains(&want),
                "the error does not say {want:?}:\n{text}"
            );
            assert!(
                !text.contains(secret),
                "the password is in the log:\n{text}"
            );
        }
    })
    .await;
}

/// Runs `remedyd ARGS` with the database URL in `REMEDYD_STORE` (as in deploy/kubernetes), at
/// most 30 s: exit code, stdout, stderr.
async fn remedyd_cli(dir: &std::path::Path, store: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("REMEDYD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("REMEDYD_STORE", store).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("remedyd {args:?} did not finish within 30 s"))
        .expect("run remedyd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (incident, event) of every page, in arrival order.
fn pages(rx: &Receiver) -> Vec<(String, String)> {
    rx.bodies("/page")
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_str(b).expect("page body is JSON");
            (
                v["incident"].as_str().unwrap_or_default().to_string(),
                v["event"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remedyd_resolve_is_applied_by_the_leader_and_stays_queued_while_no_replica_leads() {
    // One step verified within 1 s, then the ladder is exhausted: each incident is paged.
    let mut c = Cluster::start(1, 1, "1s", None).await;
    let url = c.pg.url();
    within(150, async {
        c.leader(15).await;
        let started = now();
        for (service, fp) in [("checkout", "fp-hand-a"), ("payments", "fp-hand-b")] {
            let (status, answer) = c.replicas[0].post(&alert(service, fp, &started)).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
        wait_until(30, "both incidents escalated and paged", || async {
            let list = c.incidents().await;
            list.len() == 2
                && list.iter().all(|i| i["status"] == "escalated")
                && c.rx.count("/page") == 2
        })
        .await;
        let list = c.incidents().await;
        let id_of = |service: &str| {
            list.iter()
                .find(|i| i["target"]["name"] == service)
                .and_then(|i| i["id"].as_str())
                .expect("incident of the service")
                .to_string()
        };
        let (a, b) = (id_of("checkout"), id_of("payments"));

        // The CLI, from outside any replica: the leader's engine applies it.
        let (code, out, err) = remedyd_cli(
            c.dir.path(),
            &url,
            &[
                "resolve",
                &a,
                "--reason",
                "known upstream outage",
                "--author",
                "erin",
            ],
        )
        .await;
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        assert!(
            out.contains(&format!(
                "{a} resolved by hand by erin: known upstream outage"
            )),
            "{out}"
        );
        wait_until(15, "the resolve page of the first incident", || async {
            c.rx.count("/page") == 3
        })
        .await;
        assert_eq!(pages(&c.rx)[2], (a.clone(), "resolve".to_string()));

        // No replica leads: the leader is killed and this test holds the leadership lock while
        // a replica starts again (it stands by, serving the API).
        c.replicas[0].kill9();
        let holder = Leadership::new(
            PgStore::connect(&url)
                .await
                .expect("connect the lock holder"),
            Arc::new(Notify::new()),
        );
        let cancel = CancellationToken::new();
        let term = holder
            .acquire(&cancel)
            .await
            .expect("the test holds leadership");
        c.spawn("replica-1", &url);
        c.ready(1).await;
        assert_eq!(c.replicas[1].leads().await, Some(false));

        let resp = client()
            .post(c.replicas[1].url(&format!("/api/v1/incidents/{b}/resolve")))
            .header("content-type", "application/json")
            .body(r#"{"reason": "deploy rolled back by hand", "author": "frank"}"#)
            .send()
            .await
            .expect("POST resolve");
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let answer: Value = resp.json().await.expect("JSON answer");
        assert_eq!(answer["status"], "queued", "{answer}");
        assert_eq!(answer["incident"], b.as_str(), "{answer}");
        assert!(answer["request"].is_i64(), "{answer}");
        let (code, out, err) = remedyd_cli(
            c.dir.path(),
            &url,
            &[
                "resolve",
                &b,
                "--reason",
                "deploy rolled back by hand",
                "--author",
                "frank",
            ],
        )
        .await;
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        assert!(out.contains("queued as resolve request"), "{out}");
        assert_eq!(
            c.replicas[1]
                .incidents()
                .await
                .iter()
                .find(|i| i["id"] == b.as_str())
                .map(|i| i["status"].clone()),
            Some(Value::from("escalated")),
            "nobody applied it yet"
        );

        // Leadership is free again: the replica leads and its engine applies the queue, once.
        term.release().await;
        wait_until(20, "the queued resolve applied", || async {
            c.replicas[1]
                .incidents()
                .await
                .iter()
                .any(|i| i["id"] == b.as_str() && i["status"] == "resolved")
        })
        .await;
        let kinds = c.replicas[1].timeline(&b).await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "resolved_by_hand").count(),
            1,
            "{kinds:?}"
        );
        wait_until(15, "the resolve page of the second incident", || async {
            c.rx.count("/page") == 4
        })
        .await;
        assert_eq!(pages(&c.rx)[3], (b.clone(), "resolve".to_string()));
        c.assert_no_password_in_logs();
    })
    .await;
}

/// Awaits futures concurrently on this task.
async fn join_all<F: Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut fs: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..fs.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in fs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
