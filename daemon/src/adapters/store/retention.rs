//! Signal retention: the leader removes the signals and receipts older than `signal_retention`
//! (config; default 30 days), so that the store does not grow with every alert for ever.
//!
//! What is kept, and why:
//! - a signal the engine has not handled yet, whatever its age;
//! - a firing alert Alertmanager keeps re-sending (its `last_seen` is recent): the row is what
//!   makes a re-send a duplicate, and without it an old alert re-sent would be new again;
//! - the newest signal: SQLite gives `max(id) + 1` to the next row, and an id at or under the
//!   engine's watermark would never be read;
//! - incidents, their timelines, ledger, budgets, breakers and pages: they are the record, small,
//!   and never removed here.
//!
//! The retention must exceed `stale_after` (config checks it): staleness asks when an
//! incident's alerts were last heard of, and a row removed would read as never.
//!
//! Work is done in rounds, every [`EVERY`]: batches of [`BATCH`] signals in id order, each its
//! own short transaction (on SQLite ingest waits behind at most one batch), with [`PAUSE`]
//! between batches, until a batch reaches signals younger than the retention. A store error is
//! logged and the round is tried again later: nothing depends on it but the disk.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Store;
use crate::adapters::telemetry::Metrics;
use crate::domain::time::Clock;

/// Signals looked at per transaction.
pub const BATCH: usize = 1000;
/// Between two batches of one round: leaves the store to ingest.
pub const PAUSE: Duration = Duration::from_millis(100);
/// Between rounds, and after a failed batch.
pub const EVERY: Duration = Duration::from_secs(600);

/// Runs rounds until `cancel`.
pub async fn run(
    store: Arc<dyn Store>,
    retention: Duration,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut after = 0;
    let (mut signals, mut receipts) = (0u64, 0u64);
    loop {
        let before = clock.now().minus(retention);
        let wait = match store.prune_signals(after, before, BATCH).await {
            Ok(p) => {
                metrics.signals_pruned.inc_by(p.signals);
                signals += p.signals;
                receipts += p.receipts;
                match p.next {
                    Some(id) => {
                        after = id;
                        PAUSE
                    }
                    None => {
                        if signals + receipts > 0 {
                            tracing::info!(
                                signals,
                                receipts,
                                before = %before.to_rfc3339(),
                                "Removed signals past their retention"
                            );
                        }
                        (after, signals, receipts) = (0, 0, 0);
                        EVERY
                    }
                }
            }
            Err(e) => {
                metrics.store_error("retention");
                tracing::warn!(error = %e, "Removing old signals failed; trying again later");
                EVERY
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
