//! Circuit breakers: K failures in a window open the breaker; after a cool-down one trial runs.

use serde::{Deserialize, Serialize};

use super::BreakerConfig;
use crate::clock::Timestamp;

/// What the store keeps per breaker key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerRecord {
    /// When it last opened; `None` while closed.
    pub opened_at: Option<Timestamp>,
    /// When a half-open trial started. A trial whose result never comes (its incident resolved
    /// or was superseded mid-step) expires after another cool-down, so the breaker cannot stay
    /// open for ever.
    #[serde(default)]
    pub trial_since: Option<Timestamp>,
    /// Failures before this instant no longer count (set when a trial succeeds).
    pub reset_at: Option<Timestamp>,
}

/// The breaker's state at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BreakerState {
    /// Actions run.
    Closed,
    /// Actions are refused until `until`.
    Open {
        /// End of the cool-down.
        until: Timestamp,
    },
    /// One trial may run.
    HalfOpen,
}

impl BreakerState {
    /// Metric and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// The state of a breaker at `now`.
pub fn state(rec: &BreakerRecord, now: Timestamp, cfg: &BreakerConfig) -> BreakerState {
    match rec.opened_at {
        None => BreakerState::Closed,
        Some(at) => {
            let until = at.plus(cfg.cooldown);
            let trial_until = rec.trial_since.map(|t| t.plus(cfg.cooldown));
            match trial_until {
                _ if now < until => BreakerState::Open { until },
                Some(t) if now < t => BreakerState::Open { until: t },
                _ => BreakerState::HalfOpen,
            }
        }
    }
}

/// Start of the window in which failures count.
pub fn window_start(rec: &BreakerRecord, now: Timestamp, cfg: &BreakerConfig) -> Timestamp {
    let w = now.minus(cfg.within);
    match rec.reset_at {
        Some(r) if r > w => r,
        _ => w,
    }
}

/// The record after a failure; `failures` counts the failures in the window including this one.
pub fn on_failure(
    rec: &BreakerRecord,
    failures: u32,
    now: Timestamp,
    cfg: &BreakerConfig,
) -> BreakerRecord {
    if rec.trial_since.is_some() || failures >= cfg.failures {
        BreakerRecord {
            opened_at: Some(now),
            trial_since: None,
            reset_at: rec.reset_at,
        }
    } else {
        *rec
    }
}

/// The record after a success: a successful trial closes the breaker and forgets old failures.
pub fn on_success(rec: &BreakerRecord, now: Timestamp) -> BreakerRecord {
    if rec.opened_at.is_some() {
        BreakerRecord {
            opened_at: None,
            trial_since: None,
            reset_at: Some(now),
        }
    } else {
        *rec
    }
}

/// The record when a half-open trial starts.
pub fn on_trial(rec: &BreakerRecord, now: Timestamp) -> BreakerRecord {
    BreakerRecord {
        trial_since: Some(now),
        ..*rec
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const CFG: BreakerConfig = BreakerConfig {
        failures: 3,
        within: Duration::from_secs(3600),
        cooldown: Duration::from_secs(600),
    };

    fn t(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    #[test]
    fn opens_after_k_failures_then_half_opens_after_cooldown() {
        let mut r = BreakerRecord::default();
        r = on_failure(&r, 1, t(0), &CFG);
        r = on_failure(&r, 2, t(10), &CFG);
        assert_eq!(state(&r, t(11), &CFG), BreakerState::Closed);
        r = on_failure(&r, 3, t(20), &CFG);
        assert_eq!(state(&r, t(21), &CFG), BreakerState::Open { until: t(620) });
        assert_eq!(state(&r, t(620), &CFG), BreakerState::HalfOpen);
    }

    #[test]
    fn only_one_trial_runs_while_half_open() {
        let r = BreakerRecord {
            opened_at: Some(t(0)),
            ..Default::default()
        };
        let r = on_trial(&r, t(650));
        assert!(matches!(state(&r, t(700), &CFG), BreakerState::Open { .. }));
        // A trial whose result never came expires after a cool-down.
        assert_eq!(state(&r, t(1250), &CFG), BreakerState::HalfOpen);
    }

    #[test]
    fn failed_trial_reopens_and_successful_trial_closes() {
        let opened = on_trial(
            &BreakerRecord {
                opened_at: Some(t(0)),
                ..Default::default()
            },
            t(650),
        );
        let failed = on_failure(&opened, 1, t(700), &CFG);
        assert_eq!(
            state(&failed, t(701), &CFG),
            BreakerState::Open { until: t(1300) }
        );
        let ok = on_success(&opened, t(700));
        assert_eq!(state(&ok, t(701), &CFG), BreakerState::Closed);
        assert_eq!(window_start(&ok, t(800), &CFG), t(700));
    }
}
