//! `POST /webhook/alertmanager`: Alertmanager webhook v4, every alert its own signal, stored
//! durably before the 200.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::adapters::store::Receipt;
use crate::domain::signal::{Labels, Signal, Source, Status};
use crate::domain::time::Timestamp;

/// The v4 payload as Alertmanager sends it. Unknown fields are accepted (forward compatible).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// Always `"4"`.
    pub version: String,
    /// `firing` if any alert fires.
    pub status: String,
    /// Receiver name.
    #[serde(default)]
    pub receiver: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
    /// Opaque group key.
    #[serde(default)]
    pub group_key: String,
    /// Alerts left out by `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// Labels named in `group_by`.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels common to the alerts sent.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations common to the alerts sent.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
}

/// One alert of a payload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels.
    pub labels: Labels,
    /// Annotations.
    #[serde(default)]
    pub annotations: Labels,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; Go's zero time while firing.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Link to the expression.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Label-set hash.
    pub fingerprint: String,
}

/// A payload that cannot be accepted; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPayload(pub String);

/// `field` names the field for an error only: an alert that parses allocates no name.
fn status(field: impl FnOnce() -> String, s: &str) -> Result<Status, BadPayload> {
    match s {
        "firing" => Ok(Status::Firing),
        "resolved" => Ok(Status::Resolved),
        other => Err(BadPayload(format!(
            "{}: {other:?} is not firing or resolved",
            field()
        ))),
    }
}

/// Parses and validates a body into the receipt and one signal per alert.
pub fn parse(body: &[u8], received_at: Timestamp) -> Result<(Receipt, Vec<Signal>), BadPayload> {
    if let Some(at) = nested_beyond(body, MAX_DEPTH) {
        return Err(BadPayload(format!(
            "body: JSON nested deeper than {MAX_DEPTH} levels (at byte {at}); an Alertmanager payload has 4"
        )));
    }
    // The fast path parses directly; only a failure is parsed again to name the field.
    let p: Payload = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(_) => return Err(describe_error(body)),
    };
    validate(p, received_at)
}

/// The deepest nesting a webhook body may have. Alertmanager's is 4 (body, alerts, an alert, its
/// labels); 32 leaves room for fields added later, and stays far below serde_json's recursion
/// limit (128): the typed payload refuses a deep value at its first level, and serde_json skips
/// an unknown field's value without recursion, so without this check a deep body is refused as
/// a wrong type or accepted, never named for what it is.
pub const MAX_DEPTH: usize = 32;

