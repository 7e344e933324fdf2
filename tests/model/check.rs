//! The invariants I1–I7 of issue 10, as made precise by the engine's semantics, checked over the
//! fact log after every event (I8, the restart, is in `restart.rs`). The model keeps only what an
//! invariant needs: the incidents as committed, a reference budget per scope, a reference breaker
//! per key, the outbox rows, and a mirror of the alerts each incident has heard.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use remedyd::clock::Timestamp;
use remedyd::config::Mode;
use remedyd::escalate::NotificationKind;
use remedyd::incident::{Entry, Incident, Phase};
use remedyd::policy::breaker::{self, BreakerRecord, BreakerState};
use remedyd::policy::{BreakerConfig, Window};
use remedyd::ruleset::Ruleset;
use remedyd::signal::{Signal, Status as SignalStatus};
use remedyd::store::{Commit, IngestResult};

use super::breaker::{RefBreaker, St, Trial};
use super::spy::{Call, Fact};

/// A broken invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// `I1` … `I8`, or `harness` when the harness itself is wrong.
    pub invariant: &'static str,
    /// Which check (stable name, used by `KNOWN_OPEN` and regression files).
    pub kind: &'static str,
    /// What happened, with the values.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.invariant, self.kind, self.message)
    }
}

/// The step an incident last started.
#[derive(Clone, Debug)]
struct StepRun {
    ladder: u8,
    step: usize,
    name: String,
    action: String,
    evidence: bool,
    dry_run: bool,
    target: String,
    called: bool,
}

impl StepRun {
    fn keys(&self) -> [String; 2] {
        [
            format!("action:{}:{}", self.action, self.target),
            "global".into(),
        ]
    }
}

/// One outbox row (ids are given in enqueue order, from 1).
#[derive(Clone, Debug)]
struct Row {
    route: String,
    event: NotificationKind,
    dedup: String,
    incident: String,
    next_at: Timestamp,
    done: bool,
}

/// The alerts each (rule, target) has heard, as the engine hears them: duplicates (same
/// fingerprint, startsAt and status) are dropped at ingest, a re-sent alert keeps its first
/// start.
#[derive(Default)]
struct Mirror {
    seen: BTreeSet<(String, i64, bool)>,
    active: BTreeMap<(String, String), BTreeMap<String, (u8, Timestamp)>>,
    /// Firing alerts heard during the current event (an upgrade may use one that resolved in
    /// the same batch when `for` is zero).
    recent: Vec<(String, String, u8, Timestamp)>,
    /// When a firing alert was last received, stored or re-sent (what `stale_after` counts).
    heard: BTreeMap<String, Timestamp>,
    /// Whether the last stored signal of each fingerprint was a resolve.
    resolved: BTreeMap<String, bool>,
    /// Fingerprints resolved during the current event.
    resolved_now: BTreeSet<String>,
}

impl Mirror {
    /// Returns how many signals are new (not duplicates).
    fn ingest(&mut self, signals: &[Signal], rs: &Ruleset, now: Timestamp) -> usize {
        let mut stored = 0;
        for s in signals {
            let firing = s.status == SignalStatus::Firing;
            if firing {
                self.heard.insert(s.fingerprint.clone(), now);
            }
            if !self
                .seen
                .insert((s.fingerprint.clone(), s.starts_at.0, firing))
            {
                continue;
            }
            stored += 1;
            self.resolved.insert(s.fingerprint.clone(), !firing);
            if !firing {
                self.resolved_now.insert(s.fingerprint.clone());
            }
            for rule in &rs.rules {
                let Ok(Some(m)) = rule.evaluate(s) else {
                    continue;
                };
                let key = (m.rule.clone(), m.target.key());
                if firing {
                    self.active
                        .entry(key.clone())
                        .or_default()
                        .entry(s.fingerprint.clone())
                        .or_insert((m.level, s.starts_at))
                        .0 = m.level;
                    self.recent.push((key.0, key.1, m.level, s.starts_at));
                } else if let Some(a) = self.active.get_mut(&key) {
                    a.remove(&s.fingerprint);
                }
            }
        }
        stored
    }
}

