//! A firing alert as its incident holds it: its level, its first start (its rule's `for`
//! counts from it) and, when it restarted without a resolve, its latest start.

use serde::{Deserialize, Serialize};

use super::Incident;
use crate::domain::time::Timestamp;

/// A firing alert that belongs to the incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Level it maps to.
    pub level: u8,
    /// When it started.
    pub starts_at: Timestamp,
    /// When it has fired for its rule's `for` (`starts_at + for`): a higher level it brings
    /// counts only from then on.
    #[serde(default)]
    pub ready_at: Option<Timestamp>,
    /// The start of its latest episode when it restarted while firing (a new `startsAt` with no
    /// resolve received between): the alert keeps its first start (its `for` counts from it),
    /// and Alertmanager re-sends it with this one, which staleness looks up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted: Option<Timestamp>,
}

impl ActiveAlert {
    /// Another firing signal of it was stored, started at `starts_at`: one that differs from
    /// its first start is a restart, recorded as its latest. Returns whether anything changed.
    pub fn started(&mut self, starts_at: Timestamp) -> bool {
        if starts_at == self.starts_at || self.restarted == Some(starts_at) {
            return false;
        }
        self.restarted = Some(starts_at);
        true
    }

    /// The starts under which Alertmanager may still send it: its first, and its latest when it
    /// restarted. Staleness looks re-sends up by (fingerprint, start).
    pub fn starts(&self) -> impl Iterator<Item = Timestamp> {
        std::iter::once(self.starts_at).chain(self.restarted)
    }
}

// === impl Incident: its alerts apart from the rest ===

impl Incident {
    /// Whether `self` and `other` differ at most in their alerts (`active`): what the stores
    /// keep in the incident's own row is the same. Every field is named, so a new one cannot
    /// be left out of the comparison.
    pub fn same_but_alerts(&self, other: &Incident) -> bool {
        let Incident {
            id,
            rule,
            policy,
            target,
            level,
            ladder,
            next_step,
            labels,
            active: _,
            phase,
            paged,
            steps_started,
            step_dry_run,
            step_interrupted,
            stale_since,
            updates,
            approved,
            hold,
            revert_watch,
            silence,
            opened_at,
            updated_at,
            resolved_at,
        } = self;
        *id == other.id
            && *rule == other.rule
            && *policy == other.policy
            && *target == other.target
            && *level == other.level
            && *ladder == other.ladder
            && *next_step == other.next_step
            && *labels == other.labels
            && *phase == other.phase
            && *paged == other.paged
            && *steps_started == other.steps_started
            && *step_dry_run == other.step_dry_run
            && *step_interrupted == other.step_interrupted
            && *stale_since == other.stale_since
            && *updates == other.updates
            && *approved == other.approved
            && *hold == other.hold
            && *revert_watch == other.revert_watch
            && *silence == other.silence
            && *opened_at == other.opened_at
            && *updated_at == other.updated_at
            && *resolved_at == other.resolved_at
    }
}
