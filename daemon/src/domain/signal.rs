//! The normalized alert every source produces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::time::Timestamp;

/// Label or annotation set, ordered so that serialization is stable.
pub type Labels = BTreeMap<String, String>;

/// Where a signal came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `POST /webhook/alertmanager`.
    Webhook,
    /// A polled PromQL rule.
    Poller,
}

impl Source {
    /// The label value used in metrics and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Poller => "poller",
        }
    }
}

/// Firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The condition holds.
    Firing,
    /// The condition stopped holding.
    Resolved,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One normalized alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Where it came from.
    pub source: Source,
    /// Firing or resolved.
    pub status: Status,
    /// Identifying labels.
    pub labels: Labels,
    /// Descriptive annotations (re-rendered by Prometheus on every send).
    pub annotations: Labels,
    /// When the alert started firing.
    pub starts_at: Timestamp,
    /// When it ended; `None` while firing (Go's zero time on the wire).
    pub ends_at: Option<Timestamp>,
    /// Alertmanager's label-set hash.
    pub fingerprint: String,
    /// Link back to the expression that fired.
    pub generator_url: String,
    /// For polled rules, the value behind the signal.
    pub value: Option<f64>,
    /// For polled rules, the rule that produced it (polled signals go to their rule only).
    #[serde(default)]
    pub rule: Option<String>,
    /// For polled rules, the level the value maps to.
    #[serde(default)]
    pub level: Option<u8>,
}

impl Signal {
    /// The alert's name, or `""`.
    pub fn alertname(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }
}
