//! `kube_cluster_evidence` (the runbook's infrastructure checks, level 3): what `kubectl get
//! nodes`, `kubectl get --raw '/livez?verbose'`, `kubectl get --raw '/readyz?verbose'` and
//! `kubectl get events -A --field-selector type=Warning` show: each node's Ready and pressure
//! conditions (the NotReady and pressured nodes named), the API server's health checks (status
//! and an excerpt of the body: the failing checks), and the newest Warning events across
//! namespaces. It only reads, and needs no target namespace.

use serde::Deserialize;
use serde_json::{Value, json};

use super::bounded::{clip, inline};
use super::error::{Failure, bad};
use super::executor::KubeAction;
use super::objects::list_all;
use super::params::params;
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

/// Nodes listed in one record (all are counted).
const MAX_NODES: usize = 100;
/// Characters of a health check's body kept.
const BODY_EXCERPT: usize = 2000;
/// Warning events read: one page of kubectl's chunk size (a storm of events is not read whole).
const EVENTS_PAGE: u32 = 500;
/// The node conditions reported (kubectl describe node's).
const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

fn default_events() -> usize {
    20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterParams {
    /// Most recent Warning events kept.
    #[serde(default = "default_events")]
    events: usize,
}

impl ClusterParams {
    fn check(&self) -> Result<(), String> {
        if self.events > 100 {
            return Err("events: at most 100".into());
        }
        Ok(())
    }
}

/// `kube_cluster_evidence`: node conditions, `/livez` and `/readyz`, recent Warning events.
pub struct ClusterEvidence;

/// One node's conditions, and what is wrong with it (empty when nothing is).
fn node_summary(n: &Value) -> (Value, Vec<String>) {
    let mut conds = serde_json::Map::new();
    let mut wrong = Vec::new();
    for c in n["status"]["conditions"].as_array().into_iter().flatten() {
        let Some(t) = c["type"].as_str().filter(|t| CONDITIONS.contains(t)) else {
            continue;
        };
        let st = c["status"].as_str().unwrap_or("Unknown");
        conds.insert(t.into(), st.into());
        match (t, st) {
            ("Ready", "True") => {}
            ("Ready", _) => wrong.push(format!(
                "NotReady ({})",
                inline(c["reason"].as_str().unwrap_or(st), 63)
            )),
            (_, "True") => wrong.push(t.to_string()),
            _ => {}
        }
    }
    if !conds.contains_key("Ready") {
        wrong.push("NotReady (no Ready condition)".into());
    }
    if n["spec"]["unschedulable"] == true {
        wrong.push("SchedulingDisabled".into());
    }
    // The answer's strings, bounded: the evidence goes to the store and the pages.
    let v = clip(&json!({
        "name": n["metadata"]["name"],
        "conditions": conds,
        "unschedulable": n["spec"]["unschedulable"] == true,
        "problems": wrong,
    }));
    (v, wrong)
}

/// A char-boundary-safe excerpt.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(BODY_EXCERPT) {
        Some((i, _)) => format!("{}… (truncated)", &s[..i]),
        None => s.to_string(),
    }
}

/// The first three failing checks (`[-]etcd failed: reason withheld`) of a verbose health
/// answer, which comes one check per line or, once an error message has been put on one line,
/// one after another; without `[-]` markers, the lines that say `failed`.
fn failing_checks(body: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("[-]")
        && out.len() < 3
    {
        let check = &rest[i..];
        let end = check[3..].find(['[', '\n']).map_or(check.len(), |j| j + 3);
        let text = check[..end].trim();
        let text = ["readyz check failed", "livez check failed"]
            .iter()
            .fold(text, |t, tail| t.strip_suffix(tail).unwrap_or(t).trim_end());
        out.push(text);
        rest = &check[end..];
    }
    if out.is_empty() {
        out = body
            .lines()
            .filter(|l| l.contains("failed"))
            .take(3)
            .collect();
    }
    // The server's text in a one-line summary: control characters as spaces, bounded.
    inline(&out.join("; "), 300)
}

/// `GET /livez?verbose` or `/readyz?verbose`: (status, body excerpt). A failing check answers
/// 500 with the list of checks as text; a transport error is status 0.
async fn health(s: &mut Session, endpoint: &str) -> Value {
    let req = match http::Request::get(format!("{endpoint}?verbose")).body(Vec::new()) {
        Ok(r) => r,
        Err(e) => return json!({"status": 0, "body": e.to_string()}),
    };
    match s.read_text(req).await {
        Ok(body) => json!({"status": 200, "ok": true, "body": excerpt(&body)}),
        Err(e) => json!({"status": e.code, "ok": false, "body": excerpt(&e.message)}),
    }
}

fn when(ev: &Value) -> Option<&str> {
    ev["lastTimestamp"]
        .as_str()
        .or(ev["eventTime"].as_str())
        .or(ev["metadata"]["creationTimestamp"].as_str())
}

