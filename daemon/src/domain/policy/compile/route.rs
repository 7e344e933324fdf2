//! One `routes:` entry: its type, the fields that apply to that type, its timeout, and the secret
//! (URL, routing key, API key) read from the environment or a file at load time.

use std::time::Duration;

use super::SecretSource;
use crate::domain::diag::Diagnostics;
use crate::domain::policy::raw::RawRoute;
use crate::domain::policy::route::{
    OPSGENIE_URL, PAGERDUTY_URL, Route, SLACK_API_URL, Secret, Transport,
};
use crate::domain::time::parse_duration;

/// Reads a secret from exactly one of an env variable or a file. Returns the secret (`None` when
/// missing), where it comes from, and why it is missing. Never puts the value in a message.
fn read_secret(
    secrets: &dyn SecretSource,
    file: &str,
    line: u64,
    diag: &mut Diagnostics,
    route: &str,
    env: (&str, Option<String>),
    path: (&str, Option<String>),
) -> (Option<Secret>, String, Option<String>) {
    match (env.1, path.1) {
        (Some(var), None) => {
            let source = format!("env {var}");
            match secrets.env(&var) {
                Some(v) if !v.trim().is_empty() => (Some(Secret::new(v.trim())), source, None),
                Some(_) => (None, source, Some(format!("env {var} is empty"))),
                None => (None, source, Some(format!("env {var} is not set"))),
            }
        }
        (None, Some(p)) => {
            let source = format!("file {p}");
            match secrets.file(&p) {
                Ok(v) if !v.trim().is_empty() => (Some(Secret::new(v.trim())), source, None),
                Ok(_) => (None, source, Some(format!("file {p} is empty"))),
                Err(e) => (None, source, Some(format!("file {p} cannot be read ({e})"))),
            }
        }
        _ => {
            diag.push(
                file,
                line,
                &format!("routes.{}", env.0),
                format!(
                    "route {route:?} needs exactly one of `{}` or `{}`",
                    env.0, path.0
                ),
            );
            (None, String::new(), None)
        }
    }
}

/// Reports a URL that is not http(s).
fn check_url(file: &str, line: u64, diag: &mut Diagnostics, route: &str, what: &str, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        diag.push(
            file,
            line,
            "routes.url",
            format!("route {route:?}: {what} must start with http:// or https://"),
        );
    }
}

