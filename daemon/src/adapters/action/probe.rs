//! HTTP health probes: one GET of a URL that must be on the `probe_allow` list, with a timeout,
//! no redirects followed and a capped body. Used by the `http_probe` evidence action
//! ([`super::http_probe`]) and by `verify: {http: …}` (the engine's `launch_probe`).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::probe_allow::ProbeAllowList;

/// Bytes of a probe's answer read at most; the rest is never read.
pub const BODY_CAP: usize = 64 * 1024;
/// Characters of the body kept in the evidence.
pub const EXCERPT_CHARS: usize = 512;
/// The default timeout of a probe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Characters of a redirect's `Location` kept: it is the server's text and goes into the step's
/// one-line summary (a URL longer than this is cut, marked with `…`).
pub const LOCATION_CHARS: usize = 300;
/// The longest timeout a probe may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Checks a URL: http or https, no credentials, its host and port allowed. The error names
/// the host and the `probe_allow` key.
pub fn check_url(allow: &ProbeAllowList, url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "url {url:?}: scheme {:?} is not http or https",
            u.scheme()
        ));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("url: credentials in a probe URL are refused".into());
    }
    let host = match u.host_str() {
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        None => return Err(format!("url {url:?} has no host")),
    };
    let port = u.port_or_known_default().unwrap_or(80);
    let allowed = allow.allows(&host, port);
    if allowed {
        Ok(u)
    } else if allow.is_empty() {
        Err(format!(
            "probe of {host}:{port} refused: probe_allow is empty (list the hosts probes may reach)"
        ))
    } else {
        Err(format!(
            "probe of {host}:{port} refused: not in probe_allow ({})",
            allow.describe()
        ))
    }
}

/// What a probe saw.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The URL requested.
    pub url: String,
    /// The answer's status, if one came.
    pub status: Option<u16>,
    /// Time to the end of the (capped) body, in milliseconds.
    pub latency_ms: u64,
    /// The first [`EXCERPT_CHARS`] characters of the body.
    pub body_excerpt: String,
    /// The body was longer than [`BODY_CAP`] bytes and was cut there.
    pub body_truncated: bool,
    /// No answer: connection refused, timeout, TLS.
    pub error: Option<String>,
    /// `Location` of a redirect (never followed), at most [`LOCATION_CHARS`] characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The capped body, for `body_contains`; not kept in evidence.
    #[serde(skip)]
    pub body: String,
}

impl ProbeReport {
    /// One line: `GET URL → 200 in 12 ms`.
    pub fn line(&self) -> String {
        match (&self.error, self.status) {
            (Some(e), _) => format!(
                "GET {} → no answer after {} ms: {e}",
                self.url, self.latency_ms
            ),
            (None, Some(s)) => match &self.location {
                Some(l) => format!(
                    "GET {} → {s} in {} ms (redirect to {l} not followed)",
                    self.url, self.latency_ms
                ),
                None => format!("GET {} → {s} in {} ms", self.url, self.latency_ms),
            },
            (None, None) => format!("GET {} → no status", self.url),
        }
    }

    /// Whether it passes: the expected status (any 2xx when `None`) and, if given, the body
    /// holds `body_contains`. `Err` says why not.
    pub fn passes(&self, status: Option<u16>, body_contains: Option<&str>) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(format!("no answer: {e}"));
        }
        let got = self.status.unwrap_or(0);
        let status_ok = match status {
            Some(s) => got == s,
            None => (200..300).contains(&got),
        };
        if !status_ok {
            let want = status.map_or("2xx".to_string(), |s| s.to_string());
            return Err(format!("status {got}, expected {want}"));
        }
        if let Some(needle) = body_contains
            && !self.body.contains(needle)
        {
            return Err(format!("body does not contain {needle:?}"));
        }
        Ok(())
    }
}

/// Sends probes.
#[derive(Clone)]
pub struct Prober {
    client: reqwest::Client,
    allow: ProbeAllowList,
}

impl Prober {
    /// A prober reaching only `allow`.
    pub fn new(allow: ProbeAllowList) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("remedyd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_else(|_| super::http_client());
        Self { client, allow }
    }

    /// The allow list.
    pub fn allow(&self) -> &ProbeAllowList {
        &self.allow
    }

    /// GETs `url` if allowed (`Err` otherwise, nothing sent); an answer, a timeout or a
    /// connection error is a report.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<ProbeReport, String> {
        let u = check_url(&self.allow, url)?;
        let start = Instant::now();
        let mut report = ProbeReport {
            url: u.to_string(),
            status: None,
            latency_ms: 0,
            body_excerpt: String::new(),
            body_truncated: false,
            error: None,
            location: None,
            body: String::new(),
        };
        let res = tokio::time::timeout(timeout, async {
            let mut resp = self.client.get(u.clone()).send().await?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(kept_location);
            let mut body = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = resp.chunk().await? {
                let room = BODY_CAP - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, location, body, truncated))
        })
        .await;
        report.latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        match res {
            Err(_) => {
                report.error = Some(format!(
                    "timed out after {}",
                    crate::domain::time::fmt_duration(timeout)
                ))
            }
            Ok(Err(e)) => report.error = Some(with_causes(&e)),
            Ok(Ok((status, location, body, truncated))) => {
                report.status = Some(status);
                report.location = location.filter(|_| (300..400).contains(&status));
                report.body = String::from_utf8_lossy(&body).into_owned();
                report.body_excerpt = report.body.chars().take(EXCERPT_CHARS).collect();
                report.body_truncated = truncated;
            }
        }
        Ok(report)
    }
}

