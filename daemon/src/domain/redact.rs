//! Redaction of values that look like secrets, before evidence is stored or paged: log lines of a
//! failing pod, a query's text, an HTTP answer can all carry credentials, and a timeline is read
//! by many more people (and pagers) than the pod's logs.
//!
//! What is replaced by `[redacted]`, keeping what is around it so the line still reads:
//!
//! | pattern | example | becomes |
//! |---|---|---|
//! | bearer and basic credentials | `Authorization: Bearer eyJhb…` | `Authorization: Bearer [redacted]` |
//! | the password of a URL | `postgres://app:hunter2@db:5432/x` | `postgres://app:[redacted]@db:5432/x` |
//! | `key=value` and `key: value` pairs whose key names a secret (`password`, `passwd`, `pwd`, `secret`, `token`, `api_key`/`apikey`, `access_key`, `private_key`, `credentials`, and keys ending in those, e.g. `DB_PASSWORD`, `client_secret`), quoted or not | `password=hunter2`, `"api_key": "abc"` | `password=[redacted]`, `"api_key": "[redacted]"` |
//! | PEM private keys | `-----BEGIN PRIVATE KEY-----…` | `-----BEGIN PRIVATE KEY----- [redacted]` |
//!
//! It errs on the side of hiding: a value after `token=` is hidden even when it is not a secret.
//! It cannot know every secret's shape; it is a net, not a guarantee (see docs/policies.md, "Actions").

use std::sync::LazyLock;

use regex::Regex;

/// What a hidden value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Bearer/Basic credentials.
static AUTH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/=]{8,}").expect("valid pattern")
});

/// `scheme://user:password@` in URLs and DSNs, wherever the scheme starts: no word boundary is
/// required before it, so a URL glued to a digit or `_` (`{0postgres://…`, `DB_URL_postgres://…`)
/// is redacted too (a campaign of tests/it/fuzz_responses/probe.rs found it kept).
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)([a-z][a-z0-9+.\-]*://[^\s:/@]*:)([^\s@/]+)@").expect("valid pattern")
});

/// `key=value`, `key: value`, `"key": "value"` with a key that names a secret; the quotes may be
/// escaped (`\"key\": \"value\"`: JSON quoted in a JSON string, an unreadable answer's text).
static PAIR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:\\?["'])?[A-Za-z0-9_.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credentials?)(?:\\?["'])?\s*[:=]\s*)(\\"[^"\\]*\\"|"[^"]*"|'[^']*'|[^\s,;&"'}\]]+)"#,
    )
    .expect("valid pattern")
});

/// A PEM private key block (or the rest of the text when it is cut short).
static PEM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)(-----BEGIN [A-Z ]*PRIVATE KEY-----).*?(-----END [A-Z ]*PRIVATE KEY-----|\z)")
        .expect("valid pattern")
});

/// `s` with every value that looks like a secret replaced by [`REDACTED`].
pub fn redact(s: &str) -> String {
    let s = PEM.replace_all(s, |c: &regex::Captures<'_>| {
        let end = c.get(2).map_or("", |m| m.as_str());
        format!(
            "{} {REDACTED}{}{end}",
            &c[1],
            if end.is_empty() { "" } else { " " }
        )
    });
    let s = AUTH.replace_all(&s, |c: &regex::Captures<'_>| {
        format!("{}{}{REDACTED}", &c[1], &c[2])
    });
    let s = URL_PASSWORD.replace_all(&s, |c: &regex::Captures<'_>| {
        format!("{}{REDACTED}@", &c[1])
    });
    let s = PAIR.replace_all(&s, |c: &regex::Captures<'_>| {
        let v = &c[2];
        let quote = v
            .chars()
            .next()
            .filter(|q| (*q == '"' || *q == '\'') && v.len() >= 2 && v.ends_with(*q));
        match quote {
            _ if v.len() >= 4 && v.starts_with("\\\"") && v.ends_with("\\\"") => {
                format!("{}\\\"{REDACTED}\\\"", &c[1])
            }
            Some(q) => format!("{}{q}{REDACTED}{q}", &c[1]),
            None if v.starts_with("[redacted") => c[0].to_string(),
            None => format!("{}{REDACTED}", &c[1]),
        }
    });
    s.into_owned()
}

