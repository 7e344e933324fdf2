//! The incident: one per (rule, target), a pure state machine over events with `now` passed in.
//!
//! ```text
//! open(waiting `for`) ─> open(ready) ─> remediating(step) ─> verifying ─┬─> resolved
//!                             ^  held: target busy                      ├─> next step / escalated
//!                             └── suspended (paused) <── resume          └─> escalated (exhausted, refused)
//! ```
//!
//! This file holds the state ([`Incident`], [`Phase`], [`Status`]), the machine's inputs
//! ([`Event`]) and outputs ([`Effect`]), and the small read-only questions the engine asks
//! (status, deadline, due step, due probe). The transitions live beside it:
//! - `entry`: the timeline [`Entry`] and its constructor;
//! - `machine`: [`Incident::open`] and [`Incident::apply`], one method per [`Event`] variant;
//! - `step`: a step's life: started, finished, verified by probe or by its deadline;
//! - `ladder`: the moves shared by both: ready, escalate, after a failure, upgrade;
//! - `approval`: a step waiting for people (`approve:`): requested, decided, timed out;
//! - `hold`: a step held before any change (someone else's rollout), re-tried until its bound;
//! - `watch`: a verified step's change read back, to notice a GitOps reconciler's revert;
//! - `status`: the one-word status the API reports;
//! - `silence`: when its Alertmanager silences are created, renewed and expired.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::policy::gate::Refusal;
use crate::domain::policy::{Ladder, Policy, Step};
use crate::domain::rules::Target;
use crate::domain::signal::Labels;
use crate::domain::time::Timestamp;

mod alert;
mod approval;
mod entry;
mod escalation;
mod hold;
mod ladder;
mod machine;
mod silence;
mod status;
mod step;
mod update;
mod watch;

