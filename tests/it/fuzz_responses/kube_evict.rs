//! The API server's answers to a drain's eviction POSTs (`kube_drain_node`'s `evict_one`),
//! corrupted through the fake API server's `answer_raw` switch: any status (2xx, 4xx, 5xx, a
//! 302, a 999), `Status` bodies valid, with a `code` that disagrees with the status, with a
//! corrupted message (60 000 characters, control characters, newlines, non-UTF-8, a wrong type,
//! deep nesting, a planted secret), and bodies that are not JSON or empty, under any content
//! type, with a `Retry-After` of any value now and then. Each case drains its own node, whose
//! two ReplicaSet pods get an answer each.
//!
//! Whatever the answers, the outcome is one bounded line naming the node, free of control
//! characters and, once redacted as the engine stores it, of a secret the answer echoed; the
//! notes are too; the only writes are the node's cordon and its two pods' evictions (never a
//! DaemonSet's or a mirror pod, never a DELETE); the drain reports success only when every
//! eviction's last answer accepted it (2xx) or said the pod is gone (404), and the verdict is
//! kubectl's: 2xx evicted, 404 gone, 429 / 5xx / 403 "terminating" retried every 5 s until the
//! timeout (then *blocked*), anything else a failure naming the pod; it ends within its timeout
//! and a small margin.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use remedyd::adapters::action::ActionRequest;
use remedyd::domain::redact::{redact, redact_json};
use serde_json::{Value, json};

use super::kube_writes::{SHOP, drain_cluster};
use super::mutate::{
    CONTENT_TYPES, Figures, Rng, absurd, body, cases, mutate_json, one_line, short,
};
use super::probe::SECRETS;
use crate::support::fake_kube::fixtures;

const STATUSES: &[u16] = &[
    200, 201, 201, 201, 201, 207, 302, 400, 403, 404, 404, 404, 409, 410, 422, 429, 429, 429, 500,
    503, 504, 599, 999,
];

/// Longest summary: a failure's head, the API's reason and message (300 characters each), the
/// RBAC hint; or a timeout's head and two blocked pods' messages.
const SUMMARY_CHARS: usize = 1_000;

/// Past the drain's timeout: its last read and sleep of the wait for pods to go, the executor's
/// overrun bound, a loaded machine.
const MARGIN: Duration = Duration::from_secs(3);

