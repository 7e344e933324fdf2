//! remedyd's own metrics (`remedyd_` prefix, low-cardinality labels) and log setup.

use std::any::Any;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::time::Timestamp;

/// `{source, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignalLabels {
    /// webhook | poller.
    pub source: String,
    /// stored | duplicate | rejected | matched | unmatched | unmapped.
    pub status: String,
}

/// `{kind, outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// Action kind.
    pub kind: String,
    /// ok | failed | dry_run | interrupted.
    pub outcome: String,
}

/// `{reason}`: why a step was refused or escalated.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Value.
    pub reason: String,
}

/// `{result}`: how an operation ended (ok, error, unavailable, rejected).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// Value.
    pub result: String,
}

/// `{operation}`: which store operation failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// Value.
    pub operation: String,
}

/// `{state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Value.
    pub state: String,
}

/// `{route, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageLabels {
    /// Route name.
    pub route: String,
    /// delivered | recorded | retry | failed.
    pub result: String,
}

/// `{method, code}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KubeLabels {
    /// HTTP method.
    pub method: String,
    /// HTTP status, or `error` when no answer came.
    pub code: String,
}

/// `{op, result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SilenceLabels {
    /// create | renew | expire | check | sweep.
    pub op: String,
    /// ok | error.
    pub result: String,
}

/// `{code}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// HTTP status.
    pub code: String,
}

/// Every metric remedyd exports.
pub struct Metrics {
    registry: Registry,
    /// Signals by source and what became of them.
    pub signals: Family<SignalLabels, Counter>,
    /// Alerts Alertmanager reported as truncated.
    pub truncated_alerts: Counter,
    /// Webhook answers by status code.
    pub webhook_requests: Family<CodeLabel, Counter>,
    /// Webhook handling time, receipt to answer.
    pub webhook_duration: Histogram,
    /// Webhooks answered since start (not exported: it tells the idle trim that deliveries
    /// are still coming, `adapters/memory.rs`).
    pub webhooks_seen: std::sync::atomic::AtomicU64,
    /// Incidents by state (set at scrape time from the store).
    pub incidents: Family<StateLabel, Gauge>,
    /// Actions by kind and outcome.
    pub actions: Family<ActionLabels, Counter>,
    /// Steps refused, by gate.
    pub refusals: Family<ReasonLabel, Counter>,
    /// Breakers by state (set at scrape time).
    pub breakers: Family<StateLabel, Gauge>,
    /// Escalations by reason kind.
    pub escalations: Family<ReasonLabel, Counter>,
    /// Approvals of steps by outcome (approved, denied, timed_out).
    pub approvals: Family<ResultLabel, Counter>,
    /// Pages not yet delivered (set at scrape time).
    pub outbox_depth: Gauge,
    /// Page deliveries by route and result.
    pub pages: Family<PageLabels, Counter>,
    /// Rule and policy reloads by result.
    pub reloads: Family<ResultLabel, Counter>,
    /// Store errors by operation.
    pub store_errors: Family<OperationLabel, Counter>,
    /// Prometheus queries by result (ok, unavailable, rejected).
    pub prom_queries: Family<ResultLabel, Counter>,
    /// Prometheus query latency, retries included.
    pub prom_query_duration: Histogram,
    /// Duration of one poll cycle over every due polled rule.
    pub poll_cycle_duration: Histogram,
    /// 1 while this replica leads (runs the engine, the poller and the outbox), else 0.
    pub leader: Gauge,
    /// Kubernetes API requests by method and status.
    pub kube_requests: Family<KubeLabels, Counter>,
    /// When the engine last completed a pass, in seconds since the epoch (0: never here).
    pub engine_last_pass: Gauge<f64, AtomicU64>,
    /// Calls to Alertmanager's silences API by operation and result.
    pub silence_calls: Family<SilenceLabels, Counter>,
    /// Signals removed past their retention (`signal_retention`).
    pub signals_pruned: Counter,
    /// The series every webhook moves, looked up once (a lookup allocates its labels).
    webhook_series: WebhookSeries,
}

