//! The checks a step passes before it runs, in order: pause, storm guard, namespace allowlist,
//! busy target, breakers, budgets. Pure: the engine gathers the inputs from the store.

use serde::Serialize;

use super::breaker::{self, BreakerRecord, BreakerState};
use super::budget::{self, BudgetUse};
use super::limits::BreakerConfig;
use crate::domain::time::Timestamp;

/// Why a step did not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// Automation paused (global or scoped): the incident is suspended until resumed.
    Paused,
    /// Too many targets in incident: humans take over.
    Storm,
    /// Namespace not in the allowlist.
    Namespace,
    /// Another incident's ladder is acting on the same target: wait.
    Busy,
    /// A breaker is open.
    Breaker,
    /// A budget is spent.
    Budget,
}

impl RefusalKind {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paused => "paused",
            Self::Storm => "storm",
            Self::Namespace => "namespace",
            Self::Busy => "busy",
            Self::Breaker => "breaker",
            Self::Budget => "budget",
        }
    }
}

/// A refusal and its reason in words, with the values behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Refusal {
    /// Category.
    pub kind: RefusalKind,
    /// Human reason.
    pub reason: String,
}

/// An active pause that covers the step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PauseInfo {
    /// `global`, `rule:x` or `namespace:y`.
    pub scope: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub author: String,
}

/// A breaker to consult.
#[derive(Clone, Debug)]
pub struct BreakerInput {
    /// Key (`action:restart:deployment/ns/x` or `global`).
    pub key: String,
    /// Stored record.
    pub record: BreakerRecord,
    /// Its settings.
    pub config: BreakerConfig,
}

/// Everything the gate needs.
#[derive(Clone, Debug)]
pub struct GateInput {
    /// A pause covering this step.
    pub paused: Option<PauseInfo>,
    /// (distinct targets in incident, limit), when the storm guard is on.
    pub storm: Option<(u32, u32)>,
    /// A level-3 (infrastructure) incident in progress: it turns the storm guard on.
    pub infrastructure: Option<String>,
    /// Target namespace and whether it is allowed.
    pub namespace: Option<(String, bool)>,
    /// Another incident acting on the target.
    pub busy_with: Option<String>,
    /// Breakers to consult.
    pub breakers: Vec<BreakerInput>,
    /// Budgets to consult.
    pub budgets: Vec<BudgetUse>,
}

/// The gate's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Run; `trials` are half-open breakers this run is the trial of.
    Allow {
        /// Breaker keys entering their half-open trial.
        trials: Vec<String>,
    },
    /// Do not run.
    Refuse(Refusal),
}

/// Evaluates the gates in order; the first refusal wins.
pub fn evaluate(input: &GateInput, now: Timestamp) -> Decision {
    let refuse = |kind, reason: String| Decision::Refuse(Refusal { kind, reason });
    if let Some(p) = &input.paused {
        return refuse(
            RefusalKind::Paused,
            format!(
                "automation paused ({}) by {}: {}",
                p.scope, p.author, p.reason
            ),
        );
    }
    if let Some((active, max)) = input.storm
        && active > max
    {
        return refuse(
            RefusalKind::Storm,
            format!(
                "storm guard: {active} targets in incident at once (limit {max}); workload automation stopped"
            ),
        );
    }
    if let Some(id) = &input.infrastructure {
        return refuse(
            RefusalKind::Storm,
            format!(
                "storm guard: level-3 incident {id} (infrastructure) in progress; workload automation stopped"
            ),
        );
    }
    if let Some((ns, false)) = &input.namespace {
        return refuse(
            RefusalKind::Namespace,
            format!("namespace {ns:?} is not in limits.namespaces"),
        );
    }
    if let Some(other) = &input.busy_with {
        return refuse(RefusalKind::Busy, format!("held: target busy with {other}"));
    }
    let mut trials = Vec::new();
    for b in &input.breakers {
        match breaker::state(&b.record, now, &b.config) {
            BreakerState::Closed => {}
            BreakerState::HalfOpen => trials.push(b.key.clone()),
            BreakerState::Open { until } => {
                return refuse(
                    RefusalKind::Breaker,
                    format!("breaker {} open until {until}", b.key),
                );
            }
        }
    }
    if let Some(u) = budget::first_exhausted(&input.budgets) {
        return refuse(
            RefusalKind::Budget,
            format!("budget spent: {}", u.describe()),
        );
    }
    Decision::Allow { trials }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::policy::Window;

    fn open_input() -> GateInput {
        GateInput {
            paused: None,
            storm: Some((1, 3)),
            infrastructure: None,
            namespace: Some(("python-services".into(), true)),
            busy_with: None,
            breakers: vec![],
            budgets: vec![BudgetUse {
                key: "global".into(),
                window: Window {
                    max: 20,
                    per: Duration::from_secs(3600),
                },
                used: 0,
            }],
        }
    }

    #[test]
    fn all_clear_allows() {
        assert_eq!(
            evaluate(&open_input(), Timestamp(0)),
            Decision::Allow { trials: vec![] }
        );
    }

    #[test]
    fn pause_wins_over_everything_else() {
        let mut i = open_input();
        i.paused = Some(PauseInfo {
            scope: "global".into(),
            reason: "deploy freeze".into(),
            author: "alice".into(),
        });
        i.budgets[0].used = 20;
        let Decision::Refuse(r) = evaluate(&i, Timestamp(0)) else {
            panic!("expected refusal")
        };
        assert_eq!(r.kind, RefusalKind::Paused);
        assert!(r.reason.contains("deploy freeze"));
    }

    #[test]
    fn storm_guard_refuses_above_the_limit_only() {
        let mut i = open_input();
        i.storm = Some((3, 3));
        assert!(matches!(evaluate(&i, Timestamp(0)), Decision::Allow { .. }));
        i.storm = Some((4, 3));
        assert!(matches!(
            evaluate(&i, Timestamp(0)),
            Decision::Refuse(Refusal {
                kind: RefusalKind::Storm,
                ..
            })
        ));
    }

    #[test]
    fn spent_budget_refuses_with_numbers() {
        let mut i = open_input();
        i.budgets[0].used = 20;
        let Decision::Refuse(r) = evaluate(&i, Timestamp(0)) else {
            panic!("expected refusal")
        };
        assert_eq!(r.kind, RefusalKind::Budget);
        assert_eq!(r.reason, "budget spent: global 20/20 per 1h");
    }

    #[test]
    fn half_open_breaker_allows_a_trial() {
        let mut i = open_input();
        i.breakers.push(BreakerInput {
            key: "global".into(),
            record: BreakerRecord {
                opened_at: Some(Timestamp(0)),
                ..Default::default()
            },
            config: crate::domain::policy::BreakerConfig {
                failures: 1,
                within: Duration::from_secs(60),
                cooldown: Duration::from_secs(60),
            },
        });
        assert!(matches!(
            evaluate(&i, Timestamp(1000)),
            Decision::Refuse(Refusal {
                kind: RefusalKind::Breaker,
                ..
            })
        ));
        assert_eq!(
            evaluate(&i, Timestamp(60_000)),
            Decision::Allow {
                trials: vec!["global".into()]
            }
        );
    }
}
