//! Chaos with real processes: the `remedyd` binary killed with SIGKILL at random moments while
//! alerts stream in and ladders run, and flooded with alerts. The promise under test, on top of
//! Alertmanager's at-least-once delivery: **every alert answered 200 is kept, and no remediation
//! step runs twice**, across crashes, replicas and floods.
//!
//! - `sqlite_kill`: one process on SQLite, killed -9 at seeded random moments and restarted.
//! - `leader_kill`: two replicas on one real PostgreSQL 15, the leader killed -9 repeatedly.
//! - `flood`: thousands of alerts at once; the storm guard engages once; a second flood does not
//!   grow the resident memory again.
//! - `flood_am`: the same flood posted to a clustered pair of real Alertmanager 0.25 replicas,
//!   which group it into notifications of 1 and 50 alerts for remedyd.
//!
//! Side effects are counted **outside** remedyd: the `http` steps and the webhook route post to
//! a loopback [`Receiver`] that records every request with its (incident, step) identity.
//!
//! **CI mode** (default): 10 kills on SQLite, 5 leader kills, a ~3 000-alert flood (about a
//! minute and a quarter for the module). **Campaign mode**: more kills and a bigger flood:
//!
//! ```text
//! REMEDYD_CHAOS_CAMPAIGN=100 cargo nextest run --test it chaos:: --no-capture
//! ```
//!
//! `REMEDYD_CHAOS_CAMPAIGN=<kills>` sets the kills of each kill scenario and scales the floods
//! (`<kills>` × 600 webhooks at up to 1 000 webhooks/s). `REMEDYD_CHAOS_SEED=<u64>` replays a
//! run: every test prints its seed and a summary line (`chaos-summary …`) that
//! docs/reliability.md is filled from. `REMEDYD_CHAOS_BIN=target/release/remedyd` runs the
//! scenarios against that binary instead of the build's own (a campaign with the release build).

mod am_pair;
mod check;
mod flood;
mod flood_am;
mod leader_kill;
mod sqlite_kill;
mod stream;

use check::{Tally, check_invariants, pg_facts, sqlite_facts};
use stream::{resend, stream};

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use serde_json::Value;

use crate::support::services::http as client;

/// The binary under test: the build's own, or `REMEDYD_CHAOS_BIN` (e.g. `target/release/remedyd`
/// for a campaign with the release build; relative to the working directory the tests run in).
pub(super) fn bin() -> PathBuf {
    match std::env::var_os("REMEDYD_CHAOS_BIN") {
        None => PathBuf::from(env!("CARGO_BIN_EXE_remedyd")),
        Some(p) => std::fs::canonicalize(&p)
            .unwrap_or_else(|e| panic!("REMEDYD_CHAOS_BIN={}: {e}", Path::new(&p).display())),
    }
}

/// `REMEDYD_CHAOS_CAMPAIGN`: the number of kills of a campaign run; `None` in CI mode.
pub(super) fn campaign() -> Option<usize> {
    let v = std::env::var("REMEDYD_CHAOS_CAMPAIGN").ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| {
        panic!("REMEDYD_CHAOS_CAMPAIGN={v:?}: expected a number of kills, e.g. 100")
    }))
}

/// A small seeded generator (xorshift64*): reproducible from the printed seed.
pub(super) struct Rng(u64);

