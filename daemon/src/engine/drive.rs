//! Driving due incidents: staleness, the storm guard opening and closing, deadlines ticked,
//! lifted pauses resumed, and each due step put through the gates (pause, storm,
//! infrastructure, namespace, busy target, breakers, budgets) and the ledger: its claim is
//! committed before its action starts, so a step never runs twice.

use std::collections::BTreeMap;

use tokio_util::task::TaskTracker;

use super::Engine;
use crate::adapters::action::ActionRequest;
use crate::adapters::store::{BudgetCharge, Claim, Commit, Pause, StoreError};
use crate::adapters::telemetry::Metrics;
use crate::domain::incident::{Effect, Event, Incident, Phase, StepResult};
use crate::domain::policy::budget::BudgetUse;
use crate::domain::policy::gate::{
    self, BreakerInput, Decision, GateInput, PauseInfo, RefusalKind,
};
use crate::domain::policy::maintenance::{self, Maintenance};
use crate::domain::policy::{Mode, Step, Verify, breaker};
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;
use crate::load::ruleset::Ruleset;

// === impl Engine: drive ===

impl Engine {
    /// Ticks deadlines, resumes lifted pauses, and starts due steps.
    pub(super) async fn drive(&mut self, tasks: &TaskTracker) -> Result<(), StoreError> {
        let rs = self.rules();
        let now = self.clock.now();
        self.check_stale(&rs, now).await?;
        self.send_updates(&rs, now).await?;
        let pauses = self.store.pauses().await?;
        // The policies' windows, then those set through the API (live ones only).
        let windows = self.windows(&rs, now).await?;
        let all = self.cache().await?;
        // Stale incidents (heard nothing for stale_after) hold nothing: no storm, no infrastructure.
        // Kept counted with the active incidents (the storm guard reads it every pass).
        let targets = all.live_targets();
        let infrastructure = all
            .values()
            .find(|i| i.level >= 3 && i.stale_since.is_none())
            .map(|i| i.id.clone());
        let mut acting: BTreeMap<String, String> = all
            .values()
            .filter(|i| i.is_acting())
            .map(|i| (i.target.key(), i.id.clone()))
            .collect();
        // Only incidents with something due are cloned and driven.
        let mut due: Vec<Incident> = all
            .values()
            .filter(|i| {
                matches!(
                    i.phase,
                    Phase::Ready
                        | Phase::Held { .. }
                        | Phase::Suspended { .. }
                        | Phase::AwaitingApproval { .. }
                ) || i.deadline().is_some_and(|d| d <= now)
            })
            .cloned()
            .collect();
        // Oldest deadline first: after a pause in passes (a restart, a store outage) things are
        // decided in the order they fell due, e.g. a trial's failed verification reopens its
        // breaker before another incident's later step asks it.
        due.sort_by_key(|i| (i.deadline().unwrap_or(now), i.opened_at));
        let storm = rs
            .limits
            .storm_guard
            .as_ref()
            .map(|s| (targets as u32, s.max_targets));
        let storm_lines: Vec<String> = match storm {
            Some((n, max)) if n > max => all
                .values()
                .filter(|i| i.stale_since.is_none())
                .map(|i| format!("{} {} level {} ({})", i.id, i.target.key(), i.level, i.rule))
                .collect(),
            _ => Vec::new(),
        };
        let storm_open = self.storm_open().await?;
        if let (Some((n, max)), Some(began)) = (storm, storm_open)
            && n <= max
        {
            self.storm_over(&rs, began, n, max, now).await?;
        }
        for mut inc in due {
            let Some(policy) = rs.policies.get(&inc.policy) else {
                continue;
            };
            let mut before = inc.clone();
            let mut c = self.deferred.take().unwrap_or_default();
            let mut fx = inc.apply(Event::Tick, policy, now);
            if let Some(ev) = self.approval_event(&inc, now).await? {
                fx.extend(inc.apply(ev, policy, now));
            }
            if matches!(inc.phase, Phase::Suspended { .. })
                && covering_pause(&pauses, &windows, &inc, now).is_none()
            {
                fx.extend(inc.apply(Event::Resumed, policy, now));
            }
            if fx.iter().any(Effect::is_breaker) {
                // A failed verification counts against breakers that the next step's gates
                // read: it lands first, or that step would pass a breaker it just opened.
                self.effects(&inc, std::mem::take(&mut fx), &rs, &mut c, now)
                    .await?;
                c.put_incident(inc.clone());
                self.commit(std::mem::take(&mut c)).await?;
                before = inc.clone();
            }
            if let Some((step, spec)) = inc.probe_due(policy, now)
                && !self.probing.contains(&inc.id)
            {
                self.launch_probe(tasks, &rs, &inc, step, spec);
            }
            if let Some((step, action, spec)) = inc.revert_check_due(now)
                && !self.checking.contains(&inc.id)
            {
                let (action, spec) = (action.to_string(), spec.clone());
                self.launch_revert_check(tasks, &inc, step, &action, &spec);
            }
            let mut start = None;
            if let Some((ladder, idx, step)) = inc.due_step(policy)
                && !self.running.contains(&inc.id)
                && !self.held_by_human(&mut inc, policy, now, &mut fx).await
            {
                let mut input = self
                    .gate_input(
                        &rs,
                        &inc,
                        step,
                        (&pauses, &windows),
                        storm,
                        infrastructure.as_ref().filter(|id| **id != inc.id),
                        acting.get(&inc.target.key()).filter(|o| **o != inc.id),
                        now,
                    )
                    .await?;
                for b in &mut input.breakers {
                    // A trial whose step is still running or being verified has not expired,
                    // however long its verification: only a trial that can no longer report
                    // (its incident moved on) expires after a cool-down.
                    if b.record.trial_since.is_some()
                        && let Some(holder) = &b.record.trial_by
                        && acting.values().any(|id| id == holder)
                    {
                        b.record.trial_since = Some(now);
                    }
                }
                match gate::evaluate(&input, now) {
                    Decision::Refuse(r) => {
                        if !(r.kind == RefusalKind::Busy && matches!(inc.phase, Phase::Held { .. }))
                        {
                            Metrics::reason(&self.metrics.refusals, r.kind.as_str());
                            tracing::info!(incident = %inc.id, gate = r.kind.as_str(), reason = %r.reason, "Step refused");
                        }
                        if r.kind == RefusalKind::Storm
                            && self.storm_open().await?.is_none()
                            && infrastructure.is_none()
                        {
                            self.storm_page(&rs, &r.reason, &storm_lines, now, &mut c);
                        }
                        fx.extend(inc.apply(Event::Refused(r), policy, now));
                    }
                    Decision::Allow { trials } => {
                        let dry_run = policy.mode.unwrap_or(self.config.mode) == Mode::DryRun;
                        let req = self.request(&rs, &inc, step);
                        let plan = self
                            .executors
                            .get(&step.action)
                            .map(|e| e.plan(&req))
                            .unwrap_or_else(|| Err(format!("unknown action {}", step.action)));
                        let detail = serde_json::json!({
                            "action": step.action, "dry_run": dry_run,
                            "request": plan.as_ref().ok(), "plan_error": plan.as_ref().err(),
                            "gates": {"budgets": input.budgets, "breakers": input.breakers.iter().map(|b| (b.key.clone(), breaker::state(&b.record, now, &b.config).as_str())).collect::<BTreeMap<_, _>>()},
                        });
                        fx.extend(inc.apply(
                            Event::StepStarted {
                                ladder,
                                step: idx,
                                detail,
                                dry_run,
                            },
                            policy,
                            now,
                        ));
                        c.claims.push(Claim {
                            incident: inc.id.clone(),
                            ladder,
                            step: idx,
                            at: now,
                        });
                        let charged: Vec<BudgetCharge> = input
                            .budgets
                            .iter()
                            .map(|u| BudgetCharge {
                                key: u.key.clone(),
                                at: now,
                                dry_run,
                            })
                            .collect();
                        c.budget_uses.extend(charged.iter().cloned());
                        // A dry run passes a half-open breaker without taking its one trial:
                        // its result counts for nothing, so the trial would only be held up.
                        for t in trials.into_iter().filter(|_| !dry_run) {
                            if let Some(b) = input.breakers.iter().find(|b| b.key == t) {
                                c.breakers
                                    .push((t, breaker::on_trial(&b.record, now, &inc.id)));
                            }
                        }
                        acting.insert(inc.target.key(), inc.id.clone());
                        start = Some((ladder, idx, step.clone(), req, dry_run, plan, charged));
                    }
                }
            }
            if inc == before && fx.is_empty() {
                if !c.is_empty() {
                    self.deferred = Some(c);
                }
                continue;
            }
            self.effects(&inc, fx, &rs, &mut c, now).await?;
            c.put_incident(inc.clone());
            match self.commit(c).await {
                Ok(()) => {}
                Err(StoreError::AlreadyClaimed(what)) => {
                    // Another writer ran this step: never twice. Record and verify instead.
                    tracing::warn!(incident = %inc.id, claim = %what, "Step already claimed in the ledger; not running it again");
                    let mut inc = before;
                    let (ladder, step) = start.as_ref().map(|s| (s.0, s.1)).unwrap_or_default();
                    let fx = inc.apply(
                        Event::StepFinished {
                            ladder,
                            step,
                            result: StepResult::Unknown,
                            detail: serde_json::json!({"ledger": "already claimed"}),
                        },
                        policy,
                        now,
                    );
                    let mut c = Commit::default();
                    self.effects(&inc, fx, &rs, &mut c, now).await?;
                    c.incidents.push(inc);
                    self.commit(c).await?;
                    continue;
                }
                Err(e) => {
                    // The commit may have landed even though it reported an error (the
                    // connection dropped during COMMIT): the next pass re-reads the store and
                    // treats a claimed step with no action in flight as interrupted.
                    if start.is_some() {
                        self.recover_pending = true;
                    }
                    return Err(e);
                }
            }
            if let Some((ladder, idx, step, req, dry_run, plan, charged)) = start {
                self.launch(
                    tasks,
                    inc.id.clone(),
                    ladder,
                    idx,
                    step,
                    req,
                    dry_run,
                    plan,
                    charged,
                );
            }
        }
        self.write_deferred().await
    }

