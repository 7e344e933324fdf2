//! `remedyd.toml` through figment: defaults < file < `REMEDYD_<KEY>` env < flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::policy::Mode;

/// Every config key, with the defaults of DESIGN.md §3.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP server.
    pub listen: String,
    /// `sqlite://PATH` (one replica) or `postgres://USER:PASSWORD@HOST:PORT/DBNAME` (several
    /// replicas share it; TLS by the URL's `sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
    pub store: String,
    /// Directory of rule files.
    pub rules: PathBuf,
    /// Directory of policy files.
    pub policies: PathBuf,
    /// `dry-run` or `enforce`.
    pub mode: Mode,
    /// Bearer token required on the webhook and on pause/resume.
    pub webhook_token: Option<String>,
    /// File holding the token (trailing newline ignored); alternative to `webhook_token`.
    pub webhook_token_file: Option<PathBuf>,
    /// Read-only bearer token: reads incidents, timelines and reviews (API and dashboard), and
    /// nothing else. Needs `webhook_token`; without a token nothing is guarded.
    pub read_token: Option<String>,
    /// File holding the read-only token; alternative to `read_token`.
    pub read_token_file: Option<PathBuf>,
    /// Slack app's signing secret: Approve/Deny clicks (`POST /api/v1/slack/interactions`) are
    /// taken only with a valid signature under it; unset, that endpoint refuses every request.
    pub slack_signing_secret: Option<String>,
    /// File holding the signing secret; alternative to `slack_signing_secret`.
    pub slack_signing_secret_file: Option<PathBuf>,
    /// Prometheus base URL (polled rules and PromQL verification).
    pub prometheus_url: Option<String>,
    /// Kubeconfig of the Kubernetes actions; in-cluster, else `~/.kube/config`, when unset.
    pub kubeconfig: Option<PathBuf>,
    /// Webhook body limit in bytes.
    pub max_body: usize,
    /// Connections served at once; beyond it, new ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Request line and headers, in bytes; beyond it, 431.
    pub max_header_bytes: usize,
    /// Number of request headers; beyond it, 431.
    pub max_headers: usize,
    /// How long a request body may take to arrive, counted from its headers; beyond it, 408.
    pub request_timeout: String,
    /// How long a connection may sit without a complete request head (a new connection, or a
    /// kept-alive one between requests) before it is closed.
    pub idle_timeout: String,
    /// How long shutdown may take before in-flight work is abandoned (it resumes on restart).
    pub shutdown_timeout: String,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// An Alertmanager-driven incident none of whose alerts is heard of (not even re-sent) for
    /// this long, and that did not change meanwhile, goes stale: paged once, handed to a human.
    pub stale_after: String,
    /// How long signals (the alerts as received) are kept once handled; `off` keeps them for
    /// ever. Incidents, timelines and pages are never removed.
    pub signal_retention: String,
    /// `/readyz` fails when signals are pending and no engine pass has completed for this long.
    pub engine_stall_after: String,
    /// Hosts (`host`: any port) and `host:port`s that HTTP probes (`http_probe`,
    /// `verify: {http: …}`) may reach; empty refuses every probe. In the environment,
    /// comma-separated: `REMEDYD_PROBE_ALLOW=svc.ns:8001,api.internal`.
    #[serde(default, deserialize_with = "list_or_commas")]
    pub probe_allow: Vec<String>,
    /// The base URL under which people reach remedyd's dashboard (`https://remedyd.example.com`):
    /// every page links to the incident's page under it. Unset, pages name `remedyd review ID`.
    #[serde(default)]
    pub external_url: Option<String>,
    /// Alertmanager's URLs (one HA cluster) for the silences of policies with `silence:`; empty
    /// (the default) silences nothing. In the environment, comma-separated:
    /// `REMEDYD_ALERTMANAGER_URL=http://am-0:9093,http://am-1:9093`.
    #[serde(default, deserialize_with = "list_or_commas")]
    pub alertmanager_url: Vec<String>,
}