/// Handles to series of [`Metrics::signals`] and [`Metrics::webhook_requests`]: the same
/// counters the families export.
struct WebhookSeries {
    stored: Counter,
    duplicates: Counter,
    answered_200: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("remedyd");
        let signals: Family<SignalLabels, Counter> = Family::default();
        let webhook_requests: Family<CodeLabel, Counter> = Family::default();
        let webhook_signals = |status: &str| {
            signals
                .get_or_create(&SignalLabels {
                    source: "webhook".into(),
                    status: status.into(),
                })
                .clone()
        };
        let webhook_series = WebhookSeries {
            stored: webhook_signals("stored"),
            duplicates: webhook_signals("duplicate"),
            answered_200: webhook_requests
                .get_or_create(&CodeLabel { code: "200".into() })
                .clone(),
        };
        let m = Self {
            signals,
            truncated_alerts: Counter::default(),
            webhook_requests,
            // 100 µs … ~3 s: the webhook answers in milliseconds; anything near 10 s is an outage.
            webhook_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.5, 12),
            ),
            incidents: Family::default(),
            actions: Family::default(),
            refusals: Family::default(),
            breakers: Family::default(),
            escalations: Family::default(),
            approvals: Family::default(),
            outbox_depth: Gauge::default(),
            pages: Family::default(),
            reloads: Family::default(),
            store_errors: Family::default(),
            prom_queries: Family::default(),
            kube_requests: Family::default(),
            // 1 ms … ~10 s: local queries take milliseconds; the client times out at 10 s.
            prom_query_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.5, 11),
            ),
            // 1 ms … ~60 s: a cycle over many rules; near `every` means polling falls behind.
            poll_cycle_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 3.0, 11),
            ),
            leader: Gauge::default(),
            engine_last_pass: Gauge::default(),
            silence_calls: Family::default(),
            signals_pruned: Counter::default(),
            webhooks_seen: std::sync::atomic::AtomicU64::new(0),
            webhook_series,
            registry: Registry::default(),
        };
        registry.register(
            "signals",
            "Signals received, by source and outcome",
            m.signals.clone(),
        );
        registry.register(
            "truncated_alerts",
            "Alerts Alertmanager left out of payloads (truncatedAlerts)",
            m.truncated_alerts.clone(),
        );
        registry.register(
            "webhook_requests",
            "Webhook answers by HTTP status",
            m.webhook_requests.clone(),
        );
        registry.register(
            "webhook_duration_seconds",
            "Webhook handling time",
            m.webhook_duration.clone(),
        );
        registry.register("incidents", "Incidents by state", m.incidents.clone());
        registry.register("actions", "Actions by kind and outcome", m.actions.clone());
        registry.register(
            "refusals",
            "Steps refused, by gate (budget, breaker, paused, storm, busy, namespace)",
            m.refusals.clone(),
        );
        registry.register("breakers", "Breakers by state", m.breakers.clone());
        registry.register(
            "approvals",
            "Approvals of steps by outcome (approved, denied, timed_out), as the engine applied them",
            m.approvals.clone(),
        );
        registry.register(
            "escalations",
            "Escalations by reason",
            m.escalations.clone(),
        );
        registry.register(
            "pager_outbox_depth",
            "Pages waiting for delivery",
            m.outbox_depth.clone(),
        );
        registry.register(
            "pages",
            "Page deliveries by route and result",
            m.pages.clone(),
        );
        registry.register(
            "ruleset_reloads",
            "Rule and policy reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed",
            m.store_errors.clone(),
        );
        registry.register(
            "prometheus_queries",
            "Prometheus queries by result",
            m.prom_queries.clone(),
        );
        registry.register(
            "prometheus_query_duration_seconds",
            "Prometheus query latency",
            m.prom_query_duration.clone(),
        );
        registry.register(
            "poll_cycle_duration_seconds",
            "Time to evaluate every due polled rule once",
            m.poll_cycle_duration.clone(),
        );
        registry.register(
            "kube_requests",
            "Kubernetes API requests by method and status (error: no answer)",
            m.kube_requests.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica leads: runs the engine, the poller and the outbox",
            m.leader.clone(),
        );
        registry.register(
            "engine_last_pass_timestamp_seconds",
            "When the engine last completed a pass (seconds since the epoch; 0 until the first)",
            m.engine_last_pass.clone(),
        );
        registry.register(
            "signals_pruned",
            "Signals removed from the store past their retention (signal_retention)",
            m.signals_pruned.clone(),
        );
        registry.register(
            "silence_calls",
            "Alertmanager silence calls by operation (create, renew, expire, check, sweep) and result",
            m.silence_calls.clone(),
        );
        // Label values known in advance start at 0, so that dashboards and alerts see a series
        // before the first event instead of nothing.
        // Permission refusals of the Kubernetes API: the series to alert on exists from the start.
        for method in ["GET", "PATCH", "POST", "DELETE"] {
            let _ = m.kube_requests.get_or_create(&KubeLabels {
                method: method.into(),
                code: "403".into(),
            });
        }
        for r in ["paused", "storm", "namespace", "busy", "breaker", "budget"] {
            let _ = m.refusals.get_or_create(&ReasonLabel { reason: r.into() });
        }
        for r in [
            "paused",
            "budget",
            "breaker",
            "exhausted",
            "stale",
            "policy",
            "storm",
            "approval_denied",
            "approval_timeout",
        ] {
            let _ = m
                .escalations
                .get_or_create(&ReasonLabel { reason: r.into() });
        }
        for r in ["approved", "denied", "timed_out"] {
            let _ = m.approvals.get_or_create(&ResultLabel { result: r.into() });
        }
        for r in ["ok", "error"] {
            let _ = m.reloads.get_or_create(&ResultLabel { result: r.into() });
            for op in ["create", "renew", "expire", "check", "sweep"] {
                let _ = m.silence_calls.get_or_create(&SilenceLabels {
                    op: op.into(),
                    result: r.into(),
                });
            }
        }
        for r in ["ok", "unavailable", "rejected"] {
            let _ = m
                .prom_queries
                .get_or_create(&ResultLabel { result: r.into() });
        }
        for o in ["ingest", "engine", "finish", "poller"] {
            let _ = m.store_errors.get_or_create(&OperationLabel {
                operation: o.into(),
            });
        }
        Self { registry, ..m }
    }

    /// Counts one call to Alertmanager's silences API (`op`: create, renew, expire, check,
    /// sweep).
    pub fn silence_call(&self, op: &str, ok: bool) {
        self.silence_calls
            .get_or_create(&SilenceLabels {
                op: op.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// Starts the page counters of these routes at 0 for every result.
    pub fn init_routes<'a>(&self, routes: impl IntoIterator<Item = &'a str>) {
        for route in routes {
            for result in ["delivered", "recorded", "retry", "failed", "superseded"] {
                let _ = self.pages.get_or_create(&PageLabels {
                    route: route.into(),
                    result: result.into(),
                });
            }
        }
    }

    /// Starts the action counters of every action the policies name at 0 for `ok` and `failed`,
    /// so that a failure ratio has both series before the first action (`outcome="dry_run"` and
    /// the rarer outcomes appear when they first happen).
    pub fn init_actions(&self, rs: &crate::load::ruleset::Ruleset) {
        for policy in rs.policies.values() {
            for step in policy.levels.values().flat_map(|l| &l.steps) {
                for outcome in ["ok", "failed"] {
                    let _ = self.actions.get_or_create(&ActionLabels {
                        kind: step.action.clone(),
                        outcome: outcome.into(),
                    });
                }
            }
        }
    }

    /// Counts what a webhook stored: its new signals and its duplicates.
    pub fn webhook_stored(&self, stored: u64, duplicates: u64) {
        self.webhook_series.stored.inc_by(stored);
        self.webhook_series.duplicates.inc_by(duplicates);
    }

    /// Counts a webhook's answer by its status code.
    pub fn webhook_answered(&self, code: u16) {
        if code == 200 {
            self.webhook_series.answered_200.inc();
        } else {
            self.webhook_requests
                .get_or_create(&CodeLabel {
                    code: code.to_string(),
                })
                .inc();
        }
    }

    /// Counts a signal.
    pub fn signal(&self, source: &str, status: &str, n: u64) {
        self.signals
            .get_or_create(&SignalLabels {
                source: source.into(),
                status: status.into(),
            })
            .inc_by(n);
    }

    /// Counts an action.
    pub fn action(&self, kind: &str, outcome: &str) {
        self.actions
            .get_or_create(&ActionLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts under a `reason` label.
    pub fn reason(family: &Family<ReasonLabel, Counter>, reason: &str) {
        family
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts under a `result` label.
    pub fn result(family: &Family<ResultLabel, Counter>, result: &str) {
        family
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts a failed store operation.
    pub fn store_error(&self, operation: &str) {
        self.store_errors
            .get_or_create(&OperationLabel {
                operation: operation.into(),
            })
            .inc();
    }

    /// Records a completed engine pass at `at` (the engine's clock).
    pub fn engine_passed(&self, at: Timestamp) {
        self.engine_last_pass.set(at.0 as f64 / 1000.0);
    }

    /// When the engine last completed a pass in this process, if it has.
    pub fn engine_last_pass(&self) -> Option<Timestamp> {
        let secs = self.engine_last_pass.get();
        (secs > 0.0).then(|| Timestamp((secs * 1000.0).round() as i64))
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Installs the tracing subscriber (`RUST_LOG` filters; default `info`).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Sends every panic to the log through tracing, with its message, location and thread (and a
/// backtrace when `RUST_BACKTRACE` asks for one), so that a panic in any task reaches the same
/// structured log as everything else. Replaces the default hook, which would print it again,
/// unstructured.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => backtrace.to_string(),
            _ => String::new(),
        };
        tracing::error!(
            panic = %panic_message(info.payload()),
            location = %location,
            thread = thread.name().unwrap_or("unnamed"),
            backtrace = %backtrace,
            "Panic"
        );
    }));
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// Where this replica's engine stands, for `/readyz`: whether it runs here (this replica leads)
/// and since when. The last completed pass is [`Metrics::engine_last_pass`].
#[derive(Debug, Default)]
pub struct EngineHealth {
    running_since: Mutex<Option<Timestamp>>,
}

impl EngineHealth {
    /// The engine started at `now` (this replica began to lead).
    pub fn started(&self, now: Timestamp) {
        *self.running_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
    }

    /// The engine stopped (leadership ended, or shutdown).
    pub fn stopped(&self) {
        *self.running_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Since when the engine runs here; `None` on a replica that does not lead.
    pub fn running_since(&self) -> Option<Timestamp> {
        *self.running_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
