//! Runs recorded signals through a ruleset: the real engine, in dry-run, on a manual clock that
//! follows the signals' receive times, with a fresh in-memory SQLite store (never the store the
//! signals were read from).
//!
//! The clock moves to each signal's receive time (and to the time its last re-send was heard,
//! which ingest records as a duplicate, so staleness sees it), to each open incident's next
//! deadline (`for`, verification), and at least once a minute while an incident is open (the
//! staleness check, steps held by a busy target).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use super::outcome::Outcome;
use crate::adapters::action::Executors;
use crate::adapters::store::sqlite::SqliteStore;
use crate::adapters::store::{History, Receipt, Store};
use crate::adapters::telemetry::Metrics;
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
        let at = [events.get(next).map(|e| e.0), deadline, heartbeat]
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