/// Every string in `v` (values, not keys) redacted; an object's value under a key that names a
/// secret is hidden whole.
pub fn redact_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(redact(s)),
        Value::Array(a) => Value::Array(a.iter().map(redact_json).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let hidden = secret_key(k) && !matches!(v, Value::Null | Value::Bool(_));
                    let v = if hidden {
                        Value::String(REDACTED.into())
                    } else {
                        redact_json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether a JSON key names a secret (`password`, `db_password`, `apiKey`, …).
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase().replace(['-', '.'], "_");
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "private_key",
        "credentials",
    ]
    .iter()
    .any(|s| k == *s || k.ends_with(&format!("_{s}")) || k.ends_with(s) && k.len() > s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_log_lines_are_hidden_and_the_rest_of_the_line_kept() {
        for (line, want) in [
            (
                "GET /api Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def ok",
                "GET /api Authorization: Bearer [redacted] ok",
            ),
            (
                "connecting to postgres://app:hunter2@db:5432/shop failed",
                "connecting to postgres://app:[redacted]@db:5432/shop failed",
            ),
            (
                "login password=hunter2 user=bob",
                "login password=[redacted] user=bob",
            ),
            ("DB_PASSWORD: s3cr3t", "DB_PASSWORD: [redacted]"),
            (
                r#"{"client_secret": "abc123", "user": "x"}"#,
                r#"{"client_secret": "[redacted]", "user": "x"}"#,
            ),
            ("?token=abcdef&page=2", "?token=[redacted]&page=2"),
            ("api-key='k-123' done", "api-key='[redacted]' done"),
            // Found by a probe fuzz campaign: a DSN glued to a digit or `_` was kept.
            (
                "{0postgres://app:hunter2@db:5432/shop }",
                "{0postgres://app:[redacted]@db:5432/shop }",
            ),
            (
                "DB_URL_postgres://app:hunter2@db/x",
                "DB_URL_postgres://app:[redacted]@db/x",
            ),
            // Found by the eviction fuzzing: a Kubernetes answer that is not a readable Status
            // is quoted whole, JSON in a JSON string, its quotes escaped.
            (
                r#"{"message":"denied: \"api_key\": \"k-123\", \"password\":\"p w\""}"#,
                r#"{"message":"denied: \"api_key\": \"[redacted]\", \"password\":\"[redacted]\""}"#,
            ),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY----- tail",
                "-----BEGIN PRIVATE KEY----- [redacted] -----END PRIVATE KEY----- tail",
            ),
        ] {
            assert_eq!(redact(line), want, "{line}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for line in [
            "checkout-7d9f rolled out: 3/3 replicas ready",
            "ERROR connection refused (os error 111) to http://db:5432/",
            "tokens_per_second=12 basic setup done",
            "http://example.com/path?page=2",
        ] {
            assert_eq!(redact(line), line);
        }
    }

    #[test]
    fn json_evidence_is_redacted_in_values_and_under_secret_keys() {
        let v = serde_json::json!({
            "logs": ["ok", "password=hunter2"],
            "env": {"DB_PASSWORD": "x", "HOME": "/root", "apiKey": "k"},
            "replicas": 3,
            "token_present": true,
        });
        let r = redact_json(&v);
        assert_eq!(
            r,
            serde_json::json!({
                "logs": ["ok", "password=[redacted]"],
                "env": {"DB_PASSWORD": "[redacted]", "HOME": "/root", "apiKey": "[redacted]"},
                "replicas": 3,
                "token_present": true,
            })
        );
        assert_eq!(redact_json(&r), r, "redacting twice changes nothing");
    }
}
