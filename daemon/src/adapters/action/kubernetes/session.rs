//! One action run against the cluster (`Session`): reads are sent; writes are sent, or recorded
//! in dry-run exactly as kubectl would send them; every request is bounded, counted and, when it
//! fails, recorded; 409 and 5xx are retried here (kubectl's client-side retries, made visible).
//!
//! A session has a deadline, the step's own bound (`wait`, `timeout`): each request waits at most
//! until then (and never more than [`REQUEST_TIMEOUT`]), and no retry starts that could not end
//! before it, so a hanging or failing API server ends the step in time, with the number of
//! attempts and the last cause in its error.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::cluster::REQUEST_TIMEOUT;
use super::error::ApiError;
use super::request::IntoRequest;
use crate::adapters::action::Outcome;

/// One action run: reads go to the cluster; writes are sent, or recorded in dry-run.
pub struct Session {
    client: ::kube::Client,
    metrics: Option<Arc<crate::adapters::telemetry::Metrics>>,
    dry: bool,
    /// When the step's bound runs out: no request waits past it.
    deadline: Instant,
    /// Requests sent, retries included (for the error of a step cut by its deadline).
    attempts: u32,
    /// The last request error, for the same.
    last_error: Option<String>,
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

/// Between two tries of a request (kubectl's client retries wait 1 s too).
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// `3s` for messages: whole seconds, at least one.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64().round().max(1.0))
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

/// kube's `Client::request`, the error's code the answer's HTTP status: kube takes the `code`
/// of a JSON `Status` body instead (a corrupted answer's: missing, so 0, or another status: a
/// 409 read as a 404, a pod "gone"), loses the status of a body that is not UTF-8, and takes
/// any answer that is not 4xx or 5xx (a 302, a 999) as a success.
async fn request<T: DeserializeOwned>(
    client: &::kube::Client,
    req: http::Request<Vec<u8>>,
) -> Result<T, ApiError> {
    let res = client
        .send(req.map(::kube::client::Body::from))
        .await
        .map_err(ApiError::from_kube)?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect_bytes()
        .await
        .map_err(ApiError::from_kube)?;
    if !(200..300).contains(&status) {
        return Err(ApiError::from_answer(status, &body));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::from_kube(::kube::Error::SerdeError(e)))
}

/// A request that got no answer within `bound`.
fn no_answer(bound: Duration) -> ApiError {
    ApiError {
        code: 0,
        reason: String::new(),
        message: format!("no answer within {}", secs(bound)),
    }
}

impl Session {
    pub(super) fn new(
        client: ::kube::Client,
        metrics: Option<Arc<crate::adapters::telemetry::Metrics>>,
        dry: bool,
        deadline: Instant,
    ) -> Self {
        Self {
            client,
            metrics,
            dry,
            deadline,
            attempts: 0,
            last_error: None,
            writes: Vec::new(),
            errors: Vec::new(),
            reads: 0,
            notes: Vec::new(),
            detail: Default::default(),
        }
    }

    /// A session for work done in parallel, merged back with `absorb`.
    pub fn fork(&self) -> Self {
        Self::new(
            self.client.clone(),
            self.metrics.clone(),
            self.dry,
            self.deadline,
        )
    }

    /// Time left before the step's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The error of a step its deadline cut short, whatever it was doing: the requests sent and
    /// the last error seen.
    pub(super) fn deadline_error(&self, budget: Duration) -> ApiError {
        let n = self.attempts;
        ApiError {
            code: 0,
            reason: String::new(),
            message: format!(
                "Kubernetes API did not answer within {} ({n} attempt{}): {}",
                secs(budget),
                if n == 1 { "" } else { "s" },
                self.last_error
                    .as_deref()
                    .unwrap_or("the step's deadline came first")
            ),
        }
    }

    /// Takes a forked session's record.
    pub fn absorb(&mut self, other: Session) {
        self.writes.extend(other.writes);
        self.errors.extend(other.errors);
        self.attempts += other.attempts;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
        self.reads += other.reads;
        self.notes.extend(other.notes);
    }

    /// True in dry-run.
    pub fn dry(&self) -> bool {
        self.dry
    }

    /// One try, bounded by the deadline and by [`REQUEST_TIMEOUT`].
    async fn send_once<T: DeserializeOwned>(
        &mut self,
        req: http::Request<Vec<u8>>,
    ) -> Result<T, ApiError> {
        let method = req.method().to_string();
        let bound = self.remaining().min(REQUEST_TIMEOUT);
        self.attempts += 1;
        let r = match tokio::time::timeout(bound, request::<T>(&self.client, req)).await {
            Ok(r) => r,
            Err(_) => Err(no_answer(bound)),
        };
        self.count(method, r.as_ref().err());
        if let Err(e) = &r {
            self.last_error = Some(e.to_string());
        }
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

    /// Sends `req`, retrying the errors `retry` accepts up to `times` more times, 1 s apart, as
    /// long as the deadline leaves room for another try. Retried errors go into `api_errors`
    /// with their attempt number; the final one too for a write (a read's final 404 is often
    /// the answer it waits for). A final error after retries, or cut by the deadline, names the
    /// attempts and how long they took.
    async fn send<T: DeserializeOwned>(
        &mut self,
        req: http::Request<Vec<u8>>,
        times: usize,
        retry: impl Fn(&ApiError) -> bool,
        write: bool,
    ) -> Result<T, ApiError> {
        let shape = describe(&req);
        let started = Instant::now();
        let mut attempt = 0usize;
        let e = loop {
            attempt += 1;
            let e = match self.send_once::<T>(clone_req(&req)).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let again = attempt <= times && retry(&e) && self.remaining() > RETRY_DELAY;
            if !again {
                break e;
            }
            self.errors.push(json!({"request": shape.clone(), "attempt": attempt, "error": e.to_string(), "retried": true}));
            tokio::time::sleep(RETRY_DELAY).await;
        };
        let cut = self.remaining().is_zero();
        let e = if e.code == 0 && (attempt > 1 || cut) {
            ApiError {
                message: format!(
                    "Kubernetes API did not answer within {} ({attempt} attempt{}): {}",
                    secs(started.elapsed()),
                    if attempt == 1 { "" } else { "s" },
                    e.message
                ),
                ..e
            }
        } else if attempt > 1 {
            ApiError {
                message: format!(
                    "{} ({attempt} attempts in {})",
                    e.message,
                    secs(started.elapsed())
                ),
                ..e
            }
        } else {
            e
        };
        if write {
            self.errors.push(json!({"request": shape, "attempt": attempt, "error": e.to_string(), "retried": false}));
        }
        Err(e)
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
        let bound = self.remaining().min(REQUEST_TIMEOUT);
        self.attempts += 1;
        let r = match tokio::time::timeout(bound, self.client.request_text(req)).await {
            Ok(r) => r.map_err(ApiError::from_kube),
            Err(_) => Err(no_answer(bound)),
        };
        self.count("GET".into(), r.as_ref().err());
        if let Err(e) = &r {
            self.last_error = Some(e.to_string());
        }
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
        let retry = |e: &ApiError| {
            e.code == 0 || (500..600).contains(&e.code) || (conflicts && e.code == 409)
        };
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