impl Rng {
    /// From `REMEDYD_CHAOS_SEED`, or the clock; prints the seed with the test's name.
    pub(super) fn seeded(test: &str) -> Self {
        let seed = match std::env::var("REMEDYD_CHAOS_SEED") {
            Ok(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("REMEDYD_CHAOS_SEED={v:?}: expected a u64")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        eprintln!("{test}: seed {seed} (replay with REMEDYD_CHAOS_SEED={seed})");
        Self(seed | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` (milliseconds).
    pub(super) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver: target of the `http` steps (/action) and of the webhook route (/page).

#[derive(Default)]
pub(super) struct Hits(Mutex<Vec<(String, String)>>);

async fn receive(
    State(s): State<Arc<(Hits, Duration)>>,
    method: Method,
    uri: Uri,
    body: String,
) -> StatusCode {
    if method == Method::POST {
        s.0.0
            .lock()
            .expect("hits lock")
            .push((uri.path().to_string(), body));
    }
    if uri.path() == "/action" {
        // Long enough that some kills land while a request is in flight.
        tokio::time::sleep(s.1).await;
    }
    StatusCode::OK
}

/// Records every POST (path, body) in arrival order.
pub(super) struct Receiver {
    addr: SocketAddr,
    state: Arc<(Hits, Duration)>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(super) async fn start(action_delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let state = Arc::new((Hits::default(), action_delay));
        let app = Router::new().fallback(receive).with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self { addr, state, task }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn bodies(&self, path: &str) -> Vec<Value> {
        self.state
            .0
            .0
            .lock()
            .expect("hits lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::String(b.clone())))
            .collect()
    }

    /// (incident, step) of every action request, in arrival order.
    pub(super) fn actions(&self) -> Vec<(String, String)> {
        self.bodies("/action")
            .iter()
            .map(|v| (str_of(&v["incident"]), str_of(&v["step"])))
            .collect()
    }

    /// (incident, event) of every page, in arrival order.
    pub(super) fn pages(&self) -> Vec<(String, String)> {
        self.bodies("/page")
            .iter()
            .map(|v| (str_of(&v["incident"]), str_of(&v["event"])))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Keys seen more than once, with their counts.
pub(super) fn repeated<K: Ord + Clone>(keys: &[K]) -> Vec<(K, usize)> {
    let mut counts = BTreeMap::new();
    for k in keys {
        *counts.entry(k.clone()).or_insert(0usize) += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).collect()
}

/// Checks the pages against the incidents: the first page each incident's route receives is
/// its trigger, and no incident's trigger arrives twice beyond `resent_allowance` deliveries
/// cut off by a kill (the outbox re-sends a page whose send was interrupted: at least once,
/// same dedup key). Returns (trigger deliveries, re-sent triggers).
pub(super) fn check_pages(pages: &[(String, String)], incidents: &[String]) -> (usize, usize) {
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    let mut triggers: BTreeMap<&str, usize> = BTreeMap::new();
    for (inc, event) in pages {
        first.entry(inc).or_insert(event);
        if event == "trigger" {
            *triggers.entry(inc).or_insert(0) += 1;
        }
    }
    for (inc, event) in &first {
        assert_eq!(
            *event, "trigger",
            "{inc}: first page is a {event}: {pages:?}"
        );
    }
    for inc in incidents {
        assert!(
            triggers.contains_key(inc.as_str()),
            "{inc} escalated but its trigger never arrived: {pages:?}"
        );
    }
    let delivered: usize = triggers.values().sum();
    (delivered, delivered - triggers.len())
}

// ---------------------------------------------------------------------------------------------
// Processes

/// One `remedyd serve` process: its port, log, and child (None once killed).
pub(super) struct Proc {
    pub(super) name: String,
    pub(super) port: u16,
    log: PathBuf,
    dir: PathBuf,
    store: String,
    child: Option<Child>,
}

impl Proc {
    pub(super) fn new(name: &str, dir: &Path, port: u16, store: &str) -> Self {
        Self {
            name: name.into(),
            port,
            log: dir.join(format!("{name}.log")),
            dir: dir.to_path_buf(),
            store: store.into(),
            child: None,
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(super) fn running(&self) -> bool {
        self.child.is_some()
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Spawns `remedyd serve` in the directory (rules/, policies/), log appended.
    pub(super) fn spawn(&mut self) {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log");
        let mut cmd = Command::new(bin());
        cmd.current_dir(&self.dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("REMEDYD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("REMEDYD_STORE", &self.store)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--rules", "rules", "--policies", "policies", "serve"])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--mode", "enforce"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out);
        self.child = Some(cmd.spawn().expect("spawn remedyd"));
    }

    /// Waits (at most 30 s) for /readyz; fails if the process exits.
    pub(super) async fn ready(&mut self) {
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!("{} exited with {status}", self.name);
            }
            if let Ok(r) = http.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within 30 s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts the process is still alive (a crash would be a finding, not a kill of ours).
    pub(super) fn assert_alive(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait().expect("try_wait")
        {
            panic!("{} died on its own with {status}", self.name);
        }
    }

    /// SIGKILL, and reap.
    pub(super) fn kill9(&mut self) {
        self.assert_alive();
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL remedyd");
            c.wait().expect("reap remedyd");
        }
    }

    pub(super) async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub(super) async fn incidents(&self) -> Vec<Value> {
        let v: Value = client()
            .get(self.url("/api/v1/incidents?limit=1000"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET incidents from {}: {e}", self.name))
            .json()
            .await
            .expect("incidents JSON");
        v["incidents"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            // The tail: a chaos run's log is long.
            let tail: String = log
                .lines()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!(
                "--- {} log, last 200 lines ---\n{tail}\n--- end ---",
                self.name
            );
        }
    }
}

/// Waits until `n` incidents, read through `replica`'s API, have all escalated and every page in
/// the PostgreSQL store's outbox is delivered; returns their ids.
pub(super) async fn settled_on_postgres(
    replica: &Proc,
    db: &tokio_postgres::Client,
    n: usize,
) -> Vec<String> {
    crate::support::services::wait_until(
        90,
        "every incident escalated, every page delivered",
        || async {
            let list = replica.incidents().await;
            list.len() == n
                && list.iter().all(|i| i["status"] == "escalated")
                && pg_facts(db).await.outbox.iter().all(|o| o.3)
        },
    )
    .await;
    replica
        .incidents()
        .await
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Files and payloads

/// rules/ and policies/ in `dir`: one rule on `HighErrorRate` per `service` label; a ladder of
/// `steps` `http` steps (each verified within `verify`, then the next), then the page. Budgets
/// and breakers are out of the way; the storm guard is on only when `storm` is given.
pub(super) fn write_config(
    dir: &Path,
    rx: &Receiver,
    steps: usize,
    verify: &str,
    storm: Option<u32>,
) {
    std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
    std::fs::create_dir_all(dir.join("policies")).expect("policies dir");
    std::fs::write(
        dir.join("rules/r.yaml"),
        r#"rules:
  - name: error-rate
    match:
      - alertname="HighErrorRate"
    level: 1
    target:
      kind: deployment
      name: "{{service}}"
    policy: ladder
"#,
    )
    .expect("rules file");
    let storm = storm
        .map(|n| format!("  storm_guard: {{max_targets: {n}, route: oncall}}\n"))
        .unwrap_or_default();
    let mut p = format!(
        r#"routes:
  - name: oncall
    type: webhook
    url: "{page}"

limits:
  budgets:
    global: {{max: 100000, per: 1h}}
    namespace: {{max: 100000, per: 1h}}
    rule: {{max: 100000, per: 1h}}
    action_target: {{max: 100000, per: 1h}}
  breakers:
    target: {{failures: 100000, within: 1h, cooldown: 1h}}
    global: {{failures: 100000, within: 1h, cooldown: 1h}}
{storm}
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
        p.push_str(&format!(
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
    std::fs::write(dir.join("policies/p.yaml"), p).expect("policies file");
}

/// One Alertmanager payload with these (service, fingerprint) alerts, firing since `starts_at`.
pub(super) fn payload(alerts: &[(String, String)], starts_at: &str) -> String {
    payload_as("firing", alerts, starts_at)
}

/// [`payload`] with the alerts `firing` or `resolved` (ended now).
pub(super) fn payload_as(status: &str, alerts: &[(String, String)], starts_at: &str) -> String {
    let ends_at = if status == "resolved" {
        now()
    } else {
        "0001-01-01T00:00:00Z".to_string()
    };
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(service, fp)| {
            serde_json::json!({
                "status": status,
                "labels": {"alertname": "HighErrorRate", "service": service, "severity": "critical", "fp": fp},
                "annotations": {"summary": "errors"},
                "startsAt": starts_at, "endsAt": ends_at,
                "generatorURL": "http://prometheus", "fingerprint": fp
            })
        })
        .collect();
    serde_json::json!({
        "receiver": "remedyd", "status": status, "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}",
        "truncatedAlerts": 0, "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager",
        "alerts": alerts
    })
    .to_string()
}

pub(super) fn now() -> String {
    remedyd::domain::time::Clock::now(&remedyd::adapters::clock::SystemClock).to_rfc3339()
}

/// POSTs a webhook; `Some(status)` when an answer came, `None` when the connection failed.
pub(super) async fn post(http: &reqwest::Client, url: &str, body: &str) -> Option<StatusCode> {
    http.post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()
        .map(|r| r.status())
}

/// [`post`] of a body the caller gives up (no copy: the flood's bodies are built beforehand);
/// the answer is read to its end so that the connection goes back to the pool (kept alive).
pub(super) async fn post_owned(
    http: &reqwest::Client,
    url: &str,
    body: String,
) -> Option<StatusCode> {
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .ok()?;
    let status = r.status();
    r.bytes().await.ok()?;
    Some(status)
}

/// VmRSS of `pid` in kB.
pub(super) fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
