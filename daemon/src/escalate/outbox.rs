//! Delivers the durable outbox: due pages are sent, failures retried with backoff (honouring
//! `Retry-After`), and nothing is dropped silently.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Pager;
use crate::clock::Clock;
use crate::engine::SharedRuleset;
use crate::store::Store;
use crate::telemetry::{Metrics, PageLabels};

/// Longest wait between two attempts of one page.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A page is given up (logged as an error and counted) after this many attempts: about a day at
/// the maximum backoff, far past any useful page.
const MAX_ATTEMPTS: u32 = 300;

/// Backoff before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 min.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(MAX_BACKOFF)
}

/// Runs the delivery loop until cancelled.
pub async fn run(
    store: Arc<dyn Store>,
    pager: Arc<dyn Pager>,
    ruleset: SharedRuleset,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut seen: Option<Arc<crate::ruleset::Ruleset>> = None;
    loop {
        let rs = ruleset.read().expect("ruleset lock").clone();
        if seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &rs)) {
            // New or reloaded routes: their page counters start at 0.
            metrics.init_routes(rs.routes.keys().map(String::as_str));
            seen = Some(rs);
        }
        if let Err(e) = deliver_due(&*store, &*pager, &ruleset, &*clock, &metrics).await {
            tracing::warn!(error = %e, "Outbox pass failed; retrying");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Sends every due page once.
pub async fn deliver_due(
    store: &dyn Store,
    pager: &dyn Pager,
    ruleset: &SharedRuleset,
    clock: &dyn Clock,
    metrics: &Metrics,
) -> Result<(), crate::store::StoreError> {
    let now = clock.now();
    // 64 per pass: a storm of pages is spread over passes instead of one long burst.
    for item in store.outbox_due(now, 64).await? {
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
                .outbox_retry(item.id, now.plus(MAX_BACKOFF), "route not defined")
                .await?;
            count("retry");
            continue;
        };
        match pager.send(route, &item.notification).await {
            Ok(delivered) => {
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
