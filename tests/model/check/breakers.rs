//! I5: breakers. The reference breakers (`../breaker.rs`) are fed with what the model classifies
//! itself: starts (trials), failures (evidence, dry-run and precondition refusals never count),
//! verified successes, and trials that end with neither; after every commit they are compared
//! with the engine's records, and a difference is reported with what explains it.

use std::collections::{BTreeMap, BTreeSet};

use remedyd::adapters::store::Commit;
use remedyd::domain::incident::{Entry, EntryKind, Phase};
use remedyd::domain::policy::breaker::{self, BreakerState};
use remedyd::domain::time::Timestamp;

use super::super::breaker::{St, Trial};
use super::{Model, StepRun};

impl Model {
    /// I5 at a step's start: an open breaker refuses remediation; the first remediation
    /// through a half-open breaker is its trial. Evidence and dry-run steps never take it.
    pub(super) fn breaker_start(&mut self, id: &str, run: &StepRun) {
        let now = self.now;
        for key in run.keys() {
            let st = self.breaker(&key).state(now);
            if run.evidence || run.dry_run {
                if matches!(st, St::HalfOpen | St::OpenOrHalfOpen) {
                    self.notes.insert(
                        key,
                        if run.evidence {
                            "evidence_took_trial"
                        } else {
                            "dry_run_took_trial"
                        },
                    );
                }
                continue;
            }
            if st == St::Open {
                let trial = self.breaker(&key).trial.clone();
                let kind = if trial.is_some() {
                    "second_trial_while_trial_runs"
                } else {
                    "started_while_breaker_open"
                };
                self.checks += 1;
                if self.violate(
                    "I5",
                    kind,
                    format!(
                        "{id}: step {} started while breaker {key} is open (trial: {trial:?})",
                        run.name
                    ),
                ) && let Some(rec) = self.engine_breakers.get(&key).cloned()
                {
                    self.breaker(&key).adopt(&rec, now);
                }
            } else {
                self.checks += 1;
            }
            let t = Trial {
                incident: id.to_string(),
                ladder: run.ladder,
                step: run.step,
                since: now,
                adopted: false,
            };
            if self.breaker(&key).start(t, now) {
                *self.coverage.entry("breaker_trial".into()).or_default() += 1;
            }
        }
    }

    pub(super) fn finished(&mut self, id: &str, e: &Entry, c: &Commit) {
        let now = self.now;
        let Some(run) = self.steps.get(id).cloned() else {
            return;
        };
        let result = c
            .finished
            .iter()
            .find(|f| f.incident == id && f.ladder == run.ladder && f.step == run.step)
            .map(|f| f.result.clone());
        let interrupted = e.kind == EntryKind::StepInterrupted
            || result
                .as_ref()
                .is_none_or(|r| r.get("result").is_some_and(|v| v == "interrupted"));
        if interrupted {
            // An interrupted trial ended with neither result: released (after a cool-down); the
            // verification that follows no longer decides the breaker.
            for key in run.keys() {
                let b = self.breaker(&key);
                if !run.evidence && !run.dry_run && b.is_trial(id, run.ladder, run.step) {
                    b.release(now, false);
                    self.interrupted_trials.insert((key, id.to_string()));
                }
            }
            return;
        }
        let r = result.unwrap_or_default();
        if r.get("ok").and_then(|v| v.as_bool()) != Some(false) {
            return;
        }
        let no_change = r.get("no_change").and_then(|v| v.as_bool()) == Some(true);
        let denied = r.get("trip_breaker").and_then(|v| v.as_bool()) == Some(true);
        let resolved = self.incidents.get(id).is_some_and(|i| i.is_resolved());
        for (key, at_once) in run.keys().into_iter().zip([denied, false]) {
            if run.evidence {
                self.uncounted(key, "breaker_counted_evidence_failure");
            } else if run.dry_run {
                self.uncounted(key, "breaker_counted_dry_run_failure");
            } else if no_change {
                self.uncounted(key.clone(), "breaker_counted_no_change");
                let b = self.breaker(&key);
                if b.is_trial(id, run.ladder, run.step) {
                    b.release(now, true);
                }
            } else {
                if resolved {
                    let why = "breaker_ignored_failure_after_resolve";
                    self.notes.insert(key.clone(), why);
                    self.disputed
                        .entry(key.clone())
                        .or_default()
                        .push((now, why));
                }
                let b = self.breaker(&key);
                let trial = b.is_trial(id, run.ladder, run.step);
                b.failure(now, at_once, trial);
            }
        }
    }

    pub(super) fn verified(&mut self, id: &str) {
        let now = self.now;
        let Some(run) = self.steps.get(id).cloned() else {
            return;
        };
        for key in run.keys() {
            if run.evidence || run.dry_run {
                self.notes.insert(key, "breaker_closed_by_dry_run_success");
                continue;
            }
            let b = self.breaker(&key);
            let trial = b.is_trial(id, run.ladder, run.step);
            b.success(now, trial);
            if self
                .interrupted_trials
                .remove(&(key.clone(), id.to_string()))
            {
                self.notes.insert(key, "interrupted_trial_decided");
            } else if !trial {
                self.notes
                    .insert(key, "breaker_closed_by_non_trial_success");
            }
        }
    }

