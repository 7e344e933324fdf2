//! Generated scenarios: rules and policies (with reload variants) and event sequences, from a
//! seed. The numbers are small on purpose (budgets of a few uses, breakers that open after one to
//! three failures, a storm guard of one to three targets) so that every gate is reached often.

use std::collections::{BTreeMap, BTreeSet};

use super::history::{
    ACTIONS, AlertName, AlertSpec, Event, GlobalMode, History, OutcomeKind, ROUTES, SERVICES,
    Severity,
};
use super::rng::Rng;

/// The reload variants: 0 the base rules, 1 without `latency`, 2 with `errors` renamed,
/// 3 with a `saturation` rule added.
pub const VARIANTS: usize = 4;

fn mode_line(r: &mut Rng) -> &'static str {
    match r.below(10) {
        0..=5 => "",
        6..=7 => "    mode: dry-run\n",
        _ => "    mode: enforce\n",
    }
}

fn dur(s: u64) -> String {
    if s.is_multiple_of(60) && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn evidence(r: &mut Rng) -> &'static str {
    if r.chance(70) {
        "          - {name: evidence, action: evidence}\n"
    } else {
        ""
    }
}

fn scale_step(r: &mut Rng, name: &str) -> String {
    let no_data = if r.chance(50) { "escalate" } else { "fail" };
    format!(
        "          - name: {name}\n            action: scale\n            verify: {{query: 'svc_health{{service=\"{{{{target.name}}}}\"}}', above: 0.5, within: {}, every: 30s, no_data: {no_data}}}\n            on_failure: escalate\n",
        dur(*r.pick(&[60, 120, 180]))
    )
}

fn on_failure(r: &mut Rng) -> &'static str {
    if r.chance(60) { "next" } else { "escalate" }
}

/// The policies file (the same in every variant: limits and ladders do not change on reload).
fn policies(r: &mut Rng) -> String {
    let mut p = String::new();
    p.push_str("routes:\n");
    for route in ROUTES {
        p.push_str(&format!(
            "  - {{name: {route}, type: webhook, url: \"http://127.0.0.1:9/{route}\"}}\n"
        ));
    }
    p.push_str(&format!(
        "limits:\n  namespaces: [python-services, payments]\n  budgets:\n    global: {{max: {}, per: 30m}}\n    namespace: {{max: {}, per: 20m}}\n    rule: {{max: {}, per: 15m}}\n    action_target: {{max: {}, per: 10m}}\n  breakers:\n    target: {{failures: {}, within: 10m, cooldown: {}}}\n    global: {{failures: {}, within: 20m, cooldown: {}}}\n  storm_guard: {{max_targets: {}, route: platform}}\n",
        r.range(3, 8),
        r.range(2, 6),
        r.range(2, 5),
        r.range(1, 3),
        r.range(1, 3),
        dur(*r.pick(&[120, 300])),
        r.range(2, 4),
        dur(*r.pick(&[180, 300])),
        r.range(2, 4),
    ));
    p.push_str("policies:\n");
    // service: the runbook's degradation ladder (level 1) and unavailability ladder (level 2).
    p.push_str("  - name: service\n");
    p.push_str(mode_line(r));
    p.push_str("    levels:\n      - level: 1\n        escalate_to: oncall\n        steps:\n");
    p.push_str(evidence(r));
    p.push_str(&format!(
        "          - name: restart\n            action: restart\n            verify: {{resolved_within: {}}}\n            on_failure: {}\n",
        dur(*r.pick(&[60, 120])),
        on_failure(r)
    ));
    if r.chance(70) {
        p.push_str(&scale_step(r, "scale"));
    }
    p.push_str("      - level: 2\n        escalate_to: owner\n        steps:\n");
    p.push_str(evidence(r));
    p.push_str(&format!(
        "          - name: rollback\n            action: rollback\n            budget: {{max: 1, per: 10m}}\n            verify: {{resolved_within: {}}}\n            on_failure: {}\n",
        dur(*r.pick(&[60, 120, 180])),
        on_failure(r)
    ));
    if r.chance(60) {
        p.push_str(&scale_step(r, "scale-up"));
    }
    // latency: one restart.
    p.push_str("  - name: latency\n");
    p.push_str(mode_line(r));
    p.push_str("    levels:\n      - level: 1\n        escalate_to: oncall\n        steps:\n");
    p.push_str(evidence(r));
    p.push_str(&format!(
        "          - name: restart\n            action: restart\n            verify: {{resolved_within: {}}}\n            on_failure: escalate\n",
        dur(*r.pick(&[60, 120]))
    ));
    // platform: humans only, perhaps after evidence.
    p.push_str("  - name: platform\n    levels:\n      - level: 3\n        escalate_to: platform\n        steps:");
    if r.chance(50) {
        p.push_str("\n          - {name: evidence, action: evidence}\n");
    } else {
        p.push_str(" []\n");
    }
    p
}

struct RuleParams {
    errors_for: u64,
    latency_for: u64,
    polled: bool,
    polled_for: u64,
}

