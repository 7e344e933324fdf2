//! The normalized alert every source produces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::time::Timestamp;

/// Label or annotation set, ordered so that serialization is stable.
pub type Labels = BTreeMap<String, String>;

/// Where a signal came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `POST /webhook/alertmanager`.
    Webhook,
    /// A polled PromQL rule.
    Poller,
}

impl Source {
    /// The label value used in metrics and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Poller => "poller",
        }
    }
}

/// Firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The condition holds.
    Firing,
    /// The condition stopped holding.
    Resolved,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One normalized alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Where it came from.
    pub source: Source,
    /// Firing or resolved.
    pub status: Status,
    /// Identifying labels.
    pub labels: Labels,
    /// Descriptive annotations (re-rendered by Prometheus on every send).
    pub annotations: Labels,
    /// When the alert started firing.
    pub starts_at: Timestamp,
    /// When it ended; `None` while firing (Go's zero time on the wire).
    pub ends_at: Option<Timestamp>,
    /// Alertmanager's label-set hash.
    pub fingerprint: String,
    /// Link back to the expression that fired.
    pub generator_url: String,
    /// For polled rules, the value behind the signal.
    pub value: Option<f64>,
    /// For polled rules, the rule that produced it (polled signals go to their rule only).
    #[serde(default)]
    pub rule: Option<String>,
    /// For polled rules, the level the value maps to.
    #[serde(default)]
    pub level: Option<u8>,
}

impl Signal {
    /// The alert's name, or `""`.
    pub fn alertname(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Appends the signal's stored form to `out`: byte for byte what `serde_json::to_writer`
    /// writes for it (a test compares them), written directly. Every alert stored is encoded
    /// once, before its webhook's 200; through serde, with a writer call per quote, colon and
    /// comma, encoding was a tenth of the process at 50 alerts per webhook. Strings that need
    /// no escaping (nearly all) are copied whole; the others are escaped by serde_json itself.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // Every field named: a field added to `Signal` does not compile here until written.
        let Signal {
            source,
            status,
            labels,
            annotations,
            starts_at,
            ends_at,
            fingerprint,
            generator_url,
            value,
            rule,
            level,
        } = self;
        out.extend_from_slice(b"{\"source\":");
        json_str(out, source.as_str())?;
        out.extend_from_slice(b",\"status\":");
        json_str(out, status.as_str())?;
        out.extend_from_slice(b",\"labels\":");
        json_map(out, labels)?;
        out.extend_from_slice(b",\"annotations\":");
        json_map(out, annotations)?;
        out.extend_from_slice(b",\"starts_at\":");
        starts_at.with_rfc3339(|t| json_str(out, t))?;
        out.extend_from_slice(b",\"ends_at\":");
        match ends_at {
            Some(t) => t.with_rfc3339(|t| json_str(out, t))?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"fingerprint\":");
        json_str(out, fingerprint)?;
        out.extend_from_slice(b",\"generator_url\":");
        json_str(out, generator_url)?;
        // Numbers as serde_json writes them (a non-finite float is `null`).
        out.extend_from_slice(b",\"value\":");
        serde_json::to_writer(&mut *out, value)?;
        out.extend_from_slice(b",\"rule\":");
        match rule {
            Some(r) => json_str(out, r)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"level\":");
        serde_json::to_writer(&mut *out, level)?;
        out.push(b'}');
        Ok(())
    }
}

/// A JSON string: copied between quotes when nothing in it needs escaping, else written by
/// serde_json. The check reads every byte without stopping early, which the compiler turns into
/// wide compares.
fn json_str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    let escape = s
        .bytes()
        .fold(false, |e, b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escape {
        return serde_json::to_writer(&mut *out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
    Ok(())
}

/// A JSON object of strings, in the map's (sorted) order.
fn json_map(out: &mut Vec<u8>, m: &Labels) -> serde_json::Result<()> {
    out.push(b'{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, k)?;
        out.push(b':');
        json_str(out, v)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random signals, their strings drawn from bytes that need escaping (quotes, backslashes,
    /// every control character), DEL, and multi-byte characters: `write_json` writes what
    /// serde_json writes, and it reads back as the same signal.
    #[test]
    fn write_json_writes_what_serde_json_writes() {
        let seed = std::cell::Cell::new(0x853c_49e6_748f_ea9b_u64);
        let next = |n: u64| {
            let mut x = seed.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seed.set(x);
            x % n
        };
        let pieces = [
            "a", "Z", "0", " ", "\"", "\\", "\n", "\t", "\r", "\u{8}", "\u{c}", "\u{0}", "\u{1f}",
            "\u{7f}", "é", "€", "𝄞", "/", "<", "{", "}", ":", ",",
        ];
        let text = |max: u64| -> String {
            (0..next(max + 1))
                .map(|_| pieces[next(pieces.len() as u64) as usize])
                .collect()
        };
        let mut buf = Vec::new();
        for round in 0..5_000 {
            let mut labels = Labels::new();
            for _ in 0..next(6) {
                labels.insert(text(4), text(8));
            }
            let mut annotations = Labels::new();
            for _ in 0..next(3) {
                annotations.insert(text(4), text(12));
            }
            let at = |n: u64| Timestamp((n as i64) * 37 - 1_000_000_000);
            let s = Signal {
                source: if next(2) == 0 {
                    Source::Webhook
                } else {
                    Source::Poller
                },
                status: if next(2) == 0 {
                    Status::Firing
                } else {
                    Status::Resolved
                },
                labels,
                annotations,
                starts_at: at(next(1 << 40)),
                ends_at: (next(2) == 0).then(|| at(next(1 << 40))),
                fingerprint: text(3),
                generator_url: text(10),
                value: match next(6) {
                    0 => None,
                    1 => Some(f64::NAN),
                    2 => Some(f64::INFINITY),
                    3 => Some(-0.0),
                    4 => Some(next(1 << 50) as f64 / 7.0),
                    _ => Some(1e300),
                },
                rule: (next(2) == 0).then(|| text(4)),
                level: (next(2) == 0).then(|| next(256) as u8),
            };
            buf.clear();
            s.write_json(&mut buf).unwrap();
            let want = serde_json::to_vec(&s).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&buf),
                String::from_utf8_lossy(&want),
                "round {round}"
            );
            let back: Signal = serde_json::from_slice(&buf).unwrap();
            assert_eq!(back.labels, s.labels, "round {round}");
            assert_eq!(back.fingerprint, s.fingerprint, "round {round}");
        }
    }
}
