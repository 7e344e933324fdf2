//! Building a [`Commit`]: an incident is carried once, in its last state, however many changes
//! of the engine's work led to it; everything else is appended in order.

use std::collections::HashMap;

use super::Commit;
use crate::domain::incident::Incident;

impl Commit {
    /// Carries `inc`: in place of an earlier copy of the same incident (which it supersedes),
    /// else after the incidents already carried. In place keeps the order the store needs: an
    /// incident resolved in this commit stays before one opened later for its rule and target.
    pub fn put_incident(&mut self, inc: Incident) {
        match self.incidents.iter_mut().find(|i| i.id == inc.id) {
            Some(earlier) => *earlier = inc,
            None => self.incidents.push(inc),
        }
    }

    /// Adds `later`'s writes after this one's (one transaction instead of two); an incident in
    /// both is written once, in `later`'s state.
    pub fn absorb(&mut self, later: Commit) {
        let mut at: HashMap<String, usize> = self
            .incidents
            .iter()
            .enumerate()
            .map(|(n, i)| (i.id.clone(), n))
            .collect();
        for inc in later.incidents {
            match at.get(&inc.id).and_then(|n| self.incidents.get_mut(*n)) {
                Some(earlier) => *earlier = inc,
                None => {
                    at.insert(inc.id.clone(), self.incidents.len());
                    self.incidents.push(inc);
                }
            }
        }
        self.timeline.extend(later.timeline);
        self.processed = self.processed.max(later.processed);
        self.outbox.extend(later.outbox);
        self.budget_uses.extend(later.budget_uses);
        self.breaker_failures.extend(later.breaker_failures);
        self.breakers.extend(later.breakers);
        self.claims.extend(later.claims);
        self.finished.extend(later.finished);
        self.released.extend(later.released);
        self.counters.extend(later.counters);
        self.resolves_done.extend(later.resolves_done);
        self.approvals.extend(later.approvals);
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.incidents.is_empty()
            && self.timeline.is_empty()
            && self.processed.is_none()
            && self.outbox.is_empty()
            && self.budget_uses.is_empty()
            && self.breaker_failures.is_empty()
            && self.breakers.is_empty()
            && self.finished.is_empty()
            && self.released.is_empty()
            && self.claims.is_empty()
            && self.counters.is_empty()
            && self.resolves_done.is_empty()
            && self.approvals.is_empty()
    }
}
