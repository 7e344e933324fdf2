//! Prometheus: instant queries with a timeout and backoff, and the metrics of every query.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

use crate::adapters::telemetry::Metrics;
use crate::domain::BoxFuture;
use crate::domain::signal::Labels;

/// One series of an instant-query result.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series labels (without `__name__`).
    pub labels: Labels,
    /// Value; may be NaN or ±Inf.
    pub value: f64,
}

/// Why a query gave no answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// Prometheus could not be reached or answered 5xx: an outage, never a verdict.
    #[error("prometheus unavailable: {0}")]
    Unavailable(String),
    /// Prometheus rejected the query (bad PromQL, bad labels).
    #[error("query rejected: {0}")]
    Rejected(String),
}

/// Where polled rules and verifications read values: Prometheus, or a test file's series.
pub trait MetricSource: Send + Sync + 'static {
    /// Runs an instant query.
    fn query<'a>(&'a self, promql: &'a str) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>>;
}

/// Per-query timeout: a slow Prometheus must not stall a poll cycle.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Characters of Prometheus's answer kept in an error: its own errors are a sentence; a
/// proxy's or a broken server's can be any size, and the message reaches the timeline and pages.
const MESSAGE_CHARS: usize = 300;

/// An error's text on one line, cut to [`MESSAGE_CHARS`].
fn one_line(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::domain::notification::truncate(&text, MESSAGE_CHARS)
}

/// The Prometheus HTTP API client.
pub struct PromClient {
    client: prometheus_http_query::Client,
    metrics: Arc<Metrics>,
}

impl PromClient {
    /// A client for `url` (e.g. `http://prometheus:9090`).
    pub fn new(url: &str, metrics: Arc<Metrics>) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("remedyd/", env!("CARGO_PKG_VERSION")))
            .timeout(QUERY_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let client = prometheus_http_query::Client::from(http, url)
            .map_err(|e| format!("prometheus_url {url:?}: {e}"))?;
        Ok(Self { client, metrics })
    }

    async fn once(&self, promql: &str) -> Result<Vec<Sample>, QueryError> {
        use prometheus_http_query::Error as E;
        let res = self
            .client
            .query(promql)
            .timeout(QUERY_TIMEOUT.as_millis() as i64)
            .get()
            .await
            .map_err(|e| match e {
                E::Prometheus(p) => QueryError::Rejected(one_line(&p.to_string())),
                other => QueryError::Unavailable(one_line(&other.to_string())),
            })?;
        let data = res.data();
        let mut out = Vec::new();
        if let Some(v) = data.as_vector() {
            for s in v {
                let mut labels: Labels = s
                    .metric()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.remove("__name__");
                out.push(Sample {
                    labels,
                    value: s.sample().value(),
                });
            }
        } else if let Some(s) = data.as_scalar() {
            out.push(Sample {
                labels: Labels::new(),
                value: s.value(),
            });
        } else {
            return Err(QueryError::Rejected(
                "a range vector is not a valid instant result".into(),
            ));
        }
        Ok(out)
    }
}

impl MetricSource for PromClient {
    fn query<'a>(&'a self, promql: &'a str) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>> {
        Box::pin(async move {
            let started = Instant::now();
            // Two quick retries ride out a Prometheus restart or a dropped connection; a rejected
            // query is not retried.
            let res = (|| self.once(promql))
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_times(2)
                        .with_jitter(),
                )
                .when(|e| matches!(e, QueryError::Unavailable(_)))
                .await;
            self.metrics
                .prom_query_duration
                .observe(started.elapsed().as_secs_f64());
            let result = match &res {
                Ok(_) => "ok",
                Err(QueryError::Unavailable(_)) => "unavailable",
                Err(QueryError::Rejected(_)) => "rejected",
            };
            Metrics::result(&self.metrics.prom_queries, result);
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_of_any_size_becomes_one_short_line() {
        // Found by the fuzz campaign (tests/it/fuzz_responses): a 100 000-character `error`
        // became the whole message of a rejected query.
        let m = one_line(&format!("bad_data: {}\nmore", "x".repeat(100_000)));
        assert!(m.chars().count() <= MESSAGE_CHARS && !m.contains('\n'));
        assert!(m.starts_with("bad_data: xxx"));
    }
}
