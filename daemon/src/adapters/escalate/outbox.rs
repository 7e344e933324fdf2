//! Delivers the durable outbox: due pages are sent, failures retried with backoff (honouring
//! `Retry-After`), and nothing is dropped silently.
//!
//! Two guarantees:
//!
//! - **Order per (incident, route).** The store returns only the oldest page not yet done of
//!   each (incident, route) ([`Store::outbox_due`]), so pages go out in enqueue order: a resolve
//!   waits behind its trigger while the trigger is retried, and goes once the trigger is
//!   delivered, recorded or given up. The digest (`DIGEST-…`) and storm pages (`STORM-…`) are
//!   keyed by their `incident` field the same way.
//! - **Stale updates are coalesced.** When a lane picks an update and newer updates of the same
//!   incident wait behind it (the route was down), only the newest is sent; the older ones are
//!   marked superseded by it in the store ([`Store::outbox_supersede`]) and counted
//!   (`remedyd_pages_total{result="superseded"}`). A trigger or a resolve is never superseded,
//!   and an update never jumps one. This happens when the lane picks the page, not when the
//!   engine enqueues the newer update: the lane owns its route, so the page it supersedes is not
//!   being sent at that moment, and a route that is up never has a backlog to coalesce.
//! - **Threads.** A route that answers with a thread (Slack Web API: the first message's `ts`)
//!   has it kept with the page ([`Store::outbox_threaded`]); the incident's later pages on that
//!   route are sent in it.
//! - **Approval messages.** The request of an approval keeps where it was posted
//!   ([`Store::keep_approval_message`]); its outcome, a later page of the same lane, is sent
//!   with that message in place of the thread, so the route edits it.
//! - **Routes are independent.** Each route is a lane that sends its pages one after another;
//!   lanes run concurrently, so a route whose receiver hangs until its timeout, or keeps
//!   failing, delays only its own pages. [`run`] keeps a lane going across passes: a page for
//!   another route enqueued while one lane hangs is sent at the next pass.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Delivery, NotificationKind, Pager};
use crate::adapters::store::{OutboxItem, Store, StoreError};
use crate::adapters::telemetry::{Metrics, PageLabels};
use crate::domain::approval::ApprovalState;
use crate::domain::time::Clock;
use crate::load::ruleset::SharedRuleset;

/// Longest wait between two attempts of one page.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A page is given up (logged as an error and counted) after this many attempts: about a day at
/// the maximum backoff, far past any useful page.
const MAX_ATTEMPTS: u32 = 300;
/// Pages read per route per pass: a storm of pages is spread over passes instead of one long
/// burst, and a backlog on one route does not hide the other routes' pages.
const PER_ROUTE: usize = 64;
/// Routes delivered to at once. Each lane holds at most one request in flight (bounded by its
/// route's timeout) and one store operation at a time. 32 is more routes than a routes file
/// names in practice, so no route waits for another; the bound keeps a runaway configuration
/// from opening sockets and store connections without limit (the rest wait for a free lane,
/// oldest page first).
const MAX_LANES: usize = 32;

/// Time between two passes when nothing wakes the loop: a page whose retry time has come goes
/// out within half a second.
const PASS_INTERVAL: Duration = Duration::from_millis(500);

/// Backoff before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 min.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(MAX_BACKOFF)
}

