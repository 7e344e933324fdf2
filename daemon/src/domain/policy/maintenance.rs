//! Maintenance windows (`maintenance:` in a policies file): while one covers an incident,
//! automation holds as under a pause (suspended, paged once with the window's name and end) and
//! the ladder continues when it ends. Pure: `now` is passed in.

use serde::{Deserialize, Serialize};

use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;

/// Milliseconds in a day and a minute (`Timestamp` counts milliseconds).
const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// Day names as written (`mon` … `sun`), Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// When a window is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// Once: from `start` (included) to `end` (excluded).
    Once {
        /// Opens.
        start: Timestamp,
        /// Closes.
        end: Timestamp,
    },
    /// Every week on `day` (0 = Monday), from `from` to `to` minutes past midnight UTC, within
    /// that day (`from < to`; a window across midnight is written as two).
    Weekly {
        /// Day of the week, 0 = Monday.
        day: u8,
        /// Opens, minutes past midnight UTC.
        from: u16,
        /// Closes, minutes past midnight UTC (up to 24:00).
        to: u16,
    },
}

/// A weekly window as written, in a policies file or to the API:
/// `{day: sat, from: "02:00", to: "04:00"}` (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weekly {
    /// `mon` … `sun`.
    pub day: String,
    /// Opens, `HH:MM` UTC.
    pub from: String,
    /// Closes, `HH:MM` UTC (up to `24:00`), after `from`.
    pub to: String,
}

impl Weekly {
    /// When the window is open; an error names the field (`day`, `from` or `to`) and says what
    /// is valid.
    pub fn when(&self) -> Result<When, (&'static str, String)> {
        let Some(day) = DAYS.iter().position(|d| *d == self.day.to_lowercase()) else {
            return Err((
                "day",
                format!("{:?} is not a day; valid: {}", self.day, DAYS.join(", ")),
            ));
        };
        let minutes = |s: &str| {
            if s.trim() == "24:00" {
                return Some(24 * 60);
            }
            super::compile::parse_time_of_day(s).map(|(h, m)| u16::from(h) * 60 + u16::from(m))
        };
        let not_a_time =
            |v: &str| format!("{v:?} is not a time of day; write HH:MM in UTC, e.g. \"02:00\"");
        let Some(from) = minutes(&self.from) else {
            return Err(("from", not_a_time(&self.from)));
        };
        let Some(to) = minutes(&self.to) else {
            return Err(("to", not_a_time(&self.to)));
        };
        if to <= from {
            return Err((
                "to",
                format!(
                    "to {:?} is not after from {:?}; a window across midnight is two windows",
                    self.to, self.from
                ),
            ));
        }
        Ok(When::Weekly {
            day: day as u8,
            from,
            to,
        })
    }

    /// The same window spelled canonically (lower-case day, trimmed times).
    pub fn normalized(&self) -> Self {
        Self {
            day: self.day.trim().to_lowercase(),
            from: self.from.trim().to_string(),
            to: self.to.trim().to_string(),
        }
    }
}

/// One maintenance window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maintenance {
    /// Name, shown in the reason.
    pub name: String,
    /// What it covers: global, `rule:R` or `namespace:N` (as a pause).
    pub scope: Scope,
    /// When.
    pub when: When,
}

impl Maintenance {
    /// When the window covering `now` ends, if it is open.
    pub fn open_until(&self, now: Timestamp) -> Option<Timestamp> {
        match self.when {
            When::Once { start, end } => (start <= now && now < end).then_some(end),
            When::Weekly { day, from, to } => {
                let days = now.0.div_euclid(DAY_MS);
                // 1970-01-01 was a Thursday (3 with Monday as 0).
                let weekday = (days + 3).rem_euclid(7) as u8;
                let minute = now.0.rem_euclid(DAY_MS) / MINUTE_MS;
                (weekday == day && i64::from(from) <= minute && minute < i64::from(to))
                    .then_some(Timestamp(days * DAY_MS + i64::from(to) * MINUTE_MS))
            }
        }
    }

