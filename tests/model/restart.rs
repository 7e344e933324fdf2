//! I8: a restart changes nothing. The store is read before the restart and after the new engine's
//! first pass at the same instant; only what the restart itself explains may differ: the steps it
//! interrupted (their incidents, and the incidents waiting for the same targets) and what those
//! touch (their budget scopes and breakers).

use std::collections::{BTreeMap, BTreeSet};

use remedyd::adapters::store::{Pause, Store};
use remedyd::domain::incident::{Entry, EntryKind, Incident, Phase};
use remedyd::domain::policy::breaker::BreakerRecord;
use remedyd::domain::time::Timestamp;

use super::check::Violation;

/// What the store holds.
pub struct Snapshot {
    incidents: BTreeMap<String, Incident>,
    timelines: BTreeMap<String, Vec<Entry>>,
    breakers: BTreeMap<String, BreakerRecord>,
    pauses: Vec<Pause>,
    uses: BTreeMap<(String, bool), u32>,
    outbox: BTreeMap<i64, (String, String, u32)>,
}

/// Reads everything I8 compares; `keys` are the budget scopes to count.
pub async fn snapshot(store: &dyn Store, keys: &[String]) -> Result<Snapshot, String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: remedyd::adapters::store::StoreError| format!("reading {what} for I8: {err}")
    };
    let incidents: BTreeMap<String, Incident> = store
        .list_incidents(None, 100_000)
        .await
        .map_err(e("incidents"))?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    let mut timelines = BTreeMap::new();
    for id in incidents.keys() {
        timelines.insert(
            id.clone(),
            store.timeline(id).await.map_err(e("a timeline"))?,
        );
    }
    let breakers = store
        .breakers()
        .await
        .map_err(e("breakers"))?
        .into_iter()
        .collect();
    let pauses = store.pauses().await.map_err(e("pauses"))?;
    let mut uses = BTreeMap::new();
    for dry in [false, true] {
        let (counts, _) = store
            .gate_reads(
                keys.iter().map(|k| (k.clone(), Timestamp(0))).collect(),
                dry,
                Vec::new(),
            )
            .await
            .map_err(e("budget uses"))?;
        for (k, n) in keys.iter().zip(counts) {
            uses.insert((k.clone(), dry), n);
        }
    }
    let outbox = store
        .outbox_due(Timestamp(i64::MAX), 100_000)
        .await
        .map_err(e("the outbox"))?
        .into_iter()
        .map(|i| {
            let body = serde_json::to_string(&i.notification).unwrap_or_default();
            (i.id, (i.route, body, i.attempts))
        })
        .collect();
    Ok(Snapshot {
        incidents,
        timelines,
        breakers,
        pauses,
        uses,
        outbox,
    })
}

fn differ(what: String) -> Violation {
    Violation {
        invariant: "I8",
        kind: "restart_changed_state",
        message: what,
    }
}