/// A redirect's `Location` as the report keeps it: at most [`LOCATION_CHARS`] characters.
fn kept_location(l: &str) -> String {
    crate::domain::notification::truncate(l, LOCATION_CHARS)
}

/// A reqwest error's words, with its causes.
fn with_causes(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A probe's timeout: `None` is [`DEFAULT_TIMEOUT`]; more than [`MAX_TIMEOUT`] or zero is an error.
pub fn parse_timeout(t: Option<&str>) -> Result<Duration, String> {
    let Some(t) = t else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let d = crate::domain::time::parse_duration(t).map_err(|e| format!("timeout: {e}"))?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!(
            "timeout {t:?} must be more than 0 and at most {}",
            crate::domain::time::fmt_duration(MAX_TIMEOUT)
        ));
    }
    Ok(d)
}

/// The host and port of a URL template when they are literal (no `{{` before the path): what
/// `remedyd check` can test against `probe_allow`. `None` when a template decides them.
pub fn literal_authority(template: &str) -> Option<String> {
    let Some(cut) = template.find("{{") else {
        return Some(template.to_string());
    };
    let (scheme, after) = template[..cut].split_once("://")?;
    // The authority must end before the first template.
    let end = after.find(['/', '?', '#'])?;
    Some(format!("{scheme}://{}/", &after[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> ProbeAllowList {
        ProbeAllowList::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn urls_are_checked_before_any_request() {
        let a = allow(&["svc.ns", "gw:8001", "[::1]:9"]);
        assert!(check_url(&a, "http://svc.ns/api/health/service/x").is_ok());
        assert!(check_url(&a, "https://SVC.ns:8443/").is_ok());
        assert!(check_url(&a, "http://gw:8001/health").is_ok());
        assert!(check_url(&a, "http://[::1]:9/").is_ok());
        let e = check_url(&a, "http://gw/health").unwrap_err();
        assert!(
            e.contains("gw:80") && e.contains("not in probe_allow"),
            "{e}"
        );
        let e = check_url(&a, "http://169.254.169.254/latest").unwrap_err();
        assert!(e.contains("169.254.169.254:80"), "{e}");
        assert!(
            check_url(&a, "ftp://svc.ns/")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(check_url(&a, "file:///etc/passwd").is_err());
        assert!(
            check_url(&a, "http://u:p@svc.ns/")
                .unwrap_err()
                .contains("credentials")
        );
        // Labels that try to smuggle another host past the list.
        assert!(check_url(&a, "http://svc.ns@evil.example/").is_err());
        let e = check_url(&a, "http://evil.example#@svc.ns/").unwrap_err();
        assert!(e.contains("evil.example:80"), "{e}");
        let e = check_url(&a, "http://svc.ns.evil.example/").unwrap_err();
        assert!(e.contains("svc.ns.evil.example:80"), "{e}");
        let e = check_url(&ProbeAllowList::default(), "http://svc.ns/").unwrap_err();
        assert!(e.contains("probe_allow is empty"), "{e}");
    }

    #[test]
    fn literal_authorities_are_found_when_no_template_decides_them() {
        assert_eq!(
            literal_authority("http://gw:8001/health").as_deref(),
            Some("http://gw:8001/health")
        );
        assert_eq!(
            literal_authority("http://svc.ns/api/health/service/{{service}}").as_deref(),
            Some("http://svc.ns/")
        );
        assert_eq!(literal_authority("http://{{service}}:8001/health"), None);
        assert_eq!(literal_authority("http://svc.{{ns}}/health"), None);
        assert_eq!(literal_authority("{{vars.url}}"), None);
    }

    #[test]
    fn a_redirect_location_is_cut_before_it_reaches_the_summary() {
        // Found by tests/it/fuzz_responses/probe.rs: a 60 000-character `Location` made the
        // step's one-line summary 60 000 characters long.
        let long = format!("/{}", "a".repeat(60_000));
        let cut = kept_location(&long);
        assert_eq!(cut.chars().count(), LOCATION_CHARS);
        assert_eq!(kept_location("/login"), "/login");
        let r = ProbeReport {
            url: "http://svc/".into(),
            status: Some(302),
            latency_ms: 1,
            body_excerpt: String::new(),
            body_truncated: false,
            error: None,
            location: Some(cut),
            body: String::new(),
        };
        assert!(
            r.line().chars().count() < LOCATION_CHARS + 80,
            "{}",
            r.line()
        );
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(parse_timeout(None), Ok(DEFAULT_TIMEOUT));
        assert_eq!(parse_timeout(Some("2s")), Ok(Duration::from_secs(2)));
        assert!(parse_timeout(Some("5m")).is_err());
        assert!(parse_timeout(Some("0s")).is_err());
    }
}
