//! `/`: a server-rendered overview (the full dashboard comes with the humans-in-the-loop work).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use super::{ApiError, AppState, html};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) async fn page(State(state): State<Arc<AppState>>) -> Result<Html<String>, ApiError> {
    let incidents = state.store.list_incidents(None, 50).await?;
    let pauses = state.store.pauses().await?;
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=utf-8><title>remedyd</title>\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}</style>\
         </head><body><h1>remedyd</h1>",
    );
    if pauses.is_empty() {
        out.push_str("<p>Automation: <b>running</b></p>");
    } else {
        for p in &pauses {
            out.push_str(&format!(
                "<p>Automation <b>paused</b> ({}) by {}: {}</p>",
                esc(&p.scope),
                esc(&p.author),
                esc(&p.reason)
            ));
        }
    }
    out.push_str("<table><tr><th>id</th><th>status</th><th>level</th><th>rule</th><th>target</th><th>opened</th></tr>");
    for i in &incidents {
        out.push_str(&format!(
            "<tr><td><a href=\"/api/v1/incidents/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.status().as_str(),
            i.level,
            esc(&i.rule),
            esc(&i.target.key()),
            i.opened_at,
            id = esc(&i.id),
        ));
    }
    out.push_str("</table></body></html>");
    Ok(html(out))
}
