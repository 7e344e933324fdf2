//! Updates to the routes paged while an escalated incident stays open (the runbook's "updates
//! every 15 minutes"): the schedule lives on the incident, which is stored whole, and the engine
//! enqueues each update in the commit that advances it, so a restart or a failover neither
//! repeats nor skips one.

use serde::{Deserialize, Serialize};

use super::{Effect, Effects, Incident};
use crate::domain::policy::Policy;
use crate::domain::time::Timestamp;

/// When the routes paged last heard about the incident, and when they hear next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateSchedule {
    /// The first page or the last update: the next update covers the timeline from here.
    pub last: Timestamp,
    /// When the next update is due.
    pub next: Timestamp,
}

impl Incident {
    /// Whether an update to the routes paged is due at `now`.
    pub fn update_due(&self, now: Timestamp) -> bool {
        !self.is_resolved() && self.updates.is_some_and(|u| u.next <= now)
    }

    /// The due update: advances the schedule by whole intervals past `now` (after a long outage
    /// one update goes, not one per missed interval) and asks for the update page.
    pub(super) fn on_update_due(&mut self, policy: &Policy, now: Timestamp) -> Effects {
        let (Some(u), Some(every)) = (self.updates, policy.update_every) else {
            return Vec::new();
        };
        if u.next > now || self.paged.is_empty() {
            return Vec::new();
        }
        let mut next = u.next.plus(every);
        while next <= now {
            next = next.plus(every);
        }
        self.updates = Some(UpdateSchedule { last: now, next });
        vec![Effect::PageUpdate { since: u.last }]
    }

    /// After every transition: the schedule starts when a route is first paged, follows the
    /// policy's `update_every` (a reload may turn it off), and ends when the incident resolves.
    pub(super) fn keep_update_schedule(&mut self, policy: &Policy, now: Timestamp) {
        match policy.update_every {
            Some(every) if !self.is_resolved() && !self.paged.is_empty() => {
                if self.updates.is_none() {
                    self.updates = Some(UpdateSchedule {
                        last: now,
                        next: now.plus(every),
                    });
                }
            }
            _ => self.updates = None,
        }
    }
}
