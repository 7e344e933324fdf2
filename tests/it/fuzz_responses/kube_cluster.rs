//! The API server's answers that `kube_cluster_evidence` reads (the nodes list, the Warning
//! events across namespaces, `/livez?verbose` and `/readyz?verbose`), each corrupted in turn
//! through the fake API server's `answer_raw` switch: the summary stays one line, every string
//! of the evidence is bounded, and a secret an event or a health check echoed is redacted.

use std::time::Duration;

use futures::StreamExt;
use remedyd::adapters::action::{ActionRequest, Executors};
use remedyd::domain::redact::{redact, redact_json};
use serde_json::{Value, json};

use super::kube_reads::longest;
use super::mutate::{CONTENT_TYPES, Figures, Rng, absurd, body, cases, one_line, short};
use super::probe::SECRETS;
use crate::support::fake_kube::{FakeKube, fixtures};

fn node(name: &str, ready: bool) -> Value {
    let mut n = fixtures::node(name);
    n["status"]["conditions"] = json!([
        {"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": "KubeletNotReady"},
        {"type": "MemoryPressure", "status": "False"},
        {"type": "DiskPressure", "status": if ready { "False" } else { "True" }}
    ]);
    n
}

fn warning(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("ev-{i}"), "namespace": "shop"},
        "involvedObject": {"kind": "Pod", "name": format!("web-{i}"), "namespace": "shop"},
        "type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container",
        "count": 3, "lastTimestamp": format!("2026-11-28T10:0{i}:00Z")})
}

/// A verbose health answer, failing or not, corrupted at the byte level sometimes.
fn health_text(rng: &mut Rng, planted: Option<&str>) -> Vec<u8> {
    let mut t = match rng.below(4) {
        0 => "[+]ping ok\n[+]etcd ok\nreadyz check passed\n".to_string(),
        1 => "[+]ping ok\n[-]etcd failed: reason withheld\r\n[-]informer-sync failed\nreadyz check failed\n".into(),
        2 => format!("[-]{} failed\n", "x".repeat(100_000)),
        _ => "\u{0}\u{1b}[31m[-]etcd failed\rnot a line".into(),
    };
    if let Some(s) = planted {
        t.insert_str(0, &format!("[-]etcd failed: {s}\n"));
    }
    let mut b = t.into_bytes();
    if rng.below(4) == 0 {
        b.splice(0..0, [0xff, 0xfe]);
    }
    b
}

/// One case: its number, the path answered, status, content type, body, the secret planted.
type Case = (
    usize,
    &'static str,
    u16,
    String,
    Vec<u8>,
    Option<&'static str>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_cluster_evidence_is_bounded_one_line_and_redacted() {
    // The paths are cluster-wide: one fake API server per lane, the lanes' cases one at a time.
    const LANES: usize = 8;
    let n = cases(48).min(400);
    let mut lanes = Vec::new();
    for _ in 0..LANES {
        let fake = FakeKube::start().await;
        let dir = tempfile::tempdir().unwrap();
        let exec = Executors::builtin_for(Some(fake.kubeconfig(dir.path())));
        fake.put(node("node-1", true));
        fake.put(node("node-2", false));
        for i in 0..3 {
            fake.put(warning(i));
        }
        lanes.push((fake, dir, exec));
    }
    let mut f = Figures::new("kubernetes cluster evidence reads");
    let mut hidden = 0;
    let mut rng = Rng(0x0a1e_5eed_0000_0009);
    // Every case's answer decided up front (a seed replays it), then run lane by lane.
    let mut plan: Vec<Vec<Case>> = vec![Vec::new(); LANES];
    for i in 0..n {
        let status = *rng.pick(&[200, 200, 200, 200, 200, 200, 403, 404, 500]);
        let ct = rng.pick(CONTENT_TYPES).to_string();
        let mut planted = None;
        let (path, bytes) = match rng.below(4) {
            0 => {
                let mut l = json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {},
                    "items": [node("node-1", true), node("node-2", false)]});
                for p in [
                    "/items/1/metadata/name",
                    "/items/1/status/conditions/0/reason",
                    "/items/1/status/conditions/0/status",
                    "/items/1/spec/unschedulable",
                ] {
                    if rng.below(3) == 0
                        && let Some(slot) = l.pointer_mut(p)
                    {
                        *slot = absurd(&mut rng);
                    }
                }
                ("/api/v1/nodes", body(&mut rng, &l))
            }
            1 => {
                let mut l = json!({"kind": "EventList", "apiVersion": "v1", "metadata": {},
                    "items": [warning(0), warning(1)]});
                if rng.below(2) == 0 {
                    let (text, secret) = *rng.pick(SECRETS);
                    l["items"][1]["message"] = json!(format!("probe failed: {text}"));
                    planted = Some(secret);
                    ("/api/v1/events", serde_json::to_vec(&l).unwrap_or_default())
                } else {
                    ("/api/v1/events", body(&mut rng, &l))
                }
            }
            k => {
                let p = (rng.below(2) == 0).then(|| *rng.pick(SECRETS));
                planted = p.map(|s| s.1);
                let path = if k == 2 { "/readyz" } else { "/livez" };
                (path, health_text(&mut rng, p.map(|s| s.0)))
            }
        };
        plan[i % LANES].push((i, path, status, ct, bytes, planted));
    }
    let outcomes = futures::stream::iter(lanes.iter().zip(plan))
        .map(|((fake, _, exec), cases)| async move {
            let e = exec
                .get("kube_cluster_evidence")
                .expect("registered")
                .clone();
            let mut out = Vec::new();
            for (i, path, status, ct, bytes, planted) in cases {
                // Three answers: a read is tried three times when unreadable or a 5xx.
                fake.answer_raw("GET", path, status, &ct, bytes, 3);
                let req = ActionRequest {
                    incident: format!("INC-2026-{i:04}"),
                    step: "cluster".into(),
                    action: "kube_cluster_evidence".into(),
                    params: json!({}),
                    vars: Default::default(),
                };
                e.validate(&req.params).expect("valid params");
                let o = tokio::time::timeout(Duration::from_secs(120), e.execute(&req))
                    .await
                    .unwrap_or_else(|_| panic!("case {i}: no outcome within 120 s"));
                out.push((i, planted, o));
            }
            out
        })
        .buffer_unordered(LANES)
        .collect::<Vec<_>>()
        .await;
    for (i, planted, o) in outcomes.into_iter().flatten() {
        let summary = redact(&o.summary);
        let detail = redact_json(&o.detail);
        let stored = serde_json::to_string(&detail).unwrap_or_default();
        assert!(one_line(&summary, 3_000), "case {i}: {:?}", short(&summary));
        assert!(
            summary.starts_with("cluster: "),
            "case {i}: {:?}",
            short(&summary)
        );
        assert!(
            stored.len() <= 1 << 20,
            "case {i}: {} bytes of evidence",
            stored.len()
        );
        longest(&detail, false, i);
        if let Some(secret) = planted {
            hidden += usize::from(format!("{} {}", o.summary, o.detail).contains(secret));
            assert!(
                !stored.contains(secret) && !summary.contains(secret),
                "case {i}: {secret} kept"
            );
        }
        if summary.contains("failing") || summary.contains("unreadable") {
            f.refused(&summary);
        } else {
            f.parsed += 1;
        }
    }
    f.report();
    eprintln!(
        "fuzz kubernetes cluster evidence reads: {hidden} planted secrets reached the raw evidence, all redacted"
    );
    assert!(hidden > 2, "the redaction must be exercised: {hidden}");
    assert!(
        f.parsed > 5 && f.refused > 5,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}
