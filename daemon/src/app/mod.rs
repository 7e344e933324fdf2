//! Wiring: store, ruleset, engine, outbox, HTTP; SIGHUP reload; SIGTERM shutdown with a deadline.
//!
//! Crash-only (see [`crate::app::supervise`]): the leadership loop, its duties and the reloader run
//! under one [`Supervisor`]; when any of them panics or stops on its own, intake stops, the
//! rest is cancelled, and [`run`] returns the failure, so the process exits non-zero and its
//! orchestrator restarts it. The store holds the state, and a restart resumes from it.

pub mod api;
pub mod cli;
pub mod leader;
pub mod listen;
pub mod replay;
pub mod resolve;
pub mod supervise;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::adapters::action::Executors;
use crate::adapters::clock::SystemClock;
use crate::adapters::escalate::Pager;
use crate::adapters::escalate::Pagers;
use crate::adapters::telemetry::{EngineHealth, Metrics};
use crate::app::api::{AppState, router};
use crate::app::supervise::{Faults, Supervisor, Task};
use crate::domain::time::Clock;
use crate::engine::EngineConfig;
use crate::load::config::Config;
use crate::load::ruleset::SharedRuleset;
use crate::load::ruleset::{self, Ruleset};

/// Beyond the shutdown deadline, how long the leadership loop gets to stop its duties and
/// release its term (the release itself is bounded at 1 s, the duties at the deadline + 2 s).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What `serve` runs with; tests replace the executors and pager.
pub struct Parts {
    /// Action kinds available to policies.
    pub executors: Executors,
    /// Delivers pages.
    pub pager: Arc<dyn Pager>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Overrides Prometheus as the source of polled values (`remedyd test`); `None` uses
    /// `prometheus_url`.
    pub source: Option<Arc<dyn crate::adapters::prometheus::MetricSource>>,
    /// Test-only fault injection into the long-running tasks; `None` in production.
    pub faults: Option<Arc<Faults>>,
}

impl Default for Parts {
    fn default() -> Self {
        Self {
            executors: Executors::builtin(),
            pager: Arc::new(Pagers::new()),
            clock: Arc::new(SystemClock),
            source: None,
            faults: None,
        }
    }
}

impl Parts {
    /// The real parts for a configuration: the Kubernetes actions use its `kubeconfig`.
    pub fn for_config(cfg: &Config) -> Self {
        Self {
            executors: Executors::builtin_for(cfg.kubeconfig.clone()),
            ..Self::default()
        }
    }
}

/// Every HTTP probe whose host and port are written literally (not from a template) must be in
/// `probe_allow`: it would be refused at every run.
fn check_probe_hosts(cfg: &Config, rs: &Ruleset) -> Result<(), crate::domain::diag::Diagnostics> {
    use crate::adapters::action::probe::{check_url, literal_authority};
    let mut d = crate::domain::diag::Diagnostics::default();
    let Ok(allow) = cfg.probe_allow() else {
        return Ok(());
    };
    for p in rs.policies.values() {
        let origin = rs.policy_origins.get(&p.name).cloned().unwrap_or_default();
        let (file, line) = origin.rsplit_once(':').unwrap_or((&origin, "0"));
        for (level, l) in &p.levels {
            for st in &l.steps {
                let mut urls = Vec::new();
                if st.action == "http_probe"
                    && let Some(u) = st.params.get("url").and_then(|u| u.as_str())
                {
                    urls.push(("with.url", u.to_string()));
                }
                if let crate::domain::policy::Verify::Http { url, .. } = &st.verify {
                    urls.push(("steps.verify.http", url.clone()));
                }
                for (field, url) in urls {
                    let Some(literal) = literal_authority(&url) else {
                        continue;
                    };
                    if let Err(e) = check_url(&allow, &literal) {
                        d.push(
                            file,
                            line.parse().unwrap_or(0),
                            field,
                            format!("policy {:?} level {level} step {:?}: {e}", p.name, st.name),
                        );
                    }
                }
            }
        }
    }
    if d.is_empty() { Ok(()) } else { Err(d) }
}