impl KubeAction for ClusterEvidence {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<ClusterParams>().to_vec()
    }
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<ClusterParams>(p)?.check()
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let p = params::<ClusterParams>(&req.params)?;
        p.check()?;
        Ok(json!({"reads": [
            "/api/v1/nodes", "/livez?verbose", "/readyz?verbose",
            "/api/v1/events?fieldSelector=type=Warning",
        ]}))
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
            let p = params::<ClusterParams>(&req.params).map_err(bad)?;
            p.check().map_err(bad)?;
            let mut said = Vec::new();
            // Health first: when the API server is failing, that is the headline, and the
            // lists below may fail with it.
            let livez = health(s, "/livez").await;
            let readyz = health(s, "/readyz").await;
            for (name, h) in [("livez", &livez), ("readyz", &readyz)] {
                if h["ok"] != true {
                    let first_failed = failing_checks(h["body"].as_str().unwrap_or_default());
                    said.push(format!(
                        "/{name} failing ({}){}",
                        h["status"],
                        if first_failed.is_empty() {
                            String::new()
                        } else {
                            format!(": {first_failed}")
                        }
                    ));
                }
            }
            let mut nodes_v = Vec::new();
            match list_all(s, "/api/v1/nodes", None, None, Some(500)).await {
                Ok(nodes) => {
                    let mut bad_nodes = Vec::new();
                    let mut not_ready = 0;
                    for n in &nodes {
                        let (v, wrong) = node_summary(n);
                        if wrong.iter().any(|w| w.starts_with("NotReady")) {
                            not_ready += 1;
                        }
                        if !wrong.is_empty() {
                            bad_nodes.push(format!(
                                "{} {}",
                                inline(n["metadata"]["name"].as_str().unwrap_or("?"), 63),
                                wrong.join(",")
                            ));
                        }
                        nodes_v.push(v);
                    }
                    // Nodes with problems first.
                    nodes_v.sort_by_key(|v| v["problems"].as_array().is_none_or(|a| a.is_empty()));
                    said.push(format!(
                        "{} node(s), {} NotReady{}",
                        nodes.len(),
                        not_ready,
                        if bad_nodes.is_empty() {
                            String::new()
                        } else {
                            bad_nodes.truncate(10);
                            format!(": {}", bad_nodes.join("; "))
                        }
                    ));
                }
                Err(e) => {
                    said.push(format!("nodes unreadable: {e}"));
                    s.notes.push(format!("listing nodes: {e}"));
                }
            }
            let nodes_total = nodes_v.len();
            nodes_v.truncate(MAX_NODES);
            // One page only, bounded; more is noted rather than read.
            let mut events = Vec::new();
            let r = s
                .read::<Value>(super::request::list(
                    "/api/v1/events",
                    None,
                    Some("type=Warning"),
                    Some(EVENTS_PAGE),
                    None,
                ))
                .await;
            match r {
                Ok(page) => {
                    if page["metadata"]["continue"]
                        .as_str()
                        .is_some_and(|c| !c.is_empty())
                    {
                        s.notes.push(format!(
                            "more than {EVENTS_PAGE} Warning events: the newest of the first {EVENTS_PAGE} are shown"
                        ));
                    }
                    events.extend(page["items"].as_array().into_iter().flatten().map(|ev| {
                        clip(&json!({
                            "namespace": ev["metadata"]["namespace"],
                            "object": format!("{}/{}", ev["involvedObject"]["kind"].as_str().unwrap_or_default(), ev["involvedObject"]["name"].as_str().unwrap_or_default()),
                            "reason": ev["reason"], "message": ev["message"], "count": ev["count"],
                            "last": when(ev),
                        }))
                    }));
                }
                Err(e) => s.notes.push(format!("listing Warning events: {e}")),
            }
            let events_total = events.len();
            events.sort_by(|a, b| b["last"].as_str().cmp(&a["last"].as_str()));
            events.truncate(p.events);
            said.push(format!(
                "{events_total} Warning event(s){}",
                events
                    .first()
                    .map(|e| format!(
                        ", newest: {} {} {}",
                        inline(e["namespace"].as_str().unwrap_or_default(), 63),
                        inline(e["object"].as_str().unwrap_or_default(), 127),
                        inline(e["reason"].as_str().unwrap_or_default(), 63)
                    ))
                    .unwrap_or_default()
            ));
            s.detail.insert(
                "evidence".into(),
                json!({
                    "livez": livez, "readyz": readyz,
                    "nodes_total": nodes_total, "nodes": nodes_v,
                    "warning_events_total": events_total, "warning_events": events,
                }),
            );
            Ok(format!("cluster: {}", said.join("; ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_not_ready_or_under_pressure_is_named() {
        let n = json!({"metadata": {"name": "n1"}, "status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
            {"type": "DiskPressure", "status": "True"},
            {"type": "MemoryPressure", "status": "False"}]}});
        let (_, wrong) = node_summary(&n);
        assert_eq!(wrong, vec!["NotReady (KubeletNotReady)", "DiskPressure"]);
        let ok = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(node_summary(&ok).1.is_empty());
    }

    #[test]
    fn an_excerpt_is_bounded_on_a_char_boundary() {
        let s = "é".repeat(BODY_EXCERPT + 5);
        assert!(excerpt(&s).ends_with("(truncated)"));
        assert_eq!(excerpt("ok"), "ok");
    }

    #[test]
    fn failing_checks_are_found_on_separate_lines_and_on_one_line() {
        let lines =
            "[+]ping ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\nreadyz check failed";
        assert_eq!(failing_checks(lines), "[-]etcd failed: reason withheld");
        let one = "[+]ping ok [-]etcd failed: reason withheld [+]log ok [-]poststarthook/x failed: reason withheld readyz check failed";
        assert_eq!(
            failing_checks(one),
            "[-]etcd failed: reason withheld; [-]poststarthook/x failed: reason withheld"
        );
        assert_eq!(failing_checks("connection refused"), "");
        assert_eq!(failing_checks("etcd failed\nok"), "etcd failed");
    }
}
