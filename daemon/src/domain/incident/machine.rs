//! The machine's transitions: [`Incident::open`], and [`Incident::apply`] delegating each
//! [`Event`] to one method. A step's own events (started, finished, probed, its verification
//! deadline) are in `step`; the moves they share (ready, escalate, upgrade) are in `ladder`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    ActiveAlert, Effect, Effects, EntryKind, EscalationReason, Event, Incident, Phase, StepResult,
    record,
};
use crate::domain::policy::gate::{Refusal, RefusalKind};
use crate::domain::policy::{Policy, Verify};
use crate::domain::rules::Target;
use crate::domain::signal::Labels;
use crate::domain::time::{Timestamp, fmt_duration};

// === impl Incident: open and apply ===

impl Incident {
    /// Adds the value that opened a polled rule's incident (and its query) to the opening entry,
    /// so the timeline and the page say what was measured, not only that a bound was crossed.
    pub fn note_opening_value(fx: &mut Effects, value: f64, query: Option<&str>) {
        for e in fx.iter_mut() {
            if let Effect::Record(entry) = e
                && entry.kind == EntryKind::Opened
            {
                entry.message.push_str(&format!("; measured {value}"));
                if let serde_json::Value::Object(m) = &mut entry.data {
                    m.insert("value".into(), value.into());
                    if let Some(q) = query {
                        m.insert("query".into(), q.into());
                    }
                }
            }
        }
    }

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
            labels: labels.into(),
            active: BTreeMap::new(),
            phase: Phase::Ready,
            paged: Vec::new(),
            steps_started: 0,
            step_dry_run: false,
            step_interrupted: false,
            stale_since: None,
            updates: None,
            approved: None,
            hold: None,
            revert_watch: None,
            silence: None,
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
                restarted: None,
            },
        );
        let mut fx = vec![record(
            now,
            EntryKind::Opened,
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
                EntryKind::Waiting,
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

    /// Applies one event at `now`; returns the effects to carry out.
    pub fn apply(&mut self, event: Event, policy: &Policy, now: Timestamp) -> Effects {
        if self.is_resolved() {
            return self.on_event_after_resolve(event, policy, now);
        }
        let fx = match event {
            Event::Fired {
                fingerprint,
                starts_at,
                level,
                for_,
            } => self.on_fired(fingerprint, starts_at, level, for_, policy, now),
            Event::Resolved { fingerprint } => self.on_resolved(fingerprint, policy, now),
            Event::Tick => self.on_tick(policy, now),
            Event::StepStarted {
                ladder,
                step,
                detail,
                dry_run,
            } => self.on_step_started(ladder, step, detail, dry_run, policy, now),
            Event::StepFinished {
                ladder,
                step,
                result,
                detail,
            } => self.on_step_finished(ladder, step, result, detail, policy, now),
            Event::Refused(refusal) => self.on_refused(refusal, policy, now),
            Event::Probe { step, probe } => self.on_probe(step, probe, policy, now),
            Event::Stale { heard, after } => self.on_stale(heard, after, policy, now),
            Event::Heard { at } => self.on_heard(at, now),
            Event::Resumed => self.on_resumed(policy, now),
            Event::ResolvedByHand { reason, author } => {
                self.on_resolved_by_hand(reason, author, now)
            }
            Event::UpdateDue => self.on_update_due(policy, now),
            Event::ApprovalDecided(a) => self.on_approval_decided(a, policy, now),
            Event::ApprovalTimedOut { ladder, step } => {
                self.on_approval_timed_out(ladder, step, policy, now)
            }
            Event::WatchRevert {
                ladder,
                step,
                action,
                spec,
            } => self.on_watch_revert(ladder, step, action, spec, now),
            Event::RevertChecked { step, reverted } => {
                self.on_revert_checked(step, reverted, policy, now)
            }
        };
        self.keep_hold();
        self.keep_watch();
        self.keep_update_schedule(policy, now);
        fx
    }

    /// An event for a resolved incident. Only late step results are still worth recording, and
    /// a remediation that failed still failed: the breakers count it even though the alerts
    /// resolved meanwhile. (`updated_at` stays.)
    fn on_event_after_resolve(&mut self, event: Event, policy: &Policy, now: Timestamp) -> Effects {
        let mut fx = Vec::new();
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
                    .filter(|s| s.verify != Verify::None)
            {
                fx.push(Effect::BreakerFailure {
                    action: s.action.clone(),
                    denied: *denied,
                });
            }
            fx.push(record(
                now,
                EntryKind::StepFinished,
                format!("step {step} finished after resolve: {result:?}"),
                detail,
            ));
        }
        fx
    }
}