/// Runs the delivery loop until cancelled: each pass starts a lane for every route that has due
/// pages and no lane running. Returns once every lane has stopped, so a replica that lost
/// leadership sends nothing more.
pub async fn run(
    store: Arc<dyn Store>,
    pager: Arc<dyn Pager>,
    ruleset: SharedRuleset,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut seen: Option<Arc<crate::load::ruleset::Ruleset>> = None;
    // Lanes in flight; each returns its route when it is done.
    let mut lanes: JoinSet<String> = JoinSet::new();
    let mut busy: HashSet<String> = HashSet::new();
    loop {
        let rs = ruleset.read().expect("ruleset lock").clone();
        if seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &rs)) {
            // New or reloaded routes: their page counters start at 0.
            metrics.init_routes(rs.routes.keys().map(String::as_str));
            seen = Some(rs);
        }
        match store.outbox_due(clock.now(), PER_ROUTE).await {
            Ok(due) => {
                for (route, items) in by_route(due) {
                    // A running lane owns its route's pages: starting another would send them
                    // twice, or out of order.
                    if busy.contains(&route) || busy.len() >= MAX_LANES {
                        continue;
                    }
                    busy.insert(route.clone());
                    let (store, pager, ruleset, clock, metrics) = (
                        store.clone(),
                        pager.clone(),
                        ruleset.clone(),
                        clock.clone(),
                        metrics.clone(),
                    );
                    let span = tracing::info_span!("outbox_lane", route = %route);
                    lanes.spawn(
                        async move {
                            if let Err(e) =
                                deliver_lane(&*store, &*pager, &ruleset, &*clock, &metrics, items)
                                    .await
                            {
                                tracing::warn!(error = %e, "Outbox lane failed; its pages stay queued and are retried");
                                // Keep the route busy for a pass: a failing store is retried at
                                // the pass interval, not in a tight loop.
                                tokio::time::sleep(PASS_INTERVAL).await;
                            }
                            route
                        }
                        .instrument(span),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "Outbox pass failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                // A page cut off mid-send is not marked done: it is sent again (at least once).
                lanes.shutdown().await;
                return;
            }
            _ = wake.notified() => {}
            Some(done) = lanes.join_next() => lane_finished(done, &mut busy),
            _ = tokio::time::sleep(PASS_INTERVAL) => {}
        }
        while let Some(done) = lanes.try_join_next() {
            lane_finished(done, &mut busy);
        }
    }
}

/// Frees a finished lane's route. A lane that panicked takes the delivery loop down with it,
/// as a panic in the loop itself would: its page stays queued in the store.
fn lane_finished(done: Result<String, tokio::task::JoinError>, busy: &mut HashSet<String>) {
    match done {
        Ok(route) => {
            busy.remove(&route);
        }
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: only at shutdown, which clears every lane.
        Err(_) => {}
    }
}

/// Due pages grouped by route, routes in the order of their oldest due page.
fn by_route(due: Vec<OutboxItem>) -> Vec<(String, Vec<OutboxItem>)> {
    let mut lanes: Vec<(String, Vec<OutboxItem>)> = Vec::new();
    for item in due {
        match lanes.iter_mut().find(|(route, _)| *route == item.route) {
            Some((_, items)) => items.push(item),
            None => lanes.push((item.route.clone(), vec![item])),
        }
    }
    lanes
}

/// Sends every due page: routes concurrently (at most [`MAX_LANES`] at once), each route's
/// pages in order. A page held behind an earlier one of its incident and route (a resolve behind
/// its trigger) becomes due when that one is done, so passes repeat until one finds nothing new
/// (at most [`MAX_PASSES`]). Returns when every lane is done, with the first store error.
pub async fn deliver_due(
    store: &dyn Store,
    pager: &dyn Pager,
    ruleset: &SharedRuleset,
    clock: &dyn Clock,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    let mut last: Option<Vec<i64>> = None;
    for _ in 0..MAX_PASSES {
        let due = store.outbox_due(clock.now(), PER_ROUTE).await?;
        let ids: Vec<i64> = due.iter().map(|i| i.id).collect();
        if ids.is_empty() || last.as_ref() == Some(&ids) {
            break;
        }
        last = Some(ids);
        let results: Vec<Result<(), StoreError>> = futures::stream::iter(by_route(due))
            .map(|(_, items)| deliver_lane(store, pager, ruleset, clock, metrics, items))
            .buffer_unordered(MAX_LANES)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), StoreError>>()?;
    }
    Ok(())
}

/// Passes of one [`deliver_due`]: each unblocks at most the next page of every (incident,
/// route). A route that was down for hours has a backlog per incident (the trigger, then an
/// update every `update_every`), all due once it is back, and all must go in this call (the
/// pages behind them would otherwise wait for the next wake). Each pass either delivers or
/// reschedules what it found, and the loop stops at the first pass that finds nothing new, so
/// this only bounds a call whose pages keep failing.
const MAX_PASSES: usize = 256;