    /// The maintenance windows in force: the policies' and, after them, those set through the
    /// API (one store read). A stored window whose scope no longer reads is left out, loudly:
    /// the API refuses such scopes, so only a hand-edited row can have one.
    async fn windows(&self, rs: &Ruleset, now: Timestamp) -> Result<Vec<Maintenance>, StoreError> {
        let stored = self.store.maintenance_windows(now).await?;
        let mut windows = rs.maintenance.clone();
        for w in stored {
            match w.to_domain() {
                Ok(m) => windows.push(m),
                Err(e) => {
                    tracing::error!(window = w.id, error = %e, "Maintenance window ignored: bad scope")
                }
            }
        }
        Ok(windows)
    }

    /// What the gates read for a step: the pause covering it, the storm, the budgets' use and
    /// the breakers' records (one store read).
    #[allow(clippy::too_many_arguments)]
    async fn gate_input(
        &self,
        rs: &Ruleset,
        inc: &Incident,
        step: &Step,
        (pauses, maintenance): (&[Pause], &[Maintenance]),
        storm: Option<(u32, u32)>,
        infrastructure: Option<&String>,
        busy_with: Option<&String>,
        now: Timestamp,
    ) -> Result<GateInput, StoreError> {
        let dry_run = rs
            .policies
            .get(&inc.policy)
            .and_then(|p| p.mode)
            .unwrap_or(self.config.mode)
            == Mode::DryRun;
        let ns = (!inc.target.namespace.is_empty()).then(|| inc.target.namespace.clone());
        // Evidence only reads: it spends no budget and neither asks nor trips a breaker (it
        // would otherwise take a half-open breaker's one trial and never report on it).
        let evidence = step.verify == Verify::None;
        // A level-3 incident's evidence (the infrastructure checks its page carries) only reads:
        // the storm guard stops workload automation, not it. Evidence of lower levels waits, as
        // it would be followed by a remediation the storm refuses anyway.
        let storm = storm.filter(|_| !(evidence && inc.level >= 3));
        let mut windows = Vec::new();
        let mut breaker_keys = Vec::new();
        if !evidence {
            let action = Scope::action(&step.action, &inc.target).key();
            windows.push((
                action.clone(),
                step.budget.unwrap_or(rs.limits.action_target),
            ));
            windows.push((Scope::rule(&inc.rule).key(), rs.limits.rule));
            if let Some(ns) = &ns {
                windows.push((Scope::namespace(ns).key(), rs.limits.namespace));
            }
            windows.push((Scope::Global.key(), rs.limits.global));
            breaker_keys.push((action, rs.limits.breaker_target));
            breaker_keys.push((Scope::Global.key(), rs.limits.breaker_global));
        }
        let (counts, records) = self
            .store
            .gate_reads(
                windows
                    .iter()
                    .map(|(k, w)| (k.clone(), now.minus(w.per)))
                    .collect(),
                dry_run,
                breaker_keys.iter().map(|(k, _)| k.clone()).collect(),
            )
            .await?;
        let budgets = windows
            .into_iter()
            .zip(counts)
            .map(|((key, window), used)| BudgetUse { key, window, used })
            .collect();
        let breakers = breaker_keys
            .into_iter()
            .zip(records)
            .map(|((key, config), record)| BreakerInput {
                key,
                record,
                config,
            })
            .collect();
        Ok(GateInput {
            paused: covering_pause(pauses, maintenance, inc, now),
            storm,
            infrastructure: infrastructure.cloned(),
            namespace: ns.map(|n| {
                let ok = rs.limits.namespaces.contains(&n);
                (n, ok)
            }),
            busy_with: busy_with.cloned(),
            breakers,
            budgets,
        })
    }