/// A list, or one string of comma-separated entries (how the environment gives it).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(l) => l,
        Either::One(s) => s
            .split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
    })
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9097".into(),
            store: "sqlite://remedyd.db".into(),
            rules: "rules".into(),
            policies: "policies".into(),
            mode: Mode::DryRun,
            webhook_token: None,
            webhook_token_file: None,
            read_token: None,
            read_token_file: None,
            slack_signing_secret: None,
            slack_signing_secret_file: None,
            prometheus_url: None,
            kubeconfig: None,
            // 4 MiB: a 1 000-alert group is about 1 MiB; beyond that something is wrong upstream.
            max_body: 4 * 1024 * 1024,
            // 1 024: Alertmanager replicas, Prometheus and a few people need a handful; the
            // rest is headroom, and it stays below the usual `ulimit -n` of 1 024 + the store's.
            max_connections: 1024,
            // 16 KiB: Alertmanager's headers are a few hundred bytes; a long bearer token and a
            // proxy's forwarding headers fit many times over.
            max_header_bytes: 16 * 1024,
            // 100: hyper's own default; a real client sends about ten.
            max_headers: 100,
            // 10 s: Alertmanager's own request timeout; a 4 MiB body at 10 s needs 400 KiB/s.
            request_timeout: "10s".into(),
            // 30 s: long enough for Alertmanager's group_interval-paced reuse of a connection to
            // be cheap, short enough that idle connections cannot hold every slot for long.
            idle_timeout: "30s".into(),
            // Alertmanager gives up on a request after 10 s; finishing writes takes far less.
            shutdown_timeout: "10s".into(),
            log_format: "text".into(),
            stale_after: "12h".into(),
            // 30 days: a month of history for `remedyd replay` and for looking back, and a store
            // that stops growing; incidents and their timelines stay whatever this is.
            signal_retention: "30d".into(),
            // 60 s: a healthy engine completes a pass at least every second (its tick), and a
            // pass that takes a minute is already an outage; shorter would flag a slow store.
            engine_stall_after: "60s".into(),
            // Safe default: no host may be probed until listed.
            probe_allow: Vec::new(),
            // No guess: a page's link must reach the dashboard from a responder's browser.
            external_url: None,
            // Opt-in: remedyd silences nothing until told where Alertmanager is.
            alertmanager_url: Vec::new(),
        }
    }
}

/// Keys the environment may set, as `REMEDYD_<KEY>`.
pub const KEYS: &[&str] = &[
    "listen",
    "store",
    "rules",
    "policies",
    "mode",
    "webhook_token",
    "webhook_token_file",
    "read_token",
    "read_token_file",
    "slack_signing_secret",
    "slack_signing_secret_file",
    "prometheus_url",
    "kubeconfig",
    "max_body",
    "max_connections",
    "max_header_bytes",
    "max_headers",
    "request_timeout",
    "idle_timeout",
    "shutdown_timeout",
    "log_format",
    "stale_after",
    "signal_retention",
    "engine_stall_after",
    "probe_allow",
    "external_url",
    "alertmanager_url",
];

/// A secret given inline or as a file (trailing newline ignored); both is an error, an empty
/// value is none.
fn secret(
    value: (&Option<String>, &'static str),
    file: (&Option<PathBuf>, &'static str),
) -> Result<Option<String>, ConfigError> {
    match (value.0, file.0) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            field: file.1,
            message: format!("set {} or {}, not both", value.1, file.1),
        }),
        (Some(t), None) if !t.is_empty() => Ok(Some(t.clone())),
        (_, Some(p)) => std::fs::read_to_string(p)
            .map(|t| Some(t.trim_end().to_string()).filter(|t| !t.is_empty()))
            .map_err(|e| ConfigError::Invalid {
                field: file.1,
                message: format!("{}: {e}", p.display()),
            }),
        _ => Ok(None),
    }
}

/// Flag overrides.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--store`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// `--mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// `--rules`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// `--policies`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<PathBuf>,
}

/// Config errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or env could not be read or has a bad value.
    #[error("config: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is invalid.
    #[error("config: {field}: {message}")]
    Invalid {
        /// Key.
        field: &'static str,
        /// Why.
        message: String,
    },
}

