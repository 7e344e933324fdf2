//! Steps waiting for people (`approve:`). When the ladder reaches such a step the incident
//! machine asks ([`Effect::RequestApproval`](crate::domain::incident::Effect)); here that becomes
//! the pending approval stored in the same commit as the incident, and the request sent to the
//! step's `notify` routes through the outbox. Each pass then reads the approval of every
//! incident awaiting one: a decision (taken by the API or Slack in the store, by compare-and-set)
//! becomes an event; at the deadline the approval is timed out by the same compare-and-set, so a
//! decision taken just before it wins and one after it is refused.
//!
//! Once an approval is final (approved, denied, timed out, or void because the incident moved
//! on), its outcome goes to the same `notify` routes through the outbox, in the commit that
//! leaves the wait ([`Engine::close_approvals`]): on a Slack Web API route it replaces the
//! request's message (`chat.update`), so its buttons are gone.

use super::Engine;
use crate::adapters::escalate::{self, NotificationKind};
use crate::adapters::store::{Commit, StoreError};
use crate::adapters::telemetry::Metrics;
use crate::domain::approval::{Approval, ApprovalState};
use crate::domain::incident::{Entry, Event, Incident, Phase};
use crate::domain::time::Timestamp;
use crate::load::ruleset::Ruleset;
use std::collections::BTreeMap;

impl Engine {
    /// The pending approval of step (`ladder`, `step`) and its requests to the `notify` routes,
    /// added to `c`; `timeline` is the incident's, this commit's entries included.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn request_approval(
        &self,
        inc: &Incident,
        rs: &Ruleset,
        (ladder, step, until): (u8, usize, Timestamp),
        timeline: &[Entry],
        now: Timestamp,
        c: &mut Commit,
    ) {
        let Some(spec) = rs
            .policies
            .get(&inc.policy)
            .and_then(|p| p.levels.get(&ladder))
            .and_then(|l| l.steps.get(step))
        else {
            return;
        };
        let Some(ask) = &spec.approve else {
            return;
        };
        let approval = Approval {
            id: Approval::key(&inc.id, ladder, step),
            incident: inc.id.clone(),
            ladder,
            step,
            step_name: spec.name.clone(),
            requested_at: now,
            deadline: until,
            required: ask.required(),
            approvers: ask.approvers.clone(),
            state: ApprovalState::Pending,
            decisions: Vec::new(),
        };
        let reason = format!(
            "approval needed: step {} ({}) on {}; decide before {until}",
            spec.name,
            spec.action,
            inc.target.key()
        );
        tracing::info!(incident = %inc.id, step = %spec.name, routes = ?ask.notify, "Step waits for approval");
        for route in &ask.notify {
            let mut n = escalate::notification(inc, timeline, NotificationKind::Trigger, &reason);
            n.approval = Some(approval.clone());
            c.outbox.push((route.clone(), n));
        }
        c.approvals.push(approval);
    }

    /// The event an incident awaiting approval gets now: its decision, or its timeout once the
    /// deadline passed (the store marks it timed out first, unless a decision came before).
    pub(super) async fn approval_event(
        &self,
        inc: &Incident,
        now: Timestamp,
    ) -> Result<Option<Event>, StoreError> {
        let Phase::AwaitingApproval {
            ladder,
            step,
            until,
        } = inc.phase
        else {
            return Ok(None);
        };
        let id = Approval::key(&inc.id, ladder, step);
        let mut a = self.store.approval(&id).await?;
        if now >= until
            && a.as_ref()
                .is_some_and(|a| a.state == ApprovalState::Pending)
        {
            a = self.store.expire_approval(&id, now).await?;
        }
        let timed_out = Event::ApprovalTimedOut { ladder, step };
        let (event, result) = match a {
            Some(a) if matches!(a.state, ApprovalState::Approved | ApprovalState::Denied) => {
                let result = a.state.as_str();
                (Event::ApprovalDecided(a), result)
            }
            Some(a) if a.state == ApprovalState::TimedOut => (timed_out, "timed_out"),
            // Missing or void while awaited (cannot happen through the engine): the deadline
            // still ends the wait, so the incident is never stuck.
            _ if now >= until => (timed_out, "timed_out"),
            _ => return Ok(None),
        };
        Metrics::result(&self.metrics.approvals, result);
        tracing::info!(incident = %inc.id, approval = %id, result, "Applying an approval's outcome");
        Ok(Some(event))
    }
}

impl Engine {
    /// The outcome of every approval `c` stops awaiting: an incident whose cached copy awaits
    /// (ladder, step) and whose committed copy no longer does. The approval is read from the
    /// store (decided or timed out before the event was applied); one still pending becomes void
    /// in this very commit. Each `notify` route of the step gets the outcome, after the request
    /// (one outbox lane per incident and route).
    pub(super) async fn close_approvals(&self, c: &mut Commit) -> Result<(), StoreError> {
        let Some(cache) = self.cache.as_ref() else {
            return Ok(());
        };
        // The last copy of each incident in the commit is the one that lands.
        let last: BTreeMap<&str, &Incident> =
            c.incidents.iter().map(|i| (i.id.as_str(), i)).collect();
        let mut closed = Vec::new();
        for (id, inc) in last {
            let Some(Phase::AwaitingApproval { ladder, step, .. }) =
                cache.get(id).map(|i| &i.phase)
            else {
                continue;
            };
            let (ladder, step) = (*ladder, *step);
            let still = matches!(inc.phase, Phase::AwaitingApproval { ladder: l, step: s, .. } if (l, s) == (ladder, step));
            if !still {
                closed.push((inc.clone(), Approval::key(id, ladder, step)));
            }
        }
        if closed.is_empty() {
            return Ok(());
        }
        let rs = self.rules();
        for (inc, key) in closed {
            let Some(mut a) = self.store.approval(&key).await? else {
                continue;
            };
            if a.state == ApprovalState::Pending {
                a.state = ApprovalState::Void;
            }
            let notify = rs
                .policies
                .get(&inc.policy)
                .and_then(|p| p.levels.get(&a.ladder))
                .and_then(|l| l.steps.get(a.step))
                .and_then(|s| s.approve.as_ref())
                .map(|ask| ask.notify.clone())
                .unwrap_or_default();
            let reason = outcome_line(&a);
            tracing::info!(incident = %inc.id, approval = %a.id, state = a.state.as_str(), routes = ?notify, "Approval final; its message is updated");
            for route in notify {
                let mut n = escalate::notification(&inc, &[], NotificationKind::Trigger, &reason);
                n.approval = Some(a.clone());
                c.outbox.push((route, n));
            }
        }
        Ok(())
    }
}

/// `step scale approved by alice via slack at T ("comment")`, or timed out, or void.
pub fn outcome_line(a: &Approval) -> String {
    match a.state {
        ApprovalState::Approved | ApprovalState::Denied => {
            let lines = a.lines();
            format!("step {} {}", a.step_name, lines.join("; "))
        }
        ApprovalState::TimedOut => {
            format!("step {}: nobody decided by {}", a.step_name, a.deadline)
        }
        ApprovalState::Void => format!(
            "step {}: no longer awaited (the incident moved on)",
            a.step_name
        ),
        ApprovalState::Pending => format!("step {} waits for approval", a.step_name),
    }
}