/// Loads rules and policies and checks what they need from the config (prometheus_url,
/// probe_allow).
pub fn load_ruleset(
    cfg: &Config,
    executors: &Executors,
) -> Result<Ruleset, crate::domain::diag::Diagnostics> {
    let rs = ruleset::load(&cfg.rules, &cfg.policies, executors)?;
    check_probe_hosts(cfg, &rs)?;
    if cfg.prometheus_url.is_none() {
        let mut d = crate::domain::diag::Diagnostics::default();
        for r in rs.rules.iter().filter(|r| r.polled.is_some()) {
            let (file, line) = r.origin.rsplit_once(':').unwrap_or((&r.origin, "0"));
            d.push(
                file,
                line.parse().unwrap_or(0),
                "query",
                format!("rule {:?} is polled but prometheus_url is not set", r.name),
            );
        }
        for p in rs.policies.values() {
            let origin = rs.policy_origins.get(&p.name).cloned().unwrap_or_default();
            let (file, line) = origin.rsplit_once(':').unwrap_or((&origin, "0"));
            for (level, l) in &p.levels {
                for st in l
                    .steps
                    .iter()
                    .filter(|s| matches!(s.verify, crate::domain::policy::Verify::Query { .. }))
                {
                    d.push(
                        file,
                        line.parse().unwrap_or(0),
                        "steps.verify.query",
                        format!(
                            "policy {:?} level {level} step {:?} verifies with PromQL but prometheus_url is not set",
                            p.name, st.name
                        ),
                    );
                }
            }
        }
        if !d.is_empty() {
            return Err(d);
        }
    }
    Ok(rs)
}

/// Logs every route that records pages without sending them (its secret is missing).
fn log_route_notes(rs: &Ruleset) {
    for r in rs.routes.values() {
        if let Some(note) = r.note() {
            tracing::warn!(route = %r.name, kind = r.transport.kind(), "{note}");
        }
    }
}

/// Reloads rules and policies fail-closed: an invalid set is logged and counted, the old one stays.
pub fn reload(
    cfg: &Config,
    executors: &Executors,
    shared: &SharedRuleset,
    metrics: &Metrics,
) -> bool {
    match load_ruleset(cfg, executors) {
        Ok(rs) => {
            tracing::info!(
                rules = rs.rules.len(),
                policies = rs.policies.len(),
                "Reloaded rules and policies"
            );
            log_route_notes(&rs);
            metrics.init_actions(&rs);
            *shared.write().expect("ruleset lock") = Arc::new(rs);
            Metrics::result(&metrics.reloads, "ok");
            true
        }
        Err(diag) => {
            for d in &diag.0 {
                tracing::error!(file = %d.file, line = d.line, field = %d.field, "{}", d.message);
            }
            tracing::error!(
                errors = diag.len(),
                "Reload rejected; the previous rules and policies keep running"
            );
            Metrics::result(&metrics.reloads, "error");
            false
        }
    }
}

/// Runs the daemon on `cfg.listen` until SIGTERM or SIGINT.
pub async fn serve(cfg: Config, parts: Parts) -> anyhow::Result<()> {
    let addr = cfg.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping intake"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping intake"),
            }
            stop.cancel();
        });
    }
    run(cfg, parts, listener, stop).await
}

