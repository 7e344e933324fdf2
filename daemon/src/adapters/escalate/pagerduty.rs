//! PagerDuty Events API v2: `POST https://events.pagerduty.com/v2/enqueue` with the routing key
//! in the body. A trigger carries the runbook's template in `payload.custom_details`; the resolve
//! names the same `dedup_key` (`remedyd/INC-…`), so PagerDuty closes the alert it opened. An update
//! (every `update_every` while the incident is open) is another `trigger` on the same `dedup_key`:
//! the Events API has no note, and PagerDuty deduplicates a trigger whose key names an open alert
//! into that alert (appended to its log, no new incident, nobody paged again). PagerDuty
//! answers 202; 400 with `{"status": "invalid event", "errors": [...]}` is final; 429 and 5xx are
//! retried by the outbox.

use serde_json::{Value, json};

use super::{Notification, NotificationKind, PagerError, send_request, truncate};
use crate::domain::policy::{Route, Secret};

/// PagerDuty's severity for a remedyd level: 3 critical, 2 error, 1 warning.
pub fn severity(level: u8) -> &'static str {
    match level {
        3.. => "critical",
        2 => "error",
        1 => "warning",
        0 => "info",
    }
}

/// One line for the alert list (PagerDuty keeps 1024 characters).
pub fn summary(n: &Notification) -> String {
    let state = match n.event {
        NotificationKind::Resolve => "resolved".to_string(),
        _ => n.status.clone(),
    };
    truncate(
        &format!(
            "[{}] {} {}: {} ({state}: {})",
            n.priority, n.incident, n.service, n.description, n.reason
        ),
        1024,
    )
}

/// The runbook's template and the ladder history, for `custom_details`.
pub fn details(n: &Notification) -> Value {
    let mut d = json!({
        "incident": n.incident,
        "priority": n.priority,
        "severity": n.severity,
        "status": n.status,
        "service": n.service,
        "namespace": n.namespace,
        "rule": n.rule,
        "level": n.level,
        "started_at": n.started_at,
        "description": n.description,
        "impact": n.impact,
        "reason": n.reason,
        "actions_taken": n.actions_taken,
        "updates": n.updates,
        "values": n.values,
        "root_cause": n.root_cause,
    });
    if let Some(r) = &n.resolution {
        d["resolution"] = json!(r);
    }
    if let Some(at) = n.resolved_at {
        d["resolved_at"] = json!(at);
    }
    d
}

/// The Events API v2 body.
pub fn event(n: &Notification, routing_key: &str) -> Value {
    match n.event {
        NotificationKind::Resolve => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": n.dedup_key,
        }),
        _ => {
            let source = if n.namespace.is_empty() {
                n.service.clone()
            } else {
                format!("{}/{}", n.namespace, n.service)
            };
            json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": n.dedup_key,
                "client": "remedyd",
                "payload": {
                    "summary": summary(n),
                    "source": source,
                    "severity": severity(n.level),
                    "timestamp": n.started_at,
                    "component": n.service,
                    "group": n.namespace,
                    "class": n.rule,
                    "custom_details": details(n),
                }
            })
        }
    }
}

/// Sends one event.
pub(super) async fn deliver(
    client: &reqwest::Client,
    route: &Route,
    url: &str,
    key: &Secret,
    n: &Notification,
) -> Result<bool, PagerError> {
    send_request(route, client.post(url).json(&event(n, key.expose()))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_a_repeat_trigger_on_the_same_dedup_key() {
        let n = super::super::sample_update();
        let e = event(&n, "key");
        assert_eq!(e["event_action"], "trigger");
        assert_eq!(e["dedup_key"], "remedyd/INC-2026-0042");
        let d = &e["payload"]["custom_details"];
        assert_eq!(d["status"], "escalated");
        assert!(
            d["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("update:")
        );
        assert_eq!(d["updates"][0], n.updates[0]);
        assert_eq!(d["values"][0], "error rate 0.31");
    }
}