impl Config {
    /// Loads: defaults, then `path` if given (it must exist) or `remedyd.toml` if present, env, flags.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Invalid {
                        field: "--config",
                        message: format!("{} does not exist", p.display()),
                    });
                }
                fig = fig.merge(Toml::file(p));
            }
            None => fig = fig.merge(Toml::file("remedyd.toml")),
        }
        let cfg: Config = fig
            .merge(Env::prefixed("REMEDYD_").only(KEYS))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let addr = self.listen_addr()?;
        if !addr.ip().is_loopback() && self.token().ok().flatten().is_none() {
            return Err(ConfigError::Invalid {
                field: "webhook_token",
                message: format!(
                    "listen = {:?} is not loopback: set webhook_token (or webhook_token_file) so that only Alertmanager can post",
                    self.listen
                ),
            });
        }
        let token = self.token()?;
        let read = self.read_token()?;
        match (&token, &read) {
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "read_token",
                    message: "a read-only token needs webhook_token (without it nothing is guarded, reads included)".into(),
                });
            }
            (Some(w), Some(r)) if w == r => {
                return Err(ConfigError::Invalid {
                    field: "read_token",
                    message: "must differ from webhook_token (it would grant writes)".into(),
                });
            }
            _ => {}
        }
        self.shutdown_deadline()?;
        self.stale_after()?;
        self.signal_retention()?;
        self.engine_stall_after()?;
        if !self.store.starts_with("sqlite://") {
            // PostgreSQL: the URL is parsed here so that a typo fails at startup, not later.
            crate::load::dsn::parse_url(&self.store).map_err(|e| ConfigError::Invalid {
                field: "store",
                message: format!(
                    "{:?}: {e}; valid: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DBNAME",
                    redact_url(&self.store)
                ),
            })?;
        }
        self.probe_allow()?;
        self.external_url()?;
        self.alertmanager_urls()?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                field: "log_format",
                message: format!("{:?}; valid: text, json", self.log_format),
            });
        }
        self.listener_limits()?;
        if self.max_body < 1024 {
            return Err(ConfigError::Invalid {
                field: "max_body",
                message: format!(
                    "{} bytes is too small for any Alertmanager payload",
                    self.max_body
                ),
            });
        }
        Ok(())
    }

    /// The parsed `probe_allow`.
    pub fn probe_allow(&self) -> Result<crate::load::ProbeAllowList, ConfigError> {
        crate::load::ProbeAllowList::parse(&self.probe_allow).map_err(|message| {
            ConfigError::Invalid {
                field: "probe_allow",
                message,
            }
        })
    }

    /// `external_url` without a trailing `/`, checked: an absolute `http` or `https` URL with a
    /// host and no query or fragment (the incident's path is appended to it).
    pub fn external_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.external_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let invalid = |why: &str| ConfigError::Invalid {
            field: "external_url",
            message: format!(
                "{raw:?} {why}; valid: an absolute http(s) URL such as https://remedyd.example.com"
            ),
        };
        let url = reqwest::Url::parse(raw).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("is not http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("has a query or a fragment"));
        }
        Ok(Some(raw.trim_end_matches('/').to_string()))
    }

    /// `alertmanager_url`, each checked: an absolute `http` or `https` URL with a host.
    pub fn alertmanager_urls(&self) -> Result<Vec<String>, ConfigError> {
        self.alertmanager_url
            .iter()
            .map(|raw| {
                let invalid = |why: String| ConfigError::Invalid {
                    field: "alertmanager_url",
                    message: format!(
                        "{raw:?} {why}; valid: absolute http(s) URLs such as http://alertmanager:9093"
                    ),
                };
                let url = reqwest::Url::parse(raw)
                    .map_err(|e| invalid(format!("is not a URL ({e})")))?;
                if !matches!(url.scheme(), "http" | "https")
                    || url.host_str().is_none_or(str::is_empty)
                {
                    return Err(invalid("is not an http(s) URL with a host".into()));
                }
                Ok(raw.trim_end_matches('/').to_string())
            })
            .collect()
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        if let Ok(a) = self.listen.parse() {
            return Ok(a);
        }
        // A host name (`localhost:9097`): its first address.
        std::net::ToSocketAddrs::to_socket_addrs(self.listen.as_str())
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ConfigError::Invalid {
                field: "listen",
                message: format!("{:?} is not HOST:PORT (e.g. 127.0.0.1:9097)", self.listen),
            })
    }

    /// The webhook token from `webhook_token` or `webhook_token_file`.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        secret(
            (&self.webhook_token, "webhook_token"),
            (&self.webhook_token_file, "webhook_token_file"),
        )
    }

    /// The read-only token from `read_token` or `read_token_file`.
    pub fn read_token(&self) -> Result<Option<String>, ConfigError> {
        secret(
            (&self.read_token, "read_token"),
            (&self.read_token_file, "read_token_file"),
        )
    }

    /// The Slack signing secret from `slack_signing_secret` or `slack_signing_secret_file`.
    pub fn slack_signing_secret(&self) -> Result<Option<String>, ConfigError> {
        secret(
            (&self.slack_signing_secret, "slack_signing_secret"),
            (&self.slack_signing_secret_file, "slack_signing_secret_file"),
        )
    }

    /// Path of the SQLite file.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.store.strip_prefix("sqlite://").map(PathBuf::from)
    }
}