/// The model and its checks.
pub struct Model {
    known_open: Vec<&'static str>,
    /// Checks evaluated.
    pub checks: u64,
    /// Violations of known-open defects, by kind (not failures).
    pub known: BTreeMap<&'static str, u64>,
    /// Violations of anything else (the first one ends the history).
    pub violations: Vec<Violation>,
    /// What the history exercised: timeline entries by kind, trials, page retries.
    pub coverage: BTreeMap<String, u64>,
    now: Timestamp,
    rs: Arc<Ruleset>,
    mode: Mode,
    generation: u32,
    incidents: BTreeMap<String, Incident>,
    steps: BTreeMap<String, StepRun>,
    claimed: BTreeSet<(String, u8, usize)>,
    in_flight: BTreeMap<usize, (u32, String)>,
    pauses: BTreeSet<String>,
    uses: BTreeMap<(String, bool), Vec<Timestamp>>,
    breakers: BTreeMap<String, RefBreaker>,
    engine_breakers: BTreeMap<String, BreakerRecord>,
    rows: Vec<Row>,
    storm_open: Option<String>,
    mirror: Mirror,
    /// Per commit: what explains a breaker difference on a key.
    notes: BTreeMap<String, &'static str>,
    /// Failures the reference did not count, per key (time, why): what explains a breaker the
    /// engine opened early.
    uncounted: BTreeMap<String, Vec<(Timestamp, &'static str)>>,
    /// Failures the reference counted where the engine may not have (time, why): what explains
    /// a breaker the engine left closed.
    disputed: BTreeMap<String, Vec<(Timestamp, &'static str)>>,
    /// `stale_after` of the history.
    stale_after: Duration,
    /// Incidents a person asked to resolve by hand.
    resolve_requested: BTreeSet<String>,
    /// Since when each incident should be stale (the engine checks once a minute).
    stale_due: BTreeMap<String, Timestamp>,
    /// (breaker key, incident) of trials released because a restart interrupted their step.
    interrupted_trials: BTreeSet<(String, String)>,
}

fn covering_pause<'a>(pauses: &'a BTreeSet<String>, inc: &Incident) -> Option<&'a String> {
    let scopes = [
        "global".to_string(),
        format!("rule:{}", inc.rule),
        format!("namespace:{}", inc.target.namespace),
    ];
    pauses.iter().find(|p| scopes.contains(p))
}

