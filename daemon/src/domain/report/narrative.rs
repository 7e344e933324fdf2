//! The runbook's words for a timeline: update lines ("12:05:00 restarted checkout (step restart
//! ok)"), actions taken, the measured values behind the decisions, and the resolution. Pages,
//! the post-incident review, the dashboard and the digest all read the timeline through here.

use crate::domain::incident::{Entry, EntryKind, Incident};
use crate::domain::time::{Timestamp, fmt_duration};

/// `2026-03-01 12:05:00 UTC`.
pub fn datetime(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    format!("{} {} UTC", &s[..10], &s[11..19])
}

/// A measured value, compactly: 4 significant digits, no trailing zeros (`0.073`, `7.3`, `12`).
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let precision = (3 - magnitude).clamp(0, 8) as usize;
    let s = format!("{v:.precision$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The step an entry is about, for `step_*` entries (`step restart succeeded` → `restart`).
pub fn step_of(e: &Entry) -> Option<String> {
    if let Some(s) = e.data.get("step").and_then(|s| s.as_str()) {
        return Some(s.to_string());
    }
    let rest = e.message.strip_prefix("step ")?;
    let name = match e.kind {
        EntryKind::StepOk => rest.strip_suffix(" succeeded")?,
        EntryKind::StepFailed => rest.split_once(" failed: ")?.0,
        EntryKind::StepStarted => rest.split_once(" (")?.0,
        EntryKind::StepInterrupted => rest.split_once(" was interrupted")?.0,
        _ => return None,
    };
    Some(name.to_string())
}

/// What a step did, in the past tense, from its name (or action): `restarted`, `rolled back`.
fn verb(step: &str) -> Option<&'static str> {
    let s = step.to_ascii_lowercase().replace('_', "-");
    let table: [(&str, &str); 10] = [
        ("restart", "restarted"),
        ("rollback", "rolled back"),
        ("roll-back", "rolled back"),
        ("undo", "rolled back"),
        ("scale", "scaled"),
        ("cordon", "cordoned"),
        ("drain", "drained"),
        ("delete-pod", "deleted a pod of"),
        ("cancel", "cancelled queries on"),
        ("terminate", "terminated queries on"),
    ];
    table
        .iter()
        .find(|(k, _)| s.starts_with(k))
        .map(|(_, v)| *v)
}

/// Whether a step restarts its target (the digest counts restarts per service).
pub fn is_restart(step: &str) -> bool {
    verb(step) == Some("restarted")
}

/// Whether a finished step only recorded what it would have sent (dry-run). The one place the
/// renderers (narrative, review, digest) tell: a stored entry keeps the action's `detail` as
/// written, where a dry run's outcome puts what it would have sent under `would_send`
/// (`Outcome::WOULD_SEND`); the engine reads `Outcome::dry_run` instead.
pub fn is_dry_run(e: &Entry) -> bool {
    e.data.get("would_send").is_some()
}

fn service(inc: &Incident) -> &str {
    &inc.target.name
}

/// One readable phrase for an entry, without its time.
pub fn phrase(inc: &Incident, e: &Entry) -> String {
    let svc = service(inc);
    match e.kind {
        EntryKind::Opened => {
            let alert = e
                .data
                .get("labels")
                .and_then(|l| l.get("alertname"))
                .and_then(|a| a.as_str())
                .or_else(|| inc.labels.get("alertname").map(String::as_str))
                .unwrap_or(inc.rule.as_str());
            let level = e
                .data
                .get("level")
                .and_then(|l| l.as_u64())
                .unwrap_or(u64::from(inc.level));
            format!(
                "opened: {alert} on {svc}, level {level} (rule {}, policy {})",
                inc.rule, inc.policy
            )
        }
        EntryKind::StepOk => {
            let step = step_of(e).unwrap_or_default();
            match (verb(&step), is_dry_run(e)) {
                (Some(v), false) => format!("{v} {svc} (step {step} ok)"),
                (Some(v), true) => {
                    format!("would have {v} {svc} (step {step}, dry-run: nothing sent)")
                }
                (None, false) => format!("ran {step} on {svc} (step ok)"),
                (None, true) => format!("would have run {step} on {svc} (dry-run: nothing sent)"),
            }
        }
        EntryKind::StepFailed => {
            let step = step_of(e).unwrap_or_default();
            let error = e
                .message
                .split_once(" failed: ")
                .map_or(e.message.as_str(), |(_, err)| err);
            format!("step {step} on {svc} failed: {error}")
        }
        _ => e.message.clone(),
    }
}

