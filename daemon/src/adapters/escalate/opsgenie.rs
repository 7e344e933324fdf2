//! Opsgenie Alert API: a trigger is `POST {base}/v2/alerts` with `Authorization: GenieKey KEY`
//! (message of at most 130 characters, `alias` = `remedyd/INC-…` for deduplication, description,
//! priority P1–P3 from the level, string-valued `details` with the ladder history); the resolve is
//! `POST {base}/v2/alerts/{alias}/close?identifierType=alias`; an update (every `update_every`
//! while the incident is open) adds a note to the alert: `POST
//! {base}/v2/alerts/{alias}/notes?identifierType=alias` with `{note, user, source}`. Opsgenie answers 202 Accepted;
//! 422 and other 4xx are final, 429 and 5xx are retried by the outbox.

use serde_json::{Value, json};

use super::{Notification, NotificationKind, PagerError, send_request, truncate};
use crate::domain::notification::rest_at;
use crate::domain::policy::{Route, Secret};
use crate::domain::report::evidence::{
    self, Measure, OPSGENIE_DESCRIPTION_CHARS, OPSGENIE_DETAILS_CHARS, OPSGENIE_NOTE_CHARS,
};

/// Characters of each list (`actions_taken`, `updates`, `values`) in `details`: three of them
/// and the short fields stay well under the 8 000 characters Opsgenie allows all `details`, so
/// the evidence keeps a share.
const DETAILS_LIST_CHARS: usize = 1_200;

/// Characters of the `reason` in `details` (an escalation reason is a sentence or two).
const DETAILS_REASON_CHARS: usize = 600;

/// The least room worth giving the evidence in `details`; with less, only the note is there.
const DETAILS_EVIDENCE_MIN: usize = 200;

fn size(d: &serde_json::Map<String, Value>) -> usize {
    d.iter()
        .map(|(k, v)| k.chars().count() + v.as_str().map_or(0, |s| s.chars().count()))
        .sum()
}

/// Opsgenie's priority for a remedyd level: 3 → P1, 2 → P2, 1 → P3.
pub fn priority(level: u8) -> &'static str {
    match level {
        3.. => "P1",
        2 => "P2",
        _ => "P3",
    }
}

/// `details`: a flat map of strings (Opsgenie shows them as a table), keys and values together
/// within Opsgenie's 8 000 characters; the evidence gets what the other keys leave.
pub fn details(n: &Notification) -> Value {
    let rest = rest_at(n);
    let limit = "Opsgenie's 8 000-character details";
    let lines = |v: &[String]| {
        evidence::fit(
            &v.join("\n"),
            DETAILS_LIST_CHARS,
            Measure::Chars,
            limit,
            &rest,
        )
    };
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
    put("reason", truncate(&n.reason, DETAILS_REASON_CHARS));
    put("actions_taken", lines(&n.actions_taken));
    put("updates", lines(&n.updates));
    put("values", lines(&n.values));
    put("root_cause", n.root_cause.clone());
    if let Some(r) = &n.resolution {
        put("resolution", r.clone());
    }
    if let Some(u) = &n.url {
        put("incident_url", u.clone());
    }
    let all = evidence::text(&n.history);
    let room = OPSGENIE_DETAILS_CHARS.saturating_sub(size(&d) + "evidence".len());
    if !all.is_empty() && room >= DETAILS_EVIDENCE_MIN {
        d.insert(
            "evidence".into(),
            Value::String(evidence::fit(&all, room, Measure::Chars, limit, &rest)),
        );
    }
    Value::Object(d)
}

/// The description: the template as text, then the incident's page and the evidence, within
/// Opsgenie's 15 000 characters (the evidence, last, is what is cut).
pub fn description(n: &Notification) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "- none\n".to_string()
        } else {
            v.iter().map(|l| format!("- {l}\n")).collect()
        }
    };
    let mut text = format!(
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
    );
    if let Some(u) = &n.url {
        text.push_str(&format!("Incident page: {u}\n"));
    }
    let all = evidence::text(&n.history);
    if !all.is_empty() {
        text.push_str("\nEvidence:\n");
        text.push_str(&all);
    }
    evidence::fit(
        &text,
        OPSGENIE_DESCRIPTION_CHARS,
        Measure::Chars,
        "Opsgenie's 15 000-character description",
        &rest_at(n),
    )
}

