//! Steps waiting for people (`approve:`). When the ladder reaches such a step the incident
//! machine asks ([`Effect::RequestApproval`](crate::domain::incident::Effect)); here that becomes
//! the pending approval stored in the same commit as the incident, and the request sent to the
//! step's `notify` routes through the outbox. Each pass then reads the approval of every
//! incident awaiting one: a decision (taken by the API or Slack in the store, by compare-and-set)
//! becomes an event; at the deadline the approval is timed out by the same compare-and-set, so a
//! decision taken just before it wins and one after it is refused.

use super::Engine;
use crate::adapters::escalate::{self, NotificationKind};
use crate::adapters::store::{Commit, StoreError};
use crate::adapters::telemetry::Metrics;
use crate::domain::approval::{Approval, ApprovalState};
use crate::domain::incident::{Entry, Event, Incident, Phase};
use crate::domain::time::Timestamp;
use crate::load::ruleset::Ruleset;

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
