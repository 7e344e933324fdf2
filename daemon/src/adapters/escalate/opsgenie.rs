//! Opsgenie Alert API: a trigger is `POST {base}/v2/alerts` with `Authorization: GenieKey KEY`
//! (message of at most 130 characters, `alias` = `remedyd/INC-…` for deduplication, description,
//! priority P1–P3 from the level, string-valued `details` with the ladder history); the resolve is
//! `POST {base}/v2/alerts/{alias}/close?identifierType=alias`; an update (every `update_every`
//! while the incident is open) adds a note to the alert: `POST
//! {base}/v2/alerts/{alias}/notes?identifierType=alias` with `{note, user, source}`. Opsgenie answers 202 Accepted;
//! 422 and other 4xx are final, 429 and 5xx are retried by the outbox.

use serde_json::{Value, json};

use super::{Notification, NotificationKind, PagerError, send_request, truncate};
use crate::domain::policy::{Route, Secret};

/// Opsgenie's priority for a remedyd level: 3 → P1, 2 → P2, 1 → P3.
pub fn priority(level: u8) -> &'static str {
    match level {
        3.. => "P1",
        2 => "P2",
        _ => "P3",
    }
}

/// `details`: a flat map of strings (Opsgenie shows them as a table).
pub fn details(n: &Notification) -> Value {
    let lines = |v: &[String]| truncate(&v.join("\n"), 4000);
    let mut d = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            d.insert(k.to_string(), Value::String(v));
        }
    };
    put("incident", n.incident.clone());
    put("status", n.status.clone());
    put("severity", n.severity.clone());
    put("level", n.level.to_string());
    put("service", n.service.clone());
    put("namespace", n.namespace.clone());
    put("rule", n.rule.clone());
    put("started_at", n.started_at.to_rfc3339());
    put("impact", n.impact.clone());
    put("reason", n.reason.clone());
    put("actions_taken", lines(&n.actions_taken));
    put("updates", lines(&n.updates));
    put("values", lines(&n.values));
    put("root_cause", n.root_cause.clone());
    if let Some(r) = &n.resolution {
        put("resolution", r.clone());
    }
    Value::Object(d)
}

/// The description: the template as text (Opsgenie keeps 15 000 characters).
pub fn description(n: &Notification) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "- none\n".to_string()
        } else {
            v.iter().map(|l| format!("- {l}\n")).collect()
        }
    };
    truncate(
        &format!(
            "{}\n\nImpact: {}\nStatus: {} (priority {}, severity {})\nStarted: {}\nWhy a human is needed: {}\n\nActions taken:\n{}\nMeasured values:\n{}\nUpdates:\n{}\nRoot cause: {}\n",
            n.description,
            n.impact,
            n.status,
            n.priority,
            n.severity,
            crate::domain::report::narrative::datetime(n.started_at),
            n.reason,
            list(&n.actions_taken),
            list(&n.values),
            list(&n.updates),
            n.root_cause,
        ),
        15_000,
    )
}

/// The create-alert body.
pub fn alert(n: &Notification) -> Value {
    let mut tags = vec!["remedyd".to_string(), format!("level-{}", n.level)];
    if !n.rule.is_empty() {
        tags.push(n.rule.clone());
    }
    json!({
        "message": truncate(&format!("[{}] {} {}: {}", n.priority, n.incident, n.service, n.description), 130),
        "alias": truncate(&n.dedup_key, 512),
        "description": description(n),
        "priority": priority(n.level),
        "source": "remedyd",
        "entity": if n.namespace.is_empty() { n.service.clone() } else { format!("{}/{}", n.namespace, n.service) },
        "tags": tags,
        "details": details(n),
    })
}

/// The close body.
pub fn close(n: &Notification) -> Value {
    json!({
        "source": "remedyd",
        "user": "remedyd",
        "note": truncate(n.resolution.as_deref().unwrap_or("recovered"), 25_000),
    })
}

/// The add-note body of an update: the reason (status, current value, what happened since), then
/// the timeline since the last update and the measured values.
pub fn note(n: &Notification) -> Value {
    let mut text = n.reason.clone();
    for (title, lines) in [
        ("Since the last update", &n.updates),
        ("Measured values", &n.values),
    ] {
        if !lines.is_empty() {
            text.push_str(&format!("\n\n{title}:\n"));
            text.push_str(
                &lines
                    .iter()
                    .map(|l| format!("- {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    }
    json!({
        "source": "remedyd",
        "user": "remedyd",
        "note": truncate(&text, 25_000),
    })
}

/// `{base}/v2/alerts`, `{base}/v2/alerts/{alias}/close?identifierType=alias` or, for an update,
/// `{base}/v2/alerts/{alias}/notes?identifierType=alias` (the alias is one path segment: its
/// `/` is percent-encoded).
pub fn endpoint(base: &str, n: &Notification) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(base).map_err(|e| format!("url: {e}"))?;
    {
        let mut seg = url
            .path_segments_mut()
            .map_err(|_| "url cannot have a path".to_string())?;
        seg.pop_if_empty().extend(["v2", "alerts"]);
        match n.event {
            NotificationKind::Resolve => {
                seg.extend([n.dedup_key.as_str(), "close"]);
            }
            NotificationKind::Update => {
                seg.extend([n.dedup_key.as_str(), "notes"]);
            }
            _ => {}
        }
    }
    if matches!(
        n.event,
        NotificationKind::Resolve | NotificationKind::Update
    ) {
        url.set_query(Some("identifierType=alias"));
    }
    Ok(url)
}

/// Creates or closes the alert.
pub(super) async fn deliver(
    client: &reqwest::Client,
    route: &Route,
    base: &str,
    key: &Secret,
    n: &Notification,
) -> Result<bool, PagerError> {
    let url = endpoint(base, n).map_err(|e| PagerError {
        retryable: false,
        message: format!("route {} (opsgenie): {e}", route.name),
        retry_after: None,
    })?;
    let body = match n.event {
        NotificationKind::Resolve => close(n),
        NotificationKind::Update => note(n),
        _ => alert(n),
    };
    let req = client
        .post(url)
        .header(
            reqwest::header::AUTHORIZATION,
            format!("GenieKey {}", key.expose()),
        )
        .json(&body);
    send_request(route, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_adds_a_note_to_the_alert_by_alias() {
        let n = super::super::sample_update();
        let url = endpoint("https://api.eu.opsgenie.com", &n).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            url.as_str(),
            "https://api.eu.opsgenie.com/v2/alerts/remedyd%2FINC-2026-0042/notes?identifierType=alias"
        );
        let b = note(&n);
        assert_eq!(b["user"], "remedyd");
        let text = b["note"].as_str().unwrap_or_default();
        assert!(text.starts_with("update: still escalated"), "{text}");
        assert!(
            text.contains("Since the last update:\n- 10:20:00 verification probe"),
            "{text}"
        );
        assert!(
            text.contains("Measured values:\n- error rate 0.31"),
            "{text}"
        );
        assert!(b.get("message").is_none(), "not a new alert");
    }
}
