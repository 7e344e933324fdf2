//! The real `remedyd` binary as a child process: crashes (SIGKILL) around actions, SIGHUP reloads,
//! SIGTERM, startup refusals, the webhook token, a locked store, and the `check` and `simulate`
//! commands.
//!
//! Every test is bounded: async bodies run under [`within`], waits poll against a deadline, so a
//! missing behaviour fails instead of hanging. remedyd's log (stderr) goes to a file in the test's
//! temp dir and is printed when the test fails.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use serde_json::Value;

use crate::support::services::{free_port, http as client, wait_until, within};

const BIN: &str = env!("CARGO_BIN_EXE_remedyd");
const SINGLE: &str = include_str!("../fixtures/alertmanager/01-firing-single-alert.json");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The HTTP receiver: target of the `http` action (/action) and of the webhook route (/page).

struct ReceiverState {
    hits: Mutex<Vec<(String, String)>>,
    action_delay: Duration,
    action_status: StatusCode,
}

/// Counts the POSTs it receives, by path; answers `/action` after `action_delay` with
/// `action_status`, everything else at once with 200.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(s): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    body: String,
) -> StatusCode {
    if method == Method::POST {
        s.hits
            .lock()
            .expect("hits lock")
            .push((uri.path().to_string(), body));
    }
    if uri.path() == "/action" {
        tokio::time::sleep(s.action_delay).await;
        return s.action_status;
    }
    StatusCode::OK
}

impl Receiver {
    async fn start(action_delay: Duration) -> Self {
        Self::answering(action_delay, StatusCode::OK).await
    }

