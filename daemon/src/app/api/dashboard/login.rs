//! The dashboard's door when a token is configured: its pages answer 401 with a form that asks
//! for a token once; `POST /ui/login` keeps it in an `HttpOnly`, `SameSite=Strict` cookie (see
//! [`crate::app::api::access`]) and goes back to the page asked for; `POST /ui/logout` forgets it.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::forms::same_site;
use super::html::{esc, page_html};
use crate::app::api::AppState;
use crate::app::api::access::{self, Access};

/// The login form's fields.
#[derive(Deserialize)]
pub(in crate::app::api) struct LoginForm {
    /// `webhook_token` or `read_token`.
    #[serde(default)]
    token: String,
    /// Where to go back to (a path on this site).
    #[serde(default)]
    next: String,
}

/// `None` when the request may read the dashboard; else the login page to answer with.
pub(super) fn gate(state: &AppState, headers: &HeaderMap, next: &str) -> Option<Response> {
    (!access::allows(state, headers, Access::Read))
        .then(|| login_page(StatusCode::UNAUTHORIZED, next, None))
}

/// Only a path on this site: `/…` but not `//host…` (which a browser reads as another site).
fn local(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

fn login_page(code: StatusCode, next: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=error id=error>{}</p>", esc(e)))
        .unwrap_or_default();
    (
        code,
        page_html(
            "remedyd: token",
            &format!(
                "<h1>remedyd</h1>{error}<p>Incidents can hold log lines and labels: enter the \
                 webhook_token or the read_token to see them.</p>\
                 <form id=login-form method=post action=\"/ui/login\">\
                 <input type=password name=token autocomplete=current-password required>\
                 <input type=hidden name=next value=\"{}\">\
                 <button type=submit>Open the dashboard</button></form>",
                esc(local(next))
            ),
        ),
    )
        .into_response()
}

/// `POST /ui/login`: checks the token, keeps it in the cookie, back to `next`.
pub(in crate::app::api) async fn ui_login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return login_page(
            StatusCode::BAD_REQUEST,
            "/",
            Some("the form could not be read"),
        );
    };
    if !same_site(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            "/",
            Some("this form was sent from another site"),
        );
    }
    let token = f.token.trim();
    if state.token.is_none() {
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, local(&f.next).to_string())],
        )
            .into_response();
    }
    match access::grants(&state, token) {
        Some(_) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, local(&f.next).to_string()),
                (header::SET_COOKIE, access::set_cookie(Some(token))),
            ],
        )
            .into_response(),
        None => login_page(
            StatusCode::UNAUTHORIZED,
            &f.next,
            Some("wrong token: enter the webhook_token or the read_token"),
        ),
    }
}

/// `POST /ui/logout`: forgets the cookie.
pub(in crate::app::api) async fn ui_logout(headers: HeaderMap) -> Response {
    if !same_site(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            "/",
            Some("this form was sent from another site"),
        );
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, access::set_cookie(None)),
        ],
    )
        .into_response()
}