// === impl Incident: the alerts ===

impl Incident {
    /// An alert fires (new or already known): it joins, or raises the level once it has fired
    /// for its `for`.
    fn on_fired(
        &mut self,
        fingerprint: String,
        starts_at: Timestamp,
        level: u8,
        for_: Duration,
        policy: &Policy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
        let new = !self.active.contains_key(&fingerprint);
        // A re-sent alert keeps its first start: nothing changes, nothing is written. One that
        // restarted (a new start, its resolve lost) also keeps it, and records the new one: that
        // is the start its re-sends carry.
        let alert = self
            .active
            .entry(fingerprint.clone())
            .or_insert(ActiveAlert {
                level,
                starts_at,
                ready_at: Some(starts_at.plus(for_)),
                restarted: None,
            });
        alert.started(starts_at);
        alert.level = level;
        let ready_at = alert.ready_at.unwrap_or(alert.starts_at);
        if level > self.level && ready_at > now {
            // The rule's `for` holds for a higher level too: one noisy sample must not
            // start the level-2 ladder. The upgrade comes on the tick at `ready_at`.
            if new {
                fx.push(record(now, EntryKind::UpgradePending, format!("alert {fingerprint} at level {level}: the level changes if it still fires at {ready_at}"), serde_json::json!({"fingerprint": fingerprint, "level": level, "until": ready_at})));
            }
        } else if level > self.level {
            self.upgrade(level, &fingerprint, policy, now, &mut fx);
        } else if new {
            fx.push(record(
                now,
                EntryKind::AlertJoined,
                format!(
                    "alert {fingerprint} (level {level}) joined; {} firing",
                    self.active.len()
                ),
                serde_json::json!({"fingerprint": fingerprint, "level": level}),
            ));
        }
        self.stamped(now, fx)
    }