pub use alert::ActiveAlert;
pub use entry::{Entry, EntryKind, OtherKind};
pub use escalation::EscalationReason;
pub use hold::StepHold;
pub use silence::{HumanSilence, SILENCE_RETRY, SilenceOp, SilenceRef, SilenceState};
pub use status::Status;
pub use update::UpdateSchedule;
pub use watch::{REVERT_CHECK_EVERY, RevertWatch};

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
    /// The next step waits for people to approve it (`approve:`); the engine reads their
    /// decisions from the store and applies the step's `on_timeout` at `until`.
    AwaitingApproval {
        /// Ladder level of the step.
        ladder: u8,
        /// Step index.
        step: usize,
        /// Decisions at or after this are refused.
        until: Timestamp,
    },
    /// The step was held before it changed anything (someone else's rollout is in progress,
    /// [`Incident::hold`]): it is tried again at `next_check`. Its ledger claim was released.
    StepHeld {
        /// Ladder level of the held step.
        ladder: u8,
        /// Step index.
        step: usize,
        /// When it is tried again.
        next_check: Timestamp,
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
    /// Labels of the signal that opened it. Shared: they never change, and the engine copies
    /// an incident each time a signal touches it.
    pub labels: std::sync::Arc<Labels>,
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
    /// Updates to the routes paged while it is open (policy `update_every`): set when it is
    /// first paged, advanced in the commit that enqueues each update, cleared on resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<UpdateSchedule>,
    /// The step (ladder, index) people approved: it starts without asking again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<(u8, usize)>,
    /// The hold of its due step (someone else's rollout), kept while the step is re-tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<StepHold>,
    /// What the step being verified wrote into an object a reconciler owns, read back while
    /// it is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_watch: Option<RevertWatch>,
    /// Its Alertmanager silences (policy `silence:`), from its first remediation step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<SilenceState>,
    /// When opened.
    pub opened_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When resolved.
    pub resolved_at: Option<Timestamp>,
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
    /// The action stopped before any write because the target is busy with a change remedyd
    /// did not make (a rollout in progress): the same step is tried again later.
    Held {
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
    /// No value: no series, NaN, Prometheus unavailable, or the query rejected; for an HTTP
    /// check, a URL refused before any request (not in `probe_allow`, a bad template).
    NoData(String),
    /// An HTTP health check's answer (or its absence: a timeout, a refused connection).
    Http {
        /// It passed: the expected status, and the body text if one is required.
        ok: bool,
        /// One line: `GET URL → 503 in 12 ms (status 503, expected 200)`.
        line: String,
        /// Status, latency, body excerpt.
        detail: serde_json::Value,
    },
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
    /// Its next update to the routes paged is due ([`Incident::update_due`]).
    UpdateDue,
    /// The approval of the awaited step was decided (approved or denied), as stored.
    ApprovalDecided(crate::domain::approval::Approval),
    /// Nobody decided the awaited step's approval before its deadline (the store has it as
    /// timed out).
    ApprovalTimedOut {
        /// Ladder level.
        ladder: u8,
        /// Step index.
        step: usize,
    },
    /// The step that just succeeded wrote into an object a GitOps reconciler owns: watch it
    /// for a revert while the step is verified.
    WatchRevert {
        /// Ladder level.
        ladder: u8,
        /// Step index.
        step: usize,
        /// Action kind (reads it back).
        action: String,
        /// What it wrote, as the action describes it.
        spec: serde_json::Value,
    },
    /// The watched object was read back: `Ok(Some(why))` when it was put back, `Ok(None)` when
    /// it is as written, `Err` when it could not be read.
    RevertChecked {
        /// Step index.
        step: usize,
        /// What the read found.
        reverted: Result<Option<String>, String>,
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
        /// Why, in words (the page's reason).
        reason: String,
        /// Why, as a kind (the escalation metric's label).
        why: EscalationReason,
    },
    /// Ask people to approve a step: store the pending approval and send the request to the
    /// step's `notify` routes (one commit).
    RequestApproval {
        /// Ladder level.
        ladder: u8,
        /// Step index.
        step: usize,
        /// Its deadline.
        until: Timestamp,
    },
    /// Tell the paged routes that the incident resolved.
    PageResolved,
    /// Tell the paged routes how the incident stands: status, the current measured value, and
    /// the timeline since `since` (the previous update, or the first page).
    PageUpdate {
        /// What the update covers: timeline entries at or after this.
        since: Timestamp,
    },
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

/// The effect that appends one entry to the timeline.
fn record(
    at: Timestamp,
    kind: EntryKind,
    message: impl Into<String>,
    data: serde_json::Value,
) -> Effect {
    Effect::Record(Entry::new(at, kind, message, data))
}

// === impl Incident: the change stamp ===

impl Incident {
    /// Stamps `updated_at` when a transition had effects; returns them. A transition that
    /// returns early (an event with nothing to change) leaves the stamp alone.
    fn stamped(&mut self, now: Timestamp, fx: Effects) -> Effects {
        if !fx.is_empty() {
            self.updated_at = now;
        }
        fx
    }
}

// === impl Incident: what the engine asks ===

impl Incident {
    /// The step being verified cannot close a breaker: it was a dry run, or its outcome is
    /// unknown (interrupted by a restart).
    fn step_uncounted(&self) -> bool {
        self.step_dry_run || self.step_interrupted
    }

    /// The status the API reports.
    pub fn status(&self) -> Status {
        match &self.phase {
            Phase::Waiting { .. } | Phase::Held { .. } => Status::Open,
            Phase::Ready | Phase::AwaitingApproval { .. } | Phase::StepHeld { .. }
                if self.steps_started == 0 =>
            {
                Status::Open
            }
            Phase::AwaitingApproval { .. } | Phase::StepHeld { .. } => Status::Remediating,
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
        let watch = self.revert_watch.as_ref().map(|w| w.next);
        let phase = match (phase, watch) {
            (Some(p), Some(w)) => Some(p.min(w)),
            (p, w) => p.or(w),
        };
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
            Phase::Waiting { until }
            | Phase::Verified { until, .. }
            | Phase::AwaitingApproval { until, .. }
            | Phase::StepHeld {
                next_check: until, ..
            } => Some(until),
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
}

#[cfg(test)]
mod tests;