/// What the HTTP listener holds a client to (docs/api.md: Limits of the listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Request line and headers, in bytes.
    pub max_header_bytes: usize,
    /// Number of request headers.
    pub max_headers: usize,
    /// How long a body may take to arrive, counted from its headers.
    pub request_timeout: Duration,
    /// How long a connection may wait for a complete request head.
    pub idle_timeout: Duration,
}

/// The bounds of the listener's keys: (key, least, most). The least of `max_header_bytes` is
/// what any client's request line and `Host` need; the most of each keeps one connection's
/// buffers (hyper reads headers into twice `max_header_bytes`) small times `max_connections`.
const LISTENER_BOUNDS: [(&str, usize, usize); 3] = [
    ("max_connections", 1, 65_536),
    ("max_header_bytes", 1024, 1024 * 1024),
    ("max_headers", 8, 1000),
];

/// The shortest `request_timeout` and `idle_timeout`: anything shorter cuts off a client on a
/// busy network, not an abusive one.
const MIN_LISTENER_TIMEOUT: Duration = Duration::from_millis(100);

impl Config {
    /// The listener's limits, checked: counts within [`LISTENER_BOUNDS`], timeouts at least
    /// [`MIN_LISTENER_TIMEOUT`].
    pub fn listener_limits(&self) -> Result<ListenerLimits, ConfigError> {
        let counts = [
            self.max_connections,
            self.max_header_bytes,
            self.max_headers,
        ];
        for ((field, least, most), v) in LISTENER_BOUNDS.into_iter().zip(counts) {
            if !(least..=most).contains(&v) {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{v}; valid: {least} to {most}"),
                });
            }
        }
        let timeout = |field: &'static str, v: &str| {
            let d = crate::domain::time::parse_duration(v)
                .map_err(|message| ConfigError::Invalid { field, message })?;
            if d < MIN_LISTENER_TIMEOUT {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{v:?} is shorter than 100ms"),
                });
            }
            Ok(d)
        };
        Ok(ListenerLimits {
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            request_timeout: timeout("request_timeout", &self.request_timeout)?,
            idle_timeout: timeout("idle_timeout", &self.idle_timeout)?,
        })
    }
}

/// The shortest `engine_stall_after`: the engine passes at least every second (its tick), so
/// anything shorter would report a healthy engine as stalled.
const MIN_STALL_AFTER: Duration = Duration::from_secs(1);

/// Hides credentials in a URL for messages: the user info and a `password=` parameter.
pub fn redact_url(u: &str) -> String {
    let (head, query) = u.split_once('?').map_or((u, None), |(h, q)| (h, Some(q)));
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}://***{}", &head[..s], &head[a..]),
        _ => head.to_string(),
    };
    if let Some(q) = query {
        let params: Vec<&str> = q
            .split('&')
            .map(|p| {
                if p.starts_with("password=") {
                    "password=***"
                } else {
                    p
                }
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

mod durations;

#[cfg(test)]
mod tests;
