//! Who may read and change what. With no `webhook_token` nothing is guarded (remedyd then refuses
//! to listen beyond loopback). With one:
//!
//! | what | needs |
//! |---|---|
//! | `/healthz`, `/readyz`, `/metrics` | nothing (no incident content: counts, states and rule names only) |
//! | reads: `GET /api/v1/incidents…`, `GET /api/v1/maintenance`, the dashboard's pages and reviews | `webhook_token` or `read_token` |
//! | writes: the webhook, pause, resume, resolve by hand, maintenance windows | `webhook_token` |
//!
//! A token comes as `Authorization: Bearer …`, or from the dashboard's cookie: the dashboard asks
//! for a token once (`POST /ui/login`) and keeps it in an `HttpOnly`, `SameSite=Strict` cookie
//! (hex-encoded, so any token is a valid cookie value), so that scripts cannot read it and other
//! sites cannot send it. Comparisons take constant time ([`crate::adapters::auth::authorized`]).

use axum::http::{HeaderMap, header};

use super::AppState;
use crate::adapters::auth::authorized;

/// The dashboard's cookie.
pub(crate) const COOKIE: &str = "remedyd_token";

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read incidents, timelines, reviews.
    Read,
    /// Change something (webhook, pause, resume, resolve).
    Write,
}

/// The credentials a request presents, each as an `Authorization` header value would be.
fn presented(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        out.push(h.as_bytes().to_vec());
    }
    if let Some(token) = cookie_token(headers) {
        let mut v = b"Bearer ".to_vec();
        v.extend_from_slice(token.as_bytes());
        out.push(v);
    }
    out
}

/// The token in the dashboard's cookie, if any (and well formed).
pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find_map(unhex)
}

/// Whether the request may do `access`.
pub(crate) fn allows(state: &AppState, headers: &HeaderMap, access: Access) -> bool {
    let Some(write) = &state.token else {
        return true;
    };
    presented(headers).iter().any(|c| {
        authorized(Some(c), write)
            || (access == Access::Read
                && state
                    .read_token
                    .as_deref()
                    .is_some_and(|r| authorized(Some(c), r)))
    })
}

/// Which access a token grants, if any (the login form).
pub(crate) fn grants(state: &AppState, token: &str) -> Option<Access> {
    let presented = format!("Bearer {token}");
    let p = Some(presented.as_bytes());
    match (&state.token, &state.read_token) {
        (Some(w), _) if authorized(p, w) => Some(Access::Write),
        (Some(_), Some(r)) if authorized(p, r) => Some(Access::Read),
        _ => None,
    }
}

/// The `Set-Cookie` value keeping `token` for the dashboard (`None`: clearing it).
pub(crate) fn set_cookie(token: Option<&str>) -> String {
    match token {
        Some(t) => format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            hex(t.as_bytes())
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_cookie_reads_back_the_token_it_keeps_and_ignores_other_cookies() {
        let set = set_cookie(Some("s3cr3t; =x"));
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let value = set.split(';').next().unwrap_or_default();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {value}; other=1")).unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("s3cr3t; =x"));
        let mut bad = HeaderMap::new();
        bad.insert(header::COOKIE, HeaderValue::from_static("remedyd_token=zz"));
        assert_eq!(cookie_token(&bad), None);
    }
}
