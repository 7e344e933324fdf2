//! Mutation fuzzing of every parser of an answer remedyd reads from a service it does not
//! control (the webhook, rules/policies YAML and config TOML are `fuzz_webhook.rs` and
//! `fuzz_config.rs`). A realistic valid answer is corrupted many ways, deterministically (a
//! fixed seed per parser, so a failure reproduces): truncation, bit flips, wrong JSON types,
//! missing and extra fields, huge numbers and strings, deep nesting, non-UTF-8, an empty body, a
//! wrong content type, absurd statuses and `Retry-After` headers. Where the parser sits behind a
//! client, the answer comes over real HTTP from a loopback server (for Kubernetes, the fake API
//! server's `answer_raw` switch); pure parsers are called directly.
//!
//! The parsers, and where the answer is read:
//!
//! | answer | read by | fuzzed here |
//! |---|---|---|
//! | a pager's answer (PagerDuty, Opsgenie, Slack, webhook): status, `Retry-After`, body summary | `adapters/escalate/mod.rs` (`send_request`, `retry_after`, `answer_summary`) | `pager_answers_…` |
//! | Alertmanager's silences API v2: the silence list, one silence, the `silenceID` answer | `adapters/silence.rs` (`send`, `ours`, `renew`, `post_silence`) | `alertmanager_silence_answers_…` |
//! | Prometheus's instant-query answer (vector, scalar, matrix, error) | `adapters/prometheus.rs` (`PromClient::once`, through `prometheus_http_query`) | `prometheus_answers_…` |
//! | the API server's Deployment: `spec.replicas`, container resources | `adapters/action/kubernetes/{session,objects,scale,resources}.rs` | `kubernetes_deployment_answers_…` |
//! | Kubernetes quantities (`250m`, `128Mi`) in the API server's answers | `adapters/action/kubernetes/quantity.rs` (`Quantity::parse`, `grown`) | `kubernetes_quantities_…` |
//! | a Deployment's rollout status and conditions | `adapters/action/kubernetes/rollout.rs` (`rollout_state`) | `kubernetes_rollout_status_…` |
//! | an HTTP probe's status, `Location` and body (`http_probe`, `verify: {http: …}`) | `adapters/action/probe.rs` (`Prober::get`), `http_probe.rs` | `probe::` |
//! | what `kube_evidence` reads: pods, container logs, events, PodMetrics, the Deployment | `adapters/action/kubernetes/{evidence,usage}.rs` | `kube_reads::` |
//! | what `kube_network_evidence` reads: the Service, Endpoints, EndpointSlices, NetworkPolicies, Ingresses | `adapters/action/kubernetes/network.rs` | `kube_reads::kubernetes_network_…` |
//! | what `kube_cluster_evidence` reads: nodes, Warning events, `/livez`, `/readyz` | `adapters/action/kubernetes/infra.rs` | `kube_cluster::` |
//! | what `kube_drain_node` and `kube_delete_pods` decide from: the node, the nodes and pods lists, the Deployment's selector | `adapters/action/kubernetes/{node,delete_pods,objects}.rs` | `kube_writes::` |
//! | the answers to a drain's eviction POSTs: status, `Status` body (its code, message, reason) | `adapters/action/kubernetes/{node,session,error}.rs` | `kube_evict::` |
//!
//! Each test must see no panic (the test process would fail), and each outcome must be a
//! correct parse or one line that names what was wrong; nothing absurd is acted on (a replica
//! count or a resource value outside the step's bounds is never written). Each prints its
//! figures: cases, parsed, refused, distinct error messages, time.
//!
//! CI runs a fixed count; `REMEDYD_FUZZ_CAMPAIGN=<n>` runs `n` cases per parser when that is
//! more (the Kubernetes actions at most 200; a campaign:
//! `REMEDYD_FUZZ_CAMPAIGN=20000 cargo nextest run --test it fuzz_responses:: --no-capture`).