    /// A step's request for an incident, with its template variables (see
    /// [`ActionRequest::for_step`]).
    pub(super) fn request(&self, rs: &Ruleset, inc: &Incident, step: &Step) -> ActionRequest {
        let mut req = ActionRequest::for_step(
            &inc.id,
            inc.level,
            &inc.rule,
            &inc.target,
            &inc.labels,
            &rs.vars,
            step,
        );
        // The Kubernetes actions read the policy's `gitops:` choice from here.
        let gitops = rs.policies.get(&inc.policy).map(|p| p.gitops);
        req.vars.insert(
            crate::adapters::action::kubernetes::GITOPS_VAR.into(),
            gitops.unwrap_or_default().as_str().into(),
        );
        req
    }
}

/// The pause that holds an incident (global, its rule's or its namespace's), if any; else an
/// open maintenance window covering it, which holds it the same way until the window ends.
fn covering_pause(
    pauses: &[Pause],
    windows: &[Maintenance],
    inc: &Incident,
    now: Timestamp,
) -> Option<PauseInfo> {
    let scopes = [
        Scope::Global.key(),
        Scope::rule(&inc.rule).key(),
        Scope::namespace(&inc.target.namespace).key(),
    ];
    pauses
        .iter()
        .find(|p| scopes.contains(&p.scope))
        .map(|p| PauseInfo {
            scope: p.scope.clone(),
            reason: p.reason.clone(),
            author: p.author.clone(),
        })
        .or_else(|| {
            let (w, reason) =
                maintenance::covering(windows, &inc.rule, &inc.target.namespace, now)?;
            Some(PauseInfo {
                scope: w.scope.key(),
                reason,
                author: "maintenance".into(),
            })
        })
}
