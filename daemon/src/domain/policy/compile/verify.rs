//! A step's `verify:` section: `resolved_within`; a PromQL query with its bound, deadline,
//! probe interval and what no data means; or an HTTP health check (`http`) with its expected
//! status, body text, consecutive successes, deadline and interval.

use std::time::Duration;

use serde_saphyr::Spanned;

use crate::domain::diag::Diagnostics;
use crate::domain::policy::raw::RawVerify;
use crate::domain::policy::{NoData, Verify};
use crate::domain::time::parse_duration;

/// Compiles a step's `verify:`: exactly one of `resolved_within`, `query` or `http`, with the
/// fields that go with it.
pub(super) fn compile_verify(file: &str, v: &Spanned<RawVerify>, diag: &mut Diagnostics) -> Verify {
    let line = v.referenced.line();
    let r = &v.value;
    let http_fields = r.expect_status.is_some()
        || r.body_contains.is_some()
        || r.successes.is_some()
        || r.timeout.is_some();
    if let Some(url) = &r.http {
        if r.resolved_within.is_some() || r.query.is_some() {
            diag.push(
                file,
                line,
                "steps.verify",
                "set exactly one of `resolved_within`, `query` or `http`",
            );
        }
        return compile_http(file, line, url, r, diag);
    }
    if http_fields {
        diag.push(
            file,
            line,
            "steps.verify",
            "expect_status/body_contains/successes/timeout go with `http`",
        );
    }
    let dur = |field: &str, s: &str, diag: &mut Diagnostics| {
        parse_duration(s).unwrap_or_else(|e| {
            diag.push(file, line, &format!("steps.verify.{field}"), e);
            Duration::from_secs(60)
        })
    };
    match (&r.resolved_within, &r.query) {
        (Some(d), None) => {
            if r.above.is_some()
                || r.below.is_some()
                || r.within.is_some()
                || r.every.is_some()
                || r.no_data.is_some()
            {
                diag.push(
                    file,
                    line,
                    "steps.verify",
                    "above/below/within/every/no_data go with `query`, not `resolved_within`",
                );
            }
            Verify::ResolvedWithin(dur("resolved_within", d, diag))
        }
        (None, Some(q)) => {
            if let Err(e) = crate::domain::rules::polled::check_promql(q) {
                diag.push(file, line, "steps.verify.query", e);
            }
            let (above, bound) = match (r.above, r.below) {
                (Some(a), None) => (true, a),
                (None, Some(b)) => (false, b),
                _ => {
                    diag.push(
                        file,
                        line,
                        "steps.verify",
                        "a query verification needs exactly one of `above` or `below`",
                    );
                    (false, 0.0)
                }
            };
            let within = match &r.within {
                Some(w) => dur("within", w, diag),
                None => {
                    diag.push(
                        file,
                        line,
                        "steps.verify.within",
                        "a query verification needs `within` (e.g. 5m)",
                    );
                    Duration::from_secs(300)
                }
            };
            let every = r
                .every
                .as_deref()
                .map_or(Duration::from_secs(15), |e| dur("every", e, diag));
            let no_data = match r.no_data.as_deref() {
                None | Some("escalate") => NoData::Escalate,
                Some("fail") => NoData::Fail,
                Some(other) => {
                    diag.push(
                        file,
                        line,
                        "steps.verify.no_data",
                        format!("unknown no_data {other:?}; valid: escalate, fail"),
                    );
                    NoData::Escalate
                }
            };
            Verify::Query {
                query: q.clone(),
                above,
                bound,
                within,
                every,
                no_data,
            }
        }
        _ => {
            diag.push(
                file,
                line,
                "steps.verify",
                "set exactly one of `resolved_within`, `query` or `http`",
            );
            Verify::ResolvedWithin(Duration::ZERO)
        }
    }
}

/// The longest timeout of one HTTP probe.
const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// `verify: {http: URL, expect_status, body_contains, successes, within, every, timeout}`.
fn compile_http(file: &str, line: u64, url: &str, r: &RawVerify, diag: &mut Diagnostics) -> Verify {
    let mut dur = |field: &str, s: &str, default: Duration| {
        parse_duration(s).unwrap_or_else(|e| {
            diag.push(file, line, &format!("steps.verify.{field}"), e);
            default
        })
    };
    let within = r
        .within
        .as_deref()
        .map(|w| dur("within", w, Duration::from_secs(120)));
    let every = r.every.as_deref().map_or(Duration::from_secs(10), |e| {
        dur("every", e, Duration::from_secs(10))
    });
    let timeout = r.timeout.as_deref().map_or(Duration::from_secs(5), |t| {
        dur("timeout", t, Duration::from_secs(5))
    });
    if let Err(e) = crate::domain::template::Template::parse(url) {
        diag.push(file, line, "steps.verify.http", format!("url: {e}"));
    }
    if !(url.starts_with("{{") || url.starts_with("http://") || url.starts_with("https://")) {
        diag.push(
            file,
            line,
            "steps.verify.http",
            format!("{url:?} must start with http:// or https://"),
        );
    }
    if url
        .split_once("://")
        .and_then(|(_, a)| a.split(['/', '?', '#']).next())
        .is_some_and(|a| a.contains('@'))
    {
        diag.push(
            file,
            line,
            "steps.verify.http",
            "credentials in a probe URL are refused",
        );
    }
    if r.above.is_some() || r.below.is_some() || r.no_data.is_some() {
        diag.push(
            file,
            line,
            "steps.verify",
            "above/below/no_data go with `query`, not `http`",
        );
    }
    if let Some(s) = r.expect_status
        && !(100..600).contains(&s)
    {
        diag.push(
            file,
            line,
            "steps.verify.expect_status",
            format!("{s} is not an HTTP status (100-599)"),
        );
    }
    let successes = r.successes.unwrap_or(1);
    if successes == 0 || successes > 100 {
        diag.push(
            file,
            line,
            "steps.verify.successes",
            format!("{successes}: must be 1 to 100"),
        );
    }
    if every.is_zero() {
        diag.push(file, line, "steps.verify.every", "must be more than 0s");
    }
    if timeout.is_zero() || timeout > MAX_PROBE_TIMEOUT {
        diag.push(
            file,
            line,
            "steps.verify.timeout",
            format!(
                "{}: must be more than 0s and at most {}",
                crate::domain::time::fmt_duration(timeout),
                crate::domain::time::fmt_duration(MAX_PROBE_TIMEOUT)
            ),
        );
    }
    let within = match within {
        Some(w) => w,
        None => {
            diag.push(
                file,
                line,
                "steps.verify.within",
                "an http verification needs `within` (e.g. 2m)",
            );
            Duration::from_secs(120)
        }
    };
    // The probe due at the deadline comes too late: the last success must land before it.
    if every * successes.max(1) >= within {
        diag.push(
            file,
            line,
            "steps.verify.within",
            format!(
                "{successes} success(es) in a row, probed every {}, take {}: within ({}) must be longer or it can never pass",
                crate::domain::time::fmt_duration(every),
                crate::domain::time::fmt_duration(every * successes.max(1)),
                crate::domain::time::fmt_duration(within)
            ),
        );
    }
    Verify::Http {
        url: url.to_string(),
        status: r.expect_status,
        body_contains: r.body_contains.clone(),
        successes: successes.max(1),
        within,
        every,
        timeout,
    }
}