/// The probe values of one verification: (first probe time, last probe time, values, condition).
struct ProbeRun {
    from: Timestamp,
    to: Timestamp,
    values: Vec<f64>,
    condition: String,
}

fn probe_value(e: &Entry) -> Option<f64> {
    match e.kind {
        EntryKind::Probe | EntryKind::Verified => e.data.get("value")?.as_f64(),
        EntryKind::VerificationFailed => e.data.get("last")?.as_f64(),
        _ => None,
    }
}

fn condition(e: &Entry) -> String {
    e.data
        .get("condition")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string()
}

/// `0.073 → 0.061 → 0.041`, long runs shortened in the middle.
pub fn series(values: &[f64]) -> String {
    let shown: Vec<String> = if values.len() > 6 {
        let mut v: Vec<String> = values[..2].iter().map(|x| fmt_value(*x)).collect();
        v.push("…".into());
        v.extend(values[values.len() - 3..].iter().map(|x| fmt_value(*x)));
        v
    } else {
        values.iter().map(|x| fmt_value(*x)).collect()
    };
    shown.join(" → ")
}

/// Time-stamped updates, one line per event; consecutive probes share one line with their values.
pub fn updates(inc: &Incident, timeline: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Option<ProbeRun> = None;
    let flush = |run: &mut Option<ProbeRun>, out: &mut Vec<String>| {
        if let Some(r) = run.take() {
            let when = if r.from == r.to {
                r.from.hms()
            } else {
                format!("{}–{}", r.from.hms(), r.to.hms())
            };
            let n = r.values.len();
            out.push(format!(
                "{when} {} probe{}: {} (needs {})",
                n,
                if n == 1 { "" } else { "s" },
                series(&r.values),
                r.condition
            ));
        }
    };
    for e in timeline {
        if e.kind == EntryKind::Probe
            && let Some(v) = probe_value(e)
        {
            let r = run.get_or_insert_with(|| ProbeRun {
                from: e.at,
                to: e.at,
                values: Vec::new(),
                condition: condition(e),
            });
            r.to = e.at;
            r.values.push(v);
            continue;
        }
        flush(&mut run, &mut out);
        out.push(format!("{} {}", e.at.hms(), phrase(inc, e)));
    }
    flush(&mut run, &mut out);
    out
}

/// The steps that ran, one line each, time-stamped.
pub fn actions_taken(inc: &Incident, timeline: &[Entry]) -> Vec<String> {
    timeline
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EntryKind::StepOk | EntryKind::StepFailed | EntryKind::StepInterrupted
            )
        })
        .map(|e| format!("{} {}", e.at.hms(), phrase(inc, e)))
        .collect()
}

/// Window text for a budget (`3 per 1h`), from its serialized form.
pub fn window(w: &serde_json::Value) -> String {
    let max = w.get("max").and_then(|m| m.as_u64()).unwrap_or(0);
    let per = w.get("per").and_then(|p| p.as_str()).unwrap_or("?");
    format!("{max} per {per}")
}

