//! Policies: per-level ladders of steps, routes to humans, and the limits that guard them.
//!
//! This file holds the compiled policy types (a [`Policy`] of [`Ladder`]s of [`Step`]s, each with
//! its [`Verify`]) and what policy files contribute ([`PolicyParts`]). Beside it:
//! - `raw`: the files as written ([`RawPolicyFile`]);
//! - `compile`: raw → compiled, one function per section ([`compile()`]);
//! - `limits`: budget windows, breaker settings, the storm guard ([`Limits`]);
//! - `route`: human routes, their transports and secrets ([`Route`]);
//! - `silence`: the Alertmanager silences a policy opts in to ([`SilencePolicy`]);
//! - `budget`, `breaker`, `gate`: the pure decisions those limits drive;
//! - `maintenance`: maintenance windows, when they are open and what they cover.

pub mod breaker;
pub mod budget;
mod compile;
pub mod gate;
mod limits;
pub mod maintenance;
mod raw;
mod route;
mod silence;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use compile::{SecretSource, compile};
pub use limits::{BreakerConfig, Limits, StormGuard, Window};
pub use raw::RawPolicyFile;
pub use route::{OPSGENIE_URL, PAGERDUTY_URL, Route, RouteKind, SLACK_API_URL, Secret, Transport};
pub use silence::{DEFAULT_SILENCE_FOR, DEFAULT_SILENCE_MAX, HumanSilences, SilencePolicy};

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

/// What a policy does with a Deployment a GitOps reconciler (Argo CD, Flux) owns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GitOps {
    /// Refuse the step before any write and page: the fix belongs in git, and a change made
    /// behind the reconciler's back is reverted or becomes drift.
    #[default]
    Refuse,
    /// Act; a change the reconciler puts back fails the step and opens its breaker.
    Allow,
}

impl GitOps {
    /// Parses `refuse` or `allow`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "refuse" => Ok(Self::Refuse),
            "allow" => Ok(Self::Allow),
            other => Err(format!("unknown gitops {other:?}; valid: refuse, allow")),
        }
    }
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Allow => "allow",
        }
    }
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
    /// An HTTP health check passes `successes` times in a row within this time, probed every
    /// `every` (the runbook's `curl …/health`). The URL's host and port must be in `probe_allow`.
    Http {
        /// URL, templated like action parameters.
        url: String,
        /// The status that counts as healthy; `None`: any 2xx.
        status: Option<u16>,
        /// Text the body must contain, if any.
        body_contains: Option<String>,
        /// Consecutive successes needed.
        successes: u32,
        /// Deadline.
        #[serde(with = "crate::domain::time::duration_str")]
        within: Duration,
        /// Probe interval.
        #[serde(with = "crate::domain::time::duration_str")]
        every: Duration,
        /// One probe's timeout.
        #[serde(with = "crate::domain::time::duration_str")]
        timeout: Duration,
    },
}

impl Verify {
    /// How long verification may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Verify::None => Duration::ZERO,
            Verify::ResolvedWithin(d) => *d,
            Verify::Query { within, .. } | Verify::Http { within, .. } => *within,
        }
    }

    /// How often a probed verification (query, http) probes; `None` for the others.
    pub fn every(&self) -> Option<Duration> {
        match self {
            Verify::Query { every, .. } | Verify::Http { every, .. } => Some(*every),
            Verify::None | Verify::ResolvedWithin(_) => None,
        }
    }

    /// Whether a value passes (always false for `resolved_within`).
    pub fn passes(&self, v: f64) -> bool {
        match self {
            Verify::None | Verify::ResolvedWithin(_) | Verify::Http { .. } => false,
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
            Verify::Http {
                status,
                body_contains,
                successes,
                ..
            } => {
                let status = status.map_or("2xx".to_string(), |s| s.to_string());
                let body = body_contains
                    .as_ref()
                    .map_or(String::new(), |b| format!(" with {b:?} in the body"));
                format!("{status}{body} {successes} time(s) in a row")
            }
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
    /// People must approve the step before it runs (`approve:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve: Option<Approve>,
}

/// A step's `approve:`: who may approve it, how many must, and what happens without a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approve {
    /// Who may decide: names (API, dashboard) or Slack user ids or usernames.
    pub approvers: Vec<String>,
    /// Two different approvers must approve (one deny is enough to refuse).
    pub two_person: bool,
    /// How long the step waits for a decision.
    #[serde(with = "crate::domain::time::duration_str")]
    pub timeout: Duration,
    /// What happens when nobody decided in time.
    pub on_timeout: OnTimeout,
    /// Routes the request goes to (Slack routes get Approve/Deny buttons).
    pub notify: Vec<String>,
}

