//! Disk trouble under the real binary on SQLite: the store on a 2 MiB tmpfs that fills up, and a
//! store made immutable (read-only). Both are answered 503 with a JSON error, nothing answered 200
//! is lost, the database stays intact (`PRAGMA integrity_check`), and service returns on its own.
//!
//! Mechanisms, chosen because they work as root here and on CI: a real `mount -t tmpfs -o
//! size=2m` (the kernel's own ENOSPC, not a simulated one), and `chattr +i` (root bypasses
//! permission bits, and a tmpfs cannot be remounted read-only while remedyd holds its files open
//! for writing: `mount` answers EBUSY). Writes through an already open descriptor to an immutable
//! file fail with EPERM since Linux 5.4.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::services::{free_port, http as client, wait_until, within};

const BIN: &str = env!("CARGO_BIN_EXE_remedyd");

/// Runs a system command that a fault needs; fails the test naming it when it is unavailable.
fn sys(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`{program}` is needed to inject this fault: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {} — this test needs it (run as root) and never skips",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs of `size` mounted on `dir`; unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let d = dir.to_str().expect("utf-8 path");
        sys(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", d],
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `chattr +i` on these paths until dropped (then `-i`, so the temp dir can be removed).
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: Vec<PathBuf>) -> Self {
        for p in &paths {
            sys("chattr", &["+i", p.to_str().expect("utf-8 path")]);
        }
        Self(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

/// `remedyd serve` with its store in `store_dir`, its config and log beside it.
struct Remedyd {
    dir: tempfile::TempDir,
    db: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// One rule on `HighErrorRate`, `for: 1h`: the engine opens incidents (it writes too) but never
/// acts.
const RULE_FOR_1H: &str = r#"rules:
  - name: error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}"}
    policy: restart
    for: 1h
"#;

/// A one-step `http` ladder to `action_url`.
fn policy(action_url: &str) -> String {
    format!(
        r#"routes:
  - {{name: oncall, type: webhook, url: "http://127.0.0.1:9/never"}}
policies:
  - name: restart
    escalate_to: oncall
    levels:
      - level: 1
        steps:
          - name: restart
            action: http
            with: {{url: "{action_url}", timeout: 60s, retries: 0}}
            verify: {{resolved_within: 10m}}
            on_failure: escalate
"#
    )
}

impl Remedyd {
    fn new(store_dir: &Path) -> Self {
        Self::with(store_dir, RULE_FOR_1H, &policy("http://127.0.0.1:9/never"))
    }

    fn with(store_dir: &Path, rules: &str, policies: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
        std::fs::create_dir(dir.path().join("policies")).expect("policies dir");
        std::fs::write(dir.path().join("rules/r.yaml"), rules).expect("rules");
        std::fs::write(dir.path().join("policies/p.yaml"), policies).expect("policies");
        Self {
            dir,
            db: store_dir.join("r.db"),
            port: free_port(),
            child: None,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("remedyd.log")).unwrap_or_default()
    }

    async fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("remedyd.log"))
            .expect("log file");
        let store = format!("sqlite://{}", self.db.display());
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("REMEDYD_") {
                cmd.env_remove(k);
            }
        }
        let listen = format!("127.0.0.1:{}", self.port);
        cmd.current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--rules", "rules", "--policies", "policies", "serve"])
            .args(["--listen", &listen, "--store", &store, "--mode", "enforce"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn remedyd"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.assert_running("during startup");
            if let Ok(r) = client().get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "remedyd not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn assert_running(&mut self, when: &str) {
        let child = self.child.as_mut().expect("started");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("remedyd exited {when} with {status}");
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    async fn stop(&mut self) {
        let mut child = self.child.take().expect("started");
        sys("kill", &["-TERM", &child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                assert!(status.success(), "remedyd stopped with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "remedyd did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, fingerprint: &str) -> (StatusCode, Value) {
        let body = serde_json::json!({
            "receiver": "remedyd", "status": "firing", "version": "4",
            "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "service": fingerprint, "severity": "critical"},
                "annotations": {"summary": "5xx ratio above 10% for this service, padded so that every alert takes room on the disk"},
                "startsAt": "2026-11-26T09:41:27.811Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom", "fingerprint": fingerprint
            }]
        });
        let r = client()
            .post(self.url("/webhook/alertmanager"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST the webhook");
        let status = r.status();
        let text = r.text().await.expect("webhook answer");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("webhook answered {status} with non-JSON {text:?}"));
        (status, json)
    }

    /// The timeline kinds of the only incident.
    async fn kinds(&self) -> Vec<String> {
        let list: Value = client()
            .get(self.url("/api/v1/incidents"))
            .send()
            .await
            .expect("GET incidents")
            .json()
            .await
            .expect("incidents JSON");
        let id = list["incidents"][0]["id"]
            .as_str()
            .expect("one incident")
            .to_string();
        let inc: Value = client()
            .get(self.url(&format!("/api/v1/incidents/{id}")))
            .send()
            .await
            .expect("GET the incident")
            .json()
            .await
            .expect("incident JSON");
        inc["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn incidents(&self) -> usize {
        let v: Value = client()
            .get(self.url("/api/v1/incidents"))
            .send()
            .await
            .expect("GET incidents")
            .json()
            .await
            .expect("incidents JSON");
        v["incidents"].as_array().map_or(0, Vec::len)
    }
}

impl Drop for Remedyd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- remedyd log ---\n{}--- end of log ---", self.log());
        }
    }
}

/// Fills the filesystem of `dir` with a file until the kernel answers ENOSPC; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    for chunk in [64 * 1024, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write_all(&buf).and_then(|()| f.sync_all()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }
    path
}

/// The database after the daemon stopped: integrity, and how many rows each fingerprint has.
fn inspect(db: &Path) -> (String, BTreeMap<String, i64>) {
    let c = rusqlite::Connection::open(db).expect("open the store with rusqlite");
    let integrity: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    let mut q = c
        .prepare("SELECT fingerprint, COUNT(*) FROM signals GROUP BY fingerprint")
        .expect("query signals");
    let rows = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("signals")
        .collect::<Result<_, _>>()
        .expect("signal rows");
    (integrity, rows)
}

/// Asserts every acknowledged fingerprint is stored exactly once.
fn assert_kept(rows: &BTreeMap<String, i64>, acked: &[String]) {
    for fp in acked {
        assert_eq!(
            rows.get(fp),
            Some(&1),
            "acknowledged {fp} stored once: {rows:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_keeps_every_acknowledged_alert_and_recovers_when_space_returns() {
    let root = tempfile::tempdir().expect("temp dir");
    let store = root.path().join("store");
    let fs = Tmpfs::mount(&store, "2m");
    let mut d = Remedyd::new(&store);
    within(150, async {
        d.start().await;
        let mut acked = Vec::new();
        let (status, body) = d.post("fp-0").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        acked.push("fp-0".to_string());

        let filler = fill(&store);
        // The WAL may still have room in pages it already holds: send until the store refuses.
        let mut refused = Vec::new();
        for i in 1..=2000 {
            let fp = format!("fp-{i}");
            let (status, body) = d.post(&fp).await;
            match status {
                StatusCode::OK => {
                    assert_eq!(body["stored"], 1, "{body}");
                    acked.push(fp);
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(body["error"].is_string(), "a JSON error: {body}");
                    refused.push(fp);
                    if refused.len() == 3 {
                        break;
                    }
                }
                other => panic!("webhook answered {other} on a full disk: {body}"),
            }
        }
        assert_eq!(refused.len(), 3, "the full disk never refused an alert");
        d.assert_running("while the disk was full");

        // Space returns: the refused alerts (Alertmanager's re-sends) and new ones are stored,
        // and the engine catches up without a restart.
        std::fs::remove_file(&filler).expect("remove the filler");
        for fp in refused.iter().cloned().chain(["fp-after".to_string()]) {
            let (status, body) = d.post(&fp).await;
            assert_eq!(status, StatusCode::OK, "after space returned: {body}");
            assert_eq!(body["stored"], 1, "{body}");
            acked.push(fp);
        }
        let n = acked.len();
        wait_until(60, "an incident for every stored alert", || async {
            d.incidents().await == n
        })
        .await;
        d.stop().await;
        let (integrity, rows) = inspect(&d.db);
        assert_eq!(integrity, "ok");
        assert_kept(&rows, &acked);
        assert_eq!(rows.len(), n, "nothing stored beyond what was acknowledged");
        eprintln!(
            "disk full: sent {} acknowledged {n} refused 503 {} stored {}",
            n + refused.len(),
            refused.len(),
            rows.len()
        );
    })
    .await;
    drop(fs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_answers_503_and_service_resumes_when_it_is_writable_again() {
    let root = tempfile::tempdir().expect("temp dir");
    let store = root.path().join("store");
    std::fs::create_dir(&store).expect("store dir");
    let mut d = Remedyd::new(&store);
    within(120, async {
        d.start().await;
        let mut acked = Vec::new();
        let (status, body) = d.post("fp-ro-0").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        acked.push("fp-ro-0".to_string());
        wait_until(30, "the first incident", || async {
            d.incidents().await == 1
        })
        .await;

        let files = ["r.db", "r.db-wal", "r.db-shm", ""].map(|f| store.join(f));
        let guard = Immutable::set(files.iter().filter(|p| p.exists()).cloned().collect());
        for i in 1..=3 {
            let (status, body) = d.post(&format!("fp-ro-{i}")).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert!(body["error"].is_string(), "a JSON error: {body}");
        }
        d.assert_running("while the store was read-only");
        drop(guard);

        for i in 1..=4 {
            let fp = format!("fp-ro-{i}");
            let (status, body) = d.post(&fp).await;
            assert_eq!(status, StatusCode::OK, "writable again: {body}");
            assert_eq!(body["stored"], 1, "{body}");
            acked.push(fp);
        }
        wait_until(60, "an incident for every stored alert", || async {
            d.incidents().await == 5
        })
        .await;
        d.stop().await;
        let (integrity, rows) = inspect(&d.db);
        assert_eq!(integrity, "ok");
        assert_kept(&rows, &acked);
        assert_eq!(rows.len(), acked.len());
    })
    .await;
}

/// The target of the `http` action: counts its calls and answers 200 once the test opens the
/// gate, so that the test decides when the step finishes.
struct GatedAction {
    url: String,
    calls: Arc<AtomicUsize>,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl GatedAction {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the action's receiver");
        let url = format!("http://{}/action", listener.local_addr().expect("addr"));
        let calls = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::watch::channel(false);
        let counted = calls.clone();
        let app = axum::Router::new().fallback(move || {
            let mut gate = gate.clone();
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                "done"
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the receiver serves");
        });
        Self {
            url,
            calls,
            open,
            task,
        }
    }
}

impl Drop for GatedAction {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_finishes_while_the_disk_is_full_is_recorded_once_space_returns_without_a_restart()
 {
    let root = tempfile::tempdir().expect("temp dir");
    let store = root.path().join("store");
    let fs = Tmpfs::mount(&store, "2m");
    let action = GatedAction::start().await;
    let rules = RULE_FOR_1H.replace("    for: 1h\n", "");
    let mut d = Remedyd::with(&store, &rules, &policy(&action.url));
    within(150, async {
        d.start().await;
        let (status, body) = d.post("fp-step").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_until(30, "the step to reach its target", || async {
            action.calls.load(Ordering::SeqCst) == 1
        })
        .await;

        // The disk fills while the step runs; then it finishes: its result cannot be written.
        let filler = fill(&store);
        action.open.send_replace(true);
        wait_until(30, "remedyd to fail writing the step's result", || async {
            d.log()
                .contains("Recording a finished step or probe failed")
        })
        .await;
        assert_eq!(d.kinds().await, ["opened", "step_started"]);
        d.assert_running("while the disk was full");

        // Space returns: the real outcome is written, without a restart, and the step is not
        // run again.
        std::fs::remove_file(&filler).expect("remove the filler");
        wait_until(
            60,
            "the step's result written after space returned",
            || async { d.kinds().await.iter().any(|k| k == "step_ok") },
        )
        .await;
        let kinds = d.kinds().await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "step_ok").count(),
            1,
            "{kinds:?}"
        );
        assert!(!kinds.iter().any(|k| k == "step_interrupted"), "{kinds:?}");
        assert_eq!(action.calls.load(Ordering::SeqCst), 1, "the step ran twice");
        d.stop().await;
        let (integrity, rows) = inspect(&d.db);
        assert_eq!(integrity, "ok");
        assert_kept(&rows, &["fp-step".to_string()]);
    })
    .await;
    drop(fs);
}
