//! The incident: one per (rule, target), a pure state machine over events with `now` passed in.
//!
//! ```text
//! open(waiting `for`) ─> open(ready) ─> remediating(step) ─> verifying ─┬─> resolved
//!                             ^  held: target busy                      ├─> next step / escalated
//!                             └── suspended (paused) <── resume          └─> escalated (exhausted, refused)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::policy::gate::{Refusal, RefusalKind};
use crate::domain::policy::{Ladder, OnFailure, Policy, Step};
use crate::domain::rules::Target;
use crate::domain::signal::Labels;
use crate::domain::time::{Timestamp, fmt_duration};

/// The status the API reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for `for`, for its first step, or held.
    Open,
    /// A step is running or the next one is due.
    Remediating,
    /// Waiting for a step's verification.
    Verifying,
    /// Handed to a human.
    Escalated,
    /// Paused by a person; resumes on resume.
    Suspended,
    /// Over.
    Resolved,
}

impl Status {
    /// API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Remediating => "remediating",
            Status::Verifying => "verifying",
            Status::Escalated => "escalated",
            Status::Suspended => "suspended",
            Status::Resolved => "resolved",
        }
    }
    /// All, for metrics.
    pub const ALL: [Status; 6] = [
        Status::Open,
        Status::Remediating,
        Status::Verifying,
        Status::Escalated,
        Status::Suspended,
        Status::Resolved,
    ];
    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Where the incident is in its ladder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Firing, but `for` has not elapsed.
    Waiting {
        /// When it may act.
        until: Timestamp,
    },
    /// The next step is due.
    Ready,
    /// A step is running (claimed in the ledger).
    Running {
        /// Ladder level of the running step.
        ladder: u8,
        /// Step index.
        step: usize,
    },
    /// Waiting for the step to prove it helped.
    Verifying {
        /// Step index.
        step: usize,
        /// Verification deadline.
        until: Timestamp,
        /// Next PromQL probe (query verifications).
        #[serde(default)]
        next_probe: Option<Timestamp>,
        /// Last probe value.
        #[serde(default)]
        last: Option<f64>,
        /// Why the last probe had no data.
        #[serde(default)]
        no_data: Option<String>,
    },
    /// The query verification passed; waiting for the alerts to clear.
    Verified {
        /// Step index.
        step: usize,
        /// After this, a still-firing alert goes to a human.
        until: Timestamp,
    },
    /// Another ladder is acting on the target.
    Held {
        /// Why.
        reason: String,
    },
    /// Paused by a person.
    Suspended {
        /// Why.
        reason: String,
    },
    /// Handed to a human.
    Escalated {
        /// Why.
        reason: String,
    },
    /// Over.
    Resolved,
}

/// A firing alert that belongs to the incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Level it maps to.
    pub level: u8,
    /// When it started.
    pub starts_at: Timestamp,
    /// When it has fired for its rule's `for` (`starts_at + for`): a higher level it brings
    /// counts only from then on.
    #[serde(default)]
    pub ready_at: Option<Timestamp>,
}

/// One incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `INC-2026-0042`.
    pub id: String,
    /// Rule that opened it.
    pub rule: String,
    /// Policy it follows.
    pub policy: String,
    /// What it acts on.
    pub target: Target,
    /// Current level (the highest seen; it never drops while open).
    pub level: u8,
    /// Ladder level in use (the policy's nearest level).
    pub ladder: u8,
    /// Next step index in the ladder.
    pub next_step: usize,
    /// Labels of the signal that opened it.
    pub labels: Labels,
    /// Firing alerts by fingerprint; resolved when empty.
    pub active: BTreeMap<String, ActiveAlert>,
    /// State.
    pub phase: Phase,
    /// Routes paged (resolve notifications go to them).
    pub paged: Vec<String>,
    /// Steps started, over all ladders.
    pub steps_started: u32,
    /// The step running or being verified was started in dry-run: its failures and failed
    /// verifications count against no breaker (nothing was done).
    #[serde(default)]
    pub step_dry_run: bool,
    /// The step being verified was interrupted by a restart (its outcome unknown): a trial it
    /// held is given back, and its verification's success closes no breaker (a failure counts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub step_interrupted: bool,
    /// Since when it is stale: none of its alerts was heard of (not even re-sent) for
    /// `stale_after`. A stale incident is handed to a human and no longer counts toward the
    /// storm guard; it is never resolved silently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<Timestamp>,
    /// When opened.
    pub opened_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When resolved.
    pub resolved_at: Option<Timestamp>,
}

