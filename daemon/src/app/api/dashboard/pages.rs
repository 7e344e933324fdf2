//! The dashboard's pages: `/` (automation state, incidents, breakers, budgets, pages waiting),
//! `/incidents/{id}` (one incident, its timeline and resolve form) and `/incidents/{id}/review.md`.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::html::{badge, esc, page_html, url_encode};
use super::login::gate;
use crate::adapters::escalate::digest;
use crate::adapters::store::MaintenanceWindow;
use crate::app::api::{ApiError, AppState};
use crate::domain::incident::{Incident, Phase};
use crate::domain::policy::breaker::BreakerState;
use crate::domain::policy::maintenance::Maintenance;
use crate::domain::report::digest::BudgetRow;
use crate::domain::report::narrative::{self, datetime};
use crate::domain::time::Timestamp;

/// How far back "recent" reaches.
const RECENT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Why an incident is where it is, in a few words.
fn phase_reason(i: &Incident) -> String {
    match &i.phase {
        Phase::Escalated { reason } | Phase::Suspended { reason } | Phase::Held { reason } => {
            reason.clone()
        }
        Phase::Waiting { until } => format!("waiting until {}", datetime(*until)),
        Phase::Running { step, .. } => format!("running step {}", step + 1),
        Phase::Verifying { until, last, .. } => match last {
            Some(v) => format!(
                "verifying until {}; last value {}",
                until.hms(),
                narrative::fmt_value(*v)
            ),
            None => format!("verifying until {}", until.hms()),
        },
        Phase::Verified { .. } => "verified; waiting for the alerts to clear".into(),
        Phase::Ready => "next step due".into(),
        Phase::StepHeld {
            step, next_check, ..
        } => {
            let why = i.hold.as_ref().map_or("", |h| h.reason.as_str());
            format!(
                "step {} held until someone else's change is over ({why}); tried again at {}",
                step + 1,
                next_check.hms()
            )
        }
        Phase::AwaitingApproval { step, until, .. } => format!(
            "step {} waits for approval until {}",
            step + 1,
            datetime(*until)
        ),
        Phase::Resolved => String::new(),
    }
}

/// A table of incidents, or `empty` when there is none.
fn incidents_table(list: &[&Incident], empty: &str) -> String {
    if list.is_empty() {
        return format!("<p class=muted>{}</p>", esc(empty));
    }
    let mut out = String::from(
        "<table><tr><th>Incident</th><th>Status</th><th>Level</th><th>Rule</th><th>Target</th><th>Opened</th><th>Updated</th><th>Why</th></tr>",
    );
    for i in list {
        let _ = write!(
            out,
            "<tr><td><a href=\"/incidents/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            badge(i.status().as_str()),
            i.level,
            esc(&i.rule),
            esc(&i.target.key()),
            datetime(i.opened_at),
            datetime(i.updated_at),
            esc(&phase_reason(i)),
            id = esc(&i.id),
        );
    }
    out.push_str("</table>");
    out
}

/// The token field a form needs when `webhook_token` is configured.
fn token_field(state: &AppState) -> &'static str {
    if state.token.is_some() {
        "<label>Token <input type=password name=token autocomplete=current-password required placeholder=\"webhook_token\"></label>"
    } else {
        ""
    }
}

/// Budgets with their use in the current window.
fn budgets_table(rows: &[BudgetRow]) -> String {
    let mut out = String::from(
        "<table><tr><th>Budget</th><th>Used (enforce)</th><th>Dry-run uses</th><th>Limit</th><th></th></tr>",
    );
    for b in rows {
        let pct = (b.peak() * 100)
            .checked_div(b.window.max)
            .unwrap_or(100)
            .min(100);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} per {}</td><td><span class=bar title=\"{pct}%\"><i class=\"{}\" style=\"width:{pct}%\"></i></span></td></tr>",
            esc(&b.key),
            b.used,
            b.dry_run,
            b.window.max,
            crate::domain::time::fmt_duration(b.window.per),
            if b.nearly_spent() { "hot" } else { "" },
        );
    }
    out.push_str("</table>");
    out
}

/// `?notice=`: the message a form leaves for the page it returns to.
#[derive(Deserialize)]
pub(in crate::app::api) struct PageQuery {
    notice: Option<String>,
}