mod kube_cluster;
mod kube_evict;
mod kube_reads;
mod kube_writes;
mod mutate;
mod probe;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use remedyd::adapters::action::kubernetes::quantity::Quantity;
use remedyd::adapters::action::kubernetes::{Rollout, rollout_state};
use remedyd::adapters::action::{ActionRequest, Executors};
use remedyd::adapters::escalate::{NotificationKind, Pager, Pagers, notification, outbox};
use remedyd::adapters::prometheus::{MetricSource, PromClient};
use remedyd::adapters::silence::Alertmanagers;
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::adapters::store::{Commit, Store};
use remedyd::adapters::telemetry::Metrics;
use remedyd::domain::incident::SilenceRef;
use remedyd::domain::policy::{Route, Secret, Transport};
use remedyd::domain::time::{ManualClock, Timestamp};
use remedyd::load::ruleset::Ruleset;
use serde_json::{Value, json};

use self::mutate::{
    Answer, Answers, CONTENT_TYPES, Figures, Rng, absurd, body, cases, mutate_json, one_line,
    serve, short,
};
use crate::support::fake_kube::{FakeKube, fixtures};
use crate::support::story;

const PAGER_STATUSES: &[u16] = &[
    200, 202, 204, 299, 301, 400, 401, 403, 404, 408, 410, 413, 422, 429, 429, 500, 502, 503, 504,
    599, 600, 999,
];

const RETRY_AFTERS: &[&[u8]] = &[
    b"7",
    b"0",
    b" 30 ",
    b"-1",
    b"99999999999",
    b"18446744073709551616",
    b"1e3",
    b"3.5",
    b"Wed, 21 Oct 2015 07:28:00 GMT",
    b"Fri, 31 Dec 9999 23:59:59 GMT",
    b"Sat, 28 Nov 2026 99:99:99 GMT",
    b"soon",
    b"\xff\xfe",
    b"",
];

