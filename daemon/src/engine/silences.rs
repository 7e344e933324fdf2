//! The silences tied to the ladder, carried out: after the pass has driven incidents, each
//! incident whose silence is due (`Incident::silence_due`) gets its request to Alertmanager in
//! the background, and what came of it is committed with the incident when it returns (as a
//! step's result is); incidents resolved since the last pass have theirs expired. Before a due step, a human's silence may hold the ladder (`held_by_human`).
//! On its first pass an engine (this replica just became leader) expires the silences remedyd
//! created and no running incident holds (a crash between the request and the commit, or an
//! incident resolved while no leader could expire its silence).
//!
//! A failure to reach Alertmanager never holds up a step: it is recorded and retried, and the
//! step runs as it would without a silence. Every call is counted
//! (`remedyd_silence_calls_total{op, result}`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{Engine, Msg};
use crate::adapters::silence::Alertmanagers;
use crate::adapters::store::{Commit, StoreError};
use crate::domain::incident::{Effects, HumanSilence, Incident, SilenceOp, SilenceRef};
use crate::domain::policy::{HumanSilences, Policy};
use crate::domain::time::Timestamp;

/// How long the answer to "has a human silenced it?" is reused for one incident. A held
/// incident's step is due on every pass (about one a second) and each check is two or more calls
/// to Alertmanager inside the pass; a human who silences or unsilences sees the ladder follow
/// within this time, which is short next to a silence (minutes to hours).
pub(super) const HUMAN_CHECK_EVERY: Duration = Duration::from_secs(10);

// === impl Engine: silences ===

impl Engine {
    /// Whether a human's silence on the incident's alerts holds its due step (policy
    /// `respect_human_silences: hold`); the hold is recorded in `fx`. When Alertmanager cannot
    /// be asked, nothing holds: a human's silence is not assumed.
    pub(super) async fn held_by_human(
        &mut self,
        inc: &mut Incident,
        policy: &Policy,
        now: Timestamp,
        fx: &mut Effects,
    ) -> bool {
        let (Some(am), Some(spec)) = (self.config.silencer.clone(), &policy.silence) else {
            return false;
        };
        if spec.human != HumanSilences::Hold {
            return false;
        }
        let h = self.human_silences(&am, inc, now).await;
        if h.is_empty() {
            return false;
        }
        fx.extend(inc.held_by_human(&h, now));
        true
    }

    /// Humans' silences on the incident's alerts, asked of Alertmanager at most once per
    /// [`HUMAN_CHECK_EVERY`] per incident (the last answer is reused meanwhile). When
    /// Alertmanager cannot be asked, none: a human's silence is not assumed.
    async fn human_silences(
        &mut self,
        am: &Alertmanagers,
        inc: &Incident,
        now: Timestamp,
    ) -> Vec<HumanSilence> {
        let fresh = |at: &Timestamp| now >= *at && now.since(*at) < HUMAN_CHECK_EVERY;
        if let Some((at, h)) = self.human_checks.get(&inc.id)
            && fresh(at)
        {
            return h.clone();
        }
        let r = am.human_silences(inc).await;
        self.metrics.silence_call("check", r.is_ok());
        let h = r.unwrap_or_else(|e| {
            tracing::warn!(incident = %inc.id, error = %e, "Cannot ask Alertmanager for human silences; the ladder goes on");
            Vec::new()
        });
        // Answers past their time are dropped here: the map holds the incidents checked lately.
        self.human_checks.retain(|_, (at, _)| fresh(at));
        self.human_checks.insert(inc.id.clone(), (now, h.clone()));
        h
    }

