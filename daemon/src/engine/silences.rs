//! The silences tied to the ladder, carried out: after the pass has driven incidents, each
//! incident whose silence is due (`Incident::silence_due`) gets its request to Alertmanager, and
//! what came of it is committed with the incident; incidents resolved since the last pass have
//! theirs expired. Before a due step, a human's silence may hold the ladder (`held_by_human`).
//! On its first pass an engine (this replica just became leader) expires the silences remedyd
//! created and no running incident holds (a crash between the request and the commit, or an
//! incident resolved while no leader could expire its silence).
//!
//! A failure to reach Alertmanager never holds up a step: it is recorded and retried, and the
//! step runs as it would without a silence.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Engine;
use crate::adapters::silence::Alertmanagers;
use crate::adapters::store::{Commit, StoreError};
use crate::domain::incident::{Effects, Incident, SilenceOp};
use crate::domain::policy::{HumanSilences, Policy};
use crate::domain::time::Timestamp;

// === impl Engine: silences ===

impl Engine {
    /// Whether a human's silence on the incident's alerts holds its due step (policy
    /// `respect_human_silences: hold`); the hold is recorded in `fx`. When Alertmanager cannot
    /// be asked, nothing holds: a human's silence is not assumed.
    pub(super) async fn held_by_human(
        &self,
        inc: &mut Incident,
        policy: &Policy,
        now: Timestamp,
        fx: &mut Effects,
    ) -> bool {
        let (Some(am), Some(spec)) = (&self.config.silencer, &policy.silence) else {
            return false;
        };
        if spec.human != HumanSilences::Hold {
            return false;
        }
        match am.human_silences(inc).await {
            Ok(h) if !h.is_empty() => {
                fx.extend(inc.held_by_human(&h, now));
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(incident = %inc.id, error = %e, "Cannot ask Alertmanager for human silences; the ladder goes on");
                false
            }
        }
    }

    /// Creates, renews and expires the silences due, and expires those of incidents resolved
    /// since the last pass; each result is committed with its incident.
    pub(super) async fn silences(&mut self) -> Result<(), StoreError> {
        let Some(am) = self.config.silencer.clone() else {
            self.silence_ending.clear();
            return Ok(());
        };
        let rs = self.rules();
        let now = self.clock.now();
        if !self.silences_swept {
            self.silences_swept = true;
            self.sweep_silences(&am).await?;
        }
        let mut work: Vec<Incident> = self
            .cache()
            .await?
            .values()
            .filter(|i| i.silence.as_ref().is_some_and(|s| !s.over))
            .cloned()
            .collect();
        work.append(&mut self.silence_ending);
        for mut inc in work {
            // A policy that no longer asks for silences (a reload) still ends the ones it made.
            let spec = rs
                .policies
                .get(&inc.policy)
                .and_then(|p| p.silence.clone())
                .unwrap_or_default();
            let Some(op) = inc.silence_due(&spec, now) else {
                continue;
            };
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
            match &result {
                Ok(r) => {
                    tracing::info!(incident = %inc.id, op = op.as_str(), silences = r.len(), "Alertmanager silence")
                }
                Err(e) => {
                    tracing::warn!(incident = %inc.id, op = op.as_str(), error = %e, "Alertmanager silence failed")
                }
            }
            let fx = inc.silence_done(&op, result, &spec, now);
            let mut c = Commit::default();
            self.effects(&inc, fx, &rs, &mut c, now).await?;
            c.incidents.push(inc);
            self.commit(c).await?;
        }
        Ok(())
    }

    /// Expires remedyd's active silences that no running incident holds.
    async fn sweep_silences(&mut self, am: &Arc<Alertmanagers>) -> Result<(), StoreError> {
        let ours = match am.ours().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot list Alertmanager's silences; forgotten ones lapse at their end");
                return Ok(());
            }
        };
        let held: BTreeSet<String> = self
            .cache()
            .await?
            .values()
            .flat_map(Incident::own_silences)
            .collect();
        for (id, incident) in ours.into_iter().filter(|(id, _)| !held.contains(id)) {
            match am.expire_one(&id, None).await {
                Ok(()) => {
                    tracing::info!(silence = %id, incident = %incident, "Expired a silence remedyd had forgotten")
                }
                Err(e) => {
                    tracing::warn!(silence = %id, incident = %incident, error = %e, "Cannot expire a forgotten silence")
                }
            }
        }
        Ok(())
    }

    /// Notes committed incidents that resolved with a live silence: the next `silences` expires it.
    pub(super) fn note_silence_ending(&mut self, committed: &[Incident]) {
        self.silence_ending.extend(
            committed
                .iter()
                .filter(|i| i.is_resolved() && i.silence.as_ref().is_some_and(|s| !s.over))
                .cloned(),
        );
    }
}
