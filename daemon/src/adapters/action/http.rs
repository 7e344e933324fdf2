//! The `http` action: a templated request, with a timeout and retries (backoff) on 5xx and
//! connection errors only.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Deserialize;

use super::{ActionRequest, BoxFuture, Executor, Outcome};
use crate::domain::template::{self, Template};

/// `with:` of an `http` step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_method")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<serde_json::Value>,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_retries")]
    retries: u32,
}

fn default_method() -> String {
    "POST".into()
}
fn default_timeout() -> String {
    "10s".into()
}
fn default_retries() -> u32 {
    2
}

/// The exact request, rendered.
#[derive(Debug, Clone, serde::Serialize)]
struct Rendered {
    method: String,
    url: String,
    headers: BTreeMap<String, String>,
    body: Option<serde_json::Value>,
    #[serde(skip)]
    timeout: Duration,
    #[serde(skip)]
    retries: u32,
}

/// Sends HTTP requests.
pub struct HttpExecutor {
    client: reqwest::Client,
}

impl Default for HttpExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpExecutor {
    /// A client with remedyd's User-Agent.
    pub fn new() -> Self {
        Self {
            client: super::http_client(),
        }
    }

    fn parse(params: &serde_json::Value) -> Result<Params, String> {
        let p: Params = serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
        reqwest::Method::from_bytes(p.method.as_bytes())
            .map_err(|_| format!("method {:?} is not an HTTP method", p.method))?;
        let url = Template::parse(&p.url).map_err(|e| format!("url: {e}"))?;
        // A URL that starts with a template is checked when rendered; a literal one now.
        if !(p.url.starts_with("{{")
            || p.url.starts_with("http://")
            || p.url.starts_with("https://"))
        {
            return Err(format!(
                "url: {:?} must start with http:// or https://",
                url.source()
            ));
        }
        for (k, v) in &p.headers {
            Template::parse(v).map_err(|e| format!("headers.{k}: {e}"))?;
        }
        if let Some(b) = &p.body {
            template::check_json(b).map_err(|e| format!("body: {e}"))?;
        }
        crate::domain::time::parse_duration(&p.timeout).map_err(|e| format!("timeout: {e}"))?;
        if p.retries > 10 {
            return Err(format!("retries {} is more than 10", p.retries));
        }
        Ok(p)
    }

    fn render(req: &ActionRequest) -> Result<Rendered, String> {
        let p = Self::parse(&req.params)?;
        let url = Template::parse(&p.url)?.render(&req.vars)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("url {url:?} must start with http:// or https://"));
        }
        let mut headers = BTreeMap::new();
        for (k, v) in &p.headers {
            headers.insert(k.clone(), Template::parse(v)?.render(&req.vars)?);
        }
        if !headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("idempotency-key"))
        {
            headers.insert(
                "Idempotency-Key".into(),
                format!("{}/{}", req.incident, req.step),
            );
        }
        let body = p
            .body
            .as_ref()
            .map(|b| template::render_json(b, &req.vars))
            .transpose()?;
        Ok(Rendered {
            method: p.method.to_uppercase(),
            url,
            headers,
            body,
            timeout: crate::domain::time::parse_duration(&p.timeout)?,
            retries: p.retries,
        })
    }

    async fn send(&self, r: &Rendered) -> Result<(u16, String), (bool, String)> {
        let method =
            reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|e| (false, e.to_string()))?;
        let mut b = self.client.request(method, &r.url).timeout(r.timeout);
        for (k, v) in &r.headers {
            b = b.header(k, v);
        }
        if let Some(body) = &r.body {
            b = b.json(body);
        }
        let resp = b.send().await.map_err(|e| {
            // Connection errors and timeouts may pass; a malformed request will not.
            let retry = e.is_connect() || e.is_timeout() || e.is_request();
            (retry, format!("request failed: {e}"))
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(512).collect();
        if (200..300).contains(&status) {
            Ok((status, text))
        } else {
            Err((status >= 500, format!("status {status}: {text}")))
        }
    }
}

impl Executor for HttpExecutor {
    fn params(&self) -> Vec<&'static str> {
        super::fields::names::<Params>().to_vec()
    }
    fn validate(&self, params: &serde_json::Value) -> Result<(), String> {
        Self::parse(params).map(|_| ())
    }

    fn plan(&self, req: &ActionRequest) -> Result<serde_json::Value, String> {
        let r = Self::render(req)?;
        serde_json::to_value(&r).map_err(|e| e.to_string())
    }

    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let r = match Self::render(req) {
                Ok(r) => r,
                Err(e) => return Outcome::failed(false, e, serde_json::Value::Null),
            };
            let request = serde_json::to_value(&r).unwrap_or_default();
            let attempts = std::sync::atomic::AtomicU32::new(0);
            let res = (|| async {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.send(&r).await
            })
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(r.retries as usize)
                    .with_jitter(),
            )
            .when(|(retryable, _)| *retryable)
            .await;
            let attempts = attempts.into_inner();
            match res {
                Ok((status, body)) => Outcome::ok(
                    format!("{} {} → {status}", r.method, r.url),
                    serde_json::json!({"request": request, "status": status, "response": body, "attempts": attempts}),
                ),
                Err((retryable, e)) => Outcome::failed(
                    retryable,
                    format!("{} {}: {e} after {attempts} attempt(s)", r.method, r.url),
                    serde_json::json!({"request": request, "error": e, "attempts": attempts}),
                ),
            }
        })
    }
}
