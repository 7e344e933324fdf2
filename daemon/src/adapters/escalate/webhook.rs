//! The generic webhook pager: the notification as JSON (every field of the runbook's template,
//! the measured values and the full timeline).

use super::{Notification, PagerError, send_request};
use crate::domain::policy::{Route, Secret};

/// The name `app.rs` has used for the pager; it is the dispatching [`super::Pagers`], which sends
/// webhook routes as before and every other route type the way its service expects.
pub type WebhookPager = super::Pagers;

/// Posts `n` as JSON to `url`.
pub(super) async fn deliver(
    client: &reqwest::Client,
    route: &Route,
    url: &Secret,
    n: &Notification,
) -> Result<bool, PagerError> {
    send_request(route, client.post(url.expose()).json(n)).await
}
