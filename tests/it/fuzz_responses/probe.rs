//! HTTP probe answers (`http_probe` evidence and `verify: {http: …}`): whatever a health
//! endpoint answers — any status, a redirect's `Location`, a body corrupted, huge, not UTF-8, or
//! holding credentials — the report is bounded, the line is one line, and once redacted as the
//! engine does before storing, the planted secrets are gone.

use std::time::Duration;

use remedyd::adapters::action::probe::{BODY_CAP, EXCERPT_CHARS};
use remedyd::adapters::action::{ActionRequest, Executors};
use remedyd::domain::redact::{redact, redact_json};
use remedyd::load::ProbeAllowList;
use serde_json::json;

use super::mutate::{
    Answer, Answers, CONTENT_TYPES, Figures, Rng, body, cases, one_line, serve, short,
};

const STATUSES: &[u16] = &[
    200, 200, 200, 204, 299, 301, 302, 307, 400, 401, 404, 429, 500, 502, 503, 599, 999,
];

/// Secrets a health endpoint might echo (a DSN in a dependency check, a header, a config dump):
/// (what is planted, the value that must never be stored).
pub(super) const SECRETS: &[(&str, &str)] = &[
    ("password=S3CRETpw1234 ", "S3CRETpw1234"),
    (
        "Authorization: Bearer S3CRETbearer1234 ",
        "S3CRETbearer1234",
    ),
    (
        "postgres://app:S3CRETdsn1234@db:5432/shop ",
        "S3CRETdsn1234",
    ),
    ("\"api_key\": \"S3CRETkey1234\", ", "S3CRETkey1234"),
    ("DB_PASSWORD: S3CRETenv1234\n", "S3CRETenv1234"),
];

