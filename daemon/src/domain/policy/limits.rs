//! The global limits a policy file may set: budget windows, breaker settings, the storm guard, and
//! the runbook's defaults for each.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// At most `max` events per `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Maximum count in the window.
    pub max: u32,
    /// Window length.
    #[serde(with = "crate::domain::time::duration_str")]
    pub per: Duration,
}

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Failures within `within` that open the breaker.
    pub failures: u32,
    /// Failure window.
    #[serde(with = "crate::domain::time::duration_str")]
    pub within: Duration,
    /// Time open before a half-open trial.
    #[serde(with = "crate::domain::time::duration_str")]
    pub cooldown: Duration,
}

/// Storm guard settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormGuard {
    /// More targets than this in incident at once stops workload automation.
    pub max_targets: u32,
    /// Route paged once per storm.
    pub route: String,
}

/// Global limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Namespaces automation may act in (cluster-scoped targets are not namespaced).
    pub namespaces: Vec<String>,
    /// All actions, everywhere.
    pub global: Window,
    /// Actions per namespace.
    pub namespace: Window,
    /// Actions per rule.
    pub rule: Window,
    /// Default for a step without its own budget: per action × target.
    pub action_target: Window,
    /// Breaker per action × target.
    pub breaker_target: BreakerConfig,
    /// Breaker over all actions.
    pub breaker_global: BreakerConfig,
    /// Storm guard; `None` disables it.
    pub storm_guard: Option<StormGuard>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            namespaces: vec![crate::domain::rules::DEFAULT_NAMESPACE.to_string()],
            // The runbook's "20 actions per hour in total".
            global: Window {
                max: 20,
                per: Duration::from_secs(3600),
            },
            namespace: Window {
                max: 10,
                per: Duration::from_secs(3600),
            },
            rule: Window {
                max: 10,
                per: Duration::from_secs(3600),
            },
            // The runbook's "at most 3 restarts of one deployment per hour".
            action_target: Window {
                max: 3,
                per: Duration::from_secs(3600),
            },
            breaker_target: BreakerConfig {
                failures: 3,
                within: Duration::from_secs(3600),
                cooldown: Duration::from_secs(1800),
            },
            breaker_global: BreakerConfig {
                failures: 10,
                within: Duration::from_secs(3600),
                cooldown: Duration::from_secs(900),
            },
            storm_guard: None,
        }
    }
}
