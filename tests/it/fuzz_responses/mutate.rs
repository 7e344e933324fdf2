//! The mutations of `fuzz_responses` (seeded, deterministic) and the loopback server that
//! answers each case as it was set: status, headers and body bytes, whatever they are.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::{HeaderValue, Method, StatusCode, Uri};
use serde_json::{Value, json};

pub(super) use crate::support::fuzz::Rng;

/// Cases per parser: the CI count, or `REMEDYD_FUZZ_CAMPAIGN` when that is more.
pub(super) fn cases(ci: usize) -> usize {
    std::env::var("REMEDYD_FUZZ_CAMPAIGN")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(ci, |n: usize| n.max(ci))
}

/// What one parser's run did.
pub(super) struct Figures {
    name: &'static str,
    pub(super) parsed: usize,
    pub(super) refused: usize,
    messages: BTreeSet<String>,
    started: Instant,
}

impl Figures {
    pub(super) fn new(name: &'static str) -> Self {
        Self {
            name,
            parsed: 0,
            refused: 0,
            messages: BTreeSet::new(),
            started: Instant::now(),
        }
    }
    /// Counts an action's outcome: parsed when it succeeded, else a refusal of its summary.
    pub(super) fn count(&mut self, ok: bool, summary: &str) {
        if ok {
            self.parsed += 1;
        } else {
            self.refused(summary);
        }
    }
    /// Checks case `i`'s action outcome — one line of at most `max_chars` naming `name` — and
    /// counts it.
    pub(super) fn outcome(
        &mut self,
        i: usize,
        o: &remedyd::adapters::action::Outcome,
        max_chars: usize,
        name: &str,
    ) {
        assert!(
            one_line(&o.summary, max_chars),
            "case {i}: {:?}",
            short(&o.summary)
        );
        assert!(
            o.summary.contains(name),
            "case {i}: names {name}: {:?}",
            short(&o.summary)
        );
        self.count(o.ok, &o.summary);
    }
    /// Counts a refusal; its message with numbers blanked (ports, case ids, columns) is one kind.
    pub(super) fn refused(&mut self, m: &str) {
        self.refused += 1;
        let kind: String = m
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(120)
            .collect();
        self.messages.insert(kind);
    }
    pub(super) fn report(&self) {
        if std::env::var_os("REMEDYD_FUZZ_MESSAGES").is_some() {
            for m in &self.messages {
                eprintln!("  {m}");
            }
        }
        eprintln!(
            "fuzz {}: {} cases, {} parsed, {} refused, {} distinct error messages, {:.1} s",
            self.name,
            self.parsed + self.refused,
            self.parsed,
            self.refused,
            self.messages.len(),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Pieces that break JSON structure or types in interesting places.
const TOKENS: &[&str] = &[
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "\"\"",
    "[]",
    "{}",
    "\"\\u0000\"",
    "\"\\ud800\"",
    ",",
    ":",
    "\"99999999999999999999Ei\"",
    "\"-5\"",
    "{\"a\":",
    "]",
    "}",
    "\"é\"",
];

/// Values no service should answer, for a field of any type.
pub(super) fn absurd(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(i64::MAX),
        4 => json!(i64::MIN),
        5 => json!(u64::MAX),
        6 => json!(1e308),
        7 => json!(""),
        8 => json!("x".repeat(100_000)),
        9 => json!("99999999999999999999Ei"),
        10 => json!("-5"),
        11 => json!([]),
        12 => json!({}),
        13 => json!("\u{0}\u{202e}é\n"),
        14 => json!(-2147483649i64),
        _ => {
            let mut v = json!(1);
            for _ in 0..rng.below(300) {
                v = json!([v]);
            }
            v
        }
    }
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                pointers(
                    c,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                pointers(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Field-level changes: a value replaced by an absurd one, a field removed, one added.
pub(super) fn mutate_json(rng: &mut Rng, base: &Value) -> Value {
    let mut v = base.clone();
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        let at = rng.pick(&all).clone();
        let new = absurd(rng);
        match (rng.below(4), at.rsplit_once('/')) {
            (0, Some((parent, key))) => match v.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) if !a.is_empty() => {
                    a.remove(key.parse::<usize>().unwrap_or(0).min(a.len() - 1));
                }
                _ => {}
            },
            (1, _) => {
                if let Some(Value::Object(m)) = v.pointer_mut(&at) {
                    m.insert("extra".into(), new);
                }
            }
            _ => {
                if let Some(slot) = v.pointer_mut(&at) {
                    *slot = new;
                }
            }
        }
    }
    v
}

/// Byte-level changes: flips, cuts, inserted tokens, repeats, truncation, non-UTF-8.
fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.extend_from_slice(b"{}");
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] = rng.next() as u8,
            1 => {
                let end = (at + rng.below(32)).min(b.len());
                b.drain(at..end);
            }
            2 => {
                let t = rng.pick(TOKENS);
                b.splice(at..at, t.bytes());
            }
            3 => b.truncate(at),
            4 => {
                let end = (at + rng.below(64)).min(b.len());
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
            _ => {
                b.splice(at..at, [0xff, 0xfe, 0xc3]);
            }
        }
    }
    b
}

