//! Time as a value: the core takes `now` as an argument; only the edges read the clock.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, milliseconds since the Unix epoch (UTC). Serialized as RFC 3339 (what a
/// person reading the API or a page expects); integers are accepted too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time or milliseconds since the epoch")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v).map(Timestamp).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(|e| E::custom(format!("{v:?}: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl Timestamp {
    /// Parses RFC 3339 with any number of fraction digits, as Alertmanager sends.
    pub fn parse_rfc3339(s: &str) -> Result<Self, time::error::Parse> {
        let t = OffsetDateTime::parse(s, &Rfc3339)?;
        Ok(Self((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// Formats as RFC 3339 with millisecond precision, in UTC.
    pub fn to_rfc3339(self) -> String {
        let t = self.to_datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }

    /// The calendar year of this instant in UTC (incident ids carry it).
    pub fn year(self) -> i32 {
        self.to_datetime().year()
    }

    /// `HH:MM:SS` in UTC, for human-readable updates.
    pub fn hms(self) -> String {
        let t = self.to_datetime();
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }

    fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// This instant plus a duration (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// This instant minus a duration (saturating).
    pub fn minus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The edge that reads the wall clock; tests use [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }
}

/// A clock that moves only when told to (tests and `simulate`).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock stopped at `t`.
    pub fn new(t: Timestamp) -> Self {
        Self(std::sync::atomic::AtomicI64::new(t.0))
    }
    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.0
            .fetch_add(d.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Formats a duration the way the config spells it (`90s`, `5m`, `1h`).
pub fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alertmanager_timestamps_of_any_precision() {
        let ms = Timestamp::parse_rfc3339("2026-11-26T09:41:27.811Z").unwrap();
        let ns = Timestamp::parse_rfc3339("2026-11-26T09:41:27.811458322Z").unwrap();
        assert_eq!(ms, ns);
        assert_eq!(ms.to_rfc3339(), "2026-11-26T09:41:27.811Z");
        assert_eq!(ms.year(), 2026);
    }

    #[test]
    fn serializes_as_rfc3339_and_reads_both_forms() {
        let t = Timestamp(1_795_686_088_892);
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, "\"2026-11-26T09:41:28.892Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&s).unwrap(), t);
        assert_eq!(
            serde_json::from_str::<Timestamp>("1795686088892").unwrap(),
            t
        );
    }

    #[test]
    fn go_zero_time_parses_before_the_epoch() {
        let zero = Timestamp::parse_rfc3339("0001-01-01T00:00:00Z").unwrap();
        assert!(zero.0 < 0);
    }
}
