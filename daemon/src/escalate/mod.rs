//! Escalation: notifications in the runbook's shape, the `Pager` trait, and the pagers by route
//! type (generic webhook, PagerDuty, Opsgenie, Slack) behind one dispatching [`Pagers`].

pub mod digest;
pub mod narrative;
pub mod opsgenie;
pub mod outbox;
pub mod pagerduty;
pub mod review;
pub mod slack;
pub mod webhook;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::BoxFuture;
use crate::clock::Timestamp;
use crate::incident::{Entry, Incident};
use crate::policy::{Route, Transport};

/// Trigger, resolve, or the daily digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A human must act.
    Trigger,
    /// It recovered.
    Resolve,
    /// The daily summary (webhook and Slack routes only: it must not page anyone).
    Digest,
}

/// What a pager sends: the runbook's communication template plus the ladder history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Trigger or resolve.
    pub event: NotificationKind,
    /// Stable per incident, for pager-side deduplication.
    pub dedup_key: String,
    /// Incident id.
    pub incident: String,
    /// `P1` (level 3) … `P3` (level 1).
    pub priority: String,
    /// `critical`, `high`, `warning`.
    pub severity: String,
    /// Incident status at the time of sending.
    pub status: String,
    /// The service (target name).
    pub service: String,
    /// Target namespace.
    pub namespace: String,
    /// Rule.
    pub rule: String,
    /// Level.
    pub level: u8,
    /// When it started.
    pub started_at: Timestamp,
    /// When it resolved.
    pub resolved_at: Option<Timestamp>,
    /// What is wrong.
    pub description: String,
    /// Who is affected.
    pub impact: String,
    /// Why a human is needed now.
    pub reason: String,
    /// Steps run, one line each.
    pub actions_taken: Vec<String>,
    /// Time-stamped updates (`12:05:00 restarted checkout (step restart ok)`).
    pub updates: Vec<String>,
    /// The measured values behind the decisions (probe values, budgets, breakers).
    #[serde(default)]
    pub values: Vec<String>,
    /// On resolve: when, and how long after it opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The full timeline with the values behind each decision.
    pub history: Vec<Entry>,
    /// Root cause: left for a human.
    pub root_cause: String,
    /// The daily digest's content (digest notifications only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<digest::Digest>,
}

fn priority(level: u8) -> (&'static str, &'static str) {
    match level {
        3.. => ("P1", "critical"),
        2 => ("P2", "high"),
        _ => ("P3", "warning"),
    }
}

/// Builds a notification from an incident and its timeline.
pub fn notification(
    inc: &Incident,
    timeline: &[Entry],
    event: NotificationKind,
    reason: &str,
) -> Notification {
    let (priority, severity) = priority(inc.level);
    let summary = inc
        .labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| inc.rule.clone());
    let description = format!(
        "{summary} on {} ({}): level {} by rule {}",
        inc.target.name,
        inc.target.key(),
        inc.level,
        inc.rule
    );
    // The runbook's levels: 1 degraded, 2 unavailable, 3 infrastructure.
    let impact = match inc.level {
        3.. => format!(
            "level 3: infrastructure - several services affected ({})",
            inc.target.key()
        ),
        2 => format!("level 2: {} unavailable", inc.target.key()),
        _ => format!("level 1: {} degraded", inc.target.key()),
    };
    let actions_taken = narrative::actions_taken(inc, timeline);
    let updates = narrative::updates(inc, timeline);
    let values = narrative::values(timeline);
    let resolution = match event {
        NotificationKind::Resolve => narrative::resolution(inc, timeline),
        _ => None,
    };
    Notification {
        event,
        dedup_key: format!("remedyd/{}", inc.id),
        incident: inc.id.clone(),
        priority: priority.into(),
        severity: severity.into(),
        status: inc.status().as_str().into(),
        service: inc.target.name.clone(),
        namespace: inc.target.namespace.clone(),
        rule: inc.rule.clone(),
        level: inc.level,
        started_at: inc.opened_at,
        resolved_at: inc.resolved_at,
        description,
        impact,
        reason: reason.to_string(),
        actions_taken,
        updates,
        values,
        resolution,
        history: timeline.to_vec(),
        root_cause: ROOT_CAUSE.into(),
        digest: None,
    }
}

/// What a page says about the root cause: that is for a human to find.
pub const ROOT_CAUSE: &str = "to be determined by the responder";

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A failed delivery.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PagerError {
    /// Worth retrying (5xx, 429, connection errors).
    pub retryable: bool,
    /// What happened (never the URL's secret parts).
    pub message: String,
    /// Server-requested delay.
    pub retry_after: Option<std::time::Duration>,
}

