//! Escalation: notifications in the runbook's shape, the `Pager` trait, and the pagers by route
//! type (generic webhook, PagerDuty, Opsgenie, Slack) behind one dispatching [`Pagers`].

pub mod digest;
pub mod opsgenie;
pub mod outbox;
pub mod pagerduty;
pub mod slack;
pub mod slack_api;
pub mod webhook;

use std::time::Duration;

use crate::domain::BoxFuture;
pub use crate::domain::notification::{
    Notification, NotificationKind, ROOT_CAUSE, notification, truncate,
};
use crate::domain::policy::{Route, Transport};

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

/// What a sent notification came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// `false` when the route has no destination (recorded only).
    pub delivered: bool,
    /// The thread the receiver opened for the incident (Slack Web API: `CHANNEL/ts` of the first
    /// message), to be kept and given back with the incident's later pages on this route.
    pub thread: Option<String>,
}

/// Delivers notifications to a route.
pub trait Pager: Send + Sync + 'static {
    /// Sends one notification. `Ok(false)` when the route has no destination (recorded only).
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>>;

    /// Sends one notification in the incident's thread on this route (`thread`: what an earlier
    /// delivery returned, `None` before the first). Routes without threads ignore it; this is
    /// what the outbox calls.
    fn send_in_thread<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
        thread: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Delivery, PagerError>> {
        let _ = thread;
        Box::pin(async move {
            self.send(route, n).await.map(|delivered| Delivery {
                delivered,
                thread: None,
            })
        })
    }
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
            client: crate::adapters::action::http_client(),
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
            self.send_in_thread(route, n, None)
                .await
                .map(|d| d.delivered)
        })
    }

    fn send_in_thread<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
        thread: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Delivery, PagerError>> {
        Box::pin(async move {
            let c = &self.client;
            if let Transport::SlackApi {
                url,
                channel,
                token: Some(token),
            } = &route.transport
            {
                return slack_api::deliver(c, route, url, channel, token, n, thread).await;
            }
            let delivered = match &route.transport {
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
            }?;
            Ok(Delivery {
                delivered,
                thread: None,
            })
        })
    }
}

/// A pager that puts the incident's dashboard URL (under `external_url`) into every notification
/// before the inner pager sends it. It is applied as a page is sent, not when it is queued, so a
/// page queued before `external_url` was set (or changed) links to where the dashboard is now.
pub struct Linked {
    inner: std::sync::Arc<dyn Pager>,
    external_url: String,
}

impl Linked {
    /// Wraps `inner`; `external_url` is the checked config value (no trailing `/`).
    pub fn new(inner: std::sync::Arc<dyn Pager>, external_url: String) -> Self {
        Self {
            inner,
            external_url,
        }
    }
}

impl Pager for Linked {
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async move {
            let mut linked = n.clone();
            linked.url = Some(crate::domain::notification::incident_url(
                &self.external_url,
                n,
            ));
            self.inner.send(route, &linked).await
        })
    }

    fn send_in_thread<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
        thread: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Delivery, PagerError>> {
        Box::pin(async move {
            let mut linked = n.clone();
            linked.url = Some(crate::domain::notification::incident_url(
                &self.external_url,
                n,
            ));
            self.inner.send_in_thread(route, &linked, thread).await
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

/// An update notification for the transports' request-shape tests.
#[cfg(test)]
pub(crate) fn sample_update() -> Notification {
    Notification {
        event: NotificationKind::Update,
        dedup_key: "remedyd/INC-2026-0042".into(),
        incident: "INC-2026-0042".into(),
        priority: "P2".into(),
        severity: "high".into(),
        status: "escalated".into(),
        service: "checkout".into(),
        namespace: "python-services".into(),
        rule: "r".into(),
        level: 2,
        started_at: crate::domain::time::Timestamp(1_700_000_000_000),
        resolved_at: None,
        description: "Broken on checkout".into(),
        impact: "level 2: checkout unavailable".into(),
        reason: "update: still escalated; last measured: error rate 0.31; since 10:15:00: nothing tried, 1 timeline entry".into(),
        actions_taken: vec!["10:00:05 restart failed".into()],
        updates: vec!["10:20:00 verification probe: 0.31 (needs < 0.05)".into()],
        values: vec!["error rate 0.31".into()],
        resolution: None,
        history: Vec::new(),
        root_cause: ROOT_CAUSE.into(),
        digest: None,
        url: None,
        approval: None,
    }
}

/// A trigger whose evidence step read `lines` log lines of 60 characters (quotes and control
/// characters among them, which JSON escapes) and, when `url`, linked to its incident's page.
#[cfg(test)]
pub(crate) fn sample_with_evidence(lines: usize, url: bool) -> Notification {
    let line: String = "<é\"\u{1}&x>".chars().cycle().take(60).collect();
    let mut n = sample_update();
    n.event = NotificationKind::Trigger;
    n.history = vec![
        serde_json::from_value(serde_json::json!({
            "at": 1_700_000_000_000u64, "kind": "step_ok", "message": "step pod-evidence succeeded",
            "data": {"summary": "python-services/checkout: 2 pod(s), 1 ready", "retryable": false,
                     "evidence": {"pods": [{"name": "checkout-1", "restarts": 3}],
                                  "logs": {"checkout-1": {"app": vec![line; lines].join("\n")}}}}
        }))
        .unwrap_or_else(|e| panic!("{e}")),
    ];
    if url {
        n.url = Some("https://remedyd.example.com/incidents/INC-2026-0042".into());
    }
    n
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