/// Runs the daemon on a bound listener until `stop` is cancelled (tests call this directly).
pub async fn run(
    cfg: Config,
    parts: Parts,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut parts = parts;
    parts.executors.set_probe_allow(cfg.probe_allow()?);
    let token = cfg.token()?;
    let read_token = cfg.read_token()?;
    let deadline = cfg.shutdown_deadline()?;
    let engine_stall_after = cfg.engine_stall_after()?;
    let limits = cfg.listener_limits()?;
    let wake = Arc::new(Notify::new());
    // SQLite: this process is the only replica. PostgreSQL: migrated, reachable (or an error).
    let (store, elector) = crate::app::leader::open(&cfg.store, wake.clone()).await?;
    let metrics = Arc::new(Metrics::new());
    let rs = load_ruleset(&cfg, &parts.executors).map_err(|d| {
        anyhow::anyhow!(
            "rules and policies are invalid ({} error(s)):\n{d}",
            d.len()
        )
    })?;
    tracing::info!(rules = rs.rules.len(), policies = rs.policies.len(), routes = rs.routes.len(), mode = cfg.mode.as_str(), store = %crate::load::config::redact_url(&cfg.store), "Loaded rules and policies");
    log_route_notes(&rs);
    metrics.init_actions(&rs);
    if cfg.mode == crate::domain::policy::Mode::Enforce
        && let Err(errors) = crate::adapters::action::postgres::preflight(&rs, cfg.mode).await
    {
        anyhow::bail!(
            "enforce mode: databases the policies act on are not usable:\n{}",
            errors.join("\n")
        );
    }
    if let Some(cluster) = parts.executors.cluster() {
        cluster.set_metrics(metrics.clone());
    }
    if cfg.mode == crate::domain::policy::Mode::Enforce
        && crate::adapters::action::kubernetes::used_by(&rs)
        && let Some(cluster) = parts.executors.cluster()
    {
        match cluster.preflight().await {
            Ok(version) => tracing::info!(%version, "Kubernetes API server reachable"),
            Err(e) => anyhow::bail!(
                "enforce mode: policies use Kubernetes actions but the cluster is not usable: {e}"
            ),
        }
    }
    let shared: SharedRuleset = Arc::new(RwLock::new(Arc::new(rs)));
    let outbox_wake = Arc::new(Notify::new());
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    // The first failure of a supervised task cancels `cancel` (everything stops) and `failed`.
    let supervisor = Supervisor::new(cancel.clone(), parts.faults.clone());
    let failed = supervisor.failed();
    let engine_health = Arc::new(EngineHealth::default());

    let state = Arc::new(AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        wake: wake.clone(),
        token,
        read_token,
        clock: parts.clock.clone(),
        ruleset: shared.clone(),
        ready: AtomicBool::new(true),
        max_body: cfg.max_body,
        limits,
        engine: engine_health.clone(),
        engine_stall_after,
        slack: crate::app::api::slack::SlackInteractions::new(cfg.slack_signing_secret()?),
    });
    tracing::info!(listen = %listener.local_addr()?, "Serving");

    let source: Option<Arc<dyn crate::adapters::prometheus::MetricSource>> =
        match (&parts.source, &cfg.prometheus_url) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(url)) => Some(Arc::new(
                crate::adapters::prometheus::PromClient::new(url, metrics.clone())
                    .map_err(anyhow::Error::msg)?,
            )),
            (None, None) => None,
        };
    // The engine, the poller and the outbox run only while this replica leads.
    let leader_task = supervisor.spawn(
        Task::Leadership,
        &cancel,
        crate::app::leader::run(
            elector,
            crate::app::leader::Duties {
                ruleset: shared.clone(),
                executors: parts.executors.clone(),
                clock: parts.clock.clone(),
                metrics: metrics.clone(),
                engine: EngineConfig {
                    mode: cfg.mode,
                    shutdown: deadline,
                    stale_after: cfg.stale_after()?,
                    silencer: match cfg.alertmanager_urls()? {
                        urls if urls.is_empty() => None,
                        urls => Some(Arc::new(
                            crate::adapters::silence::Alertmanagers::new(
                                &urls,
                                cfg.external_url()?,
                            )
                            .map_err(anyhow::Error::msg)?,
                        )),
                    },
                    ..Default::default()
                },
                wake: wake.clone(),
                outbox_wake,
                pager: match cfg.external_url()? {
                    Some(base) => Arc::new(crate::adapters::escalate::Linked::new(
                        parts.pager.clone(),
                        base,
                    )),
                    None => parts.pager.clone(),
                },
                source,
                tasks: tasks.clone(),
                supervisor: supervisor.clone(),
                health: engine_health,
                signal_retention: cfg.signal_retention()?,
            },
            cancel.clone(),
        ),
    );

    // SIGHUP: reload fail-closed.
    let reloader = {
        let cfg = cfg.clone();
        let executors = parts.executors.clone();
        let shared = shared.clone();
        let metrics = metrics.clone();
        let cancel = cancel.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        supervisor.spawn(Task::Reloader, &cancel.clone(), async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    Some(()) = hup.recv() => {
                        tracing::info!("SIGHUP: reloading rules and policies");
                        reload(&cfg, &executors, &shared, &metrics);
                    }
                }
            }
        })
    };

    // When the process goes quiet (start-up over, a storm passed), give back the code and heap
    // the busy period left resident (adapters/memory.rs): an idle replica's resident set is its
    // working set. A webhook since the last look means it is not quiet, however cheap it was.
    let seen = metrics.clone();
    tasks.spawn(crate::adapters::memory::trim_when_idle(
        cancel.clone(),
        move || {
            seen.webhooks_seen
                .load(std::sync::atomic::Ordering::Relaxed)
        },
    ));

    // Intake stops on SIGTERM/SIGINT (`stop`), or at once when a supervised task fails.
    let shutdown = {
        let state = state.clone();
        let failed = failed.clone();
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = failed.cancelled() => {}
            }
            state.ready.store(false, Ordering::SeqCst);
        }
    };
    let server = crate::app::listen::serve(listener, router(state), limits, shutdown);
    // After a failure, requests in progress get the shutdown deadline to be answered (their
    // writes are durable either way); then the server is dropped with them.
    tokio::select! {
        () = server => {}
        _ = async { failed.cancelled().await; tokio::time::sleep(deadline).await } => {}
    }
    // Intake has stopped and every accepted request has been answered (its writes are durable).
    cancel.cancel();
    tasks.close();
    // The engine waits up to the deadline for actions in flight and records their results; the
    // leadership loop bounds that (and releasing the term) itself, this bounds the loop.
    let leader_abort = leader_task.abort_handle();
    if tokio::time::timeout(deadline + STOP_GRACE, leader_task)
        .await
        .is_err()
    {
        tracing::warn!("The leadership loop did not stop in time; abandoning it");
        leader_abort.abort();
    }
    let _ = reloader.await;
    let _ = tokio::time::timeout(Duration::from_millis(100), tasks.wait()).await;
    if let Some(e) = supervisor.failure() {
        return Err(e.into());
    }
    tracing::info!("Stopped");
    Ok(())
}
