//! Every refusal is JSON: axum's own answers (404 for an unknown path, 405 for a wrong method,
//! 400/415/422 from an extractor such as a bad query string) come as plain text or an empty body;
//! this wraps them as `{"error": "..."}` with the same status. Answers that are already JSON, and
//! the dashboard's HTML pages, pass untouched.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// How much of a plain-text refusal is kept as its message.
const MAX_MESSAGE: usize = 4096;

/// The middleware.
pub(super) async fn json_errors(req: Request, next: Next) -> Response {
    // Shared, not copied: the path is only written into an error.
    let uri = req.uri().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let kind = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if kind.starts_with("application/json") || kind.starts_with("text/html") {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = to_bytes(body, MAX_MESSAGE)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if !text.is_empty() {
        text
    } else {
        match status.as_u16() {
            404 => format!("no such path: {}", uri.path()),
            405 => format!(
                "method not allowed on {}{}",
                uri.path(),
                parts
                    .headers
                    .get(header::ALLOW)
                    .and_then(|v| v.to_str().ok())
                    .map(|a| format!("; allowed: {a}"))
                    .unwrap_or_default()
            ),
            _ => status
                .canonical_reason()
                .unwrap_or("refused")
                .to_lowercase(),
        }
    };
    let body = serde_json::json!({ "error": message }).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
