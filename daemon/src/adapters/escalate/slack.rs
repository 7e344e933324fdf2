//! Slack incoming webhooks: JSON with `text` (the notification fallback) and readable `blocks` —
//! a header with priority, incident id and service; fields for status, severity, level and start;
//! what is wrong; the actions taken; the measured values; the latest updates; and a context line
//! with the reason. An update (every `update_every` while the incident is open) is a message
//! headed `UPDATE · P… INC-…` with what happened since the last one; it goes in the incident's
//! thread (`thread_ts`) when the first message's `ts` is known: through the Web API
//! ([`super::slack_api`]), which answers with it. An incoming webhook answers `ok` without the
//! `ts`, so over these routes it is a new message naming the incident. Slack answers 200 `ok`; 400/403/404/410 with a plain-text error
//! (`invalid_payload`, `no_service`, `channel_is_archived`, …) are final; 429 (with
//! `Retry-After`) and 5xx are retried by the outbox.

use serde_json::{Value, json};

use super::{Notification, NotificationKind, PagerError, send_request, truncate};
use crate::domain::notification::rest_at;
use crate::domain::policy::{Route, Secret};
use crate::domain::report::evidence::{self, SLACK_BLOCKS, SLACK_SECTION_CHARS};
use crate::domain::report::narrative::datetime;

/// Sections of evidence in one message at most: 10 × 3 000 characters is a long scroll already;
/// the rest is on the incident's page.
const EVIDENCE_SECTIONS: usize = 10;

/// `*Evidence*` and its newline, before the first section's evidence.
const EVIDENCE_TITLE: &str = "*Evidence*\n";

/// Slack's mrkdwn needs only these three escaped.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}})
}

fn bullets(title: &str, lines: &[String], empty: &str, keep_last: usize) -> Value {
    let mut text = format!("*{title}*\n");
    if lines.is_empty() {
        text.push_str(&format!("_{empty}_"));
    } else {
        let skip = lines.len().saturating_sub(keep_last);
        if skip > 0 {
            text.push_str(&format!("_… {skip} earlier_\n"));
        }
        for l in &lines[skip..] {
            text.push_str(&format!("• {}\n", escape(l)));
        }
    }
    section(text)
}

/// A section linking to the incident's page (`<url|text>`: the URL's own `<`, `>` and `|` cannot
/// occur in a checked `external_url` with an incident id appended).
fn link(url: &str, incident: &str) -> Value {
    section(format!("<{url}|Open {incident} in remedyd>"))
}

fn icon(n: &Notification) -> &'static str {
    match (n.event, n.level) {
        (NotificationKind::Resolve, _) => "✅",
        (NotificationKind::Update, _) => "🔄",
        (NotificationKind::Digest, _) => "📋",
        (_, 3..) => "🔴",
        (_, 2) => "🟠",
        _ => "🟡",
    }
}

/// The Approve button's `action_id` (the API's `/api/v1/slack/interactions` reads it).
pub const APPROVE_ACTION: &str = "remedyd_approve";
/// The Deny button's `action_id`.
pub const DENY_ACTION: &str = "remedyd_deny";

/// The message: `text` for notifications and clients without blocks, `blocks` for people.
pub fn message(n: &Notification) -> Value {
    if let Some(d) = &n.digest {
        return digest_message(n, d);
    }
    if let Some(a) = &n.approval {
        if a.state != crate::domain::approval::ApprovalState::Pending {
            return outcome_message(n, a);
        }
        return approval_message(n, a);
    }
    let resolved = n.event == NotificationKind::Resolve;
    let update = n.event == NotificationKind::Update;
    let header = truncate(
        &format!(
            "{} {}{} {} · {}",
            icon(n),
            match n.event {
                NotificationKind::Resolve => "RESOLVED · ",
                NotificationKind::Update => "UPDATE · ",
                _ => "",
            },
            n.priority,
            n.incident,
            n.service
        ),
        150,
    );
    let mut fields = vec![
        format!(
            "*Status*\n{}",
            if resolved {
                "resolved"
            } else {
                n.status.as_str()
            }
        ),
        format!("*Severity*\n{} ({})", n.severity, n.priority),
        format!("*Level*\n{}", n.level),
        format!("*Started*\n{}", datetime(n.started_at)),
        format!(
            "*Service*\n{}",
            if n.namespace.is_empty() {
                n.service.clone()
            } else {
                format!("{}/{}", n.namespace, n.service)
            }
        ),
        format!("*Rule*\n{}", n.rule),
    ];
    if let Some(at) = n.resolved_at {
        fields.push(format!("*Resolved*\n{}", datetime(at)));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        json!({"type": "section", "fields": fields.iter().map(|f| json!({"type": "mrkdwn", "text": escape(f)})).collect::<Vec<_>>()}),
        section(format!(
            "{}\n*Impact:* {}",
            escape(&n.description),
            escape(&n.impact)
        )),
        bullets(
            "Actions taken",
            &n.actions_taken,
            "none: no automated step ran",
            10,
        ),
    ];
    if !n.values.is_empty() {
        blocks.push(bullets("Measured values", &n.values, "", 10));
    }
    if let Some(r) = &n.resolution {
        blocks.push(section(format!("*Resolution*\n{}", escape(r))));
    } else if update {
        blocks.push(bullets(
            "Since the last update",
            &n.updates,
            "nothing new",
            15,
        ));
    } else {
        blocks.push(bullets("Updates", &n.updates, "none", 8));
    }
    if !resolved {
        // The context line and the link come after the evidence: keep their blocks free.
        let free = SLACK_BLOCKS.saturating_sub(blocks.len() + 2);
        let all = escape(&evidence::text(&n.history));
        let pieces = evidence::pieces(
            &all,
            SLACK_SECTION_CHARS - EVIDENCE_TITLE.len(),
            EVIDENCE_SECTIONS.min(free),
            "Slack's message limits",
            &rest_at(n),
        );
        for (i, p) in pieces.into_iter().enumerate() {
            let title = if i == 0 { EVIDENCE_TITLE } else { "" };
            blocks.push(section(format!("{title}{p}")));
        }
    }
    let context = if resolved {
        format!("Root cause: {} · {}", n.root_cause, n.dedup_key)
    } else {
        format!(
            "Why a human: {} · Root cause: {} · {}",
            n.reason, n.root_cause, n.dedup_key
        )
    };
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&escape(&context), 2000)}]}));
    if let Some(u) = &n.url {
        blocks.push(link(u, &n.incident));
    }
    let text = if resolved {
        format!(
            "Resolved {} {} {}: {}",
            n.priority,
            n.incident,
            n.service,
            n.resolution.as_deref().unwrap_or("recovered")
        )
    } else if update {
        format!(
            "Update {} {} {}: {}",
            n.priority, n.incident, n.service, n.reason
        )
    } else {
        format!(
            "{} {} {} {}: {} ({})",
            n.priority, n.incident, n.service, n.status, n.description, n.reason
        )
    };
    json!({"text": truncate(&escape(&text), 3000), "blocks": blocks})
}

