//! Bounds on what the evidence readers keep of the API server's answers: its strings (names,
//! reasons, event messages) can be any length and any shape in a corrupt or hostile answer,
//! and the evidence goes to the store, the timeline and the pages.

use serde_json::{Map, Value};

use crate::domain::notification::truncate;

/// Characters kept of any string of an answer (a name is at most 253, a message a sentence).
pub const FIELD_CHARS: usize = 1_000;
/// Characters kept of one container's log: the end, where a crash's last words are (50 lines of
/// 300 characters; `log_lines` asks for at most 500 lines, a line can be any length).
pub const LOG_CHARS: usize = 16 * 1024;
/// Items kept of an array, entries of an object, levels of nesting.
const ITEMS: usize = 50;
const DEPTH: usize = 8;

/// `v` with every string cut to [`FIELD_CHARS`], arrays and objects to their first 50 items,
/// and anything nested deeper than 8 levels replaced by `"…"`.
pub fn clip(v: &Value) -> Value {
    clip_at(v, 0)
}

fn clip_at(v: &Value, depth: usize) -> Value {
    if depth > DEPTH {
        return Value::String("…".into());
    }
    match v {
        Value::String(s) => Value::String(truncate(s, FIELD_CHARS)),
        Value::Array(a) => Value::Array(
            a.iter()
                .take(ITEMS)
                .map(|x| clip_at(x, depth + 1))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .take(ITEMS)
                .map(|(k, x)| (truncate(k, FIELD_CHARS), clip_at(x, depth + 1)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

/// A string of an answer for a one-line summary: control characters (newlines included) as
/// spaces, at most `max` characters.
pub fn inline(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&s, max)
}

/// The last [`LOG_CHARS`] characters of a log, after `…` when cut.
pub fn log_tail(text: &str) -> String {
    let n = text.chars().count();
    if n <= LOG_CHARS {
        return text.to_string();
    }
    let mut out = String::from("…");
    out.extend(text.chars().skip(n - (LOG_CHARS - 1)));
    out
}

/// Whether `s` can be put in a request path as a pod or container name: a DNS-1123 subdomain
/// (lowercase letters, digits, `-` and `.`, at most 253 characters). Anything else in an answer
/// is not the API server's and must not steer a request elsewhere (`../secrets/x`).
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_lists_and_nesting_of_an_answer_are_cut() {
        let mut deep = json!(1);
        for _ in 0..300 {
            deep = json!([deep]);
        }
        let v = json!({"name": "x".repeat(100_000), "items": (0..500).collect::<Vec<_>>(), "deep": deep});
        let c = clip(&v);
        assert_eq!(
            c["name"].as_str().map(|s| s.chars().count()),
            Some(FIELD_CHARS)
        );
        assert_eq!(c["items"].as_array().map(Vec::len), Some(ITEMS));
        assert!(c.to_string().len() < 4 * FIELD_CHARS, "{c}");
        assert_eq!(clip(&json!({"ok": "web-1"})), json!({"ok": "web-1"}));
    }

    #[test]
    fn a_log_keeps_its_end_and_a_summary_piece_is_one_line() {
        let log = format!("{}\npanic: boom", "x".repeat(100_000));
        let t = log_tail(&log);
        assert_eq!(t.chars().count(), LOG_CHARS);
        assert!(t.starts_with('…') && t.ends_with("panic: boom"));
        assert_eq!(log_tail("short"), "short");
        assert_eq!(inline("Crash\nLoop\u{1b}[31m", 100), "Crash Loop [31m");
        assert_eq!(inline(&"x".repeat(500), 63).chars().count(), 63);
    }

    #[test]
    fn only_kubernetes_names_go_into_a_request_path() {
        assert!(is_name("web-7d9f-abcde") && is_name("main") && is_name("a.b"));
        for bad in [
            "",
            "../secrets/db",
            "web/../x",
            "Web",
            "a b",
            "x?y",
            "-a",
            &"a".repeat(254),
        ] {
            assert!(!is_name(bad), "{bad:?}");
        }
    }
}