    /// Starts the calls for the silences due (create, renew, expire), and the expiry of those of
    /// incidents resolved since the last pass, each in the background: the pass never waits for
    /// Alertmanager. What comes of each is committed with its incident when it returns
    /// ([`Msg::Silence`], `silenced`). One call per incident at a time.
    pub(super) async fn silences(&mut self, tasks: &TaskTracker) -> Result<(), StoreError> {
        let Some(am) = self.config.silencer.clone() else {
            self.silence_ending.clear();
            return Ok(());
        };
        let rs = self.rules();
        let now = self.clock.now();
        if !self.silences_swept {
            self.silences_swept = true;
            self.sweep_silences(tasks, &am).await?;
        }
        let mut work: Vec<Incident> = self
            .cache()
            .await?
            .values()
            .filter(|i| i.silence.as_ref().is_some_and(|s| !s.over))
            .cloned()
            .collect();
        let ending = std::mem::take(&mut self.silence_ending);
        for inc in ending {
            if self.silencing.contains(&inc.id) {
                // Its call in flight returns first; then this one (the next pass).
                self.silence_ending.push(inc);
            } else {
                work.push(inc);
            }
        }
        for mut inc in work {
            if self.silencing.contains(&inc.id) {
                continue;
            }
            // A policy that no longer asks for silences (a reload) still ends the ones it made.
            let spec = rs
                .policies
                .get(&inc.policy)
                .and_then(|p| p.silence.clone())
                .unwrap_or_default();
            let Some(op) = inc.silence_due(&spec, now) else {
                continue;
            };
            if op == SilenceOp::Lapse {
                // Nothing to ask Alertmanager: the silence ends at its last `endsAt`.
                let fx = inc.silence_done(&op, Ok(Vec::new()), &spec, now);
                let mut c = Commit::default();
                self.effects(&inc, fx, &rs, &mut c, now).await?;
                c.incidents.push(inc);
                self.commit(c).await?;
                continue;
            }
            self.silencing.insert(inc.id.clone());
            let (am, tx, wake) = (am.clone(), self.done_tx.clone(), self.wake.clone());
            tasks.spawn(async move {
                let refs = inc
                    .silence
                    .as_ref()
                    .map(|s| s.ids.clone())
                    .unwrap_or_default();
                let result = match &op {
                    SilenceOp::Create { ends_at } => am.create(&inc, *ends_at, now).await,
                    SilenceOp::Renew { ends_at } => am.renew(&refs, *ends_at).await,
                    SilenceOp::Expire { .. } => am.expire(&refs).await,
                    SilenceOp::Lapse => Ok(Vec::new()),
                };
                let _ = tx
                    .send(Msg::Silence {
                        incident: Box::new(inc),
                        op,
                        result,
                    })
                    .await;
                wake.notify_one();
            });
        }
        Ok(())
    }

    /// Records what a call to Alertmanager came to, on the incident as it is now (as it was
    /// sent, for one resolved meanwhile and no longer cached), in one commit.
    pub(super) async fn silenced(
        &mut self,
        sent: Incident,
        op: SilenceOp,
        result: Result<Vec<SilenceRef>, String>,
    ) -> Result<(), StoreError> {
        self.silencing.remove(&sent.id);
        self.metrics.silence_call(op.as_str(), result.is_ok());
        match &result {
            Ok(r) => {
                tracing::info!(incident = %sent.id, op = op.as_str(), silences = r.len(), "Alertmanager silence")
            }
            Err(e) => {
                tracing::warn!(incident = %sent.id, op = op.as_str(), error = %e, "Alertmanager silence failed")
            }
        }
        let rs = self.rules();
        let now = self.clock.now();
        let mut inc = self.incident(&sent.id).await?.unwrap_or(sent);
        let spec = rs
            .policies
            .get(&inc.policy)
            .and_then(|p| p.silence.clone())
            .unwrap_or_default();
        let fx = inc.silence_done(&op, result, &spec, now);
        let mut c = Commit::default();
        self.effects(&inc, fx, &rs, &mut c, now).await?;
        c.incidents.push(inc);
        self.commit(c).await
    }

    /// Expires, in the background, remedyd's active silences that no running incident holds.
    async fn sweep_silences(
        &mut self,
        tasks: &TaskTracker,
        am: &Arc<Alertmanagers>,
    ) -> Result<(), StoreError> {
        let held: BTreeSet<String> = self
            .cache()
            .await?
            .values()
            .flat_map(Incident::own_silences)
            .collect();
        let (am, metrics) = (am.clone(), self.metrics.clone());
        tasks.spawn(async move {
            let ours = am.ours().await;
            metrics.silence_call("sweep", ours.is_ok());
            let ours = match ours {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot list Alertmanager's silences; forgotten ones lapse at their end");
                    return;
                }
            };
            for (id, incident) in ours.into_iter().filter(|(id, _)| !held.contains(id)) {
                let r = am.expire_one(&id, None).await;
                metrics.silence_call("expire", r.is_ok());
                match r {
                    Ok(()) => {
                        tracing::info!(silence = %id, incident = %incident, "Expired a silence remedyd had forgotten")
                    }
                    Err(e) => {
                        tracing::warn!(silence = %id, incident = %incident, error = %e, "Cannot expire a forgotten silence")
                    }
                }
            }
        });
        Ok(())
    }

    /// Notes committed incidents that resolved with a live silence: the next `silences` expires it.
    pub(super) fn note_silence_ending(&mut self, committed: &[Incident]) {
        self.silence_ending
            .extend(committed.iter().filter(|i| silence_ending(i)).cloned());
    }
}

/// Whether a committed incident's silence is to be expired: it resolved with its silence still
/// running.
pub(super) fn silence_ending(i: &Incident) -> bool {
    i.is_resolved() && i.silence.as_ref().is_some_and(|s| !s.over)
}