/// A timeline entry: what happened and the values behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When.
    pub at: Timestamp,
    /// Short kind (`opened`, `step_started`, `refused`, …).
    pub kind: String,
    /// One readable line.
    pub message: String,
    /// The values behind the decision.
    pub data: serde_json::Value,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum StepResult {
    /// The action did what it was asked (or, in dry-run, would have).
    Ok,
    /// The action failed.
    Failed {
        /// Why.
        error: String,
        /// The target refused our permissions: trying again cannot help, so the action's
        /// breaker on this target opens at once.
        #[serde(default)]
        denied: bool,
    },
    /// The process died while the step ran; it is not run again (at most once).
    Unknown,
    /// The action refused before changing anything (a precondition did not hold): the ladder
    /// goes on as after a failure, and no breaker counts it.
    NoChange {
        /// Why.
        reason: String,
    },
}

/// What a verification probe saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// The query's value (the worst series when several answer).
    Value(f64),
    /// No value: no series, NaN, Prometheus unavailable, or the query rejected.
    NoData(String),
}

/// Inputs to the machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An alert fires (new or already known).
    Fired {
        /// Alert fingerprint.
        fingerprint: String,
        /// Its start.
        starts_at: Timestamp,
        /// Level it maps to.
        level: u8,
        /// The rule's `for`.
        for_: Duration,
    },
    /// An alert resolved.
    Resolved {
        /// Alert fingerprint.
        fingerprint: String,
    },
    /// Time passed: deadlines may have expired.
    Tick,
    /// The gates passed and the ledger claim succeeded.
    StepStarted {
        /// Ladder level.
        ladder: u8,
        /// Step index.
        step: usize,
        /// What was (or would be) done.
        detail: serde_json::Value,
        /// Dry-run.
        dry_run: bool,
    },
    /// The action returned.
    StepFinished {
        /// Ladder level.
        ladder: u8,
        /// Step index.
        step: usize,
        /// Outcome.
        result: StepResult,
        /// Outcome details.
        detail: serde_json::Value,
    },
    /// A gate refused the due step.
    Refused(Refusal),
    /// A pause covering this incident was lifted.
    Resumed,
    /// None of its alerts was heard of since `heard` (not even re-sent by Alertmanager).
    Stale {
        /// When one of its alerts was last received.
        heard: Timestamp,
        /// The configured `stale_after`.
        after: Duration,
    },
    /// An alert of a stale incident was heard of again.
    Heard {
        /// When.
        at: Timestamp,
    },
    /// A verification probe returned.
    Probe {
        /// Step index being verified.
        step: usize,
        /// What it saw.
        probe: Probe,
    },
    /// A person closed the incident (API, dashboard or `remedyd resolve`).
    ResolvedByHand {
        /// Why.
        reason: String,
        /// Who.
        author: String,
    },
}

/// What the engine must do after a transition.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Append to the timeline.
    Record(Entry),
    /// Page a route (durable outbox).
    Page {
        /// Route name.
        route: String,
        /// Why.
        reason: String,
    },
    /// Tell the paged routes that the incident resolved.
    PageResolved,
    /// Count a failed remediation against the breakers of this action.
    BreakerFailure {
        /// Action kind.
        action: String,
        /// Permission denied: open the action×target breaker now, not after more failures.
        denied: bool,
    },
    /// A remediation verified: close the breakers of this action whose trial this incident holds.
    BreakerSuccess {
        /// Action kind.
        action: String,
    },
    /// The step ended with neither a counted failure nor a success (a precondition refusal, no
    /// data to verify with): give back a half-open trial this incident holds.
    BreakerRelease {
        /// Action kind.
        action: String,
    },
}

/// A transition's output.
pub type Effects = Vec<Effect>;

impl Effect {
    /// Whether it changes a breaker (the gates of the next step must see it).
    pub fn is_breaker(&self) -> bool {
        matches!(
            self,
            Effect::BreakerFailure { .. }
                | Effect::BreakerSuccess { .. }
                | Effect::BreakerRelease { .. }
        )
    }
}

