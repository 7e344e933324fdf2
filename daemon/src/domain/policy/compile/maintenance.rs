//! The `maintenance:` section: each window's name, scope (as a pause's: `global`, `rule:R`,
//! `namespace:N`) and either a one-off `start`/`end` (RFC 3339) or a `weekly` day and UTC times.

use std::str::FromStr;

use crate::domain::diag::Diagnostics;
use crate::domain::policy::PolicyParts;
use crate::domain::policy::maintenance::{Maintenance, Weekly, When};
use crate::domain::policy::raw::RawMaintenance;
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;

/// Compiles the file's windows into `parts.maintenance`; a name defined twice is reported.
pub(super) fn compile_maintenance(
    file: &str,
    windows: Vec<RawMaintenance>,
    parts: &mut PolicyParts,
    diag: &mut Diagnostics,
) {
    for w in windows {
        let line = w.name.referenced.line();
        let name = w.name.value.clone();
        let scope = match &w.scope {
            None => Some(Scope::Global),
            Some(s) => match Scope::from_str(&s.value) {
                Ok(sc @ (Scope::Global | Scope::Rule(_) | Scope::Namespace(_))) => Some(sc),
                Ok(Scope::Action { .. }) | Err(_) => {
                    diag.push(
                        file,
                        s.referenced.line(),
                        "maintenance.scope",
                        format!(
                            "{:?} is not a window's scope; valid: global, rule:NAME, namespace:NAME",
                            s.value
                        ),
                    );
                    None
                }
            },
        };
        let when = when(file, line, &w, diag);
        if let Some(first) = parts.maintenance.iter().find(|(m, _)| m.name == name) {
            diag.push(
                file,
                line,
                "maintenance.name",
                format!(
                    "maintenance window {name:?} is already defined at {}",
                    first.1
                ),
            );
            continue;
        }
        if let (Some(scope), Some(when)) = (scope, when) {
            parts
                .maintenance
                .push((Maintenance { name, scope, when }, format!("{file}:{line}")));
        }
    }
}

/// `start` + `end`, or `weekly`: exactly one of the two forms.
fn when(file: &str, line: u64, w: &RawMaintenance, diag: &mut Diagnostics) -> Option<When> {
    let mut bad = |field: &str, line: u64, msg: String| {
        diag.push(file, line, field, msg);
        None
    };
    match (&w.start, &w.end, &w.weekly) {
        (Some(start), Some(end), None) => {
            let parse = |s: &str| Timestamp::parse_rfc3339(s.trim()).ok();
            let (Some(a), Some(b)) = (parse(&start.value), parse(&end.value)) else {
                let (field, v) = if parse(&start.value).is_none() {
                    ("maintenance.start", start)
                } else {
                    ("maintenance.end", end)
                };
                return bad(
                    field,
                    v.referenced.line(),
                    format!(
                        "{:?} is not a time; write RFC 3339 in UTC, e.g. \"2026-12-01T02:00:00Z\"",
                        v.value
                    ),
                );
            };
            if b <= a {
                return bad(
                    "maintenance.end",
                    end.referenced.line(),
                    format!("end {} is not after start {}", end.value, start.value),
                );
            }
            Some(When::Once { start: a, end: b })
        }
        (None, None, Some(wk)) => {
            let l = wk.referenced.line();
            let weekly = Weekly {
                day: wk.value.day.clone(),
                from: wk.value.from.clone(),
                to: wk.value.to.clone(),
            };
            match weekly.when() {
                Ok(when) => Some(when),
                Err((field, msg)) => bad(&format!("maintenance.weekly.{field}"), l, msg),
            }
        }
        _ => bad(
            "maintenance",
            line,
            format!(
                "window {:?}: give either start and end, or weekly: {{day, from, to}}",
                w.name.value
            ),
        ),
    }
}
