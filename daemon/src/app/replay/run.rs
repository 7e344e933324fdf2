//! Runs recorded signals through a ruleset: the real engine, in dry-run, on a manual clock that
//! follows the signals' receive times, with a fresh in-memory SQLite store (never the store the
//! signals were read from).
//!
//! The clock moves to each signal's receive time (and to the time its last re-send was heard,
//! which ingest records as a duplicate, so staleness sees it), to each open incident's next
//! deadline (`for`, verification), and at least once a minute while an incident is open (the
//! staleness check, steps held by a busy target).
//!
//! Steps with `approve:`: the decisions the store recorded (its `approvals`: who, through which
//! channel, when, approve or deny, the comment) are fed to the replay's own store
//! at their recorded times, through the same compare-and-set as a click, when the replayed
//! incident awaits the same step (by name) of an incident on the same (rule, target) and the
//! decision falls within its wait. A step no recorded decision matches waits until its timeout,
//! and the report says it would wait for approval.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use super::outcome::Outcome;
use crate::adapters::action::Executors;
use crate::adapters::store::sqlite::SqliteStore;
use crate::adapters::store::{History, Receipt, Store, StoreError};
use crate::adapters::telemetry::Metrics;
use crate::domain::approval::{Approval, ApprovalState, Decision};
use crate::domain::incident::Phase;
use crate::domain::policy::Mode;
use crate::domain::signal::Status;
use crate::domain::time::{Clock, ManualClock, Timestamp};
use crate::engine::{Engine, EngineConfig};
use crate::load::ruleset::{Ruleset, SharedRuleset};

/// While an incident is open the clock moves at least this often: the engine checks staleness
/// once a minute, and retries a step held by a busy target on every pass.
const HEARTBEAT: Duration = Duration::from_secs(60);
/// Incidents read back at the end. The store is replay's own, holding only this period.
const MAX_INCIDENTS: usize = 100_000;

/// Replays `history`'s signals from `start` to `until` through `rs` (every policy in dry-run);
/// returns the incidents the engine would have opened, oldest first.
pub async fn replay(
    history: &History,
    rs: &Ruleset,
    stale_after: Duration,
    start: Timestamp,
    until: Timestamp,
) -> Result<Vec<Outcome>, String> {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(std::path::Path::new(":memory:"))
            .map_err(|e| format!("replay's own store: {e}"))?,
    );
    let mut rs = rs.clone();
    for p in rs.policies.values_mut() {
        p.mode = Some(Mode::DryRun);
    }
    let shared: SharedRuleset = Arc::new(RwLock::new(Arc::new(rs)));
    let clock = Arc::new(ManualClock::new(start));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let mut engine = Engine::new(
        store.clone(),
        shared,
        // Plan-only: a dry run that reads no cluster or database either; no probe host is
        // allowed, so an HTTP verification sends nothing (no data).
        Executors::builtin().plan_only(),
        clock_dyn,
        Arc::new(Metrics::new()),
        EngineConfig {
            mode: Mode::DryRun,
            stale_after,
            ..Default::default()
        },
        Arc::new(Notify::new()),
    );
    let tasks = TaskTracker::new();

    // (when, signal index): each arrival, then each signal's last re-send.
    let mut events: Vec<(Timestamp, usize)> = Vec::new();
    for (i, s) in history.signals.iter().enumerate() {
        events.push((s.received_at.max(start), i));
        if let Some(last) = s.last_seen
            && s.signal.status == Status::Firing
            && last > s.received_at
        {
            events.push((last, i));
        }
    }
    // Stable: arrivals at the same instant keep the engine's recorded order (row id).
    events.sort_by_key(|(at, _)| *at);
    let mut decisions = recorded_decisions(history);

    let mut next = 0;
    loop {
        let now = clock.now();
        let mut batch = Vec::new();
        while next < events.len() && events[next].0 <= now {
            batch.push(history.signals[events[next].1].signal.clone());
            next += 1;
        }
        if !batch.is_empty() {
            let receipt = Receipt {
                received_at: now,
                receiver: "replay".into(),
                group_key: String::new(),
                truncated_alerts: 0,
                alerts: batch.len(),
            };
            store
                .ingest(receipt, batch)
                .await
                .map_err(|e| format!("replay's own store: {e}"))?;
        }
        engine
            .settle(&tasks)
            .await
            .map_err(|e| format!("replay's own store: {e}"))?;
        if feed(&*store, &mut decisions, now)
            .await
            .map_err(|e| format!("replay's own store: {e}"))?
        {
            engine
                .settle(&tasks)
                .await
                .map_err(|e| format!("replay's own store: {e}"))?;
        }
        let active = store
            .active_incidents()
            .await
            .map_err(|e| format!("replay's own store: {e}"))?;
        let deadline = active
            .iter()
            .filter_map(|i| i.deadline())
            .filter(|d| *d > now)
            .min();
        let heartbeat = (!active.is_empty()).then(|| now.plus(HEARTBEAT));
        let decision = decisions
            .iter()
            .filter(|d| !d.used && d.decision.at > now)
            .map(|d| d.decision.at)
            .min();
        let at = [events.get(next).map(|e| e.0), deadline, heartbeat, decision]
            .into_iter()
            .flatten()
            .min();
        match at {
            Some(at) if at <= until => clock.advance(at.since(now).max(Duration::from_millis(1))),
            _ => break,
        }
    }

    let mut incidents = store
        .list_incidents(None, MAX_INCIDENTS)
        .await
        .map_err(|e| format!("replay's own store: {e}"))?;
    incidents.reverse();
    let mut out = Vec::with_capacity(incidents.len());
    for inc in incidents {
        let timeline = store
            .timeline(&inc.id)
            .await
            .map_err(|e| format!("replay's own store: {e}"))?;
        out.push(Outcome::of(&inc, &timeline));
    }
    Ok(out)
}

