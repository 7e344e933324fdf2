//! Policies: per-level ladders of steps, routes to humans, and the limits that guard them.

pub mod breaker;
pub mod budget;
pub mod gate;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::domain::diag::Diagnostics;
use crate::domain::time::parse_duration;

/// Whether actions touch anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Record the exact request that would be sent; send nothing.
    #[default]
    DryRun,
    /// Act.
    Enforce,
}

impl Mode {
    /// Parses `dry-run` or `enforce`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "dry-run" => Ok(Mode::DryRun),
            "enforce" => Ok(Mode::Enforce),
            other => Err(format!("unknown mode {other:?}; valid: dry-run, enforce")),
        }
    }
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::DryRun => "dry-run",
            Mode::Enforce => "enforce",
        }
    }
}

/// A `policies/*.yaml` file as written; every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyFile {
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    limits: Option<Spanned<RawLimits>>,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    #[serde(default)]
    digest: Option<Spanned<RawDigest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    url_file: Option<String>,
    #[serde(default)]
    routing_key_env: Option<String>,
    #[serde(default)]
    routing_key_file: Option<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    api_key_file: Option<String>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
}

/// `digest: {route: NAME, at: "08:00"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDigest {
    route: Spanned<String>,
    at: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    budgets: RawBudgets,
    #[serde(default)]
    breakers: RawBreakers,
    #[serde(default)]
    storm_guard: Option<RawStorm>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    #[serde(default)]
    global: Option<Spanned<RawWindow>>,
    #[serde(default)]
    namespace: Option<Spanned<RawWindow>>,
    #[serde(default)]
    rule: Option<Spanned<RawWindow>>,
    #[serde(default)]
    action_target: Option<Spanned<RawWindow>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    max: u32,
    per: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreakers {
    #[serde(default)]
    target: Option<Spanned<RawBreaker>>,
    #[serde(default)]
    global: Option<Spanned<RawBreaker>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failures: u32,
    within: String,
    cooldown: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorm {
    max_targets: u32,
    route: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    escalate_to: Option<Spanned<String>>,
    levels: Vec<RawLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    level: Spanned<u8>,
    #[serde(default)]
    escalate_to: Option<Spanned<String>>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    action: Spanned<String>,
    #[serde(default, rename = "with")]
    params: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    budget: Option<Spanned<RawWindow>>,
    verify: Option<Spanned<RawVerify>>,
    #[serde(default)]
    on_failure: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    #[serde(default)]
    resolved_within: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    within: Option<String>,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    no_data: Option<String>,
}

/// At most `max` events per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Maximum count in the window.
    pub max: u32,
    /// Window length.
    #[serde(with = "crate::domain::time::duration_str")]
    pub per: Duration,
}

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Failures within `within` that open the breaker.
    pub failures: u32,
    /// Failure window.
    #[serde(with = "crate::domain::time::duration_str")]
    pub within: Duration,
    /// Time open before a half-open trial.
    #[serde(with = "crate::domain::time::duration_str")]
    pub cooldown: Duration,
}

/// Storm guard settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormGuard {
    /// More targets than this in incident at once stops workload automation.
    pub max_targets: u32,
    /// Route paged once per storm.
    pub route: String,
}

