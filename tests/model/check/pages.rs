//! I6: pages. Outbox rows are learned from the commits that enqueue them (ids in enqueue order)
//! and followed through the outbox's bookkeeping: one trigger per route per incident, every
//! escalation paged, every paged route resolved, per (incident, route) delivery in enqueue order
//! (a resolve never before its trigger), updates only to a paged route and never after its
//! resolve, no working route held up, one storm page per storm and
//! its resolve when the storm ends.

use std::collections::BTreeSet;

use remedyd::adapters::escalate::NotificationKind;
use remedyd::adapters::store::Commit;
use remedyd::domain::incident::{Entry, EntryKind};
use remedyd::domain::time::Timestamp;

use super::{Model, Row};

impl Model {
    pub(super) fn outbox_rows(&mut self, c: &Commit) {
        for (route, n) in &c.outbox {
            self.rows.push(Row {
                route: route.clone(),
                event: n.event,
                dedup: n.dedup_key.clone(),
                incident: n.incident.clone(),
                next_at: Timestamp(0),
                done: false,
            });
            if n.dedup_key.starts_with("remedyd/storm/") {
                let storm_route = self.rs.limits.storm_guard.as_ref().map(|s| s.route.clone());
                if n.event == NotificationKind::Trigger {
                    let open = self.storm_open.clone();
                    self.check(open.is_none(), "I6", "second_storm_page", || {
                        format!(
                            "storm page {} while storm page {open:?} is not resolved",
                            n.dedup_key
                        )
                    });
                    self.check(
                        storm_route.as_ref() == Some(route),
                        "I6",
                        "storm_page_route",
                        || format!("storm page to {route}, storm_guard.route is {storm_route:?}"),
                    );
                    self.storm_open = Some(n.dedup_key.clone());
                } else if self.storm_open.as_ref() == Some(&n.dedup_key) {
                    self.storm_open = None;
                }
                continue;
            }
            if n.event == NotificationKind::Update {
                // Updates go only to a route paged for the incident, and never after its resolve.
                let earlier = &self.rows[..self.rows.len() - 1];
                let paged = earlier.iter().any(|r| {
                    r.event == NotificationKind::Trigger
                        && r.incident == n.incident
                        && r.route == *route
                });
                let resolved = earlier.iter().any(|r| {
                    r.event == NotificationKind::Resolve
                        && r.incident == n.incident
                        && r.route == *route
                });
                self.check(paged && !resolved, "I6", "stray_update", || {
                    format!(
                        "{}: update to {route} (paged {paged}, resolved {resolved})",
                        n.incident
                    )
                });
            }
            if n.event == NotificationKind::Trigger {
                let count = self
                    .rows
                    .iter()
                    .filter(|r| {
                        r.event == NotificationKind::Trigger
                            && r.incident == n.incident
                            && r.route == *route
                    })
                    .count();
                self.check(count <= 1, "I6", "duplicate_trigger", || {
                    format!("{}: trigger #{count} to {route} ({})", n.incident, n.reason)
                });
            }
        }
    }

    pub(super) fn escalation_paged(&mut self, id: &str, e: &Entry) {
        let route = match e.kind {
            EntryKind::Suspended | EntryKind::Stale => self.incidents.get(id).and_then(|i| {
                let p = self.rs.policies.get(&i.policy)?;
                p.levels.get(&i.ladder).map(|l| l.escalate_to.clone())
            }),
            _ => e
                .data
                .get("route")
                .and_then(|r| r.as_str())
                .map(str::to_string),
        };
        match route {
            Some(route) if !route.is_empty() => {
                let paged = self.rows.iter().any(|r| {
                    r.event == NotificationKind::Trigger && r.incident == id && r.route == route
                });
                self.check(paged, "I6", "missing_trigger", || {
                    format!(
                        "{id}: {} ({}) without a trigger to {route}",
                        e.kind, e.message
                    )
                });
            }
            // Refused by the storm guard: the storm page covers it, unless a level-3 incident
            // is open (its own page goes to the platform team, and the engine sends no storm
            // page on top).
            _ if e.data.get("kind").is_some_and(|k| k == "storm")
                && self.storm_active()
                && !self.active().any(|i| i.level >= 3) =>
            {
                let open = self.storm_open.is_some();
                self.check(open, "I6", "storm_refusal_without_page", || {
                    format!(
                        "{id}: escalated by the storm guard with no storm page out ({})",
                        e.message
                    )
                });
            }
            _ => {}
        }
    }

