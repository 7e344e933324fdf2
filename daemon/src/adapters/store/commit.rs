//! Building a [`Commit`]: an incident is carried once, in its last state, however many changes
//! of the engine's work led to it; its alerts as the changes to them ([`AlertWrite`]);
//! everything else is appended in order.

use std::collections::HashMap;

use super::Commit;
use crate::domain::incident::{ActiveAlert, Incident};

/// A change to an incident's alerts (`Incident::active`), which the stores keep in rows apart
/// from the incident's body: an incident holds every firing alert, so writing them with the
/// body made resolving k alerts of an incident of n write k·n alerts.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertWrite {
    /// The alert joined the incident or changed: (incident id, fingerprint, alert).
    Set(String, String, ActiveAlert),
    /// The alert left the incident: (incident id, fingerprint).
    Unset(String, String),
    /// The incident's alerts are written whole, as the commit carries it (what it replaces is
    /// not known).
    All(String),
}

/// An incident's body as the stores keep it: without its alerts, which are rows apart.
fn incident_body(i: &mut Incident) -> super::Result<String> {
    let active = std::mem::take(&mut i.active);
    let body = serde_json::to_string(i);
    i.active = active;
    body.map_err(|e| super::StoreError::Database(format!("incident {}: {e}", i.id)))
}

/// Appends how `after`'s alerts differ from `before`'s (`None`: not known) to `out`.
pub fn alert_writes(before: Option<&Incident>, after: &Incident, out: &mut Vec<AlertWrite>) {
    let Some(before) = before else {
        out.push(AlertWrite::All(after.id.clone()));
        return;
    };
    let id = &after.id;
    for (fp, a) in &after.active {
        if before.active.get(fp) != Some(a) {
            out.push(AlertWrite::Set(id.clone(), fp.clone(), a.clone()));
        }
    }
    for fp in before.active.keys() {
        if !after.active.contains_key(fp) {
            out.push(AlertWrite::Unset(id.clone(), fp.clone()));
        }
    }
}

impl Commit {
    /// Carries `inc`: in place of an earlier copy of the same incident (which it supersedes),
    /// else after the incidents already carried. In place keeps the order the store needs: an
    /// incident resolved in this commit stays before one opened later for its rule and target.
    pub fn put_incident(&mut self, inc: Incident) {
        // Its row may have changed since it was carried.
        self.alerts_only.remove(&inc.id);
        match self.incidents.iter_mut().find(|i| i.id == inc.id) {
            Some(earlier) => *earlier = inc,
            None => self.incidents.push(inc),
        }
    }

