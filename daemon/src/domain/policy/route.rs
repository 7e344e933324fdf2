//! Human routes: where pages go (webhook, PagerDuty, Opsgenie, Slack), the secrets they carry, and
//! the load-time note for a route that cannot send.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A secret (routing key, API key, a webhook URL with its token) read from the environment or a
/// file at load time. It never appears in `Debug` output, logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Opsgenie API base (`https://api.eu.opsgenie.com` for EU accounts).
pub const OPSGENIE_URL: &str = "https://api.opsgenie.com";
/// Slack Web API base (`{base}/chat.postMessage`).
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// How a route delivers, and where. A `None` secret means it is not configured here: pages are
/// recorded (timeline, log, outbox) and not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Generic JSON webhook: the notification as JSON.
    Webhook {
        /// Destination (a secret when it came from env or a file: it may carry a token).
        url: Option<Secret>,
    },
    /// PagerDuty Events API v2.
    PagerDuty {
        /// Events endpoint ([`PAGERDUTY_URL`] unless overridden).
        url: String,
        /// Integration (routing) key.
        routing_key: Option<Secret>,
    },
    /// Opsgenie Alert API.
    Opsgenie {
        /// API base ([`OPSGENIE_URL`] unless overridden).
        url: String,
        /// API integration key (`Authorization: GenieKey …`).
        api_key: Option<Secret>,
    },
    /// Slack incoming webhook.
    Slack {
        /// The webhook URL (a secret).
        url: Option<Secret>,
    },
    /// Slack Web API (`chat.postMessage` with a bot token): the first message's `ts` is kept, so
    /// updates and the resolve are replies in the incident's thread.
    SlackApi {
        /// API base ([`SLACK_API_URL`] unless overridden).
        url: String,
        /// Channel id or name the bot posts to.
        channel: String,
        /// Bot token (`xoxb-…`, sent as `Authorization: Bearer …`).
        token: Option<Secret>,
    },
}

impl Transport {
    /// The route type as written in policies.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Webhook { .. } => "webhook",
            Transport::PagerDuty { .. } => "pagerduty",
            Transport::Opsgenie { .. } => "opsgenie",
            Transport::Slack { .. } | Transport::SlackApi { .. } => "slack",
        }
    }

    /// Whether it has what it needs to send.
    pub fn ready(&self) -> bool {
        match self {
            Transport::Webhook { url } | Transport::Slack { url } => url.is_some(),
            Transport::PagerDuty { routing_key, .. } => routing_key.is_some(),
            Transport::Opsgenie { api_key, .. } => api_key.is_some(),
            Transport::SlackApi { token, .. } => token.is_some(),
        }
    }

    /// Secret values, for redacting anything a receiver echoes back.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            Transport::Webhook { url } | Transport::Slack { url } => {
                url.iter().map(Secret::expose).collect()
            }
            Transport::PagerDuty { routing_key, .. } => {
                routing_key.iter().map(Secret::expose).collect()
            }
            Transport::Opsgenie { api_key, .. } => api_key.iter().map(Secret::expose).collect(),
            Transport::SlackApi { token, .. } => token.iter().map(Secret::expose).collect(),
        }
    }
}

/// Kind of a human route: the summary older callers read (`url` is `None` exactly when the
/// route cannot send). New code reads [`Route::transport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RouteKind {
    /// Any route.
    Webhook {
        /// `None` when its secret is missing (pages are then recorded, not sent); otherwise the
        /// URL written in the policy file, or a description without the secret (a URL from env
        /// or a file, PagerDuty, Opsgenie, Slack).
        url: Option<String>,
        /// Where the secret came from, for messages (never the secret itself).
        source: String,
    },
}

/// A named human route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Name used by `escalate_to`.
    pub name: String,
    /// Transport and destination.
    pub transport: Transport,
    /// Where the secret or URL came from (`env NAME`, `file PATH`, `url`), for messages.
    pub source: String,
    /// Why the route cannot send (its secret is missing), for the load-time note.
    pub missing: Option<String>,
    /// Summary for older callers; see [`RouteKind`].
    pub kind: RouteKind,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Route {
    /// A route from its parts (the [`RouteKind`] summary is derived).
    pub fn new(name: &str, transport: Transport, source: &str, timeout: Duration) -> Self {
        let url = match &transport {
            // A URL written in the policy file is not secret; one from env or a file may be.
            Transport::Webhook { url } if source == "url" => {
                url.as_ref().map(|u| u.expose().to_string())
            }
            Transport::Webhook { url } => {
                url.as_ref().map(|_| format!("webhook URL from {source}"))
            }
            Transport::PagerDuty { url, routing_key } => routing_key.as_ref().map(|_| url.clone()),
            Transport::Opsgenie { url, api_key } => api_key.as_ref().map(|_| url.clone()),
            Transport::Slack { url } => url.as_ref().map(|_| "slack incoming webhook".into()),
            Transport::SlackApi {
                url,
                channel,
                token,
            } => token
                .as_ref()
                .map(|_| format!("{url}/chat.postMessage to {channel}")),
        };
        let missing = (!transport.ready()).then(|| format!("{source} is not set"));
        Self {
            name: name.to_string(),
            kind: RouteKind::Webhook {
                url,
                source: source.to_string(),
            },
            transport,
            source: source.to_string(),
            missing,
            timeout,
        }
    }

    /// The load-time note for a route that records pages without sending them.
    pub fn note(&self) -> Option<String> {
        self.missing.as_ref().map(|why| {
            format!(
                "route {:?} ({}) has no destination: {why}; its pages are recorded, not sent",
                self.name,
                self.transport.kind()
            )
        })
    }
}
