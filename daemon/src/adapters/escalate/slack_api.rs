//! Slack Web API: `POST {base}/chat.postMessage` with `Authorization: Bearer xoxb-…` and the same
//! message as the incoming webhook ([`super::slack::message`]) plus `channel`. Slack answers 200
//! with `{"ok": true, "channel": "C…", "ts": "…"}`; the first message's channel and `ts` are the
//! incident's thread on this route, which the outbox keeps in the store, so the updates and the
//! resolve go as replies (`thread_ts`) across restarts and failovers. The resolve is also shown in
//! the channel (`reply_broadcast`), so the channel sees the incident end.
//!
//! An approval's outcome (approved, denied, timed out, void) edits the request's message:
//! `POST {base}/chat.update` with its channel and `ts` (kept when the request was delivered,
//! [`crate::adapters::store::Store::keep_approval_message`]) and the outcome in place of the
//! buttons. Where the request's message is not known, the outcome is a new message.
//!
//! Errors: Slack answers most of them 200 with `{"ok": false, "error": "…"}`. Transient ones
//! (`ratelimited` — usually HTTP 429 with `Retry-After` — `rate_limited`, `internal_error`,
//! `fatal_error`, `service_unavailable`, `request_timeout`) are retried by the outbox, like 5xx
//! and connection errors; any other (`channel_not_found`, `not_in_channel`, `is_archived`,
//! `invalid_auth`, `not_authed`, `token_revoked`, `missing_scope`, `invalid_blocks`, …) will not
//! change by retrying and is final. The token never appears in a message.

use serde_json::Value;

use super::{Delivery, Notification, NotificationKind, PagerError, retry_after, truncate};
use crate::domain::policy::{Route, Secret};

/// `ok: false` errors worth another attempt: Slack's own transient failures and rate limits.
const TRANSIENT: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// The incident's thread on a route, as kept in the store: `CHANNEL/ts` (a channel id has no
/// `/`, nor has a `ts`).
pub fn thread(channel: &str, ts: &str) -> String {
    format!("{channel}/{ts}")
}

/// The channel and `ts` of a kept thread; `None` for anything else.
pub fn parse_thread(thread: &str) -> Option<(&str, &str)> {
    thread
        .rsplit_once('/')
        .filter(|(c, ts)| !c.is_empty() && !ts.is_empty())
}

/// The `chat.postMessage` body: the message, the channel, and for a page after the first the
/// thread it replies in (in the thread's channel, wherever `channel` points now).
pub fn body(n: &Notification, channel: &str, thread: Option<&str>) -> Value {
    let mut m = super::slack::message(n);
    let (channel, ts) = match thread.and_then(parse_thread) {
        Some((c, ts)) => (c, Some(ts)),
        None => (channel, None),
    };
    if let Some(o) = m.as_object_mut() {
        o.insert("channel".into(), Value::String(channel.to_string()));
        if ts.is_some() && n.event == NotificationKind::Resolve {
            o.insert("reply_broadcast".into(), Value::Bool(true));
        }
    }
    super::slack::in_thread(m, ts)
}

/// The `chat.update` body: the message `ts` in `channel` replaced by `n`.
pub fn update_body(n: &Notification, channel: &str, ts: &str) -> Value {
    let mut m = super::slack::message(n);
    if let Some(o) = m.as_object_mut() {
        o.insert("channel".into(), Value::String(channel.to_string()));
        o.insert("ts".into(), Value::String(ts.to_string()));
    }
    m
}

/// Whether `n` is an approval's outcome, which edits the request instead of posting.
pub fn is_outcome(n: &Notification) -> bool {
    n.approval
        .as_ref()
        .is_some_and(|a| a.state != crate::domain::approval::ApprovalState::Pending)
}

/// What a 200 answer says: the thread (`CHANNEL/ts`), or the error Slack named.
pub fn read_answer(body: &str) -> Result<Option<String>, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|_| format!("not a Web API answer: {}", truncate(body.trim(), 100)))?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        let channel = v.get("channel").and_then(Value::as_str);
        let ts = v.get("ts").and_then(Value::as_str);
        return Ok(channel.zip(ts).map(|(c, ts)| thread(c, ts)));
    }
    Err(v
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("ok is not true and no error was named")
        .to_string())
}

fn failure(route: &Route, retryable: bool, what: String, secrets: &[&str]) -> PagerError {
    let mut message = format!("route {} (slack web api): {what}", route.name);
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(s, "***");
    }
    PagerError {
        retryable,
        message,
        retry_after: None,
    }
}