/// `GET /`: automation state, incidents, breakers, budgets, pages waiting.
pub(in crate::app::api) async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    if let Some(login) = gate(&state, &headers, "/") {
        return Ok(login);
    }
    let now = state.clock.now();
    let rs = state.ruleset.read().expect("ruleset lock").clone();
    let all = state.store.list_incidents(None, 200).await?;
    let active = state.store.active_incidents().await?;
    let since = now.minus(RECENT);
    let mut open: Vec<&Incident> = active.iter().collect();
    open.sort_by(|a, b| b.opened_at.cmp(&a.opened_at).then(b.id.cmp(&a.id)));
    let recent: Vec<&Incident> = all
        .iter()
        .filter(|i| i.is_resolved() && (i.updated_at >= since || i.opened_at >= since))
        .take(50)
        .collect();
    let pauses = state.store.pauses().await?;
    let windows = state.store.maintenance_windows(now).await?;
    let breakers = digest::breaker_states(&*state.store, &rs, now).await?;
    let mut touched: Vec<Incident> = active.clone();
    touched.extend(recent.iter().map(|i| (*i).clone()));
    let budgets = digest::budget_rows(&*state.store, &rs, &touched, now).await?;
    let depth = state.store.outbox_depth().await?;

    let mut b = String::from("<h1>remedyd</h1>");
    let _ = write!(
        b,
        "<p class=muted>{} · {} rule(s), {} polic(ies), {} route(s) · <a href=\"/\">refresh</a></p>",
        datetime(now),
        rs.rules.len(),
        rs.policies.len(),
        rs.routes.len()
    );
    if let Some(n) = q.notice.as_deref().filter(|n| !n.is_empty()) {
        let _ = write!(b, "<p class=notice id=notice>{}</p>", esc(n));
    }

    // Automation: paused or running, with the forms.
    if pauses.is_empty() {
        b.push_str("<div class=panel id=automation><b>Automation is running.</b>");
    } else {
        b.push_str("<div class=\"panel paused\" id=automation><b>Automation is paused.</b> In-flight verification continues; no new action starts in a paused scope.<table><tr><th>Scope</th><th>By</th><th>Since</th><th>Reason</th><th></th></tr>");
        for p in &pauses {
            let (kind, name) = p.scope.split_once(':').unwrap_or((p.scope.as_str(), ""));
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form class=inline method=post action=\"/ui/resume\">\
                 <input type=hidden name=scope value=\"{}\"><input type=hidden name=name value=\"{}\">{}\
                 <button type=submit>Resume</button></form></td></tr>",
                esc(&p.scope),
                esc(&p.author),
                datetime(p.since),
                esc(&p.reason),
                esc(kind),
                esc(name),
                token_field(&state),
            );
        }
        b.push_str("</table>");
    }
    let _ = write!(
        b,
        "<form method=post action=\"/ui/pause\" id=pause-form><b>Pause</b> \
         <select name=scope><option value=global>everything</option><option value=rule>one rule</option><option value=namespace>one namespace</option></select>\
         <input name=name placeholder=\"rule or namespace\" size=16>\
         <input name=reason placeholder=\"reason (required)\" required size=28>\
         <input name=author placeholder=\"your name\" size=12>{}\
         <button type=submit id=pause>Pause automation</button></form>",
        token_field(&state)
    );
    if state.token.is_some() {
        b.push_str("<p class=muted>Pausing and resuming need the webhook token (the same bearer token as <code>POST /api/v1/pause</code>).</p>");
    }
    maintenance_panel(&mut b, &rs.maintenance, &windows, now);
    b.push_str("</div>");

    let _ = write!(b, "<h2>Open incidents ({})</h2>", open.len());
    b.push_str(&incidents_table(&open, "No open incident."));
    let _ = write!(b, "<h2>Resolved in the last 24 h ({})</h2>", recent.len());
    b.push_str(&incidents_table(&recent, "None."));

    b.push_str("<h2>Breakers</h2>");
    let shown: Vec<&(String, BreakerState)> = breakers
        .iter()
        .filter(|(_, s)| *s != BreakerState::Closed)
        .collect();
    if shown.is_empty() {
        let _ = write!(
            b,
            "<p class=muted>All closed ({} known).</p>",
            breakers.len()
        );
    } else {
        b.push_str("<table><tr><th>Breaker</th><th>State</th><th>Until</th></tr>");
        for (k, s) in shown {
            let until = match s {
                BreakerState::Open { until } => datetime(*until),
                _ => "the next step is a trial".into(),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(k),
                badge(s.as_str()),
                esc(&until)
            );
        }
        b.push_str("</table>");
    }

    b.push_str("<h2>Budgets</h2><p class=muted>Uses in each budget's current window. Shown: global, each allowed namespace, each rule, and action × target for the incidents above; dry-run uses are counted apart and never spend a real budget.</p>");
    b.push_str(&budgets_table(&budgets));
    let _ = write!(
        b,
        "<h2>Pages</h2><p>{depth} page(s) waiting for delivery.</p>"
    );
    if state.token.is_some() {
        b.push_str("<form id=logout-form method=post action=\"/ui/logout\"><button type=submit>Forget the token in this browser</button></form>");
    }
    Ok(page_html("remedyd", &b).into_response())
}

