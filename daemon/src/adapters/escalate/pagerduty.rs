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
use crate::domain::notification::rest_at;
use crate::domain::policy::{Route, Secret};
use crate::domain::report::evidence::{self, Measure, PAGERDUTY_EVENT_BYTES};

/// Lines of each list (`actions_taken`, `updates`, `values`) in `custom_details`, the newest
/// kept, and characters per line: 3 × 100 × 500 characters leave most of the 512 KB event to the
/// evidence however long the incident ran.
const LIST_LINES: usize = 100;
const LINE_CHARS: usize = 500;

/// Headroom under PagerDuty's 512 KB for what the size estimate does not see (the
/// `"evidence":` key and its comma).
const EVENT_SLACK_BYTES: usize = 1024;

fn recent(lines: &[String]) -> Vec<String> {
    let skip = lines.len().saturating_sub(LIST_LINES);
    lines[skip..]
        .iter()
        .map(|l| truncate(l, LINE_CHARS))
        .collect()
}

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
        "actions_taken": recent(&n.actions_taken),
        "updates": recent(&n.updates),
        "values": recent(&n.values),
        "root_cause": n.root_cause,
    });
    if let Some(r) = &n.resolution {
        d["resolution"] = json!(r);
    }
    if let Some(at) = n.resolved_at {
        d["resolved_at"] = json!(at);
    }
    if let Some(u) = &n.url {
        d["incident_url"] = json!(u);
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
            let mut e = json!({
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
            });
            // The incident's page: `client_url` is the "View in remedyd" link, `links` lists it.
            if let Some(u) = &n.url {
                e["client_url"] = json!(u);
                e["links"] = json!([{"href": u, "text": format!("remedyd: {}", n.incident)}]);
            }
            // The evidence takes what is left of the 512 KB event, cut with a note saying
            // where the rest is.
            let all = evidence::text(&n.history);
            if !all.is_empty() {
                let used = e.to_string().len();
                let room = PAGERDUTY_EVENT_BYTES.saturating_sub(used + EVENT_SLACK_BYTES);
                e["payload"]["custom_details"]["evidence"] = json!(evidence::fit(
                    &all,
                    room,
                    Measure::JsonBytes,
                    "PagerDuty's 512 KB event",
                    &rest_at(n)
                ));
            }
            e
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

    #[test]
    fn huge_evidence_fits_the_512_kb_event_with_a_note_and_the_incident_link() {
        let n = super::super::sample_with_evidence(20_000, true);
        let e = event(&n, "key");
        let body = e.to_string();
        assert!(body.len() <= PAGERDUTY_EVENT_BYTES, "{}", body.len());
        assert!(
            body.len() > PAGERDUTY_EVENT_BYTES - 4096,
            "the room is used"
        );
        let ev = e["payload"]["custom_details"]["evidence"]
            .as_str()
            .unwrap_or_default();
        assert!(ev.starts_with("== 22:13:20 step pod-evidence: python-services/checkout"));
        assert!(
            ev.contains("\nlogs.checkout-1.app:\n  <é\"\u{1}&x>"),
            "{}",
            &ev[..200]
        );
        assert!(ev.ends_with(
            "… cut to fit PagerDuty's 512 KB event; all of it: https://remedyd.example.com/incidents/INC-2026-0042"
        ));
        assert_eq!(
            e["client_url"],
            "https://remedyd.example.com/incidents/INC-2026-0042"
        );
        assert_eq!(e["links"][0]["href"], e["client_url"]);
        assert_eq!(
            e["payload"]["custom_details"]["incident_url"],
            e["client_url"]
        );
        // Small evidence is sent whole; without external_url the note names the review.
        let small = event(&super::super::sample_with_evidence(3, false), "key");
        let ev = small["payload"]["custom_details"]["evidence"]
            .as_str()
            .unwrap_or_default();
        assert!(!ev.contains("cut to fit"), "{ev}");
        assert!(small.get("client_url").is_none());
        let cut = event(&super::super::sample_with_evidence(20_000, false), "key");
        assert!(
            cut["payload"]["custom_details"]["evidence"]
                .as_str()
                .unwrap_or_default()
                .ends_with("all of it: see `remedyd review INC-2026-0042`")
        );
    }
}