fn rules(k: &RuleParams, variant: usize) -> String {
    let deployment =
        "    target: {kind: deployment, name: \"{{service}}\", namespace: \"{{namespace}}\"}\n";
    let mut s = String::from("rules:\n");
    let errors = if variant == 2 { "errors-v2" } else { "errors" };
    s.push_str(&format!(
        "  - name: {errors}\n    match: ['alertname=\"HighErrorRate\"']\n    level_from: {{label: severity, map: {{warning: 1, critical: 2}}}}\n{deployment}    policy: service\n    for: {}\n",
        dur(k.errors_for)
    ));
    if variant != 1 {
        s.push_str(&format!(
            "  - name: latency\n    match: ['alertname=\"HighLatency\"']\n    level: 1\n{deployment}    policy: latency\n    for: {}\n",
            dur(k.latency_for)
        ));
    }
    s.push_str("  - name: platform-down\n    match: ['alertname=\"PlatformDown\"']\n    level: 3\n    target: {kind: platform, name: main}\n    policy: platform\n");
    if k.polled {
        s.push_str(&format!(
            "  - name: error-ratio\n    query: svc_error_ratio\n    every: 15s\n    levels:\n      - {{level: 2, above: 0.05, clear: 0.04}}\n      - {{level: 1, above: 0.02, clear: 0.015}}\n{deployment}    policy: service\n    for: {}\n",
            dur(k.polled_for)
        ));
    }
    if variant == 3 {
        s.push_str(&format!(
            "  - name: saturation\n    match: ['alertname=\"HighSaturation\"']\n    level: 1\n{deployment}    policy: latency\n"
        ));
    }
    s
}

/// What the generator remembers to make re-sends, resolves and out-of-order deliveries.
#[derive(Default)]
struct AlertState {
    /// Alerts it believes firing: key → startsAt.
    firing: BTreeMap<(AlertName, usize, Severity), i64>,
    /// Every startsAt sent per alert (for out-of-order re-sends of old episodes).
    past: BTreeMap<(AlertName, usize, Severity), Vec<i64>>,
}

fn alert_key(r: &mut Rng) -> (AlertName, usize, Severity) {
    let name = AlertName::ALL[r.weighted(&[55, 25, 5, 15])];
    // Services a and b are the busiest so that rules meet on one target.
    let svc = r.weighted(&[30, 25, 15, 15, 15]);
    let sev = if name == AlertName::Errors && r.chance(40) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    (name, svc, sev)
}

fn fire(state: &mut AlertState, r: &mut Rng, t: i64) -> AlertSpec {
    let key = alert_key(r);
    let starts = match state.firing.get(&key) {
        // Already firing: Alertmanager re-sends it with its startsAt.
        Some(s) if r.chance(85) => *s,
        _ => {
            if r.chance(10) {
                // Clock skew: a startsAt in the future.
                t + r.range(1, 120)
            } else {
                t - r.range(0, 600)
            }
        }
    };
    state.firing.insert(key, starts);
    state.past.entry(key).or_default().push(starts);
    AlertSpec {
        firing: true,
        name: key.0,
        svc: key.1,
        sev: key.2,
        starts,
    }
}

fn resolve(state: &mut AlertState, r: &mut Rng, t: i64) -> AlertSpec {
    let keys: Vec<_> = state.firing.keys().copied().collect();
    if keys.is_empty() || r.chance(8) {
        // A resolve for an alert never seen firing (or whose firing is still on its way).
        let key = alert_key(r);
        return AlertSpec {
            firing: false,
            name: key.0,
            svc: key.1,
            sev: key.2,
            starts: t - r.range(0, 600),
        };
    }
    let key = *r.pick(&keys);
    let starts = state.firing.remove(&key).unwrap_or(t);
    AlertSpec {
        firing: false,
        name: key.0,
        svc: key.1,
        sev: key.2,
        starts,
    }
}

/// Distinct configurations (mode, rules, policies) the generator uses: histories differ in their
/// events; sharing configurations lets the harness load each one once (the loader costs more
/// than a history's events in a debug build).
pub const CONFIGS: u64 = 64;

