//! One action run against the cluster (`Session`): reads are sent; writes are sent, or recorded
//! in dry-run exactly as kubectl would send them; every request is bounded, counted and, when it
//! fails, recorded; 409 and 5xx are retried here (kubectl's client-side retries, made visible).

use std::sync::Arc;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::cluster::REQUEST_TIMEOUT;
use super::error::ApiError;
use super::request::IntoRequest;
use crate::adapters::action::Outcome;

/// One action run: reads go to the cluster; writes are sent, or recorded in dry-run.
pub struct Session {
    client: ::kube::Client,
    metrics: Option<Arc<crate::adapters::telemetry::Metrics>>,
    dry: bool,
    /// Writes, in order, as sent (or as they would be): the timeline's evidence.
    pub(super) writes: Vec<Value>,
    /// Every answer that was an error, retried or not.
    errors: Vec<Value>,
    reads: usize,
    /// What the action measured and decided, for the timeline.
    pub notes: Vec<String>,
    /// Extra detail (evidence, rollout status).
    pub detail: serde_json::Map<String, Value>,
}

/// A request's shape, as recorded and as compared with kubectl.
fn describe(req: &http::Request<Vec<u8>>) -> Value {
    let body: Value = if req.body().is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(req.body())
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(req.body()).into_owned()))
    };
    json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query().unwrap_or(""),
        "content_type": req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        "body": body,
    })
}

/// kube-core writes `?&fieldManager=…` when a patch has no other parameter; send kubectl's
/// `?fieldManager=…` instead (servers read both alike, but the request should be kubectl's).
fn tidy(mut req: http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    if let Some(q) = req.uri().query()
        && (q.starts_with('&') || q.is_empty())
    {
        let q = q.trim_start_matches('&');
        let pq = if q.is_empty() {
            req.uri().path().to_string()
        } else {
            format!("{}?{q}", req.uri().path())
        };
        if let Ok(uri) = pq.parse() {
            *req.uri_mut() = uri;
        }
    }
    req
}

fn clone_req(req: &http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let mut b = http::Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone());
    for (k, v) in req.headers() {
        b = b.header(k, v);
    }
    b.body(req.body().clone())
        .expect("a copy of a valid request")
}

impl Session {
    pub(super) fn new(
        client: ::kube::Client,
        metrics: Option<Arc<crate::adapters::telemetry::Metrics>>,
        dry: bool,
    ) -> Self {
        Self {
            client,
            metrics,
            dry,
            writes: Vec::new(),
            errors: Vec::new(),
            reads: 0,
            notes: Vec::new(),
            detail: Default::default(),
        }
    }

    /// A session for work done in parallel, merged back with `absorb`.
    pub fn fork(&self) -> Self {
        Self::new(self.client.clone(), self.metrics.clone(), self.dry)
    }

    /// Takes a forked session's record.
    pub fn absorb(&mut self, other: Session) {
        self.writes.extend(other.writes);
        self.errors.extend(other.errors);
        self.reads += other.reads;
        self.notes.extend(other.notes);
    }

    /// True in dry-run.
    pub fn dry(&self) -> bool {
        self.dry
    }

    async fn send_once<T: DeserializeOwned>(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<T, ApiError> {
        let method = req.method().to_string();
        let r = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request::<T>(req)).await {
            Ok(r) => r.map_err(ApiError::from_kube),
            Err(_) => Err(ApiError {
                code: 0,
                reason: String::new(),
                message: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            }),
        };
        self.count(method, r.as_ref().err());
        r
    }

    fn count(&self, method: String, err: Option<&ApiError>) {
        if let Some(m) = &self.metrics {
            let code = match err {
                None => "2xx".to_string(),
                Some(e) if e.code == 0 => "error".to_string(),
                Some(e) => e.code.to_string(),
            };
            m.kube_requests
                .get_or_create(&crate::adapters::telemetry::KubeLabels { method, code })
                .inc();
        }
    }

