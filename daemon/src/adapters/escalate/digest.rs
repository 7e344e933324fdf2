//! The daily digest's I/O: [`gather`] reads the store, [`enqueue`] puts the digest in the
//! outbox, [`run`] is the scheduler. Its content is built by [`crate::domain::report::digest`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::adapters::store::{Commit, Store, StoreError};
use crate::domain::incident::Incident;
use crate::domain::policy::breaker::{self, BreakerState};
use crate::domain::policy::{DigestSchedule, Window};
use crate::domain::report::digest::{BudgetRow, Input, MAX_INCIDENTS, WINDOW, next_run};
use crate::domain::scope::Scope;
use crate::domain::time::{Clock, Timestamp};
use crate::load::ruleset::{Ruleset, SharedRuleset};

/// The budget scopes remedyd can name from its configuration and these incidents, with their use
/// now: global, each allowed namespace, each rule, and action × target for every step of these
/// incidents' policies. (The store has no list of keys; scopes of other targets are not shown.)
pub async fn budget_rows(
    store: &dyn Store,
    rs: &Ruleset,
    incidents: &[Incident],
    now: Timestamp,
) -> Result<Vec<BudgetRow>, StoreError> {
    let mut keys: BTreeMap<String, Window> = BTreeMap::new();
    keys.insert(Scope::Global.key(), rs.limits.global);
    for ns in &rs.limits.namespaces {
        keys.insert(Scope::namespace(ns).key(), rs.limits.namespace);
    }
    for r in &rs.rules {
        keys.insert(Scope::rule(&r.name).key(), rs.limits.rule);
    }
    for inc in incidents {
        let Some(p) = rs.policies.get(&inc.policy) else {
            continue;
        };
        for ladder in p.levels.values() {
            for s in &ladder.steps {
                keys.entry(Scope::action(&s.action, &inc.target).key())
                    .or_insert(s.budget.unwrap_or(rs.limits.action_target));
            }
        }
    }
    let mut rows = Vec::with_capacity(keys.len());
    for (key, window) in keys {
        let since = now.minus(window.per);
        let used = store.count_uses(&key, since, false).await?;
        let dry_run = store.count_uses(&key, since, true).await?;
        rows.push(BudgetRow {
            key,
            window,
            used,
            dry_run,
        });
    }
    Ok(rows)
}

/// Every breaker the store knows, with its state now.
pub async fn breaker_states(
    store: &dyn Store,
    rs: &Ruleset,
    now: Timestamp,
) -> Result<Vec<(String, BreakerState)>, StoreError> {
    Ok(store
        .breakers()
        .await?
        .into_iter()
        .map(|(k, rec)| {
            let cfg = if k == Scope::Global.key() {
                rs.limits.breaker_global
            } else {
                rs.limits.breaker_target
            };
            let s = breaker::state(&rec, now, &cfg);
            (k, s)
        })
        .collect())
}

/// Reads what a digest at `now` needs from the store.
pub async fn gather(store: &dyn Store, rs: &Ruleset, now: Timestamp) -> Result<Input, StoreError> {
    let since = now.minus(WINDOW);
    let all = store.list_incidents(None, MAX_INCIDENTS).await?;
    let truncated = all.len() == MAX_INCIDENTS;
    let mut incidents = Vec::new();
    for inc in all {
        if inc.opened_at >= since || inc.updated_at >= since || !inc.is_resolved() {
            let tl = store.timeline(&inc.id).await?;
            incidents.push((inc, tl));
        }
    }
    let list: Vec<Incident> = incidents.iter().map(|(i, _)| i.clone()).collect();
    Ok(Input {
        now,
        budgets: budget_rows(store, rs, &list, now).await?,
        breakers: breaker_states(store, rs, now).await?,
        incidents,
        truncated,
    })
}

/// The counter holding when (milliseconds since the epoch) the last digest was queued. Kept in the store, in the digest's own commit, so that a restart, a failover, or a
/// clock that jumps back past a digest already sent never sends that day's digest again.
pub const DIGEST_COUNTER: &str = "digest_sent";

/// Builds today's digest and puts it in the outbox (durable; delivered and retried like a page),
/// recording `now` in [`DIGEST_COUNTER`] in the same commit.
pub async fn enqueue(
    store: &dyn Store,
    rs: &Ruleset,
    route: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let n = crate::domain::notification::digest(&gather(store, rs, now).await?);
    let mut c = Commit::default();
    c.outbox.push((route.to_string(), n));
    c.counters.push((DIGEST_COUNTER.to_string(), now.0));
    store.commit(c).await
}

/// The next digest time after `now` that is also after the last digest was queued (`sent`, from
/// [`DIGEST_COUNTER`]; 0 when none): a backward clock jump does not bring a sent one back.
fn next_unsent(now: Timestamp, s: &DigestSchedule, sent: i64) -> Timestamp {
    let at = next_run(now, s);
    if at.0 > sent {
        at
    } else {
        next_run(Timestamp(sent), s)
    }
}

/// Sends the digest every day at `digest.at` while the ruleset has a `digest:` section, until
/// `cancel`. A digest time that passes while the process is down is skipped, not sent late; one
/// already sent is never sent again, even if the clock is set back past it. Run it
/// where the outbox runs (on the leader), so that several replicas send one digest.
pub async fn run(
    store: Arc<dyn Store>,
    ruleset: SharedRuleset,
    clock: Arc<dyn Clock>,
    outbox_wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut next: Option<(DigestSchedule, Timestamp)> = None;
    loop {
        let rs = ruleset.read().expect("ruleset lock").clone();
        let now = clock.now();
        match &rs.digest {
            None => next = None,
            Some(s) => {
                let at = match &next {
                    Some((prev, at)) if prev == s => *at,
                    _ => match store.counter(DIGEST_COUNTER.to_string()).await {
                        Ok(sent) => next_unsent(now, s, sent),
                        Err(e) => {
                            tracing::warn!(error = %e, "Could not read when the last digest was sent; retrying in a minute");
                            next = None;
                            tokio::select! {
                                _ = cancel.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                            }
                            continue;
                        }
                    },
                };
                next = Some((s.clone(), at));
                if now >= at {
                    match enqueue(&*store, &rs, &s.route, now).await {
                        Ok(()) => {
                            tracing::info!(route = %s.route, "Daily digest queued");
                            outbox_wake.notify_one();
                            next = Some((s.clone(), next_unsent(now, s, now.0)));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Daily digest could not be built; retrying in a minute");
                            next = Some((s.clone(), now.plus(Duration::from_secs(60))));
                        }
                    }
                }
            }
        }
        // Wake at least every 30 s: a reload may change the schedule.
        let wait = next
            .as_ref()
            .map_or(Duration::from_secs(30), |(_, at)| {
                at.since(clock.now()).min(Duration::from_secs(30))
            })
            .max(Duration::from_millis(10));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
