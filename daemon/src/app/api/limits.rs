//! The listener's limits that the router answers itself, with a JSON error (docs/api.md: Limits of
//! the listener): too many or too large headers (431) and a body that does not arrive within
//! `request_timeout` (408). What hyper refuses before the router sees a request is in
//! [`crate::app::listen`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use super::{ApiError, AppState};
use crate::domain::time::fmt_duration;
use crate::load::config::ListenerLimits;

/// The body did not arrive within `request_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within request_timeout")]
struct BodyTimedOut;

/// Checks the head against the limits, then serves the request with a body that fails at the
/// deadline; a request whose body failed that way is answered 408, whatever its handler said.
pub(super) async fn guard(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(e) = check_head(&req, &state.limits) {
        return e.into_response();
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let limit = state.limits.request_timeout;
    let req = req.map(|body| Body::from_stream(deadline(body, limit, timed_out.clone())));
    let resp = next.run(req).await;
    if !timed_out.load(Ordering::SeqCst) {
        return resp;
    }
    tracing::warn!(
        request_timeout = %fmt_duration(limit),
        "Request body not received in time; answering 408"
    );
    let mut resp = ApiError(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "body: not received within request_timeout ({})",
            fmt_duration(limit)
        ),
    )
    .into_response();
    // The rest of the body may still be on its way: the connection cannot carry another request.
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// 431 when the request has more headers than `max_headers`, or its request line and headers
/// take more than `max_header_bytes` (counted as on the wire: `name: value\r\n`).
fn check_head(req: &Request, limits: &ListenerLimits) -> Result<(), ApiError> {
    let count = req.headers().len();
    if count > limits.max_headers {
        return Err(ApiError(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "headers: {count} headers, more than max_headers ({})",
                limits.max_headers
            ),
        ));
    }
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    let bytes = line
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if bytes > limits.max_header_bytes {
        return Err(ApiError(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "headers: {bytes} bytes, more than max_header_bytes ({})",
                limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// The body's data, failing with [`BodyTimedOut`] (and setting `timed_out`) if it is still
/// incomplete `limit` after this call. A body read to its end in time never fails.
fn deadline(
    body: Body,
    limit: std::time::Duration,
    timed_out: Arc<AtomicBool>,
) -> impl Stream<Item = Result<axum::body::Bytes, axum::Error>> + Send + 'static {
    let mut inner = body.into_data_stream();
    let mut sleep: Pin<Box<tokio::time::Sleep>> = Box::pin(tokio::time::sleep(limit));
    let mut ended = false;
    futures::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = inner.poll_next_unpin(cx) {
            ended = item.is_none();
            return Poll::Ready(item);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            ended = true;
            timed_out.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        Poll::Pending
    })
}