/// Global limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Namespaces automation may act in (cluster-scoped targets are not namespaced).
    pub namespaces: Vec<String>,
    /// All actions, everywhere.
    pub global: Window,
    /// Actions per namespace.
    pub namespace: Window,
    /// Actions per rule.
    pub rule: Window,
    /// Default for a step without its own budget: per action × target.
    pub action_target: Window,
    /// Breaker per action × target.
    pub breaker_target: BreakerConfig,
    /// Breaker over all actions.
    pub breaker_global: BreakerConfig,
    /// Storm guard; `None` disables it.
    pub storm_guard: Option<StormGuard>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            namespaces: vec![crate::domain::rules::DEFAULT_NAMESPACE.to_string()],
            // The runbook's "20 actions per hour in total".
            global: Window {
                max: 20,
                per: Duration::from_secs(3600),
            },
            namespace: Window {
                max: 10,
                per: Duration::from_secs(3600),
            },
            rule: Window {
                max: 10,
                per: Duration::from_secs(3600),
            },
            // The runbook's "at most 3 restarts of one deployment per hour".
            action_target: Window {
                max: 3,
                per: Duration::from_secs(3600),
            },
            breaker_target: BreakerConfig {
                failures: 3,
                within: Duration::from_secs(3600),
                cooldown: Duration::from_secs(1800),
            },
            breaker_global: BreakerConfig {
                failures: 10,
                within: Duration::from_secs(3600),
                cooldown: Duration::from_secs(900),
            },
            storm_guard: None,
        }
    }
}

/// What a failed step leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Try the next step.
    Next,
    /// Stop and page.
    Escalate,
}

/// What a verification with no data leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// Hand to a human at once: nobody can tell whether the step helped (default).
    Escalate,
    /// Treat as a failed verification (the step's `on_failure` applies); the breaker is not
    /// charged, since an outage is not the action's fault.
    Fail,
}

/// How a step proves it helped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Nothing to verify: an evidence step, which changes nothing; the ladder goes on at once.
    None,
    /// The incident's alerts resolve within this time.
    ResolvedWithin(#[serde(with = "crate::domain::time::duration_str")] Duration),
    /// A PromQL value passes a bound within this time, polled every `every`.
    Query {
        /// PromQL, templated like action parameters.
        query: String,
        /// `true`: passes when above `bound`; `false`: when below.
        above: bool,
        /// The bound.
        bound: f64,
        /// Deadline.
        #[serde(with = "crate::domain::time::duration_str")]
        within: Duration,
        /// Probe interval.
        #[serde(with = "crate::domain::time::duration_str")]
        every: Duration,
        /// What no data means.
        no_data: NoData,
    },
}

impl Verify {
    /// How long verification may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Verify::None => Duration::ZERO,
            Verify::ResolvedWithin(d) => *d,
            Verify::Query { within, .. } => *within,
        }
    }

    /// Whether a value passes (always false for `resolved_within`).
    pub fn passes(&self, v: f64) -> bool {
        match self {
            Verify::None | Verify::ResolvedWithin(_) => false,
            Verify::Query { above, bound, .. } => {
                if *above {
                    v > *bound
                } else {
                    v < *bound
                }
            }
        }
    }

    /// `below 0.02` / `above 10`, for messages.
    pub fn condition(&self) -> String {
        match self {
            Verify::None => "nothing (evidence)".to_string(),
            Verify::ResolvedWithin(d) => {
                format!(
                    "alerts resolved within {}",
                    crate::domain::time::fmt_duration(*d)
                )
            }
            Verify::Query { above, bound, .. } => {
                format!("{} {bound}", if *above { "above" } else { "below" })
            }
        }
    }
}