    /// Adds `later`'s writes after this one's (one transaction instead of two); an incident in
    /// both is written once, in `later`'s state. Its row is skipped ([`Commit::alerts_only`])
    /// only if neither changed it: `later` compared with this one's state, not the store's.
    pub fn absorb(&mut self, later: Commit) {
        let mut at: HashMap<String, usize> = self
            .incidents
            .iter()
            .enumerate()
            .map(|(n, i)| (i.id.clone(), n))
            .collect();
        let marked = later.alerts_only;
        for inc in later.incidents {
            match at.get(&inc.id).and_then(|n| self.incidents.get_mut(*n)) {
                Some(earlier) => {
                    if !marked.contains(&inc.id) {
                        self.alerts_only.remove(&inc.id);
                    }
                    *earlier = inc;
                }
                None => {
                    if marked.contains(&inc.id) {
                        self.alerts_only.insert(inc.id.clone());
                    }
                    at.insert(inc.id.clone(), self.incidents.len());
                    self.incidents.push(inc);
                }
            }
        }
        self.alerts = match (self.alerts.take(), later.alerts) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            // Not known for one of them: every incident's alerts are written whole.
            _ => None,
        };
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
        self.rederivable &= later.rederivable;
    }

    /// The bodies of the incidents carried, in order, that the stores write: `None` for one
    /// whose row is current ([`Commit::alerts_only`]), which is neither encoded nor written.
    pub(crate) fn incident_bodies(&mut self) -> super::Result<Vec<Option<String>>> {
        let alerts_only = &self.alerts_only;
        self.incidents
            .iter_mut()
            .map(|i| {
                if alerts_only.contains(&i.id) {
                    Ok(None)
                } else {
                    incident_body(i).map(Some)
                }
            })
            .collect()
    }

    /// Whether every incident carried was stored before, in the phase it is in (true of a
    /// [`Commit::rederivable`] one): its number is counted and its phase's other approvals are
    /// voided already, so the stores skip both.
    pub fn incidents_known(&self) -> bool {
        self.rederivable
    }

    /// Whether a store may write this commit without waiting for its own flush to disk
    /// (SQLite: `synchronous=NORMAL` for the transaction; PostgreSQL: `synchronous_commit` off).
    /// It must move the signal watermark and carry nothing but incidents, their alerts and
    /// timelines that the engine marked [`Commit::rederivable`] (or nothing else at all): no
    /// claim, result, page, approval, budget use, breaker or counter.
    ///
    /// Why that is safe: a commit's writes are durable at once against a crash of the process
    /// (the log is written before the commit returns), and every later durable commit's flush
    /// covers them too, since each store's log is flushed in order. Only a crash of the machine
    /// before the next durable commit loses them, and then it loses the watermark with them: the
    /// engine handles those signals again, against the durable state they were derived from,
    /// and derives the same incidents. Nothing was acted on meanwhile: every step is claimed,
    /// and every page enqueued, in a durable commit, and its flush lands these writes first.
    pub fn skips_flush(&self) -> bool {
        self.processed.is_some()
            && (self.rederivable || (self.incidents.is_empty() && self.timeline.is_empty()))
            && self.outbox.is_empty()
            && self.budget_uses.is_empty()
            && self.breaker_failures.is_empty()
            && self.breakers.is_empty()
            && self.claims.is_empty()
            && self.finished.is_empty()
            && self.released.is_empty()
            && self.counters.is_empty()
            && self.resolves_done.is_empty()
            && self.approvals.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::store::Claim;
    use crate::domain::time::Timestamp;

    fn watermark() -> Commit {
        Commit {
            processed: Some(7),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_watermark_or_what_can_be_derived_again_skips_the_flush() {
        assert!(watermark().skips_flush(), "the watermark alone");
        let derivable = Commit {
            rederivable: true,
            ..watermark()
        };
        assert!(derivable.skips_flush());
        assert!(
            !Commit {
                processed: None,
                ..derivable.clone()
            }
            .skips_flush(),
            "no watermark: not the engine's signal batches"
        );
        let claim = Claim {
            incident: "INC-2026-0001".into(),
            ladder: 1,
            step: 0,
            at: Timestamp(0),
        };
        assert!(
            !Commit {
                claims: vec![claim.clone()],
                ..derivable.clone()
            }
            .skips_flush(),
            "a claim is acted on: flushed whatever the flag says"
        );
        assert!(
            !Commit {
                counters: vec![("storm".into(), 1)],
                ..derivable.clone()
            }
            .skips_flush()
        );
        // Held batches absorbing anything not derivable are flushed.
        let mut held = derivable.clone();
        held.absorb(watermark());
        assert!(
            !held.rederivable && held.skips_flush(),
            "still only a watermark"
        );
        let mut held = derivable.clone();
        held.absorb(Commit {
            claims: vec![claim],
            ..Default::default()
        });
        assert!(!held.skips_flush());
        let mut held = derivable.clone();
        held.absorb(derivable);
        assert!(held.rederivable && held.skips_flush());
    }

    fn carrying(ids: &[&str], alerts_only: &[&str]) -> Commit {
        let incident = |id: &str| -> Incident {
            serde_json::from_value(serde_json::json!({
                "id": id, "rule": "r", "policy": "p",
                "target": {"kind": "deployment", "namespace": "ns", "name": "n"},
                "level": 1, "ladder": 1, "next_step": 0, "labels": {}, "active": {},
                "phase": {"phase": "escalated", "reason": "r"}, "paged": [], "steps_started": 0,
                "opened_at": 0, "updated_at": 0, "resolved_at": null
            }))
            .expect("an incident")
        };
        Commit {
            incidents: ids.iter().map(|id| incident(id)).collect(),
            alerts_only: alerts_only.iter().map(|id| id.to_string()).collect(),
            ..Default::default()
        }
    }

    fn marked(c: &Commit) -> Vec<&str> {
        c.alerts_only.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_row_is_skipped_only_if_no_work_carried_changed_it() {
        // Absorbed: an incident in both keeps its row skipped only if both left it as it was;
        // one in either alone keeps its own mark.
        let mut held = carrying(&["a", "b", "c", "d"], &["a", "b", "d"]);
        held.absorb(carrying(&["a", "b", "c", "e", "f"], &["a", "c", "e"]));
        assert_eq!(marked(&held), ["a", "d", "e"]);
        assert_eq!(held.incidents.len(), 6, "each incident once");
        // Put again (the engine changed it since): its row is written.
        held.put_incident(held.incidents[0].clone());
        assert_eq!(marked(&held), ["d", "e"]);
    }
}
