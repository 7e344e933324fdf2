//! The engine's copy of the store's state: the active incidents, loaded once and kept current
//! by every commit; the last signal batch's writes, held back to be committed with the first
//! step they make due; and the commit that keeps memory and store in step.

use std::collections::BTreeMap;

use super::Engine;
use super::silences::silence_ending;
use crate::adapters::store::{Commit, StoreError, alert_writes};
use crate::domain::incident::Incident;

/// The active incidents in memory, by id, and the id of each (rule, target key) that signals
/// join. The second map is kept in step with the first on every change, here, instead of
/// being rebuilt for each signal batch (a string per active incident per batch: 3 % of the
/// process at 1 alert per webhook).
#[derive(Debug, Default)]
pub(super) struct Active {
    by_id: BTreeMap<String, Incident>,
    /// (rule, target key) → id. The store keeps one open incident per key; should two ever be
    /// shown, the later one is found.
    by_key: BTreeMap<(String, String), String>,
    /// How many keys of `by_key` each rule has.
    rules: BTreeMap<String, usize>,
    /// Target key → how many active incidents that are not stale act on it: the storm guard's
    /// count, read every pass (sorting the targets of every incident was 2 % of the process at
    /// 1 alert per webhook).
    live: BTreeMap<String, usize>,
}

impl Active {
    fn new(all: Vec<Incident>) -> Self {
        let mut a = Self::default();
        for i in all {
            a.show(i);
        }
        a
    }

    /// The incident `id`, if active.
    pub(super) fn get(&self, id: &str) -> Option<&Incident> {
        self.by_id.get(id)
    }

    /// Every active incident, by id.
    pub(super) fn values(&self) -> impl Iterator<Item = &Incident> {
        self.by_id.values()
    }

    /// The id of the active incident of `key` (rule, target key).
    pub(super) fn id_of(&self, key: &(String, String)) -> Option<&String> {
        self.by_key.get(key)
    }

    /// The key and id of each active incident whose rule is not one of `except`: a range of
    /// the index per other rule, not a walk over every incident.
    pub(super) fn of_rules_but<'a>(
        &'a self,
        except: &'a [&str],
    ) -> impl Iterator<Item = (&'a (String, String), &'a String)> {
        self.rules
            .keys()
            .filter(|r| !except.contains(&r.as_str()))
            .flat_map(|rule| {
                self.by_key
                    .range((rule.clone(), String::new())..)
                    .take_while(move |((r, _), _)| r == rule)
            })
    }

    /// How many distinct targets the active incidents that are not stale act on.
    pub(super) fn live_targets(&self) -> usize {
        self.live.len()
    }

    /// Shows `inc` as it now stands: kept while active, dropped once resolved.
    pub(super) fn show(&mut self, inc: Incident) {
        if inc.is_resolved() {
            self.drop_id(&inc.id);
            return;
        }
        // An incident's rule and target never change: its keys are written out only when it
        // arrives, leaves, or goes stale or live again.
        if let Some(held) = self.by_id.get_mut(&inc.id) {
            let (was, is) = (held.stale_since.is_none(), inc.stale_since.is_none());
            *held = inc;
            if was != is {
                let target = held.target.key();
                if is {
                    count_up(&mut self.live, target);
                } else {
                    count_down(&mut self.live, &target);
                }
            }
            return;
        }
        let key = (inc.rule.clone(), inc.target.key());
        if inc.stale_since.is_none() {
            count_up(&mut self.live, key.1.clone());
        }
        if self.by_key.insert(key.clone(), inc.id.clone()).is_none() {
            count_up(&mut self.rules, key.0);
        }
        self.by_id.insert(inc.id.clone(), inc);
    }

    fn drop_id(&mut self, id: &str) {
        let Some(inc) = self.by_id.remove(id) else {
            return;
        };
        let key = (inc.rule, inc.target.key());
        if inc.stale_since.is_none() {
            count_down(&mut self.live, &key.1);
        }
        if self.by_key.get(&key).is_some_and(|held| held == id) {
            self.by_key.remove(&key);
            count_down(&mut self.rules, &key.0);
        }
    }
}

fn count_up(counts: &mut BTreeMap<String, usize>, key: String) {
    *counts.entry(key).or_default() += 1;
}