    /// Sends `req`, retrying the errors `retry` accepts up to `times` more times, 1 s apart.
    /// Retried errors go into `api_errors`; the final one too for a write (a read's final 404
    /// is often the answer it waits for).
    async fn send<T: DeserializeOwned>(
        &mut self,
        req: http::Request<Vec<u8>>,
        times: usize,
        retry: impl Fn(&ApiError) -> bool,
        write: bool,
    ) -> Result<T, ApiError> {
        let shape = describe(&req);
        let errors = std::sync::Mutex::new(Vec::new());
        let r = (|| async { self.send_once::<T>(clone_req(&req)).await })
            .retry(
                ConstantBuilder::default()
                    .with_delay(Duration::from_secs(1))
                    .with_max_times(times),
            )
            .when(retry)
            .notify(|e, _| {
                errors.lock().unwrap_or_else(|p| p.into_inner()).push(
                    json!({"request": shape.clone(), "error": e.to_string(), "retried": true}),
                )
            })
            .await;
        self.errors
            .extend(errors.into_inner().unwrap_or_else(|p| p.into_inner()));
        if let (true, Err(e)) = (write, &r) {
            self.errors
                .push(json!({"request": shape, "error": e.to_string(), "retried": false}));
        }
        r
    }

    /// A read, retried on no answer, 429 and 5xx (3 tries in all).
    pub async fn read<T: DeserializeOwned>(
        &mut self,
        req: impl IntoRequest,
    ) -> Result<T, ApiError> {
        self.reads += 1;
        let req = req.into_request()?;
        self.send(tidy(req), 2, ApiError::transient, false).await
    }

    /// A read of a plain-text body (pod logs).
    pub async fn read_text(&mut self, req: impl IntoRequest) -> Result<String, ApiError> {
        self.reads += 1;
        let req = req.into_request()?;
        let r = match tokio::time::timeout(REQUEST_TIMEOUT, self.client.request_text(req)).await {
            Ok(r) => r.map_err(ApiError::from_kube),
            Err(_) => Err(ApiError {
                code: 0,
                reason: String::new(),
                message: "no answer within 30 s".into(),
            }),
        };
        self.count("GET".into(), r.as_ref().err());
        r
    }

    /// A write. Dry-run records it and answers `None`. Otherwise it is sent; no answer and 5xx
    /// are retried (5 tries in all), 409 too when `conflicts` (a patch without a precondition:
    /// kubectl retries those too), and the answer is returned.
    pub async fn write<T: DeserializeOwned>(
        &mut self,
        req: impl IntoRequest,
        conflicts: bool,
    ) -> Result<Option<T>, ApiError> {
        let req = tidy(req.into_request()?);
        self.writes.push(describe(&req));
        if self.dry {
            return Ok(None);
        }
        let retry = |e: &ApiError| e.code == 0 || e.code >= 500 || (conflicts && e.code == 409);
        self.send(req, 4, retry, true).await.map(Some)
    }

    /// A write sent once, its error returned as is (eviction: the caller owns the 429 loop).
    pub async fn write_once(&mut self, req: impl IntoRequest) -> Result<Option<Value>, ApiError> {
        let req = tidy(req.into_request()?);
        self.writes.push(describe(&req));
        if self.dry {
            return Ok(None);
        }
        self.send(req, 0, |_| false, true).await.map(Some)
    }

    /// The client (for watches).
    pub fn client(&self) -> &::kube::Client {
        &self.client
    }

    pub(super) fn into_detail(mut self) -> Value {
        let key = if self.dry {
            Outcome::WOULD_SEND
        } else {
            "requests"
        };
        self.detail.insert(key.into(), Value::Array(self.writes));
        self.detail.insert("reads".into(), self.reads.into());
        if !self.errors.is_empty() {
            self.detail
                .insert("api_errors".into(), Value::Array(self.errors));
        }
        if !self.notes.is_empty() {
            self.detail.insert("notes".into(), json!(self.notes));
        }
        Value::Object(self.detail)
    }
}
