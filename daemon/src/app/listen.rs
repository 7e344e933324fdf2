//! The HTTP listener: an accept loop that bounds what clients can hold (docs/api.md: Limits of the
//! listener).
//!
//! `axum::serve` takes every connection it is offered and keeps hyper's defaults (a 400 KiB
//! header buffer, no header-read timeout); this loop serves the same router with:
//!
//! - at most `max_connections` connections at once: beyond it the loop stops accepting, so new
//!   connections wait in the kernel's accept queue until one closes (they are not refused);
//! - hyper reading request heads into at most twice `max_header_bytes` and at most twice
//!   `max_headers` headers (beyond that hyper answers 431 itself, with an empty body); below
//!   that, [`crate::app::api::limits`] answers 431 with a JSON error;
//! - `idle_timeout` for a request head to arrive, on a new connection and between kept-alive
//!   requests (hyper's header-read timeout: the connection is closed without an answer);
//! - the body deadline (`request_timeout`, 408 JSON) in [`crate::app::api::limits`].
//!
//! Shutdown: the loop stops accepting, every connection is asked to finish its request in
//! progress and close, and [`serve`] returns when all have.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::load::config::ListenerLimits;

/// After a failed accept (out of file descriptors, most likely), how long the loop waits before
/// the next: long enough not to spin, short enough that a freed descriptor is used promptly.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// hyper's smallest read buffer (it panics below it).
const HYPER_MIN_BUF: usize = 8192;

/// The HTTP/1 connection settings for these limits.
fn builder(limits: &ListenerLimits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.idle_timeout)
        // Twice the limits: requests between the limit and this are read and answered with a
        // JSON 431 by the router; only beyond it does hyper refuse them itself.
        .max_buf_size((2 * limits.max_header_bytes).max(HYPER_MIN_BUF))
        .max_headers(2 * limits.max_headers);
    b
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then waits for the
/// connections to finish their requests in progress.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let builder = builder(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let conns = TaskTracker::new();
    let closing = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first: while every slot is taken, connections wait in the accept queue.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "Could not accept a connection; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let closing = closing.clone();
        conns.spawn(async move {
            let _slot = slot;
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = closing.cancelled() => None,
            };
            let r = match done {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                // Timeouts, resets and malformed requests: the client's doing, not ours.
                tracing::debug!(error = %e, "Connection ended with an error");
            }
        });
    }
    drop(listener);
    closing.cancel();
    conns.close();
    conns.wait().await;
}
