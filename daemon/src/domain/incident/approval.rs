//! A step waiting for people (`approve:`): the request when the ladder reaches it, the decision
//! the engine read from the store, and the step's `on_timeout` when nobody decided in time.

use super::{Effect, Effects, EntryKind, EscalationReason, Incident, Phase, record};
use crate::domain::approval::{Approval, ApprovalState};
use crate::domain::policy::{OnTimeout, Policy};
use crate::domain::time::{Timestamp, fmt_duration};

impl Incident {
    /// The ladder is ready for a step that needs approval and has none yet: wait for it, and ask
    /// (the engine stores the pending approval and sends the request in the same commit).
    pub(super) fn ask_approval(&mut self, policy: &Policy, now: Timestamp, fx: &mut Effects) {
        let (ladder, step) = (self.ladder, self.next_step);
        if self.phase != Phase::Ready || self.approved == Some((ladder, step)) {
            return;
        }
        let Some(s) = self.ladder_of(policy).and_then(|l| l.steps.get(step)) else {
            return;
        };
        let Some(a) = &s.approve else {
            return;
        };
        let until = now.plus(a.timeout);
        let who = if a.two_person {
            format!("two of {}", a.approvers.join(", "))
        } else {
            format!("one of {}", a.approvers.join(", "))
        };
        fx.push(record(
            now,
            EntryKind::ApprovalRequested,
            format!(
                "step {} ({}) waits for approval by {who} until {until} (on timeout: {})",
                s.name,
                s.action,
                a.on_timeout.as_str()
            ),
            serde_json::json!({
                "step": s.name, "ladder": ladder, "index": step, "approvers": a.approvers,
                "required": a.required(), "until": until, "timeout": fmt_duration(a.timeout),
                "on_timeout": a.on_timeout.as_str(), "notify": a.notify,
            }),
        ));
        self.phase = Phase::AwaitingApproval {
            ladder,
            step,
            until,
        };
        fx.push(Effect::RequestApproval {
            ladder,
            step,
            until,
        });
    }

    /// The awaited approval was decided: each decision goes into the timeline; approved, the
    /// step becomes due (the gates still apply); denied, a human takes over. A decision for
    /// another step (the ladder moved on) changes nothing.
    pub(super) fn on_approval_decided(
        &mut self,
        a: Approval,
        policy: &Policy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
        let Phase::AwaitingApproval { ladder, step, .. } = self.phase else {
            return fx;
        };
        if (a.ladder, a.step) != (ladder, step)
            || !matches!(a.state, ApprovalState::Approved | ApprovalState::Denied)
        {
            return fx;
        }
        for d in &a.decisions {
            fx.push(record(
                now,
                EntryKind::ApprovalDecided,
                format!("step {} {}", a.step_name, d.line()),
                serde_json::json!({
                    "step": a.step_name, "by": d.by, "channel": d.channel, "at": d.at,
                    "comment": d.comment, "decision": d.decision,
                }),
            ));
        }
        if a.state == ApprovalState::Approved {
            self.approved = Some((ladder, step));
            self.ready(policy, now, &mut fx);
        } else {
            let line = a
                .decisions
                .iter()
                .rev()
                .find(|d| d.decision == crate::domain::approval::Verdict::Deny)
                .map(|d| d.line())
                .unwrap_or_else(|| "denied".into());
            let reason = format!("step {} {line}", a.step_name);
            self.escalate(
                policy,
                reason,
                EscalationReason::ApprovalDenied,
                now,
                &mut fx,
            );
        }
        self.stamped(now, fx)
    }

    /// Nobody decided in time: the step's `on_timeout` (escalate, or skip to the next step).
    pub(super) fn on_approval_timed_out(
        &mut self,
        ladder: u8,
        step: usize,
        policy: &Policy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
        let Phase::AwaitingApproval {
            ladder: l,
            step: s,
            until,
        } = self.phase
        else {
            return fx;
        };
        if (l, s) != (ladder, step) {
            return fx;
        }
        let spec = self
            .ladder_of(policy)
            .and_then(|x| x.steps.get(step))
            .map(|x| (x.name.clone(), x.approve.as_ref().map(|a| a.on_timeout)));
        let (name, on_timeout) = spec.unwrap_or_default();
        let on_timeout = on_timeout.unwrap_or(OnTimeout::Escalate);
        let then = match on_timeout {
            OnTimeout::Escalate => "escalating",
            OnTimeout::Skip => "skipping it",
        };
        fx.push(record(
            now,
            EntryKind::ApprovalTimedOut,
            format!("nobody decided the approval of step {name} by {until}; {then}"),
            serde_json::json!({"step": name, "until": until, "on_timeout": on_timeout.as_str()}),
        ));
        match on_timeout {
            OnTimeout::Escalate => {
                let reason = format!("step {name} was not approved by {until}");
                self.escalate(
                    policy,
                    reason,
                    EscalationReason::ApprovalTimeout,
                    now,
                    &mut fx,
                );
            }
            OnTimeout::Skip => {
                self.next_step = step + 1;
                self.phase = Phase::Ready;
                self.ready(policy, now, &mut fx);
            }
        }
        self.stamped(now, fx)
    }
}