/// What an approval that timed out leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Hand the incident to the ladder's route (default).
    Escalate,
    /// Skip the step; the ladder goes on with the next one.
    Skip,
}

impl OnTimeout {
    /// Config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Escalate => "escalate",
            Self::Skip => "skip",
        }
    }
}

impl Approve {
    /// Approvals needed.
    pub fn required(&self) -> u32 {
        if self.two_person { 2 } else { 1 }
    }
}

/// The shortest `approve.timeout`: a person needs time to read the request.
pub const MIN_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `approve.timeout` (24h, as its error message says): an incident waiting longer
/// than a day needs a page, not a step.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The default `approve.timeout`.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

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
    /// How often the routes paged hear how an open incident stands (`update_every`, default
    /// [`DEFAULT_UPDATE_EVERY`]); `None` when updates are off (`0` or `off`).
    pub update_every: Option<Duration>,
    /// Alertmanager silences while the ladder acts (`silence:`), when the policy opts in.
    pub silence: Option<SilencePolicy>,
    /// A Deployment owned by Argo CD or Flux: refuse (the default) or act (`gitops:`).
    pub gitops: GitOps,
    /// How long a step found someone else's rollout in progress is held, re-checked every
    /// [`HOLD_RECHECK`], before the incident escalates (`rollout_hold`, default
    /// [`DEFAULT_ROLLOUT_HOLD`]; `0` escalates at the first hold).
    pub rollout_hold: Duration,
}

/// 10 minutes: `progressDeadlineSeconds` defaults to 600, so a rollout still going after that
/// long has failed by the API server's own measure (and is no longer "in progress").
pub const DEFAULT_ROLLOUT_HOLD: Duration = Duration::from_secs(10 * 60);
/// The longest `rollout_hold`: a day, as the longest approval timeout; a hold is not a pause.
pub const MAX_ROLLOUT_HOLD: Duration = Duration::from_secs(24 * 3600);
/// How often a held step is tried again (one GET of the Deployment each time): a small
/// Deployment rolls out in tens of seconds, so 15 s starts the step soon after, and 40 reads of
/// one object in the default 10 minutes cost the API server nothing worth counting.
pub const HOLD_RECHECK: Duration = Duration::from_secs(15);

/// The runbook's promise: updates every 15 minutes while an escalated incident is open.
pub const DEFAULT_UPDATE_EVERY: Duration = Duration::from_secs(15 * 60);

impl Policy {
    /// A policy of these ladders and every other field at its default: what the engine holds
    /// in place of a policy a reload removed, and what tests build theirs from.
    pub fn with_levels(name: &str, levels: BTreeMap<u8, Ladder>) -> Self {
        Policy {
            name: name.into(),
            description: String::new(),
            mode: None,
            levels,
            update_every: None,
            silence: None,
            gitops: Default::default(),
            rollout_hold: DEFAULT_ROLLOUT_HOLD,
        }
    }

    /// The ladder for a level: that level's, else the nearest lower one, else the lowest.
    pub fn ladder(&self, level: u8) -> Option<(u8, &Ladder)> {
        self.levels
            .range(..=level)
            .next_back()
            .or_else(|| self.levels.iter().next())
            .map(|(l, ladder)| (*l, ladder))
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
    /// Routes named by steps' `approve.notify`, with file and line: they must exist and take
    /// a message without paging (webhook, slack).
    pub notify_refs: Vec<(String, String, u64)>,
    /// Actions referenced, for the cross-check against the executors.
    pub action_refs: Vec<ActionRef>,
    /// The daily digest, if a file set one, with its file and line.
    pub digest: Option<(DigestSchedule, String, u64)>,
    /// Maintenance windows, with file:line.
    pub maintenance: Vec<(maintenance::Maintenance, String)>,
}