/// Posts the message (a reply in `thread` when one is known) and returns the thread; for an
/// approval's outcome, `thread` is the request's message, which is edited.
pub(super) async fn deliver(
    client: &reqwest::Client,
    route: &Route,
    base: &str,
    channel: &str,
    token: &Secret,
    n: &Notification,
    thread: Option<&str>,
) -> Result<Delivery, PagerError> {
    let secrets = route.transport.secrets();
    let (method, payload) = match thread.and_then(parse_thread) {
        Some((c, ts)) if is_outcome(n) => ("chat.update", update_body(n, c, ts)),
        _ if is_outcome(n) => ("chat.postMessage", body(n, channel, None)),
        _ => ("chat.postMessage", body(n, channel, thread)),
    };
    let resp = client
        .post(format!("{base}/{method}"))
        .bearer_auth(token.expose())
        .json(&payload)
        .timeout(route.timeout)
        .send()
        .await
        .map_err(|e| failure(route, true, e.without_url().to_string(), &secrets))?;
    let status = resp.status();
    let wait = retry_after(resp.headers());
    let text = resp.text().await.map_err(|e| {
        failure(
            route,
            true,
            format!(
                "status {}: reading the answer: {}",
                status.as_u16(),
                e.without_url()
            ),
            &secrets,
        )
    })?;
    let answer = read_answer(&text);
    if !status.is_success() {
        let code = status.as_u16();
        let said = answer.err().unwrap_or_default();
        let mut e = failure(
            route,
            status.is_server_error() || code == 429 || code == 408,
            if said.is_empty() {
                format!("status {code}")
            } else {
                format!("status {code}: {said}")
            },
            &secrets,
        );
        e.retry_after = wait;
        return Err(e);
    }
    match answer {
        Ok(thread) => Ok(Delivery {
            delivered: true,
            thread,
        }),
        Err(error) => {
            let mut e = failure(route, TRANSIENT.contains(&error.as_str()), error, &secrets);
            e.retry_after = wait;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_the_thread_or_the_error_slack_named() {
        assert_eq!(
            read_answer(r#"{"ok":true,"channel":"C024BE91L","ts":"1401383885.000061"}"#),
            Ok(Some("C024BE91L/1401383885.000061".into()))
        );
        assert_eq!(read_answer(r#"{"ok":true}"#), Ok(None));
        assert_eq!(
            read_answer(r#"{"ok":false,"error":"channel_not_found"}"#),
            Err("channel_not_found".into())
        );
        assert!(read_answer("<html>").is_err_and(|e| e.starts_with("not a Web API answer")));
    }

    #[test]
    fn replies_go_to_the_threads_channel_and_the_resolve_is_broadcast() {
        let mut n = super::super::sample_update();
        let first = body(&n, "#ops", None);
        assert_eq!(first["channel"], "#ops");
        assert!(first.get("thread_ts").is_none());
        let reply = body(&n, "#ops", Some("C024BE91L/1401383885.000061"));
        assert_eq!(reply["channel"], "C024BE91L");
        assert_eq!(reply["thread_ts"], "1401383885.000061");
        assert!(reply.get("reply_broadcast").is_none());
        n.event = NotificationKind::Resolve;
        let resolve = body(&n, "#ops", Some("C024BE91L/1401383885.000061"));
        assert_eq!(resolve["reply_broadcast"], true);
        assert_eq!(parse_thread("garbage"), None);
    }

    #[test]
    fn an_approvals_outcome_edits_its_request_message() {
        let mut n = super::super::sample_update();
        assert!(!is_outcome(&n));
        let mut a = crate::domain::approval::Approval {
            id: "INC-2026-0042/1/0".into(),
            incident: "INC-2026-0042".into(),
            ladder: 1,
            step: 0,
            step_name: "scale".into(),
            requested_at: crate::domain::time::Timestamp(0),
            deadline: crate::domain::time::Timestamp(600_000),
            required: 1,
            approvers: vec!["alice".into()],
            state: crate::domain::approval::ApprovalState::Pending,
            decisions: Vec::new(),
        };
        n.approval = Some(a.clone());
        assert!(!is_outcome(&n), "the request itself is posted");
        a.state = crate::domain::approval::ApprovalState::TimedOut;
        n.approval = Some(a);
        assert!(is_outcome(&n));
        let edit = update_body(&n, "C024BE91L", "1401383885.000061");
        assert_eq!(edit["channel"], "C024BE91L");
        assert_eq!(edit["ts"], "1401383885.000061");
        assert!(edit.get("thread_ts").is_none());
        assert!(!edit.to_string().contains("remedyd_approve"), "no buttons");
        assert!(edit.to_string().contains("TIMED OUT"));
    }
}