fn compile_verify(file: &str, v: &Spanned<RawVerify>, diag: &mut Diagnostics) -> Verify {
    let line = v.referenced.line();
    let r = &v.value;
    let dur = |field: &str, s: &str, diag: &mut Diagnostics| {
        parse_duration(s).unwrap_or_else(|e| {
            diag.push(file, line, &format!("steps.verify.{field}"), e);
            Duration::from_secs(60)
        })
    };
    match (&r.resolved_within, &r.query) {
        (Some(d), None) => {
            if r.above.is_some()
                || r.below.is_some()
                || r.within.is_some()
                || r.every.is_some()
                || r.no_data.is_some()
            {
                diag.push(
                    file,
                    line,
                    "steps.verify",
                    "above/below/within/every/no_data go with `query`, not `resolved_within`",
                );
            }
            Verify::ResolvedWithin(dur("resolved_within", d, diag))
        }
        (None, Some(q)) => {
            if let Err(e) = crate::domain::rules::polled::check_promql(q) {
                diag.push(file, line, "steps.verify.query", e);
            }
            let (above, bound) = match (r.above, r.below) {
                (Some(a), None) => (true, a),
                (None, Some(b)) => (false, b),
                _ => {
                    diag.push(
                        file,
                        line,
                        "steps.verify",
                        "a query verification needs exactly one of `above` or `below`",
                    );
                    (false, 0.0)
                }
            };
            let within = match &r.within {
                Some(w) => dur("within", w, diag),
                None => {
                    diag.push(
                        file,
                        line,
                        "steps.verify.within",
                        "a query verification needs `within` (e.g. 5m)",
                    );
                    Duration::from_secs(300)
                }
            };
            let every = r
                .every
                .as_deref()
                .map_or(Duration::from_secs(15), |e| dur("every", e, diag));
            let no_data = match r.no_data.as_deref() {
                None | Some("escalate") => NoData::Escalate,
                Some("fail") => NoData::Fail,
                Some(other) => {
                    diag.push(
                        file,
                        line,
                        "steps.verify.no_data",
                        format!("unknown no_data {other:?}; valid: escalate, fail"),
                    );
                    NoData::Escalate
                }
            };
            Verify::Query {
                query: q.clone(),
                above,
                bound,
                within,
                every,
                no_data,
            }
        }
        _ => {
            diag.push(
                file,
                line,
                "steps.verify",
                "set exactly one of `resolved_within` or `query`",
            );
            Verify::ResolvedWithin(Duration::ZERO)
        }
    }
}

/// One rung of a ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Step name, unique in its ladder.
    pub name: String,
    /// Action kind (`http`, …).
    pub action: String,
    /// Action parameters (`with:`), templates unrendered.
    pub params: serde_json::Value,
    /// Budget per action × target; `None` uses `limits.budgets.action_target`.
    pub budget: Option<Window>,
    /// Verification.
    pub verify: Verify,
    /// What failure does.
    pub on_failure: OnFailure,
}

/// The steps for one level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ladder {
    /// In order.
    pub steps: Vec<Step>,
    /// Route paged when the ladder runs out or is refused.
    pub escalate_to: String,
}

/// A compiled policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Overrides the global mode.
    pub mode: Option<Mode>,
    /// Level → ladder.
    pub levels: BTreeMap<u8, Ladder>,
}

impl Policy {
    /// The ladder for a level: that level's, else the nearest lower one, else the lowest.
    pub fn ladder(&self, level: u8) -> Option<(u8, &Ladder)> {
        self.levels
            .range(..=level)
            .next_back()
            .or_else(|| self.levels.iter().next())
            .map(|(l, ladder)| (*l, ladder))
    }
}

/// A secret (routing key, API key, a webhook URL with its token) read from the environment or a
/// file at load time. It never appears in `Debug` output, logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Opsgenie API base (`https://api.eu.opsgenie.com` for EU accounts).
pub const OPSGENIE_URL: &str = "https://api.opsgenie.com";

/// How a route delivers, and where. A `None` secret means it is not configured here: pages are
/// recorded (timeline, log, outbox) and not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Generic JSON webhook: the notification as JSON.
    Webhook {
        /// Destination (a secret when it came from env or a file: it may carry a token).
        url: Option<Secret>,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        /// Events endpoint ([`PAGERDUTY_URL`] unless overridden).
        url: String,
        /// Integration (routing) key.
        routing_key: Option<Secret>,
    },
    /// Opsgenie Alert API.
    Opsgenie {
        /// API base ([`OPSGENIE_URL`] unless overridden).
        url: String,
        /// API integration key (`Authorization: GenieKey …`).
        api_key: Option<Secret>,
    },
    /// Slack incoming webhook.
    Slack {
        /// The webhook URL (a secret).
        url: Option<Secret>,
    },
}

