//! Slack's interactive messages: `POST /api/v1/slack/interactions` receives an Approve/Deny
//! click (`application/x-www-form-urlencoded`, a `payload` field of JSON). It is taken only when
//! `X-Slack-Signature` proves it under the signing secret and `X-Slack-Request-Timestamp` is
//! within 5 minutes ([`verify_slack`]); a request seen before (the same signature) is refused as
//! a replay. The in-memory record covers this replica; across replicas the store's
//! compare-and-set decides once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::approvals::{Ask, decide};
use super::{ApiError, AppState};
use crate::adapters::auth::{SLACK_MAX_SKEW, verify_slack};
use crate::adapters::escalate::slack::{APPROVE_ACTION, DENY_ACTION};
use crate::domain::approval::{Channel, Verdict};
use crate::domain::time::Timestamp;

/// Signatures kept against replays. 10 000: far more clicks than people make in the 10 minutes
/// a signature can be valid (5 either way); beyond it the oldest are dropped first.
const SEEN_MAX: usize = 10_000;

/// The Slack signing secret and the signatures seen lately.
pub struct SlackInteractions {
    secret: Option<String>,
    seen: Mutex<HashMap<String, Timestamp>>,
}

impl SlackInteractions {
    /// Interactions verified with `secret`; `None` refuses every request.
    pub fn new(secret: Option<String>) -> Self {
        Self {
            secret,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records `signature` at `now`; `false` when it was seen within the validity window.
    fn first_seen(&self, signature: &str, now: Timestamp) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // A signature's timestamp is at most 5 minutes off, so after 10 it can no longer pass.
        let horizon = now.minus(SLACK_MAX_SKEW * 2);
        seen.retain(|_, at| *at > horizon);
        if seen.contains_key(signature) {
            return false;
        }
        if seen.len() >= SEEN_MAX
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(signature.to_string(), now);
        true
    }
}

/// The part of Slack's `block_actions` payload read here.
#[derive(Debug, Default, Deserialize)]
struct Payload {
    #[serde(default)]
    user: SlackUser,
    #[serde(default)]
    actions: Vec<SlackAction>,
}

#[derive(Debug, Default, Deserialize)]
struct SlackUser {
    #[serde(default)]
    id: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct SlackAction {
    #[serde(default)]
    action_id: String,
    #[serde(default)]
    value: String,
}

/// An answer Slack shows: `{"text": ...}` (with `error` on a refusal).
fn answer(code: StatusCode, text: String) -> Response {
    let body = if code.is_success() {
        serde_json::json!({"response_type": "ephemeral", "replace_original": false, "text": text})
    } else {
        serde_json::json!({"response_type": "ephemeral", "replace_original": false, "text": text, "error": text})
    };
    (code, Json(body)).into_response()
}

/// `POST /api/v1/slack/interactions`.
pub(super) async fn interactions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match interaction(&state, &headers, &body).await {
        Ok((code, text)) => answer(code, text),
        Err(ApiError(code, text)) => {
            if code == StatusCode::UNAUTHORIZED {
                tracing::warn!(reason = %text, "Slack interaction refused");
            }
            answer(code, text)
        }
    }
}

async fn interaction(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, String), ApiError> {
    let unauthorized = |m: String| ApiError(StatusCode::UNAUTHORIZED, m);
    let Some(secret) = &state.slack.secret else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "Slack interactions are not configured: set slack_signing_secret".into(),
        ));
    };
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized(format!("missing header {name}")))
    };
    let ts = header("x-slack-request-timestamp")?;
    let sig = header("x-slack-signature")?;
    let now = state.clock.now();
    verify_slack(secret, ts, body, sig, now).map_err(|e| unauthorized(e.to_string()))?;
    if !state.slack.first_seen(sig, now) {
        return Err(unauthorized(
            "replayed request: this signature was already received".into(),
        ));
    }
    let payload = form_field(body, "payload").ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "payload: missing (Slack sends the interaction as a form field `payload`)".into(),
        )
    })?;
    let p: Payload = serde_json::from_str(&payload)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("payload: {e}")))?;
    let Some(action) = p
        .actions
        .iter()
        .find(|a| a.action_id == APPROVE_ACTION || a.action_id == DENY_ACTION)
    else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("actions: no {APPROVE_ACTION} or {DENY_ACTION} button"),
        ));
    };
    let verdict = if action.action_id == APPROVE_ACTION {
        Verdict::Approve
    } else {
        Verdict::Deny
    };
    let incident = action.value.split('/').next().unwrap_or_default();
    let names = [
        p.user.id.as_str(),
        p.user.username.as_str(),
        p.user.name.as_str(),
    ];
    let ask = Ask {
        incident,
        approval: Some(action.value.as_str()),
        step: None,
        names: &names,
        channel: Channel::Slack,
        verdict,
        comment: String::new(),
    };
    let a = decide(state, ask).await?;
    Ok((a.code, a.message))
}

/// The value of form field `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name).then(|| percent_decode(v))?
    })
}

/// Form decoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_field_is_decoded_from_the_form() {
        let body = b"x=1&payload=%7B%22a%22%3A+%22b%C3%A9%22%7D&y=";
        assert_eq!(form_field(body, "payload").unwrap(), r#"{"a": "bé"}"#);
        assert_eq!(form_field(body, "y").unwrap(), "");
        assert_eq!(form_field(body, "z"), None);
        assert_eq!(form_field(b"payload=%zz", "payload"), None);
    }

    #[test]
    fn a_signature_is_taken_once_within_its_window() {
        let s = SlackInteractions::new(Some("s".into()));
        let t = Timestamp(1_000_000_000);
        assert!(s.first_seen("v0=ab", t));
        assert!(!s.first_seen("v0=ab", t.plus(SLACK_MAX_SKEW)));
        assert!(s.first_seen("v0=cd", t));
        // Long after, the record is gone (its timestamp check refuses it anyway).
        assert!(s.first_seen("v0=ab", t.plus(SLACK_MAX_SKEW * 3)));
    }
}