    async fn answering(action_delay: Duration, action_status: StatusCode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let state = Arc::new(ReceiverState {
            hits: Mutex::new(Vec::new()),
            action_delay,
            action_status,
        });
        let app = Router::new().fallback(receive).with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn count(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .expect("hits lock")
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }

    fn bodies(&self, path: &str) -> Vec<String> {
        self.state
            .hits
            .lock()
            .expect("hits lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon under test.

/// A temp dir with `rules/`, `policies/`, the SQLite db and remedyd's log; prints the log when
/// the test fails.
struct Env {
    dir: tempfile::TempDir,
    port: u16,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
        std::fs::create_dir(dir.path().join("policies")).expect("policies dir");
        Self {
            dir,
            port: free_port(),
            vars: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path().join(rel), text).expect("write a config file");
    }

    /// One rule on `HighErrorRate` (level 1, `for` as given) and a one-step `http` ladder to the
    /// receiver, escalating to a webhook route on the receiver.
    fn write_config(&self, rx: &Receiver, for_: Option<&str>, action_timeout: &str) {
        self.write("rules/r.yaml", &rule(for_));
        self.write("policies/p.yaml", &policy(rx, action_timeout));
    }

    fn log_path(&self) -> PathBuf {
        self.path().join("remedyd.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn db_path(&self) -> PathBuf {
        self.path().join("r.db")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A `remedyd` command run in the temp dir (no ./remedyd.toml), its output appended to the log.
    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("REMEDYD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        cmd
    }

    fn spawn_serve(&self, listen: &str) -> Daemon {
        let store = format!("sqlite://{}", self.db_path().display());
        let child = self
            .command()
            .args(["--rules", "rules", "--policies", "policies", "serve"])
            .args(["--listen", listen, "--store", &store, "--mode", "enforce"])
            .spawn()
            .expect("spawn remedyd");
        Daemon { child }
    }

    /// Starts `remedyd serve` on 127.0.0.1 and waits for /readyz.
    async fn start(&self) -> Daemon {
        let mut d = self.spawn_serve(&format!("127.0.0.1:{}", self.port));
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = d.child.try_wait().expect("try_wait") {
                panic!("remedyd exited during startup with {status}");
            }
            if let Ok(r) = http.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return d;
            }
            assert!(Instant::now() < deadline, "remedyd not ready within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn post_webhook(&self, body: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = client()
            .post(self.url("/webhook/alertmanager"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        let resp = req.send().await.expect("POST the webhook");
        let status = resp.status();
        let text = resp.text().await.expect("webhook answer body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    async fn get_json(&self, path: &str) -> Value {
        let resp = client()
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        resp.json().await.expect("JSON answer")
    }

    async fn incidents(&self) -> Vec<Value> {
        self.get_json("/api/v1/incidents").await["incidents"]
            .as_array()
            .expect("incidents is a list")
            .clone()
    }

    /// Kinds of the timeline entries of the only incident.
    async fn timeline_kinds(&self) -> Vec<String> {
        let list = self.incidents().await;
        assert_eq!(list.len(), 1, "expected one incident: {list:#?}");
        let id = list[0]["id"].as_str().expect("incident id");
        let inc = self.get_json(&format!("/api/v1/incidents/{id}")).await;
        inc["timeline"]
            .as_array()
            .expect("timeline is a list")
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- remedyd log ({}) ---\n{}--- end of log ---",
                self.log_path().display(),
                self.log()
            );
        }
    }
}

/// A running `remedyd`; killed when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// SIGKILL, and reap.
    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL remedyd");
        self.child.wait().expect("reap remedyd");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit; `None` if it is still running after `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    policy: restart
{for_}"#
    )
}

fn policy(rx: &Receiver, action_timeout: &str) -> String {
    format!(
        r#"routes:
  - name: oncall
    type: webhook
    url: "{page}"

policies:
  - name: restart
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: restart
            action: http
            with:
              url: "{action}"
              body:
                deployment: "{{{{target.name}}}}"
                incident: "{{{{incident.id}}}}"
              timeout: {action_timeout}
              retries: 0
            verify: {{resolved_within: 30s}}
            on_failure: escalate
"#,
        page = rx.url("/page"),
        action = rx.url("/action"),
    )
}

/// The single-alert fixture for `service` with its own fingerprint, starting now.
fn alert_now(service: &str, fingerprint: &str) -> String {
    let mut v: Value = serde_json::from_str(SINGLE).expect("fixture is JSON");
    let now =
        remedyd::domain::time::Clock::now(&remedyd::adapters::clock::SystemClock).to_rfc3339();
    let a = &mut v["alerts"][0];
    a["startsAt"] = Value::String(now);
    a["fingerprint"] = Value::String(fingerprint.into());
    a["labels"]["service"] = Value::String(service.into());
    v["commonLabels"]["service"] = Value::String(service.into());
    v.to_string()
}

/// The value of the sample whose line starts with `series ` (e.g. `name{label="x"}`).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

// ---------------------------------------------------------------------------------------------
// Crashes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_ack_and_action_runs_the_action_exactly_once_after_restart() {
    let env = Env::new();
    let rx = Receiver::start(Duration::ZERO).await;
    env.write_config(&rx, Some("3s"), "10s");
    within(90, async {
        let mut d = env.start().await;
        let (status, body) = env
            .post_webhook(&alert_now("checkout", "fp-ack"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["stored"], 1, "{body}");
        d.kill9();
        assert_eq!(rx.count("/action"), 0, "acted before `for` elapsed");

        // The acknowledged alert was durable: the restarted daemon acts on it, once.
        let mut d = env.start().await;
        wait_until(20, "the action after restart", || async {
            rx.count("/action") >= 1
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(rx.count("/action"), 1, "{:?}", rx.bodies("/action"));

        // Another restart does not run it again either.
        d.signal("TERM");
        assert!(
            d.wait_exit(Duration::from_secs(15)).await.is_some(),
            "remedyd did not stop on SIGTERM"
        );
        let _d = env.start().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(rx.count("/action"), 1, "{:?}", rx.bodies("/action"));
        let kinds = env.timeline_kinds().await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "step_started").count(),
            1,
            "{kinds:?}"
        );
        assert!(kinds.iter().any(|k| k == "step_ok"), "{kinds:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_action_in_flight_is_not_repeated_after_restart() {
    let env = Env::new();
    let rx = Receiver::start(Duration::from_secs(5)).await;
    env.write_config(&rx, None, "30s");
    within(90, async {
        let mut d = env.start().await;
        let (status, body) = env
            .post_webhook(&alert_now("checkout", "fp-inflight"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_until(15, "the action to reach the receiver", || async {
            rx.count("/action") == 1
        })
        .await;
        d.kill9();

        let _d = env.start().await;
        wait_until(15, "a step_interrupted timeline entry", || async {
            env.timeline_kinds()
                .await
                .iter()
                .any(|k| k == "step_interrupted")
        })
        .await;
        // Past the receiver's delay: a repeated request would have arrived by now.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(rx.count("/action"), 1, "{:?}", rx.bodies("/action"));
        let list = env.incidents().await;
        assert_eq!(list[0]["status"], "verifying", "{list:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_pages_the_webhook_route_exactly_once() {
    let env = Env::new();
    let rx = Receiver::answering(Duration::ZERO, StatusCode::INTERNAL_SERVER_ERROR).await;
    env.write_config(&rx, None, "10s");
    within(60, async {
        let _d = env.start().await;
        let (status, body) = env
            .post_webhook(&alert_now("checkout", "fp-page"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_until(15, "the page on the webhook route", || async {
            rx.count("/page") == 1
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(rx.count("/action"), 1, "{:?}", rx.bodies("/action"));
        assert_eq!(rx.count("/page"), 1, "{:?}", rx.bodies("/page"));
        let list = env.incidents().await;
        assert_eq!(list.len(), 1, "{list:#?}");
        assert_eq!(list[0]["status"], "escalated", "{list:#?}");
        let id = list[0]["id"].as_str().expect("incident id");
        assert!(
            rx.bodies("/page")[0].contains(id),
            "the page does not name {id}: {:?}",
            rx.bodies("/page")
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// remedyd resolve (SQLite; PostgreSQL is in tests/it/ha.rs)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remedyd_resolve_closes_an_incident_whose_rule_was_removed_and_its_route_gets_the_resolve()
{
    let env = Env::new();
    let rx = Receiver::answering(Duration::ZERO, StatusCode::INTERNAL_SERVER_ERROR).await;
    env.write_config(&rx, None, "10s");
    within(90, async {
        let d = env.start().await;
        let (status, body) = env
            .post_webhook(&alert_now("checkout", "fp-by-hand"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_until(15, "the trigger on the webhook route", || async {
            rx.count("/page") == 1
        })
        .await;
        let list = env.incidents().await;
        assert_eq!(list[0]["status"], "escalated", "{list:#?}");
        let id = list[0]["id"].as_str().expect("incident id").to_string();

        // The rule and its policy are removed by a reload (the route stays): nothing would
        // ever close this incident but a person.
        env.write(
            "rules/r.yaml",
            &rule(None)
                .replace("name: error-rate", "name: other-rule")
                .replace("HighErrorRate", "OtherAlert")
                .replace("policy: restart", "policy: other"),
        );
        env.write(
            "policies/p.yaml",
            &policy(&rx, "10s").replace(
                "  - name: restart\n    escalate_to: oncall",
                "  - name: other\n    escalate_to: oncall",
            ),
        );
        d.signal("HUP");
        wait_until(10, "reloads_total{result=\"ok\"} 1", || async {
            sample(
                &env.metrics().await,
                r#"remedyd_ruleset_reloads_total{result="ok"}"#,
            ) == Some(1.0)
        })
        .await;

        let store = format!("sqlite://{}", env.db_path().display());
        let resolve = |args: Vec<String>| {
            let dir = env.path().to_path_buf();
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_cli(&dir, &args, &[])
            })
        };
        let args = |id: &str, store: &str| -> Vec<String> {
            [
                "resolve",
                id,
                "--reason",
                "rule removed",
                "--author",
                "bob",
                "--store",
                store,
            ]
            .map(String::from)
            .to_vec()
        };
        let (status, out, err) = resolve(args(&id, &store)).await.expect("the CLI ran");
        assert_eq!(status.code(), Some(0), "stdout: {out}\nstderr: {err}");
        assert!(
            out.contains(&format!("{id} resolved by hand by bob: rule removed")),
            "{out}"
        );
        let inc = env.get_json(&format!("/api/v1/incidents/{id}")).await;
        assert_eq!(inc["status"], "resolved", "{inc:#}");
        let by_hand: Vec<&Value> = inc["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .filter(|e| e["kind"] == "resolved_by_hand")
            .collect();
        assert_eq!(by_hand.len(), 1, "{inc:#}");
        assert_eq!(by_hand[0]["data"]["author"], "bob");
        assert_eq!(by_hand[0]["data"]["reason"], "rule removed");
        wait_until(15, "the resolve on the webhook route", || async {
            rx.count("/page") == 2
        })
        .await;
        let pages: Vec<Value> = rx
            .bodies("/page")
            .iter()
            .map(|b| serde_json::from_str(b).expect("page body is JSON"))
            .collect();
        assert_eq!(
            pages
                .iter()
                .map(|p| (p["incident"].as_str(), p["event"].as_str()))
                .collect::<Vec<_>>(),
            [
                (Some(id.as_str()), Some("trigger")),
                (Some(id.as_str()), Some("resolve"))
            ]
        );

        // Exit 1: already resolved, or no such incident; the store is never created.
        let (status, _, err) = resolve(args(&id, &store)).await.expect("the CLI ran");
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("{id} is already resolved")), "{err}");
        let (status, _, err) = resolve(args("INC-1999-0001", &store))
            .await
            .expect("the CLI ran");
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains("no incident INC-1999-0001"), "{err}");
        let missing = format!("sqlite://{}", env.path().join("nowhere.db").display());
        let (status, _, err) = resolve(args(&id, &missing)).await.expect("the CLI ran");
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains("no store at"), "{err}");
        assert!(!env.path().join("nowhere.db").exists());
        // Exit 2: a bad store URL, a blank reason, a missing author.
        let (status, _, err) = resolve(args(&id, "mysql://db")).await.expect("the CLI ran");
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains("valid: sqlite://PATH or postgres://"), "{err}");
        let mut blank = args(&id, &store);
        blank[3] = " ".into();
        let (status, _, err) = resolve(blank).await.expect("the CLI ran");
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains("reason: required"), "{err}");
        let no_author: Vec<String> = args(&id, &store)
            .into_iter()
            .filter(|a| a != "--author" && a != "bob")
            .collect();
        let (status, _, err) = resolve(no_author).await.expect("the CLI ran");
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains("--author"), "{err}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Signals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_invalid_policies_keeps_the_last_good_set() {
    let env = Env::new();
    let rx = Receiver::start(Duration::ZERO).await;
    env.write_config(&rx, None, "10s");
    let good = policy(&rx, "10s");
    within(90, async {
        let mut d = env.start().await;
        let bad = good.replace(
            "            on_failure: escalate\n",
            "            on_failure: escalate\n            retry_forever: true\n",
        );
        assert_ne!(bad, good);
        env.write("policies/p.yaml", &bad);
        d.signal("HUP");
        wait_until(10, "reloads_total{result=\"error\"} 1", || async {
            sample(
                &env.metrics().await,
                r#"remedyd_ruleset_reloads_total{result="error"}"#,
            ) == Some(1.0)
        })
        .await;
        assert!(d.is_running(), "SIGHUP with a bad file stopped remedyd");
        assert!(
            env.log().contains("retry_forever"),
            "the reload error should name the unknown field"
        );

        // The last good rules and policies still run.
        let (status, body) = env
            .post_webhook(&alert_now("checkout", "fp-hup"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_until(15, "the action under the old policies", || async {
            rx.count("/action") == 1
        })
        .await;
        assert_eq!(env.incidents().await.len(), 1);

        env.write("policies/p.yaml", &good);
        d.signal("HUP");
        wait_until(10, "reloads_total{result=\"ok\"} 1", || async {
            sample(
                &env.metrics().await,
                r#"remedyd_ruleset_reloads_total{result="ok"}"#,
            ) == Some(1.0)
        })
        .await;
        let m = env.metrics().await;
        assert_eq!(
            sample(&m, r#"remedyd_ruleset_reloads_total{result="error"}"#),
            Some(1.0),
            "{m}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_within_the_deadline_with_exit_code_0() {
    let mut env = Env::new();
    // An action that would take 60 s is in flight; the 2 s deadline bounds the shutdown.
    env.vars
        .push(("REMEDYD_SHUTDOWN_TIMEOUT".into(), "2s".into()));
    let rx = Receiver::start(Duration::from_secs(60)).await;
    env.write_config(&rx, None, "90s");
    within(60, async {
        let mut d = env.start().await;
        let (status, body) = env
            .post_webhook(&alert_now("checkout", "fp-term"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_until(15, "the action to be in flight", || async {
            rx.count("/action") == 1
        })
        .await;
        let started = Instant::now();
        d.signal("TERM");
        let status = d
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("remedyd still running 10 s after SIGTERM");
        let took = started.elapsed();
        assert_eq!(status.code(), Some(0), "exit status {status}");
        assert!(
            took < Duration::from_secs(6),
            "SIGTERM took {took:?} with a 2 s deadline"
        );
        let log = env.log();
        assert!(
            log.contains("Shutdown deadline passed"),
            "the in-flight action did not hit the deadline"
        );
        assert!(log.contains("Stopped"), "no final log line");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Startup refusals, the token, the store

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_listen_without_token_refuses_to_start() {
    let env = Env::new();
    let rx = Receiver::start(Duration::ZERO).await;
    env.write_config(&rx, None, "10s");
    within(30, async {
        let mut d = env.spawn_serve(&format!("0.0.0.0:{}", env.port));
        let status = d
            .wait_exit(Duration::from_secs(15))
            .await
            .expect("remedyd kept running on 0.0.0.0 without a token");
        assert!(!status.success(), "exit status {status}");
        assert!(
            env.log().contains("webhook_token"),
            "stderr does not mention webhook_token"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_token_is_required_when_configured() {
    let mut env = Env::new();
    env.vars
        .push(("REMEDYD_WEBHOOK_TOKEN".into(), "s3cr3t".into()));
    let rx = Receiver::start(Duration::ZERO).await;
    env.write_config(&rx, Some("1h"), "10s");
    within(60, async {
        let _d = env.start().await;
        let body = alert_now("checkout", "fp-token");
        let (status, answer) = env.post_webhook(&body, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert!(answer["error"].is_string(), "{answer}");
        let (status, answer) = env.post_webhook(&body, Some("Bearer wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        let (status, answer) = env.post_webhook(&body, Some("Bearer s3cr3t")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["stored"], 1, "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_locked_by_another_writer_answers_503_and_stores_nothing() {
    let env = Env::new();
    let rx = Receiver::start(Duration::ZERO).await;
    env.write_config(&rx, Some("1h"), "10s");
    within(90, async {
        let _d = env.start().await;
        let body = alert_now("checkout", "fp-locked");
        let lock = rusqlite::Connection::open(env.db_path()).expect("open the db");
        lock.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        lock.execute_batch("BEGIN EXCLUSIVE")
            .expect("take the write lock");

        let (status, answer) = env.post_webhook(&body, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
        assert!(answer["error"].is_string(), "{answer}");
        let stored: i64 = lock
            .query_row("SELECT COUNT(*) FROM signals", [], |r| r.get(0))
            .expect("count signals");
        assert_eq!(stored, 0, "a 503 must store nothing");
        lock.execute_batch("ROLLBACK").expect("release the lock");
        drop(lock);

        let (status, answer) = env.post_webhook(&body, None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(answer["stored"].as_u64() > Some(0), "{answer}");
        let m = env.metrics().await;
        assert_eq!(
            sample(&m, r#"remedyd_webhook_requests_total{code="503"}"#),
            Some(1.0),
            "{m}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// check and simulate

/// Runs a `remedyd` subcommand in `dir` to completion (at most 30 s): status, stdout, stderr.
fn run_cli(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let out = dir.join("out.txt");
    let err = dir.join("err.txt");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("REMEDYD_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn remedyd");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("remedyd {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status,
        std::fs::read_to_string(out).unwrap_or_default(),
        std::fs::read_to_string(err).unwrap_or_default(),
    )
}

#[test]
fn check_passes_on_the_shipped_rules_and_policies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = repo().join("rules");
    let policies = repo().join("policies");
    let (status, out, err) = run_cli(
        dir.path(),
        &[
            "check",
            "--rules",
            rules.to_str().unwrap(),
            "--policies",
            policies.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.starts_with("ok: "), "stdout:\n{out}");
    assert!(err.is_empty(), "stderr:\n{err}");
}

#[test]
fn check_reports_every_error_with_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path();
    std::fs::create_dir(p.join("rules")).unwrap();
    std::fs::create_dir(p.join("policies")).unwrap();
    std::fs::write(
        p.join("rules/a.yaml"),
        r#"rules:
  - name: svc-down
    match:
      - alertname="ServiceDown"
    level: 9
    target:
      kind: deployment
      name: "{{service}}"
    policy: restart
    for: soon
"#,
    )
    .unwrap();
    std::fs::write(
        p.join("policies/p.yaml"),
        r#"routes:
  - name: oncall
    type: webhook
    url: "http://127.0.0.1:1/page"

policies:
  - name: restart
    escalate_to: on-call
    levels:
      - level: 1
        steps:
          - name: restart
            action: kubectl
            verify: {resolved_within: 5m}
            on_failure: retry
"#,
    )
    .unwrap();
    let (status, out, err) = run_cli(
        p,
        &["check", "--rules", "rules", "--policies", "policies"],
        &[],
    );
    assert_eq!(status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    for want in [
        "rules/a.yaml:5: level: ",
        "rules/a.yaml:10: for: ",
        "policies/p.yaml:8: escalate_to: ",
        "policies/p.yaml:13: action: ",
        "policies/p.yaml:15: steps.on_failure: ",
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(want)),
            "no line starting with {want:?} in stderr:\n{err}"
        );
    }
    assert!(
        err.lines().any(|l| l == "5 error(s)"),
        "stderr does not count 5 errors:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_prints_the_plan_and_sends_nothing() {
    let rx = Receiver::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().to_path_buf();
    // The shipped files, every route pointed at the receiver (a page would be a request).
    for sub in ["rules", "policies"] {
        std::fs::create_dir(p.join(sub)).unwrap();
        for e in std::fs::read_dir(repo().join(sub)).unwrap() {
            let e = e.unwrap();
            if !e.file_type().unwrap().is_file() {
                continue;
            }
            std::fs::copy(e.path(), p.join(sub).join(e.file_name())).unwrap();
        }
    }
    let alerts = repo().join("tests/fixtures/alertmanager/02-firing-grouped-3-alerts.json");
    let page = rx.url("/page");
    let vars = [
        ("REMEDYD_MODE", "enforce"),
        ("REMEDYD_ROUTE_ONCALL_URL", page.as_str()),
        ("REMEDYD_ROUTE_OWNER_URL", page.as_str()),
        ("REMEDYD_ROUTE_PLATFORM_URL", page.as_str()),
    ];
    let args = [
        "simulate",
        "--alerts",
        alerts.to_str().unwrap(),
        "--rules",
        "rules",
        "--policies",
        "policies",
    ];
    // The receiver runs on the other worker thread meanwhile.
    let (status, out, err) = tokio::task::block_in_place(|| run_cli(&p, &args, &vars));
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    for service in ["checkout", "payments", "search"] {
        assert!(
            out.contains(&format!("deployment/python-services/{service}")),
            "{service} missing from the plan:\n{out}"
        );
    }
    assert!(
        out.contains("rollback (kube_rollout_undo)"),
        "no rollback step:\n{out}"
    );
    assert!(
        out.contains("/apis/apps/v1/namespaces/python-services/deployments/checkout/scale"),
        "the plan does not show the request:\n{out}"
    );
    assert!(out.contains("nothing is sent"), "{out}");
    // Give a stray request time to land, then check that none did.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.state.hits.lock().unwrap().len(),
        0,
        "simulate sent requests"
    );
}

/// `remedyd simulate … | head -1`: the reader closes the pipe after one line while remedyd still
/// has a plan to print (far more than a pipe holds, so remedyd is blocked writing when the pipe
/// closes). remedyd stops there: exit 0, no panic on stderr.
#[test]
fn simulate_into_a_pipe_closed_after_one_line_exits_0_without_a_panic() {
    use std::io::{BufRead, BufReader, Read};

    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path();
    for sub in ["rules", "policies"] {
        std::fs::create_dir(p.join(sub)).unwrap();
        for e in std::fs::read_dir(repo().join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), p.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    // 400 alerts on 400 services: a plan of several hundred KiB.
    let alerts: Vec<serde_json::Value> = (0..400)
        .map(|i| {
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "service": format!("svc-{i}"), "severity": "critical"},
                "annotations": {}, "startsAt": "2026-11-26T09:41:27.811Z",
                "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": format!("{i:016x}"),
            })
        })
        .collect();
    let body = serde_json::json!({
        "receiver": "remedyd", "status": "firing", "alerts": alerts, "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "version": "4",
        "groupKey": "{}:{}", "truncatedAlerts": 0,
    });
    std::fs::write(p.join("alerts.json"), body.to_string()).unwrap();
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("REMEDYD_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .current_dir(p)
        .args([
            "simulate",
            "--alerts",
            "alerts.json",
            "--rules",
            "rules",
            "--policies",
            "policies",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn remedyd");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).expect("the first line");
    assert!(first.starts_with("simulate: 400 alert(s)"), "{first}");
    // Without closing, the rest of the plan would not fit in the pipe: remedyd is mid-write.
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("remedyd simulate did not stop within 30 s of its reader closing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
}