impl Transport {
    /// The route type as written in policies.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Webhook { .. } => "webhook",
            Transport::PagerDuty { .. } => "pagerduty",
            Transport::Opsgenie { .. } => "opsgenie",
            Transport::Slack { .. } => "slack",
        }
    }

    /// Whether it has what it needs to send.
    pub fn ready(&self) -> bool {
        match self {
            Transport::Webhook { url } | Transport::Slack { url } => url.is_some(),
            Transport::PagerDuty { routing_key, .. } => routing_key.is_some(),
            Transport::Opsgenie { api_key, .. } => api_key.is_some(),
        }
    }

    /// Secret values, for redacting anything a receiver echoes back.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Transport::Webhook { url } | Transport::Slack { url } => {
                url.iter().map(Secret::expose).collect()
            }
            Transport::PagerDuty { routing_key, .. } => {
                routing_key.iter().map(Secret::expose).collect()
            }
            Transport::Opsgenie { api_key, .. } => api_key.iter().map(Secret::expose).collect(),
        }
    }
}

/// Kind of a human route: the summary older callers read (`url` is `None` exactly when the
/// route cannot send). New code reads [`Route::transport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RouteKind {
    /// Any route.
    Webhook {
        /// `None` when its secret is missing (pages are then recorded, not sent); otherwise the
        /// URL written in the policy file, or a description without the secret (a URL from env
        /// or a file, PagerDuty, Opsgenie, Slack).
        url: Option<String>,
        /// Where the secret came from, for messages (never the secret itself).
        source: String,
    },
}

/// A named human route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Name used by `escalate_to`.
    pub name: String,
    /// Transport and destination.
    pub transport: Transport,
    /// Where the secret or URL came from (`env NAME`, `file PATH`, `url`), for messages.
    pub source: String,
    /// Why the route cannot send (its secret is missing), for the load-time note.
    pub missing: Option<String>,
    /// Summary for older callers; see [`RouteKind`].
    pub kind: RouteKind,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Route {
    /// A route from its parts (the [`RouteKind`] summary is derived).
    pub fn new(name: &str, transport: Transport, source: &str, timeout: Duration) -> Self {
        let url = match &transport {
            // A URL written in the policy file is not secret; one from env or a file may be.
            Transport::Webhook { url } if source == "url" => {
                url.as_ref().map(|u| u.expose().to_string())
            }
            Transport::Webhook { url } => {
                url.as_ref().map(|_| format!("webhook URL from {source}"))
            }
            Transport::PagerDuty { url, routing_key } => routing_key.as_ref().map(|_| url.clone()),
            Transport::Opsgenie { url, api_key } => api_key.as_ref().map(|_| url.clone()),
            Transport::Slack { url } => url.as_ref().map(|_| "slack incoming webhook".into()),
        };
        let missing = (!transport.ready()).then(|| format!("{source} is not set"));
        Self {
            name: name.to_string(),
            kind: RouteKind::Webhook {
                url,
                source: source.to_string(),
            },
            transport,
            source: source.to_string(),
            missing,
            timeout,
        }
    }

    /// The load-time note for a route that records pages without sending them.
    pub fn note(&self) -> Option<String> {
        self.missing.as_ref().map(|why| {
            format!(
                "route {:?} ({}) has no destination: {why}; its pages are recorded, not sent",
                self.name,
                self.transport.kind()
            )
        })
    }
}

/// `digest:`: a daily summary sent to a route at a time of day (UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestSchedule {
    /// Route it goes to (webhook or slack).
    pub route: String,
    /// Hour (UTC).
    pub hour: u8,
    /// Minute.
    pub minute: u8,
}

/// A step's action as referenced: (kind, params, file, line of `action:`, the step's name and
/// line when it has no `verify`).
pub type ActionRef = (
    String,
    serde_json::Value,
    String,
    u64,
    Option<(String, u64)>,
);

