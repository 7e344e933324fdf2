//! Mutation fuzzing of the webhook parser, the one parser of untrusted input, run in every test
//! pass: real Alertmanager bodies are corrupted thousands of ways (deterministically, so a
//! failure reproduces). The parser must never panic; a refusal must be one line that names the
//! field; an acceptance must be a well-formed set of signals.
//! Deterministic (a fixed seed), so it runs in CI on the stable toolchain; coverage-guided
//! fuzzing (cargo-fuzz/libFuzzer) needs a nightly toolchain, which these machines do not have.

use remedyd::adapters::intake::alertmanager;
use remedyd::domain::time::Timestamp;

use crate::support::fuzz::Rng;

const TOKENS: &[&str] = &[
    "null",
    "true",
    "-1",
    "1e999",
    "\"\"",
    "[]",
    "{}",
    "\"\\u0000\"",
    "\"\\ud800\"",
    ",",
    ":",
    "\"firing\"",
    "\"resolved\"",
    "\"0001-01-01T00:00:00Z\"",
    "\"2026-13-45T99:99:99Z\"",
    "18446744073709551616",
    "\"4\"",
    "\"x\"",
    "{\"a\":",
    "]",
    "}",
    "\"é\"",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
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
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.bytes());
            }
            3 => b.truncate(at),
            4 => {
                let end = (at + rng.below(64)).min(b.len());
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
            _ => {
                // Replace a quoted value with a token: wrong types in the right places.
                if let Some(q) = b[at..].iter().position(|c| *c == b'"') {
                    let s = at + q;
                    if let Some(e) = b[s + 1..].iter().position(|c| *c == b'"') {
                        let t = TOKENS[rng.below(TOKENS.len())];
                        b.splice(s..s + e + 2, t.bytes());
                    }
                }
            }
        }
    }
    b
}

fn check(body: &[u8]) -> Result<(), String> {
    match std::panic::catch_unwind(|| alertmanager::parse(body, Timestamp(0))) {
        Err(_) => Err("parser panicked".into()),
        Ok(Ok((receipt, signals))) => {
            if receipt.alerts != signals.len() {
                return Err("receipt count differs from the signals".into());
            }
            if signals.iter().any(|s| s.fingerprint.is_empty()) {
                return Err("accepted an alert without a fingerprint".into());
            }
            Ok(())
        }
        Ok(Err(e)) => {
            let m = e.0;
            let named = ["body:", "version:", "status:", "alerts"]
                .iter()
                .any(|p| m.starts_with(p))
                || m.split(':')
                    .next()
                    .is_some_and(|f| !f.is_empty() && !f.contains(' '));
            if m.contains('\n') || !named {
                return Err(format!("refusal does not name a field on one line: {m:?}"));
            }
            Ok(())
        }
    }
}

#[test]
fn corrupted_alertmanager_bodies_never_panic_and_refusals_name_the_field() {
    let dir = format!("{}/tests/fixtures/alertmanager", env!("CARGO_MANIFEST_DIR"));
    let mut fixtures: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 3);
    let mut rng = Rng(0x005e_ed0f_ca11_ab1e);
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..30_000 {
        let base = &fixtures[i % fixtures.len()];
        let body = mutate(&mut rng, base);
        if let Err(e) = check(&body) {
            panic!(
                "iteration {i}: {e}\nbody: {}",
                String::from_utf8_lossy(&body)
            );
        }
        match alertmanager::parse(&body, Timestamp(0)) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    // The mutations must exercise both paths, or the test proves little.
    assert!(
        accepted > 1_000 && refused > 1_000,
        "accepted {accepted}, refused {refused}"
    );
}