/// One fewer of `key`; a key counted zero times is not kept.
fn count_down(counts: &mut BTreeMap<String, usize>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

// === impl Engine: cache ===

impl Engine {
    /// The active incidents, loaded from the store once and kept current by [`Self::commit`].
    pub(super) async fn cache(&mut self) -> Result<&Active, StoreError> {
        if self.cache.is_none() {
            let all = self.store.active_incidents().await?;
            self.cache = Some(Active::new(all));
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
                cache.show(i.clone());
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
                        cache.show(i);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::Active;
    use crate::domain::incident::{Incident, Phase};
    use crate::domain::policy::{Ladder, Policy};
    use crate::domain::rules::{Target, TargetKind};
    use crate::domain::signal::Labels;
    use crate::domain::time::Timestamp;

    fn incident(id: usize, rule: usize, target: usize) -> Incident {
        let mut levels = BTreeMap::new();
        levels.insert(
            1,
            Ladder {
                steps: vec![],
                escalate_to: "oncall".into(),
            },
        );
        let policy = Policy::with_levels("p", levels);
        let target = Target {
            kind: TargetKind::Deployment,
            namespace: "ns".into(),
            name: format!("svc-{target}"),
        };
        Incident::open(
            format!("INC-2026-{id:04}"),
            &format!("rule-{rule}"),
            &policy,
            target,
            Labels::new(),
            "fp".into(),
            Timestamp(0),
            1,
            Duration::ZERO,
            Timestamp(0),
        )
        .0
    }

    /// Random histories of incidents opening, changing and resolving, as the store allows them
    /// (one active incident per rule and target), going stale and live again: after every
    /// step, the key index, the rule counts and the count of live targets are what rebuilding
    /// them from the incidents gives (what the engine did per batch and per pass before).
    #[test]
    fn the_key_index_stays_what_a_rebuild_gives() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        for history in 0..300 {
            let mut active = Active::default();
            // What the store holds: id → (rule, target), active ones only.
            let mut store: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
            // Which of them are stale, as the history showed them (not as `active` says).
            let mut stale: BTreeMap<usize, bool> = BTreeMap::new();
            let mut next_id = 0;
            for step in 0..60 {
                let (rule, target) = (next(3), next(4));
                let held = store
                    .iter()
                    .find(|(_, k)| **k == (rule, target))
                    .map(|(id, _)| *id);
                match (held, next(3)) {
                    // The key's incident changes (going stale or live again), or resolves.
                    (Some(id), 0) => {
                        let mut inc = incident(id, rule, target);
                        let goes_stale = next(2) == 0;
                        if goes_stale {
                            inc.stale_since = Some(Timestamp(1));
                        }
                        active.show(inc);
                        stale.insert(id, goes_stale);
                    }
                    (Some(id), _) => {
                        let mut inc = incident(id, rule, target);
                        inc.phase = Phase::Resolved;
                        active.show(inc);
                        store.remove(&id);
                        stale.remove(&id);
                    }
                    // A new one opens.
                    (None, _) => {
                        next_id += 1;
                        active.show(incident(next_id, rule, target));
                        store.insert(next_id, (rule, target));
                        stale.insert(next_id, false);
                    }
                }
                let ids: Vec<String> = active.values().map(|i| i.id.clone()).collect();
                let want_ids: Vec<String> =
                    store.keys().map(|id| format!("INC-2026-{id:04}")).collect();
                assert_eq!(ids, want_ids, "history {history} step {step}");
                let rebuilt: BTreeMap<(String, String), String> = active
                    .values()
                    .map(|i| ((i.rule.clone(), i.target.key()), i.id.clone()))
                    .collect();
                assert_eq!(active.by_key, rebuilt, "history {history} step {step}");
                let mut rules: BTreeMap<String, usize> = BTreeMap::new();
                for (r, _) in rebuilt.keys() {
                    *rules.entry(r.clone()).or_default() += 1;
                }
                assert_eq!(active.rules, rules, "history {history} step {step}");
                let live: std::collections::BTreeSet<usize> = store
                    .iter()
                    .filter(|(id, _)| !stale[*id])
                    .map(|(_, (_, t))| *t)
                    .collect();
                assert_eq!(
                    active.live_targets(),
                    live.len(),
                    "history {history} step {step}"
                );
                for (key, id) in &rebuilt {
                    assert_eq!(active.id_of(key), Some(id));
                    assert!(active.of_rules_but(&[]).any(|(k, i)| k == key && i == id));
                    assert!(!active.of_rules_but(&[&key.0]).any(|(k, _)| k == key));
                }
            }
        }
    }
}
