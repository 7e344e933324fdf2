//! Updates to the routes paged while an escalated incident stays open (policy `update_every`).
//! Each due incident's schedule is advanced and its updates enqueued in one commit, so a restart
//! or a failover to another replica (which reads the incident whole) neither repeats an update
//! nor skips one; only the leader's engine runs, so only the leader sends.

use super::Engine;
use crate::adapters::store::StoreError;
use crate::domain::incident::{Event, Incident};
use crate::domain::time::Timestamp;
use crate::load::ruleset::Ruleset;

// === impl Engine: updates ===

impl Engine {
    /// Enqueues the updates due at `now`, each with its incident's advanced schedule. A paged
    /// incident without a schedule whose policy now has one (a reload turned updates on, or it
    /// was paged before updates existed) gets its schedule here: first update one interval on.
    pub(super) async fn send_updates(
        &mut self,
        rs: &Ruleset,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let due: Vec<Incident> = self
            .cache()
            .await?
            .values()
            .filter(|i| {
                i.update_due(now)
                    || (i.updates.is_none()
                        && !i.paged.is_empty()
                        && rs
                            .policies
                            .get(&i.policy)
                            .is_some_and(|p| p.update_every.is_some()))
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut c = self.deferred.take().unwrap_or_default();
        for mut inc in due {
            let Some(policy) = rs.policies.get(&inc.policy) else {
                continue;
            };
            let fx = inc.apply(Event::UpdateDue, policy, now);
            if !fx.is_empty() {
                tracing::info!(incident = %inc.id, routes = ?inc.paged, "Sending an update to the routes paged");
            }
            self.effects(&inc, fx, rs, &mut c, now).await?;
            c.put_incident(inc);
        }
        self.commit(c).await
    }
}