    /// An alert resolved: the incident resolves with its last alert (a step being verified
    /// passes). With alerts still firing, only the timeline learns of it (`updated_at` stays).
    fn on_resolved(&mut self, fingerprint: String, policy: &Policy, now: Timestamp) -> Effects {
        let mut fx = Vec::new();
        if self.active.remove(&fingerprint).is_none() {
            return fx;
        }
        if !self.active.is_empty() {
            fx.push(record(
                now,
                EntryKind::AlertResolved,
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
                    EntryKind::Verified,
                    format!(
                        "verification passed: alerts resolved after step {name}; incident resolved"
                    ),
                )
            }
            Phase::Ready
            | Phase::Waiting { .. }
            | Phase::Held { .. }
            | Phase::StepHeld { .. }
            | Phase::AwaitingApproval { .. } => (
                EntryKind::Resolved,
                "alerts resolved; pending steps cancelled, incident resolved".to_string(),
            ),
            Phase::Running { step, .. } => (
                EntryKind::Resolved,
                format!("alerts resolved while step {step} was running; nothing further will run"),
            ),
            Phase::Escalated { .. } | Phase::Suspended { .. } => (
                EntryKind::Resolved,
                "alerts resolved; incident resolved".to_string(),
            ),
            Phase::Verified { .. } => (
                EntryKind::Resolved,
                "alerts resolved after the verified step; incident resolved".to_string(),
            ),
            Phase::Resolved => unreachable!("apply handles a resolved incident"),
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
        self.stamped(now, fx)
    }

    /// None of its alerts was heard of since `heard`: handed to a human, paged once.
    fn on_stale(
        &mut self,
        heard: Timestamp,
        after: Duration,
        policy: &Policy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
        // A running step finishes first; its result is recorded, then this comes again.
        if self.stale_since.is_some() || matches!(self.phase, Phase::Running { .. }) {
            return fx;
        }
        self.stale_since = Some(now);
        let reason = format!(
            "stale: none of its alerts heard of since {heard} (stale_after {}); Alertmanager re-sends firing alerts every repeat_interval, so it may have resolved unseen or lost its alerts",
            fmt_duration(after)
        );
        fx.push(record(
            now,
            EntryKind::Stale,
            reason.clone(),
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
                reason: reason.clone(),
            };
        }
        // Paged once: a route that already has this incident's trigger is not paged again.
        if !self.paged.contains(&route) {
            self.paged.push(route.clone());
            fx.push(Effect::Page {
                route,
                reason,
                why: EscalationReason::Stale,
            });
        }
        self.stamped(now, fx)
    }

    /// An alert of a stale incident was heard of again: no longer stale.
    fn on_heard(&mut self, at: Timestamp, now: Timestamp) -> Effects {
        let mut fx = Vec::new();
        if self.stale_since.take().is_some() {
            fx.push(record(
                now,
                EntryKind::HeardAgain,
                format!(
                    "an alert was heard of again at {at}; no longer stale (a human still owns it)"
                ),
                serde_json::json!({"at": at}),
            ));
        }
        self.stamped(now, fx)
    }
}

// === impl Incident: time ===

impl Incident {
    /// Time passed: a higher level that has fired for its `for` comes first; otherwise the
    /// phase's deadline, if it expired.
    fn on_tick(&mut self, policy: &Policy, now: Timestamp) -> Effects {
        let mut fx = Vec::new();
        if let Some((level, fingerprint)) = self.upgrade_due(now) {
            self.upgrade(level, &fingerprint, policy, now, &mut fx);
            // Deadlines of the (possibly new) phase are looked at on the next tick.
            return self.stamped(now, fx);
        }
        match self.phase.clone() {
            Phase::Waiting { until } if now >= until => {
                fx.push(record(
                    now,
                    EntryKind::ForElapsed,
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
            // A revert seen at the deadline is a revert, not a failed verification: the
            // change is read back once more before the step is judged.
            } if now >= until && !self.revert_check_before(until, now) => {
                self.on_verification_deadline(step, last, no_data, policy, now, &mut fx)
            }
            Phase::StepHeld { next_check, .. } if now >= next_check => {
                self.on_hold_check(policy, now, &mut fx)
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
                self.escalate(policy, why, EscalationReason::StillFiring, now, &mut fx);
            }
            _ => {}
        }
        self.stamped(now, fx)
    }
}

// === impl Incident: gates and people ===

impl Incident {
    /// A gate refused the due step: held (busy), suspended (paused), or escalated.
    fn on_refused(&mut self, refusal: Refusal, policy: &Policy, now: Timestamp) -> Effects {
        let mut fx = Vec::new();
        let Refusal { kind, reason } = refusal;
        match kind {
            RefusalKind::Busy => {
                if self.phase
                    != (Phase::Held {
                        reason: reason.clone(),
                    })
                {
                    fx.push(record(
                        now,
                        EntryKind::Held,
                        reason.clone(),
                        serde_json::json!({"kind": kind}),
                    ));
                    self.phase = Phase::Held { reason };
                }
            }
            RefusalKind::Paused => {
                fx.push(record(
                    now,
                    EntryKind::Suspended,
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
                    let why = EscalationReason::Paused;
                    fx.push(Effect::Page { route, reason, why });
                }
            }
            RefusalKind::Storm => {
                // The storm page covers every incident at once; no page per incident.
                fx.push(record(
                    now,
                    EntryKind::Escalated,
                    format!("escalated: {reason}"),
                    serde_json::json!({"kind": kind}),
                ));
                self.phase = Phase::Escalated { reason };
            }
            RefusalKind::Breaker | RefusalKind::Budget | RefusalKind::Namespace => {
                fx.push(record(
                    now,
                    EntryKind::Refused,
                    reason.clone(),
                    serde_json::json!({"kind": kind}),
                ));
                let why = match kind {
                    RefusalKind::Budget => EscalationReason::Budget,
                    RefusalKind::Breaker => EscalationReason::Breaker,
                    _ => EscalationReason::Namespace,
                };
                self.escalate(policy, reason, why, now, &mut fx);
            }
        }
        self.stamped(now, fx)
    }

    /// A pause covering this incident was lifted: a suspended ladder continues.
    fn on_resumed(&mut self, policy: &Policy, now: Timestamp) -> Effects {
        let mut fx = Vec::new();
        if let Phase::Suspended { .. } = self.phase {
            fx.push(record(
                now,
                EntryKind::Resumed,
                "automation resumed; the ladder continues",
                serde_json::Value::Null,
            ));
            self.ready(policy, now, &mut fx);
        }
        self.stamped(now, fx)
    }

    /// Closes the incident for a person, from any open phase: pending steps are cancelled, a
    /// running step's result is still recorded when it comes (nothing further runs), and every
    /// paged route gets its resolve. Alerts still firing stay listed; their re-sends are
    /// duplicates, so only a new firing opens a new incident.
    fn on_resolved_by_hand(&mut self, reason: String, author: String, now: Timestamp) -> Effects {
        let mut fx = Vec::new();
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
            EntryKind::ResolvedByHand,
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
        self.stamped(now, fx)
    }
}