    pub(super) fn resolved_paged(&mut self, id: &str) {
        let routes: BTreeSet<String> = self
            .rows
            .iter()
            .filter(|r| r.event == NotificationKind::Trigger && r.incident == id)
            .map(|r| r.route.clone())
            .collect();
        for route in routes {
            let resolved = self.rows.iter().any(|r| {
                r.event == NotificationKind::Resolve && r.incident == id && r.route == route
            });
            self.check(resolved, "I6", "missing_resolve", || {
                format!("{id} resolved without a resolve to paged route {route}")
            });
        }
    }

    pub(super) fn outbox_done(&mut self, id: i64, delivered: bool) {
        let idx = (id - 1) as usize;
        let Some(row) = self.rows.get(idx).cloned() else {
            return;
        };
        self.rows[idx].done = true;
        if !delivered {
            return;
        }
        let waiting: Vec<(usize, NotificationKind)> = self.rows[..idx]
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.done && r.dedup == row.dedup && r.route == row.route)
            .map(|(i, r)| (i + 1, r.event))
            .collect();
        let kind = if row.event == NotificationKind::Resolve
            && waiting.iter().any(|(_, k)| *k == NotificationKind::Trigger)
        {
            "resolve_before_trigger"
        } else {
            "out_of_order"
        };
        self.check(waiting.is_empty(), "I6", kind, || {
            format!(
                "{} {:?} to {} (row {id}) delivered before rows {waiting:?} of the same incident and route",
                row.incident, row.event, row.route
            )
        });
    }

    /// Stale updates marked done without being sent: each must be a pending update with a newer
    /// pending update of its incident and route, and no trigger or resolve of theirs pending
    /// between them (neither is ever superseded, and nothing jumps one).
    pub(super) fn outbox_superseded(&mut self, ids: &[i64]) {
        *self.coverage.entry("page_superseded".into()).or_default() += ids.len() as u64;
        for &id in ids {
            let idx = (id - 1) as usize;
            let Some(row) = self.rows.get(idx).cloned() else {
                continue;
            };
            // Pending rows after it, with their ids.
            let later: Vec<(i64, &Row)> = self.rows[idx + 1..]
                .iter()
                .zip(id + 1..)
                .filter(|(r, _)| !r.done && r.dedup == row.dedup && r.route == row.route)
                .map(|(r, i)| (i, r))
                .collect();
            // The update that supersedes it: a later one that is not superseded itself.
            let newer = later
                .iter()
                .position(|(i, r)| r.event == NotificationKind::Update && !ids.contains(i));
            let blocker = later
                .iter()
                .position(|(_, r)| r.event != NotificationKind::Update);
            let ok = !row.done
                && row.event == NotificationKind::Update
                && newer.is_some_and(|u| blocker.is_none_or(|b| u < b));
            let pending: Vec<NotificationKind> = later.iter().map(|(_, r)| r.event).collect();
            self.check(ok, "I6", "bad_supersede", || {
                format!(
                    "{} {:?} to {} (row {id}, done {}) superseded; pending after it: {:?}",
                    row.incident, row.event, row.route, row.done, pending
                )
            });
            self.rows[idx].done = true;
        }
    }

    /// Whether a storm page is out and not resolved.
    pub fn storm_paged(&self) -> bool {
        self.storm_open.is_some()
    }

    /// Whether a page is due (the outbox has work at this instant).
    pub fn outbox_due(&self) -> bool {
        self.rows.iter().any(|r| !r.done && r.next_at <= self.now)
    }

    /// The page checks on the state at rest, after an event.
    pub(super) fn pages_at_rest(&mut self, route_up: &dyn Fn(&str) -> bool) {
        let now = self.now;
        // I6: a route that works is not held up by another.
        let mut stuck = Vec::new();
        for (i, r) in self.rows.iter().enumerate() {
            if r.done || r.next_at > now || !route_up(&r.route) {
                continue;
            }
            let blocked = self.rows[..i]
                .iter()
                .any(|p| !p.done && p.dedup == r.dedup && p.route == r.route);
            if !blocked {
                stuck.push(format!(
                    "row {} {:?} {} to {}",
                    i + 1,
                    r.event,
                    r.incident,
                    r.route
                ));
            }
        }
        self.check(stuck.is_empty(), "I6", "route_held_up", || {
            format!("due pages to working routes not delivered: {stuck:?}")
        });
        // I6: a storm page is resolved when the storm ends.
        let open = self.storm_open.clone();
        let active = self.storm_active();
        let n = self.storm_targets();
        self.check(
            open.is_none() || active,
            "I6",
            "storm_page_unresolved",
            || format!("storm page {open:?} still open with {n} target(s) in incident"),
        );
    }
}
