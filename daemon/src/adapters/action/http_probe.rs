//! The `http_probe` evidence action: GETs a health URL (the runbook's
//! `curl …/api/health/service/NAME`, `:8001/health`) and records status, latency and a body
//! excerpt. It reports; a non-2xx or no answer does not fail the ladder. A URL outside
//! `probe_allow` is refused and never requested.

use std::sync::Arc;

use serde::Deserialize;

use super::probe::{Prober, parse_timeout};
use super::{ActionRequest, BoxFuture, Executor, Outcome};
use crate::domain::template::Template;

/// `with:` of an `http_probe` step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: String,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    expect_status: Option<u16>,
}

/// The `http_probe` action.
pub struct HttpProbe {
    prober: Arc<Prober>,
}

impl HttpProbe {
    /// An action probing through `prober` (and its allow list).
    pub fn new(prober: Arc<Prober>) -> Self {
        Self { prober }
    }

    fn parse(params: &serde_json::Value) -> Result<Params, String> {
        let p: Params = serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
        check_url_template(&p.url)?;
        parse_timeout(p.timeout.as_deref())?;
        if let Some(s) = p.expect_status
            && !(100..600).contains(&s)
        {
            return Err(format!("expect_status {s} is not an HTTP status (100-599)"));
        }
        Ok(p)
    }

    /// The rendered URL (checked against `probe_allow` when sent, not here: `remedyd test`
    /// plans without the config).
    fn render(req: &ActionRequest) -> Result<(Params, String), String> {
        let p = Self::parse(&req.params)?;
        let url = Template::parse(&p.url)?.render(&req.vars)?;
        Ok((p, url))
    }
}

/// Checks a probe URL template: it parses, and a literal one starts with http:// or https://
/// and carries no credentials.
pub fn check_url_template(url: &str) -> Result<(), String> {
    Template::parse(url).map_err(|e| format!("url: {e}"))?;
    if !(url.starts_with("{{") || url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("url: {url:?} must start with http:// or https://"));
    }
    if let Some(authority) = url.split_once("://").map(|(_, a)| a)
        && authority
            .split(['/', '?', '#'])
            .next()
            .is_some_and(|a| a.contains('@'))
    {
        return Err("url: credentials in a probe URL are refused".into());
    }
    Ok(())
}

impl Executor for HttpProbe {
    fn params(&self) -> Vec<&'static str> {
        super::fields::names::<Params>().to_vec()
    }
    fn validate(&self, params: &serde_json::Value) -> Result<(), String> {
        Self::parse(params).map(|_| ())
    }

    fn plan(&self, req: &ActionRequest) -> Result<serde_json::Value, String> {
        let (p, url) = Self::render(req)?;
        Ok(serde_json::json!({"method": "GET", "url": url, "expect_status": p.expect_status}))
    }

    /// A probe only reads, so dry-run probes too (through the same allow list).
    fn dry_run<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        self.execute(req)
    }

    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let (p, url) = match Self::render(req) {
                Ok(r) => r,
                Err(e) => return Outcome::refused(e, serde_json::Value::Null),
            };
            let timeout = match parse_timeout(p.timeout.as_deref()) {
                Ok(t) => t,
                Err(e) => return Outcome::refused(e, serde_json::Value::Null),
            };
            let report = match self.prober.get(&url, timeout).await {
                Ok(r) => r,
                Err(e) => return Outcome::refused(e, serde_json::Value::Null),
            };
            let mut summary = report.line();
            let verdict = report.passes(p.expect_status, None);
            if let Err(why) = &verdict {
                summary.push_str(&format!(" ({why})"));
            }
            let mut detail = serde_json::to_value(&report).unwrap_or_default();
            if let serde_json::Value::Object(m) = &mut detail {
                m.insert("healthy".into(), verdict.is_ok().into());
            }
            // Evidence reports what it saw; an unhealthy answer is what it is there to show.
            Outcome::ok(summary, detail)
        })
    }

    fn gathers_evidence(&self) -> bool {
        true
    }
}