/// What policy files contribute, before cross-checks.
#[derive(Debug, Default)]
pub struct PolicyParts {
    /// Variables for templates (`vars.*`).
    pub vars: BTreeMap<String, String>,
    /// Routes by name.
    pub routes: BTreeMap<String, Route>,
    /// Limits, if a file set them (with file:line for the duplicate check).
    pub limits: Option<(Limits, String)>,
    /// Policies by name, with file:line.
    pub policies: BTreeMap<String, (Policy, String)>,
    /// `escalate_to` and storm routes referenced, with file and line.
    pub route_refs: Vec<(String, String, u64)>,
    /// Actions referenced, for the cross-check against the executors.
    pub action_refs: Vec<ActionRef>,
    /// The daily digest, if a file set one, with its file and line.
    pub digest: Option<(DigestSchedule, String, u64)>,
}

/// Reads a secret from exactly one of an env variable or a file. Returns the secret (`None` when
/// missing), where it comes from, and why it is missing. Never puts the value in a message.
fn read_secret(
    file: &str,
    line: u64,
    diag: &mut Diagnostics,
    route: &str,
    env: (&str, Option<String>),
    path: (&str, Option<String>),
) -> (Option<Secret>, String, Option<String>) {
    match (env.1, path.1) {
        (Some(var), None) => {
            let source = format!("env {var}");
            match std::env::var(&var) {
                Ok(v) if !v.trim().is_empty() => (Some(Secret::new(v.trim())), source, None),
                Ok(_) => (None, source, Some(format!("env {var} is empty"))),
                Err(_) => (None, source, Some(format!("env {var} is not set"))),
            }
        }
        (None, Some(p)) => {
            let source = format!("file {p}");
            match std::fs::read_to_string(&p) {
                Ok(v) if !v.trim().is_empty() => (Some(Secret::new(v.trim())), source, None),
                Ok(_) => (None, source, Some(format!("file {p} is empty"))),
                Err(e) => (None, source, Some(format!("file {p} cannot be read ({e})"))),
            }
        }
        _ => {
            diag.push(
                file,
                line,
                &format!("routes.{}", env.0),
                format!(
                    "route {route:?} needs exactly one of `{}` or `{}`",
                    env.0, path.0
                ),
            );
            (None, String::new(), None)
        }
    }
}

fn check_url(file: &str, line: u64, diag: &mut Diagnostics, route: &str, what: &str, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        diag.push(
            file,
            line,
            "routes.url",
            format!("route {route:?}: {what} must start with http:// or https://"),
        );
    }
}