    /// Covers an incident of `rule` on a target in `namespace`.
    pub fn covers(&self, rule: &str, namespace: &str) -> bool {
        match &self.scope {
            Scope::Global => true,
            Scope::Rule(r) => r == rule,
            Scope::Namespace(n) => n == namespace,
            Scope::Action { .. } => false,
        }
    }

    /// The reason people read: `maintenance window NAME until HH:MM UTC` (with the date when it
    /// ends on another day than `now`).
    pub fn reason(&self, until: Timestamp, now: Timestamp) -> String {
        let end = until.to_rfc3339();
        let hm = &end[11..16];
        if until.0.div_euclid(DAY_MS) == now.0.div_euclid(DAY_MS) {
            format!("maintenance window {} until {hm} UTC", self.name)
        } else {
            format!(
                "maintenance window {} until {} {hm} UTC",
                self.name,
                &end[..10]
            )
        }
    }
}

/// The first open window covering an incident of `rule` in `namespace` at `now`, and its reason.
pub fn covering<'a>(
    windows: &'a [Maintenance],
    rule: &str,
    namespace: &str,
    now: Timestamp,
) -> Option<(&'a Maintenance, String)> {
    windows.iter().find_map(|w| {
        let until = w.open_until(now).filter(|_| w.covers(rule, namespace))?;
        Some((w, w.reason(until, now)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn saturday_night(scope: Scope) -> Maintenance {
        Maintenance {
            name: "db-upgrade".into(),
            scope,
            when: When::Weekly {
                day: 5,
                from: 2 * 60,
                to: 4 * 60,
            },
        }
    }

    #[test]
    fn a_weekly_window_is_open_on_its_day_between_from_and_to_only() {
        let w = saturday_night(Scope::Global);
        // 2026-11-28 is a Saturday.
        assert_eq!(w.open_until(at("2026-11-28T01:59:59Z")), None);
        assert_eq!(
            w.open_until(at("2026-11-28T02:00:00Z")),
            Some(at("2026-11-28T04:00:00Z"))
        );
        assert_eq!(
            w.open_until(at("2026-11-28T04:00:00Z")),
            None,
            "to excluded"
        );
        assert_eq!(w.open_until(at("2026-11-29T03:00:00Z")), None, "Sunday");
        assert!(
            w.open_until(at("2026-12-05T03:00:00Z")).is_some(),
            "next week"
        );
    }

    #[test]
    fn a_one_off_window_includes_its_start_and_excludes_its_end() {
        let w = Maintenance {
            name: "move".into(),
            scope: Scope::Global,
            when: When::Once {
                start: at("2026-12-01T22:00:00Z"),
                end: at("2026-12-02T01:30:00Z"),
            },
        };
        assert_eq!(w.open_until(at("2026-12-01T21:59:59Z")), None);
        let now = at("2026-12-01T22:00:00Z");
        let until = w.open_until(now).unwrap();
        assert_eq!(
            w.reason(until, now),
            "maintenance window move until 2026-12-02 01:30 UTC"
        );
        assert_eq!(w.open_until(at("2026-12-02T01:30:00Z")), None);
    }

    #[test]
    fn a_window_covers_only_its_scope_and_says_when_it_ends() {
        let ws = vec![saturday_night(Scope::Namespace("payments".into()))];
        let now = at("2026-11-28T03:10:00Z");
        assert_eq!(
            covering(&ws, "high-error-rate", "python-services", now),
            None
        );
        let (_, why) = covering(&ws, "high-error-rate", "payments", now).unwrap();
        assert_eq!(why, "maintenance window db-upgrade until 04:00 UTC");
        let ws = vec![saturday_night(Scope::Rule("high-error-rate".into()))];
        assert!(covering(&ws, "high-error-rate", "anything", now).is_some());
        assert!(covering(&ws, "other", "anything", now).is_none());
    }
}