/// Compiles one route entry; `None` when its type is unknown.
pub(super) fn compile_route(
    file: &str,
    r: &RawRoute,
    secrets: &dyn SecretSource,
    diag: &mut Diagnostics,
) -> Option<Route> {
    let line = r.name.referenced.line();
    let name = r.name.value.as_str();
    let kind = r.kind.value.as_str();
    let timeout = match &r.timeout {
        Some(t) => parse_duration(&t.value).unwrap_or_else(|e| {
            diag.push(file, t.referenced.line(), "routes.timeout", e);
            Duration::from_secs(10)
        }),
        None => Duration::from_secs(10),
    };
    // A slack route with a bot token posts through the Web API (threads); without one it is an
    // incoming webhook. The two ways are exclusive: their fields do not mix.
    let slack_api = kind == "slack" && (r.token_env.is_some() || r.token_file.is_some());
    // Fields that do not apply to this type are errors, not silently ignored.
    let allowed: &[&str] = match kind {
        "webhook" => &["url", "url_env", "url_file"],
        "slack" if slack_api => &["url", "token_env", "token_file", "channel"],
        "slack" => &["url_env", "url_file"],
        "pagerduty" => &["url", "routing_key_env", "routing_key_file"],
        "opsgenie" => &["url", "api_key_env", "api_key_file"],
        other => {
            diag.push(
                file,
                r.kind.referenced.line(),
                "routes.type",
                format!("unknown route type {other:?}; valid: webhook, pagerduty, opsgenie, slack"),
            );
            return None;
        }
    };
    for (field, set) in [
        ("url", r.url.is_some()),
        ("url_env", r.url_env.is_some()),
        ("url_file", r.url_file.is_some()),
        ("routing_key_env", r.routing_key_env.is_some()),
        ("routing_key_file", r.routing_key_file.is_some()),
        ("api_key_env", r.api_key_env.is_some()),
        ("api_key_file", r.api_key_file.is_some()),
        ("token_env", r.token_env.is_some()),
        ("token_file", r.token_file.is_some()),
        ("channel", r.channel.is_some()),
    ] {
        if set && !allowed.contains(&field) {
            let hint = if slack_api && field.starts_with("url_") {
                " (a slack route sends either through an incoming webhook, url_env or url_file, or through the Web API, token_env or token_file with channel; not both)".to_string()
            } else if kind == "slack" && field == "channel" {
                " (channel goes with a bot token: token_env or token_file)".to_string()
            } else if kind == "slack" && field == "url" {
                " (a Slack webhook URL is a secret: use url_env or url_file; url is the Web API base, with token_env or token_file)".to_string()
            } else {
                format!(" (valid for {kind}: {}, timeout)", allowed.join(", "))
            };
            diag.push(
                file,
                line,
                &format!("routes.{field}"),
                format!("route {name:?}: `{field}` does not apply to a {kind} route{hint}"),
            );
        }
    }
    let api_url = |default: &str, diag: &mut Diagnostics| {
        let u = r.url.clone().unwrap_or_else(|| default.to_string());
        check_url(file, line, diag, name, "url", &u);
        u.trim_end_matches('/').to_string()
    };
    let (transport, source, missing) = match kind {
        "webhook" => match (&r.url, &r.url_env, &r.url_file) {
            (Some(u), None, None) => {
                check_url(file, line, diag, name, "url", u);
                (
                    Transport::Webhook {
                        url: Some(Secret::new(u.clone())),
                    },
                    "url".to_string(),
                    None,
                )
            }
            (None, env, path) => {
                let (url, source, missing) = read_secret(
                    secrets,
                    file,
                    line,
                    diag,
                    name,
                    ("url_env", env.clone()),
                    ("url_file", path.clone()),
                );
                if let Some(u) = &url {
                    check_url(
                        file,
                        line,
                        diag,
                        name,
                        &format!("the URL from {source}"),
                        u.expose(),
                    );
                }
                (Transport::Webhook { url }, source, missing)
            }
            _ => {
                diag.push(
                    file,
                    line,
                    "routes.url",
                    format!("route {name:?} needs exactly one of `url`, `url_env` or `url_file`"),
                );
                (Transport::Webhook { url: None }, String::new(), None)
            }
        },
        "slack" if slack_api => {
            let url = api_url(SLACK_API_URL, diag);
            let channel = match r.channel.as_deref().map(str::trim) {
                Some(c) if !c.is_empty() => c.to_string(),
                _ => {
                    diag.push(
                        file,
                        line,
                        "routes.channel",
                        format!(
                            "route {name:?}: a slack route with a bot token needs `channel` (a channel id such as C0123456789, or #name)"
                        ),
                    );
                    String::new()
                }
            };
            let (token, source, missing) = read_secret(
                secrets,
                file,
                line,
                diag,
                name,
                ("token_env", r.token_env.clone()),
                ("token_file", r.token_file.clone()),
            );
            (
                Transport::SlackApi {
                    url,
                    channel,
                    token,
                },
                source,
                missing,
            )
        }
        "slack" => {
            let (url, source, missing) = read_secret(
                secrets,
                file,
                line,
                diag,
                name,
                ("url_env", r.url_env.clone()),
                ("url_file", r.url_file.clone()),
            );
            if let Some(u) = &url {
                check_url(
                    file,
                    line,
                    diag,
                    name,
                    &format!("the URL from {source}"),
                    u.expose(),
                );
            }
            (Transport::Slack { url }, source, missing)
        }
        "pagerduty" => {
            let url = api_url(PAGERDUTY_URL, diag);
            let (routing_key, source, missing) = read_secret(
                secrets,
                file,
                line,
                diag,
                name,
                ("routing_key_env", r.routing_key_env.clone()),
                ("routing_key_file", r.routing_key_file.clone()),
            );
            (Transport::PagerDuty { url, routing_key }, source, missing)
        }
        _ => {
            let url = api_url(OPSGENIE_URL, diag);
            let (api_key, source, missing) = read_secret(
                secrets,
                file,
                line,
                diag,
                name,
                ("api_key_env", r.api_key_env.clone()),
                ("api_key_file", r.api_key_file.clone()),
            );
            (Transport::Opsgenie { url, api_key }, source, missing)
        }
    };
    let mut route = Route::new(name, transport, &source, timeout);
    if route.missing.is_some() {
        route.missing = missing.or(route.missing);
    }
    Some(route)
}