/// A corrupted answer built from `base`: field-level, byte-level, or one of the bodies proxies
/// and broken services send.
pub(super) fn body(rng: &mut Rng, base: &Value) -> Vec<u8> {
    match rng.below(12) {
        0..=4 => serde_json::to_vec(&mutate_json(rng, base)).unwrap_or_default(),
        5..=9 => mutate_bytes(rng, &serde_json::to_vec(base).unwrap_or_default()),
        10 => match rng.below(5) {
            0 => Vec::new(),
            1 => b"  \n".to_vec(),
            2 => b"<html><body><h1>502 Bad Gateway</h1>\n</body></html>".to_vec(),
            3 => vec![b'x'; 1 << 20],
            _ => vec![0xff; 64],
        },
        _ => {
            let depth = 100 + rng.below(20_000);
            let mut b = vec![b'['; depth];
            b.extend(std::iter::repeat_n(b']', rng.below(depth)));
            b
        }
    }
}

pub(super) const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "text/html",
    "application/octet-stream",
    "application/vnd.kubernetes.protobuf",
];

/// One answer of the loopback server.
#[derive(Clone)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, Vec<u8>)>,
    pub(super) body: Vec<u8>,
}

/// Answers by (case, method): the case is the number after `fuzzcase` in the path or query.
pub(super) type Answers = Arc<Mutex<BTreeMap<(usize, String), Answer>>>;

fn case_of(text: &str) -> Option<usize> {
    let rest = &text[text.find("fuzzcase")? + "fuzzcase".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A loopback server answering each case as set in `answers` (404 when unset); its URL.
pub(super) async fn serve(answers: Answers) -> String {
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: String| {
        let answers = answers.clone();
        async move {
            let case = case_of(&uri.to_string()).or_else(|| case_of(&body));
            let a = case.and_then(|c| {
                let all = answers.lock().unwrap();
                all.get(&(c, method.to_string()))
                    .or_else(|| all.get(&(c, "*".to_string())))
                    .cloned()
            });
            let Some(a) = a else {
                return axum::response::Response::builder()
                    .status(404)
                    .body(axum::body::Body::from("no such case"))
                    .unwrap();
            };
            let mut r = axum::response::Response::builder()
                .status(StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK));
            for (k, v) in &a.headers {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    r = r.header(*k, v);
                }
            }
            r.body(axum::body::Body::from(a.body)).unwrap()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

/// The start of a message, for an assertion's text.
pub(super) fn short(m: &str) -> String {
    m.chars().take(300).collect()
}

/// A one-line message of bounded length: what the timeline and the logs can hold.
pub(super) fn one_line(m: &str, max_chars: usize) -> bool {
    !m.is_empty() && !m.contains(['\n', '\r']) && m.chars().count() <= max_chars
}

/// Runs every request on its registered action, 16 at a time, each in its own task under 120 s,
/// and returns the outcomes in case order. A case that hangs or panics fails the test, named.
pub(super) async fn run_cases(
    exec: &remedyd::adapters::action::Executors,
    plan: Vec<remedyd::adapters::action::ActionRequest>,
) -> Vec<remedyd::adapters::action::Outcome> {
    use futures::StreamExt;
    let mut done: Vec<_> = futures::stream::iter(plan.into_iter().enumerate())
        .map(|(i, req)| {
            let exec = exec.clone();
            async move {
                let run = tokio::spawn(async move {
                    let e = exec.get(&req.action).expect("registered").clone();
                    e.validate(&req.params).expect("valid params");
                    e.execute(&req).await
                });
                let o = tokio::time::timeout(std::time::Duration::from_secs(120), run)
                    .await
                    .unwrap_or_else(|_| panic!("case {i}: no outcome within 120 s"))
                    .unwrap_or_else(|e| panic!("case {i}: the action panicked: {e}"));
                (i, o)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, o)| o).collect()
}
