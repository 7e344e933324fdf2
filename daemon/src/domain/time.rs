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
        self.with_rfc3339(|t| s.serialize_str(t))
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
        // The hot path (every stored signal and incident): `YYYY-MM-DDTHH:MM:SS[.f…]Z`.
        if let Some(ms) = fast_parse_utc(s) {
            return Ok(Self(ms));
        }
        let t = OffsetDateTime::parse(s, &Rfc3339)?;
        Ok(Self((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// Formats as RFC 3339 with millisecond precision, in UTC.
    pub fn to_rfc3339(self) -> String {
        self.with_rfc3339(str::to_owned)
    }

    /// Calls `f` with [`Self::to_rfc3339`]'s text, written on the stack for years 0 to 9999:
    /// every signal stored is encoded with its times, and `format!` was a sixth of encoding one.
    pub fn with_rfc3339<T>(self, f: impl FnOnce(&str) -> T) -> T {
        let t = self.to_datetime();
        let year = t.year();
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        if let Ok(y @ 0..=9999) = u32::try_from(year) {
            put(0, 4, y);
            put(5, 2, u8::from(t.month()).into());
            put(8, 2, t.day().into());
            put(11, 2, t.hour().into());
            put(14, 2, t.minute().into());
            put(17, 2, t.second().into());
            put(20, 3, t.millisecond().into());
            if let Ok(text) = std::str::from_utf8(&b) {
                return f(text);
            }
        }
        f(&format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            year,
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ))
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
        self.with_rfc3339(|t| f.write_str(t))
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` to milliseconds; `None` for anything else (the
/// general parser then decides).
fn fast_parse_utc(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let frac_ms = match b[19] {
        b'Z' if b.len() == 20 => 0,
        b'.' if b.len() > 21 => {
            let digits = &b[20..b.len() - 1];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            digits
                .iter()
                .take(3)
                .enumerate()
                .map(|(i, c)| i64::from(c - b'0') * [100, 10, 1][i])
                .sum()
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59
    {
        return None;
    }
    Some(((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + frac_ms)
}

/// The edge that reads the wall clock; tests use [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
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

/// Parses `90s`, `5m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 90s, 5m, 1h"))
}

/// Serde helper: durations as `5m`-style strings.
pub mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as `5m`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::domain::time::fmt_duration(*d))
    }
    /// Deserializes `5m`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
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
    fn rfc3339_is_written_as_the_formatter_writes_it_for_every_year() {
        let formatted = |t: Timestamp| {
            let d = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second(),
                d.millisecond()
            )
        };
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut cases = vec![
            Timestamp(0),
            Timestamp(-1),
            Timestamp(-62_167_219_200_000), // 0000-01-01
            Timestamp(253_402_300_799_999), // 9999-12-31T23:59:59.999
            Timestamp(253_402_300_800_000), // year 10000: the formatter's way
            Timestamp(-62_167_219_200_001), // year -1
        ];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(Timestamp(
                (x % 400_000_000_000_000) as i64 - 100_000_000_000_000,
            ));
        }
        for t in cases {
            assert_eq!(t.to_rfc3339(), formatted(t), "{}", t.0);
            assert_eq!(t.to_string(), formatted(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", formatted(t)));
        }
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
    fn fast_path_agrees_with_the_general_parser() {
        let mut x: i64 = 0x1234_5678;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // Between 1900 and 2100, to the millisecond.
            let ms = (x.rem_euclid(6_311_390_400_000)) - 2_208_988_800_000;
            let s = Timestamp(ms).to_rfc3339();
            let general = OffsetDateTime::parse(&s, &Rfc3339).unwrap();
            assert_eq!(
                fast_parse_utc(&s),
                Some((general.unix_timestamp_nanos() / 1_000_000) as i64),
                "{s}"
            );
        }
        assert_eq!(fast_parse_utc("2024-02-30T00:00:00Z"), None);
        assert_eq!(fast_parse_utc("2026-11-26T09:41:27+02:00"), None);
        assert!(Timestamp::parse_rfc3339("2026-11-26T11:41:27+02:00").is_ok());
    }

    #[test]
    fn go_zero_time_parses_before_the_epoch() {
        let zero = Timestamp::parse_rfc3339("0001-01-01T00:00:00Z").unwrap();
        assert!(zero.0 < 0);
    }
}
