//! A step held before it changed anything: the action found someone else's rollout in progress
//! on its target and stopped before its first write ([`StepResult::Held`]). The step did not
//! run, so it neither counts as executed nor as a failure: the incident waits in
//! [`Phase::StepHeld`] and the same step is tried again every [`HOLD_RECHECK`] (each try goes
//! through the gates and the ledger again) until the rollout is over, then runs normally. After
//! the policy's `rollout_hold` it escalates (`rollout_in_progress`).
//!
//! The hold survives a restart (it is in the incident's stored body); a pause, a maintenance
//! window, an escalation, a new ladder or the resolve ends it, and a later hold starts afresh.

use serde::{Deserialize, Serialize};

use super::{Effect, Effects, EntryKind, EscalationReason, Incident, Phase, record};
use crate::domain::policy::{HOLD_RECHECK, Policy};
use crate::domain::time::{Timestamp, fmt_duration};

/// A step held by someone else's rollout, kept across its re-tries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepHold {
    /// Ladder level of the held step.
    pub ladder: u8,
    /// Step index.
    pub step: usize,
    /// When the step was first held.
    pub since: Timestamp,
    /// When the hold gives up and escalates (`since` + the policy's `rollout_hold`).
    pub until: Timestamp,
    /// Why, as the action said the first time.
    pub reason: String,
    /// Tries held so far.
    pub tries: u32,
}

impl Incident {
    /// Whether a start of step (`ladder`, `step`) is a re-try of its hold (recorded quietly: the
    /// hold's entry already says it is tried again).
    pub(super) fn retrying_hold(&self, ladder: u8, step: usize) -> bool {
        self.hold
            .as_ref()
            .is_some_and(|h| (h.ladder, h.step) == (ladder, step))
    }

    /// The current step was held before any write: hold (first time, with an entry), keep
    /// holding (quietly), or escalate once the hold has lasted `rollout_hold`. No breaker counts
    /// it (a half-open trial is given back); an approved step stays approved.
    pub(super) fn on_step_held(
        &mut self,
        ladder: u8,
        step: usize,
        reason: String,
        policy: &Policy,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let spec = policy.levels.get(&ladder).and_then(|l| l.steps.get(step));
        let (name, action) = spec
            .map(|s| (s.name.clone(), s.action.clone()))
            .unwrap_or_default();
        fx.push(Effect::BreakerRelease { action });
        // The attempt did nothing: it is not a step started.
        self.steps_started = self.steps_started.saturating_sub(1);
        if spec.is_some_and(|s| s.approve.is_some()) {
            // It started, so it was approved: a re-try does not ask people again.
            self.approved = Some((ladder, step));
        }
        let hold = match self
            .hold
            .take()
            .filter(|h| (h.ladder, h.step) == (ladder, step))
        {
            Some(mut h) => {
                h.tries += 1;
                h
            }
            None => {
                let until = now.plus(policy.rollout_hold);
                fx.push(record(
                    now,
                    EntryKind::StepHeld,
                    format!(
                        "step {name} held before any change: {reason}; tried again every {}, escalating at {until} (rollout_hold {})",
                        fmt_duration(HOLD_RECHECK),
                        fmt_duration(policy.rollout_hold)
                    ),
                    serde_json::json!({
                        "step": name, "reason": reason, "until": until,
                        "every": fmt_duration(HOLD_RECHECK), "rollout_hold": fmt_duration(policy.rollout_hold),
                    }),
                ));
                StepHold {
                    ladder,
                    step,
                    since: now,
                    until,
                    reason: reason.clone(),
                    tries: 1,
                }
            }
        };
        if now >= hold.until {
            let why = format!(
                "step {name} held for {} ({} tries): {reason}",
                fmt_duration(std::time::Duration::from_millis(
                    now.0.saturating_sub(hold.since.0).max(0) as u64
                )),
                hold.tries
            );
            return self.escalate(policy, why, EscalationReason::RolloutInProgress, now, fx);
        }
        self.phase = Phase::StepHeld {
            ladder,
            step,
            next_check: now.plus(HOLD_RECHECK).min(hold.until),
        };
        self.hold = Some(hold);
    }

    /// A re-try of a held step ended otherwise than held (the rollout is over, or the try was
    /// interrupted): the hold's end goes into the timeline before the step's own result.
    pub(super) fn end_hold(&mut self, step_name: &str, now: Timestamp, fx: &mut Effects) {
        let Some(h) = self.hold.take() else {
            return;
        };
        let waited =
            std::time::Duration::from_millis(now.0.saturating_sub(h.since.0).max(0) as u64);
        fx.push(record(
            now,
            EntryKind::HoldOver,
            format!(
                "hold over after {} ({} tries held): step {step_name} went ahead",
                fmt_duration(waited),
                h.tries
            ),
            serde_json::json!({"step": step_name, "since": h.since, "tries": h.tries, "reason": h.reason}),
        ));
    }

    /// The held step's next try is due: it becomes due again (the gates and the ledger decide
    /// whether it starts).
    pub(super) fn on_hold_check(&mut self, policy: &Policy, now: Timestamp, fx: &mut Effects) {
        if let Phase::StepHeld { step, .. } = self.phase {
            self.next_step = step;
            self.ready(policy, now, fx);
        }
    }

    /// A hold lasts only while its step is the one due (or re-trying, or waiting for a busy
    /// target): anything else (a pause, an escalation, a new ladder, the resolve) ends it.
    pub(super) fn keep_hold(&mut self) {
        let Some(h) = &self.hold else {
            return;
        };
        let same = (h.ladder, h.step) == (self.ladder, self.next_step);
        let holding = matches!(
            self.phase,
            Phase::StepHeld { .. } | Phase::Running { .. } | Phase::Ready | Phase::Held { .. }
        );
        if !(same && holding) {
            self.hold = None;
        }
    }
}