    pub(super) fn verification_failed(&mut self, id: &str) {
        let now = self.now;
        let Some(run) = self.steps.get(id).cloned() else {
            return;
        };
        for key in run.keys() {
            if run.evidence || run.dry_run {
                self.uncounted(key, "breaker_counted_dry_run_failure");
                continue;
            }
            let b = self.breaker(&key);
            let trial = b.is_trial(id, run.ladder, run.step);
            b.failure(now, false, trial);
            if self
                .interrupted_trials
                .remove(&(key.clone(), id.to_string()))
            {
                self.notes.insert(key, "interrupted_trial_decided");
            }
        }
    }

    /// Trials whose step is no longer running or verifying ended with neither result.
    pub(super) fn release_trials(&mut self) {
        let now = self.now;
        let incidents = &self.incidents;
        for b in self.breakers.values_mut() {
            let Some(t) = b.trial.clone() else { continue };
            let still = incidents.get(&t.incident).is_some_and(|i| match i.phase {
                Phase::Running { ladder, step } => ladder == t.ladder && step == t.step,
                Phase::Verifying { step, .. } | Phase::Verified { step, .. } => {
                    i.ladder == t.ladder && step == t.step
                }
                _ => false,
            });
            if !still {
                b.release(now, false);
            }
        }
    }

    pub(super) fn compare_breakers(&mut self) {
        let now = self.now;
        let keys: BTreeSet<String> = self
            .breakers
            .keys()
            .chain(self.engine_breakers.keys())
            .cloned()
            .collect();
        for key in keys {
            let cfg = self.breaker_cfg(&key);
            let rec = self.engine_breakers.get(&key).cloned().unwrap_or_default();
            let engine = breaker::state(&rec, now, &cfg);
            let reference = self.breaker(&key).state(now);
            let trial = self.breaker(&key).trial.clone();
            let count = self.breaker(&key).count(now);
            self.checks += 1;
            if self.breaker(&key).ambiguous {
                *self
                    .coverage
                    .entry("breaker_failure_while_open".into())
                    .or_default() += 1;
                self.breaker(&key).adopt(&rec, now);
                continue;
            }
            // What explains a difference: this commit's notes, else (for a breaker the engine
            // opened and the reference did not) the last failure the reference did not count.
            let opened_early = matches!(reference, St::Closed | St::HalfOpen)
                && matches!(engine, BreakerState::Open { .. } | BreakerState::HalfOpen)
                && (rec.opened_at.is_some_and(|o| o == now) || reference == St::Closed);
            let closed_early = !reference.allows(engine) && engine == BreakerState::Closed;
            // The last such failure in the window, a known-open kind first (several may
            // explain the difference; a new one shows in histories without the known ones).
            let known_open = &self.known_open;
            let last = |m: &BTreeMap<String, Vec<(Timestamp, &'static str)>>| {
                let in_window: Vec<&'static str> = m
                    .get(&key)
                    .map(|v| {
                        v.iter()
                            .rev()
                            .filter(|(t, _)| *t > now.minus(cfg.within))
                            .map(|(_, why)| *why)
                            .collect()
                    })
                    .unwrap_or_default();
                in_window
                    .iter()
                    .find(|w| known_open.contains(w))
                    .or(in_window.first())
                    .copied()
            };
            let cause = self.notes.get(&key).copied().or_else(|| {
                if opened_early {
                    last(&self.uncounted)
                } else if closed_early {
                    last(&self.disputed)
                } else {
                    None
                }
            });
            // A known-open defect explains what the engine did with this key: follow the engine
            // from here so that later checks stay meaningful.
            if let Some(kind) = cause
                && self.known_open.contains(&kind)
            {
                if !reference.allows(engine) {
                    *self.known.entry(kind).or_default() += 1;
                }
                self.breaker(&key).adopt(&rec, now);
                continue;
            }
            // A running trial whose record expired is harmless until a second step starts
            // (checked at the start).
            if reference.allows(engine)
                || (reference == St::Open && trial.is_some() && engine == BreakerState::HalfOpen)
            {
                continue;
            }
            let kind = cause.unwrap_or(match (reference, engine) {
                (St::Closed, _) => "breaker_opened_early",
                (_, BreakerState::Closed) => "breaker_closed_early",
                (St::HalfOpen, BreakerState::Open { .. }) => "breaker_held_open",
                _ => "breaker_half_open_early",
            });
            let msg = format!(
                "breaker {key} at {now}: engine {} ({rec:?}), reference {reference:?} ({count} counted failure(s) in the window, K={}, trial {trial:?})",
                engine.as_str(),
                cfg.failures
            );
            if self.violate("I5", kind, msg) {
                self.breaker(&key).adopt(&rec, now);
            }
        }
    }
}
