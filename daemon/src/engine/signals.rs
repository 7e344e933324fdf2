//! Inputs that become incident events: batches of stored signals (alerts matched against the
//! rules, opening, joining and resolving incidents), people's requests to resolve an incident by
//! hand, and silence (an incident none of whose alerts is heard of for `stale_after` goes stale).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::cache::Active;
use super::{Engine, SIGNAL_BATCH, SIGNAL_BATCH_MAX, next_batch};
use crate::adapters::escalate::NotificationKind;
use crate::adapters::store::{Commit, ResolveDone, ResolveResult, StoreError};
use crate::domain::incident::{Effect, Event, Incident};
use crate::domain::policy::Policy;
use crate::domain::signal::Status as SignalStatus;
use crate::domain::time::Timestamp;
use crate::load::ruleset::Ruleset;

/// How often incidents are checked for staleness: one store read over their alerts; staleness
/// is hours, so a minute late is nothing.
const STALE_CHECK: Duration = Duration::from_secs(60);
/// Resolve requests applied per pass: people ask rarely; bounds one pass's extra work.
const RESOLVE_BATCH: usize = 64;

/// The effects of one signal, applied after the batch in order.
pub(super) enum Pending {
    /// Timeline entries only (an alert joined or resolved): the incident's id is enough.
    Records(String, Vec<Effect>),
    /// Effects that read the incident as it stood (pages, approvals, breakers): a copy.
    Full(Box<Incident>, Vec<Effect>),
}

/// Queues `fx`, copying the incident only when an effect needs it. An incident holds every
/// firing alert: in a storm of thousands per incident, a copy per joining alert made a batch
/// cost (and hold in memory) its size times the incident's alerts.
pub(super) fn pending_effects(effects: &mut Vec<Pending>, inc: &Incident, fx: Vec<Effect>) {
    if fx.is_empty() {
        return;
    }
    if fx.iter().all(|e| matches!(e, Effect::Record(_))) {
        effects.push(Pending::Records(inc.id.clone(), fx));
    } else {
        effects.push(Pending::Full(Box::new(inc.clone()), fx));
    }
}

/// The incident of `key` this batch works on: its working copy, or the cache's copy of `id`
/// cloned into `work` on first touch (if `touch` says so). `None` when neither holds it.
fn working<'w>(
    work: &'w mut BTreeMap<(String, String), Incident>,
    cache: Option<&Active>,
    key: &(String, String),
    id: Option<&String>,
    touch: impl Fn(&Incident) -> bool,
) -> Option<&'w mut Incident> {
    if !work.contains_key(key)
        && let Some(inc) = id.and_then(|id| cache?.get(id)).filter(|i| touch(i))
    {
        work.insert(key.clone(), inc.clone());
    }
    work.get_mut(key)
}

// === impl Engine: signals ===

