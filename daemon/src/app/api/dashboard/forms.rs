//! The dashboard's forms: pause, resume, resolve by hand, and approve or deny a waiting step. Each is guarded like the API it
//! stands for (same-site, then the webhook token from a header or the form's password field) and
//! answers with a redirect carrying a notice, or a refusal page.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{esc, page_html, url_encode};
use crate::app::api::{ApiError, AppState};
use crate::domain::scope::Scope;

/// The pause and resume forms.
#[derive(Debug, Deserialize)]
pub(in crate::app::api) struct ScopeForm {
    /// `global`, `rule` or `namespace`.
    #[serde(default)]
    scope: String,
    /// Rule or namespace name.
    #[serde(default)]
    name: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// The refusal page, with its status.
fn ui_error(code: StatusCode, msg: &str) -> Response {
    (
        code,
        page_html(
            "remedyd: refused",
            &format!(
                "<h1>Not done</h1><p class=error id=error>{}</p><p><a href=\"/\">Back to the dashboard</a></p>",
                esc(msg)
            ),
        ),
    )
        .into_response()
}

/// Same-site check: a browser names the page a form came from in `Origin` (and `Sec-Fetch-Site`).
pub(super) fn same_site(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser form (curl), or a browser that sends no Origin
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority == host)
}

/// `Err` carries the refusal page to answer with.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), Box<Response>> {
    if !same_site(headers) {
        return Err(Box::new(ui_error(
            StatusCode::FORBIDDEN,
            "this form was sent from another site",
        )));
    }
    let Some(token) = &state.token else {
        return Ok(());
    };
    let field = form_token.map(|t| format!("Bearer {}", t.trim()));
    // A header or the dashboard's cookie (the write token only), or the form's password field.
    if crate::app::api::access::allows(state, headers, crate::app::api::access::Access::Write)
        || crate::adapters::auth::authorized(field.as_deref().map(str::as_bytes), token)
    {
        Ok(())
    } else {
        Err(Box::new(ui_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: enter the webhook_token",
        )))
    }
}

/// The pause scope a form names (`global`, `rule:NAME`, `namespace:NAME`).
fn form_scope(f: &ScopeForm) -> Result<String, String> {
    let name = f.name.trim();
    match (f.scope.as_str(), name) {
        ("global" | "", _) => Ok(Scope::Global.key()),
        ("rule" | "namespace", "") => Err(format!("name: the {} to pause", f.scope)),
        ("rule", n) => Ok(Scope::rule(n).key()),
        ("namespace", n) => Ok(Scope::namespace(n).key()),
        (other, _) => Err(format!("scope: {other:?}; valid: global, rule, namespace")),
    }
}

/// 303 to the dashboard with `notice` shown at the top.
fn done(notice: &str) -> Response {
    done_at("/", notice)
}

/// 303 to `path` with `notice` shown at the top of the page.
fn done_at(path: &str, notice: &str) -> Response {
    Redirect::to(&format!("{path}?notice={}", url_encode(notice))).into_response()
}

/// The pause and resume forms as read (a form that cannot be read gets a page, not a 422).
type FormResult = Result<Form<ScopeForm>, FormRejection>;

/// The incident page's resolve form.
#[derive(Debug, Deserialize)]
pub(in crate::app::api) struct ResolveForm {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// `POST /ui/incidents/{id}/resolve`: resolves by hand, back to the incident page.
pub(in crate::app::api) async fn ui_resolve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ResolveForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return ui_error(StatusCode::BAD_REQUEST, "the form could not be read");
    };
    if let Err(r) = authorize(&state, &headers, f.token.as_deref()) {
        return *r;
    }
    let page = format!("/incidents/{}", url_encode(&id));
    match crate::app::api::apply_resolve(&state, &id, f.reason.as_deref(), f.author.as_deref())
        .await
    {
        Ok(crate::app::resolve::Answer::Resolved(inc)) => {
            done_at(&page, &format!("Resolved {} by hand", inc.id))
        }
        Ok(crate::app::resolve::Answer::Queued(request)) => done_at(
            &page,
            &format!(
                "Queued as request {request}: no engine applied it yet (this replica does not lead, or the leader is down); the leader applies it when it runs"
            ),
        ),
        Err(ApiError(code, msg)) => ui_error(code, &msg),
    }
}

/// The incident page's approval form.
#[derive(Debug, Deserialize)]
pub(in crate::app::api) struct ApprovalForm {
    /// `approve` or `deny` (the button pressed).
    #[serde(default)]
    decision: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// `POST /ui/incidents/{id}/approval`: decides the waiting step (channel `dashboard`), back to
/// the incident page.
pub(in crate::app::api) async fn ui_approval(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ApprovalForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return ui_error(StatusCode::BAD_REQUEST, "the form could not be read");
    };
    if let Err(r) = authorize(&state, &headers, f.token.as_deref()) {
        return *r;
    }
    let verdict = match crate::domain::approval::Verdict::parse(&f.decision) {
        Ok(v) => v,
        Err(e) => return ui_error(StatusCode::BAD_REQUEST, &format!("decision: {e}")),
    };
    let by = f.by.trim();
    if by.is_empty() {
        return ui_error(
            StatusCode::BAD_REQUEST,
            "by: your name, as on the step's approvers list",
        );
    }
    let ask = crate::app::api::approvals::Ask {
        incident: &id,
        approval: None,
        step: None,
        names: &[by],
        channel: crate::domain::approval::Channel::Dashboard,
        verdict,
        comment: f.comment.unwrap_or_default(),
    };
    let page = format!("/incidents/{}", url_encode(&id));
    match crate::app::api::approvals::decide(&state, ask).await {
        Ok(a) => done_at(&page, &a.message),
        Err(ApiError(code, msg)) => ui_error(code, &msg),
    }
}

/// `POST /ui/pause`: pauses a scope, back to the dashboard.
pub(in crate::app::api) async fn ui_pause(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: FormResult,
) -> Response {
    let Ok(Form(f)) = form else {
        return ui_error(StatusCode::BAD_REQUEST, "the form could not be read");
    };
    if let Err(r) = authorize(&state, &headers, f.token.as_deref()) {
        return *r;
    }
    let scope = match form_scope(&f) {
        Ok(s) => s,
        Err(e) => return ui_error(StatusCode::BAD_REQUEST, &e),
    };
    match crate::app::api::apply_pause(&state, scope, f.reason.clone(), f.author.clone()).await {
        Ok(p) => done(&format!("Paused {}: {}", p.scope, p.reason)),
        Err(ApiError(code, msg)) => ui_error(code, &msg),
    }
}

/// `POST /ui/resume`: lifts a pause, back to the dashboard.
pub(in crate::app::api) async fn ui_resume(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: FormResult,
) -> Response {
    let Ok(Form(f)) = form else {
        return ui_error(StatusCode::BAD_REQUEST, "the form could not be read");
    };
    if let Err(r) = authorize(&state, &headers, f.token.as_deref()) {
        return *r;
    }
    let scope = match form_scope(&f) {
        Ok(s) => s,
        Err(e) => return ui_error(StatusCode::BAD_REQUEST, &e),
    };
    match crate::app::api::apply_resume(&state, &scope, f.author.as_deref()).await {
        Ok(()) => done(&format!("Resumed {scope}")),
        Err(ApiError(code, msg)) => ui_error(code, &msg),
    }
}
