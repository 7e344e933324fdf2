//! A step's life in the machine: started, finished, probed, and judged at its verification
//! deadline; the breakers hear of what it proved.

use std::time::Duration;

use super::{
    Effect, Effects, EntryKind, EscalationReason, Incident, Phase, Probe, StepResult, record,
};
use crate::domain::policy::{NoData, Policy, Verify};
use crate::domain::time::{Timestamp, fmt_duration};

impl Incident {
    /// The gates passed and the ledger claim succeeded: the step runs.
    pub(super) fn on_step_started(
        &mut self,
        ladder: u8,
        step: usize,
        detail: serde_json::Value,
        dry_run: bool,
        policy: &Policy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
        let spec = policy.levels.get(&ladder).and_then(|l| l.steps.get(step));
        self.begin_silence(policy, spec, dry_run, now);
        let name = spec
            .map(|s| (s.name.clone(), s.action.clone()))
            .unwrap_or_default();
        let mode = if dry_run {
            " (dry-run: recorded, not sent)"
        } else {
            ""
        };
        // A held step's re-tries are quiet: its hold's entry says it is tried again, and the
        // hold's end says when it ran.
        if !self.retrying_hold(ladder, step) {
            fx.push(record(
                now,
                EntryKind::StepStarted,
                format!("step {} ({}) started{mode}", name.0, name.1),
                detail,
            ));
        }
        self.steps_started += 1;
        self.step_dry_run = dry_run;
        self.step_interrupted = false;
        self.phase = Phase::Running { ladder, step };
        self.approved = None;
        self.stamped(now, fx)
    }

