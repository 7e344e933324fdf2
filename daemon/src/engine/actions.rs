//! What runs in the background once a step is claimed: its action (a dry run or for real, a
//! panic becoming a failed outcome) and its verification's probe; and recording what they
//! report (a finished step, a probe's value) or, after a restart, that a step was interrupted.

use tokio_util::task::TaskTracker;

use super::{Done, Engine, Msg};
use crate::adapters::action::{ActionRequest, Outcome};
use crate::adapters::store::{BudgetCharge, Commit, Finished, Release, StoreError};
use crate::domain::incident::{Event, Incident, Phase, Probe, StepResult};
use crate::domain::policy::{Step, Verify};
use crate::domain::redact::{redact, redact_json};
use crate::load::ruleset::Ruleset;

// === impl Engine: actions ===

impl Engine {
    /// Runs a claimed step's action in the background (a dry run when `dry_run`); its outcome
    /// comes back as [`Msg::Step`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn launch(
        &mut self,
        tasks: &TaskTracker,
        incident: String,
        ladder: u8,
        step: usize,
        spec: Step,
        req: ActionRequest,
        dry_run: bool,
        plan: Result<serde_json::Value, String>,
        charged: Vec<BudgetCharge>,
    ) {
        self.running.insert(incident.clone());
        let exec = self.executors.get(&spec.action).cloned();
        let tx = self.done_tx.clone();
        let wake = self.wake.clone();
        let span = tracing::info_span!("step", incident = %incident, step = %spec.name, action = %spec.action);
        tasks.spawn(tracing::Instrument::instrument(
            async move {
                let outcome = match (dry_run, plan, exec) {
                    (_, Err(e), _) => Outcome::failed(
                        false,
                        format!("cannot build the request: {e}"),
                        serde_json::Value::Null,
                    ),
                    (true, Ok(_), Some(exec)) => unwound(exec.dry_run(&req)).await,
                    (true, Ok(p), None) => {
                        Outcome::dry_run("dry-run: recorded the request, sent nothing", p)
                    }
                    (false, Ok(_), Some(exec)) => unwound(exec.execute(&req)).await,
                    (false, Ok(_), None) => Outcome::failed(
                        false,
                        format!("unknown action {}", spec.action),
                        serde_json::Value::Null,
                    ),
                };
                let _ = tx
                    .send(Msg::Step(Done {
                        incident,
                        ladder,
                        step,
                        action: spec.action.clone(),
                        outcome,
                        charged,
                    }))
                    .await;
                wake.notify_one();
            },
            span,
        ));
    }

    /// Runs a verification's probe in the background (a PromQL query, an HTTP health check);
    /// what it saw comes back as [`Msg::Probe`]. Other verifications need no probe.
    pub(super) fn launch_probe(
        &mut self,
        tasks: &TaskTracker,
        rs: &Ruleset,
        inc: &Incident,
        step: usize,
        spec: &Step,
    ) {
        if let Verify::Http { .. } = &spec.verify {
            return self.launch_http_probe(tasks, rs, inc, step, spec);
        }
        let Verify::Query { query, above, .. } = &spec.verify else {
            return;
        };
        self.probing.insert(inc.id.clone());
        let vars = self.request(rs, inc, spec).vars;
        let rendered =
            crate::domain::template::Template::parse(query).and_then(|t| t.render(&vars));
        let above = *above;
        let source = self.source.clone();
        let tx = self.done_tx.clone();
        let wake = self.wake.clone();
        let incident = inc.id.clone();
        tasks.spawn(async move {
            let probe = match (rendered, source) {
                (Err(e), _) => Probe::NoData(format!("query template: {e}")),
                (Ok(_), None) => Probe::NoData("prometheus_url is not configured".into()),
                (Ok(q), Some(src)) => match src.query(&q).await {
                    Err(e) => Probe::NoData(e.to_string()),
                    Ok(samples) => {
                        let values = samples.iter().map(|s| s.value).filter(|v| !v.is_nan());
                        // The worst series decides: the highest value for a `below` bound.
                        let worst = if above {
                            values.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
                        } else {
                            values.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
                        };
                        match worst {
                            Some(v) => Probe::Value(v),
                            None if samples.is_empty() => {
                                Probe::NoData("query returned no series".into())
                            }
                            None => Probe::NoData("query returned NaN".into()),
                        }
                    }
                },
            };
            let _ = tx
                .send(Msg::Probe {
                    incident,
                    step,
                    probe,
                })
                .await;
            wake.notify_one();
        });
    }

    /// Runs an HTTP verification's check: the URL rendered, refused unless in `probe_allow`
    /// (no data: nothing was sent), else one GET whose answer comes back as [`Probe::Http`].
    fn launch_http_probe(
        &mut self,
        tasks: &TaskTracker,
        rs: &Ruleset,
        inc: &Incident,
        step: usize,
        spec: &Step,
    ) {
        let Verify::Http {
            url,
            status,
            body_contains,
            timeout,
            ..
        } = spec.verify.clone()
        else {
            return;
        };
        self.probing.insert(inc.id.clone());
        let vars = self.request(rs, inc, spec).vars;
        let rendered = crate::domain::template::Template::parse(&url).and_then(|t| t.render(&vars));
        let prober = self.executors.prober();
        let tx = self.done_tx.clone();
        let wake = self.wake.clone();
        let incident = inc.id.clone();
        tasks.spawn(async move {
            let probe = match rendered {
                Err(e) => Probe::NoData(format!("url template: {e}")),
                Ok(u) => match prober.get(&u, timeout).await {
                    Err(refused) => Probe::NoData(redact(&refused)),
                    Ok(report) => {
                        let verdict = report.passes(status, body_contains.as_deref());
                        let mut line = report.line();
                        if let Err(why) = &verdict {
                            line.push_str(&format!(" ({why})"));
                        }
                        let mut detail = serde_json::to_value(&report).unwrap_or_default();
                        if let serde_json::Value::Object(m) = &mut detail {
                            // The status is the value the narrative strings together.
                            m.insert("value".into(), report.status.unwrap_or(0).into());
                        }
                        Probe::Http {
                            ok: verdict.is_ok(),
                            line: redact(&line),
                            detail: redact_json(&detail),
                        }
                    }
                },
            };
            let _ = tx
                .send(Msg::Probe {
                    incident,
                    step,
                    probe,
                })
                .await;
            wake.notify_one();
        });
    }

    /// Reads back, in the background, what a verified step wrote into an object a GitOps
    /// reconciler owns (`Executor::revert_check`); what it found comes back as
    /// [`Msg::RevertChecked`].
    pub(super) fn launch_revert_check(
        &mut self,
        tasks: &TaskTracker,
        inc: &Incident,
        step: usize,
        action: &str,
        spec: &serde_json::Value,
    ) {
        let Some(exec) = self.executors.get(action).cloned() else {
            return;
        };
        self.checking.insert(inc.id.clone());
        let (tx, wake, incident, spec) = (
            self.done_tx.clone(),
            self.wake.clone(),
            inc.id.clone(),
            spec.clone(),
        );
        tasks.spawn(async move {
            let reverted = exec.revert_check(&spec).await;
            let _ = tx
                .send(Msg::RevertChecked {
                    incident,
                    step,
                    reverted,
                })
                .await;
            wake.notify_one();
        });
    }

    /// Records what background work reported: a finished step or a probe's value.
    pub(super) async fn handle(&mut self, msg: Msg) -> Result<(), StoreError> {
        match msg {
            Msg::Step(done) => {
                let keep = done.clone();
                let r = self.finish(done).await;
                if r.is_err() {
                    self.unrecorded.push(keep);
                }
                r
            }
            Msg::Silence {
                incident,
                op,
                result,
            } => self.silenced(*incident, op, result).await,
            Msg::RevertChecked {
                incident,
                step,
                reverted,
            } => {
                self.checking.remove(&incident);
                if let Err(e) = &reverted {
                    tracing::warn!(incident = %incident, error = %redact(e), "Reading back a verified step's change failed; reading it again later");
                }
                let event = Event::RevertChecked { step, reverted };
                self.apply_reported(&incident, event).await
            }
            Msg::Probe {
                incident,
                step,
                probe,
            } => {
                self.probing.remove(&incident);
                let rs = self.rules();
                let now = self.clock.now();
                let Some(mut inc) = self.incident(&incident).await? else {
                    return Ok(());
                };
                let Some(policy) = rs.policies.get(&inc.policy) else {
                    return Ok(());
                };
                let fx = inc.apply(Event::Probe { step, probe }, policy, now);
                if fx.is_empty() {
                    return Ok(());
                }
                let mut c = Commit::default();
                self.effects(&inc, fx, &rs, &mut c, now).await?;
                c.incidents.push(inc);
                self.commit(c).await
            }
        }
    }

    /// Applies an event background work reported to incident `id` and commits what changed.
    async fn apply_reported(&mut self, id: &str, event: Event) -> Result<(), StoreError> {
        let rs = self.rules();
        let now = self.clock.now();
        let Some(mut inc) = self.incident(id).await? else {
            return Ok(());
        };
        let Some(policy) = rs.policies.get(&inc.policy) else {
            return Ok(());
        };
        let before = inc.clone();
        let fx = inc.apply(event, policy, now);
        if fx.is_empty() && inc == before {
            return Ok(());
        }
        let mut c = Commit::default();
        self.effects(&inc, fx, &rs, &mut c, now).await?;
        c.incidents.push(inc);
        self.commit(c).await
    }

    /// Records a finished step: its ledger entry, metric and the incident's transition.
    pub(super) async fn finish(&mut self, mut done: Done) -> Result<(), StoreError> {
        self.running.remove(&done.incident);
        // Evidence and answers can carry credentials (log lines, DSNs, headers): they are
        // redacted before anything is logged, stored or paged.
        done.outcome.summary = redact(&done.outcome.summary);
        done.outcome.detail = redact_json(&done.outcome.detail);
        let rs = self.rules();
        let now = self.clock.now();
        let Some(mut inc) = self.incident(&done.incident).await? else {
            return Ok(());
        };
        tracing::info!(incident = %inc.id, action = %done.action, ok = done.outcome.ok, summary = %done.outcome.summary, "Step finished");
        let result = if done.outcome.held {
            StepResult::Held {
                reason: done.outcome.summary.clone(),
            }
        } else if done.outcome.ok {
            StepResult::Ok
        } else if done.outcome.no_change {
            StepResult::NoChange {
                reason: done.outcome.summary.clone(),
            }
        } else {
            StepResult::Failed {
                error: done.outcome.summary.clone(),
                denied: done.outcome.trip_breaker,
            }
        };
        let mut detail = done.outcome.detail.clone();
        if let serde_json::Value::Object(m) = &mut detail {
            m.insert("summary".into(), done.outcome.summary.clone().into());
            m.insert("retryable".into(), done.outcome.retryable.into());
        }
        let mut c = Commit::default();
        if done.outcome.held {
            // Nothing was written: the claim and its budget uses are given back, in the same
            // commit as the hold, so the same step may be claimed again. A crash before this
            // commit leaves the claim unfinished: recorded interrupted, never run again.
            c.released.push(Release {
                incident: inc.id.clone(),
                ladder: done.ladder,
                step: done.step,
                budget_uses: done.charged.clone(),
            });
        } else {
            c.finished.push(Finished {
                incident: inc.id.clone(),
                ladder: done.ladder,
                step: done.step,
                at: now,
                result: serde_json::to_value(&done.outcome).unwrap_or_default(),
            });
        }
        if let Some(policy) = rs.policies.get(&inc.policy) {
            let ok = result == StepResult::Ok && !done.outcome.dry_run;
            let mut fx = inc.apply(
                Event::StepFinished {
                    ladder: done.ladder,
                    step: done.step,
                    result,
                    detail,
                },
                policy,
                now,
            );
            // A change to an object a GitOps reconciler owns is read back while verified.
            if let Some(spec) = done.outcome.detail.get("watch").filter(|_| ok) {
                let watch = Event::WatchRevert {
                    ladder: done.ladder,
                    step: done.step,
                    action: done.action.clone(),
                    spec: spec.clone(),
                };
                fx.extend(inc.apply(watch, policy, now));
            }
            self.effects(&inc, fx, &rs, &mut c, now).await?;
        }
        c.incidents.push(inc);
        self.commit(c).await?;
        // Counted once written: a result written again after a store error counts once.
        self.metrics.action(
            &done.action,
            if done.outcome.held {
                "held"
            } else if done.outcome.dry_run {
                "dry_run"
            } else if done.outcome.ok {
                "ok"
            } else if done.outcome.no_change {
                "no_change"
            } else {
                "failed"
            },
        );
        Ok(())
    }

    /// Steps left running by a dead process: not run again (at most once); verification follows.
    pub(super) async fn recover(&mut self) -> Result<(), StoreError> {
        let rs = self.rules();
        let now = self.clock.now();
        for mut inc in self.store.active_incidents().await? {
            let Phase::Running { ladder, step } = inc.phase else {
                continue;
            };
            // A step this process is running is not interrupted.
            if self.running.contains(&inc.id) {
                continue;
            }
            let Some(policy) = rs.policies.get(&inc.policy) else {
                continue;
            };
            tracing::warn!(incident = %inc.id, ladder, step = %policy.levels.get(&ladder).and_then(|l| l.steps.get(step)).map_or("?", |s| s.name.as_str()), "Step was running when the process stopped; not repeating it");
            let action = policy
                .levels
                .get(&ladder)
                .and_then(|l| l.steps.get(step))
                .map(|s| s.action.clone())
                .unwrap_or_default();
            self.metrics.action(&action, "interrupted");
            let fx = inc.apply(
                Event::StepFinished {
                    ladder,
                    step,
                    result: StepResult::Unknown,
                    detail: serde_json::Value::Null,
                },
                policy,
                now,
            );
            let mut c = Commit::default();
            c.finished.push(Finished {
                incident: inc.id.clone(),
                ladder,
                step,
                at: now,
                result: serde_json::json!({"result": "interrupted"}),
            });
            self.effects(&inc, fx, &rs, &mut c, now).await?;
            c.incidents.push(inc);
            self.commit(c).await?;
        }
        Ok(())
    }
}

/// An action's future whose panic becomes a failed outcome: the engine records it and the ladder
/// goes on, instead of the step staying "running" in memory until a restart. A panic is a bug of
/// remedyd's, so it is logged as an error and counted as a failure.
async fn unwound(f: crate::domain::BoxFuture<'_, Outcome>) -> Outcome {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %msg, "Action panicked; recording it as a failed step");
            Outcome::failed(
                false,
                format!("the action panicked (a remedyd bug): {msg}"),
                serde_json::Value::Null,
            )
        }
    }
}