/// The page for an incident that does not exist.
/// The maintenance windows in force or to come: those of the policies files open now, and those
/// set through the API (cancelled with `DELETE /api/v1/maintenance/{id}`).
fn maintenance_panel(
    b: &mut String,
    files: &[Maintenance],
    api: &[MaintenanceWindow],
    now: Timestamp,
) {
    let open: Vec<(&Maintenance, Timestamp)> = files
        .iter()
        .filter_map(|m| Some((m, m.open_until(now)?)))
        .collect();
    if open.is_empty() && api.is_empty() {
        return;
    }
    b.push_str("<table id=maintenance><tr><th>Maintenance window</th><th>Scope</th><th>From</th><th>Until</th><th>By</th></tr>");
    for (m, until) in open {
        let _ = write!(
            b,
            "<tr><td>{} (policies)</td><td>{}</td><td>open</td><td>{}</td><td></td></tr>",
            esc(&m.name),
            esc(&m.scope.key()),
            datetime(until)
        );
    }
    for w in api {
        let (from, until) = match &w.weekly {
            Some(wk) => (
                format!("every {} {} UTC", wk.day, wk.from),
                format!("{} UTC, until cancelled", wk.to),
            ),
            None => (datetime(w.starts_at), datetime(w.ends_at)),
        };
        let _ = write!(
            b,
            "<tr><td>#{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            w.id,
            esc(&w.reason),
            esc(&w.scope),
            esc(&from),
            esc(&until),
            esc(&w.author)
        );
    }
    b.push_str("</table>");
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        page_html(
            "not found",
            &format!(
                "<h1>No incident {}</h1><p><a href=\"/\">Back</a></p>",
                esc(id)
            ),
        ),
    )
        .into_response()
}

