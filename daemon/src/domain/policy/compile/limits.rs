//! The `limits:` section: allowed namespaces, budget windows, breakers and the storm guard. Budget
//! windows are also how a step's own `budget:` compiles.

use std::time::Duration;

use serde_saphyr::Spanned;

use crate::domain::diag::Diagnostics;
use crate::domain::policy::PolicyParts;
use crate::domain::policy::limits::{BreakerConfig, Limits, StormGuard, Window};
use crate::domain::policy::raw::{RawBreaker, RawLimits, RawStorm, RawWindow};
use crate::domain::time::parse_duration;

/// Compiles the `limits:` section: namespaces, budgets, breakers and the storm guard (whose route
/// is checked once every file is read). One file sets it; a second is reported.
pub(super) fn compile_limits(
    file: &str,
    l: Spanned<RawLimits>,
    parts: &mut PolicyParts,
    diag: &mut Diagnostics,
) {
    let line = l.referenced.line();
    let origin = format!("{file}:{line}");
    if let Some((_, first)) = &parts.limits {
        diag.push(
            file,
            line,
            "limits",
            format!("limits are already set at {first}; keep one `limits:` section"),
        );
    }
    let mut lim = Limits::default();
    let raw = l.value;
    if let Some(ns) = raw.namespaces {
        if ns.iter().any(|n| n == "kube-system") {
            diag.push(
                file,
                line,
                "limits.namespaces",
                "kube-system cannot be allowed; only the named DNS actions may act there",
            );
        }
        lim.namespaces = ns;
    }
    if let Some(w) = &raw.budgets.global {
        lim.global = window(file, "limits.budgets.global", w, diag);
    }
    if let Some(w) = &raw.budgets.namespace {
        lim.namespace = window(file, "limits.budgets.namespace", w, diag);
    }
    if let Some(w) = &raw.budgets.rule {
        lim.rule = window(file, "limits.budgets.rule", w, diag);
    }
    if let Some(w) = &raw.budgets.action_target {
        lim.action_target = window(file, "limits.budgets.action_target", w, diag);
    }
    if let Some(b) = &raw.breakers.target {
        lim.breaker_target = breaker(file, "limits.breakers.target", b, diag);
    }
    if let Some(b) = &raw.breakers.global {
        lim.breaker_global = breaker(file, "limits.breakers.global", b, diag);
    }
    if let Some(s) = raw.storm_guard {
        lim.storm_guard = Some(storm_guard(file, s, parts));
    }
    parts.limits = Some((lim, origin));
}

/// Compiles `limits.storm_guard`; its route is checked once every file is read.
fn storm_guard(file: &str, s: RawStorm, parts: &mut PolicyParts) -> StormGuard {
    parts.route_refs.push((
        s.route.value.clone(),
        file.to_string(),
        s.route.referenced.line(),
    ));
    StormGuard {
        max_targets: s.max_targets,
        route: s.route.value,
    }
}

/// Compiles a budget window (`max` per `per`); `field` is its path, for messages.
pub(super) fn window(
    file: &str,
    field: &str,
    w: &Spanned<RawWindow>,
    diag: &mut Diagnostics,
) -> Window {
    let per = parse_duration(&w.value.per).unwrap_or_else(|e| {
        diag.push(file, w.referenced.line(), &format!("{field}.per"), e);
        Duration::from_secs(3600)
    });
    if w.value.max == 0 {
        diag.push(
            file,
            w.referenced.line(),
            &format!("{field}.max"),
            "max must be at least 1 (remove the step to forbid it)",
        );
    }
    Window {
        max: w.value.max,
        per,
    }
}

/// Compiles breaker settings; `field` is its path, for messages.
fn breaker(
    file: &str,
    field: &str,
    b: &Spanned<RawBreaker>,
    diag: &mut Diagnostics,
) -> BreakerConfig {
    let line = b.referenced.line();
    let mut d = |name: &str, v: &str| {
        parse_duration(v).unwrap_or_else(|e| {
            diag.push(file, line, &format!("{field}.{name}"), e);
            Duration::from_secs(60)
        })
    };
    let within = d("within", &b.value.within);
    let cooldown = d("cooldown", &b.value.cooldown);
    if b.value.failures == 0 {
        diag.push(
            file,
            line,
            &format!("{field}.failures"),
            "failures must be at least 1",
        );
    }
    BreakerConfig {
        failures: b.value.failures,
        within,
        cooldown,
    }
}