/// A request for approval: what waits, who may decide and until when, and Approve/Deny buttons
/// whose `value` is the approval's id (Slack posts the click to `/api/v1/slack/interactions`).
fn approval_message(n: &Notification, a: &crate::domain::approval::Approval) -> Value {
    let header = truncate(
        &format!(
            "✋ APPROVAL NEEDED · {} {} · {}",
            n.priority, n.incident, n.service
        ),
        150,
    );
    let who = if a.required > 1 {
        format!("two of {}", a.approvers.join(", "))
    } else {
        format!("one of {}", a.approvers.join(", "))
    };
    let ask = format!(
        "Step *{}* waits for approval by {who} until {}. Without a decision by then, its `on_timeout` applies.",
        escape(&a.step_name),
        datetime(a.deadline)
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        section(ask),
        section(format!(
            "{}\n*Impact:* {}",
            escape(&n.description),
            escape(&n.impact)
        )),
        bullets("Actions taken", &n.actions_taken, "none yet", 10),
        json!({"type": "actions", "block_id": "remedyd_approval", "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": a.id,
             "text": {"type": "plain_text", "text": "Approve", "emoji": true}},
            {"type": "button", "action_id": DENY_ACTION, "style": "danger", "value": a.id,
             "text": {"type": "plain_text", "text": "Deny", "emoji": true}},
        ]}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&escape(&format!("approval {} · {}", a.id, n.dedup_key)), 2000)}]}),
    ];
    if let Some(u) = &n.url {
        blocks.push(link(u, &n.incident));
    }
    let text = format!(
        "Approval needed: {} {} {}: step {} until {}",
        n.priority,
        n.incident,
        n.service,
        a.step_name,
        datetime(a.deadline)
    );
    json!({"text": truncate(&escape(&text), 3000), "blocks": blocks})
}

/// The outcome of an approval, which replaces the request (no buttons left): the result, who
/// decided, when, through which channel and why, or that nobody did in time.
fn outcome_message(n: &Notification, a: &crate::domain::approval::Approval) -> Value {
    use crate::domain::approval::ApprovalState;
    let (icon, title) = match a.state {
        ApprovalState::Approved => ("✅", "APPROVED"),
        ApprovalState::Denied => ("⛔", "DENIED"),
        ApprovalState::TimedOut => ("⌛", "TIMED OUT"),
        ApprovalState::Void | ApprovalState::Pending => ("➖", "NO LONGER NEEDED"),
    };
    let header = truncate(
        &format!(
            "{icon} {title} · {} {} · {}",
            n.priority, n.incident, n.service
        ),
        150,
    );
    let what = match a.state {
        ApprovalState::Approved => format!("Step *{}* was approved.", escape(&a.step_name)),
        ApprovalState::Denied => format!(
            "Step *{}* was denied: a human takes over.",
            escape(&a.step_name)
        ),
        ApprovalState::TimedOut => format!(
            "Nobody decided step *{}* by {}: its `on_timeout` applied.",
            escape(&a.step_name),
            datetime(a.deadline)
        ),
        ApprovalState::Void | ApprovalState::Pending => format!(
            "Step *{}* no longer waits: the incident moved on (resolved, a higher level, or by hand).",
            escape(&a.step_name)
        ),
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        section(what),
    ];
    if !a.decisions.is_empty() {
        let lines: Vec<String> = a
            .decisions
            .iter()
            .map(|d| {
                let mut l = format!(
                    "{} by {} via {} at {}",
                    match d.decision {
                        crate::domain::approval::Verdict::Approve => "approved",
                        crate::domain::approval::Verdict::Deny => "denied",
                    },
                    d.by,
                    d.channel.as_str(),
                    datetime(d.at)
                );
                if !d.comment.is_empty() {
                    l.push_str(&format!(": {}", d.comment));
                }
                l
            })
            .collect();
        blocks.push(bullets("Decisions", &lines, "", 10));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&escape(&format!("approval {} · {} · {}", a.id, a.state.as_str(), n.dedup_key)), 2000)}]}));
    if let Some(u) = &n.url {
        blocks.push(link(u, &n.incident));
    }
    let text = format!(
        "Approval {}: {} {} {}: {}",
        a.state.as_str(),
        n.priority,
        n.incident,
        n.service,
        n.reason
    );
    json!({"text": truncate(&escape(&text), 3000), "blocks": blocks})
}

