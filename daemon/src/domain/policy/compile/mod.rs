//! Raw policy file → compiled parts, one function per section, in the order the diagnostics are
//! reported: `vars`, `routes`, `digest`, `limits`, `policies`, `maintenance`. Every problem goes to one
//! [`Diagnostics`], naming its file, line and field; cross-file checks (route and action
//! references, one `limits:` and one `digest:` in all) use what [`PolicyParts`] collects.

mod ladder;
mod limits;
mod maintenance;
mod route;
mod verify;

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use crate::domain::diag::Diagnostics;
use crate::domain::policy::raw::{RawDigest, RawPolicyFile, RawRoute};
use crate::domain::policy::{DigestSchedule, PolicyParts};

/// Where routes' secrets come from (`url_env`/`url_file`, `routing_key_*`, `api_key_*`): declared
/// here, implemented by loading (`load::secrets`), so that compiling stays free of I/O.
pub trait SecretSource {
    /// The value of environment variable `var`, `None` when it is not set.
    fn env(&self, var: &str) -> Option<String>;
    /// The contents of file `path`, or why it cannot be read.
    fn file(&self, path: &str) -> Result<String, String>;
}

/// Compiles one policy file into `parts`, reporting every problem to `diag`.
pub fn compile(
    file: &str,
    raw: RawPolicyFile,
    secrets: &dyn SecretSource,
    parts: &mut PolicyParts,
    diag: &mut Diagnostics,
) {
    compile_vars(file, raw.vars, parts, diag);
    compile_routes(file, raw.routes, secrets, parts, diag);
    if let Some(d) = raw.digest {
        compile_digest(file, d, parts, diag);
    }
    if let Some(l) = raw.limits {
        limits::compile_limits(file, l, parts, diag);
    }
    for p in raw.policies {
        ladder::compile_policy(file, p, parts, diag);
    }
    maintenance::compile_maintenance(file, raw.maintenance, parts, diag);
}

/// Adds the file's `vars:`; a variable defined twice (in any file) is reported.
fn compile_vars(
    file: &str,
    vars: BTreeMap<String, String>,
    parts: &mut PolicyParts,
    diag: &mut Diagnostics,
) {
    for (k, v) in vars {
        if parts.vars.insert(k.clone(), v).is_some() {
            diag.push(file, 0, "vars", format!("variable {k:?} is defined twice"));
        }
    }
}

/// Adds the file's `routes:`; a route of unknown type is skipped, a name defined twice reported.
fn compile_routes(
    file: &str,
    routes: Vec<RawRoute>,
    secrets: &dyn SecretSource,
    parts: &mut PolicyParts,
    diag: &mut Diagnostics,
) {
    for r in routes {
        let Some(route) = route::compile_route(file, &r, secrets, diag) else {
            continue;
        };
        if parts.routes.insert(r.name.value.clone(), route).is_some() {
            diag.push(
                file,
                r.name.referenced.line(),
                "routes.name",
                format!("route {:?} is defined twice", r.name.value),
            );
        }
    }
}

/// Compiles `digest:`; one file sets it, a second is reported. Its route is checked once every
/// file is read.
fn compile_digest(
    file: &str,
    d: Spanned<RawDigest>,
    parts: &mut PolicyParts,
    diag: &mut Diagnostics,
) {
    let line = d.referenced.line();
    if let Some((_, f, l)) = &parts.digest {
        diag.push(
            file,
            line,
            "digest",
            format!("the digest is already set at {f}:{l}; keep one `digest:` section"),
        );
    }
    let (hour, minute) = parse_time_of_day(&d.value.at).unwrap_or_else(|| {
        diag.push(
            file,
            line,
            "digest.at",
            format!(
                "{:?} is not a time of day; write HH:MM in UTC, e.g. \"08:00\"",
                d.value.at
            ),
        );
        (8, 0)
    });
    parts.route_refs.push((
        d.value.route.value.clone(),
        file.to_string(),
        d.value.route.referenced.line(),
    ));
    parts.digest = Some((
        DigestSchedule {
            route: d.value.route.value,
            hour,
            minute,
        },
        file.to_string(),
        line,
    ));
}

/// Parses `HH:MM` (UTC).
pub(in crate::domain::policy) fn parse_time_of_day(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.trim().len() == 5).then_some((h, m))
}
