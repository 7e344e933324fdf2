//! Polled rules: a PromQL query on an interval, thresholds per level, and hysteresis.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::domain::diag::Diagnostics;

/// Which side of the bound fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Direction {
    /// Fires when the value is above the bound.
    Above,
    /// Fires when the value is below the bound.
    Below,
}

/// One level's threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// The level.
    pub level: u8,
    /// Side.
    pub direction: Direction,
    /// Fires past this value.
    pub bound: f64,
    /// Once at this level, clears only past this value (hysteresis); equals `bound` when unset.
    pub clear: f64,
}

/// A threshold as written: `{level: 1, above: 0.02, clear: 0.015}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThreshold {
    level: Spanned<u8>,
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    clear: Option<f64>,
}

/// Compiles thresholds, highest level first.
pub fn compile(file: &str, raw: &[RawThreshold], diag: &mut Diagnostics) -> Vec<Threshold> {
    let mut out: Vec<Threshold> = Vec::new();
    for t in raw {
        let line = t.level.referenced.line();
        let level = t.level.value;
        if !(1..=3).contains(&level) {
            diag.push(
                file,
                line,
                "levels.level",
                format!("level {level} is out of range; valid: 1, 2, 3"),
            );
        }
        let (direction, bound) = match (t.above, t.below) {
            (Some(a), None) => (Direction::Above, a),
            (None, Some(b)) => (Direction::Below, b),
            _ => {
                diag.push(
                    file,
                    line,
                    "levels",
                    format!("level {level}: set exactly one of `above` or `below`"),
                );
                continue;
            }
        };
        let clear = t.clear.unwrap_or(bound);
        let wrong_side = match direction {
            Direction::Above => clear > bound,
            Direction::Below => clear < bound,
        };
        if wrong_side || !bound.is_finite() || !clear.is_finite() {
            diag.push(
                file,
                line,
                "levels.clear",
                format!(
                    "level {level}: clear {clear} must be on the quiet side of the bound {bound} ({} it)",
                    if direction == Direction::Above { "at or below" } else { "at or above" }
                ),
            );
        }
        if out.iter().any(|o| o.level == level) {
            diag.push(
                file,
                line,
                "levels.level",
                format!("level {level} appears twice"),
            );
        }
        out.push(Threshold {
            level,
            direction,
            bound,
            clear,
        });
    }
    if raw.is_empty() {
        diag.push(
            file,
            0,
            "levels",
            "a polled rule needs at least one level threshold",
        );
    }
    out.sort_by_key(|t| std::cmp::Reverse(t.level));
    out
}

/// The level of a value given the current level: the highest level whose bound it passes, or
/// whose level it already holds without having crossed back past the clear bound. NaN is 0.
pub fn level_for(thresholds: &[Threshold], current: u8, value: f64) -> u8 {
    if value.is_nan() {
        return 0;
    }
    for t in thresholds {
        let (fires, holds) = match t.direction {
            Direction::Above => (value > t.bound, value > t.clear),
            Direction::Below => (value < t.bound, value < t.clear),
        };
        if fires || (current >= t.level && holds) {
            return t.level;
        }
    }
    0
}

/// Checks a PromQL expression, with `{{...}}` templates replaced by a placeholder first.
pub fn check_promql(query: &str) -> Result<(), String> {
    let mut q = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(i) = rest.find("{{") {
        q.push_str(&rest[..i]);
        match rest[i..].find("}}") {
            Some(j) => {
                q.push('x');
                rest = &rest[i + j + 2..];
            }
            None => return Err("unclosed `{{`".into()),
        }
    }
    q.push_str(rest);
    promql_parser::parser::parse(&q)
        .map(|_| ())
        .map_err(|e| format!("invalid PromQL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> Vec<Threshold> {
        vec![
            Threshold {
                level: 2,
                direction: Direction::Above,
                bound: 0.05,
                clear: 0.045,
            },
            Threshold {
                level: 1,
                direction: Direction::Above,
                bound: 0.02,
                clear: 0.015,
            },
        ]
    }

    #[test]
    fn runbook_error_rates_map_to_levels() {
        assert_eq!(level_for(&levels(), 0, 0.01), 0);
        assert_eq!(level_for(&levels(), 0, 0.03), 1);
        assert_eq!(level_for(&levels(), 0, 0.08), 2);
    }

    #[test]
    fn a_value_hovering_at_the_bound_does_not_flap() {
        let mut level = 0;
        for v in [0.021, 0.019, 0.0201, 0.018, 0.016] {
            level = level_for(&levels(), level, v);
            assert_eq!(level, 1, "at {v}");
        }
        assert_eq!(level_for(&levels(), 1, 0.014), 0);
        assert_eq!(level_for(&levels(), 2, 0.047), 2);
        assert_eq!(level_for(&levels(), 2, 0.04), 1);
    }

    #[test]
    fn nan_is_no_level() {
        assert_eq!(level_for(&levels(), 2, f64::NAN), 0);
    }

    #[test]
    fn promql_is_checked_with_templates_in_place() {
        assert!(
            check_promql(r#"rate(http_requests_total{service="{{target.name}}"}[5m]) > 0"#).is_ok()
        );
        assert!(
            check_promql("sum(rate(x[5m])")
                .unwrap_err()
                .starts_with("invalid PromQL")
        );
    }
}