/// Budgets a started step was checked against, as `key used/max per 1h` (counting this step).
pub fn budgets_at_start(e: &Entry) -> Vec<String> {
    e.data
        .pointer("/gates/budgets")
        .and_then(|b| b.as_array())
        .map(|list| {
            list.iter()
                .map(|b| {
                    let key = b.get("key").and_then(|k| k.as_str()).unwrap_or("?");
                    let used = b.get("used").and_then(|u| u.as_u64()).unwrap_or(0) + 1;
                    let w = b.get("window").cloned().unwrap_or_default();
                    let max = w.get("max").and_then(|m| m.as_u64()).unwrap_or(0);
                    let per = w.get("per").and_then(|p| p.as_str()).unwrap_or("?");
                    format!("{key} {used}/{max} per {per}")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Breakers a started step was checked against, as `key closed`.
pub fn breakers_at_start(e: &Entry) -> Vec<String> {
    e.data
        .pointer("/gates/breakers")
        .and_then(|b| b.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default()
}

/// The measured values behind the decisions: each verification's probe values and verdict, the
/// budgets and breakers as the last step saw them, breakers that opened, and the last refusal.
pub fn values(timeline: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    let mut step = String::new();
    let mut run: Vec<f64> = Vec::new();
    let mut cond = String::new();
    let mut last_start: Option<&Entry> = None;
    let mut last_refusal: Option<&Entry> = None;
    let mut verifying = false;
    let close =
        |out: &mut Vec<String>, step: &str, run: &mut Vec<f64>, cond: &str, verdict: &str| {
            if !run.is_empty() {
                out.push(format!(
                    "verification after step {step}: {} (needs {cond}): {verdict}",
                    series(run)
                ));
            }
            run.clear();
        };
    for e in timeline {
        if let Some(s) = step_of(e) {
            step = s;
        }
        match e.kind {
            EntryKind::StepStarted => last_start = Some(e),
            EntryKind::Verifying => {
                verifying = true;
                run.clear();
            }
            EntryKind::Probe => {
                if let Some(v) = probe_value(e) {
                    run.push(v);
                    cond = condition(e);
                }
            }
            EntryKind::Verified => {
                if let Some(v) = probe_value(e) {
                    run.push(v);
                    cond = condition(e);
                }
                close(&mut out, &step, &mut run, &cond, "passed");
                verifying = false;
            }
            EntryKind::VerificationFailed => {
                if run.is_empty()
                    && let Some(v) = probe_value(e)
                {
                    run.push(v);
                    cond = condition(e);
                }
                close(&mut out, &step, &mut run, &cond, "failed");
                verifying = false;
            }
            EntryKind::VerificationNoData => {
                close(&mut out, &step, &mut run, &cond, "no data at the deadline");
                verifying = false;
            }
            EntryKind::BreakerOpened => out.push(e.message.clone()),
            EntryKind::Refused => last_refusal = Some(e),
            _ => {}
        }
    }
    if verifying {
        close(&mut out, &step, &mut run, &cond, "still verifying");
    }
    if let Some(e) = last_start {
        let name = step_of(e).unwrap_or_default();
        let budgets = budgets_at_start(e);
        if !budgets.is_empty() {
            out.push(format!("budgets after step {name}: {}", budgets.join(", ")));
        }
        let breakers = breakers_at_start(e);
        if !breakers.is_empty() {
            out.push(format!(
                "breakers before step {name}: {}",
                breakers.join(", ")
            ));
        }
    }
    if let Some(e) = last_refusal {
        out.push(format!("refused: {}", e.message));
    }
    out
}

/// How it ended, for a resolved incident: when, how long after it opened, and the last word.
pub fn resolution(inc: &Incident, timeline: &[Entry]) -> Option<String> {
    let at = inc.resolved_at?;
    let how = timeline
        .iter()
        .rev()
        .find(|e| {
            matches!(
                e.kind,
                EntryKind::Resolved | EntryKind::Verified | EntryKind::ResolvedByHand
            )
        })
        .map(|e| e.message.clone())
        .unwrap_or_else(|| "alerts resolved".into());
    Some(format!(
        "resolved at {}, {} after it opened: {how}",
        datetime(at),
        fmt_duration(at.since(inc.opened_at))
    ))
}

/// The values behind one decision that its message does not already say, for the review and
/// the dashboard: labels on open, budgets and breakers at a step's start, the request sent, an
/// action's outcome details.
pub fn decision_values(e: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    match e.kind {
        EntryKind::Opened => {
            if let Some(l) = e.data.get("labels").and_then(|l| l.as_object()) {
                let labels: Vec<String> = l
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                out.push(format!("labels: {}", labels.join(", ")));
            }
        }
        EntryKind::StepStarted => {
            if let Some(r) = e.data.get("request").filter(|r| !r.is_null()) {
                let method = r.get("method").and_then(|m| m.as_str());
                let url = r.get("url").and_then(|u| u.as_str());
                match (method, url) {
                    (Some(m), Some(u)) => out.push(format!("request: {m} {u}")),
                    _ => out.push(format!("request: {r}")),
                }
            }
            if let Some(err) = e.data.get("plan_error").and_then(|p| p.as_str()) {
                out.push(format!("cannot build the request: {err}"));
            }
            let budgets = budgets_at_start(e);
            if !budgets.is_empty() {
                out.push(format!("budgets: {}", budgets.join(", ")));
            }
            let breakers = breakers_at_start(e);
            if !breakers.is_empty() {
                out.push(format!("breakers: {}", breakers.join(", ")));
            }
        }
        EntryKind::StepOk | EntryKind::StepFailed => {
            if is_dry_run(e) {
                out.push("dry-run: the request was recorded, not sent".into());
            }
            if let Some(m) = e.data.as_object() {
                for (k, v) in m {
                    let shown = match v {
                        serde_json::Value::String(s) if s.len() <= 200 => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        _ => continue,
                    };
                    if (k == "summary" && e.message.contains(&shown))
                        || (k == "retryable" && shown == "false")
                    {
                        continue;
                    }
                    out.push(format!("{k}: {shown}"));
                }
            }
        }
        EntryKind::Waiting => {
            if let Some(f) = e.data.get("for").and_then(|f| f.as_str()) {
                out.push(format!("for: {f}"));
            }
        }
        EntryKind::Refused | EntryKind::Held | EntryKind::Suspended | EntryKind::Escalated => {
            if let Some(k) = e.data.get("kind").and_then(|k| k.as_str()) {
                out.push(format!("gate: {k}"));
            }
            if let Some(r) = e.data.get("route").and_then(|r| r.as_str()) {
                out.push(format!("route: {r}"));
            }
        }
        EntryKind::VerificationFailed => {
            if let Some(f) = e.data.get("firing").and_then(|f| f.as_array())
                && !f.is_empty()
            {
                out.push(format!("alerts still firing: {}", f.len()));
            }
        }
        EntryKind::BreakerOpened => {
            if let Some(n) = e.data.get("failures").and_then(|n| n.as_u64()) {
                out.push(format!("failures: {n}"));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_compact() {
        assert_eq!(fmt_value(0.073), "0.073");
        assert_eq!(fmt_value(7.3), "7.3");
        assert_eq!(fmt_value(12.0), "12");
        assert_eq!(fmt_value(0.0412345), "0.04123");
        assert_eq!(fmt_value(1234.567), "1235");
        assert_eq!(
            series(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
            "1 → 2 → … → 5 → 6 → 7"
        );
    }

    #[test]
    fn step_names_come_from_the_messages() {
        let e = |kind: EntryKind, message: &str| Entry {
            at: Timestamp(0),
            kind,
            message: message.into(),
            data: serde_json::Value::Null,
        };
        assert_eq!(
            step_of(&e(EntryKind::StepOk, "step restart succeeded")).unwrap(),
            "restart"
        );
        assert_eq!(
            step_of(&e(
                EntryKind::StepFailed,
                "step roll back failed: status 500"
            ))
            .unwrap(),
            "roll back"
        );
        assert_eq!(
            step_of(&e(EntryKind::StepStarted, "step restart (http) started")).unwrap(),
            "restart"
        );
        assert_eq!(step_of(&e(EntryKind::Probe, "probe: value 1")), None);
        assert!(is_restart("restart-checkout"));
        assert!(!is_restart("rollback"));
    }
}