fn status_body(code: u16, message: &str, reason: &str) -> Value {
    let failure = !(200..300).contains(&code);
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": if failure { "Failure" } else { "Success" },
        "message": message, "reason": reason, "code": code,
        "details": {"name": "web", "kind": "pods",
            "causes": [{"reason": "DisruptionBudget", "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]}})
}

/// The Status the API server sends with `code`, for pod `pod`.
fn real_status(code: u16, pod: &str) -> Value {
    match code {
        200..300 => status_body(code, "", ""),
        403 => status_body(
            403,
            &format!(
                "pods \"{pod}\" is forbidden: unable to create new content in namespace shop because it is being terminated"
            ),
            "Forbidden",
        ),
        404 => status_body(404, &format!("pods \"{pod}\" not found"), "NotFound"),
        409 => status_body(
            409,
            "Operation cannot be fulfilled on pods: the object has been modified",
            "Conflict",
        ),
        410 => status_body(410, "too old resource version", "Gone"),
        422 => status_body(
            422,
            "Eviction.policy \"web\" is invalid: metadata.name: Invalid value",
            "Invalid",
        ),
        429 => status_body(
            429,
            "Cannot evict pod as it would violate the pod's disruption budget.",
            "TooManyRequests",
        ),
        500..600 => status_body(
            code,
            "Internal error occurred: etcdserver: request timed out",
            "InternalError",
        ),
        _ => status_body(
            code,
            "the server has received an unexpected answer",
            "BadRequest",
        ),
    }
}

/// A message no API server sends: huge, control characters, non-UTF-8 (patched in as bytes
/// later), a wrong type, deep nesting, a planted secret.
fn bad_message(rng: &mut Rng, planted: Option<&str>) -> Value {
    if let Some(s) = planted {
        return json!(format!("admission webhook denied the request: {s}"));
    }
    match rng.below(6) {
        0 => json!("m".repeat(60_000)),
        1 => json!("line one\nline two\r\n\tthree\u{0}\u{7}\u{1b}[31mred\u{202e}"),
        2 => json!("\u{0}\u{1}\u{2}\u{1f}\u{7f}\u{85}\u{9b}"),
        3 => json!(["not", "a", "string"]),
        4 => {
            let mut v = json!("deep");
            for _ in 0..rng.below(200) {
                v = json!({"m": v});
            }
            v
        }
        _ => absurd(rng),
    }
}

/// One pod's eviction answer, and what the drain must make of it.
struct Fault {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// Answered this many times; after that, the fake's own eviction (201).
    times: usize,
    planted: Option<&'static str>,
    /// Ignored: kubectl's wait between evictions is 5 s whatever the server says; an absurd
    /// one must not stretch the drain past its timeout.
    retry_after: Option<Vec<u8>>,
}

fn fault(rng: &mut Rng, pod: &str) -> Fault {
    let status = *rng.pick(STATUSES);
    // The body's `code` disagrees with the status now and then (a proxy's, a corrupted one).
    let code = if rng.below(5) == 0 {
        *rng.pick(STATUSES)
    } else {
        status
    };
    let base = real_status(code, pod);
    let planted = (rng.below(6) == 0).then(|| rng.pick(SECRETS).0);
    let bytes = match rng.below(6) {
        0 => serde_json::to_vec(&base).unwrap_or_default(),
        1 => serde_json::to_vec(&mutate_json(rng, &base)).unwrap_or_default(),
        2 => body(rng, &base),
        3 | 4 => {
            let mut v = base.clone();
            v["message"] = bad_message(rng, planted);
            if rng.below(3) == 0 {
                v["reason"] = bad_message(rng, None);
            }
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            if rng.below(4) == 0
                && let Some(at) = b.windows(9).position(|w| w == b"\"message\"")
            {
                // Non-UTF-8 inside the message's string.
                b.splice(at + 11..at + 11, [0xff, 0xfe, 0xc3]);
            }
            b
        }
        _ => match rng.below(4) {
            0 => Vec::new(),
            1 => b"<html><body><h1>502 Bad Gateway</h1>\n</body></html>".to_vec(),
            2 => format!("eviction refused: {}", planted.unwrap_or("no reason")).into_bytes(),
            _ => b"{\"kind\":\"Status\",\"code\":".to_vec(),
        },
    };
    // A 403 is retried or final depending on its message: always answered, so never evicted.
    let times = if status == 403 || rng.below(3) > 0 {
        100
    } else {
        1
    };
    Fault {
        status,
        content_type: rng.pick(CONTENT_TYPES).to_string(),
        body: bytes,
        times,
        planted,
        retry_after: (rng.below(3) == 0).then(|| rng.pick(super::RETRY_AFTERS).to_vec()),
    }
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Evicted,
    Blocked,
    Failed,
}

/// What kubectl's loop makes of a pod's answers, with the drain's timeout.
fn verdict(f: &Fault, timeout: Duration) -> Verdict {
    let json_ok = serde_json::from_slice::<Value>(&f.body).is_ok();
    match f.status {
        404 => Verdict::Evicted,
        200..300 if json_ok => Verdict::Evicted,
        403 => Verdict::Blocked, // or Failed: its message decides; never evicted
        429 | 500..600 if timeout > Duration::from_secs(5) && f.times == 1 => Verdict::Evicted,
        429 | 500..600 => Verdict::Blocked,
        _ => Verdict::Failed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_counts_an_eviction_only_when_the_api_server_accepted_it() {
    let (fake, _dir, exec) = drain_cluster().await;
    // The API server's part of an eviction its (corrupted) answer accepted, or of its own
    // eviction once the answers are used up: the pod goes (no kubelet: a campaign's thousands
    // of pods on one fake server would slow every request).
    let server = fake.clone();
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let log = server.requests();
            for r in log.iter().skip(seen) {
                if r.method == "POST"
                    && (200..300).contains(&r.status)
                    && let Some(name) = r
                        .path
                        .strip_suffix("/eviction")
                        .and_then(|p| p.strip_prefix("/api/v1/namespaces/shop/pods/"))
                {
                    server.remove("v1", "Pod", SHOP, name);
                }
            }
            seen = log.len();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let n = cases(96).min(200);
    let mut rng = Rng(0x0a1e_5eed_0000_000d);
    let mut plan = Vec::new();
    let mut faults = Vec::new();
    for i in 0..n {
        let node = format!("ev{i:04}");
        fake.put(fixtures::node(&node));
        let mut pair = Vec::new();
        for x in ["a", "b"] {
            let pod = format!("web-{i}-{x}");
            fake.put(fixtures::pod(
                SHOP,
                &pod,
                &node,
                json!({"app": "web"}),
                Some(("ReplicaSet", "web-rs")),
            ));
            let f = fault(&mut rng, &pod);
            fake.answer_raw(
                "POST",
                &format!("/pods/{pod}/eviction"),
                f.status,
                &f.content_type,
                f.body.clone(),
                f.times,
            );
            if let Some(ra) = &f.retry_after {
                fake.raw_header("retry-after", ra);
            }
            pair.push(f);
        }
        fake.put(fixtures::daemonset_pod(SHOP, "agent", &node));
        fake.put(fixtures::mirror_pod(
            "kube-system",
            &format!("etcd-{node}"),
            &node,
        ));
        let timeout = if rng.below(2) == 0 { 3 } else { 9 };
        let mut vars = remedyd::domain::template::Vars::new();
        vars.insert("target.name".into(), node.clone());
        vars.insert("target.kind".into(), "node".into());
        plan.push(ActionRequest {
            incident: format!("INC-2026-{i:04}"),
            step: "drain".into(),
            action: "kube_drain_node".into(),
            params: json!({"timeout": format!("{timeout}s"), "min_ready_nodes": 2}),
            vars,
        });
        faults.push((Duration::from_secs(timeout), pair));
    }
    let mut f = Figures::new("kubernetes eviction answers");
    let started = Instant::now();
    let mut outcomes: Vec<_> = futures::stream::iter(plan.into_iter().enumerate())
        .map(|(i, req)| {
            let exec = exec.clone();
            async move {
                let t0 = Instant::now();
                let run = tokio::spawn(async move {
                    let e = exec.get(&req.action).expect("registered").clone();
                    e.validate(&req.params).expect("valid params");
                    e.execute(&req).await
                });
                let o = tokio::time::timeout(Duration::from_secs(120), run)
                    .await
                    .unwrap_or_else(|_| panic!("case {i}: no outcome within 120 s"))
                    .unwrap_or_else(|e| panic!("case {i}: the action panicked: {e}"));
                (i, o, t0.elapsed())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    outcomes.sort_by_key(|(i, _, _)| *i);
    let log = fake.requests();
    let (mut hidden, mut evicted, mut blocked, mut failed) = (0, 0, 0, 0);
    let mut overrun = Duration::ZERO;
    for ((i, o, took), (timeout, pair)) in outcomes.into_iter().zip(&faults) {
        let node = format!("ev{i:04}");
        let summary = redact(&o.summary);
        let s = short(&o.summary);
        assert!(one_line(&summary, SUMMARY_CHARS), "case {i}: {s:?}");
        assert!(summary.contains(&node), "case {i}: names {node}: {s:?}");
        assert!(
            !o.summary.contains(char::is_control),
            "case {i}: a control character: {s:?}"
        );
        let detail = redact_json(&o.detail);
        for note in detail["notes"].as_array().into_iter().flatten() {
            let note = note.as_str().unwrap_or_default();
            assert!(
                one_line(note, SUMMARY_CHARS) && !note.contains(char::is_control),
                "case {i}: note {:?}",
                short(note)
            );
        }
        let stored = format!("{summary} {detail}");
        for p in pair.iter().filter_map(|f| f.planted) {
            let secret = SECRETS.iter().find(|(t, _)| *t == p).map_or("", |s| s.1);
            hidden += usize::from(format!("{} {}", o.summary, o.detail).contains(secret));
            assert!(!stored.contains(secret), "case {i}: {secret} kept: {s:?}");
        }
        overrun = overrun.max(took.saturating_sub(*timeout));
        assert!(
            took <= *timeout + MARGIN,
            "case {i}: {took:?} for a drain of timeout {timeout:?}: {s:?}"
        );
        // Each pod's last eviction answer, as the fake server sent it.
        let last: Vec<Option<u16>> = ["a", "b"]
            .iter()
            .map(|x| {
                let path = format!("/api/v1/namespaces/shop/pods/web-{i}-{x}/eviction");
                log.iter()
                    .rev()
                    .find(|r| r.method == "POST" && r.path == path)
                    .map(|r| r.status)
            })
            .collect();
        if o.ok {
            for (x, st) in ["a", "b"].iter().zip(&last) {
                assert!(
                    st.is_some_and(|st| (200..300).contains(&st) || st == 404),
                    "case {i}: drained, yet web-{i}-{x}'s eviction was last answered {st:?}: {s:?}"
                );
            }
        }
        let verdicts: Vec<Verdict> = pair.iter().map(|f| verdict(f, *timeout)).collect();
        let first_failed = verdicts.iter().position(|v| *v == Verdict::Failed);
        let statuses: Vec<u16> = pair.iter().map(|f| f.status).collect();
        if let Some(x) = first_failed {
            // The first failing pod names the failure; a 403 before it may be final too.
            let named = (0..=x).filter(|&y| y == x || statuses[y] == 403).any(|y| {
                let pod = format!("shop/web-{i}-{}", ["a", "b"][y]);
                o.summary
                    .starts_with(&format!("evicting {pod} (node {node} left cordoned): "))
            });
            assert!(
                !o.ok && named,
                "case {i}: statuses {statuses:?}, web-{i}-{} must fail the drain: {s:?}",
                ["a", "b"][x]
            );
            failed += 1;
        } else if verdicts.contains(&Verdict::Blocked) {
            // A 403 without "terminat" in its message is final: a failure, not a block.
            let forbidden = statuses.contains(&403);
            assert!(
                !o.ok
                    && (o
                        .summary
                        .starts_with(&format!("drain of {node} timed out after "))
                        && o.summary.contains("; blocked: ")
                        || forbidden && o.summary.starts_with("evicting ")),
                "case {i}: statuses {statuses:?} must block the drain: {s:?}"
            );
            blocked += 1;
        } else {
            assert!(
                o.ok && o.summary.starts_with(&format!("node/{node} drained: ")),
                "case {i}: statuses {statuses:?}, bodies {:?}: the pods were evicted or gone: {s:?}",
                pair.iter()
                    .map(|f| short(&String::from_utf8_lossy(&f.body)))
                    .collect::<Vec<_>>()
            );
            evicted += 1;
        }
        f.count(o.ok, &summary);
    }
    // Every write: a case's cordon, an eviction of one of its two ReplicaSet pods.
    let allowed: BTreeSet<(String, String)> = (0..n)
        .flat_map(|i| {
            [
                ("PATCH".to_string(), format!("/api/v1/nodes/ev{i:04}")),
                (
                    "POST".to_string(),
                    format!("/api/v1/namespaces/{SHOP}/pods/web-{i}-a/eviction"),
                ),
                (
                    "POST".to_string(),
                    format!("/api/v1/namespaces/{SHOP}/pods/web-{i}-b/eviction"),
                ),
            ]
        })
        .collect();
    let mut posts = 0;
    for r in log
        .iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD" | "OPTIONS"))
    {
        assert!(
            allowed.contains(&(r.method.clone(), r.path.clone())),
            "a write outside the step's target: {} {}",
            r.method,
            short(&r.path)
        );
        posts += usize::from(r.method == "POST");
    }
    for i in 0..n {
        let node = format!("ev{i:04}");
        assert!(
            fake.get("v1", "Pod", SHOP, &format!("agent-{node}"))
                .is_some()
        );
        assert!(
            fake.get("v1", "Pod", "kube-system", &format!("etcd-{node}"))
                .is_some()
        );
    }
    f.report();
    eprintln!(
        "fuzz kubernetes eviction answers: {evicted} drained, {blocked} blocked, {failed} failed; {posts} eviction POSTs; {hidden} planted secrets reached the outcome, all redacted; at most {:.1} s past a timeout; {:.1} s",
        overrun.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        evicted > 3 && blocked > 3 && failed > 3,
        "every verdict: {evicted} / {blocked} / {failed}"
    );
    assert!(hidden > 0, "the redaction must be exercised: {hidden}");
}

/// The seeded cases' findings, each answer as one pod's eviction answer (status, body, the
/// drain's timeout) and the outcome it must give: a prefix of the summary, `{node}` and `{pod}`
/// filled in.
const FOUND: &[(u16, &[u8], u64, &str)] = &[
    // An answer whose Status said 404 was a pod "gone", whatever its status: the drain reported
    // success with a pod's eviction refused (campaign cases 147: a 429, 148: a 504).
    (
        409,
        br#"{"kind":"Status","status":"Failure","reason":"Conflict","message":"the object has been modified","code":404}"#,
        3,
        "evicting {pod} (node {node} left cordoned): 409 Conflict: ",
    ),
    (
        422,
        br#"{"kind":"Status","code":201}"#,
        3,
        "evicting {pod} (node {node} left cordoned): 422 ",
    ),
    // A 404 whose Status has no code (kube read 0), or whose body is not UTF-8 (kube lost the
    // status): a failure, not a pod gone (case 63).
    (
        404,
        br#"{"kind":"Status","status":"Failure","reason":"NotFound","message":"pods \"web\" not found"}"#,
        3,
        "node/{node} drained: 0 pod(s) evicted",
    ),
    (
        404,
        b"{\"message\":\"\xff\xfe\"}",
        3,
        "node/{node} drained: 0 pod(s) evicted",
    ),
    // A 429 with a code-less or non-UTF-8 body was final, not retried until the timeout (case 62);
    // and its blocked pod had an empty reason: an answer without a message is named by its status.
    (
        429,
        b"{}",
        3,
        "drain of {node} timed out after 3s (node left cordoned); blocked: {pod}: 429",
    ),
    // A 302 or a 999 with a JSON body was an eviction, waited for until the deadline (case 16).
    (
        302,
        br#"{"kind":"Status","status":"Success","code":201}"#,
        3,
        "evicting {pod} (node {node} left cordoned): 302 ",
    ),
    // A 999, its status kept, was retried as a 5xx until the timeout.
    (
        999,
        br#"{"kind":"Status","code":999}"#,
        7,
        "evicting {pod} (node {node} left cordoned): 999 ",
    ),
    // Control characters of a message reached the summary and the notes (case 21).
    (
        500,
        b"{\"kind\":\"Status\",\"code\":500,\"message\":\"\\u0000\\u0001\\u001b[31mred\\u007f\"}",
        3,
        "drain of {node} timed out after 3s (node left cordoned); blocked: {pod}: [31mred",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_answer_is_read_by_its_status_not_by_what_its_body_claims() {
    let (fake, _dir, exec) = drain_cluster().await;
    let mut plan = Vec::new();
    for (i, (status, body, timeout, _)) in FOUND.iter().enumerate() {
        let node = format!("found{i}");
        fake.put(fixtures::node(&node));
        let pod = format!("web-found-{i}");
        fake.put(fixtures::pod(
            SHOP,
            &pod,
            &node,
            json!({"app": "web"}),
            Some(("ReplicaSet", "web-rs")),
        ));
        let path = format!("/pods/{pod}/eviction");
        fake.answer_raw(
            "POST",
            &path,
            *status,
            "application/json",
            body.to_vec(),
            100,
        );
        let mut vars = remedyd::domain::template::Vars::new();
        vars.insert("target.name".into(), node);
        plan.push(ActionRequest {
            incident: format!("INC-2026-{i:04}"),
            step: "drain".into(),
            action: "kube_drain_node".into(),
            params: json!({"timeout": format!("{timeout}s"), "min_ready_nodes": 2}),
            vars,
        });
    }
    let outcomes = super::mutate::run_cases(&exec, plan).await;
    for (i, ((status, _, _, want), o)) in FOUND.iter().zip(outcomes).enumerate() {
        let want = want
            .replace("{node}", &format!("found{i}"))
            .replace("{pod}", &format!("{SHOP}/web-found-{i}"));
        assert!(
            o.summary.starts_with(&want) && o.ok == want.starts_with("node/"),
            "answer {i} ({status}): {:?}, not {want:?}",
            o.summary
        );
        assert!(!o.summary.contains(char::is_control), "answer {i}");
    }
}
