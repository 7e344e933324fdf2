//! What a page says: the runbook's communication template plus the ladder's history.

use serde::{Deserialize, Serialize};

use crate::domain::incident::{Entry, EntryKind, Incident};
use crate::domain::report::narrative;
use crate::domain::time::Timestamp;

/// Trigger, resolve, update, or the daily digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A human must act.
    Trigger,
    /// It recovered.
    Resolve,
    /// The daily summary (webhook and Slack routes only: it must not page anyone).
    Digest,
    /// How an escalated incident stands, every `update_every` while it is open (to the routes
    /// paged: it never pages anyone new).
    Update,
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
    pub digest: Option<crate::domain::report::digest::Digest>,
    /// The incident's page on the dashboard (`{external_url}/incidents/{id}`; the dashboard
    /// itself for a digest), set as it is sent when `external_url` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A request for approval of a step (`approve:`, state `pending`): Slack routes show
    /// Approve/Deny buttons. In any other state it is the approval's outcome, which replaces
    /// the request's message where the route can edit it (Slack Web API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::domain::approval::Approval>,
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
        url: None,
        approval: None,
    }
}

/// An update on an open incident: `updates` holds only the timeline since `since` (the previous
/// update or the first page); `reason` says the status, the current measured value if one is
/// known, and how much happened since.
pub fn update(inc: &Incident, timeline: &[Entry], since: Timestamp) -> Notification {
    // The previous update's own entry is no news.
    let recent: Vec<Entry> = timeline
        .iter()
        .filter(|e| e.at >= since && e.kind != EntryKind::UpdateSent)
        .cloned()
        .collect();
    let status = inc.status().as_str();
    let value = narrative::values(timeline)
        .pop()
        .map_or("no measured value".to_string(), |v| {
            format!("last measured: {v}")
        });
    let tried = match narrative::actions_taken(inc, &recent).len() {
        0 => "nothing tried".to_string(),
        n => format!("{n} step(s) tried"),
    };
    let reason = format!(
        "update: still {status}; {value}; since {}: {tried}, {} timeline entr{}",
        since.hms(),
        recent.len(),
        if recent.len() == 1 { "y" } else { "ies" }
    );
    let mut n = notification(inc, timeline, NotificationKind::Update, &reason);
    n.updates = narrative::updates(inc, &recent);
    if n.updates.is_empty() {
        n.updates = vec![format!("nothing new since {}", since.hms())];
    }
    n
}

/// Where people see the notification's incident under `external_url` (no trailing `/`): its
/// dashboard page, or the dashboard itself for a digest or a storm (not stored as incidents).
pub fn incident_url(external_url: &str, n: &Notification) -> String {
    let base = external_url.trim_end_matches('/');
    if n.event == NotificationKind::Digest || n.incident.starts_with("STORM-") {
        return format!("{base}/");
    }
    // Incident ids are `INC-…`; anything outside the URL-safe set is percent-encoded all the same.
    let id: String = n
        .incident
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{base}/incidents/{id}")
}

/// Where the rest of what a page had to cut can be read: the incident's page, or the review
/// command when no `external_url` is configured.
pub fn rest_at(n: &Notification) -> String {
    match &n.url {
        Some(u) => u.clone(),
        None => format!("see `remedyd review {}`", n.incident),
    }
}

/// The timeline's record of an update sent: to which routes, the status, and the measured value
/// it reported (`values`' last line, as the update's reason says it).
pub fn update_entry(n: &Notification, routes: &[String], now: Timestamp) -> Entry {
    let value = n.values.last().cloned();
    Entry::new(
        now,
        EntryKind::UpdateSent,
        format!(
            "update sent to {}: still {}; {}",
            routes.join(", "),
            n.status,
            value
                .as_deref()
                .map_or("no measured value".to_string(), |v| format!(
                    "last measured: {v}"
                ))
        ),
        serde_json::json!({"routes": routes, "status": n.status, "value": value}),
    )
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

/// The daily digest as a notification (it goes through the outbox like a page).
pub fn digest(input: &crate::domain::report::digest::Input) -> Notification {
    let (headline, digest) = crate::domain::report::digest::summarize(input);
    let since = digest.since;
    let day = &input.now.to_rfc3339()[..10];
    Notification {
        event: NotificationKind::Digest,
        dedup_key: format!("remedyd/digest/{day}"),
        incident: format!("DIGEST-{day}"),
        priority: "P5".into(),
        severity: "info".into(),
        status: "digest".into(),
        service: "remedyd".into(),
        namespace: String::new(),
        rule: String::new(),
        level: 0,
        started_at: since,
        resolved_at: None,
        description: headline,
        impact: String::new(),
        reason: "daily digest".into(),
        actions_taken: digest.actions.clone(),
        updates: digest.incidents.clone(),
        values: digest.budgets_nearly_spent.clone(),
        resolution: None,
        history: Vec::new(),
        root_cause: String::new(),
        digest: Some(digest),
        url: None,
        approval: None,
    }
}