impl Model {
    /// A model for a history starting on `rs` in `mode`; violations of `known_open` kinds are
    /// counted, not reported.
    pub fn new(
        rs: Arc<Ruleset>,
        mode: Mode,
        stale_after: Duration,
        known_open: &[&'static str],
    ) -> Self {
        Self {
            known_open: known_open.to_vec(),
            checks: 0,
            known: BTreeMap::new(),
            violations: Vec::new(),
            coverage: BTreeMap::new(),
            now: Timestamp(0),
            rs,
            mode,
            generation: 0,
            incidents: BTreeMap::new(),
            steps: BTreeMap::new(),
            claimed: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            pauses: BTreeSet::new(),
            uses: BTreeMap::new(),
            breakers: BTreeMap::new(),
            engine_breakers: BTreeMap::new(),
            rows: Vec::new(),
            storm_open: None,
            mirror: Mirror::default(),
            notes: BTreeMap::new(),
            uncounted: BTreeMap::new(),
            disputed: BTreeMap::new(),
            stale_after,
            resolve_requested: BTreeSet::new(),
            stale_due: BTreeMap::new(),
            interrupted_trials: BTreeSet::new(),
        }
    }

    /// Records a violation unless its kind is known-open; returns whether it was known-open.
    pub fn violate(
        &mut self,
        invariant: &'static str,
        kind: &'static str,
        message: String,
    ) -> bool {
        if self.known_open.contains(&kind) {
            *self.known.entry(kind).or_default() += 1;
            return true;
        }
        self.violations.push(Violation {
            invariant,
            kind,
            message,
        });
        false
    }

    fn check(
        &mut self,
        ok: bool,
        invariant: &'static str,
        kind: &'static str,
        message: impl FnOnce() -> String,
    ) {
        self.checks += 1;
        if !ok {
            self.violate(invariant, kind, message());
        }
    }

    /// The instant of the current event.
    pub fn at(&mut self, now: Timestamp) {
        self.now = now;
    }

    /// A reload replaced the ruleset.
    pub fn reload(&mut self, rs: Arc<Ruleset>) {
        self.rs = rs;
    }

    /// The engine restarted: calls of earlier engines no longer run anyone's step.
    pub fn restart(&mut self) {
        self.generation += 1;
    }

    /// Incidents as committed.
    pub fn incidents(&self) -> &BTreeMap<String, Incident> {
        &self.incidents
    }

    /// Budget scope keys worth reading back from the store.
    pub fn budget_keys(&self) -> Vec<String> {
        let mut keys: BTreeSet<String> = self.uses.keys().map(|(k, _)| k.clone()).collect();
        keys.insert("global".into());
        for i in self.incidents.values() {
            for a in super::history::ACTIONS {
                keys.insert(format!("action:{a}:{}", i.target.key()));
            }
            keys.insert(format!("rule:{}", i.rule));
            if !i.target.namespace.is_empty() {
                keys.insert(format!("namespace:{}", i.target.namespace));
            }
        }
        keys.into_iter().collect()
    }

    fn breaker_cfg(&self, key: &str) -> BreakerConfig {
        if key == "global" {
            self.rs.limits.breaker_global
        } else {
            self.rs.limits.breaker_target
        }
    }

    fn breaker(&mut self, key: &str) -> &mut RefBreaker {
        let cfg = self.breaker_cfg(key);
        self.breakers
            .entry(key.to_string())
            .or_insert_with(|| RefBreaker::new(cfg))
    }

    /// A failure the reference does not count (evidence, dry-run, precondition refusal).
    fn uncounted(&mut self, key: String, why: &'static str) {
        self.uncounted
            .entry(key.clone())
            .or_default()
            .push((self.now, why));
        self.notes.insert(key, why);
    }

    fn active(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().filter(|i| !i.is_resolved())
    }

    fn storm_targets(&self) -> usize {
        self.active()
            .filter(|i| i.stale_since.is_none())
            .map(|i| i.target.key())
            .collect::<BTreeSet<_>>()
            .len()
    }

    fn storm_active(&self) -> bool {
        self.rs
            .limits
            .storm_guard
            .as_ref()
            .is_some_and(|s| self.storm_targets() > s.max_targets as usize)
    }

    /// Processes the facts of one event, in order.
    pub fn facts(&mut self, facts: Vec<Fact>) {
        for f in facts {
            match f {
                Fact::Ingest(signals, result) => self.ingest(&signals, result),
                Fact::Commit(c) => self.commit(*c),
                Fact::Call(call) => self.call(call),
                Fact::Returned(seq) => {
                    self.in_flight.remove(&seq);
                }
                Fact::OutboxDue(items) => {
                    for (id, route) in items {
                        let ok = self
                            .rows
                            .get((id - 1) as usize)
                            .is_some_and(|r| r.route == route);
                        self.check(ok, "harness", "outbox_ids", || {
                            format!("outbox row {id} ({route}) is not the {id}th page enqueued")
                        });
                    }
                }
                Fact::OutboxDone(id, delivered) => self.outbox_done(id, delivered),
                Fact::OutboxRetry(id, at) => {
                    *self.coverage.entry("page_retry".into()).or_default() += 1;
                    if let Some(r) = self.rows.get_mut((id - 1) as usize) {
                        r.next_at = at;
                    }
                }
                Fact::Pause(s) => {
                    self.pauses.insert(s);
                }
                Fact::Resume(s) => {
                    self.pauses.remove(&s);
                }
                Fact::ResolveRequested(id) => {
                    self.resolve_requested.insert(id);
                }
            }
        }
    }

    fn ingest(&mut self, signals: &[Signal], result: IngestResult) {
        let rs = self.rs.clone();
        let stored = self.mirror.ingest(signals, &rs, self.now);
        self.check(stored == result.stored, "harness", "ingest_dedup", || {
            format!(
                "ingest stored {} of {} signals; the mirror expected {stored} (dedup on fingerprint, startsAt, status)",
                result.stored,
                signals.len()
            )
        });
    }

    // === commits ===

    fn commit(&mut self, c: Commit) {
        self.notes.clear();
        let mut newly_resolved = Vec::new();
        for inc in &c.incidents {
            if let Some(old) = self.incidents.get(&inc.id).cloned() {
                self.check(
                    !old.is_resolved() || inc.is_resolved(),
                    "I2",
                    "resurrected",
                    || format!("{} was resolved and is {:?} again", inc.id, inc.phase),
                );
                if inc.level > old.level {
                    self.level_rise(&old, inc);
                }
                if inc.is_resolved() && !old.is_resolved() {
                    newly_resolved.push(inc.id.clone());
                    let by_hand = c
                        .timeline
                        .iter()
                        .any(|(i, e)| *i == inc.id && e.kind == "resolved_by_hand");
                    self.resolved_how(&old, by_hand);
                }
                if inc.stale_since.is_some() && old.stale_since.is_none() {
                    self.stale_marked(&old);
                }
            } else if inc.is_resolved() {
                newly_resolved.push(inc.id.clone());
            }
            self.incidents.insert(inc.id.clone(), inc.clone());
        }
        for (k, rec) in &c.breakers {
            self.engine_breakers.insert(k.clone(), rec.clone());
        }
        let mut expected_uses: Vec<(String, bool)> = Vec::new();
        let mut evidence_claims = Vec::new();
        let mut escalations: Vec<(String, Entry)> = Vec::new();
        for (id, e) in &c.timeline {
            *self.coverage.entry(e.kind.clone()).or_default() += 1;
            match e.kind.as_str() {
                "step_started" => self.started(id, e, &c, &mut expected_uses, &mut evidence_claims),
                "step_ok" | "step_failed" | "step_interrupted" | "step_finished"
                | "step_refused" => self.finished(id, e, &c),
                "verified" => self.verified(id),
                "verification_failed" => self.verification_failed(id),
                "escalated" | "suspended" | "stale" => escalations.push((id.clone(), e.clone())),
                _ => {}
            }
        }
        // I3: the uses written are exactly those of the remediation steps started.
        let mut got: Vec<(String, bool)> = c
            .budget_uses
            .iter()
            .map(|(k, _, d)| (k.clone(), *d))
            .collect();
        got.sort();
        expected_uses.sort();
        if got != expected_uses {
            let kind = if evidence_claims.is_empty() {
                "budget_uses_mismatch"
            } else {
                "evidence_spent_budget"
            };
            let msg = format!(
                "budget uses written {got:?}, expected {expected_uses:?} (evidence steps started: {evidence_claims:?})"
            );
            self.checks += 1;
            if self.violate("I3", kind, msg) {
                // Known-open: the engine's refusals now depend on uses the reference does not
                // count; adopt them so later checks stay meaningful.
                for (k, d) in got {
                    self.uses.entry((k, d)).or_default().push(self.now);
                }
                for (k, d) in expected_uses {
                    if let Some(v) = self.uses.get_mut(&(k, d)) {
                        v.pop();
                    }
                }
            }
        } else {
            self.checks += 1;
        }
        self.outbox_rows(&c);
        for (id, e) in escalations {
            self.escalation_paged(&id, &e);
        }
        for id in newly_resolved {
            self.resolved_paged(&id);
        }
        self.release_trials();
        self.compare_breakers();
    }

    /// An incident is resolved only by its alerts resolving, or by a person.
    fn resolved_how(&mut self, old: &Incident, by_hand: bool) {
        if by_hand {
            let asked = self.resolve_requested.contains(&old.id);
            self.check(asked, "I1", "resolved_silently", || {
                format!("{} resolved by hand, but nobody asked", old.id)
            });
            return;
        }
        let firing: Vec<&String> = old
            .active
            .keys()
            .filter(|fp| {
                !self.mirror.resolved_now.contains(*fp)
                    && self.mirror.resolved.get(*fp) != Some(&true)
            })
            .collect();
        self.check(firing.is_empty(), "I1", "resolved_silently", || {
            format!(
                "{} resolved while its alerts {firing:?} never resolved and nobody resolved it by hand",
                old.id
            )
        });
    }

    /// When the last firing alert of an incident was heard (its opening, if none).
    fn last_heard(&self, inc: &Incident) -> Timestamp {
        inc.active
            .keys()
            .filter_map(|fp| self.mirror.heard.get(fp).copied())
            .max()
            .unwrap_or(inc.opened_at)
    }

    /// Stale: an Alertmanager-driven incident that heard nothing for `stale_after`.
    fn stale_marked(&mut self, old: &Incident) {
        let now = self.now;
        let polled = self
            .rs
            .rules
            .iter()
            .any(|r| r.name == old.rule && r.polled.is_some());
        let last = self.last_heard(old);
        let after = self.stale_after;
        self.check(
            !polled && now.since(last) >= after,
            "I1",
            "stale_too_early",
            || {
                format!(
                    "{} marked stale at {now}, but an alert was heard at {last} (stale_after {}s{})",
                    old.id,
                    after.as_secs(),
                    if polled { ", and its rule is polled" } else { "" }
                )
            },
        );
    }

    fn level_rise(&mut self, old: &Incident, new: &Incident) {
        let Some(rule) = self.rs.rules.iter().find(|r| r.name == new.rule) else {
            return;
        };
        let for_ = rule.for_;
        let now = self.now;
        let key = (new.rule.clone(), new.target.key());
        let ok_alert = |lvl: u8, starts: Timestamp| {
            lvl >= new.level && (for_.is_zero() || starts.plus(for_) <= now)
        };
        let justified = self
            .mirror
            .active
            .get(&key)
            .is_some_and(|a| a.values().any(|(l, s)| ok_alert(*l, *s)))
            || self
                .mirror
                .recent
                .iter()
                .any(|(r, t, l, s)| *r == key.0 && *t == key.1 && ok_alert(*l, *s));
        let heard: Vec<String> = self
            .mirror
            .active
            .get(&key)
            .map(|a| {
                a.values()
                    .map(|(l, s)| format!("level {l} since {s}"))
                    .collect()
            })
            .unwrap_or_default();
        self.check(justified, "I7", "level_rise_before_for", || {
            format!(
                "{} rose from level {} to {} at {now}, but no level-{} alert has fired for the rule's `for` ({}s); firing: {heard:?}",
                new.id,
                old.level,
                new.level,
                new.level,
                for_.as_secs()
            )
        });
    }

    fn started(
        &mut self,
        id: &str,
        e: &Entry,
        c: &Commit,
        expected_uses: &mut Vec<(String, bool)>,
        evidence_claims: &mut Vec<String>,
    ) {
        let now = self.now;
        let Some(inc) = self.incidents.get(id).cloned() else {
            return;
        };
        let Some((_, ladder, step, _)) = c.claims.iter().find(|cl| cl.0 == id).cloned() else {
            self.check(false, "I2", "step_without_claim", || {
                format!("{id}: a step started without a ledger claim in the same commit")
            });
            return;
        };
        let fresh = self.claimed.insert((id.to_string(), ladder, step));
        self.check(fresh, "I2", "step_claimed_twice", || {
            format!("{id}: ladder {ladder} step {step} claimed twice")
        });
        let Some(policy) = self.rs.policies.get(&inc.policy).cloned() else {
            return;
        };
        let Some(spec) = policy
            .levels
            .get(&ladder)
            .and_then(|l| l.steps.get(step))
            .cloned()
        else {
            return;
        };
        let evidence = spec.action == "evidence";
        let dry = policy.mode.unwrap_or(self.mode) == Mode::DryRun;
        let target = inc.target.key();
        let engine_dry = e.data.get("dry_run").and_then(|v| v.as_bool());
        self.check(engine_dry == Some(dry), "I2", "dry_run_mismatch", || {
            format!(
                "{id}: step {} started with dry_run {engine_dry:?}; policy and config say {dry}",
                spec.name
            )
        });
        // I2: pause, storm guard, namespace allowlist.
        let pause = covering_pause(&self.pauses, &inc).cloned();
        self.check(pause.is_none(), "I2", "step_while_paused", || {
            format!(
                "{id}: step {} started on {target} while pause {pause:?} covers it",
                spec.name
            )
        });
        if let Some(sg) = self.rs.limits.storm_guard.clone() {
            let n = self.storm_targets();
            self.check(n <= sg.max_targets as usize, "I2", "step_during_storm", || {
                format!(
                    "{id}: step {} started while {n} targets are in incident (storm guard max {})",
                    spec.name, sg.max_targets
                )
            });
        }
        let infra = self
            .active()
            .find(|i| i.level >= 3 && i.id != id && i.stale_since.is_none())
            .map(|i| i.id.clone());
        self.check(
            infra.is_none(),
            "I2",
            "step_during_infrastructure_incident",
            || {
                format!(
                    "{id}: step {} started while level-3 incident {infra:?} is open",
                    spec.name
                )
            },
        );
        if !inc.target.namespace.is_empty() {
            let ok = self.rs.limits.namespaces.contains(&inc.target.namespace);
            self.check(ok, "I2", "step_outside_namespaces", || {
                format!(
                    "{id}: step {} started in namespace {}, outside limits.namespaces",
                    spec.name, inc.target.namespace
                )
            });
        }
        // I4: one ladder per target.
        let other = self
            .active()
            .find(|i| i.id != id && i.target.key() == target && i.is_acting())
            .map(|i| format!("{} ({:?})", i.id, i.phase));
        self.check(other.is_none(), "I4", "two_ladders_on_target", || {
            format!(
                "{id}: step {} started on {target} while {other:?} acts on it",
                spec.name
            )
        });
        // I3: every scope has room; starting spends one use in each.
        if evidence {
            evidence_claims.push(format!("{id} {}", spec.name));
        } else {
            let l = &self.rs.limits;
            let mut scopes: Vec<(String, Window)> = vec![
                (
                    format!("action:{}:{target}", spec.action),
                    spec.budget.unwrap_or(l.action_target),
                ),
                (format!("rule:{}", inc.rule), l.rule),
            ];
            if !inc.target.namespace.is_empty() {
                scopes.push((format!("namespace:{}", inc.target.namespace), l.namespace));
            }
            scopes.push(("global".into(), l.global));
            for (key, w) in scopes {
                let list = self.uses.entry((key.clone(), dry)).or_default();
                let used = list.iter().filter(|t| **t > now.minus(w.per)).count();
                list.push(now);
                expected_uses.push((key.clone(), dry));
                self.check(used < w.max as usize, "I3", "budget_exceeded", || {
                    format!(
                        "{id}: step {} started with {key} at {used}/{} per {}s ({})",
                        spec.name,
                        w.max,
                        w.per.as_secs(),
                        if dry { "dry-run" } else { "enforce" }
                    )
                });
            }
        }
        // I5: an open breaker refuses remediation; the first one through a half-open breaker
        // is its trial. Evidence and dry-run steps never take the trial.
        let run = StepRun {
            ladder,
            step,
            name: spec.name.clone(),
            action: spec.action.clone(),
            evidence,
            dry_run: dry,
            target: target.clone(),
            called: false,
        };
        for key in run.keys() {
            let st = self.breaker(&key).state(now);
            if evidence || dry {
                if matches!(st, St::HalfOpen | St::OpenOrHalfOpen) {
                    self.notes.insert(
                        key,
                        if evidence {
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
                        spec.name
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
                ladder,
                step,
                since: now,
                adopted: false,
            };
            if self.breaker(&key).start(t, now) {
                *self.coverage.entry("breaker_trial".into()).or_default() += 1;
            }
        }
        self.steps.insert(id.to_string(), run);
    }

    fn finished(&mut self, id: &str, e: &Entry, c: &Commit) {
        let now = self.now;
        let Some(run) = self.steps.get(id).cloned() else {
            return;
        };
        let result = c
            .finished
            .iter()
            .find(|f| f.0 == id && f.1 == run.ladder && f.2 == run.step)
            .map(|f| f.4.clone());
        let interrupted = e.kind == "step_interrupted"
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

    fn verified(&mut self, id: &str) {
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

    fn verification_failed(&mut self, id: &str) {
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
    fn release_trials(&mut self) {
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

    fn compare_breakers(&mut self) {
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

    // === executors ===

    fn call(&mut self, call: Call) {
        self.in_flight
            .insert(call.seq, (call.generation, call.incident.clone()));
        let run = self.steps.get_mut(&call.incident);
        let (ok, dry) = match run {
            Some(r) if !r.called && r.name == call.step => {
                r.called = true;
                (true, r.dry_run)
            }
            _ => (false, call.dry_run),
        };
        self.check(ok, "I2", "call_without_claim", || {
            format!(
                "{}: executor {} called for step {} with no claimed step waiting for it",
                call.incident, call.action, call.step
            )
        });
        self.check(call.dry_run || !dry, "I2", "execute_in_dry_run", || {
            format!(
                "{}: step {} ({}) reached execute in dry-run",
                call.incident, call.step, call.action
            )
        });
    }

    // === pages ===

    fn outbox_rows(&mut self, c: &Commit) {
        for (route, n) in &c.outbox {
            self.rows.push(Row {
                route: route.clone(),
                event: n.event,
                dedup: n.dedup_key.clone(),
                incident: n.incident.clone(),
                next_at: Timestamp(0),
                done: false,
            });
            if n.dedup_key.starts_with("remedyd/storm/") {
                let storm_route = self.rs.limits.storm_guard.as_ref().map(|s| s.route.clone());
                if n.event == NotificationKind::Trigger {
                    let open = self.storm_open.clone();
                    self.check(open.is_none(), "I6", "second_storm_page", || {
                        format!(
                            "storm page {} while storm page {open:?} is not resolved",
                            n.dedup_key
                        )
                    });
                    self.check(
                        storm_route.as_ref() == Some(route),
                        "I6",
                        "storm_page_route",
                        || format!("storm page to {route}, storm_guard.route is {storm_route:?}"),
                    );
                    self.storm_open = Some(n.dedup_key.clone());
                } else if self.storm_open.as_ref() == Some(&n.dedup_key) {
                    self.storm_open = None;
                }
                continue;
            }
            if n.event == NotificationKind::Trigger {
                let count = self
                    .rows
                    .iter()
                    .filter(|r| {
                        r.event == NotificationKind::Trigger
                            && r.incident == n.incident
                            && r.route == *route
                    })
                    .count();
                self.check(count <= 1, "I6", "duplicate_trigger", || {
                    format!("{}: trigger #{count} to {route} ({})", n.incident, n.reason)
                });
            }
        }
    }

    fn escalation_paged(&mut self, id: &str, e: &Entry) {
        let route = match e.kind.as_str() {
            "suspended" | "stale" => self.incidents.get(id).and_then(|i| {
                let p = self.rs.policies.get(&i.policy)?;
                p.levels.get(&i.ladder).map(|l| l.escalate_to.clone())
            }),
            _ => e
                .data
                .get("route")
                .and_then(|r| r.as_str())
                .map(str::to_string),
        };
        match route {
            Some(route) if !route.is_empty() => {
                let paged = self.rows.iter().any(|r| {
                    r.event == NotificationKind::Trigger && r.incident == id && r.route == route
                });
                self.check(paged, "I6", "missing_trigger", || {
                    format!(
                        "{id}: {} ({}) without a trigger to {route}",
                        e.kind, e.message
                    )
                });
            }
            // Refused by the storm guard: the storm page covers it, unless a level-3 incident
            // is open (its own page goes to the platform team, and the engine sends no storm
            // page on top).
            _ if e.data.get("kind").is_some_and(|k| k == "storm")
                && self.storm_active()
                && !self.active().any(|i| i.level >= 3) =>
            {
                let open = self.storm_open.is_some();
                self.check(open, "I6", "storm_refusal_without_page", || {
                    format!(
                        "{id}: escalated by the storm guard with no storm page out ({})",
                        e.message
                    )
                });
            }
            _ => {}
        }
    }

    fn resolved_paged(&mut self, id: &str) {
        let routes: BTreeSet<String> = self
            .rows
            .iter()
            .filter(|r| r.event == NotificationKind::Trigger && r.incident == id)
            .map(|r| r.route.clone())
            .collect();
        for route in routes {
            let resolved = self.rows.iter().any(|r| {
                r.event == NotificationKind::Resolve && r.incident == id && r.route == route
            });
            self.check(resolved, "I6", "missing_resolve", || {
                format!("{id} resolved without a resolve to paged route {route}")
            });
        }
    }

    fn outbox_done(&mut self, id: i64, delivered: bool) {
        let idx = (id - 1) as usize;
        let Some(row) = self.rows.get(idx).cloned() else {
            return;
        };
        self.rows[idx].done = true;
        if !delivered {
            return;
        }
        let waiting: Vec<(usize, NotificationKind)> = self.rows[..idx]
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.done && r.dedup == row.dedup && r.route == row.route)
            .map(|(i, r)| (i + 1, r.event))
            .collect();
        let kind = if row.event == NotificationKind::Resolve
            && waiting.iter().any(|(_, k)| *k == NotificationKind::Trigger)
        {
            "resolve_before_trigger"
        } else {
            "out_of_order"
        };
        self.check(waiting.is_empty(), "I6", kind, || {
            format!(
                "{} {:?} to {} (row {id}) delivered before rows {waiting:?} of the same incident and route",
                row.incident, row.event, row.route
            )
        });
    }

    /// Whether a storm page is out and not resolved.
    pub fn storm_paged(&self) -> bool {
        self.storm_open.is_some()
    }

    /// Whether a page is due (the outbox has work at this instant).
    pub fn outbox_due(&self) -> bool {
        self.rows.iter().any(|r| !r.done && r.next_at <= self.now)
    }

    // === end of event ===

    /// The checks on the state at rest, after the event.
    pub fn end_of_event(&mut self, route_up: &dyn Fn(&str) -> bool) {
        let now = self.now;
        self.notes.clear();
        self.mirror.recent.clear();
        self.mirror.resolved_now.clear();
        // Stale: an Alertmanager-driven incident whose alerts (those still firing) were not heard
        // for stale_after, and that did not change meanwhile, is stale within the engine's
        // minute of checking (unless a step is running).
        let after = self.stale_after;
        let silent: BTreeMap<String, (Timestamp, Timestamp)> = self
            .active()
            .filter(|i| {
                i.stale_since.is_none()
                    && !matches!(i.phase, Phase::Running { .. })
                    && now.since(i.updated_at) >= after
                    && !self
                        .rs
                        .rules
                        .iter()
                        .any(|r| r.name == i.rule && r.polled.is_some())
            })
            .map(|i| (i.id.clone(), (self.last_heard(i), i.updated_at)))
            .filter(|(_, (last, _))| now.since(*last) >= after)
            .collect();
        self.stale_due.retain(|id, _| silent.contains_key(id));
        let mut overdue = Vec::new();
        for (id, (last, updated)) in silent {
            let since = *self.stale_due.entry(id.clone()).or_insert(now);
            if now.since(since) >= Duration::from_secs(60) {
                overdue.push((id, last, updated));
            }
        }
        let after = after.as_secs();
        for (id, last, updated) in overdue {
            self.check(false, "I1", "stale_not_marked", || {
                format!(
                    "{id} heard nothing since {last} (stale_after {after}s), last changed at {updated}, and is not stale at {now}"
                )
            });
        }
        // I1: a running step is run by someone.
        let running: Vec<(String, Phase)> = self
            .active()
            .filter(|i| matches!(i.phase, Phase::Running { .. }))
            .map(|i| (i.id.clone(), i.phase.clone()))
            .collect();
        for (id, phase) in running {
            let ok = self
                .in_flight
                .values()
                .any(|(g, i)| *g == self.generation && *i == id);
            self.check(ok, "I1", "stuck_step", || {
                format!("{id} is {phase:?} but no executor call of this engine runs it")
            });
        }
        // I4: at most one ladder acts per target.
        let mut acting: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in self.active().filter(|i| i.is_acting()) {
            acting.entry(i.target.key()).or_default().push(i.id.clone());
        }
        for (target, ids) in acting {
            self.check(ids.len() <= 1, "I4", "two_ladders_on_target", || {
                format!("{target}: {ids:?} act on it at once")
            });
        }
        // I6: a route that works is not held up by another.
        let mut stuck = Vec::new();
        for (i, r) in self.rows.iter().enumerate() {
            if r.done || r.next_at > now || !route_up(&r.route) {
                continue;
            }
            let blocked = self.rows[..i]
                .iter()
                .any(|p| !p.done && p.dedup == r.dedup && p.route == r.route);
            if !blocked {
                stuck.push(format!(
                    "row {} {:?} {} to {}",
                    i + 1,
                    r.event,
                    r.incident,
                    r.route
                ));
            }
        }
        self.check(stuck.is_empty(), "I6", "route_held_up", || {
            format!("due pages to working routes not delivered: {stuck:?}")
        });
        // I6: a storm page is resolved when the storm ends.
        let open = self.storm_open.clone();
        let active = self.storm_active();
        let n = self.storm_targets();
        self.check(
            open.is_none() || active,
            "I6",
            "storm_page_unresolved",
            || format!("storm page {open:?} still open with {n} target(s) in incident"),
        );
        self.compare_breakers();
    }
}