/// Sends one route's due pages one after another (each the oldest pending page of its
/// incident on this route), recording each result before the next.
async fn deliver_lane(
    store: &dyn Store,
    pager: &dyn Pager,
    ruleset: &SharedRuleset,
    clock: &dyn Clock,
    metrics: &Metrics,
    items: Vec<OutboxItem>,
) -> Result<(), StoreError> {
    for item in items {
        deliver_one(store, pager, ruleset, clock, metrics, item).await?;
    }
    Ok(())
}

/// Sends one page and records the result: done (delivered, recorded, or given up) or a retry.
async fn deliver_one(
    store: &dyn Store,
    pager: &dyn Pager,
    ruleset: &SharedRuleset,
    clock: &dyn Clock,
    metrics: &Metrics,
    item: OutboxItem,
) -> Result<(), StoreError> {
    let rs = ruleset.read().expect("ruleset lock").clone();
    let count = |result: &str| {
        metrics
            .pages
            .get_or_create(&PageLabels {
                route: item.route.clone(),
                result: result.into(),
            })
            .inc()
    };
    let Some(route) = rs.routes.get(&item.route) else {
        tracing::error!(route = %item.route, incident = %item.notification.incident, "Route no longer defined; page kept for a later reload");
        store
            .outbox_retry(item.id, clock.now().plus(MAX_BACKOFF), "route not defined")
            .await?;
        count("retry");
        return Ok(());
    };
    if item.notification.event == NotificationKind::Update {
        // A route that was down has a backlog of updates for this incident: only the newest is
        // worth reading. The lane owns the route, so nothing it supersedes is in flight.
        let superseded = store.outbox_supersede(item.id, clock.now()).await?;
        if !superseded.is_empty() {
            metrics
                .pages
                .get_or_create(&PageLabels {
                    route: item.route.clone(),
                    result: "superseded".into(),
                })
                .inc_by(superseded.len() as u64);
            tracing::info!(route = %item.route, incident = %item.notification.incident, superseded = superseded.len(), "Stale updates superseded by a newer one");
        }
        if superseded.contains(&item.id) {
            // The newest update is now the oldest pending page: the next pass sends it.
            return Ok(());
        }
    }
    let approval = item.notification.approval.as_ref();
    let outcome = approval.filter(|a| a.state != ApprovalState::Pending);
    let thread = match outcome {
        Some(a) => store.approval_message(&a.id, &item.route).await?,
        None => item.thread.clone(),
    };
    let sent = pager
        .send_in_thread(route, &item.notification, thread.as_deref())
        .await;
    if let (
        Ok(Delivery {
            delivered: true,
            thread: Some(at),
        }),
        Some(a),
    ) = (
        &sent,
        approval.filter(|a| a.state == ApprovalState::Pending),
    ) {
        store.keep_approval_message(&a.id, &item.route, at).await?;
    }
    match sent {
        Ok(Delivery {
            delivered,
            thread: Some(thread),
        }) if delivered && item.thread.is_none() && outcome.is_none() => {
            store.outbox_threaded(item.id, clock.now(), &thread).await?;
            count("delivered");
            tracing::info!(route = %item.route, incident = %item.notification.incident, event = ?item.notification.event, "Page handled; its thread is kept for the incident's later pages");
        }
        Ok(Delivery { delivered, .. }) => {
            store.outbox_done(item.id, clock.now(), delivered).await?;
            count(if delivered { "delivered" } else { "recorded" });
            tracing::info!(route = %item.route, incident = %item.notification.incident, event = ?item.notification.event, delivered, "Page handled");
        }
        Err(e) if e.retryable && item.attempts + 1 < MAX_ATTEMPTS => {
            let wait = e
                .retry_after
                .unwrap_or_else(|| backoff(item.attempts))
                .min(MAX_BACKOFF);
            store
                .outbox_retry(item.id, clock.now().plus(wait), &e.message)
                .await?;
            count("retry");
            tracing::warn!(route = %item.route, incident = %item.notification.incident, error = %e, retry_in = ?wait, "Page delivery failed; will retry");
        }
        Err(e) => {
            store.outbox_done(item.id, clock.now(), false).await?;
            count("failed");
            tracing::error!(route = %item.route, incident = %item.notification.incident, error = %e, attempts = item.attempts + 1, "Page could not be delivered; giving up");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