/// The byte offset at which `body` opens its `max + 1`-th nested array or object, outside
/// strings; `None` when it never does. One pass, no allocation: strings, most of a payload, are
/// skipped to their next quote or backslash with `memchr` (a byte-at-a-time loop over the body
/// was 5 % of ingest at 50 alerts per webhook). An unterminated string ends the scan.
fn nested_beyond(body: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&b) = body.get(i) {
        match b {
            b'"' => {
                // To the closing quote; a backslash escapes the byte after it.
                i += 1;
                loop {
                    let at = i + memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
                    if body[at] == b'"' {
                        i = at + 1;
                        break;
                    }
                    i = at + 2;
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn describe_error(body: &[u8]) -> BadPayload {
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, Payload>(de) {
        Ok(_) => BadPayload("body: not a valid Alertmanager payload".into()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            // serde_json appends " at line L column C"; the field path says more.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            // Key names in the path come from the sender: escape control characters and cap the
            // length so that the answer and the log line stay one readable line.
            let path = one_line(&path, 200);
            let msg = one_line(&msg, 300);
            if path == "." || path.is_empty() {
                BadPayload(format!("body: {msg}"))
            } else {
                BadPayload(format!("{path}: {msg}"))
            }
        }
    }
}

/// `s` with control characters escaped, cut at `max` characters (marked with `…`).
fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn validate(p: Payload, received_at: Timestamp) -> Result<(Receipt, Vec<Signal>), BadPayload> {
    if p.version != "4" {
        return Err(BadPayload(format!(
            "version: {:?} is not supported; remedyd accepts Alertmanager webhook version \"4\"",
            p.version
        )));
    }
    status(|| "status".into(), &p.status)?;
    let mut signals = Vec::with_capacity(p.alerts.len());
    for (i, a) in p.alerts.into_iter().enumerate() {
        let st = status(|| format!("alerts[{i}].status"), &a.status)?;
        if a.fingerprint.is_empty() {
            return Err(BadPayload(format!(
                "alerts[{i}].fingerprint: must not be empty"
            )));
        }
        let starts_at = Timestamp::parse_rfc3339(&a.starts_at).map_err(|e| {
            BadPayload(format!(
                "alerts[{i}].startsAt: {:?} is not RFC 3339 ({e})",
                a.starts_at
            ))
        })?;
        let ends_at = match a.ends_at.as_deref() {
            None | Some("") | Some("0001-01-01T00:00:00Z") => None,
            Some(s) => Some(Timestamp::parse_rfc3339(s).map_err(|e| {
                BadPayload(format!("alerts[{i}].endsAt: {s:?} is not RFC 3339 ({e})"))
            })?),
        };
        signals.push(Signal {
            source: Source::Webhook,
            status: st,
            labels: a.labels,
            annotations: a.annotations,
            starts_at,
            ends_at,
            fingerprint: a.fingerprint,
            generator_url: a.generator_url,
            value: None,
            rule: None,
            level: None,
        });
    }
    let receipt = Receipt {
        received_at,
        receiver: p.receiver,
        group_key: p.group_key,
        truncated_alerts: p.truncated_alerts,
        alerts: signals.len(),
    };
    Ok((receipt, signals))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUPED: &str =
        include_str!("../../../../tests/fixtures/alertmanager/02-firing-grouped-3-alerts.json");

    #[test]
    fn nesting_is_counted_outside_strings_and_refused_beyond_max_depth() {
        assert_eq!(nested_beyond(GROUPED.as_bytes(), 4), None);
        assert_eq!(nested_beyond(br#"{"a":"[[[[{{{{\"[["}"#, 1), None);
        assert_eq!(nested_beyond(b"[[[]]]", 2), Some(2));
        let deep = format!(
            "{{\"version\":\"4\",\"x\":{}0{}}}",
            "[".repeat(40),
            "]".repeat(40)
        );
        let e = parse(deep.as_bytes(), Timestamp(0)).unwrap_err().0;
        assert_eq!(
            e,
            "body: JSON nested deeper than 32 levels (at byte 50); an Alertmanager payload has 4"
        );
    }

    /// The byte-at-a-time scan `nested_beyond` replaced: the reference it must agree with.
    fn nested_beyond_bytewise(body: &[u8], max: usize) -> Option<usize> {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for (i, &b) in body.iter().enumerate() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return Some(i);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        None
    }

    #[test]
    fn the_nesting_scan_agrees_with_the_bytewise_reference() {
        // Random bodies over the bytes that matter (quotes, backslashes, brackets) and filler,
        // ending anywhere (inside a string, after a lone backslash); and cuts of a real payload.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"\"\\[]{}a ,:0";
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let body: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let max = (next() % 6) as usize;
            assert_eq!(
                nested_beyond(&body, max),
                nested_beyond_bytewise(&body, max),
                "round {round}: {:?} max {max}",
                String::from_utf8_lossy(&body)
            );
        }
        let g = GROUPED.as_bytes();
        for cut in 0..g.len() {
            for max in [0, 1, 2, 3, 4] {
                assert_eq!(
                    nested_beyond(&g[..cut], max),
                    nested_beyond_bytewise(&g[..cut], max),
                    "cut {cut} max {max}"
                );
            }
        }
    }

    #[test]
    fn grouped_payload_fans_out_to_one_signal_per_alert() {
        let (r, s) = parse(GROUPED.as_bytes(), Timestamp(0)).unwrap();
        assert_eq!(r.alerts, 3);
        let services: Vec<_> = s.iter().map(|s| s.labels["service"].as_str()).collect();
        assert_eq!(services, ["checkout", "payments", "search"]);
        assert!(
            s.iter()
                .all(|s| s.ends_at.is_none() && s.status == Status::Firing)
        );
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let body = GROUPED.replace(
            "\"fingerprint\": \"01e90adf7ecc020c\"",
            "\"fingerprint\": 5",
        );
        let e = parse(body.as_bytes(), Timestamp(0)).unwrap_err();
        assert!(
            e.0.starts_with("alerts[1].fingerprint: invalid type: integer `5`"),
            "{e}"
        );
    }

    #[test]
    fn missing_field_and_bad_time_are_named() {
        let e = parse(br#"{"version":"4","status":"firing"}"#, Timestamp(0)).unwrap_err();
        assert_eq!(e.0, "body: missing field `alerts`");
        let body = GROUPED.replace("2026-11-26T09:41:32.811Z", "yesterday");
        let e = parse(body.as_bytes(), Timestamp(0)).unwrap_err();
        assert!(e.0.starts_with("alerts[1].startsAt: \"yesterday\""), "{e}");
        // The third `"status": "firing"` is the second alert's (the payload's own comes first).
        let at = GROUPED
            .match_indices("\"status\": \"firing\"")
            .nth(2)
            .unwrap()
            .0;
        let body = format!(
            "{}\"status\": \"pending\"{}",
            &GROUPED[..at],
            &GROUPED[at + 18..]
        );
        let e = parse(body.as_bytes(), Timestamp(0)).unwrap_err();
        assert_eq!(
            e.0,
            "alerts[1].status: \"pending\" is not firing or resolved"
        );
        let body = GROUPED.replace("\"version\": \"4\"", "\"version\": \"3\"");
        assert!(
            parse(body.as_bytes(), Timestamp(0))
                .unwrap_err()
                .0
                .starts_with("version:")
        );
    }

    #[test]
    fn a_key_with_a_newline_still_gives_a_one_line_error() {
        // Found by libFuzzer (fuzz/): serde_path_to_error puts unknown key names in the path raw.
        let body = br#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{},"annotations":{"a\n\n": 1}}]}"#;
        let e = parse(body, Timestamp(0)).unwrap_err();
        assert!(!e.0.contains('\n'), "{e}");
        assert!(e.0.starts_with("alerts[0].annotations"), "{e}");
    }
}
