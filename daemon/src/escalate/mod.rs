//! Escalation: notifications in the runbook's shape, the `Pager` trait and the webhook pager.

pub mod outbox;
pub mod webhook;

use serde::{Deserialize, Serialize};

use crate::action::BoxFuture;
use crate::clock::Timestamp;
use crate::incident::{Entry, Incident};
use crate::policy::Route;

/// Trigger or resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A human must act.
    Trigger,
    /// It recovered.
    Resolve,
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
    /// Time-stamped updates (`12:05:00 step restart started`).
    pub updates: Vec<String>,
    /// The full timeline with the values behind each decision.
    pub history: Vec<Entry>,
    /// Root cause: left for a human.
    pub root_cause: String,
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
    let actions_taken = timeline
        .iter()
        .filter(|e| {
            matches!(
                e.kind.as_str(),
                "step_ok" | "step_failed" | "step_interrupted"
            )
        })
        .map(|e| format!("{} {}", e.at.hms(), e.message))
        .collect();
    let updates = timeline
        .iter()
        .map(|e| format!("{} {}", e.at.hms(), e.message))
        .collect();
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
        history: timeline.to_vec(),
        root_cause: "to be determined by the responder".into(),
    }
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