/// What `Retry-After` must read as when it is a number of seconds.
fn seconds(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

#[tokio::test]
async fn pager_answers_are_delivered_retried_or_final_with_a_one_line_reason_and_no_secret() {
    let answers = Answers::default();
    let url = serve(answers.clone()).await;
    let pagers = Pagers::new();
    let s = story::escalated();
    let n = notification(&s.incident, &s.timeline, NotificationKind::Trigger, "fuzz");
    const KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY12";
    let bases = [
        json!({"status": "success", "message": "Event processed", "dedup_key": "remedyd/INC-2026-0042"}),
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["Length of 'routing_key' is incorrect"]}),
        json!({"result": "Request will be processed", "took": 0.01, "requestId": "43a29c5c"}),
        json!({"message": "Key format is not valid!", "took": 0.0, "requestId": "x"}),
        json!("invalid_payload"),
    ];
    let mut rng = Rng(0x0a9e_5eed_0000_0001);
    let mut f = Figures::new("pager answers");
    for i in 0..cases(1_500) {
        let name = format!("oncall-{}", i % 4);
        let at = format!("{url}/fuzzcase{i}");
        let transport = match i % 4 {
            0 => Transport::PagerDuty {
                url: at,
                routing_key: Some(Secret::new(KEY)),
            },
            1 => Transport::Opsgenie {
                url: at,
                api_key: Some(Secret::new(KEY)),
            },
            2 => Transport::Slack {
                url: Some(Secret::new(format!("{at}/services/{KEY}"))),
            },
            _ => Transport::Webhook {
                url: Some(Secret::new(format!("{at}?token={KEY}"))),
            },
        };
        let route = Route::new(&name, transport, "file x", Duration::from_secs(10));
        let status = *rng.pick(PAGER_STATUSES);
        let base = rng.pick(&bases);
        let mut b = body(&mut rng, base);
        let secret = route.transport.secrets()[0].to_string();
        if rng.below(8) == 0 {
            // The service echoes the route's secret (key or URL): it must never reach the message.
            let at = rng.below(b.len() + 1);
            b.splice(at..at, secret.bytes());
        }
        let ra = (rng.below(3) == 0).then(|| rng.pick(RETRY_AFTERS).to_vec());
        let mut headers = vec![("content-type", rng.pick(CONTENT_TYPES).as_bytes().to_vec())];
        if let Some(ra) = &ra {
            headers.push(("retry-after", ra.clone()));
        }
        answers.lock().unwrap().insert(
            (i, "POST".into()),
            Answer {
                status,
                headers,
                body: b,
            },
        );
        let r = tokio::time::timeout(Duration::from_secs(30), pagers.send(&route, &n))
            .await
            .unwrap_or_else(|_| panic!("case {i}: no outcome within 30 s"));
        answers.lock().unwrap().remove(&(i, "POST".into()));
        match r {
            Ok(delivered) => {
                assert!(
                    (200..300).contains(&status),
                    "case {i}: status {status} delivered"
                );
                assert!(delivered, "case {i}");
                f.parsed += 1;
            }
            Err(e) => {
                assert!(
                    !(200..300).contains(&status),
                    "case {i}: {status} refused: {e}"
                );
                let kind = route.transport.kind();
                let head = format!("route {name} ({kind}): status {status}");
                assert!(e.message.starts_with(&head), "case {i}: {:?}", e.message);
                assert!(
                    one_line(&e.message, head.len() + 2 + 200),
                    "case {i}: {:?}",
                    e.message
                );
                assert!(
                    !e.message.contains(&secret),
                    "case {i}: leaked: {:?}",
                    e.message
                );
                let retryable = (500..600).contains(&status) || status == 429 || status == 408;
                assert_eq!(e.retryable, retryable, "case {i}: status {status}");
                match ra.as_deref().and_then(seconds) {
                    Some(s) => assert_eq!(e.retry_after, Some(Duration::from_secs(s)), "case {i}"),
                    None if ra.as_deref().is_some_and(|v| v.ends_with(b"GMT")) => {}
                    None => assert_eq!(e.retry_after, None, "case {i}: {ra:?}"),
                }
                f.refused(&e.message);
            }
        }
    }
    f.report();
    assert!(
        f.parsed > 50 && f.refused > 500,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_at_five_minutes_by_the_outbox() {
    let answers = Answers::default();
    let url = serve(answers.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
    let pagers = Pagers::new();
    let metrics = Metrics::new();
    let s = story::escalated();
    let n = notification(&s.incident, &s.timeline, NotificationKind::Trigger, "fuzz");
    const CAP: Duration = Duration::from_secs(300);
    for (i, ra) in RETRY_AFTERS.iter().enumerate() {
        let mut rs = Ruleset::default();
        let hook = Transport::Webhook {
            url: Some(Secret::new(format!("{url}/fuzzcase{i}"))),
        };
        let route = Route::new("hook", hook, "url", Duration::from_secs(10));
        rs.routes.insert("hook".into(), route);
        let shared = Arc::new(RwLock::new(Arc::new(rs)));
        let t0 = story::at(i as i64 * 3_600);
        let clock = ManualClock::new(t0);
        let answer = Answer {
            status: 429,
            headers: vec![("retry-after", ra.to_vec())],
            body: b"rate limited".to_vec(),
        };
        answers.lock().unwrap().insert((i, "POST".into()), answer);
        let mut c = Commit::default();
        c.outbox.push(("hook".into(), n.clone()));
        store.commit(c).await.unwrap();
        outbox::deliver_due(&store, &pagers, &shared, &clock, &metrics)
            .await
            .unwrap();
        assert_eq!(
            store.outbox_depth().await.unwrap(),
            1,
            "{ra:?}: kept for a retry"
        );
        let due = |after: Duration| store.outbox_due(t0.plus(after), 10);
        assert_eq!(
            due(CAP).await.unwrap().len(),
            1,
            "{ra:?}: due again within 5 min"
        );
        if let Some(s) = seconds(ra).filter(|s| (1..300).contains(s)) {
            let early = due(Duration::from_secs(s - 1)).await.unwrap();
            assert!(early.is_empty(), "{ra:?}: Retry-After is honoured");
        }
        // Done with it: delivered on the next try.
        answers.lock().unwrap().insert(
            (i, "POST".into()),
            Answer {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            },
        );
        clock.advance(CAP);
        outbox::deliver_due(&store, &pagers, &shared, &clock, &metrics)
            .await
            .unwrap();
        assert_eq!(store.outbox_depth().await.unwrap(), 0, "{ra:?}");
    }
}

/// A silence as `GET /api/v2/silences` lists it.
fn silence(id: &str, by: &str, state: &str, comment: &str) -> Value {
    json!({
        "id": id, "status": {"state": state}, "updatedAt": "2026-11-28T10:00:00.000Z",
        "comment": comment, "createdBy": by,
        "startsAt": "2026-11-28T10:00:00.000Z", "endsAt": "2026-11-28T11:00:00.000Z",
        "matchers": [{"name": "alertname", "value": "HighErrorRate", "isRegex": false, "isEqual": true},
                     {"name": "service", "value": "checkout", "isRegex": false, "isEqual": true}]
    })
}

const SILENCE_ID: &str = "3c8e2f4a-0b1c-4d2e-9f3a-5b6c7d8e9f01";
const OURS: &str = "remedyd incident INC-2026-0042: remedyd is remediating shop/checkout (rule r)";

fn silence_answer(rng: &mut Rng, base: &Value) -> Answer {
    let status = *rng.pick(&[200, 200, 200, 200, 200, 400, 404, 500, 503]);
    Answer {
        status,
        headers: vec![("content-type", rng.pick(CONTENT_TYPES).as_bytes().to_vec())],
        body: body(rng, base),
    }
}

fn silence_id_ok(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[tokio::test]
async fn alertmanager_silence_answers_give_valid_ids_or_an_error_naming_the_request() {
    let answers = Answers::default();
    let url = serve(answers.clone()).await;
    let list = json!([
        silence(SILENCE_ID, "remedyd", "active", OURS),
        silence(
            "a1b2c3d4-0000-4000-8000-000000000002",
            "alice",
            "active",
            "deploy freeze"
        ),
        silence(
            "a1b2c3d4-0000-4000-8000-000000000003",
            "remedyd",
            "expired",
            OURS
        ),
    ]);
    let one = silence(SILENCE_ID, "remedyd", "active", OURS);
    let created = json!({"silenceID": "7f0e2a4b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"});
    let mut rng = Rng(0x0a1e_5eed_0000_0002);
    let mut f = Figures::new("alertmanager silences");
    // A client per case (the case is in its URL); building one costs ~30 ms: 400 in CI.
    for i in 0..cases(400) {
        let base = format!("{url}/fuzzcase{i}");
        let am = Alertmanagers::new(std::slice::from_ref(&base), None).unwrap();
        let within = Duration::from_secs(30);
        let outcome = if i % 2 == 0 {
            let a = silence_answer(&mut rng, &list);
            answers.lock().unwrap().insert((i, "GET".into()), a);
            let r = tokio::time::timeout(within, am.ours())
                .await
                .expect("bounded");
            r.map(|found| {
                for (id, incident) in &found {
                    assert!(
                        silence_id_ok(id),
                        "case {i}: id {id:?} taken from the answer"
                    );
                    assert!(!incident.is_empty(), "case {i}");
                }
            })
        } else {
            let (g, p) = (
                silence_answer(&mut rng, &one),
                silence_answer(&mut rng, &created),
            );
            answers.lock().unwrap().insert((i, "GET".into()), g);
            answers.lock().unwrap().insert((i, "POST".into()), p);
            let r = SilenceRef {
                fingerprint: "f1".into(),
                id: SILENCE_ID.into(),
                url: base.clone(),
            };
            let ends = Timestamp(1_764_330_000_000);
            let r = tokio::time::timeout(within, am.renew(&[r], ends))
                .await
                .expect("bounded");
            r.map(|refs| {
                assert_eq!(refs.len(), 1, "case {i}");
                assert!(silence_id_ok(&refs[0].id), "case {i}: {:?}", refs[0].id);
            })
        };
        answers.lock().unwrap().retain(|(c, _), _| *c != i);
        match outcome {
            Ok(()) => f.parsed += 1,
            Err(m) => {
                let named = m.starts_with(&format!("GET {base}/api/v2/silence"))
                    || m.starts_with(&format!("POST {base}/api/v2/silences"));
                assert!(named, "case {i}: the error must name the request: {m:?}");
                assert!(one_line(&m, 600), "case {i}: {:?}", short(&m));
                f.refused(&m);
            }
        }
    }
    f.report();
    assert!(
        f.parsed > 30 && f.refused > 100,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_answers_give_samples_or_an_unavailable_or_rejected_query() {
    let answers = Answers::default();
    let url = serve(answers.clone()).await;
    let client = Arc::new(PromClient::new(&url, Arc::new(Metrics::new())).unwrap());
    let bases = [
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "api", "instance": "a:9090"}, "value": [1764320400.123, "1"]},
            {"metric": {"job": "db"}, "value": [1764320400.123, "NaN"]}]}}),
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1764320400.123, "0.5"]}}),
        json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"job": "api"}, "values": [[1764320400, "1"], [1764320415, "+Inf"]]}]}}),
        json!({"status": "error", "errorType": "bad_data", "error": "1:1: parse error: unexpected end of input"}),
    ];
    let mut rng = Rng(0x0a1e_5eed_0000_0003);
    // Sample values as Prometheus writes them, and some it does not.
    let values = [
        "1", "0.25", "NaN", "+Inf", "-Inf", "-0", "1e308", "1e999", "", "0x10", "x", "\u{0}",
    ];
    let n = cases(300);
    for i in 0..n {
        if i % 4 == 0 {
            // A well-formed answer with one value of the list: the sample's value is read.
            let v = *rng.pick(&values);
            let body = json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"job": "api"}, "value": [1764320400.123, v]}]}});
            let a = Answer {
                status: 200,
                headers: vec![("content-type", b"application/json".to_vec())],
                body: serde_json::to_vec(&body).unwrap_or_default(),
            };
            answers.lock().unwrap().insert((i, "*".into()), a);
            continue;
        }
        let base = rng.pick(&bases);
        // Mostly JSON: the client refuses any other media type before reading the body.
        let ct = match rng.below(4) {
            0 => rng.pick(CONTENT_TYPES),
            _ => "application/json",
        };
        let a = Answer {
            status: *rng.pick(&[200, 200, 200, 200, 200, 200, 400, 422, 500, 503]),
            headers: vec![("content-type", ct.as_bytes().to_vec())],
            body: body(&mut rng, base),
        };
        answers.lock().unwrap().insert((i, "*".into()), a);
    }
    // Regression (found by a campaign): an error of 100 000 characters was the whole message.
    let huge = json!({"status": "error", "errorType": "bad_data", "error": "x".repeat(100_000)});
    let a = Answer {
        status: 400,
        headers: vec![("content-type", b"application/json".to_vec())],
        body: serde_json::to_vec(&huge).unwrap_or_default(),
    };
    answers.lock().unwrap().insert((1, "*".into()), a);
    let mut f = Figures::new("prometheus answers");
    // Unreadable answers are retried twice (200 ms, 400 ms): 32 queries at once keep that short.
    let mut runs = futures::stream::iter(0..n)
        .map(|i| {
            let c = client.clone();
            async move {
                let q = tokio::spawn(async move {
                    let promql = format!("fuzzcase{i}");
                    c.query(&promql).await
                });
                (i, tokio::time::timeout(Duration::from_secs(60), q).await)
            }
        })
        .buffer_unordered(32);
    while let Some((i, r)) = runs.next().await {
        let r = r
            .unwrap_or_else(|_| panic!("case {i}: no outcome within 60 s"))
            .unwrap_or_else(|e| panic!("case {i}: the query panicked: {e}"));
        match r {
            Ok(samples) => {
                for s in &samples {
                    assert!(!s.labels.contains_key("__name__"), "case {i}: {s:?}");
                }
                if i % 4 == 0 {
                    assert_eq!(samples.len(), 1, "case {i}: {samples:?}");
                }
                f.parsed += 1;
            }
            Err(e) => {
                let m = e.to_string();
                let named =
                    m.starts_with("prometheus unavailable: ") || m.starts_with("query rejected: ");
                assert!(named && one_line(&m, 400), "case {i}: {:?}", short(&m));
                f.refused(&m);
            }
        }
    }
    f.report();
    assert!(
        f.parsed > 10 && f.refused > 100,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}