/// The evidence as a note on the new alert (Opsgenie's notes keep 25 000 characters, more than
/// the description's share); `None` when no step gathered evidence.
pub fn evidence_note(n: &Notification) -> Option<String> {
    let all = evidence::text(&n.history);
    (!all.is_empty()).then(|| {
        evidence::fit(
            &format!("Evidence gathered by remedyd:\n{all}"),
            OPSGENIE_NOTE_CHARS,
            Measure::Chars,
            "Opsgenie's 25 000-character note",
            &rest_at(n),
        )
    })
}

/// The create-alert body.
pub fn alert(n: &Notification) -> Value {
    let mut tags = vec!["remedyd".to_string(), format!("level-{}", n.level)];
    if !n.rule.is_empty() {
        tags.push(n.rule.clone());
    }
    let mut a = json!({
        "message": truncate(&format!("[{}] {} {}: {}", n.priority, n.incident, n.service, n.description), 130),
        "alias": truncate(&n.dedup_key, 512),
        "description": description(n),
        "priority": priority(n.level),
        "source": "remedyd",
        "entity": if n.namespace.is_empty() { n.service.clone() } else { format!("{}/{}", n.namespace, n.service) },
        "tags": tags,
        "details": details(n),
    });
    if let Some(note) = evidence_note(n) {
        a["note"] = json!(note);
    }
    a
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
    if let Some(u) = &n.url {
        text.push_str(&format!("\n\nIncident page: {u}"));
    }
    let all = evidence::text(&n.history);
    if !all.is_empty() {
        text.push_str("\n\nEvidence:\n");
        text.push_str(&all);
    }
    json!({
        "source": "remedyd",
        "user": "remedyd",
        "note": evidence::fit(&text, OPSGENIE_NOTE_CHARS, Measure::Chars, "Opsgenie's 25 000-character note", &rest_at(n)),
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

    #[test]
    fn huge_evidence_fits_description_details_and_notes_with_a_note_where_the_rest_is() {
        let n = super::super::sample_with_evidence(20_000, true);
        let rest = "all of it: https://remedyd.example.com/incidents/INC-2026-0042";
        let a = alert(&n);
        let desc = a["description"].as_str().unwrap_or_default();
        assert!(desc.chars().count() <= OPSGENIE_DESCRIPTION_CHARS);
        assert!(
            desc.contains("Incident page: https://remedyd.example.com/incidents/INC-2026-0042")
        );
        assert!(desc.contains("\nEvidence:\n== 22:13:20 step pod-evidence"));
        assert!(desc.ends_with(rest), "{}", &desc[desc.len() - 200..]);
        let d = a["details"].as_object().cloned().unwrap_or_default();
        assert!(size(&d) <= OPSGENIE_DETAILS_CHARS, "{}", size(&d));
        assert!(d["evidence"].as_str().unwrap_or_default().ends_with(rest));
        assert_eq!(
            d["incident_url"],
            "https://remedyd.example.com/incidents/INC-2026-0042"
        );
        let note = a["note"].as_str().unwrap_or_default();
        assert!(note.chars().count() <= OPSGENIE_NOTE_CHARS);
        assert!(note.starts_with("Evidence gathered by remedyd:\n== "));
        assert!(note.ends_with(rest));
        let mut u = n.clone();
        u.event = NotificationKind::Update;
        let text = note_of(&u);
        assert!(text.chars().count() <= OPSGENIE_NOTE_CHARS);
        assert!(text.starts_with("update: still escalated"));
        assert!(text.contains("\n\nEvidence:\n== "));
        assert!(text.ends_with(rest));
        // Huge lists of the template alone stay within the details' limit too.
        let mut long = super::super::sample_update();
        long.actions_taken = vec!["x".repeat(3000); 50];
        long.updates = long.actions_taken.clone();
        long.values = long.actions_taken.clone();
        long.reason = "r".repeat(5000);
        let d = details(&long).as_object().cloned().unwrap_or_default();
        assert!(size(&d) <= OPSGENIE_DETAILS_CHARS, "{}", size(&d));
    }

    fn note_of(n: &Notification) -> String {
        note(n)["note"].as_str().unwrap_or_default().to_string()
    }
}
