//! The dashboard's HTML building blocks: escaping, the page frame and its stylesheet, badges, and
//! URL encoding for links and redirects.

use axum::response::Html;

/// Escapes text for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The stylesheet every page inlines (no external assets).
const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#1d2330;background:#fafbfc}\
h1{margin:0 0 .2em}h2{margin:1.4em 0 .4em;font-size:1.15em}\
nav a{margin-right:1em}\
table{border-collapse:collapse;margin:.3em 0 1em;background:#fff}\
td,th{padding:.3em .7em;text-align:left;border-bottom:1px solid #e3e6ea;vertical-align:top}\
th{background:#f0f2f5;font-weight:600}\
.badge{display:inline-block;padding:.05em .5em;border-radius:.7em;font-size:.85em;background:#e3e6ea}\
.open,.remediating,.verifying{background:#fff2cc}.escalated,.suspended{background:#ffd6d6}\
.resolved,.closed{background:#d9f2d9}.half_open{background:#fff2cc}\
.panel{background:#fff;border:1px solid #e3e6ea;border-radius:.4em;padding:.8em 1em;margin:.5em 0 1em}\
.paused{border-color:#e0a000;background:#fff8e5}\
.notice{background:#e7f3ff;border:1px solid #9cc8f0;padding:.4em .8em;border-radius:.3em}\
.error{background:#ffe5e5;border:1px solid #e09c9c;padding:.4em .8em;border-radius:.3em}\
.bar{display:inline-block;width:8em;height:.7em;background:#e3e6ea;border-radius:.35em;overflow:hidden;vertical-align:middle}\
.bar i{display:block;height:100%;background:#4a90d9}.bar i.hot{background:#d9534f}\
.muted{color:#6b7280;font-size:.9em}\
form.inline{display:inline}input,select,button{font:inherit;margin:.1em .3em .1em 0}\
pre{white-space:pre-wrap;margin:.3em 0;font-size:.85em}ul.values{margin:.2em 0;padding-left:1.2em}";

/// A whole page: head, style, navigation, then `body`.
pub(super) fn page_html(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <nav><a href=\"/\">Dashboard</a><a href=\"/api/v1/incidents\">API</a><a href=\"/metrics\">Metrics</a></nav>\
         {body}</body></html>",
        esc(title)
    ))
}

/// A coloured label for a status or breaker state.
pub(super) fn badge(s: &str) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", esc(s))
}

/// Percent-encodes `s` for a URL's path segment or query value.
pub(super) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (c as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}
