//! The engine's copy of the store's state: the active incidents, loaded once and kept current
//! by every commit; the last signal batch's writes, held back to be committed with the first
//! step they make due; and the commit that keeps memory and store in step.

use std::collections::BTreeMap;

use super::Engine;
use super::silences::silence_ending;
use crate::adapters::store::{Commit, StoreError, alert_writes};
use crate::domain::incident::Incident;

// === impl Engine: cache ===

impl Engine {
    /// The active incidents, loaded from the store once and kept current by [`Self::commit`].
    pub(super) async fn cache(&mut self) -> Result<&BTreeMap<String, Incident>, StoreError> {
        if self.cache.is_none() {
            let all = self.store.active_incidents().await?;
            self.cache = Some(all.into_iter().map(|i| (i.id.clone(), i)).collect());
        }
        Ok(self.cache.as_ref().expect("just loaded"))
    }

    /// An incident, from the cache when active.
    pub(super) async fn incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError> {
        if let Some(i) = self.cache().await?.get(id) {
            return Ok(Some(i.clone()));
        }
        self.store.get_incident(id).await
    }

    /// Holds a commit for drive() (see `deferred`), showing it in the cache meanwhile.
    pub(super) async fn defer(&mut self, mut c: Commit) -> Result<(), StoreError> {
        if c.is_empty() {
            return Ok(());
        }
        self.close_approvals(&mut c).await?;
        self.note_alerts(&mut c);
        if let Some(cache) = self.cache.as_mut() {
            for i in &c.incidents {
                if i.is_resolved() {
                    cache.remove(&i.id);
                } else {
                    cache.insert(i.id.clone(), i.clone());
                }
            }
        }
        match self.deferred.as_mut() {
            Some(d) => d.absorb(c),
            None => self.deferred = Some(c),
        }
        Ok(())
    }

    /// Adds to `c` how its incidents' alerts differ from what the cache shows, before the cache
    /// takes them: the store's state and the held commit's, which every commit writing
    /// incidents while one is held carries (so the changes land in the order they were made).
    /// An incident the cache does not hold (resolved, or the cache reloading) has its alerts
    /// written whole.
    fn note_alerts(&self, c: &mut Commit) {
        let mut out = c.alerts.take().unwrap_or_default();
        for i in &c.incidents {
            alert_writes(self.cache.as_ref().and_then(|m| m.get(&i.id)), i, &mut out);
        }
        c.alerts = Some(out);
    }

    /// Commits and keeps the cache in step; on any error the cache is reloaded next time.
    pub(super) async fn commit(&mut self, mut c: Commit) -> Result<(), StoreError> {
        // Whatever the engine added to a held batch is not known to be derivable again.
        c.rederivable = false;
        self.write(c, false).await
    }

    /// Writes the held signal batches (`deferred`) as they are: the one commit that may keep
    /// [`Commit::rederivable`].
    pub(super) async fn write_deferred(&mut self) -> Result<(), StoreError> {
        match self.deferred.take() {
            // `defer` showed its incidents in the cache already.
            Some(c) => self.write(c, true).await,
            None => Ok(()),
        }
    }

    /// Writes `c` and, once it landed, shows it in the cache (unless `shown` there already: a
    /// copy of every incident per pass was a tenth of the engine's CPU in a storm).
    async fn write(&mut self, mut c: Commit, shown: bool) -> Result<(), StoreError> {
        if c.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.close_approvals(&mut c).await {
            self.cache = None;
            return Err(e);
        }
        self.note_alerts(&mut c);
        let incidents = if shown {
            // Only what `note_silence_ending` looks for (rare).
            let ending = c.incidents.iter().filter(|i| silence_ending(i));
            ending.cloned().collect()
        } else {
            c.incidents.clone()
        };
        match self.store.commit(c).await {
            Ok(()) => {
                self.note_silence_ending(&incidents);
                if let Some(cache) = self.cache.as_mut() {
                    for i in incidents {
                        if i.is_resolved() {
                            cache.remove(&i.id);
                        } else {
                            cache.insert(i.id.clone(), i);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Memory may show what did not land (the cache, an open storm): reload both.
                self.cache = None;
                self.storm = None;
                Err(e)
            }
        }
    }
}