/// Delivers notifications to a route.
pub trait Pager: Send + Sync + 'static {
    /// Sends one notification. `Ok(false)` when the route has no destination (recorded only).
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>>;
}

/// The pager `serve` uses: sends each notification the way its route's type requires.
pub struct Pagers {
    client: reqwest::Client,
}

impl Default for Pagers {
    fn default() -> Self {
        Self::new()
    }
}

impl Pagers {
    /// Pagers sharing one HTTP client with remedyd's User-Agent.
    pub fn new() -> Self {
        Self {
            client: crate::action::http_client(),
        }
    }
}

impl Pager for Pagers {
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async move {
            let c = &self.client;
            match &route.transport {
                Transport::Webhook { url: Some(url) } => webhook::deliver(c, route, url, n).await,
                Transport::Slack { url: Some(url) } => slack::deliver(c, route, url, n).await,
                Transport::PagerDuty { .. } | Transport::Opsgenie { .. }
                    if n.event == NotificationKind::Digest =>
                {
                    Err(PagerError {
                        retryable: false,
                        message: format!(
                            "route {}: a digest is not sent to a {} route",
                            route.name,
                            route.transport.kind()
                        ),
                        retry_after: None,
                    })
                }
                Transport::PagerDuty {
                    url,
                    routing_key: Some(key),
                } => pagerduty::deliver(c, route, url, key, n).await,
                Transport::Opsgenie {
                    url,
                    api_key: Some(key),
                } => opsgenie::deliver(c, route, url, key, n).await,
                _ => {
                    tracing::warn!(route = %route.name, kind = route.transport.kind(), source = %route.source, incident = %n.incident, "Route has no destination; notification recorded only");
                    Ok(false)
                }
            }
        })
    }
}

/// `Retry-After` in seconds or as an HTTP date, relative to now.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::from_secs(wait.whole_seconds().max(0) as u64))
}

/// What a receiver said, in one short line with every secret of the route blanked out.
fn answer_summary(body: &str, secrets: &[&str]) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => {
            let mut parts = Vec::new();
            for k in ["status", "message", "error", "result"] {
                if let Some(v) = m.get(k).and_then(|v| v.as_str()) {
                    parts.push(v.to_string());
                }
            }
            if let Some(errs) = m.get("errors").and_then(|e| e.as_array()) {
                parts.extend(
                    errs.iter()
                        .map(|e| e.as_str().map_or(e.to_string(), String::from)),
                );
            }
            if parts.is_empty() {
                body.to_string()
            } else {
                parts.join(": ")
            }
        }
        _ => body.to_string(),
    };
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s, "***");
    }
    truncate(&text, 200)
}

/// Sends a prepared request and maps the answer: 2xx is delivered; 429 (with `Retry-After`),
/// 408, 5xx and connection errors are retried by the outbox; any other 4xx is final. Messages
/// name the route and status, never a URL or a secret.
pub(crate) async fn send_request(
    route: &Route,
    req: reqwest::RequestBuilder,
) -> Result<bool, PagerError> {
    let secrets = route.transport.secrets();
    let resp = req.timeout(route.timeout).send().await.map_err(|e| {
        let mut message = format!(
            "route {} ({}): {}",
            route.name,
            route.transport.kind(),
            e.without_url()
        );
        for s in &secrets {
            message = message.replace(s, "***");
        }
        PagerError {
            retryable: true,
            message,
            retry_after: None,
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(true);
    }
    let retry_after = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let said = answer_summary(&body, &secrets);
    let code = status.as_u16();
    Err(PagerError {
        retryable: status.is_server_error() || code == 429 || code == 408,
        message: if said.is_empty() {
            format!(
                "route {} ({}): status {code}",
                route.name,
                route.transport.kind()
            )
        } else {
            format!(
                "route {} ({}): status {code}: {said}",
                route.name,
                route.transport.kind()
            )
        },
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_summarized_without_secrets() {
        let pd = r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect"]}"#;
        assert_eq!(
            answer_summary(pd, &[]),
            "invalid event: Event object is invalid: Length of 'routing_key' is incorrect"
        );
        assert_eq!(answer_summary("invalid_payload\n", &[]), "invalid_payload");
        assert_eq!(
            answer_summary("bad key abc123 given", &["abc123"]),
            "bad key *** given"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }
}