/// Generates a history of `events` events from `seed`.
// `*r.pick(..)` is needed: without it the slice element type is inferred as `str`.
#[allow(clippy::explicit_auto_deref)]
pub fn history(seed: u64, events: usize) -> History {
    let mut c = Rng::new((seed % CONFIGS) ^ 0xc0f1_9000);
    let mode = if c.chance(70) {
        GlobalMode::Enforce
    } else {
        GlobalMode::DryRun
    };
    let params = RuleParams {
        errors_for: *c.pick(&[0, 30, 60, 120]),
        latency_for: *c.pick(&[0, 30]),
        polled: c.chance(70),
        polled_for: *c.pick(&[0, 60]),
    };
    let policies = policies(&mut c);
    // Short enough to happen within a history (Alertmanager re-sends every repeat_interval).
    let stale_after = *c.pick(&[None, Some(1200), Some(2400)]);
    let mut r = Rng::new(seed);
    let variants = (0..VARIANTS)
        .map(|v| {
            vec![
                ("rules/model.yaml".to_string(), rules(&params, v)),
                ("policies/model.yaml".to_string(), policies.clone()),
            ]
        })
        .collect();
    let mut out = Vec::with_capacity(events);
    let mut fired = 0u32;
    let mut state = AlertState::default();
    let mut t: i64 = 0;
    let mut variant = 0;
    let mut paused: BTreeSet<String> = BTreeSet::new();
    let mut last_alerts: Option<Event> = None;
    let scopes = [
        "global",
        "rule:errors",
        "rule:latency",
        "namespace:python-services",
        "namespace:payments",
    ];
    while out.len() < events {
        let kind = r.weighted(&[26, 20, 15, 3, 3, 2, 6, 5, 11, 2, 1, 3, 2, 1, 2, 1]);
        let e = match kind {
            0 => {
                let s = *r.pick(&[5, 10, 15, 30, 45, 60, 90, 120, 180, 300, 600]);
                t += s as i64;
                Event::Wait(s)
            }
            1 => Event::Alerts(vec![fire(&mut state, &mut r, t)]),
            2 => Event::Alerts(vec![resolve(&mut state, &mut r, t)]),
            3 => {
                // A grouped payload: an outage over several services at once.
                let n = r.range(2, 5) as usize;
                let name = if r.chance(70) {
                    AlertName::Errors
                } else {
                    AlertName::Latency
                };
                let firing = r.chance(75);
                let mut svcs: Vec<usize> = (0..SERVICES.len()).collect();
                let mut alerts = Vec::new();
                for _ in 0..n {
                    let svc = svcs.remove(r.below(svcs.len() as u64) as usize);
                    let key = (name, svc, Severity::Warning);
                    let starts = if firing {
                        let s = *state.firing.entry(key).or_insert(t - r.range(0, 120));
                        state.past.entry(key).or_default().push(s);
                        s
                    } else {
                        state.firing.remove(&key).unwrap_or(t)
                    };
                    alerts.push(AlertSpec {
                        firing,
                        name,
                        svc,
                        sev: Severity::Warning,
                        starts,
                    });
                }
                Event::Alerts(alerts)
            }
            4 => match &last_alerts {
                // The same delivery again (Alertmanager retried, or its HA peer sent it).
                Some(e) => e.clone(),
                None => Event::Alerts(vec![fire(&mut state, &mut r, t)]),
            },
            5 => {
                // Out of order: an older episode's firing arrives after its resolve.
                let old: Vec<_> = state
                    .past
                    .iter()
                    .filter(|(k, _)| !state.firing.contains_key(*k))
                    .map(|(k, v)| (*k, *r.pick(v)))
                    .collect();
                match old.is_empty() {
                    true => Event::Alerts(vec![resolve(&mut state, &mut r, t)]),
                    false => {
                        let (key, starts) = *r.pick(&old);
                        Event::Alerts(vec![AlertSpec {
                            firing: true,
                            name: key.0,
                            svc: key.1,
                            sev: key.2,
                            starts,
                        }])
                    }
                }
            }
            6 => Event::Poll(
                r.weighted(&[40, 30, 10, 10, 10]),
                *r.pick(&[
                    Some(0.0),
                    Some(0.01),
                    Some(0.019),
                    Some(0.021),
                    Some(0.03),
                    Some(0.041),
                    Some(0.049),
                    Some(0.051),
                    Some(0.07),
                    None,
                ]),
            ),
            7 => Event::Health(
                r.weighted(&[40, 30, 10, 10, 10]),
                *r.pick(&[Some(0.2), Some(0.49), Some(0.51), Some(0.9), None]),
            ),
            8 => Event::Next(
                *r.pick(&ACTIONS),
                OutcomeKind::ALL[r.weighted(&[35, 22, 7, 7, 8, 10, 8])],
            ),
            9 => Event::Release(*r.pick(&[OutcomeKind::Ok, OutcomeKind::Fail])),
            10 => {
                let s = r.pick(&scopes).to_string();
                paused.insert(s.clone());
                Event::Pause(s)
            }
            11 => match paused.iter().next().cloned() {
                Some(s) if r.chance(80) => {
                    paused.remove(&s);
                    Event::Resume(s)
                }
                _ => Event::Resume(r.pick(&scopes).to_string()),
            },
            12 => Event::Route(*r.pick(&ROUTES), r.chance(50)),
            13 => {
                variant = (variant + 1 + r.below(VARIANTS as u64 - 1) as usize) % VARIANTS;
                Event::Reload(variant)
            }
            14 => Event::Restart,
            // Mostly an incident that exists, sometimes one that does not (yet).
            _ => Event::ResolveByHand(r.range(1, i64::from(fired.max(1)) + 1) as u32),
        };
        if let Event::Alerts(a) = &e {
            fired += a.iter().filter(|a| a.firing).count() as u32;
        }
        if matches!(e, Event::Alerts(_)) {
            last_alerts = Some(e.clone());
        }
        out.push(e);
    }
    History {
        mode,
        stale_after,
        variants,
        events: out,
    }
}