    /// The action returned: verify the step, go on, or escalate; the breakers count a failure.
    /// A step superseded by a higher level is only recorded (`updated_at` stays).
    pub(super) fn on_step_finished(
        &mut self,
        ladder: u8,
        step: usize,
        result: StepResult,
        detail: serde_json::Value,
        policy: &Policy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
        let s = policy
            .levels
            .get(&ladder)
            .and_then(|l| l.steps.get(step))
            .cloned();
        let name = s.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let current = self.phase == Phase::Running { ladder, step } && ladder == self.ladder;
        let verify = s.as_ref().map(|s| s.verify.timeout()).unwrap_or_default();
        if let StepResult::Held { reason } = &result {
            if current {
                self.on_step_held(ladder, step, reason.clone(), policy, now, &mut fx);
                return self.stamped(now, fx);
            }
            // Superseded by a higher level while it was tried: the new ladder goes on.
            fx.push(record(
                now,
                EntryKind::StepHeld,
                format!("step {name} held before any change: {reason}; a higher level's ladder supersedes it"),
                detail,
            ));
            fx.push(Effect::BreakerRelease {
                action: s.map(|s| s.action).unwrap_or_default(),
            });
            self.steps_started = self.steps_started.saturating_sub(1);
            if matches!(self.phase, Phase::Running { .. }) {
                self.ready(policy, now, &mut fx);
            }
            return fx;
        }
        if current && self.retrying_hold(ladder, step) {
            self.end_hold(&name, now, &mut fx);
        }
        match &result {
            StepResult::Ok => fx.push(record(
                now,
                EntryKind::StepOk,
                format!("step {name} succeeded"),
                detail,
            )),
            StepResult::Failed { error, denied } => {
                fx.push(record(
                    now,
                    EntryKind::StepFailed,
                    format!("step {name} failed: {error}"),
                    detail,
                ));
                // Evidence that could not be gathered is no failed remediation, and a
                // dry run did nothing that could fail.
                if let Some(s) = s.as_ref().filter(|s| s.verify != Verify::None)
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
                    EntryKind::StepRefused,
                    format!("step {name} changed nothing: {reason}"),
                    detail,
                ));
                if let Some(s) = s.as_ref() {
                    fx.push(Effect::BreakerRelease {
                        action: s.action.clone(),
                    });
                }
            }
            StepResult::Held { .. } => {}
            StepResult::Unknown => {
                fx.push(record(now, EntryKind::StepInterrupted, format!("step {name} was interrupted by a restart; its outcome is unknown and it is not run again"), detail));
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
                if s.as_ref().is_some_and(|s| s.verify == Verify::None) =>
            {
                // Evidence changes nothing: the ladder goes on at once.
                self.next_step = step + 1;
                self.ready(policy, now, &mut fx);
            }
            StepResult::Ok | StepResult::Unknown => {
                let until = now.plus(verify);
                let (cond, next_probe) = match s.as_ref().map(|s| &s.verify) {
                    Some(v @ Verify::Query { every, query, .. }) => (
                        format!("{query} {} by {until}", v.condition()),
                        Some(now.plus(*every).min(until)),
                    ),
                    Some(v @ Verify::Http { every, url, .. }) => (
                        format!("GET {url} {} by {until}", v.condition()),
                        Some(now.plus(*every).min(until)),
                    ),
                    _ => (format!("alerts must resolve by {until}"), None),
                };
                fx.push(record(
                    now,
                    EntryKind::Verifying,
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
            // Handled, and returned, at the top.
            StepResult::Held { .. } => {}
            StepResult::NoChange { reason } => {
                self.after_failure(policy, step, reason, now, &mut fx)
            }
        }
        self.stamped(now, fx)
    }

    /// A verification probe returned: passed (verified), not yet, or no data.
    pub(super) fn on_probe(
        &mut self,
        step: usize,
        probe: Probe,
        policy: &Policy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
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
        let (Some(every), within) = (s.verify.every(), s.verify.timeout()) else {
            return fx;
        };
        let next_probe = Some(now.plus(every)).filter(|p| *p < until).or(Some(until));
        match probe {
            Probe::Value(v) if s.verify.passes(v) => {
                fx.push(record(
                    now,
                    EntryKind::Verified,
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
                    until: now.plus(within),
                };
            }
            Probe::Http { ok, line, detail } => {
                let needs = match &s.verify {
                    Verify::Http { successes, .. } => *successes,
                    _ => return fx,
                };
                // The streak of consecutive successes is kept as the last value.
                let before = match self.phase {
                    Phase::Verifying { last: Some(n), .. } => n as u32,
                    _ => 0,
                };
                let streak = if ok { before + 1 } else { 0 };
                let mut data = detail;
                if let serde_json::Value::Object(m) = &mut data {
                    m.insert("in_a_row".into(), streak.into());
                    m.insert("needs".into(), needs.into());
                    m.insert("condition".into(), s.verify.condition().into());
                }
                if streak >= needs {
                    fx.push(record(
                        now,
                        EntryKind::Verified,
                        format!(
                            "verification passed: {line}, {streak} of {needs} in a row, after step {}",
                            s.name
                        ),
                        data,
                    ));
                    if !self.step_uncounted() {
                        fx.push(Effect::BreakerSuccess {
                            action: s.action.clone(),
                        });
                    }
                    self.phase = Phase::Verified {
                        step,
                        until: now.plus(within),
                    };
                } else {
                    fx.push(record(
                        now,
                        EntryKind::Probe,
                        format!("probe: {line}, {streak} of {needs} in a row"),
                        data,
                    ));
                    self.phase = Phase::Verifying {
                        step,
                        until,
                        next_probe,
                        last: Some(f64::from(streak)),
                        no_data: None,
                    };
                }
            }
            Probe::Value(v) => {
                fx.push(record(
                    now,
                    EntryKind::Probe,
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
                    EntryKind::ProbeNoData,
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
        self.stamped(now, fx)
    }

    /// The verification deadline of step `step` expired unproven: no data (released, then as
    /// the policy's `no_data` says) or failed (counted, then as the step's `on_failure` says).
    pub(super) fn on_verification_deadline(
        &mut self,
        step: usize,
        last: Option<f64>,
        no_data: Option<String>,
        policy: &Policy,
        now: Timestamp,
        fx: &mut Effects,
    ) {
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
                Verify::ResolvedWithin(Duration::ZERO),
            ));
        let within = fmt_duration(verify.timeout());
        match &verify {
            Verify::Query { .. } | Verify::Http { .. } if no_data.is_some() || last.is_none() => {
                // An HTTP check that could not be sent (refused, bad URL) cannot tell: a human.
                let policy_no_data = match &verify {
                    Verify::Query { no_data, .. } => *no_data,
                    _ => NoData::Escalate,
                };
                let reason = no_data.unwrap_or_else(|| "no probe returned a value".into());
                let why =
                    format!("verification of step {name} had no data within {within}: {reason}");
                fx.push(record(
                    now,
                    EntryKind::VerificationNoData,
                    why.clone(),
                    serde_json::json!({"step": name, "within": within, "reason": reason}),
                ));
                fx.push(Effect::BreakerRelease { action });
                match policy_no_data {
                    NoData::Escalate => {
                        self.escalate(policy, why, EscalationReason::NoData, now, fx)
                    }
                    NoData::Fail => self.after_failure(policy, step, why, now, fx),
                }
            }
            _ => {
                let why = match (&verify, last) {
                    (Verify::Query { .. }, Some(v)) => format!(
                        "value {v} still not {} {within} after step {name}",
                        verify.condition()
                    ),
                    (Verify::Http { url, .. }, _) => format!(
                        "GET {url} did not answer {} within {within} after step {name}",
                        verify.condition()
                    ),
                    _ => format!("alerts still firing {within} after step {name}"),
                };
                fx.push(record(now, EntryKind::VerificationFailed, format!("verification failed: {why}"), serde_json::json!({"step": name, "within": within, "last": last, "condition": verify.condition(), "firing": self.active.keys().collect::<Vec<_>>()})));
                if !self.step_dry_run {
                    fx.push(Effect::BreakerFailure {
                        action,
                        denied: false,
                    });
                }
                self.after_failure(policy, step, why, now, fx);
            }
        }
    }
}
