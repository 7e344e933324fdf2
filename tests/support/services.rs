//! Real Prometheus 2.42, Alertmanager 0.25 and PostgreSQL 15 (Debian's packages) on loopback,
//! and a fake exporter, for end-to-end tests. No shell: the binaries are spawned directly, each with its own
//! temporary directory (config, storage, log) and free loopback port, and killed on `Drop`.
//!
//! Flags that matter (see /work/shared/reference/harness.md): Prometheus
//! `--rules.alert.resend-delay=1s` (an alert that fires before Prometheus has discovered its
//! Alertmanager is otherwise re-sent only after 1 minute), Alertmanager `--cluster.listen-address=`
//! (empty: the default binds 0.0.0.0:9094 and delays the first notification by 10 s of gossip
//! settling), and `--web.external-url` on both so the hostname does not leak into payloads.
//!
//! Prometheus answers `/-/ready` after ~0.1 s but neither scrapes nor knows its Alertmanager for
//! ~5 s (a fixed discovery tick); wait for data, not for readiness.
//!
//! A missing binary fails the test with the Debian package to install; it never skips.
//!
//! `crate::support::services` in the integration tests; the model-based test and the
//! benchmarks include this file alone with `#[path = "…/support/services.rs"] mod services;`
//! (it uses nothing else from tests/support).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prometheus server (Debian package `prometheus`).
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
/// promtool (Debian package `prometheus`).
pub const PROMTOOL: &str = "/usr/bin/promtool";
/// Alertmanager (Debian package `prometheus-alertmanager`).
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// Alertmanager's CLI (`check-config`, `config routes test`), from the same package.
pub const AMTOOL: &str = "/usr/bin/amtool";

/// Bound of every wait on a real service (start, readiness, data). Generous: these machines are
/// shared and loaded; a healthy run needs a few seconds.
pub const SERVICE_WAIT: Duration = Duration::from_secs(60);

/// The binary at `path`, or a failure naming the Debian package that provides it.
pub fn require(path: &str, package: &str) -> PathBuf {
    let p = Path::new(path);
    if !p.is_file() {
        panic!(
            "{path} is missing: install the Debian package `{package}` \
             (apt-get install -y --no-install-recommends {package}). \
             This test runs the real binary and is never skipped."
        );
    }
    p.to_path_buf()
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a loopback port")
        .port()
}

/// An HTTP client (plain HTTP; the crypto provider reqwest's rustls wants is installed once).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// Runs `f` under a timeout of `secs`; on expiry panics (the caller's guards then print logs).
pub async fn within(secs: u64, f: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .is_err()
    {
        panic!("test did not finish within {secs} s");
    }
}

