//! The dashboard: server-rendered HTML, no JavaScript.
//!
//! - `/`: automation state with pause and resume forms and the maintenance windows, open and
//!   recent incidents, breakers, budgets, pages waiting.
//! - `/incidents/{id}`: one incident, its timeline and the values behind each decision, and
//!   (while it is open) a form to resolve it by hand.
//! - `/incidents/{id}/review.md`: the post-incident review (as `remedyd review` prints it).
//! - `POST /ui/pause`, `POST /ui/resume`: the forms (`application/x-www-form-urlencoded`, since an
//!   HTML form cannot send JSON). They do what `POST /api/v1/pause` and `/resume` do and are
//!   guarded the same way: when `webhook_token` is configured, the form asks for it in a password
//!   field (`token`) — a browser cannot add an `Authorization` header to a form — and an
//!   `Authorization: Bearer` header is accepted too. Requests from another site (`Origin` or
//!   `Sec-Fetch-Site` says so) are refused, so a page elsewhere cannot pause automation through a
//!   browser on the operator's machine. The token is never put in a page or a URL; a token the
//!   login form accepted is kept in an `HttpOnly`, `SameSite=Strict` cookie, which the forms
//!   accept too (the write token only).
//! - `POST /ui/incidents/{id}/resolve`: the incident page's form; does what `POST
//!   /api/v1/incidents/{id}/resolve` does (reason and author required), guarded like the pause
//!   form, and comes back to the incident page with a notice.
//!
//! `html` holds the building blocks, `pages` the GET pages, `forms` the POST forms, `login` the
//! door: with a token configured, every page needs the webhook_token or the read_token.

mod forms;
mod html;
mod login;
mod pages;

pub(super) use forms::{ui_approval, ui_pause, ui_resolve, ui_resume};
pub(super) use login::{ui_login, ui_logout};
pub(super) use pages::{incident_page, page, review};