const NS: &str = "python-services";

/// Quantities in the spellings the API server answers, and some no server should.
const QUANTITIES: &[&str] = &[
    "250m",
    "1",
    "0.5",
    "128Mi",
    "1Gi",
    "2G",
    "1e3",
    "100k",
    "512Ki",
    "3Ei",
    "99999999999999999999Ei",
    "99999999999999999999.999999999e18",
    "170141183460469231731687303715884105727m",
    "-1",
    "0.0000000001",
    "1e19",
    "",
];

/// A Deployment as the API server might answer it: the stored one, corrupted, with the fields
/// the actions compute from (`spec.replicas`, a container's resources) hit often.
fn deployment_answer(rng: &mut Rng, d: &Value) -> Vec<u8> {
    let mut d = d.clone();
    match rng.below(6) {
        0 => d["spec"]["replicas"] = absurd(rng),
        1 => {
            let cpu = match rng.below(2) {
                0 => json!(rng.pick(QUANTITIES)),
                _ => absurd(rng),
            };
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = cpu;
        }
        _ => return body(rng, &d),
    }
    serde_json::to_vec(&d).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_deployment_answers_never_write_a_value_outside_the_steps_bounds() {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().unwrap();
    let exec = Arc::new(Executors::builtin_for(Some(fake.kubeconfig(dir.path()))));
    // Each case is a Deployment of its own the controller steps: a campaign stops at 200.
    let n = cases(40).min(200);
    let mut rng = Rng(0x0a1e_5eed_0000_0004);
    for i in 0..n {
        let name = format!("d{i:05}");
        fake.put(fixtures::deployment(NS, &name, 3, "registry.local/web:1.0"));
    }
    fake.step();
    fake.step();
    fake.auto_step(Duration::from_millis(50));
    let mut reqs = Vec::new();
    for i in 0..n {
        let name = format!("d{i:05}");
        let stored = fake.get("apps/v1", "Deployment", NS, &name).unwrap();
        let status = *rng.pick(&[200, 200, 200, 200, 200, 200, 200, 403, 404, 409, 500]);
        let ct = rng.pick(CONTENT_TYPES);
        let bytes = deployment_answer(&mut rng, &stored);
        // Three answers: a read is tried three times when the answer is unreadable or a 5xx.
        fake.answer_raw("GET", &format!("/deployments/{name}"), status, ct, bytes, 3);
        let (action, params) = if i % 2 == 0 {
            (
                "kube_scale",
                json!({"by": 1, "min": 1, "max": 10, "wait": "60s"}),
            )
        } else {
            let r = json!({"containers": ["app"], "requests": {"cpu": "+50%"}, "max": {"cpu": "4"}, "wait": "60s"});
            ("kube_set_resources", r)
        };
        let mut vars = remedyd::domain::template::Vars::new();
        vars.insert("target.namespace".into(), NS.into());
        vars.insert("target.name".into(), name.clone());
        vars.insert("target.kind".into(), "deployment".into());
        reqs.push(ActionRequest {
            incident: format!("INC-2026-{i:04}"),
            step: "s".into(),
            action: action.into(),
            params,
            vars,
        });
    }
    let mut f = Figures::new("kubernetes deployment answers");
    for (i, o) in mutate::run_cases(&exec, reqs).await.into_iter().enumerate() {
        let name = format!("d{i:05}");
        assert!(
            one_line(&o.summary, 1_000),
            "case {i}: {:?}",
            short(&o.summary)
        );
        // The Deployment, or (a resources refusal) the container of it, is named.
        let named = o.summary.contains(&name) || o.summary.starts_with("app: ");
        assert!(named, "case {i}: {:?}", short(&o.summary));
        f.count(o.ok, &o.summary);
    }
    // Whatever was read, what was written stays within the step's bounds.
    let mut writes = 0;
    for r in fake.requests().iter().filter(|r| r.method == "PATCH") {
        writes += 1;
        let b = r.body.clone().unwrap_or_default();
        if r.path.ends_with("/scale") {
            let want = b["spec"]["replicas"].as_i64();
            assert!(
                want.is_some_and(|n| (1..=10).contains(&n)),
                "{} {b}",
                r.path
            );
        } else {
            for c in b["spec"]["template"]["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for kind in ["requests", "limits"] {
                    if let Some(cpu) = c["resources"][kind]["cpu"].as_str() {
                        let q = Quantity::parse(cpu).unwrap_or_else(|e| panic!("{} {e}", r.path));
                        assert!(q.milli <= 4_000, "{} {b}", r.path);
                    }
                }
            }
        }
    }
    f.report();
    eprintln!("fuzz kubernetes deployment answers: {writes} writes, all within bounds");
    // Both paths ran. How many cases parse depends on the machine as well as the seed: on a
    // loaded machine a case's reads can overrun the step's deadline (refused); 5 to 10 of 40
    // parsed were seen on the same seed.
    assert!(
        f.parsed >= 2 && f.refused > 20,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
    assert!(writes > 5, "some answers must lead to a write: {writes}");
}

#[test]
fn kubernetes_quantities_parse_exactly_or_name_the_value() {
    let tokens: &[&str] = &[
        "9",
        "99999999999999999999",
        ".",
        "+",
        "-",
        "e",
        "E",
        "18",
        "Ei",
        "Mi",
        "m",
        "k",
        " ",
        "\u{0}",
        "é",
        "0",
    ];
    let mut rng = Rng(0x0a1e_5eed_0000_0005);
    let mut f = Figures::new("kubernetes quantities");
    for i in 0..cases(50_000) {
        let mut q: Vec<u8> = rng.pick(QUANTITIES).as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(q.len() + 1);
            match rng.below(3) {
                0 => {
                    let t = rng.pick(tokens);
                    q.splice(at..at, t.bytes());
                }
                1 => q.truncate(at),
                _ => {
                    let end = (at + rng.below(4)).min(q.len());
                    q.drain(at..end);
                }
            }
        }
        let q = String::from_utf8_lossy(&q).into_owned();
        match Quantity::parse(&q) {
            Ok(v) => {
                assert!(v.milli >= 0, "case {i}: {q:?} -> {v:?}");
                let back = Quantity::parse(&v.canonical());
                assert_eq!(back.map(|b| b.milli), Ok(v.milli), "case {i}: {q:?} -> {v}");
                assert!(v.grown(400).milli >= v.milli, "case {i}: {q:?}");
                f.parsed += 1;
            }
            Err(m) => {
                assert!(
                    m.contains(&format!("{:?}", q.trim())) && one_line(&m, 400),
                    "case {i}: {m:?}"
                );
                f.refused(&m);
            }
        }
    }
    f.report();
    assert!(
        f.parsed > 1_000 && f.refused > 1_000,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}

#[test]
fn kubernetes_rollout_status_is_read_without_panic_and_done_only_when_counts_say_so() {
    let d = fixtures::deployment(NS, "web", 3, "registry.local/web:1.0");
    let mut rolled = d.clone();
    rolled["metadata"]["generation"] = json!(2);
    rolled["status"] = json!({
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
        "availableReplicas": 3,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                       {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]
    });
    assert!(matches!(rollout_state(&rolled), Rollout::Done(_)));
    // Regression: `replicas - updated` overflowed on counts no API server gives.
    let mut absurd_counts = rolled.clone();
    absurd_counts["status"]["replicas"] = json!(i64::MAX);
    absurd_counts["status"]["updatedReplicas"] = json!(-1);
    absurd_counts["spec"]["replicas"] = json!(-1);
    assert!(matches!(rollout_state(&absurd_counts), Rollout::Waiting(_)));
    let mut rng = Rng(0x0a1e_5eed_0000_0006);
    let mut f = Figures::new("kubernetes rollout status");
    for i in 0..cases(5_000) {
        let v = mutate_json(&mut rng, &rolled);
        match rollout_state(&v) {
            Rollout::Done(m) => {
                let n = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
                if let Some(want) = v.pointer("/spec/replicas").and_then(Value::as_i64) {
                    assert!(n("/status/updatedReplicas") >= want, "case {i}: {m}");
                }
                assert!(
                    n("/status/availableReplicas") >= n("/status/updatedReplicas"),
                    "case {i}"
                );
                f.parsed += 1;
            }
            Rollout::Waiting(m) | Rollout::Failed(m) => {
                // One line; its length follows the Deployment's name (quoted as read).
                assert!(one_line(&m, usize::MAX), "case {i}: {m:?}");
                f.refused(&m);
            }
        }
    }
    f.report();
    assert!(
        f.parsed > 1_000 && f.refused > 100,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}