/// The differences the restart does not explain.
/// The differences the restart does not explain; `storm_paged`: a storm page was out (not
/// resolved) before the restart.
pub fn compare(before: &Snapshot, after: &Snapshot, storm_paged: bool) -> Vec<Violation> {
    let interrupted: BTreeSet<&String> = before
        .incidents
        .values()
        .filter(|i| !i.is_resolved() && matches!(i.phase, Phase::Running { .. }))
        .map(|i| &i.id)
        .collect();
    let targets: BTreeSet<String> = interrupted
        .iter()
        .filter_map(|id| before.incidents.get(*id))
        .map(|i| i.target.key())
        .collect();
    // The engine's minutely stale check runs at once after a restart: what it finds (stale, or
    // heard again) is the check come early, not a change the restart made.
    let stale_check = |id: &String| {
        let (Some(tb), Some(ta)) = (before.timelines.get(id), after.timelines.get(id)) else {
            return false;
        };
        ta.len() > tb.len()
            && ta.starts_with(tb)
            && ta[tb.len()..]
                .iter()
                .all(|e| e.kind == EntryKind::Stale || e.kind == EntryKind::HeardAgain)
    };
    // What the early stale check changed counts toward the storm guard again (or no longer):
    // incidents it escalated, and its page, follow from it.
    let stale_changed = before
        .incidents
        .keys()
        .chain(after.incidents.keys())
        .any(stale_check);
    let storm_refused = |id: &String| {
        let (Some(tb), Some(ta)) = (before.timelines.get(id), after.timelines.get(id)) else {
            return false;
        };
        stale_changed
            && ta.len() > tb.len()
            && ta.starts_with(tb)
            && ta[tb.len()..].iter().all(|e| {
                e.kind == EntryKind::Escalated
                    && e.data.get("kind").and_then(|k| k.as_str()) == Some("storm")
            })
    };
    let explained = |i: &Incident| {
        interrupted.contains(&i.id)
            || targets.contains(&i.target.key())
            || stale_check(&i.id)
            || storm_refused(&i.id)
    };
    let mut out = Vec::new();
    let mut keys_ok: BTreeSet<String> = BTreeSet::new();
    for i in before.incidents.values().filter(|i| explained(i)) {
        keys_ok.insert(format!("rule:{}", i.rule));
        keys_ok.insert(format!("namespace:{}", i.target.namespace));
        keys_ok.insert("global".into());
    }
    let key_ok = |k: &str| {
        keys_ok.contains(k)
            || targets
                .iter()
                .any(|t| k.starts_with("action:") && k.ends_with(&format!(":{t}")))
    };
    let ids: BTreeSet<&String> = before
        .incidents
        .keys()
        .chain(after.incidents.keys())
        .collect();
    for id in ids {
        let (b, a) = (before.incidents.get(id), after.incidents.get(id));
        if b.or(a).is_some_and(&explained) {
            let (tb, ta) = (before.timelines.get(id), after.timelines.get(id));
            let prefix = match (tb, ta) {
                (Some(tb), Some(ta)) => ta.starts_with(tb),
                (None, _) => true,
                (Some(_), None) => false,
            };
            if !prefix {
                out.push(differ(format!(
                    "{id}: its timeline was rewritten by the restart"
                )));
            }
            continue;
        }
        if b != a {
            out.push(differ(format!(
                "{id}: before the restart {}; after {}",
                b.map_or("absent".into(), |i| format!(
                    "{} level {} {:?}",
                    i.status().as_str(),
                    i.level,
                    i.phase
                )),
                a.map_or("absent".into(), |i| format!(
                    "{} level {} {:?}",
                    i.status().as_str(),
                    i.level,
                    i.phase
                )),
            )));
        } else if before.timelines.get(id) != after.timelines.get(id) {
            let n = before.timelines.get(id).map_or(0, Vec::len);
            let added: Vec<String> = after
                .timelines
                .get(id)
                .map(|t| {
                    t.iter()
                        .skip(n)
                        .map(|e| format!("{}: {}", e.kind, e.message))
                        .collect()
                })
                .unwrap_or_default();
            out.push(differ(format!(
                "{id}: the restart added to its timeline: {added:?}"
            )));
        }
    }
    let bkeys: BTreeSet<&String> = before
        .breakers
        .keys()
        .chain(after.breakers.keys())
        .collect();
    for k in bkeys {
        if !key_ok(k) && before.breakers.get(k) != after.breakers.get(k) {
            out.push(differ(format!(
                "breaker {k}: {:?} before the restart, {:?} after",
                before.breakers.get(k),
                after.breakers.get(k)
            )));
        }
    }
    if before.pauses != after.pauses {
        out.push(differ(format!(
            "pauses: {:?} before the restart, {:?} after",
            before.pauses, after.pauses
        )));
    }
    for ((k, dry), n) in &before.uses {
        let m = after.uses.get(&(k.clone(), *dry)).copied().unwrap_or(0);
        if !key_ok(k) && m != *n {
            out.push(differ(format!(
                "budget {k} ({}): {n} uses before the restart, {m} after",
                if *dry { "dry-run" } else { "enforce" }
            )));
        }
    }
    for (id, row) in &before.outbox {
        if after.outbox.get(id) != Some(row) {
            out.push(differ(format!(
                "outbox row {id} to {} changed by the restart",
                row.0
            )));
        }
    }
    for (id, (route, body, _)) in &after.outbox {
        if before.outbox.contains_key(id) {
            continue;
        }
        let n = serde_json::from_str::<serde_json::Value>(body).unwrap_or_default();
        let incident = n
            .get("incident")
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_string();
        let trigger = n.get("event").and_then(|e| e.as_str()) == Some("trigger");
        let ok = before
            .incidents
            .get(&incident)
            .or(after.incidents.get(&incident))
            .is_some_and(&explained);
        if incident.starts_with("STORM-") && !trigger {
            // The storm ended (incidents the restart's early stale check handed to humans no
            // longer count): its resolve is I6's business.
        } else if incident.starts_with("STORM-")
            && !storm_paged
            && (!interrupted.is_empty() || stale_changed)
        {
            // The storm's first page, for a refusal that follows from the restart.
        } else if incident.starts_with("STORM-") && storm_paged {
            // The engine kept in memory that it had paged this storm.
            out.push(Violation {
                invariant: "I8",
                kind: "restart_repeated_storm_page",
                message: format!(
                    "the restart paged {route} again for a storm already paged ({incident}, row {id})"
                ),
            });
        } else if !ok {
            out.push(differ(format!(
                "the restart enqueued a page to {route} for {incident} (row {id})"
            )));
        }
    }
    out
}
