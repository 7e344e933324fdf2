//! `kube_evidence`: what `kubectl get deployment,pods`, `kubectl logs --tail -c CONTAINER` (and
//! `--previous` for a container that restarted) and `kubectl get events` would show about a
//! Deployment: pod phases and restarts, the logs of each container of failing pods, and recent
//! events. It only reads.

use serde::Deserialize;
use serde_json::{Value, json};

use super::bounded::{clip, inline, is_name, log_tail};
use super::error::{Failure, bad};
use super::executor::KubeAction;
use super::objects::{deployments, list_all, read_deployment, ready, selector_string};
use super::params::{check_template, default_deployment, namespace, params, render};
use super::request::path;
use super::session::Session;
use super::usage;
use crate::adapters::action::{ActionRequest, BoxFuture};

/// Pods listed in one evidence record.
const MAX_PODS: usize = 50;

fn default_lines() -> u32 {
    50
}
fn default_events() -> usize {
    20
}
fn default_log_pods() -> usize {
    3
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceParams {
    #[serde(default = "default_deployment")]
    deployment: String,
    /// Last log lines of each failing pod.
    #[serde(default = "default_lines")]
    log_lines: u32,
    /// How many failing pods' logs.
    #[serde(default = "default_log_pods")]
    log_pods: usize,
    /// Most recent events kept.
    #[serde(default = "default_events")]
    events: usize,
}

/// `kube_evidence`: pod phases and restarts, the logs of failing pods, recent events.
pub struct Evidence;

/// Containers of one pod whose logs are read (a pod with more is rare; the rest are named in
/// `pods[].containers`).
const MAX_CONTAINERS: usize = 4;

/// One pod as the evidence keeps it: every string of the answer bounded ([`clip`]).
fn pod_summary(p: &Value) -> Value {
    let statuses: Vec<&Value> = p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    // Counts from the API server's answer: absurd ones saturate instead of overflowing.
    let restarts: i64 = statuses
        .iter()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .fold(0, i64::saturating_add);
    let waiting: Vec<&str> = statuses
        .iter()
        .filter_map(|c| c["state"]["waiting"]["reason"].as_str())
        .collect();
    let last: Vec<&str> = statuses
        .iter()
        .filter_map(|c| c["lastState"]["terminated"]["reason"].as_str())
        .collect();
    let containers: Vec<&str> = p["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let restarted: Vec<&str> = statuses
        .iter()
        .filter(|c| c["restartCount"].as_i64().unwrap_or(0) > 0)
        .filter_map(|c| c["name"].as_str())
        .collect();
    clip(&json!({
        "name": p["metadata"]["name"],
        "containers": containers,
        "restarted": restarted,
        "phase": p["status"]["phase"],
        "ready": ready(p),
        "restarts": restarts,
        "waiting": waiting,
        "last_terminated": last,
        "node": p["spec"]["nodeName"],
    }))
}

impl KubeAction for Evidence {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<EvidenceParams>().to_vec()
    }
    fn validate(&self, p: &Value) -> Result<(), String> {
        let e = params::<EvidenceParams>(p)?;
        check_template("deployment", &e.deployment)?;
        if e.log_lines > 500 || e.log_pods > 10 || e.events > 100 {
            return Err("log_lines ≤ 500, log_pods ≤ 10, events ≤ 100".into());
        }
        Ok(())
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let e = params::<EvidenceParams>(&req.params)?;
        let ns = namespace(req)?;
        let name = render("deployment", &e.deployment, req)?;
        Ok(
            json!({"reads": [deployments(&ns) + "/" + &name, path("v1", &ns, "pods"), path("metrics.k8s.io/v1beta1", &ns, "pods"), path("v1", &ns, "events")]}),
        )
    }
    fn evidence(&self) -> bool {
        true
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let e = params::<EvidenceParams>(&req.params).map_err(bad)?;
            let ns = namespace(req).map_err(bad)?;
            let name = render("deployment", &e.deployment, req).map_err(bad)?;
            let d = read_deployment(s, &ns, &name).await?;
            let sel = selector_string(&d["spec"]["selector"])
                .map_err(|e| bad(format!("deployment {ns}/{name}: spec.selector: {e}")))?;
            let pods_path = path("v1", &ns, "pods");
            let pods = list_all(s, &pods_path, Some(&sel), None, None)
                .await
                .map_err(Failure::api(format!("listing pods of {ns}/{name}")))?;
            let summaries: Vec<Value> = pods.iter().map(pod_summary).collect();
            // `kubectl top pod -l SELECTOR`: usage per container, or a note when not served.
            let usage = usage::read(s, &ns, &sel).await;
            let failing: Vec<&Value> = summaries
                .iter()
                .filter(|p| {
                    p["ready"] == false
                        || p["restarts"].as_i64().unwrap_or(0) > 0
                        || p["waiting"].as_array().is_some_and(|w| !w.is_empty())
                })
                .collect();
            // Logs per container (a real API server refuses a multi-container pod's log without
            // `container`), and the previous instance's of a container that restarted: that is
            // where a crash's last words are.
            let mut logs = serde_json::Map::new();
            for p in failing.iter().take(e.log_pods) {
                let pod = p["name"].as_str().unwrap_or_default();
                // Names from the answer go into a request path: only Kubernetes names do.
                if !is_name(pod) {
                    let why = format!("pod name {:?} is not a Kubernetes name", inline(pod, 63));
                    s.notes.push(format!("logs not read: {why}"));
                    continue;
                }
                let names = |k: &str| -> Vec<String> {
                    p[k].as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                };
                let restarted = names("restarted");
                let mut per = serde_json::Map::new();
                for c in names("containers").iter().take(MAX_CONTAINERS) {
                    if !is_name(c) {
                        let why = format!(
                            "container name {:?} is not a Kubernetes name",
                            inline(c, 63)
                        );
                        per.insert(inline(c, 63), format!("(logs not read: {why})").into());
                        continue;
                    }
                    for previous in [false, true] {
                        if previous && !restarted.contains(c) {
                            continue;
                        }
                        let url = format!(
                            "{pods_path}/{pod}/log?container={c}&tailLines={}{}",
                            e.log_lines,
                            if previous { "&previous=true" } else { "" }
                        );
                        let text = match http::Request::get(url).body(Vec::new()) {
                            Ok(r) => match s.read_text(r).await {
                                Ok(t) => log_tail(&t),
                                Err(err) => format!("(logs unavailable: {err})"),
                            },
                            Err(err) => format!("(logs not read: {err})"),
                        };
                        let key = if previous {
                            format!("{c} (previous)")
                        } else {
                            c.clone()
                        };
                        per.insert(key, text.into());
                    }
                }
                logs.insert(pod.to_string(), per.into());
            }
            let mut events = Vec::new();
            let mut names: Vec<String> = vec![name.clone()];
            names.extend(
                failing
                    .iter()
                    .take(e.log_pods)
                    .filter_map(|p| p["name"].as_str().map(str::to_string)),
            );
            for n in &names {
                match list_all(
                    s,
                    &path("v1", &ns, "events"),
                    None,
                    Some(&format!("involvedObject.name={n}")),
                    None,
                )
                .await
                {
                    Ok(evs) => events.extend(evs.into_iter().map(|ev| {
                        clip(&json!({
                            "object": format!("{}/{}", ev["involvedObject"]["kind"].as_str().unwrap_or_default(), ev["involvedObject"]["name"].as_str().unwrap_or_default()),
                            "type": ev["type"], "reason": ev["reason"], "message": ev["message"],
                            "count": ev["count"],
                            "last": ev["lastTimestamp"].as_str().or(ev["eventTime"].as_str()).or(ev["metadata"]["creationTimestamp"].as_str()),
                        }))
                    })),
                    Err(err) => s.notes.push(format!("events of {}: {err}", inline(n, 253))),
                }
            }
            events.sort_by(|a, b| b["last"].as_str().cmp(&a["last"].as_str()));
            events.truncate(e.events);
            let ready_n = summaries.iter().filter(|p| p["ready"] == true).count();
            let mut why: Vec<String> = failing
                .iter()
                .map(|p| {
                    let w = p["waiting"]
                        .as_array()
                        .and_then(|w| w.first())
                        .and_then(|w| w.as_str());
                    let l = p["last_terminated"]
                        .as_array()
                        .and_then(|w| w.first())
                        .and_then(|w| w.as_str());
                    // The answer's words, on one line and short: the summary is one line.
                    format!(
                        "{} {}{}{} (restarts {})",
                        inline(p["name"].as_str().unwrap_or_default(), 63),
                        inline(p["phase"].as_str().unwrap_or("?"), 32),
                        w.map(|w| format!(", {}", inline(w, 63)))
                            .unwrap_or_default(),
                        l.map(|l| format!(", last exit {}", inline(l, 63)))
                            .unwrap_or_default(),
                        p["restarts"]
                    )
                })
                .collect();
            why.truncate(5);
            // A large Deployment's pods: the failing ones first, at most MAX_PODS in the record.
            let mut shown: Vec<&Value> = failing.clone();
            shown.extend(summaries.iter().filter(|p| !failing.contains(p)));
            shown.truncate(MAX_PODS);
            s.detail.insert(
                "evidence".into(),
                json!({
                    "deployment": {
                        "name": name, "namespace": ns,
                        "replicas": clip(&d["spec"]["replicas"]), "generation": clip(&d["metadata"]["generation"]),
                        "revision": clip(&d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]),
                        "status": clip(&d["status"]),
                    },
                    "pods_total": summaries.len(),
                    "pods": shown, "logs": logs, "events": events, "usage": clip(&usage),
                }),
            );
            Ok(format!(
                "{ns}/{name}: {} pod(s), {ready_n} ready{}; {} event(s)",
                summaries.len(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!("; failing: {}", why.join("; "))
                },
                events.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_restart_counts_from_the_api_server_saturate_instead_of_panicking() {
        // Found with tests/it/fuzz_responses.rs's review of the readers: the sum overflowed.
        let p = json!({"metadata": {"name": "web-1"}, "status": {"containerStatuses": [
            {"name": "a", "restartCount": i64::MAX}, {"name": "b", "restartCount": 5}]}});
        assert_eq!(pod_summary(&p)["restarts"], json!(i64::MAX));
    }
}