/// A decision the store recorded, to be fed to the replay.
struct Recorded {
    /// The rule and target key of the incident it was taken for.
    rule: String,
    target: String,
    /// The step's name.
    step: String,
    /// Who, how, when.
    decision: Decision,
    /// Fed (or found not to apply) already.
    used: bool,
}

/// Every decision of the recorded approvals (the store's `approvals`), by decision time, with
/// the rule and target of its incident.
fn recorded_decisions(history: &History) -> Vec<Recorded> {
    let mut out: Vec<Recorded> = history
        .approvals
        .iter()
        .filter_map(|a| {
            let (inc, _) = history.incidents.iter().find(|(i, _)| i.id == a.incident)?;
            Some(a.decisions.iter().map(move |d| Recorded {
                rule: inc.rule.clone(),
                target: inc.target.key(),
                step: a.step_name.clone(),
                decision: d.clone(),
                used: false,
            }))
        })
        .flatten()
        .collect();
    out.sort_by_key(|r| r.decision.at);
    out
}

/// Feeds the recorded decisions due at `now` to the replayed incidents awaiting the same step;
/// whether any was taken (the engine then applies it).
async fn feed(
    store: &dyn Store,
    decisions: &mut [Recorded],
    now: Timestamp,
) -> Result<bool, StoreError> {
    if decisions.iter().all(|d| d.used || d.decision.at > now) {
        return Ok(false);
    }
    let mut taken = false;
    for inc in store.active_incidents().await? {
        let Phase::AwaitingApproval { ladder, step, .. } = inc.phase else {
            continue;
        };
        let id = Approval::key(&inc.id, ladder, step);
        let target = inc.target.key();
        for d in decisions
            .iter_mut()
            .filter(|d| !d.used && d.decision.at <= now)
        {
            let Some(a) = store.approval(&id).await? else {
                break;
            };
            if a.state != ApprovalState::Pending {
                break;
            }
            let within = a.requested_at <= d.decision.at && d.decision.at < a.deadline;
            if d.rule != inc.rule || d.target != target || d.step != a.step_name || !within {
                continue;
            }
            d.used = true;
            let decided = store
                .decide_approval(&id, d.decision.clone(), d.decision.at)
                .await?;
            taken |= matches!(decided, crate::adapters::store::Decided::Taken(..));
        }
    }
    // Decisions past due that matched nothing (the candidate asks no approval there) stay
    // unused; they are never fed later, as their time has gone.
    for d in decisions.iter_mut().filter(|d| d.decision.at <= now) {
        d.used = true;
    }
    Ok(taken)
}
