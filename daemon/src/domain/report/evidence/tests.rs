//! The evidence text and its cuts: every limit holds and the cut note says where the rest is.

use serde_json::json;

use super::*;
use crate::domain::time::Timestamp;

fn entry(kind: EntryKind, data: Value) -> Entry {
    serde_json::from_value(json!({"at": Timestamp(1_700_000_000_000), "kind": kind.as_str(), "message": "step pod-evidence succeeded", "data": data}))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An evidence step's entry with `lines` log lines of `width` characters (some of them quotes
/// and control characters, which JSON escapes).
fn huge(lines: usize, width: usize) -> Entry {
    let line: String = "é\"\u{1}x".chars().cycle().take(width).collect();
    let log = vec![line; lines].join("\n");
    entry(
        EntryKind::StepOk,
        json!({"summary": "ns/checkout: 3 pod(s), 1 ready", "retryable": false,
               "evidence": {"pods": [{"name": "checkout-1", "restarts": 4, "containers": ["app", "sidecar"]}],
                            "usage": {"checkout-1": {"app": {"cpu_millicores": 250, "memory_mib": 128.5}}},
                            "logs": {"checkout-1": {"app": log}}}}),
    )
}

#[test]
fn evidence_reads_as_path_value_lines_with_logs_indented() {
    let t = text(&[
        entry(EntryKind::StepStarted, json!({"evidence": {"x": 1}})),
        huge(2, 3),
        entry(EntryKind::StepOk, json!({"summary": "restarted"})),
    ]);
    assert!(
        t.starts_with("== 22:13:20 step pod-evidence: ns/checkout: 3 pod(s), 1 ready\n"),
        "{t}"
    );
    assert!(t.contains("pods[0].restarts: 4\n"), "{t}");
    assert!(t.contains("pods[0].containers: [app, sidecar]\n"), "{t}");
    assert!(
        t.contains("usage.checkout-1.app.cpu_millicores: 250\n"),
        "{t}"
    );
    assert!(
        t.contains("usage.checkout-1.app.memory_mib: 128.5\n"),
        "{t}"
    );
    assert!(
        t.contains("logs.checkout-1.app:\n  é\"\u{1}\n  é\"\u{1}\n"),
        "{t}"
    );
    assert!(
        !t.contains("x: 1"),
        "a started step gathered nothing yet: {t}"
    );
    assert_eq!(
        t.matches("== ").count(),
        1,
        "a remediation is no evidence: {t}"
    );
    assert_eq!(text(&[]), "");
}

#[test]
fn a_database_reading_is_evidence_too() {
    let t = text(&[entry(
        EntryKind::StepOk,
        json!({"summary": "database answered", "retryable": false, "roundtrip_ms": 1.5}),
    )]);
    assert!(t.contains("roundtrip_ms: 1.5\n"), "{t}");
    assert!(!t.contains("retryable"), "{t}");
}

#[test]
fn text_that_fits_is_kept_whole() {
    assert_eq!(fit("a\nb\n", 10, Measure::Chars, "L", "R"), "a\nb\n");
    assert_eq!(Measure::JsonBytes.of("a\"\n\u{1}é"), 2 + 1 + 2 + 2 + 6 + 2);
    assert_eq!(
        Measure::JsonBytes.of("a\"\n\u{1}é"),
        serde_json::to_string("a\"\n\u{1}é").unwrap().len()
    );
}

#[test]
fn oversize_evidence_is_cut_within_every_limit_with_the_note_last() {
    let t = text(&[huge(40_000, 40)]);
    assert!(t.chars().count() > 1_000_000);
    let rest = "https://remedyd.example.com/incidents/INC-2026-0042";
    for (max, m) in [
        (PAGERDUTY_EVENT_BYTES / 2, Measure::JsonBytes),
        (OPSGENIE_DESCRIPTION_CHARS, Measure::Chars),
        (OPSGENIE_DETAILS_CHARS, Measure::Chars),
        (OPSGENIE_NOTE_CHARS, Measure::Chars),
        (SLACK_SECTION_CHARS, Measure::Chars),
        (SLACK_TEXT_CHARS, Measure::Chars),
        (100, Measure::Chars),
        (30, Measure::JsonBytes),
    ] {
        let f = fit(&t, max, m, "the limit", rest);
        assert!(m.of(&f) <= max, "{max} {m:?}: {}", m.of(&f));
        if max >= 200 {
            assert!(m.of(&f) > max - 200, "{max} {m:?}: the room is used");
            assert!(f.starts_with("== "), "{max}");
            assert!(
                f.ends_with(&format!("\n… cut to fit the limit; all of it: {rest}")),
                "{max} {m:?}: {}",
                &f[f.len().saturating_sub(200)..]
            );
        }
    }
}

#[test]
fn slack_pieces_hold_every_limit_and_end_with_the_note() {
    let t = text(&[huge(5_000, 70)]);
    let p = pieces(
        &t,
        SLACK_SECTION_CHARS,
        10,
        "Slack's limits",
        "see `remedyd review INC-1`",
    );
    assert_eq!(p.len(), 10);
    for piece in &p {
        assert!(piece.chars().count() <= SLACK_SECTION_CHARS);
        assert!(!piece.is_empty());
    }
    assert!(p[0].starts_with("== "));
    let last = p.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.ends_with("… cut to fit Slack's limits; all of it: see `remedyd review INC-1`"),
        "{last}"
    );
    // Pieces split after whole lines, and what is shown is the text's start in order.
    assert!(p[0].ends_with('\n'));
    let shown: String = p[..9].concat();
    assert!(t.starts_with(&shown));
    let small = pieces("a\nb\n", 3000, 10, "L", "R");
    assert_eq!(small, vec!["a\nb\n".to_string()]);
    assert!(pieces("", 3000, 10, "L", "R").is_empty());
}
