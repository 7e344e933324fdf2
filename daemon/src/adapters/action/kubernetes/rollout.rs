//! `kubectl rollout status deployment/X`: kubectl's rollout viewer, the bounded wait on it that
//! gates every Deployment change, and `kube_rollout_status`, the same wait as a step of its own.

use std::time::{Duration, Instant};

use ::kube::runtime::WatchStreamExt;
use futures::StreamExt;
use serde_json::{Value, json};

use super::error::{ApiError, Failure, bad};
use super::executor::KubeAction;
use super::objects::deployments;
use super::params::{Target, fmt, params};
use super::request::IntoRequest;
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

/// kubectl's rollout viewer (`DeploymentStatusViewer`) on one Deployment.
#[derive(Debug, PartialEq)]
pub enum Rollout {
    /// Not finished: why.
    Waiting(String),
    /// Finished.
    Done(String),
    /// Failed for good (deadline exceeded, deleted).
    Failed(String),
}

/// Evaluates a Deployment as kubectl's viewer does (absent fields count as 0).
pub fn rollout_state(d: &Value) -> Rollout {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let st = &d["status"];
    if n(&d["metadata"]["generation"]) > n(&st["observedGeneration"]) {
        return Rollout::Waiting("Waiting for deployment spec update to be observed...".into());
    }
    let progressing = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Progressing");
    if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
        return Rollout::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let (updated, replicas, available) = (
        n(&st["updatedReplicas"]),
        n(&st["replicas"]),
        n(&st["availableReplicas"]),
    );
    if let Some(want) = d["spec"]["replicas"].as_i64()
        && updated < want
    {
        return Rollout::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return Rollout::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            // Counts from the answer: absurd ones must not overflow.
            replicas.saturating_sub(updated)
        ));
    }
    if available < updated {
        return Rollout::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    Rollout::Done(format!("deployment {name:?} successfully rolled out"))
}

/// Waits (bounded) for a Deployment's rollout, over a list+watch of that one object.
pub async fn wait_rollout(
    s: &mut Session,
    ns: &str,
    name: &str,
    wait: Duration,
) -> Result<String, Failure> {
    if s.dry() {
        s.notes
            .push(format!("would wait up to {} for the rollout", fmt(wait)));
        return Ok("dry-run: rollout not awaited".into());
    }
    let api: ::kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        ::kube::Api::namespaced(s.client().clone(), ns);
    let cfg = ::kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
    let started = Instant::now();
    // The step's deadline bounds the wait too (requests before it may have used some).
    let bound = wait.min(s.remaining());
    // Backoff between re-lists: without it an API server that closes connections is asked
    // again at once, in a tight loop, until the bound.
    let mut stream = ::kube::runtime::watcher(api, cfg).default_backoff().boxed();
    let mut last = String::from("no status seen yet");
    // Whether the API server said anything about the Deployment: a wait that never heard from
    // it is an outage (an API failure), not a rollout that did not finish.
    let mut heard = false;
    let mut seen = Vec::<String>::new();
    let result = tokio::time::timeout(bound, async {
        while let Some(ev) = stream.next().await {
            let obj = match ev {
                Ok(::kube::runtime::watcher::Event::Apply(d))
                | Ok(::kube::runtime::watcher::Event::InitApply(d)) => d,
                Ok(::kube::runtime::watcher::Event::Delete(_)) => {
                    return Err(Failure::Refused(format!(
                        "deployment {ns}/{name} was deleted during the rollout"
                    )));
                }
                Ok(_) => continue,
                Err(e) => {
                    // Refused (RBAC, gone): waiting cannot help. Anything else the watcher
                    // recovers from by itself (it re-lists); record it and go on to the bound.
                    if let Some(api) = watch_refusal(&e) {
                        return Err(Failure::Api(
                            format!("watching deployment {ns}/{name}"),
                            api,
                        ));
                    }
                    last = format!("watch error: {e}");
                    continue;
                }
            };
            heard = true;
            let v = serde_json::to_value(&obj).unwrap_or_default();
            if v["spec"]["paused"] == true {
                return Err(Failure::Refused(format!(
                    "deployment {ns}/{name} is paused: its rollout cannot finish"
                )));
            }
            match rollout_state(&v) {
                Rollout::Done(m) => return Ok(m),
                Rollout::Failed(m) => return Err(Failure::Refused(m)),
                Rollout::Waiting(m) => {
                    if seen.last() != Some(&m) {
                        seen.push(m.clone());
                    }
                    last = m;
                }
            }
        }
        Err(Failure::Refused("the watch ended".into()))
    })
    .await;
    s.detail.insert(
        "rollout".into(),
        json!({"waited": fmt(started.elapsed()), "progress": seen}),
    );
    // Rounded: a wait the deadline shortened by a few milliseconds reads as it was set.
    let waited = fmt(Duration::from_secs_f64(bound.as_secs_f64().round()));
    match result {
        Ok(r) => r,
        Err(_) if !heard => Err(Failure::Api(
            format!("watching deployment {ns}/{name}"),
            ApiError {
                code: 0,
                reason: String::new(),
                message: format!("Kubernetes API did not answer within {waited}: {last}"),
            },
        )),
        Err(_) => Err(Failure::Refused(format!(
            "rollout of {ns}/{name} not finished after {waited}: {last}"
        ))),
    }
}

/// A watch error that waiting will not fix: 401, 403, 404.
fn watch_refusal(e: &::kube::runtime::watcher::Error) -> Option<ApiError> {
    use ::kube::runtime::watcher::Error as W;
    let api = match e {
        W::InitialListFailed(k) | W::WatchStartFailed(k) | W::WatchFailed(k) => {
            ApiError::from_kube_ref(k)
        }
        W::WatchError(s) => ApiError {
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        W::NoResourceVersion => return None,
    };
    matches!(api.code, 401 | 403 | 404).then_some(api)
}

/// Sends a change to a Deployment, then waits for its rollout (the gate every such step has).
pub(super) async fn change_and_wait(
    s: &mut Session,
    req: impl IntoRequest,
    what: String,
    ns: &str,
    name: &str,
    wait: Duration,
) -> Result<String, Failure> {
    s.write::<Value>(req, true)
        .await
        .map_err(Failure::api(what))?;
    wait_rollout(s, ns, name, wait).await
}

/// `kube_rollout_status`: kubectl's rollout viewer as a step of its own, bounded by `wait`.
pub struct Status;

impl KubeAction for Status {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<Target>().to_vec()
    }
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<Target>(p)?.check().map(|_| ())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let (ns, name, wait) = params::<Target>(&req.params)?.resolve(req)?;
        Ok(
            json!({"watch": format!("{}?fieldSelector=metadata.name%3D{name}", deployments(&ns)), "wait": fmt(wait)}),
        )
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let (ns, name, wait) = params::<Target>(&req.params)
                .and_then(|t| t.resolve(req))
                .map_err(bad)?;
            wait_rollout(s, &ns, &name, wait).await
        })
    }
}
