//! The invariants I1–I7 of issue 10, as made precise by the engine's semantics, checked over the
//! fact log after every event (I8, the restart, is in `restart.rs`). The model keeps only what an
//! invariant needs: the incidents as committed, a reference budget per scope, a reference breaker
//! per key, the outbox rows, and a mirror of the alerts each incident has heard.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use remedyd::adapters::escalate::NotificationKind;
use remedyd::adapters::store::{Claim, Commit, IngestResult};
use remedyd::domain::incident::{Entry, EntryKind, Incident, Phase};
use remedyd::domain::policy::Mode;
use remedyd::domain::policy::breaker::BreakerRecord;
use remedyd::domain::policy::{BreakerConfig, Window};
use remedyd::domain::signal::Signal;
use remedyd::domain::time::Timestamp;
use remedyd::load::ruleset::Ruleset;

use super::breaker::RefBreaker;
use super::spy::{Call, Fact};

mod breakers;
mod lifecycle;
mod mirror;
mod pages;

use mirror::Mirror;

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
                Fact::OutboxSuperseded(ids) => self.outbox_superseded(&ids),
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
                        .any(|(i, e)| *i == inc.id && e.kind == EntryKind::ResolvedByHand);
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
            *self.coverage.entry(e.kind.to_string()).or_default() += 1;
            match e.kind {
                EntryKind::StepStarted => {
                    self.started(id, e, &c, &mut expected_uses, &mut evidence_claims)
                }
                EntryKind::StepOk
                | EntryKind::StepFailed
                | EntryKind::StepInterrupted
                | EntryKind::StepFinished
                | EntryKind::StepRefused => self.finished(id, e, &c),
                EntryKind::Verified => self.verified(id),
                EntryKind::VerificationFailed => self.verification_failed(id),
                EntryKind::Escalated | EntryKind::Suspended | EntryKind::Stale => {
                    escalations.push((id.clone(), e.clone()))
                }
                _ => {}
            }
        }
        // I3: the uses written are exactly those of the remediation steps started.
        let mut got: Vec<(String, bool)> = c
            .budget_uses
            .iter()
            .map(|u| (u.key.clone(), u.dry_run))
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
        let Some(&Claim { ladder, step, .. }) = c.claims.iter().find(|cl| cl.incident == id) else {
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
        // The storm guard stops workload automation; a level-3 incident's evidence step only
        // reads (the infrastructure checks its page carries), and runs through a storm.
        if let Some(sg) = self
            .rs
            .limits
            .storm_guard
            .clone()
            .filter(|_| !(evidence && inc.level >= 3))
        {
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
        self.breaker_start(id, &run);
        self.steps.insert(id.to_string(), run);
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

    // === end of event ===

    /// The checks on the state at rest, after the event.
    pub fn end_of_event(&mut self, route_up: &dyn Fn(&str) -> bool) {
        self.notes.clear();
        self.mirror.recent.clear();
        self.mirror.resolved_now.clear();
        self.stale_at_rest();
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
        self.pages_at_rest(route_up);
        self.compare_breakers();
    }
}
