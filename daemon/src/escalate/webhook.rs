//! The generic webhook pager: the notification as JSON.

use std::time::Duration;

use super::{Notification, Pager, PagerError};
use crate::action::BoxFuture;
use crate::policy::{Route, RouteKind};

/// Posts notifications as JSON.
pub struct WebhookPager {
    client: reqwest::Client,
}

impl Default for WebhookPager {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookPager {
    /// A pager with remedyd's User-Agent.
    pub fn new() -> Self {
        Self {
            client: crate::action::http_client(),
        }
    }
}

impl Pager for WebhookPager {
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async move {
            let RouteKind::Webhook { url, source } = &route.kind;
            let Some(url) = url else {
                tracing::warn!(route = %route.name, source = %source, incident = %n.incident, "Route has no destination; notification recorded only");
                return Ok(false);
            };
            let resp = self
                .client
                .post(url)
                .timeout(route.timeout)
                .json(n)
                .send()
                .await
                .map_err(|e| PagerError {
                    retryable: true,
                    message: format!("route {}: {}", route.name, e.without_url()),
                    retry_after: None,
                })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(true);
            }
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Err(PagerError {
                retryable: status.is_server_error() || status.as_u16() == 429,
                message: format!("route {}: status {}", route.name, status.as_u16()),
                retry_after,
            })
        })
    }
}
