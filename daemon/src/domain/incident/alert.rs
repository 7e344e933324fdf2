//! A firing alert as its incident holds it: its level, its first start (its rule's `for`
//! counts from it) and, when it restarted without a resolve, its latest start.

use serde::{Deserialize, Serialize};

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
