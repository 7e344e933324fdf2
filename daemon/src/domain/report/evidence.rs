//! The evidence an incident gathered (pod states, logs, events, usage, database state: what its
//! evidence steps read) as text a page can carry, cut to each service's documented size limits
//! with a last line saying where the rest is (the incident's page, or `remedyd review ID`).
//!
//! The limits, from each API's documentation: PagerDuty Events API v2, 512 KB per event;
//! Opsgenie, 15 000 characters of description, 8 000 characters of `details` (keys and values
//! together), 25 000 characters per note; Slack, 50 blocks per message, 3 000 characters per
//! section text, 40 000 characters of message text.

use serde_json::Value;

use crate::domain::incident::{Entry, EntryKind};
use crate::domain::report::narrative::step_of;

/// PagerDuty Events API v2: the whole event, in bytes of JSON.
pub const PAGERDUTY_EVENT_BYTES: usize = 512 * 1024;
/// Opsgenie: an alert's `description`, in characters.
pub const OPSGENIE_DESCRIPTION_CHARS: usize = 15_000;
/// Opsgenie: an alert's `details`, every key and value together, in characters.
pub const OPSGENIE_DETAILS_CHARS: usize = 8_000;
/// Opsgenie: a note (given on create, on close, or added), in characters.
pub const OPSGENIE_NOTE_CHARS: usize = 25_000;
/// Slack: blocks in one message.
pub const SLACK_BLOCKS: usize = 50;
/// Slack: the text of one section block, in characters.
pub const SLACK_SECTION_CHARS: usize = 3_000;
/// Slack: a message's top-level `text`, in characters.
pub const SLACK_TEXT_CHARS: usize = 40_000;

/// How a service counts a text's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Unicode characters (Opsgenie, Slack).
    Chars,
    /// Bytes of the text as a JSON string, quotes and escapes included (PagerDuty's limit is on
    /// the JSON body).
    JsonBytes,
}

impl Measure {
    /// The size of `s`.
    pub fn of(self, s: &str) -> usize {
        match self {
            Measure::Chars => s.chars().count(),
            Measure::JsonBytes => json_len(s),
        }
    }
}

/// Length of `s` as a JSON string literal (serde_json's escaping).
fn json_len(s: &str) -> usize {
    2 + s.chars().map(json_char_len).sum::<usize>()
}

/// Bytes of one character inside a JSON string.
fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0C}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The evidence in an incident's timeline, as text: for each step that gathered evidence, a
/// heading line (`== 10:00:05 step pod-evidence: …summary`) then one `path: value` line per
/// reading, multi-line values (logs) indented below their path. Empty when no step gathered any.
///
/// A step gathered evidence when its result entry carries an `evidence` object (the Kubernetes
/// reads) or is a database reading (`roundtrip_ms`).
pub fn text(history: &[Entry]) -> String {
    let mut out = String::new();
    for e in history {
        if !matches!(e.kind, EntryKind::StepOk | EntryKind::StepFailed) {
            continue;
        }
        let readings = match (e.data.get("evidence"), e.data.get("roundtrip_ms")) {
            (Some(ev), _) if !ev.is_null() => ev.clone(),
            (_, Some(_)) => {
                let mut d = e.data.clone();
                if let Some(m) = d.as_object_mut() {
                    m.remove("summary");
                    m.remove("retryable");
                }
                d
            }
            _ => continue,
        };
        let step = step_of(e).unwrap_or_default();
        let summary = e.data.get("summary").and_then(Value::as_str).unwrap_or("");
        out.push_str(&format!("== {} step {step}: {summary}\n", e.at.hms()));
        flatten("", &readings, &mut out);
    }
    out
}

fn flatten(path: &str, v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let items: Vec<String> = a.iter().map(scalar).collect();
            out.push_str(&format!("{path}: [{}]\n", items.join(", ")));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), x, out);
            }
        }
        Value::String(s) if s.contains('\n') => {
            out.push_str(&format!("{path}:\n"));
            for l in s.lines() {
                out.push_str(&format!("  {l}\n"));
            }
        }
        v => out.push_str(&format!("{path}: {}\n", scalar(v))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The note that ends a cut text.
pub fn cut_note(limit: &str, rest: &str) -> String {
    format!("… cut to fit {limit}; all of it: {rest}")
}

/// The byte index where `text` is cut so that it measures at most `max`: after the last whole
/// line that fits when one ends in the second half of what fits, else at the last character that
/// fits.
fn cut_at(text: &str, max: usize, m: Measure) -> usize {
    // One pass, adding each character's size (a JSON string's quotes counted first).
    let mut size = match m {
        Measure::Chars => 0,
        Measure::JsonBytes => 2,
    };
    let mut end = 0;
    for (i, c) in text.char_indices() {
        size += match m {
            Measure::Chars => 1,
            Measure::JsonBytes => json_char_len(c),
        };
        if size > max {
            break;
        }
        end = i + c.len_utf8();
    }
    match text[..end].rfind('\n') {
        Some(nl) if nl + 1 >= end / 2 => nl + 1,
        _ => end,
    }
}

/// `text` whole when it measures at most `max`; else its start, then the line
/// [`cut_note`]`(limit, rest)`, together at most `max`. When not even the note fits, the note
/// cut to `max`.
pub fn fit(text: &str, max: usize, m: Measure, limit: &str, rest: &str) -> String {
    if m.of(text) <= max {
        return text.to_string();
    }
    let note = cut_note(limit, rest);
    let mut out = String::new();
    // The note's own size, plus a newline before it, comes off the budget first.
    let room = max.saturating_sub(m.of(&format!("\n{note}")));
    if room > 0 {
        let end = cut_at(text, room, m);
        out.push_str(&text[..end]);
        if !out.ends_with('\n') && !out.is_empty() {
            out.push('\n');
        }
    }
    out.push_str(&note);
    if m.of(&out) > max {
        let end = cut_at(&out, max, m);
        out.truncate(end);
    }
    out
}

/// `text` in at most `max_pieces` pieces of at most `per_piece` characters each (Slack's
/// sections), split after whole lines where it can; the last piece ends with the cut note when
/// the text does not fit.
pub fn pieces(
    text: &str,
    per_piece: usize,
    max_pieces: usize,
    limit: &str,
    rest: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut left = text;
    while !left.is_empty() && out.len() < max_pieces {
        if out.len() + 1 == max_pieces || Measure::Chars.of(left) <= per_piece {
            out.push(fit(left, per_piece, Measure::Chars, limit, rest));
            break;
        }
        let end = match cut_at(left, per_piece, Measure::Chars) {
            // Not one character fits: give the piece one all the same, so the loop ends.
            0 => left.chars().next().map_or(left.len(), char::len_utf8),
            end => end,
        };
        out.push(left[..end].to_string());
        left = &left[end..];
    }
    out
}

#[cfg(test)]
mod tests;
