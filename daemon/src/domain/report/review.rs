//! The runbook's post-incident review, in Markdown, from an incident and its stored timeline:
//! title, summary table, timeline table with the values behind each event, what automation did
//! (steps, results, measured values), the resolution, and the parts only a human can write.
//! Pure and deterministic: the same stored incident always renders the same text.

use std::fmt::Write;

use super::narrative::{self, datetime, series};
use crate::domain::incident::{Entry, EntryKind, Incident};
use crate::domain::time::{Timestamp, fmt_duration};

/// Escapes a table cell: `|` would end the cell, a newline the row.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace('\n', "<br>")
}

fn level_text(level: u8) -> &'static str {
    match level {
        3.. => "P1, infrastructure: several services affected",
        2 => "P2, service unavailable",
        _ => "P3, service degraded",
    }
}

/// One automated step as the timeline tells it.
#[derive(Default)]
struct StepStory {
    name: String,
    action: String,
    started: Option<Timestamp>,
    dry_run: bool,
    request: Option<String>,
    budgets: Vec<String>,
    breakers: Vec<String>,
    result: Option<String>,
    verify: Option<String>,
    probes: Vec<f64>,
    condition: String,
    verdict: Option<String>,
}

fn stories(inc: &Incident, timeline: &[Entry]) -> Vec<StepStory> {
    let mut out: Vec<StepStory> = Vec::new();
    for e in timeline {
        match e.kind {
            EntryKind::StepStarted => {
                let vals = narrative::decision_values(e);
                out.push(StepStory {
                    name: narrative::step_of(e).unwrap_or_default(),
                    action: e
                        .data
                        .get("action")
                        .and_then(|a| a.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    started: Some(e.at),
                    dry_run: e
                        .data
                        .get("dry_run")
                        .and_then(|d| d.as_bool())
                        .unwrap_or(false),
                    request: vals
                        .iter()
                        .find_map(|v| v.strip_prefix("request: ").map(String::from)),
                    budgets: narrative::budgets_at_start(e),
                    breakers: narrative::breakers_at_start(e),
                    ..Default::default()
                });
            }
            EntryKind::StepOk | EntryKind::StepFailed | EntryKind::StepInterrupted => {
                let name = narrative::step_of(e).unwrap_or_default();
                if out
                    .last()
                    .is_none_or(|s| s.name != name || s.result.is_some())
                {
                    out.push(StepStory {
                        name: name.clone(),
                        ..Default::default()
                    });
                }
                let s = out.last_mut().expect("just pushed");
                let what = match e.kind {
                    EntryKind::StepInterrupted => {
                        "outcome unknown: interrupted by a restart, not run again".into()
                    }
                    _ => narrative::phrase(inc, e),
                };
                s.result = Some(format!("{} {what}", e.at.hms()));
            }
            EntryKind::Verifying => {
                if let Some(s) = out.last_mut() {
                    s.verify = Some(
                        e.message
                            .strip_prefix("verifying: ")
                            .unwrap_or(&e.message)
                            .to_string(),
                    );
                }
            }
            EntryKind::Probe | EntryKind::Verified | EntryKind::VerificationFailed => {
                let Some(s) = out.last_mut() else { continue };
                let v = match e.kind {
                    EntryKind::VerificationFailed if !s.probes.is_empty() => None,
                    EntryKind::VerificationFailed => e.data.get("last").and_then(|v| v.as_f64()),
                    _ => e.data.get("value").and_then(|v| v.as_f64()),
                };
                if let Some(v) = v {
                    s.probes.push(v);
                }
                if let Some(c) = e.data.get("condition").and_then(|c| c.as_str()) {
                    s.condition = c.to_string();
                }
                match e.kind {
                    EntryKind::Verified => s.verdict = Some(format!("passed at {}", e.at.hms())),
                    EntryKind::VerificationFailed => {
                        s.verdict = Some(format!(
                            "failed at {}: {}",
                            e.at.hms(),
                            e.message
                                .strip_prefix("verification failed: ")
                                .unwrap_or(&e.message)
                        ))
                    }
                    _ => {}
                }
            }
            EntryKind::VerificationNoData => {
                if let Some(s) = out.last_mut() {
                    s.verdict = Some(format!("no data at {}: {}", e.at.hms(), e.message));
                }
            }
            _ => {}
        }
    }
    out
}

/// Renders the review.
pub fn render(inc: &Incident, timeline: &[Entry]) -> String {
    let mut md = String::new();
    let alert = inc
        .labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| inc.rule.clone());
    let same_day = |t: Timestamp| t.to_rfc3339()[..10] == inc.opened_at.to_rfc3339()[..10];
    let multi_day = timeline.iter().any(|e| !same_day(e.at));
    let when = |t: Timestamp| {
        if multi_day {
            datetime(t).trim_end_matches(" UTC").to_string()
        } else {
            t.hms()
        }
    };
    let escalations: Vec<&Entry> = timeline
        .iter()
        .filter(|e| e.kind == EntryKind::Escalated)
        .collect();
    let routes: Vec<String> = escalations
        .iter()
        .filter_map(|e| e.data.get("route").and_then(|r| r.as_str()))
        .map(String::from)
        .collect();

    let _ = writeln!(
        md,
        "# Post-incident review: {} — {alert} on {}\n",
        inc.id, inc.target.name
    );
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(md, "| Field | Value |\n|---|---|");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(md, "| {k} | {} |", cell(&v));
    };
    row("Incident", inc.id.clone());
    row("Alert", alert.clone());
    row("Rule", inc.rule.clone());
    row("Policy", inc.policy.clone());
    row("Target", inc.target.key());
    row(
        "Level",
        format!("{} ({})", inc.level, level_text(inc.level)),
    );
    row("Status", inc.status().as_str().to_string());
    row("Opened", datetime(inc.opened_at));
    row(
        "Resolved",
        inc.resolved_at.map_or_else(|| "—".to_string(), datetime),
    );
    row(
        "Duration",
        match inc.resolved_at {
            Some(at) => fmt_duration(at.since(inc.opened_at)),
            None => "ongoing".to_string(),
        },
    );
    row(
        "Escalated to",
        if routes.is_empty() {
            "—".to_string()
        } else {
            routes.join(", ")
        },
    );

    let steps = stories(inc, timeline);
    let ok = timeline
        .iter()
        .filter(|e| e.kind == EntryKind::StepOk)
        .count();
    let failed = timeline
        .iter()
        .filter(|e| e.kind == EntryKind::StepFailed)
        .count();
    let mut summary = if steps.is_empty() {
        "No automated step ran.".to_string()
    } else {
        format!(
            "Automation ran {} step(s): {ok} ok, {failed} failed.",
            steps.len()
        )
    };
    if let Some(e) = escalations.first() {
        let _ = write!(summary, " At {} it {}.", when(e.at), e.message);
    }
    match inc.resolved_at {
        Some(at) => {
            let _ = write!(
                summary,
                " It resolved at {}, {} after it opened.",
                when(at),
                fmt_duration(at.since(inc.opened_at))
            );
        }
        None => {
            let _ = write!(summary, " It is {}.", inc.status().as_str());
        }
    }
    let _ = writeln!(md, "\n{summary}\n");

    let _ = writeln!(md, "## Timeline\n");
    let _ = writeln!(md, "All times UTC.\n");
    let _ = writeln!(md, "| Time | Event | Details |\n|---|---|---|");
    for e in timeline {
        let mut details = e.message.clone();
        for v in narrative::decision_values(e) {
            let _ = write!(details, "\n{v}");
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            when(e.at),
            cell(e.kind.as_str()),
            cell(&details)
        );
    }

    let _ = writeln!(md, "\n## What automation did\n");
    if steps.is_empty() {
        let why = escalations
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| "the incident ended before a step was due".into());
        let _ = writeln!(md, "No automated step ran: {why}.");
    }
    for (i, s) in steps.iter().enumerate() {
        let action = if s.action.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.action)
        };
        let started = s
            .started
            .map_or(String::new(), |t| format!(", started {}", when(t)));
        let dry = if s.dry_run {
            " — dry-run: recorded, nothing sent"
        } else {
            ""
        };
        let _ = writeln!(md, "{}. **Step {}**{action}{started}{dry}", i + 1, s.name);
        let _ = writeln!(
            md,
            "   - Result: {}",
            s.result.as_deref().unwrap_or("still running")
        );
        if let Some(r) = &s.request {
            let _ = writeln!(md, "   - Request: `{r}`");
        }
        if !s.budgets.is_empty() {
            let _ = writeln!(md, "   - Budgets: {}", s.budgets.join(", "));
        }
        if !s.breakers.is_empty() {
            let _ = writeln!(md, "   - Breakers before: {}", s.breakers.join(", "));
        }
        if let Some(v) = &s.verify {
            let _ = writeln!(md, "   - Verification: {v}");
        }
        if !s.probes.is_empty() {
            let _ = writeln!(
                md,
                "   - Measured: {} (needs {})",
                series(&s.probes),
                s.condition
            );
        }
        if let Some(v) = &s.verdict {
            let _ = writeln!(md, "   - Verdict: {v}");
        }
    }
    let gates: Vec<&Entry> = timeline
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EntryKind::Refused
                    | EntryKind::Held
                    | EntryKind::Suspended
                    | EntryKind::Resumed
                    | EntryKind::BreakerOpened
                    | EntryKind::Escalated
            )
        })
        .collect();
    if !gates.is_empty() {
        let _ = writeln!(md, "\nDecisions that stopped or held automation:\n");
        for e in gates {
            let _ = writeln!(md, "- {} {}: {}", when(e.at), e.kind, e.message);
        }
    }

    let _ = writeln!(md, "\n## Resolution\n");
    match narrative::resolution(inc, timeline) {
        Some(r) => {
            let mut r = r;
            if let Some(first) = r.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            let _ = writeln!(md, "{r}.");
        }
        None => {
            let _ = writeln!(
                md,
                "Not resolved yet: the incident is {} ({}).",
                inc.status().as_str(),
                match &inc.phase {
                    crate::domain::incident::Phase::Escalated { reason }
                    | crate::domain::incident::Phase::Suspended { reason }
                    | crate::domain::incident::Phase::Held { reason } => reason.clone(),
                    _ => "automation is still working on it".into(),
                }
            );
        }
    }
    let _ = writeln!(md, "\n## Root cause\n\nRoot cause: _to be filled in_");
    let _ = writeln!(
        md,
        "\n## Preventive actions\n\nPreventive actions: _to be filled in (what would have prevented this or caught it sooner; an owner and a due date for each)_"
    );
    md
}