impl Incident {
    /// A new incident for a firing alert; returns it with its opening effects.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        id: String,
        rule: &str,
        policy: &Policy,
        target: Target,
        labels: Labels,
        fingerprint: String,
        starts_at: Timestamp,
        level: u8,
        for_: Duration,
        now: Timestamp,
    ) -> (Self, Effects) {
        let ladder = policy.ladder(level).map(|(l, _)| l).unwrap_or(level);
        let mut inc = Incident {
            id,
            rule: rule.to_string(),
            policy: policy.name.clone(),
            target,
            level,
            ladder,
            next_step: 0,
            labels,
            active: BTreeMap::new(),
            phase: Phase::Ready,
            paged: Vec::new(),
            steps_started: 0,
            step_dry_run: false,
            step_interrupted: false,
            stale_since: None,
            opened_at: now,
            updated_at: now,
            resolved_at: None,
        };
        inc.active.insert(
            fingerprint.clone(),
            ActiveAlert {
                level,
                starts_at,
                ready_at: Some(starts_at.plus(for_)),
            },
        );
        let mut fx = vec![record(
            now,
            "opened",
            format!(
                "opened by rule {rule} at level {level} on {} (policy {}, ladder level {ladder})",
                inc.target.key(),
                policy.name
            ),
            serde_json::json!({"fingerprint": fingerprint, "starts_at": starts_at, "level": level, "labels": inc.labels}),
        )];
        let until = starts_at.plus(for_);
        if !for_.is_zero() && until > now {
            inc.phase = Phase::Waiting { until };
            fx.push(record(
                now,
                "waiting",
                format!(
                    "waiting until {until} (for {}) before acting",
                    fmt_duration(for_)
                ),
                serde_json::json!({"until": until, "for": fmt_duration(for_)}),
            ));
        } else {
            inc.ready(policy, now, &mut fx);
        }
        (inc, fx)
    }

    /// The step being verified cannot close a breaker: it was a dry run, or its outcome is
    /// unknown (interrupted by a restart).
    fn step_uncounted(&self) -> bool {
        self.step_dry_run || self.step_interrupted
    }

    /// The status the API reports.
    pub fn status(&self) -> Status {
        match &self.phase {
            Phase::Waiting { .. } | Phase::Held { .. } => Status::Open,
            Phase::Ready if self.steps_started == 0 => Status::Open,
            Phase::Ready | Phase::Running { .. } => Status::Remediating,
            Phase::Verifying { .. } | Phase::Verified { .. } => Status::Verifying,
            Phase::Suspended { .. } => Status::Suspended,
            Phase::Escalated { .. } => Status::Escalated,
            Phase::Resolved => Status::Resolved,
        }
    }

    /// Whether the incident is over.
    pub fn is_resolved(&self) -> bool {
        self.phase == Phase::Resolved
    }

    /// Whether its ladder is acting on the target right now (running or verifying a step).
    pub fn is_acting(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running { .. } | Phase::Verifying { .. } | Phase::Verified { .. }
        )
    }

    /// A PromQL probe due now, with the query template, if the incident is verifying one.
    pub fn probe_due<'p>(&self, policy: &'p Policy, now: Timestamp) -> Option<(usize, &'p Step)> {
        let Phase::Verifying {
            step,
            next_probe: Some(at),
            ..
        } = self.phase
        else {
            return None;
        };
        if at > now {
            return None;
        }
        self.ladder_of(policy)?.steps.get(step).map(|s| (step, s))
    }

    /// The next deadline, for the engine's timer.
    pub fn deadline(&self) -> Option<Timestamp> {
        let phase = self.phase_deadline();
        match self.pending_upgrade() {
            Some(at) => Some(phase.map_or(at, |p| p.min(at))),
            None => phase,
        }
    }

    /// When the first alert of a level above the current one has fired for its `for`.
    fn pending_upgrade(&self) -> Option<Timestamp> {
        self.active
            .values()
            .filter(|a| a.level > self.level)
            .map(|a| a.ready_at.unwrap_or(a.starts_at))
            .min()
    }

    /// The highest level whose alert has fired for its `for` by `now`, if above the current one.
    fn upgrade_due(&self, now: Timestamp) -> Option<(u8, String)> {
        self.active
            .iter()
            .filter(|(_, a)| a.level > self.level && a.ready_at.unwrap_or(a.starts_at) <= now)
            .max_by_key(|(_, a)| a.level)
            .map(|(fp, a)| (a.level, fp.clone()))
    }

    /// The deadline of the phase alone.
    fn phase_deadline(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::Waiting { until } | Phase::Verified { until, .. } => Some(until),
            Phase::Verifying {
                until, next_probe, ..
            } => Some(next_probe.map_or(until, |p| p.min(until))),
            _ => None,
        }
    }

    /// The step due now (phase ready or held), from the policy's ladder.
    pub fn due_step<'p>(&self, policy: &'p Policy) -> Option<(u8, usize, &'p Step)> {
        if !matches!(self.phase, Phase::Ready | Phase::Held { .. }) {
            return None;
        }
        // An alert of a level with another ladder is waiting out its `for`: starting this
        // ladder's next step now would only be superseded by then. It starts when the
        // higher alert either matures (and its ladder runs) or resolves.
        if self.active.values().any(|a| {
            a.level > self.level
                && policy.ladder(a.level).map(|(l, _)| l).unwrap_or(a.level) != self.ladder
        }) {
            return None;
        }
        let ladder = policy.levels.get(&self.ladder)?;
        ladder
            .steps
            .get(self.next_step)
            .map(|s| (self.ladder, self.next_step, s))
    }

    fn ladder_of<'p>(&self, policy: &'p Policy) -> Option<&'p Ladder> {
        policy.levels.get(&self.ladder)
    }

    /// Enters `Ready`, escalating at once if the ladder has no step left.
    fn ready(&mut self, policy: &Policy, now: Timestamp, fx: &mut Effects) {
        let len = self.ladder_of(policy).map_or(0, |l| l.steps.len());
        if self.next_step >= len {
            let reason = if len == 0 {
                format!(
                    "level {} ladder of policy {} has no automated steps",
                    self.ladder, policy.name
                )
            } else {
                format!("ladder exhausted after {len} step(s); alert still firing")
            };
            self.escalate(policy, reason, now, fx);
        } else {
            self.phase = Phase::Ready;
        }
    }

    fn escalate(&mut self, policy: &Policy, reason: String, now: Timestamp, fx: &mut Effects) {
        let route = self
            .ladder_of(policy)
            .map(|l| l.escalate_to.clone())
            .unwrap_or_default();
        fx.push(record(
            now,
            "escalated",
            format!("escalated to {route}: {reason}"),
            serde_json::json!({"route": route, "reason": reason}),
        ));
        self.phase = Phase::Escalated {
            reason: reason.clone(),
        };
        // One trigger per route per incident: a route that already has this incident (paged
        // when a pause suspended it, or by an earlier ladder) learns the rest from the timeline
        // and the resolve, instead of a second page for the same incident.
        if !self.paged.contains(&route) {
            self.paged.push(route.clone());
            fx.push(Effect::Page { route, reason });
        }
    }

    fn after_failure(
        &mut self,
        policy: &Policy,
        step: usize,
        why: String,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let Some(s) = self.ladder_of(policy).and_then(|l| l.steps.get(step)) else {
            return self.ready(policy, now, fx);
        };
        match s.on_failure {
            OnFailure::Next => {
                self.next_step = step + 1;
                self.ready(policy, now, fx);
            }
            OnFailure::Escalate => {
                self.escalate(policy, format!("step {} failed: {why}", s.name), now, fx)
            }
        }
    }

    /// Raises the level to `level` (an alert at it has fired for its `for`): a different ladder
    /// supersedes pending steps; a running step finishes first and is recorded.
    fn upgrade(
        &mut self,
        level: u8,
        fingerprint: &str,
        policy: &Policy,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let from = self.level;
        self.level = level;
        let ladder = policy.ladder(level).map(|(l, _)| l).unwrap_or(level);
        fx.push(record(
            now,
            "superseded",
            format!("level {from} → {level}: the level {ladder} ladder supersedes pending steps"),
            serde_json::json!({"from": from, "to": level, "fingerprint": fingerprint}),
        ));
        if ladder == self.ladder {
            return;
        }
        self.ladder = ladder;
        self.next_step = 0;
        match self.phase {
            // The running step finishes and is recorded; the new ladder follows it.
            Phase::Running { .. } => {}
            Phase::Suspended { .. } => {}
            // The higher alert has fired for its `for`: the new ladder may act now.
            _ => self.ready(policy, now, fx),
        }
    }

    /// Applies one event at `now`; returns the effects to carry out.
    pub fn apply(&mut self, event: Event, policy: &Policy, now: Timestamp) -> Effects {
        let mut fx = Vec::new();
        if self.is_resolved() {
            // Only late step results are still worth recording, and a remediation that failed
            // still failed: the breakers count it even though the alerts resolved meanwhile.
            if let Event::StepFinished {
                ladder,
                step,
                result,
                detail,
            } = event
            {
                if let StepResult::Failed { denied, .. } = &result
                    && !self.step_dry_run
                    && let Some(s) = policy
                        .levels
                        .get(&ladder)
                        .and_then(|l| l.steps.get(step))
                        .filter(|s| s.verify != crate::domain::policy::Verify::None)
                {
                    fx.push(Effect::BreakerFailure {
                        action: s.action.clone(),
                        denied: *denied,
                    });
                }
                fx.push(record(
                    now,
                    "step_finished",
                    format!("step {step} finished after resolve: {result:?}"),
                    detail,
                ));
            }
            return fx;
        }
        match event {
            Event::Fired {
                fingerprint,
                starts_at,
                level,
                for_,
            } => {
                let new = !self.active.contains_key(&fingerprint);
                // A re-sent alert keeps its first start: nothing changes, nothing is written.
                let alert = self
                    .active
                    .entry(fingerprint.clone())
                    .or_insert(ActiveAlert {
                        level,
                        starts_at,
                        ready_at: Some(starts_at.plus(for_)),
                    });
                alert.level = level;
                let ready_at = alert.ready_at.unwrap_or(alert.starts_at);
                if level > self.level && ready_at > now {
                    // The rule's `for` holds for a higher level too: one noisy sample must not
                    // start the level-2 ladder. The upgrade comes on the tick at `ready_at`.
                    if new {
                        fx.push(record(now, "upgrade_pending", format!("alert {fingerprint} at level {level}: the level changes if it still fires at {ready_at}"), serde_json::json!({"fingerprint": fingerprint, "level": level, "until": ready_at})));
                    }
                } else if level > self.level {
                    self.upgrade(level, &fingerprint, policy, now, &mut fx);
                } else if new {
                    fx.push(record(
                        now,
                        "alert_joined",
                        format!(
                            "alert {fingerprint} (level {level}) joined; {} firing",
                            self.active.len()
                        ),
                        serde_json::json!({"fingerprint": fingerprint, "level": level}),
                    ));
                }
            }
            Event::Resolved { fingerprint } => {
                if self.active.remove(&fingerprint).is_none() {
                    return fx;
                }
                if !self.active.is_empty() {
                    fx.push(record(
                        now,
                        "alert_resolved",
                        format!(
                            "alert {fingerprint} resolved; {} still firing",
                            self.active.len()
                        ),
                        serde_json::json!({"fingerprint": fingerprint}),
                    ));
                    return fx;
                }
                let (kind, msg) = match &self.phase {
                    Phase::Verifying { step, .. } => {
                        let name = self
                            .ladder_of(policy)
                            .and_then(|l| l.steps.get(*step))
                            .map(|s| s.name.clone())
                            .unwrap_or_default();
                        if let Some(s) = self
                            .ladder_of(policy)
                            .and_then(|l| l.steps.get(*step))
                            .filter(|_| !self.step_uncounted())
                        {
                            fx.push(Effect::BreakerSuccess {
                                action: s.action.clone(),
                            });
                        }
                        (
                            "verified",
                            format!(
                                "verification passed: alerts resolved after step {name}; incident resolved"
                            ),
                        )
                    }
                    Phase::Ready | Phase::Waiting { .. } | Phase::Held { .. } => (
                        "resolved",
                        "alerts resolved; pending steps cancelled, incident resolved".to_string(),
                    ),
                    Phase::Running { step, .. } => (
                        "resolved",
                        format!(
                            "alerts resolved while step {step} was running; nothing further will run"
                        ),
                    ),
                    Phase::Escalated { .. } | Phase::Suspended { .. } => {
                        ("resolved", "alerts resolved; incident resolved".to_string())
                    }
                    Phase::Verified { .. } => (
                        "resolved",
                        "alerts resolved after the verified step; incident resolved".to_string(),
                    ),
                    Phase::Resolved => unreachable!("handled above"),
                };
                fx.push(record(
                    now,
                    kind,
                    msg,
                    serde_json::json!({"fingerprint": fingerprint}),
                ));
                self.phase = Phase::Resolved;
                self.resolved_at = Some(now);
                if !self.paged.is_empty() {
                    fx.push(Effect::PageResolved);
                }
            }
            Event::Tick if self.upgrade_due(now).is_some() => {
                if let Some((level, fingerprint)) = self.upgrade_due(now) {
                    self.upgrade(level, &fingerprint, policy, now, &mut fx);
                }
                // Deadlines of the (possibly new) phase are looked at on the next tick.
            }
            Event::Tick => match self.phase.clone() {
                Phase::Waiting { until } if now >= until => {
                    fx.push(record(
                        now,
                        "for_elapsed",
                        format!("still firing at {until}; acting"),
                        serde_json::json!({"until": until}),
                    ));
                    self.ready(policy, now, &mut fx);
                }
                Phase::Verifying {
                    step,
                    until,
                    last,
                    no_data,
                    ..
                } if now >= until => {
                    let s = self
                        .ladder_of(policy)
                        .and_then(|l| l.steps.get(step))
                        .cloned();
                    let (name, action, verify) = s
                        .as_ref()
                        .map(|s| (s.name.clone(), s.action.clone(), s.verify.clone()))
                        .unwrap_or((
                            String::new(),
                            String::new(),
                            crate::domain::policy::Verify::ResolvedWithin(Duration::ZERO),
                        ));
                    let within = fmt_duration(verify.timeout());
                    match &verify {
                        crate::domain::policy::Verify::Query {
                            no_data: policy_no_data,
                            ..
                        } if no_data.is_some() || last.is_none() => {
                            let reason =
                                no_data.unwrap_or_else(|| "no probe returned a value".into());
                            let why = format!(
                                "verification of step {name} had no data within {within}: {reason}"
                            );
                            fx.push(record(now, "verification_no_data", why.clone(), serde_json::json!({"step": name, "within": within, "reason": reason})));
                            fx.push(Effect::BreakerRelease { action });
                            match policy_no_data {
                                crate::domain::policy::NoData::Escalate => {
                                    self.escalate(policy, why, now, &mut fx)
                                }
                                crate::domain::policy::NoData::Fail => {
                                    self.after_failure(policy, step, why, now, &mut fx)
                                }
                            }
                        }
                        _ => {
                            let why = match (&verify, last) {
                                (crate::domain::policy::Verify::Query { .. }, Some(v)) => format!(
                                    "value {v} still not {} {within} after step {name}",
                                    verify.condition()
                                ),
                                _ => format!("alerts still firing {within} after step {name}"),
                            };
                            fx.push(record(now, "verification_failed", format!("verification failed: {why}"), serde_json::json!({"step": name, "within": within, "last": last, "condition": verify.condition(), "firing": self.active.keys().collect::<Vec<_>>()})));
                            if !self.step_dry_run {
                                fx.push(Effect::BreakerFailure {
                                    action,
                                    denied: false,
                                });
                            }
                            self.after_failure(policy, step, why, now, &mut fx);
                        }
                    }
                }
                Phase::Verified { step, until } if now >= until => {
                    let name = self
                        .ladder_of(policy)
                        .and_then(|l| l.steps.get(step))
                        .map(|s| s.name.clone())
                        .unwrap_or_default();
                    let why = format!(
                        "verification of step {name} passed, but the alert is still firing at {until}"
                    );
                    self.escalate(policy, why, now, &mut fx);
                }
                _ => {}
            },
            Event::StepStarted {
                ladder,
                step,
                detail,
                dry_run,
            } => {
                let name = policy
                    .levels
                    .get(&ladder)
                    .and_then(|l| l.steps.get(step))
                    .map(|s| (s.name.clone(), s.action.clone()))
                    .unwrap_or_default();
                let mode = if dry_run {
                    " (dry-run: recorded, not sent)"
                } else {
                    ""
                };
                fx.push(record(
                    now,
                    "step_started",
                    format!("step {} ({}) started{mode}", name.0, name.1),
                    detail,
                ));
                self.steps_started += 1;
                self.step_dry_run = dry_run;
                self.step_interrupted = false;
                self.phase = Phase::Running { ladder, step };
            }
            Event::StepFinished {
                ladder,
                step,
                result,
                detail,
            } => {
                let s = policy
                    .levels
                    .get(&ladder)
                    .and_then(|l| l.steps.get(step))
                    .cloned();
                let name = s.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                let current =
                    self.phase == Phase::Running { ladder, step } && ladder == self.ladder;
                let verify = s.as_ref().map(|s| s.verify.timeout()).unwrap_or_default();
                match &result {
                    StepResult::Ok => fx.push(record(
                        now,
                        "step_ok",
                        format!("step {name} succeeded"),
                        detail,
                    )),
                    StepResult::Failed { error, denied } => {
                        fx.push(record(
                            now,
                            "step_failed",
                            format!("step {name} failed: {error}"),
                            detail,
                        ));
                        // Evidence that could not be gathered is no failed remediation, and a
                        // dry run did nothing that could fail.
                        if let Some(s) = s
                            .as_ref()
                            .filter(|s| s.verify != crate::domain::policy::Verify::None)
                            && !self.step_dry_run
                        {
                            fx.push(Effect::BreakerFailure {
                                action: s.action.clone(),
                                denied: *denied,
                            });
                        }
                    }
                    StepResult::NoChange { reason } => {
                        fx.push(record(
                            now,
                            "step_refused",
                            format!("step {name} changed nothing: {reason}"),
                            detail,
                        ));
                        if let Some(s) = s.as_ref() {
                            fx.push(Effect::BreakerRelease {
                                action: s.action.clone(),
                            });
                        }
                    }
                    StepResult::Unknown => {
                        fx.push(record(now, "step_interrupted", format!("step {name} was interrupted by a restart; its outcome is unknown and it is not run again"), detail));
                        self.step_interrupted = true;
                        if let Some(s) = s.as_ref() {
                            fx.push(Effect::BreakerRelease {
                                action: s.action.clone(),
                            });
                        }
                    }
                }
                if !current {
                    // Superseded by a higher level while running: continue on the new ladder.
                    if matches!(self.phase, Phase::Running { .. }) {
                        self.ready(policy, now, &mut fx);
                    }
                    return fx;
                }
                match result {
                    StepResult::Ok | StepResult::Unknown
                        if s.as_ref()
                            .is_some_and(|s| s.verify == crate::domain::policy::Verify::None) =>
                    {
                        // Evidence changes nothing: the ladder goes on at once.
                        self.next_step = step + 1;
                        self.ready(policy, now, &mut fx);
                    }
                    StepResult::Ok | StepResult::Unknown => {
                        let until = now.plus(verify);
                        let (cond, next_probe) = match s.as_ref().map(|s| &s.verify) {
                            Some(v @ crate::domain::policy::Verify::Query { every, query, .. }) => {
                                (
                                    format!("{query} {} by {until}", v.condition()),
                                    Some(now.plus(*every).min(until)),
                                )
                            }
                            _ => (format!("alerts must resolve by {until}"), None),
                        };
                        fx.push(record(
                            now,
                            "verifying",
                            format!("verifying: {cond} ({})", fmt_duration(verify)),
                            serde_json::json!({"until": until}),
                        ));
                        self.phase = Phase::Verifying {
                            step,
                            until,
                            next_probe,
                            last: None,
                            no_data: None,
                        };
                    }
                    StepResult::Failed { error, .. } => {
                        self.after_failure(policy, step, error, now, &mut fx)
                    }
                    StepResult::NoChange { reason } => {
                        self.after_failure(policy, step, reason, now, &mut fx)
                    }
                }
            }
            Event::Refused(Refusal { kind, reason }) => match kind {
                RefusalKind::Busy => {
                    if self.phase
                        != (Phase::Held {
                            reason: reason.clone(),
                        })
                    {
                        fx.push(record(
                            now,
                            "held",
                            reason.clone(),
                            serde_json::json!({"kind": kind}),
                        ));
                        self.phase = Phase::Held { reason };
                    }
                }
                RefusalKind::Paused => {
                    fx.push(record(
                        now,
                        "suspended",
                        reason.clone(),
                        serde_json::json!({"kind": kind}),
                    ));
                    let route = self
                        .ladder_of(policy)
                        .map(|l| l.escalate_to.clone())
                        .unwrap_or_default();
                    self.phase = Phase::Suspended {
                        reason: reason.clone(),
                    };
                    // One trigger per route per incident (see `escalate`).
                    if !self.paged.contains(&route) {
                        self.paged.push(route.clone());
                        fx.push(Effect::Page { route, reason });
                    }
                }
                RefusalKind::Storm => {
                    // The storm page covers every incident at once; no page per incident.
                    fx.push(record(
                        now,
                        "escalated",
                        format!("escalated: {reason}"),
                        serde_json::json!({"kind": kind}),
                    ));
                    self.phase = Phase::Escalated { reason };
                }
                RefusalKind::Breaker | RefusalKind::Budget | RefusalKind::Namespace => {
                    fx.push(record(
                        now,
                        "refused",
                        reason.clone(),
                        serde_json::json!({"kind": kind}),
                    ));
                    self.escalate(policy, reason, now, &mut fx);
                }
            },
            Event::Probe { step, probe } => {
                let Phase::Verifying {
                    step: vs, until, ..
                } = self.phase.clone()
                else {
                    return fx;
                };
                if vs != step {
                    return fx;
                }
                let Some(s) = self
                    .ladder_of(policy)
                    .and_then(|l| l.steps.get(step))
                    .cloned()
                else {
                    return fx;
                };
                let crate::domain::policy::Verify::Query { every, within, .. } = &s.verify else {
                    return fx;
                };
                let next_probe = Some(now.plus(*every))
                    .filter(|p| *p < until)
                    .or(Some(until));
                match probe {
                    Probe::Value(v) if s.verify.passes(v) => {
                        fx.push(record(
                            now,
                            "verified",
                            format!(
                                "verification passed: value {v} {} after step {}",
                                s.verify.condition(),
                                s.name
                            ),
                            serde_json::json!({"value": v, "condition": s.verify.condition()}),
                        ));
                        if !self.step_uncounted() {
                            fx.push(Effect::BreakerSuccess {
                                action: s.action.clone(),
                            });
                        }
                        self.phase = Phase::Verified {
                            step,
                            until: now.plus(*within),
                        };
                    }
                    Probe::Value(v) => {
                        fx.push(record(
                            now,
                            "probe",
                            format!("probe: value {v}, needs {}", s.verify.condition()),
                            serde_json::json!({"value": v, "condition": s.verify.condition()}),
                        ));
                        self.phase = Phase::Verifying {
                            step,
                            until,
                            next_probe,
                            last: Some(v),
                            no_data: None,
                        };
                    }
                    Probe::NoData(reason) => {
                        fx.push(record(
                            now,
                            "probe_no_data",
                            format!("probe: no data ({reason})"),
                            serde_json::json!({"reason": reason}),
                        ));
                        let last = match self.phase {
                            Phase::Verifying { last, .. } => last,
                            _ => None,
                        };
                        self.phase = Phase::Verifying {
                            step,
                            until,
                            next_probe,
                            last,
                            no_data: Some(reason),
                        };
                    }
                }
            }
            Event::Stale { heard, after } => {
                // A running step finishes first; its result is recorded, then this comes again.
                if self.stale_since.is_some() || matches!(self.phase, Phase::Running { .. }) {
                    return fx;
                }
                self.stale_since = Some(now);
                let why = format!(
                    "stale: none of its alerts heard of since {heard} (stale_after {}); Alertmanager re-sends firing alerts every repeat_interval, so it may have resolved unseen or lost its alerts",
                    fmt_duration(after)
                );
                fx.push(record(
                    now,
                    "stale",
                    why.clone(),
                    serde_json::json!({"heard": heard, "stale_after": fmt_duration(after)}),
                ));
                let route = self
                    .ladder_of(policy)
                    .map(|l| l.escalate_to.clone())
                    .unwrap_or_default();
                if !matches!(
                    self.phase,
                    Phase::Escalated { .. } | Phase::Suspended { .. }
                ) {
                    self.phase = Phase::Escalated {
                        reason: why.clone(),
                    };
                }
                // Paged once: a route that already has this incident's trigger is not paged again.
                if !self.paged.contains(&route) {
                    self.paged.push(route.clone());
                    fx.push(Effect::Page { route, reason: why });
                }
            }
            Event::Heard { at } => {
                if self.stale_since.take().is_some() {
                    fx.push(record(
                        now,
                        "heard_again",
                        format!("an alert was heard of again at {at}; no longer stale (a human still owns it)"),
                        serde_json::json!({"at": at}),
                    ));
                }
            }
            Event::Resumed => {
                if let Phase::Suspended { .. } = self.phase {
                    fx.push(record(
                        now,
                        "resumed",
                        "automation resumed; the ladder continues",
                        serde_json::Value::Null,
                    ));
                    self.ready(policy, now, &mut fx);
                }
            }
            Event::ResolvedByHand { reason, author } => {
                self.resolve_by_hand(reason, author, now, &mut fx)
            }
        }
        if !fx.is_empty() {
            self.updated_at = now;
        }
        fx
    }
}