/// `Location` headers, sane and not.
fn location(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => b"/login".to_vec(),
        1 => b"https://sso.example.com/auth?next=%2Fhealth".to_vec(),
        2 => b"http://admin:S3CRETloc1234@evil.example/".to_vec(),
        3 => format!("/{}", "a".repeat(60_000)).into_bytes(),
        4 => vec![0xff, 0xfe, b'/'],
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_give_a_bounded_one_line_report_without_the_secrets_they_echo() {
    let answers = Answers::default();
    let url = serve(answers.clone()).await;
    let authority = url.trim_start_matches("http://").to_string();
    let allow = ProbeAllowList::parse(&[authority]).expect("allow list");
    let mut exec = Executors::builtin();
    exec.set_probe_allow(allow);
    let probe = exec.get("http_probe").expect("registered").clone();
    let prober = exec.prober();
    let bases = [
        json!({"status": "UP", "components": {"db": {"status": "UP", "details": {"database": "PostgreSQL"}},
            "diskSpace": {"status": "UP", "details": {"total": 1_000_000_000u64, "free": 12345}}}}),
        json!({"status": "DOWN", "checks": [{"name": "redis", "status": "DOWN", "error": "connection refused"}]}),
        json!("OK"),
        json!({"healthy": false, "message": "upstream timeout after 5s"}),
    ];
    let mut rng = Rng(0x0a1e_5eed_0000_0007);
    let mut f = Figures::new("http probe answers");
    // Cases whose raw evidence held a planted secret that redaction then hid.
    let mut hidden = 0;
    for i in 0..cases(500) {
        let status = *rng.pick(STATUSES);
        let base = rng.pick(&bases).clone();
        let mut b = body(&mut rng, &base);
        let mut planted = (rng.below(3) == 0).then(|| *rng.pick(SECRETS));
        if let Some((text, _)) = planted {
            // Within the excerpt, where it would be kept.
            let at = rng.below(b.len().min(EXCERPT_CHARS - 64) + 1);
            b.splice(at..at, text.bytes());
        }
        if i == 2 {
            // Regression (found by a campaign, case 1136): a DSN glued to a digit was kept.
            b = format!("{{0{}}}", SECRETS[2].0).into_bytes();
            planted = Some(SECRETS[2]);
        }
        let served = b.len();
        let mut headers = vec![("content-type", rng.pick(CONTENT_TYPES).as_bytes().to_vec())];
        let mut loc = (rng.below(3) == 0).then(|| location(&mut rng));
        let mut status = status;
        if i == 1 {
            // Regression (found by this test): a 60 000-character `Location` of a redirect made
            // the step's summary as long.
            loc = Some(format!("/{}", "a".repeat(60_000)).into_bytes());
            status = 302;
        }
        if let Some(l) = &loc {
            headers.push(("location", l.clone()));
        }
        answers.lock().unwrap().insert(
            (i, "GET".into()),
            Answer {
                status,
                headers,
                body: b,
            },
        );
        let target = format!("{url}/health/fuzzcase{i}");
        let expect = (rng.below(4) == 0 && status < 600).then_some(status);
        let req = ActionRequest {
            incident: format!("INC-2026-{i:04}"),
            step: "probe".into(),
            action: "http_probe".into(),
            params: json!({"url": target, "timeout": "10s", "expect_status": expect}),
            vars: Default::default(),
        };
        probe.validate(&req.params).expect("valid params");
        let within = Duration::from_secs(30);
        let o = tokio::time::timeout(within, probe.execute(&req))
            .await
            .unwrap_or_else(|_| panic!("case {i}: no outcome within 30 s"));
        // What the engine stores and pages: redacted.
        let summary = redact(&o.summary);
        let detail = redact_json(&o.detail);
        let stored = serde_json::to_string(&detail).unwrap_or_default();
        assert!(
            o.ok,
            "case {i}: evidence reports what it saw: {:?}",
            short(&o.summary)
        );
        assert!(
            summary.starts_with(&format!("GET {target} → ")),
            "case {i}: the line names the URL: {:?}",
            short(&summary)
        );
        assert!(one_line(&summary, 1_000), "case {i}: {:?}", short(&summary));
        assert!(
            stored.len() <= 8 * 1024,
            "case {i}: evidence of {} bytes",
            stored.len()
        );
        let excerpt = detail["body_excerpt"].as_str().unwrap_or_default();
        assert!(excerpt.chars().count() <= EXCERPT_CHARS, "case {i}");
        assert_eq!(detail["status"], json!(status), "case {i}");
        let healthy = expect.map_or((200..300).contains(&status), |s| s == status);
        assert_eq!(detail["healthy"], json!(healthy), "case {i}");
        let raw = format!("{} {}", o.summary, o.detail);
        if let Some((_, secret)) = planted
            && raw.contains(secret)
        {
            hidden += 1;
        }
        for (_, secret) in SECRETS.iter().chain([&("", "S3CRETloc1234")]) {
            assert!(
                !summary.contains(secret) && !stored.contains(secret),
                "case {i}: {secret} kept: {:?} {:?}",
                short(&summary),
                short(&stored)
            );
        }
        // The verify path: the capped body `body_contains` searches.
        let r = tokio::time::timeout(within, prober.get(&target, Duration::from_secs(10)))
            .await
            .unwrap_or_else(|_| panic!("case {i}: no report within 30 s"))
            .unwrap_or_else(|e| panic!("case {i}: an allowed URL was refused: {e}"));
        // A 204 has no body, whatever the server wrote.
        let sent = if status == 204 { 0 } else { served };
        assert_eq!(
            r.body_truncated,
            sent > BODY_CAP,
            "case {i}: {status}, {sent} bytes"
        );
        assert!(r.body.chars().count() <= BODY_CAP, "case {i}");
        assert!(r.body.starts_with(&r.body_excerpt), "case {i}");
        let line = r.line();
        assert!(one_line(&line, 1_000), "case {i}: {:?}", short(&line));
        match r.passes(None, Some("\"status\"")) {
            Ok(()) => f.parsed += 1,
            Err(why) => {
                assert!(one_line(&why, 200), "case {i}: {why:?}");
                f.refused(&why);
            }
        }
    }
    f.report();
    eprintln!(
        "fuzz http probe answers: {hidden} planted secrets reached the raw evidence, all redacted"
    );
    assert!(hidden > 20, "the redaction must be exercised: {hidden}");
    assert!(
        f.parsed > 20 && f.refused > 100,
        "both paths: {} / {}",
        f.parsed,
        f.refused
    );
}
