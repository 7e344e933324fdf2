//! A step's `verify:` section: `resolved_within`, or a PromQL query with its bound, deadline,
//! probe interval and what no data means.

use std::time::Duration;

use serde_saphyr::Spanned;

use crate::domain::diag::Diagnostics;
use crate::domain::policy::raw::RawVerify;
use crate::domain::policy::{NoData, Verify};
use crate::domain::time::parse_duration;

/// Compiles a step's `verify:`: exactly one of `resolved_within` or `query`, with the fields that
/// go with it.
pub(super) fn compile_verify(file: &str, v: &Spanned<RawVerify>, diag: &mut Diagnostics) -> Verify {
    let line = v.referenced.line();
    let r = &v.value;
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
                "set exactly one of `resolved_within` or `query`",
            );
            Verify::ResolvedWithin(Duration::ZERO)
        }
    }
}
