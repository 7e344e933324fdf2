//! What each incident has heard, as the engine hears it: the model's own account of the alerts,
//! built from the ingests (webhook payloads and the poller's signals) the store accepted.

use std::collections::{BTreeMap, BTreeSet};

use remedyd::domain::signal::{Signal, Status as SignalStatus};
use remedyd::domain::time::Timestamp;
use remedyd::load::ruleset::Ruleset;

/// The alerts each (rule, target) has heard, as the engine hears them: duplicates (same
/// fingerprint, startsAt and status) are dropped at ingest, a re-sent alert keeps its first
/// start.
#[derive(Default)]
pub(super) struct Mirror {
    pub(super) seen: BTreeSet<(String, i64, bool)>,
    pub(super) active: BTreeMap<(String, String), BTreeMap<String, (u8, Timestamp)>>,
    /// Firing alerts heard during the current event (an upgrade may use one that resolved in
    /// the same batch when `for` is zero).
    pub(super) recent: Vec<(String, String, u8, Timestamp)>,
    /// When a firing alert, by (fingerprint, startsAt), was last received, stored or re-sent
    /// (what `stale_after` counts).
    pub(super) heard: BTreeMap<(String, i64), Timestamp>,
    /// The start of each fingerprint's latest stored firing signal, until a resolve is stored:
    /// an incident hears its alert under its first start and under this one (a restart).
    pub(super) latest: BTreeMap<String, Timestamp>,
    /// Whether the last stored signal of each fingerprint was a resolve.
    pub(super) resolved: BTreeMap<String, bool>,
    /// Fingerprints resolved during the current event.
    pub(super) resolved_now: BTreeSet<String>,
}

impl Mirror {
    /// Returns how many signals are new (not duplicates).
    pub(super) fn ingest(&mut self, signals: &[Signal], rs: &Ruleset, now: Timestamp) -> usize {
        let mut stored = 0;
        for s in signals {
            let firing = s.status == SignalStatus::Firing;
            if firing {
                self.heard
                    .insert((s.fingerprint.clone(), s.starts_at.0), now);
            }
            if !self
                .seen
                .insert((s.fingerprint.clone(), s.starts_at.0, firing))
            {
                continue;
            }
            stored += 1;
            if firing {
                self.latest.insert(s.fingerprint.clone(), s.starts_at);
            } else {
                self.latest.remove(&s.fingerprint);
            }
            self.resolved.insert(s.fingerprint.clone(), !firing);
            if !firing {
                self.resolved_now.insert(s.fingerprint.clone());
            }
            for rule in &rs.rules {
                let Ok(Some(m)) = rule.evaluate(s) else {
                    continue;
                };
                let key = (m.rule.to_string(), m.target.key());
                if firing {
                    self.active
                        .entry(key.clone())
                        .or_default()
                        .entry(s.fingerprint.clone())
                        .or_insert((m.level, s.starts_at))
                        .0 = m.level;
                    self.recent.push((key.0, key.1, m.level, s.starts_at));
                } else if let Some(a) = self.active.get_mut(&key) {
                    a.remove(&s.fingerprint);
                }
            }
        }
        stored
    }
}
