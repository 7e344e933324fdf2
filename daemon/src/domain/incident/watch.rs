//! Watching for a GitOps revert while a step is verified: a step that changed a field a
//! reconciler (Argo CD, Flux) owns (a scale, resources) under `gitops: allow` leaves what it
//! wrote ([`RevertWatch::spec`], opaque here: the action reads it back). While the step is
//! verified the engine has the action read the object again every [`REVERT_CHECK_EVERY`] and
//! once more at the verification deadline, before the step is judged. A field no longer as
//! written was put back: recorded (`reverted`, naming who) and escalated (`gitops_revert`)
//! instead of the next step, which would only flap against the reconciler.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Effect, Effects, EntryKind, EscalationReason, Incident, Phase, record};
use crate::domain::policy::Policy;
use crate::domain::time::Timestamp;

/// 30 s: Argo CD's self-heal puts a change back within seconds of seeing it, Flux at its
/// reconcile interval (minutes); a verification window is minutes, so a few reads of one object
/// in it notice either before the window ends, at the cost of one GET each.
pub const REVERT_CHECK_EVERY: Duration = Duration::from_secs(30);

/// What a verified step wrote, to be read back while it is verified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevertWatch {
    /// Ladder level of the step.
    pub ladder: u8,
    /// Step index.
    pub step: usize,
    /// Its action kind (the executor that reads it back).
    pub action: String,
    /// What the action wrote, as it describes it.
    pub spec: serde_json::Value,
    /// When it is read back next.
    pub next: Timestamp,
    /// When it was last read back.
    #[serde(default)]
    pub checked: Option<Timestamp>,
}

impl Incident {
    /// The step (`ladder`, `step`) that just succeeded wrote `spec` into an object a reconciler
    /// owns: watch it while the step is verified.
    pub(super) fn on_watch_revert(
        &mut self,
        ladder: u8,
        step: usize,
        action: String,
        spec: serde_json::Value,
        now: Timestamp,
    ) -> Effects {
        if ladder == self.ladder && self.verifying_step() == Some(step) {
            self.revert_watch = Some(RevertWatch {
                ladder,
                step,
                action,
                spec,
                next: now.plus(REVERT_CHECK_EVERY),
                checked: None,
            });
        }
        Vec::new()
    }

    /// The watched object was read back: put back by its reconciler (escalate), as written
    /// (read again later), or unreadable (the same: nothing is known, so nothing changes).
    pub(super) fn on_revert_checked(
        &mut self,
        step: usize,
        reverted: Result<Option<String>, String>,
        policy: &Policy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
        let Some(w) = self.revert_watch.as_mut().filter(|w| w.step == step) else {
            return fx;
        };
        w.checked = Some(now);
        w.next = now.plus(REVERT_CHECK_EVERY);
        let Ok(Some(why)) = reverted else {
            return fx;
        };
        let action = w.action.clone();
        let name = self
            .ladder_of(policy)
            .and_then(|l| l.steps.get(step))
            .map(|s| s.name.clone())
            .unwrap_or_default();
        fx.push(record(
            now,
            EntryKind::Reverted,
            format!("while verifying step {name}: {why}"),
            serde_json::json!({"step": name, "reason": why}),
        ));
        // As when the step itself sees the revert: trying this action on this target again
        // would only flap against the reconciler.
        fx.push(Effect::BreakerFailure {
            action,
            denied: true,
        });
        let reason = format!("step {name}: {why}");
        self.escalate(policy, reason, EscalationReason::GitopsRevert, now, &mut fx);
        self.stamped(now, fx)
    }

    /// The read-back due now, if the step is being verified and one is due: (step, action,
    /// spec).
    pub fn revert_check_due(&self, now: Timestamp) -> Option<(usize, &str, &serde_json::Value)> {
        let w = self.revert_watch.as_ref()?;
        (self.verifying_step() == Some(w.step) && w.next <= now).then_some((
            w.step,
            w.action.as_str(),
            &w.spec,
        ))
    }

    /// At the verification deadline `until`: whether the object must be read back once more
    /// before the step is judged (then the read is due now, and the judgement waits for it).
    pub(super) fn revert_check_before(&mut self, until: Timestamp, now: Timestamp) -> bool {
        match self.revert_watch.as_mut() {
            Some(w) if w.checked.is_none_or(|c| c < until) => {
                w.next = w.next.min(now);
                true
            }
            _ => false,
        }
    }

    /// A watch lasts while its step is verified.
    pub(super) fn keep_watch(&mut self) {
        if let Some(w) = &self.revert_watch
            && (w.ladder != self.ladder || self.verifying_step() != Some(w.step))
        {
            self.revert_watch = None;
        }
    }

    /// The step being verified, if any.
    fn verifying_step(&self) -> Option<usize> {
        match self.phase {
            Phase::Verifying { step, .. } | Phase::Verified { step, .. } => Some(step),
            _ => None,
        }
    }
}
