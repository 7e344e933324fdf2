//! The config's durations, parsed and checked against each other.

use std::time::Duration;

use super::{Config, ConfigError, MIN_STALL_AFTER};

impl Config {
    /// `stale_after`, parsed; it must be longer than a minute (staleness is checked each minute).
    pub fn stale_after(&self) -> Result<Duration, ConfigError> {
        let d = crate::domain::time::parse_duration(&self.stale_after).map_err(|message| {
            ConfigError::Invalid {
                field: "stale_after",
                message,
            }
        })?;
        if d < Duration::from_secs(60) {
            return Err(ConfigError::Invalid {
                field: "stale_after",
                message: format!(
                    "{:?} is shorter than a minute; set it above Alertmanager's repeat_interval (default 4h)",
                    self.stale_after
                ),
            });
        }
        Ok(d)
    }

    /// `signal_retention`, parsed; `None` for `off`. At least a day, and longer than
    /// `stale_after` (staleness reads when an incident's alerts were last heard of).
    pub fn signal_retention(&self) -> Result<Option<Duration>, ConfigError> {
        if self.signal_retention.trim() == "off" {
            return Ok(None);
        }
        let invalid = |message: String| ConfigError::Invalid {
            field: "signal_retention",
            message,
        };
        let d = crate::domain::time::parse_duration(&self.signal_retention)
            .map_err(|m| invalid(format!("{m}, or off")))?;
        if d < Duration::from_secs(24 * 3600) {
            return Err(invalid(format!(
                "{:?} is shorter than a day; keep at least what `remedyd replay` should see (default 30d), or off",
                self.signal_retention
            )));
        }
        if d <= self.stale_after()? {
            return Err(invalid(format!(
                "{:?} is not longer than stale_after ({:?}): an incident's alerts would be forgotten before they go stale",
                self.signal_retention, self.stale_after
            )));
        }
        Ok(Some(d))
    }

    /// How long the engine may go without a completed pass, while signals are pending, before
    /// `/readyz` fails.
    pub fn engine_stall_after(&self) -> Result<Duration, ConfigError> {
        let d =
            crate::domain::time::parse_duration(&self.engine_stall_after).map_err(|message| {
                ConfigError::Invalid {
                    field: "engine_stall_after",
                    message,
                }
            })?;
        if d < MIN_STALL_AFTER {
            return Err(ConfigError::Invalid {
                field: "engine_stall_after",
                message: format!(
                    "{:?} is shorter than 1s, the engine's tick: a healthy engine would be reported stalled",
                    self.engine_stall_after
                ),
            });
        }
        Ok(d)
    }

    /// The shutdown deadline.
    pub fn shutdown_deadline(&self) -> Result<Duration, ConfigError> {
        crate::domain::time::parse_duration(&self.shutdown_timeout).map_err(|message| {
            ConfigError::Invalid {
                field: "shutdown_timeout",
                message,
            }
        })
    }
}