fn digest_message(n: &Notification, d: &crate::domain::report::digest::Digest) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("{} remedyd daily digest · {}", icon(n), &d.until.to_rfc3339()[..10]), 150), "emoji": true}}),
        section(escape(&n.description)),
    ];
    for (title, lines, empty) in [
        ("Incidents", &d.incidents, "none in the last 24 h"),
        ("Actions", &d.actions, "no automated action"),
        ("Breakers open", &d.breakers_open, "all closed"),
        ("Restarted most", &d.most_restarted, "no restart"),
        ("Budgets nearly spent", &d.budgets_nearly_spent, "none"),
    ] {
        blocks.push(bullets(title, lines, empty, 15));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("{} → {}", datetime(d.since), datetime(d.until))}]}));
    json!({"text": truncate(&escape(&n.description), 3000), "blocks": blocks})
}

/// The message as a reply in the incident's thread when the first message's `ts` is known.
pub fn in_thread(mut message: Value, thread_ts: Option<&str>) -> Value {
    if let (Some(ts), Some(m)) = (thread_ts, message.as_object_mut()) {
        m.insert("thread_ts".into(), Value::String(ts.to_string()));
    }
    message
}

/// Posts the message. An incoming webhook answers `ok`, not the message's `ts`: no thread is
/// known, so an update is a new message that names the incident.
pub(super) async fn deliver(
    client: &reqwest::Client,
    route: &Route,
    url: &Secret,
    n: &Notification,
) -> Result<bool, PagerError> {
    send_request(route, client.post(url.expose()).json(&message(n))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_names_the_incident_and_goes_in_its_thread_when_known() {
        let n = super::super::sample_update();
        let m = message(&n);
        let header = m["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(header, "🔄 UPDATE · P2 INC-2026-0042 · checkout");
        assert!(
            m["text"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Update P2 INC-2026-0042 checkout: update: still escalated")
        );
        assert!(m.to_string().contains("Since the last update"));
        assert!(m.get("thread_ts").is_none(), "no ts known: a new message");
        let threaded = in_thread(m, Some("1764320400.000100"));
        assert_eq!(threaded["thread_ts"], "1764320400.000100");
        assert_eq!(threaded["blocks"][0]["text"]["text"], header);
    }

    #[test]
    fn huge_evidence_fills_at_most_ten_sections_within_slacks_limits() {
        let n = super::super::sample_with_evidence(20_000, true);
        let m = message(&n);
        let blocks = m["blocks"].as_array().cloned().unwrap_or_default();
        assert!(blocks.len() <= SLACK_BLOCKS);
        for b in &blocks {
            let t = b["text"]["text"].as_str().unwrap_or_default();
            assert!(
                t.chars().count() <= SLACK_SECTION_CHARS,
                "{}",
                t.chars().count()
            );
        }
        assert!(
            m["text"].as_str().unwrap_or_default().chars().count() <= evidence::SLACK_TEXT_CHARS
        );
        let ev: Vec<&str> = blocks
            .iter()
            .filter_map(|b| b["text"]["text"].as_str())
            .filter(|t| {
                t.starts_with("*Evidence*")
                    || t.contains("logs.checkout-1.app")
                    || t.starts_with("  ")
            })
            .collect();
        assert_eq!(ev.len(), EVIDENCE_SECTIONS);
        assert!(ev[0].starts_with("*Evidence*\n== 22:13:20 step pod-evidence"));
        assert!(ev[0].contains("&lt;é"), "escaped for mrkdwn");
        assert!(ev[9].ends_with(
            "… cut to fit Slack's message limits; all of it: https://remedyd.example.com/incidents/INC-2026-0042"
        ));
        let last = blocks.last().cloned().unwrap_or_default();
        assert_eq!(
            last["text"]["text"],
            "<https://remedyd.example.com/incidents/INC-2026-0042|Open INC-2026-0042 in remedyd>"
        );
    }
}
