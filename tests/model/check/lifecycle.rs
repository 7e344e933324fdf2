//! The incident's own life: I7 (a level rises only after an alert at that level has fired for
//! the rule's `for`), and what I1 asks of resolution and staleness: an incident resolves only
//! when its alerts resolve or a person resolves it; it is stale only after `stale_after` of
//! silence, and then within the engine's minute of checking.

use std::collections::BTreeMap;
use std::time::Duration;

use remedyd::domain::incident::{Incident, Phase};
use remedyd::domain::time::Timestamp;

use super::Model;

impl Model {
    /// An incident is resolved only by its alerts resolving, or by a person.
    pub(super) fn resolved_how(&mut self, old: &Incident, by_hand: bool) {
        if by_hand {
            let asked = self.resolve_requested.contains(&old.id);
            self.check(asked, "I1", "resolved_silently", || {
                format!("{} resolved by hand, but nobody asked", old.id)
            });
            return;
        }
        let firing: Vec<&String> = old
            .active
            .keys()
            .filter(|fp| {
                !self.mirror.resolved_now.contains(*fp)
                    && self.mirror.resolved.get(*fp) != Some(&true)
            })
            .collect();
        self.check(firing.is_empty(), "I1", "resolved_silently", || {
            format!(
                "{} resolved while its alerts {firing:?} never resolved and nobody resolved it by hand",
                old.id
            )
        });
    }

    /// When the last firing alert of an incident was heard (its opening, if none): an alert is
    /// heard under the start it joined with, and under the start of its latest stored firing
    /// signal (it restarted, its resolve lost). Re-sends of an older episode are not news of it.
    pub(super) fn last_heard(&self, inc: &Incident) -> Timestamp {
        inc.active
            .iter()
            .flat_map(|(fp, a)| {
                let latest = self.mirror.latest.get(fp).copied();
                [Some(a.starts_at), latest]
                    .into_iter()
                    .flatten()
                    .filter_map(move |s| self.mirror.heard.get(&(fp.clone(), s.0)).copied())
            })
            .max()
            .unwrap_or(inc.opened_at)
    }

    /// Stale: an Alertmanager-driven incident that heard nothing for `stale_after`.
    pub(super) fn stale_marked(&mut self, old: &Incident) {
        let now = self.now;
        let polled = self
            .rs
            .rules
            .iter()
            .any(|r| r.name == old.rule && r.polled.is_some());
        let last = self.last_heard(old);
        let after = self.stale_after;
        self.check(
            !polled && now.since(last) >= after,
            "I1",
            "stale_too_early",
            || {
                format!(
                    "{} marked stale at {now}, but an alert was heard at {last} (stale_after {}s{})",
                    old.id,
                    after.as_secs(),
                    if polled { ", and its rule is polled" } else { "" }
                )
            },
        );
    }

    pub(super) fn level_rise(&mut self, old: &Incident, new: &Incident) {
        let Some(rule) = self.rs.rules.iter().find(|r| r.name == new.rule) else {
            return;
        };
        let for_ = rule.for_;
        let now = self.now;
        let key = (new.rule.clone(), new.target.key());
        let ok_alert = |lvl: u8, starts: Timestamp| {
            lvl >= new.level && (for_.is_zero() || starts.plus(for_) <= now)
        };
        let justified = self
            .mirror
            .active
            .get(&key)
            .is_some_and(|a| a.values().any(|(l, s)| ok_alert(*l, *s)))
            || self
                .mirror
                .recent
                .iter()
                .any(|(r, t, l, s)| *r == key.0 && *t == key.1 && ok_alert(*l, *s));
        let heard: Vec<String> = self
            .mirror
            .active
            .get(&key)
            .map(|a| {
                a.values()
                    .map(|(l, s)| format!("level {l} since {s}"))
                    .collect()
            })
            .unwrap_or_default();
        self.check(justified, "I7", "level_rise_before_for", || {
            format!(
                "{} rose from level {} to {} at {now}, but no level-{} alert has fired for the rule's `for` ({}s); firing: {heard:?}",
                new.id,
                old.level,
                new.level,
                new.level,
                for_.as_secs()
            )
        });
    }

    /// Staleness, on the state at rest after an event.
    pub(super) fn stale_at_rest(&mut self) {
        let now = self.now;
        // Stale: an Alertmanager-driven incident whose alerts (those still firing) were not heard
        // for stale_after, and that did not change meanwhile, is stale within the engine's
        // minute of checking (unless a step is running).
        let after = self.stale_after;
        let silent: BTreeMap<String, (Timestamp, Timestamp)> = self
            .active()
            .filter(|i| {
                i.stale_since.is_none()
                    && !matches!(i.phase, Phase::Running { .. })
                    && now.since(i.updated_at) >= after
                    && !self
                        .rs
                        .rules
                        .iter()
                        .any(|r| r.name == i.rule && r.polled.is_some())
            })
            .map(|i| (i.id.clone(), (self.last_heard(i), i.updated_at)))
            .filter(|(_, (last, _))| now.since(*last) >= after)
            .collect();
        self.stale_due.retain(|id, _| silent.contains_key(id));
        let mut overdue = Vec::new();
        for (id, (last, updated)) in silent {
            let since = *self.stale_due.entry(id.clone()).or_insert(now);
            if now.since(since) >= Duration::from_secs(60) {
                overdue.push((id, last, updated));
            }
        }
        let after = after.as_secs();
        for (id, last, updated) in overdue {
            self.check(false, "I1", "stale_not_marked", || {
                format!(
                    "{id} heard nothing since {last} (stale_after {after}s), last changed at {updated}, and is not stale at {now}"
                )
            });
        }
    }
}