/// Compiles one route entry; `None` when its type is unknown.
fn compile_route(file: &str, r: &RawRoute, diag: &mut Diagnostics) -> Option<Route> {
    let line = r.name.referenced.line();
    let name = r.name.value.as_str();
    let kind = r.kind.value.as_str();
    let timeout = match &r.timeout {
        Some(t) => parse_duration(&t.value).unwrap_or_else(|e| {
            diag.push(file, t.referenced.line(), "routes.timeout", e);
            Duration::from_secs(10)
        }),
        None => Duration::from_secs(10),
    };
    // Fields that do not apply to this type are errors, not silently ignored.
    let allowed: &[&str] = match kind {
        "webhook" => &["url", "url_env", "url_file"],
        "slack" => &["url_env", "url_file"],
        "pagerduty" => &["url", "routing_key_env", "routing_key_file"],
        "opsgenie" => &["url", "api_key_env", "api_key_file"],
        other => {
            diag.push(
                file,
                r.kind.referenced.line(),
                "routes.type",
                format!("unknown route type {other:?}; valid: webhook, pagerduty, opsgenie, slack"),
            );
            return None;
        }
    };
    for (field, set) in [
        ("url", r.url.is_some()),
        ("url_env", r.url_env.is_some()),
        ("url_file", r.url_file.is_some()),
        ("routing_key_env", r.routing_key_env.is_some()),
        ("routing_key_file", r.routing_key_file.is_some()),
        ("api_key_env", r.api_key_env.is_some()),
        ("api_key_file", r.api_key_file.is_some()),
    ] {
        if set && !allowed.contains(&field) {
            let hint = if kind == "slack" && field == "url" {
                " (a Slack webhook URL is a secret: use url_env or url_file)".to_string()
            } else {
                format!(" (valid for {kind}: {}, timeout)", allowed.join(", "))
            };
            diag.push(
                file,
                line,
                &format!("routes.{field}"),
                format!("route {name:?}: `{field}` does not apply to a {kind} route{hint}"),
            );
        }
    }
    let api_url = |default: &str, diag: &mut Diagnostics| {
        let u = r.url.clone().unwrap_or_else(|| default.to_string());
        check_url(file, line, diag, name, "url", &u);
        u.trim_end_matches('/').to_string()
    };
    let (transport, source, missing) = match kind {
        "webhook" => match (&r.url, &r.url_env, &r.url_file) {
            (Some(u), None, None) => {
                check_url(file, line, diag, name, "url", u);
                (
                    Transport::Webhook {
                        url: Some(Secret::new(u.clone())),
                    },
                    "url".to_string(),
                    None,
                )
            }
            (None, env, path) => {
                let (url, source, missing) = read_secret(
                    file,
                    line,
                    diag,
                    name,
                    ("url_env", env.clone()),
                    ("url_file", path.clone()),
                );
                if let Some(u) = &url {
                    check_url(
                        file,
                        line,
                        diag,
                        name,
                        &format!("the URL from {source}"),
                        u.expose(),
                    );
                }
                (Transport::Webhook { url }, source, missing)
            }
            _ => {
                diag.push(
                    file,
                    line,
                    "routes.url",
                    format!("route {name:?} needs exactly one of `url`, `url_env` or `url_file`"),
                );
                (Transport::Webhook { url: None }, String::new(), None)
            }
        },
        "slack" => {
            let (url, source, missing) = read_secret(
                file,
                line,
                diag,
                name,
                ("url_env", r.url_env.clone()),
                ("url_file", r.url_file.clone()),
            );
            if let Some(u) = &url {
                check_url(
                    file,
                    line,
                    diag,
                    name,
                    &format!("the URL from {source}"),
                    u.expose(),
                );
            }
            (Transport::Slack { url }, source, missing)
        }
        "pagerduty" => {
            let url = api_url(PAGERDUTY_URL, diag);
            let (routing_key, source, missing) = read_secret(
                file,
                line,
                diag,
                name,
                ("routing_key_env", r.routing_key_env.clone()),
                ("routing_key_file", r.routing_key_file.clone()),
            );
            (Transport::PagerDuty { url, routing_key }, source, missing)
        }
        _ => {
            let url = api_url(OPSGENIE_URL, diag);
            let (api_key, source, missing) = read_secret(
                file,
                line,
                diag,
                name,
                ("api_key_env", r.api_key_env.clone()),
                ("api_key_file", r.api_key_file.clone()),
            );
            (Transport::Opsgenie { url, api_key }, source, missing)
        }
    };
    let mut route = Route::new(name, transport, &source, timeout);
    if route.missing.is_some() {
        route.missing = missing.or(route.missing);
    }
    Some(route)
}

/// Parses `HH:MM` (UTC).
fn parse_time_of_day(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.trim().len() == 5).then_some((h, m))
}

fn window(file: &str, field: &str, w: &Spanned<RawWindow>, diag: &mut Diagnostics) -> Window {
    let per = parse_duration(&w.value.per).unwrap_or_else(|e| {
        diag.push(file, w.referenced.line(), &format!("{field}.per"), e);
        Duration::from_secs(3600)
    });
    if w.value.max == 0 {
        diag.push(
            file,
            w.referenced.line(),
            &format!("{field}.max"),
            "max must be at least 1 (remove the step to forbid it)",
        );
    }
    Window {
        max: w.value.max,
        per,
    }
}