/// Polls `cond` every 100 ms until it holds; panics with `what` after `secs`.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "waited {secs} s for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `probe` every 200 ms until it answers `Ok`, for at most `within`. On timeout returns the
/// last `Err` (what was seen) so that the caller can fail with it and the services' logs.
pub async fn eventually<T>(
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Like [`eventually`], but fails with `what`, the last thing seen and `logs()` on timeout.
pub async fn wait_for<T>(
    what: &str,
    within: Duration,
    probe: impl AsyncFnMut() -> Result<T, String>,
    logs: impl Fn() -> String,
) -> T {
    match eventually(within, probe).await {
        Ok(v) => v,
        Err(last) => panic!(
            "timed out after {within:?} waiting for {what}\nlast seen: {last}\n{}",
            logs()
        ),
    }
}

/// The last `max` bytes of a file, for failure messages.
fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => {
            let start = b.len().saturating_sub(max);
            let mut s = String::from_utf8_lossy(&b[start..]).into_owned();
            if start > 0 {
                s.insert_str(0, "[...]\n");
            }
            s
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

// The C library's prctl: std links libc on Linux, so no crate is needed for this one call.
unsafe extern "C" {
    fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
    fn kill(pid: std::ffi::c_int, sig: std::ffi::c_int) -> std::ffi::c_int;
}
const PR_SET_PDEATHSIG: std::ffi::c_int = 1;
const SIGKILL: std::ffi::c_ulong = 9;

/// Stands for the listening port in a [`Proc`]'s arguments.
const PORT: &str = "{PORT}";

/// One child process with its directory, arguments and log, listening on `port`; restartable;
/// killed on `Drop`.
struct Proc {
    name: &'static str,
    program: PathBuf,
    /// With [`PORT`] where the port goes.
    args: Vec<String>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    // Last, so that the directory is removed after the child is dead.
    dir: tempfile::TempDir,
}

impl Proc {
    fn new(
        name: &'static str,
        program: PathBuf,
        dir: tempfile::TempDir,
        args: Vec<String>,
    ) -> Self {
        let log = dir.path().join(format!("{name}.log"));
        Proc {
            name,
            program,
            args,
            port: 0,
            log,
            child: None,
            dir,
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the log file");
        let err: File = out.try_clone().expect("cloning the log file handle");
        let mut cmd = Command::new(&self.program);
        cmd.args(
            self.args
                .iter()
                .map(|a| a.replace(PORT, &self.port.to_string())),
        )
        .current_dir(self.dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
        // If the test process dies without running Drop (killed by a CI timeout), the kernel
        // kills the child too. PDEATHSIG follows the spawning *thread*; tests spawn from their
        // own thread, which lives as long as the test. prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn logs(&self) -> String {
        format!(
            "----- {} log ({}) -----\n{}\n----- end of {} log -----",
            self.name,
            self.log.display(),
            tail(&self.log, 12_000),
            self.name
        )
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts on a free port. The port is free when picked but another process (a parallel
    /// test) may take it before the child binds it: then the child exits at once and the start
    /// is retried on another port.
    async fn start_on_a_free_port(&mut self) {
        for attempt in 1.. {
            self.port = free_port();
            self.spawn();
            match self.wait_ready().await {
                Ok(()) => return,
                Err(log) if attempt < 3 && log.contains("address already in use") => {
                    eprintln!("{}: port {} was taken; retrying", self.name, self.port)
                }
                Err(log) => panic!("{} exited during startup\n{log}", self.name),
            }
        }
    }

    /// Starts again on the same port.
    async fn restart(&mut self) {
        self.kill();
        self.spawn();
        if let Err(log) = self.wait_ready().await {
            panic!("{} exited during restart\n{log}", self.name);
        }
    }

    /// Waits until `GET /-/ready` answers 200 (bounded by SERVICE_WAIT). If the process exits
    /// first, answers its log.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = http();
        let base = self.url();
        let deadline = Instant::now() + SERVICE_WAIT;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(format!("exit status: {status}\n{}", self.logs()));
            }
            let last = match client.get(format!("{base}/-/ready")).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "{} was not ready at {base}/-/ready within {SERVICE_WAIT:?} (last: {last})\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A YAML scalar: JSON strings are valid YAML flow scalars, and quoting keeps URLs and tokens
/// from being read as anything else.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

// ---------------------------------------------------------------------------------------------
// Exporter

#[derive(Clone, Copy)]
struct Series {
    value: f64,
    rps: f64,
    since: Instant,
}

type SeriesMap = BTreeMap<(String, String), Series>;

/// Advances every counter to `now`: value += rate × elapsed, so counters only grow.
fn advance(series: &mut SeriesMap, now: Instant) {
    for s in series.values_mut() {
        s.value += s.rps * now.duration_since(s.since).as_secs_f64();
        s.since = now;
    }
}

/// A fake application: `GET /metrics` serves
/// `http_requests_total{namespace="python-services",service,status}` counters that grow at the
/// rate the test sets per (service, status).
pub struct Exporter {
    addr: SocketAddr,
    series: Arc<Mutex<SeriesMap>>,
    scrapes: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Serves on 127.0.0.1 (a free port) until dropped.
    pub async fn start() -> Self {
        use axum::routing::get;
        let series: Arc<Mutex<SeriesMap>> = Arc::default();
        let scrapes: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let app = axum::Router::new().route(
            "/metrics",
            get({
                let series = series.clone();
                let scrapes = scrapes.clone();
                move || async move {
                    scrapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut s = series.lock().unwrap();
                    advance(&mut s, Instant::now());
                    let mut body = String::from(
                        "# HELP http_requests_total Requests by status.\n# TYPE http_requests_total counter\n",
                    );
                    for ((service, status), v) in s.iter() {
                        body.push_str(&format!(
                            "http_requests_total{{namespace=\"python-services\",service=\"{service}\",status=\"{status}\"}} {}\n",
                            v.value
                        ));
                    }
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the exporter");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("exporter serves");
        });
        Exporter {
            addr,
            series,
            scrapes,
            task,
        }
    }

    /// From now on `http_requests_total{service, status}` grows by `rps` per second.
    pub fn set_rate(&self, service: &str, status: &str, rps: f64) {
        let now = Instant::now();
        let mut s = self.series.lock().unwrap();
        advance(&mut s, now);
        s.entry((service.to_string(), status.to_string()))
            .or_insert(Series {
                value: 0.0,
                rps: 0.0,
                since: now,
            })
            .rps = rps;
    }

    /// `host:port` for a scrape config.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// How many times `/metrics` was served.
    pub fn scrapes(&self) -> usize {
        self.scrapes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus

/// A real Prometheus: scrape and evaluation every second, own storage, killed on `Drop`.
pub struct Prometheus {
    proc: Proc,
}

impl Prometheus {
    /// Writes `prometheus.yml` (job `python-services` scraping `scrape_targets`) and `rules.yml`
    /// (`rules`; empty means none), starts Prometheus and waits for `/-/ready`. With
    /// `alertmanager` (`host:port`) it sends alerts there.
    pub async fn start(scrape_targets: &[String], rules: &str, alertmanager: Option<&str>) -> Self {
        let program = require(PROMETHEUS, "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("remedyd-prometheus.")
            .tempdir()
            .expect("temp dir");
        let rules_path = dir.path().join("rules.yml");
        let rules = if rules.trim().is_empty() {
            "groups: []\n"
        } else {
            rules
        };
        std::fs::write(&rules_path, rules).expect("writing rules.yml");
        let targets: Vec<String> = scrape_targets.iter().map(|t| q(t)).collect();
        let mut cfg = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: python-services\n    static_configs:\n      - targets: [{}]\n",
            q(&rules_path.display().to_string()),
            targets.join(", "),
        );
        if let Some(am) = alertmanager {
            cfg.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [{}]\n",
                q(am)
            ));
        }
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, cfg).expect("writing prometheus.yml");
        let storage = dir.path().join("data");
        let args = vec![
            format!("--config.file={}", cfg_path.display()),
            format!("--storage.tsdb.path={}", storage.display()),
            format!("--web.listen-address=127.0.0.1:{PORT}"),
            format!("--web.external-url=http://127.0.0.1:{PORT}"),
            "--rules.alert.resend-delay=1s".into(),
        ];
        let mut p = Prometheus {
            proc: Proc::new("prometheus", program, dir, args),
        };
        p.proc.start_on_a_free_port().await;
        p
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.proc.url()
    }

    /// SIGKILL (no clean shutdown); `restart` brings it back on the same port and storage.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts again (killing it first if it runs) on the same port, config and storage.
    pub async fn restart(&mut self) {
        self.proc.restart().await;
    }

    /// The end of its log, for failure messages.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// The directory holding the config, rules, storage and log.
    pub fn dir(&self) -> &Path {
        self.proc.dir.path()
    }

    /// An instant query; `data.result` (empty on any error, which is in the `Err`).
    pub async fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let r = http()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        match v["data"]["result"].as_array() {
            Some(a) if v["status"] == "success" => Ok(a.clone()),
            _ => Err(v.to_string()),
        }
    }

    /// `GET /api/v1/alerts`: the alerts Prometheus holds (pending and firing).
    pub async fn alerts(&self) -> String {
        match http()
            .get(format!("{}/api/v1/alerts", self.url()))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_else(|e| e.to_string()),
            Err(e) => e.to_string(),
        }
    }

    /// Waits until `promql` returns at least `n` series (Prometheus has scraped and evaluated).
    pub async fn wait_for_series(&self, promql: &str, n: usize) -> Vec<serde_json::Value> {
        wait_for(
            &format!("{n} series from {promql}"),
            SERVICE_WAIT,
            async || match self.query(promql).await {
                Ok(r) if r.len() >= n => Ok(r),
                Ok(r) => Err(serde_json::Value::Array(r).to_string()),
                Err(e) => Err(e),
            },
            || self.logs(),
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Alertmanager

/// A real Alertmanager with one webhook receiver, clustering off, own storage, killed on `Drop`.
pub struct Alertmanager {
    proc: Proc,
}

impl Alertmanager {
    /// Routes everything to `webhook_url` (send_resolved, Bearer `bearer_token` if given), grouped
    /// by alertname and service, group_wait and group_interval 1s, repeat_interval 1h.
    pub async fn start(webhook_url: &str, bearer_token: Option<&str>) -> Self {
        Self::start_grouped_by(webhook_url, bearer_token, &["alertname", "service"]).await
    }

    /// As [`Alertmanager::start`], grouping by `group_by` (e.g. `["alertname"]` to get several
    /// services in one notification).
    pub async fn start_grouped_by(
        webhook_url: &str,
        bearer_token: Option<&str>,
        group_by: &[&str],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("remedyd-alertmanager.")
            .tempdir()
            .expect("temp dir");
        let group_by: Vec<String> = group_by.iter().map(|g| q(g)).collect();
        let auth = bearer_token
            .map(|t| {
                format!(
                    "        http_config:\n          authorization:\n            type: Bearer\n            credentials: {}\n",
                    q(t)
                )
            })
            .unwrap_or_default();
        let cfg = format!(
            "route:\n  receiver: remedyd\n  group_by: [{}]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: remedyd\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n{auth}",
            group_by.join(", "),
            q(webhook_url),
        );
        Self::start_in(dir, &cfg).await
    }

    /// Runs `config` (the text of an alertmanager.yml) after writing `files` (name, content)
    /// into its directory; `@DIR@` in `config` stands for that directory.
    pub async fn start_with_config(config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("remedyd-alertmanager.")
            .tempdir()
            .expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("writing an Alertmanager file");
        }
        let config = config.replace("@DIR@", &dir.path().display().to_string());
        Self::start_in(dir, &config).await
    }

    /// A replica of an HA pair: gossip on `127.0.0.1:cluster_port`, peering with
    /// `127.0.0.1:peer_port` (silences are shared between them); receiver `blackhole`.
    pub async fn start_clustered(cluster_port: u16, peer_port: u16) -> Self {
        let cfg = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n";
        Self::start_clustered_with_config(cfg, cluster_port, peer_port).await
    }

    /// [`Alertmanager::start_clustered`] running `cfg` (the text of an alertmanager.yml).
    pub async fn start_clustered_with_config(cfg: &str, cluster_port: u16, peer_port: u16) -> Self {
        Self::start_clustered_with_args(cfg, cluster_port, peer_port, &[]).await
    }

    /// [`Alertmanager::start_clustered_with_config`] with more flags (e.g. a shorter
    /// `--cluster.gossip-interval`, or `--log.level=info` in place of the default debug).
    pub async fn start_clustered_with_args(
        cfg: &str,
        cluster_port: u16,
        peer_port: u16,
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("remedyd-alertmanager.")
            .tempdir()
            .expect("temp dir");
        let mut args = vec![
            format!("--cluster.listen-address=127.0.0.1:{cluster_port}"),
            format!("--cluster.peer=127.0.0.1:{peer_port}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::start_cluster_in(dir, cfg, args).await
    }

    /// Kills it (a replica down);
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    async fn start_in(dir: tempfile::TempDir, cfg: &str) -> Self {
        Self::start_cluster_in(dir, cfg, vec!["--cluster.listen-address=".into()]).await
    }

    async fn start_cluster_in(dir: tempfile::TempDir, cfg: &str, cluster: Vec<String>) -> Self {
        let program = require(ALERTMANAGER, "prometheus-alertmanager");
        let cfg_path = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg_path, cfg).expect("writing alertmanager.yml");
        let storage = dir.path().join("data");
        std::fs::create_dir(&storage).expect("creating the storage dir");
        let args = vec![
            format!("--config.file={}", cfg_path.display()),
            format!("--storage.path={}", storage.display()),
            format!("--web.listen-address=127.0.0.1:{PORT}"),
            format!("--web.external-url=http://127.0.0.1:{PORT}"),
        ];
        // Debug (every notification attempt) unless the caller chose a level.
        let level = if cluster.iter().any(|a| a.starts_with("--log.level=")) {
            vec![]
        } else {
            vec!["--log.level=debug".to_string()]
        };
        let args = [args, level, cluster].concat();
        let mut am = Alertmanager {
            proc: Proc::new("alertmanager", program, dir, args),
        };
        am.proc.start_on_a_free_port().await;
        am
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.proc.url()
    }

    /// `127.0.0.1:PORT`, for Prometheus's `alerting` config.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.proc.port)
    }

    /// The end of its log (debug level: every notification attempt), for failure messages.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }

    /// `POST /api/v2/alerts` with one alert; `ends_at` (RFC 3339) resolves it.
    pub async fn post_alert(&self, labels: &[(&str, &str)], ends_at: Option<&str>) {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let mut alert = serde_json::json!({
            "labels": labels,
            "annotations": {"summary": "posted by the test"},
            "generatorURL": "http://127.0.0.1/test",
        });
        if let Some(e) = ends_at {
            alert["endsAt"] = e.into();
        }
        self.post_alerts(&[alert]).await;
    }

    /// `POST /api/v2/alerts` with these alerts (API v2 `postableAlert`s) in one request.
    pub async fn post_alerts(&self, alerts: &[serde_json::Value]) {
        let r = http()
            .post(format!("{}/api/v2/alerts", self.url()))
            .json(alerts)
            .send()
            .await
            .unwrap_or_else(|e| panic!("posting alerts to Alertmanager: {e}\n{}", self.logs()));
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "Alertmanager refused the alerts: HTTP {status}: {body}\n{}",
            self.logs()
        );
    }

    /// `GET /api/v2/alerts/groups`.
    pub async fn groups(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value = http()
            .get(format!("{}/api/v2/alerts/groups", self.url()))
            .send()
            .await
            .expect("GET /api/v2/alerts/groups")
            .json()
            .await
            .expect("groups are JSON");
        v.as_array().cloned().unwrap_or_default()
    }

    /// `GET /api/v2/alerts` as text (for failure messages).
    pub async fn alerts(&self) -> String {
        match http()
            .get(format!("{}/api/v2/alerts", self.url()))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_else(|e| e.to_string()),
            Err(e) => e.to_string(),
        }
    }

    /// The value of one of its own metrics (e.g.
    /// `alertmanager_notifications_total{integration="webhook"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = http()
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        metric_value(&text, series)
    }
}

/// The value of `series` (exact name and labels as exposed) in Prometheus text, 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .next()
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// The PostgreSQL 15 server (Debian package `postgresql`, which depends on `postgresql-15`).
pub const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";
/// initdb (same package).
pub const INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";
/// The superuser's password. Host connections use scram-sha-256, so the password in a URL is
/// really checked, and tests can check that it never reaches a log.
pub const PG_PASSWORD: &str = "pg-Test-s3cr3t-9f2c";
/// The database [`Postgres::start`] creates.
pub const PG_DATABASE: &str = "remedyd";

const SIGINT: std::ffi::c_int = 2;
const SIGQUIT: std::ffi::c_int = 3;

/// uid and gid of a system user, from /etc/passwd.
fn user_ids(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("reading /etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .map(|f| {
            (
                f[2].parse().expect("uid is a number"),
                f[3].parse().expect("gid is a number"),
            )
        })
        .unwrap_or_else(|| {
            panic!(
                "user {name:?} does not exist: install the Debian package `postgresql`, which \
                 creates it. This test runs the real server and is never skipped."
            )
        })
}

/// A real PostgreSQL 15 on 127.0.0.1 with its own cluster in a temporary directory, running as
/// user `postgres` (initdb and postgres refuse root). Fast shutdown on `Drop`.
///
/// `fsync=off`: the tests stop and kill processes, never the machine, so what PostgreSQL has
/// written survives them; `synchronous_commit` stays on, so a commit is acknowledged only once
/// its WAL is written.
pub struct Postgres {
    port: u16,
    uid: u32,
    gid: u32,
    /// `-c` settings beyond the defaults (TLS), kept across restarts.
    settings: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    // Last, so that the directory is removed after the server is dead.
    dir: tempfile::TempDir,
}

/// TLS for [`Postgres::start_with_tls`]: PEM files, copied into the cluster's directory (the
/// server wants its key owned by user `postgres`, mode 0600).
pub struct PgServerTls {
    /// The server's certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that client certificates must chain to (`ssl_ca_file`).
    pub client_ca: PathBuf,
    /// Roles created with LOGIN that log in by client certificate only (`hostssl … cert`, CN
    /// = role), no password.
    pub cert_users: Vec<String>,
}

impl Postgres {
    /// initdb, start, wait until it accepts connections, create [`PG_DATABASE`].
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// As [`Postgres::start`], with `ssl=on` and the server certificate of `tls`. Password
    /// logins work with or without TLS; `tls.cert_users` log in by client certificate only.
    pub async fn start_with_tls(tls: &PgServerTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<&PgServerTls>) -> Self {
        require(POSTGRES, "postgresql");
        require(INITDB, "postgresql");
        let (uid, gid) = user_ids("postgres");
        let dir = tempfile::Builder::new()
            .prefix("remedyd-pg.")
            .tempdir()
            .expect("temp dir");
        // User postgres must traverse the (root-owned, 0700) temp dir and own its own dirs.
        let chmod = |p: &Path, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        chmod(dir.path(), 0o755);
        for sub in ["data", "sock"] {
            let p = dir.path().join(sub);
            std::fs::create_dir(&p).expect("creating a postgres dir");
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown to postgres");
            chmod(&p, 0o700);
        }
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{PG_PASSWORD}\n")).expect("writing the pwfile");
        chmod(&pwfile, 0o644);
        let log = dir.path().join("postgres.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("opening the log file");
        let status = Command::new(INITDB)
            .args([
                "-D",
                "data",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .args([
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir.path())
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("cloning the log handle"))
            .stderr(out)
            .status()
            .expect("running initdb");
        let mut settings = Vec::new();
        if let Some(tls) = tls {
            let ssl = dir.path().join("ssl");
            std::fs::create_dir(&ssl).expect("creating the ssl dir");
            for (from, name) in [
                (&tls.cert, "server.crt"),
                (&tls.key, "server.key"),
                (&tls.client_ca, "ca.crt"),
            ] {
                let to = ssl.join(name);
                std::fs::copy(from, &to)
                    .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), name));
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("chown to postgres");
                chmod(&to, 0o600);
            }
            std::os::unix::fs::chown(&ssl, Some(uid), Some(gid)).expect("chown to postgres");
            chmod(&ssl, 0o700);
            for (k, file) in [
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
                ("ssl_ca_file", "ca.crt"),
            ] {
                settings.push(format!("{k}={}", ssl.join(file).display()));
            }
            settings.push("ssl=on".into());
            // First match wins: the certificate-only roles go before initdb's password lines.
            let hba = dir.path().join("data/pg_hba.conf");
            let old = std::fs::read_to_string(&hba).expect("reading pg_hba.conf");
            let mut new = String::new();
            for user in &tls.cert_users {
                new.push_str(&format!("hostssl all {user} 127.0.0.1/32 cert\n"));
                new.push_str(&format!("host all {user} 127.0.0.1/32 reject\n"));
            }
            std::fs::write(&hba, new + &old).expect("writing pg_hba.conf");
        }
        let mut pg = Postgres {
            port: 0,
            uid,
            gid,
            settings,
            child: None,
            log,
            dir,
        };
        assert!(status.success(), "initdb failed: {status}\n{}", pg.logs());
        for attempt in 1.. {
            pg.port = free_port();
            pg.spawn();
            match pg.wait_ready().await {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("already in use") => {
                    eprintln!("postgres: port {} was taken; retrying", pg.port)
                }
                Err(log) => panic!("postgres exited during startup\n{log}"),
            }
        }
        let c = pg.client("postgres").await;
        c.batch_execute(&format!("CREATE DATABASE {PG_DATABASE}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE: {e:?}\n{}", pg.logs()));
        for user in tls.map(|t| t.cert_users.as_slice()).unwrap_or_default() {
            c.batch_execute(&format!("CREATE ROLE {user} LOGIN"))
                .await
                .unwrap_or_else(|e| panic!("CREATE ROLE {user}: {e:?}\n{}", pg.logs()));
        }
        pg
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the log file");
        let err = out.try_clone().expect("cloning the log handle");
        let mut cmd = Command::new(POSTGRES);
        cmd.args(["-D", "data", "-k"])
            .arg(self.dir.path().join("sock"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .current_dir(self.dir.path())
            .uid(self.uid)
            .gid(self.gid)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // As for the other services. std runs this after setuid (which clears the setting), so
        // it holds for the server.
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("starting postgres"));
    }

    /// Waits until a password login to database `postgres` works; the log if it exits first.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + SERVICE_WAIT;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(format!("exit status: {status}\n{}", self.logs()));
            }
            let last =
                match tokio_postgres::connect(&self.url_for("postgres"), tokio_postgres::NoTls)
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("{e:?}"),
                };
            if Instant::now() >= deadline {
                panic!(
                    "postgres did not accept connections on port {} within {SERVICE_WAIT:?} (last: {last})\n{}",
                    self.port,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/remedyd`.
    pub fn url(&self) -> String {
        self.url_for(PG_DATABASE)
    }

    /// The URL of database `db` on this server.
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Creates database `name` (lowercase letters, digits, `_`) and answers its URL.
    pub async fn create_database(&self, name: &str) -> String {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name:?} is not a plain identifier"
        );
        self.client("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}\n{}", self.logs()));
        self.url_for(name)
    }

    /// A client on database `db` (its connection runs on a task of the current runtime).
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url_for(db), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to postgres: {e:?}\n{}", self.logs()));
        tokio::spawn(conn);
        client
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn signal_and_wait(&mut self, sig: std::ffi::c_int) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        unsafe {
            kill(c.id() as std::ffi::c_int, sig);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Fast shutdown (SIGINT): sessions are terminated, everything is written, the server exits.
    pub fn stop(&mut self) {
        self.signal_and_wait(SIGINT);
    }

    /// Immediate shutdown (SIGQUIT), as a crash: the next start recovers from the WAL.
    pub fn crash(&mut self) {
        self.signal_and_wait(SIGQUIT);
    }

    /// Starts again on the same port and data directory and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn();
        if let Err(log) = self.wait_ready().await {
            panic!("postgres exited during restart\n{log}");
        }
    }

    /// The end of its log, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "----- postgres log ({}) -----\n{}\n----- end of postgres log -----",
            self.log.display(),
            tail(&self.log, 12_000)
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU time (user + system, in clock ticks of 1/100 s) a process has used: for benchmarks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}