impl Engine {
    /// Handles up to `batch` stored signals, adding their writes to the held commit; returns
    /// how many.
    pub(super) async fn signals(&mut self, batch: usize) -> Result<usize, StoreError> {
        // Past the batches this pass already handled and holds (not committed yet).
        let after = self.deferred.as_ref().and_then(|d| d.processed);
        let pending = self.store.pending_signals_after(after, batch).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let rs = self.rules();
        let now = self.clock.now();
        // Loaded now: the batch reads the active incidents, by key, from `self.cache`.
        self.cache().await?;
        // Incidents this batch works on, cloned from the cache on first touch; re-sent alerts
        // change nothing, and only incidents that differ from the cache are written.
        let mut work: BTreeMap<(String, String), Incident> = BTreeMap::new();
        let mut finished: Vec<Incident> = Vec::new();
        // Incidents this batch resolved: a later firing alert of the same key opens a new one
        // instead of reviving the cache's copy.
        let mut closed: BTreeSet<(String, String)> = BTreeSet::new();
        let mut c = Commit::default();
        let mut effects: Vec<Pending> = Vec::new();
        let mut counted: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for stored in &pending {
            let s = &stored.signal;
            c.processed = Some(stored.id);
            let mut matched = false;
            let mut matched_rules: Vec<&str> = Vec::new();
            for rule in rs.candidates(s) {
                let m = match rule.evaluate(s) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(miss) => {
                        self.metrics.signal(s.source.as_str(), "unmapped", 1);
                        tracing::warn!(rule = %miss.rule, fingerprint = %s.fingerprint, reason = %miss.reason, "Signal matched a rule but cannot be mapped");
                        continue;
                    }
                };
                matched = true;
                matched_rules.push(m.rule);
                let Some(policy) = rs.policies.get(m.policy) else {
                    continue;
                };
                let key = (m.rule.to_string(), m.target.key());
                if !closed.contains(&key) {
                    let cache = self.cache.as_ref();
                    let id = cache.and_then(|c| c.id_of(&key));
                    working(&mut work, cache, &key, id, |_| true);
                }
                let event = match s.status {
                    SignalStatus::Firing => Event::Fired {
                        fingerprint: s.fingerprint.clone(),
                        starts_at: s.starts_at,
                        level: m.level,
                        for_: m.for_,
                    },
                    SignalStatus::Resolved => Event::Resolved {
                        fingerprint: s.fingerprint.clone(),
                    },
                };
                match (work.get_mut(&key), s.status) {
                    (Some(inc), _) => {
                        let fx = inc.apply(event, policy, now);
                        pending_effects(&mut effects, inc, fx);
                        if inc.is_resolved() {
                            finished.extend(work.remove(&key));
                            closed.insert(key);
                        }
                    }
                    (None, SignalStatus::Firing) => {
                        let id = self.next_incident_id(now.year()).await?;
                        let (inc, mut fx) = Incident::open(
                            id,
                            m.rule,
                            policy,
                            m.target.clone(),
                            s.labels.clone(),
                            s.fingerprint.clone(),
                            s.starts_at,
                            m.level,
                            m.for_,
                            now,
                        );
                        if let Some(v) = s.value {
                            Incident::note_opening_value(
                                &mut fx,
                                v,
                                s.annotations.get("query").map(String::as_str),
                            );
                        }
                        tracing::info!(incident = %inc.id, rule = %m.rule, target = %m.target.key(), level = m.level, "Incident opened");
                        pending_effects(&mut effects, &inc, fx);
                        work.insert(key, inc);
                    }
                    // A resolved alert without an open incident never acts.
                    (None, SignalStatus::Resolved) => {}
                }
            }
            if s.status == SignalStatus::Resolved {
                // A resolve reaches every incident its alert joined, even when a reload removed
                // or renamed the rule that mapped it: no incident stays open for want of a rule.
                let holders: Vec<(String, String)> = work
                    .values()
                    .chain(self.cache.iter().flat_map(|m| m.values()))
                    .filter(|i| i.active.contains_key(&s.fingerprint))
                    .map(|i| (i.rule.clone(), i.target.key()))
                    .filter(|k| !closed.contains(k))
                    .collect();
                for key in holders {
                    let id = self.cache.as_ref().and_then(|c| c.id_of(&key));
                    let Some(inc) = working(&mut work, self.cache.as_ref(), &key, id, |_| true)
                    else {
                        continue;
                    };
                    let Some(policy) = rs.policies.get(&inc.policy) else {
                        continue;
                    };
                    let fx = inc.apply(
                        Event::Resolved {
                            fingerprint: s.fingerprint.clone(),
                        },
                        policy,
                        now,
                    );
                    if !fx.is_empty() {
                        matched = true;
                        pending_effects(&mut effects, inc, fx);
                    }
                    if inc.is_resolved() {
                        finished.extend(work.remove(&key));
                        closed.insert(key);
                    }
                }
            }
            if s.status == SignalStatus::Firing {
                // A restart (a new start, its resolve lost) reaches every incident holding the
                // alert, as a resolve does, even one whose rule a reload renamed or changed: its
                // re-sends carry the new start, and staleness looks them up by it. The incidents
                // of the rules that matched had the event; only the others' are looked at.
                let cache = self.cache.as_ref();
                let others = cache
                    .into_iter()
                    .flat_map(|c| c.of_rules_but(&matched_rules));
                // Only an incident holding the alert under another start is copied to change.
                let holds_older = |i: &Incident| {
                    i.active.get(&s.fingerprint).is_some_and(|a| {
                        a.starts_at != s.starts_at && a.restarted != Some(s.starts_at)
                    })
                };
                for (key, id) in others.filter(|(key, _)| !closed.contains(*key)) {
                    if let Some(a) = working(&mut work, cache, key, Some(id), holds_older)
                        .and_then(|i| i.active.get_mut(&s.fingerprint))
                    {
                        a.started(s.starts_at);
                    }
                }
            }
            let outcome = if matched { "matched" } else { "unmatched" };
            *counted.entry((s.source.as_str(), outcome)).or_default() += 1;
        }
        // Counted once per batch: a metric's labels are looked up (and allocated) per call.
        for ((source, outcome), n) in counted {
            self.metrics.signal(source, outcome, n);
        }
        for p in effects {
            match p {
                Pending::Records(id, fx) => {
                    for e in fx {
                        if let Effect::Record(entry) = e {
                            c.timeline.push((id.clone(), entry));
                        }
                    }
                }
                Pending::Full(inc, fx) => self.effects(&inc, fx, &rs, &mut c, now).await?,
            }
        }
        // Resolved first: the store allows one open incident per (rule, target), and a key this
        // batch closed may have opened again.
        for inc in finished.into_iter().chain(work.into_values()) {
            let old = self.cache.as_ref().and_then(|m| m.get(&inc.id));
            if old != Some(&inc) {
                // The cache shows what was last written, or what the held batches will write
                // (`Commit::absorb` keeps their row then).
                if old.is_some_and(|o| o.same_but_alerts(&inc)) {
                    c.alerts_only.insert(inc.id.clone());
                }
                c.incidents.push(inc);
            }
        }
        // Derivable again from the signals (see `Commit::rederivable`) when the batch only
        // changed incidents that stay as they were in kind: none opened, resolved, re-levelled
        // or moved to another phase. Pages, approvals and breakers it caused are in `c`, and
        // the store flushes such a commit anyway.
        c.rederivable = c.incidents.iter().all(|i| {
            self.cache
                .as_ref()
                .and_then(|m| m.get(&i.id))
                .is_some_and(|old| {
                    old.status() == i.status() && old.level == i.level && old.phase == i.phase
                })
        });
        // Held with the pass's earlier batches: an incident they all touch is written once, in
        // its last state (see `handle_signals`).
        self.defer(c).await?;
        Ok(pending.len())
    }

    /// Handles the stored signals in batches that double while they come back full (a
    /// backlog), holding their writes as one commit (`deferred`) that drive() writes with the
    /// first step they make due: an incident touched by many signals of the pass is written
    /// once, with all their timeline entries in order, and its alerts as the rows that changed
    /// (`Commit::alerts`). Each next batch reads on past the held ones. A backlog is written
    /// every [`SIGNAL_BATCH_MAX`] signals or so, which bounds what memory holds.
    pub(super) async fn handle_signals(&mut self) -> Result<(), StoreError> {
        let mut batch = SIGNAL_BATCH;
        let mut held = 0;
        loop {
            let n = match self.signals(batch).await {
                Ok(n) => n,
                Err(e) => {
                    // The batches held are not written: their signals stay after the
                    // watermark and are handled again; the cache, which shows them, is reloaded.
                    if self.deferred.take().is_some() {
                        self.cache = None;
                    }
                    return Err(e);
                }
            };
            if n < batch {
                return Ok(());
            }
            held += n;
            if held >= SIGNAL_BATCH_MAX {
                self.write_deferred().await?;
                held = 0;
            }
            batch = next_batch(batch);
        }
    }

    /// The next `INC-YYYY-NNNN`. The engine is the only writer of incidents (one per leadership
    /// term, fenced), so it counts in memory from the highest committed number; a number whose
    /// commit failed is skipped, never reused.
    async fn next_incident_id(&mut self, year: i32) -> Result<String, StoreError> {
        let n = match self.numbers.get(&year) {
            Some(n) => *n,
            None => self.store.incident_counter(year).await?,
        } + 1;
        self.numbers.insert(year, n);
        Ok(format!("INC-{year}-{n:04}"))
    }

    /// Applies people's requests to resolve incidents by hand (API, dashboard, `remedyd
    /// resolve`): each in one commit with the incident, its timeline, the resolve pages of the
    /// routes paged and the request marked done. An unknown or already resolved incident marks
    /// the request done with that result.
    pub(super) async fn operator_requests(&mut self) -> Result<(), StoreError> {
        let pending = self.store.pending_resolves(RESOLVE_BATCH).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let rs = self.rules();
        for req in pending {
            let now = self.clock.now();
            let mut c = Commit::default();
            let result = match self.incident(&req.incident).await? {
                None => ResolveResult::UnknownIncident,
                Some(inc) if inc.is_resolved() => ResolveResult::AlreadyResolved,
                Some(mut inc) => {
                    // A policy removed by a reload must not keep its incidents open for ever:
                    // resolving by hand reads nothing from the policy.
                    let removed = Policy::with_levels(&inc.policy, BTreeMap::new());
                    let policy = rs.policies.get(&inc.policy).unwrap_or(&removed);
                    let event = Event::ResolvedByHand {
                        reason: req.reason.clone(),
                        author: req.author.clone(),
                    };
                    let fx = inc.apply(event, policy, now);
                    self.effects(&inc, fx, &rs, &mut c, now).await?;
                    let why = format!("resolved by hand by {}: {}", req.author, req.reason);
                    for (_, n) in &mut c.outbox {
                        if n.event == NotificationKind::Resolve {
                            n.reason = why.clone();
                        }
                    }
                    tracing::warn!(incident = %inc.id, author = %req.author, reason = %req.reason, "Incident resolved by hand");
                    c.incidents.push(inc);
                    ResolveResult::Resolved
                }
            };
            if result != ResolveResult::Resolved {
                tracing::info!(incident = %req.incident, author = %req.author, result = result.as_str(), "Resolve request not applied");
            }
            c.resolves_done.push(ResolveDone {
                request: req.id,
                at: now,
                result,
            });
            self.commit(c).await?;
        }
        Ok(())
    }

    /// Marks incidents stale that heard nothing for `stale_after`, and un-marks those heard of
    /// again. Polled rules' incidents are left out: the poller only speaks on a level change.
    pub(super) async fn check_stale(
        &mut self,
        rs: &Ruleset,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if now < self.next_stale_check {
            return Ok(());
        }
        self.next_stale_check = now.plus(STALE_CHECK);
        let after = self.config.stale_after;
        let candidates: Vec<Incident> = self
            .cache()
            .await?
            .values()
            .filter(|i| {
                !rs.rules
                    .iter()
                    .any(|r| r.name == i.rule && r.polled.is_some())
            })
            .filter(|i| i.stale_since.is_some() || now.since(i.updated_at) >= after)
            .cloned()
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        // Each alert under the starts Alertmanager sends it with (its first, its latest).
        let alerts: Vec<(String, Timestamp)> = candidates
            .iter()
            .flat_map(|i| i.active.iter())
            .flat_map(|(fp, a)| a.starts().map(move |s| (fp.clone(), s)))
            .collect();
        let heard: HashMap<String, Timestamp> =
            self.store.last_heard(alerts).await?.into_iter().collect();
        for mut inc in candidates {
            let Some(policy) = rs.policies.get(&inc.policy) else {
                continue;
            };
            let last = inc
                .active
                .keys()
                .filter_map(|fp| heard.get(fp).copied())
                .max()
                .unwrap_or(inc.opened_at);
            let event = match inc.stale_since {
                Some(since) if last > since => Event::Heard { at: last },
                None if now.since(last) >= after => Event::Stale { heard: last, after },
                _ => continue,
            };
            let fx = inc.apply(event, policy, now);
            if fx.is_empty() {
                continue;
            }
            if inc.stale_since.is_some() {
                tracing::warn!(incident = %inc.id, heard = %last, "Incident is stale: none of its alerts heard of for stale_after");
            }
            let mut c = self.deferred.take().unwrap_or_default();
            self.effects(&inc, fx, rs, &mut c, now).await?;
            c.put_incident(inc);
            self.commit(c).await?;
        }
        Ok(())
    }
}
