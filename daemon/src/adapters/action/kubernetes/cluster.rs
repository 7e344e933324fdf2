//! How remedyd reaches the cluster (kubectl's `--kubeconfig`, else in-cluster or
//! `~/.kube/config`), and `kubectl version`'s check that it answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Sent with every request: the API server's audit log and default field managers name us.
pub const USER_AGENT: &str = concat!("remedyd/", env!("CARGO_PKG_VERSION"));
/// Bound of one request (a watch is bounded by its own wait).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach the cluster: the `kubeconfig` key, else in-cluster or `~/.kube/config`.
pub struct Cluster {
    kubeconfig: Option<PathBuf>,
    client: tokio::sync::Mutex<Option<::kube::Client>>,
    pub(super) metrics: std::sync::OnceLock<Arc<crate::adapters::telemetry::Metrics>>,
}

impl Cluster {
    /// A cluster reached on first use.
    pub fn new(kubeconfig: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            kubeconfig,
            client: tokio::sync::Mutex::new(None),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Where requests are counted (`remedyd_kube_requests_total`); set once by the daemon.
    pub fn set_metrics(&self, m: Arc<crate::adapters::telemetry::Metrics>) {
        let _ = self.metrics.set(m);
    }

    /// The client, built once it succeeds (a failure is retried on the next use).
    pub async fn client(&self) -> Result<::kube::Client, String> {
        let mut slot = self.client.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = match &self.kubeconfig {
            Some(p) => {
                let kc = ::kube::config::Kubeconfig::read_from(p)
                    .map_err(|e| format!("kubeconfig {}: {e}", p.display()))?;
                ::kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| format!("kubeconfig {}: {e}", p.display()))?
            }
            None => ::kube::Config::infer().await.map_err(|e| {
                format!(
                    "no cluster: not in a pod and no usable ~/.kube/config ({e}); set `kubeconfig`"
                )
            })?,
        };
        // Retries are ours: bounded, recorded, and never hiding a PDB's 429 inside the client.
        cfg.default_retry = false;
        cfg.connect_timeout = Some(Duration::from_secs(10));
        cfg.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(USER_AGENT),
        ));
        let c = ::kube::Client::try_from(cfg).map_err(|e| format!("kube client: {e}"))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Checks that the cluster answers (enforce mode's startup check).
    pub async fn preflight(&self) -> Result<String, String> {
        let c = self.client().await?;
        let v = tokio::time::timeout(REQUEST_TIMEOUT, c.apiserver_version())
            .await
            .map_err(|_| "the API server did not answer /version within 30 s".to_string())?
            .map_err(|e| format!("the API server is not reachable: {e}"))?;
        Ok(v.git_version)
    }
}