fn breaker(
    file: &str,
    field: &str,
    b: &Spanned<RawBreaker>,
    diag: &mut Diagnostics,
) -> BreakerConfig {
    let line = b.referenced.line();
    let mut d = |name: &str, v: &str| {
        parse_duration(v).unwrap_or_else(|e| {
            diag.push(file, line, &format!("{field}.{name}"), e);
            Duration::from_secs(60)
        })
    };
    let within = d("within", &b.value.within);
    let cooldown = d("cooldown", &b.value.cooldown);
    if b.value.failures == 0 {
        diag.push(
            file,
            line,
            &format!("{field}.failures"),
            "failures must be at least 1",
        );
    }
    BreakerConfig {
        failures: b.value.failures,
        within,
        cooldown,
    }
}

/// Compiles one policy file into `parts`, reporting every problem to `diag`.
pub fn compile(file: &str, raw: RawPolicyFile, parts: &mut PolicyParts, diag: &mut Diagnostics) {
    for (k, v) in raw.vars {
        if parts.vars.insert(k.clone(), v).is_some() {
            diag.push(file, 0, "vars", format!("variable {k:?} is defined twice"));
        }
    }
    for r in raw.routes {
        let Some(route) = compile_route(file, &r, diag) else {
            continue;
        };
        if parts.routes.insert(r.name.value.clone(), route).is_some() {
            diag.push(
                file,
                r.name.referenced.line(),
                "routes.name",
                format!("route {:?} is defined twice", r.name.value),
            );
        }
    }
    if let Some(d) = raw.digest {
        let line = d.referenced.line();
        if let Some((_, f, l)) = &parts.digest {
            diag.push(
                file,
                line,
                "digest",
                format!("the digest is already set at {f}:{l}; keep one `digest:` section"),
            );
        }
        let (hour, minute) = parse_time_of_day(&d.value.at).unwrap_or_else(|| {
            diag.push(
                file,
                line,
                "digest.at",
                format!(
                    "{:?} is not a time of day; write HH:MM in UTC, e.g. \"08:00\"",
                    d.value.at
                ),
            );
            (8, 0)
        });
        parts.route_refs.push((
            d.value.route.value.clone(),
            file.to_string(),
            d.value.route.referenced.line(),
        ));
        parts.digest = Some((
            DigestSchedule {
                route: d.value.route.value,
                hour,
                minute,
            },
            file.to_string(),
            line,
        ));
    }
    if let Some(l) = raw.limits {
        let line = l.referenced.line();
        let origin = format!("{file}:{line}");
        if let Some((_, first)) = &parts.limits {
            diag.push(
                file,
                line,
                "limits",
                format!("limits are already set at {first}; keep one `limits:` section"),
            );
        }
        let mut lim = Limits::default();
        let raw = l.value;
        if let Some(ns) = raw.namespaces {
            if ns.iter().any(|n| n == "kube-system") {
                diag.push(
                    file,
                    line,
                    "limits.namespaces",
                    "kube-system cannot be allowed; only the named DNS actions may act there",
                );
            }
            lim.namespaces = ns;
        }
        if let Some(w) = &raw.budgets.global {
            lim.global = window(file, "limits.budgets.global", w, diag);
        }
        if let Some(w) = &raw.budgets.namespace {
            lim.namespace = window(file, "limits.budgets.namespace", w, diag);
        }
        if let Some(w) = &raw.budgets.rule {
            lim.rule = window(file, "limits.budgets.rule", w, diag);
        }
        if let Some(w) = &raw.budgets.action_target {
            lim.action_target = window(file, "limits.budgets.action_target", w, diag);
        }
        if let Some(b) = &raw.breakers.target {
            lim.breaker_target = breaker(file, "limits.breakers.target", b, diag);
        }
        if let Some(b) = &raw.breakers.global {
            lim.breaker_global = breaker(file, "limits.breakers.global", b, diag);
        }
        if let Some(s) = raw.storm_guard {
            parts.route_refs.push((
                s.route.value.clone(),
                file.to_string(),
                s.route.referenced.line(),
            ));
            lim.storm_guard = Some(StormGuard {
                max_targets: s.max_targets,
                route: s.route.value,
            });
        }
        parts.limits = Some((lim, origin));
    }
    for p in raw.policies {
        let line = p.name.referenced.line();
        let mode = p.mode.as_ref().and_then(|m| {
            Mode::parse(&m.value)
                .map_err(|e| diag.push(file, m.referenced.line(), "mode", e))
                .ok()
        });
        if let Some(e) = &p.escalate_to {
            parts
                .route_refs
                .push((e.value.clone(), file.to_string(), e.referenced.line()));
        }
        let mut levels = BTreeMap::new();
        if p.levels.is_empty() {
            diag.push(
                file,
                line,
                "levels",
                format!("policy {:?} has no levels", p.name.value),
            );
        }
        for lv in p.levels {
            let l = lv.level.value;
            if !(1..=3).contains(&l) {
                diag.push(
                    file,
                    lv.level.referenced.line(),
                    "levels.level",
                    format!("level {l} is out of range; valid: 1, 2, 3"),
                );
            }
            let escalate_to = match (&lv.escalate_to, &p.escalate_to) {
                (Some(e), _) => {
                    parts
                        .route_refs
                        .push((e.value.clone(), file.to_string(), e.referenced.line()));
                    e.value.clone()
                }
                (None, Some(e)) => e.value.clone(),
                (None, None) => {
                    diag.push(
                        file,
                        lv.level.referenced.line(),
                        "escalate_to",
                        format!(
                            "level {l} of policy {:?} has no escalate_to (set it on the level or the policy)",
                            p.name.value
                        ),
                    );
                    String::new()
                }
            };
            let mut steps: Vec<Step> = Vec::new();
            for s in lv.steps {
                let sline = s.name.referenced.line();
                if steps.iter().any(|x| x.name == s.name.value) {
                    diag.push(
                        file,
                        sline,
                        "steps.name",
                        format!("step {:?} appears twice in level {l}", s.name.value),
                    );
                }
                let params = s
                    .params
                    .map(|p| p.value)
                    .unwrap_or(serde_json::Value::Object(Default::default()));
                parts.action_refs.push((
                    s.action.value.clone(),
                    params.clone(),
                    file.to_string(),
                    s.action.referenced.line(),
                    s.verify.is_none().then(|| (s.name.value.clone(), sline)),
                ));
                let budget = s
                    .budget
                    .as_ref()
                    .map(|b| window(file, "steps.budget", b, diag));
                // Only evidence actions may go without `verify`; checked once executors are known.
                let verify = match &s.verify {
                    Some(v) => compile_verify(file, v, diag),
                    None => Verify::None,
                };
                let on_failure = match s.on_failure.as_ref().map(|o| (o.value.as_str(), o)) {
                    None | Some(("next", _)) => OnFailure::Next,
                    Some(("escalate", _)) => OnFailure::Escalate,
                    Some((other, o)) => {
                        diag.push(
                            file,
                            o.referenced.line(),
                            "steps.on_failure",
                            format!("unknown on_failure {other:?}; valid: next, escalate"),
                        );
                        OnFailure::Next
                    }
                };
                steps.push(Step {
                    name: s.name.value,
                    action: s.action.value,
                    params,
                    budget,
                    verify,
                    on_failure,
                });
            }
            if levels.insert(l, Ladder { steps, escalate_to }).is_some() {
                diag.push(
                    file,
                    lv.level.referenced.line(),
                    "levels.level",
                    format!("level {l} appears twice in policy {:?}", p.name.value),
                );
            }
        }
        let policy = Policy {
            name: p.name.value.clone(),
            description: p.description.unwrap_or_default(),
            mode,
            levels,
        };
        if let Some((_, first)) = parts.policies.get(&p.name.value) {
            diag.push(
                file,
                line,
                "name",
                format!("policy {:?} is already defined at {first}", p.name.value),
            );
        } else {
            parts
                .policies
                .insert(p.name.value, (policy, format!("{file}:{line}")));
        }
    }
}