/// `GET /incidents/{id}`: one incident, its timeline and the values behind each decision.
pub(in crate::app::api) async fn incident_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    if let Some(login) = gate(&state, &headers, &format!("/incidents/{}", url_encode(&id))) {
        return Ok(login);
    }
    let Some(inc) = state.store.get_incident(&id).await? else {
        return Ok(not_found(&id));
    };
    let tl = state.store.timeline(&id).await?;
    let mut b = format!(
        "<h1>{} {}</h1><p>{} on <b>{}</b> · level {} · rule {} · policy {}</p>",
        esc(&inc.id),
        badge(inc.status().as_str()),
        esc(inc
            .labels
            .get("alertname")
            .map_or(inc.rule.as_str(), String::as_str)),
        esc(&inc.target.key()),
        inc.level,
        esc(&inc.rule),
        esc(&inc.policy),
    );
    if let Some(n) = q.notice.as_deref().filter(|n| !n.is_empty()) {
        let _ = write!(b, "<p class=notice id=notice>{}</p>", esc(n));
    }
    let reason = phase_reason(&inc);
    if !reason.is_empty() {
        let _ = write!(b, "<p class=panel>{}</p>", esc(&reason));
    }
    if let Some(sil) = &inc.silence {
        let ids: Vec<&str> = sil.ids.iter().map(|r| r.id.as_str()).collect();
        let state = if sil.over { "ended" } else { "active" };
        let _ = write!(
            b,
            "<p class=panel id=silence><b>Alertmanager silence</b> {state} · since {} · ends {} · {}</p>",
            sil.since,
            sil.ends_at
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            esc(&ids.join(", ")),
        );
    }
    if let Phase::AwaitingApproval { step, until, .. } = &inc.phase {
        let _ = write!(
            b,
            "<form method=post action=\"/ui/incidents/{}/approval\" id=approval-form class=panel><b>Step {} waits for approval</b> until {} \
             <input name=by placeholder=\"your name (an approver)\" required size=16>\
             <input name=comment placeholder=\"comment\" size=24>{}\
             <button type=submit name=decision value=approve id=approve>Approve</button> \
             <button type=submit name=decision value=deny id=deny>Deny</button></form>",
            esc(&url_encode(&inc.id)),
            step + 1,
            esc(&datetime(*until)),
            token_field(&state)
        );
    }
    if !inc.is_resolved() {
        let _ = write!(
            b,
            "<form method=post action=\"/ui/incidents/{}/resolve\" id=resolve-form class=panel><b>Resolve by hand</b> \
             <input name=reason placeholder=\"reason (required)\" required size=32>\
             <input name=author placeholder=\"your name (required)\" required size=12>{}\
             <button type=submit id=resolve>Resolve incident</button>\
             <br><span class=muted>Pending steps are cancelled; a running step finishes and is recorded; paged routes get a resolve.</span></form>",
            esc(&url_encode(&inc.id)),
            token_field(&state)
        );
    }
    b.push_str("<table>");
    let mut row = |k: &str, v: String| {
        let _ = write!(b, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    };
    row("Opened", datetime(inc.opened_at));
    row("Updated", datetime(inc.updated_at));
    row(
        "Resolved",
        inc.resolved_at.map_or_else(|| "—".into(), datetime),
    );
    row(
        "Labels",
        inc.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    row("Firing alerts", inc.active.len().to_string());
    row(
        "Paged",
        if inc.paged.is_empty() {
            "—".into()
        } else {
            inc.paged.join(", ")
        },
    );
    b.push_str("</table>");
    let values = narrative::values(&tl);
    if !values.is_empty() {
        b.push_str("<h2>Measured values</h2><ul class=values>");
        for v in &values {
            let _ = write!(b, "<li>{}</li>", esc(v));
        }
        b.push_str("</ul>");
    }
    let _ = write!(
        b,
        "<h2>Timeline</h2><table id=timeline><tr><th>Time (UTC)</th><th>Event</th><th>What happened</th><th>Values behind it</th></tr>"
    );
    let day = |t: crate::domain::time::Timestamp| t.to_rfc3339()[..10].to_string();
    for e in &tl {
        // Times on the incident's first day are shown as HH:MM:SS; later days with their date.
        let when = if day(e.at) == day(inc.opened_at) {
            e.at.hms()
        } else {
            datetime(e.at)
        };
        let mut vals = String::new();
        let list = narrative::decision_values(e);
        if !list.is_empty() {
            vals.push_str("<ul class=values>");
            for v in list {
                let _ = write!(vals, "<li>{}</li>", esc(&v));
            }
            vals.push_str("</ul>");
        }
        if !e.data.is_null() {
            let _ = write!(
                vals,
                "<details><summary>data</summary><pre>{}</pre></details>",
                esc(&serde_json::to_string_pretty(&e.data).unwrap_or_default())
            );
        }
        let _ = write!(
            b,
            "<tr><td>{when}</td><td>{}</td><td>{}</td><td>{vals}</td></tr>",
            esc(e.kind.as_str()),
            esc(&e.message)
        );
    }
    b.push_str("</table>");
    let _ = write!(
        b,
        "<p><a href=\"/incidents/{id}/review.md\">Post-incident review (Markdown)</a> · <a href=\"/api/v1/incidents/{id}\">JSON</a> · <a href=\"/\">Back</a></p>",
        id = esc(&inc.id)
    );
    Ok(page_html(&inc.id, &b).into_response())
}

/// `GET /incidents/{id}/review.md`: the post-incident review.
pub(in crate::app::api) async fn review(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(login) = gate(
        &state,
        &headers,
        &format!("/incidents/{}/review.md", url_encode(&id)),
    ) {
        return Ok(login);
    }
    let Some(inc) = state.store.get_incident(&id).await? else {
        return Ok(not_found(&id));
    };
    let tl = state.store.timeline(&id).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        crate::domain::report::review::render(&inc, &tl),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::store::NewWindow;
    use crate::domain::policy::maintenance::When;
    use crate::domain::scope::Scope;

    #[test]
    fn the_panel_lists_open_file_windows_and_the_api_windows_and_nothing_else() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        let now = t("2026-12-01T03:00:00Z");
        let file = |name: &str, start: &str, end: &str| Maintenance {
            name: name.into(),
            scope: Scope::namespace("payments"),
            when: When::Once {
                start: t(start),
                end: t(end),
            },
        };
        let mut b = String::new();
        maintenance_panel(&mut b, &[], &[], now);
        assert_eq!(b, "", "no window, no table");
        let files = [
            file("db-upgrade", "2026-12-01T02:00:00Z", "2026-12-01T04:00:00Z"),
            file("later", "2026-12-02T02:00:00Z", "2026-12-02T04:00:00Z"),
        ];
        let api = MaintenanceWindow::stored(
            3,
            NewWindow {
                scope: "rule:r".into(),
                starts_at: now,
                ends_at: t("2026-12-01T05:00:00Z"),
                weekly: None,
                reason: "pg <17>".into(),
                author: "alice".into(),
                created_at: now,
            },
        );
        maintenance_panel(&mut b, &files, &[api], now);
        assert!(
            b.contains("<td>db-upgrade (policies)</td><td>namespace:payments</td><td>open</td>"),
            "{b}"
        );
        assert!(
            !b.contains("later"),
            "a file window not open now is left out: {b}"
        );
        assert!(
            b.contains("<td>#3 pg &lt;17&gt;</td><td>rule:r</td>"),
            "escaped: {b}"
        );
    }
}