// === impl Incident: resolved by hand ===

impl Incident {
    /// Closes the incident for a person, from any open phase: pending steps are cancelled, a
    /// running step's result is still recorded when it comes (nothing further runs), and every
    /// paged route gets its resolve. Alerts still firing stay listed; their re-sends are
    /// duplicates, so only a new firing opens a new incident.
    fn resolve_by_hand(
        &mut self,
        reason: String,
        author: String,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let firing = self.active.len();
        let mut message = format!("resolved by hand by {author}: {reason}");
        if let Phase::Running { step, .. } = self.phase {
            message.push_str(&format!(
                " (step {} was running: its result is recorded, nothing further runs)",
                step + 1
            ));
        }
        if firing > 0 {
            message.push_str(&format!("; {firing} alert(s) still firing"));
        }
        fx.push(record(
            now,
            "resolved_by_hand",
            message,
            serde_json::json!({
                "author": author,
                "reason": reason,
                "status_before": self.status().as_str(),
                "firing": self.active.keys().collect::<Vec<_>>(),
            }),
        ));
        self.phase = Phase::Resolved;
        self.resolved_at = Some(now);
        if !self.paged.is_empty() {
            fx.push(Effect::PageResolved);
        }
    }
}

fn record(
    at: Timestamp,
    kind: &str,
    message: impl Into<String>,
    data: serde_json::Value,
) -> Effect {
    Effect::Record(Entry {
        at,
        kind: kind.to_string(),
        message: message.into(),
        data,
    })
}

#[cfg(test)]
mod tests;
