//! The moves along the ladder that several transitions share: enter `Ready` (or escalate when no
//! step is left), escalate to a human, go on after a failed step, and raise the level.

use super::{Effect, Effects, EntryKind, EscalationReason, Incident, Phase, record};
use crate::domain::policy::{OnFailure, Policy, Verify};
use crate::domain::time::Timestamp;

impl Incident {
    /// Enters `Ready`, escalating at once if the ladder has no step left.
    pub(super) fn ready(&mut self, policy: &Policy, now: Timestamp, fx: &mut Effects) {
        let steps = self.ladder_of(policy).map_or(&[][..], |l| &l.steps[..]);
        let len = steps.len();
        // A ladder of evidence only (level 3's checks before the platform page) remedies nothing:
        // it escalates as a ladder without steps, the evidence gathered named.
        let evidence_only = steps.iter().all(|s| s.verify == Verify::None);
        if self.next_step >= len {
            let (reason, why) = if len == 0 {
                let reason = format!(
                    "level {} ladder of policy {} has no automated steps",
                    self.ladder, policy.name
                );
                (reason, EscalationReason::NoSteps)
            } else if evidence_only {
                let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
                let reason = format!(
                    "level {} ladder of policy {} has no automated remediation (evidence gathered: {})",
                    self.ladder,
                    policy.name,
                    names.join(", ")
                );
                (reason, EscalationReason::NoSteps)
            } else {
                let reason = format!("ladder exhausted after {len} step(s); alert still firing");
                (reason, EscalationReason::Exhausted)
            };
            self.escalate(policy, reason, why, now, fx);
        } else {
            self.phase = Phase::Ready;
            self.ask_approval(policy, now, fx);
        }
    }

    /// Hands the incident to the ladder's route, paging it unless it already has this incident.
    pub(super) fn escalate(
        &mut self,
        policy: &Policy,
        reason: String,
        why: EscalationReason,
        now: Timestamp,
        fx: &mut Effects,
    ) {
        let route = self
            .ladder_of(policy)
            .map(|l| l.escalate_to.clone())
            .unwrap_or_default();
        fx.push(record(
            now,
            EntryKind::Escalated,
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
            fx.push(Effect::Page { route, reason, why });
        }
    }

    /// Goes on after step `step` failed (or changed nothing, or could not be verified), as its
    /// `on_failure` says: the next step, or a human.
    pub(super) fn after_failure(
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
                let reason = format!("step {} failed: {why}", s.name);
                self.escalate(policy, reason, EscalationReason::StepFailed, now, fx)
            }
        }
    }

    /// Raises the level to `level` (an alert at it has fired for its `for`): a different ladder
    /// supersedes pending steps; a running step finishes first and is recorded.
    pub(super) fn upgrade(
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
            EntryKind::Superseded,
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
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::super::{Event, Labels, StepResult};
    use super::*;
    use crate::domain::policy::{Ladder, Step, Verify};
    use crate::domain::rules::{Target, TargetKind};

    /// Level 3's ladder: one evidence step (no verify), then the platform page.
    #[test]
    fn an_evidence_only_ladder_pages_as_one_without_remediation_after_its_evidence() {
        let step = Step {
            name: "cluster-evidence".into(),
            action: "kube_cluster_evidence".into(),
            params: serde_json::json!({}),
            budget: None,
            verify: Verify::None,
            on_failure: OnFailure::Escalate,
            approve: None,
        };
        let mut levels = BTreeMap::new();
        levels.insert(
            3,
            Ladder {
                steps: vec![step],
                escalate_to: "platform".into(),
            },
        );
        let policy = Policy::with_levels("infrastructure", levels);
        let target = Target {
            kind: TargetKind::Platform,
            namespace: String::new(),
            name: "prod".into(),
        };
        let (mut inc, fx) = Incident::open(
            "INC-2026-0001".into(),
            "r",
            &policy,
            target,
            Labels::new(),
            "fp".into(),
            Timestamp(0),
            3,
            Duration::ZERO,
            Timestamp(0),
        );
        // Nothing is paged before the evidence.
        assert!(!fx.iter().any(|e| matches!(e, Effect::Page { .. })));
        let (ladder, step, _) = inc.due_step(&policy).expect("the evidence is due");
        inc.apply(
            Event::StepStarted {
                ladder,
                step,
                detail: serde_json::Value::Null,
                dry_run: false,
            },
            &policy,
            Timestamp(1000),
        );
        let fx = inc.apply(
            Event::StepFinished {
                ladder,
                step,
                result: StepResult::Ok,
                detail: serde_json::Value::Null,
            },
            &policy,
            Timestamp(2000),
        );
        let page = fx.iter().find_map(|e| match e {
            Effect::Page { route, reason, why } => Some((route, reason, why)),
            _ => None,
        });
        let (route, reason, why) = page.expect("platform paged after the evidence");
        assert_eq!(route, "platform");
        assert_eq!(*why, EscalationReason::NoSteps);
        assert!(
            reason.contains("has no automated remediation (evidence gathered: cluster-evidence)"),
            "{reason}"
        );
    }
}
