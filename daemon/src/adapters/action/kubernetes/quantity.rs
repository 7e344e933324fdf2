//! Kubernetes resource quantities (`100m`, `0.5`, `512Mi`, `1G`): parsed to an exact integer
//! of thousandths, compared, and written back in canonical form the way the API server
//! canonicalises them (binary suffixes stay binary, decimal stay decimal, `0.1` → `100m`).

/// A quantity in thousandths of the unit (millicores, millibytes), and its suffix family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    /// Value × 1000.
    pub milli: i128,
    /// Written with a binary suffix (Ki, Mi, …).
    pub binary: bool,
}

const BINARY: &[(&str, u32)] = &[
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
const DECIMAL: &[(&str, u32)] = &[
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

impl Quantity {
    /// Parses `123`, `1.5`, `100m`, `512Mi`, `2G`, `1e3`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a quantity (e.g. 250m, 1.5, 512Mi, 2Gi)");
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(split);
        if num.is_empty() || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int = int.trim_start_matches('+');
        // The integer part is bounded by i128 (below): a canonical form of any quantity parsed
        // here reads back.
        if frac.len() > 9 {
            return Err(bad());
        }
        let digits: i128 = format!("{int}{frac}").parse().map_err(|_| bad())?;
        let scale = 10i128.pow(frac.len() as u32);
        // value = digits / scale; milli = value × 1000 × multiplier
        let (mul_num, mul_den, binary): (i128, i128, bool) = if suffix.is_empty() {
            (1000, 1, false)
        } else if suffix == "m" {
            (1, 1, false)
        } else if let Some((_, p)) = BINARY.iter().find(|(n, _)| *n == suffix) {
            (1000 * (1i128 << p), 1, true)
        } else if let Some((_, p)) = DECIMAL.iter().find(|(n, _)| *n == suffix) {
            (1000 * 10i128.pow(*p), 1, false)
        } else if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
            let e: u32 = exp.parse().map_err(|_| bad())?;
            if e > 18 {
                return Err(bad());
            }
            (1000 * 10i128.pow(e), 1, false)
        } else {
            return Err(bad());
        };
        // A quantity is read from the API server's answers too (a container's current
        // resources): digits × an exbi multiplier can pass i128, which is an error, not a panic.
        let total = digits
            .checked_mul(mul_num)
            .ok_or_else(|| format!("{s:?} is too large a quantity"))?;
        if total % (scale * mul_den) != 0 {
            return Err(format!("{s:?} is finer than a thousandth (1m)"));
        }
        Ok(Self {
            milli: total / (scale * mul_den),
            binary,
        })
    }

    /// The canonical spelling.
    pub fn canonical(&self) -> String {
        let m = self.milli;
        if m == 0 {
            return "0".into();
        }
        if m % 1000 != 0 {
            return format!("{m}m");
        }
        let v = m / 1000;
        if self.binary {
            for (name, p) in BINARY.iter().rev() {
                let unit = 1i128 << p;
                if v % unit == 0 {
                    return format!("{}{name}", v / unit);
                }
            }
        } else {
            for (name, p) in DECIMAL.iter().rev() {
                let unit = 10i128.pow(*p);
                if v % unit == 0 {
                    return format!("{}{name}", v / unit);
                }
            }
        }
        v.to_string()
    }

    /// `self` grown by `percent` (rounded up to a whole unit of its family: 1m for CPU-sized
    /// values, 1Mi for binary memory, 1 otherwise).
    /// Saturates instead of overflowing (an absurd current value read from the API server then
    /// exceeds any step's `max` and is refused).
    pub fn grown(&self, percent: u32) -> Self {
        let step: i128 = if self.binary && self.milli >= 1000 << 20 {
            1000 << 20
        } else if self.milli % 1000 == 0 && self.milli >= 1000 * 1000 {
            1000
        } else {
            1
        };
        let unit = 100 * step;
        let v = self
            .milli
            .checked_mul(100 + percent as i128)
            .and_then(|raw| raw.checked_add(unit - 1))
            .map_or(i128::MAX, |raw| raw / unit * step);
        Self {
            milli: v,
            binary: self.binary,
        }
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        Quantity::parse(s).unwrap().canonical()
    }

    #[test]
    fn canonical_forms_match_the_api_server() {
        assert_eq!(c("0.1"), "100m");
        assert_eq!(c("100m"), "100m");
        assert_eq!(c("1000m"), "1");
        assert_eq!(c("1.5"), "1500m");
        assert_eq!(c("512Mi"), "512Mi");
        assert_eq!(c("1024Mi"), "1Gi");
        assert_eq!(c("1536Mi"), "1536Mi");
        assert_eq!(c("1G"), "1G");
        assert_eq!(c("1000M"), "1G");
        assert_eq!(c("2e3"), "2k");
        assert_eq!(c("0"), "0");
    }

    #[test]
    fn compares_across_suffixes() {
        assert!(Quantity::parse("1Gi").unwrap().milli > Quantity::parse("1G").unwrap().milli);
        assert!(Quantity::parse("500m").unwrap().milli < Quantity::parse("1").unwrap().milli);
        assert_eq!(
            Quantity::parse("0.5").unwrap().milli,
            Quantity::parse("500m").unwrap().milli
        );
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in ["", "abc", "1.2.3", "5Xi", "-1", "1.0001m", "12e40"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_quantity_past_i128_is_an_error_and_growing_a_huge_one_saturates() {
        // Found by tests/it/fuzz_responses.rs: a container's resources as the API server
        // answered them overflowed i128 (a panic in the action) before the check.
        for huge in [
            "99999999999999999999Ei",
            "99999999999999999999.999999999e18",
        ] {
            let e = Quantity::parse(huge).unwrap_err();
            assert!(e.contains("too large"), "{e}");
        }
        let big = Quantity::parse("99999999999999999999G").unwrap();
        assert!(big.grown(400).milli > big.milli);
        let max = Quantity {
            milli: i128::MAX / 2,
            binary: true,
        };
        assert_eq!(max.grown(1).milli, i128::MAX);
    }

    #[test]
    fn grows_by_a_percentage_in_whole_units() {
        let q = Quantity::parse("256Mi").unwrap().grown(50);
        assert_eq!(q.canonical(), "384Mi");
        assert_eq!(
            Quantity::parse("500m").unwrap().grown(50).canonical(),
            "750m"
        );
        assert_eq!(
            Quantity::parse("333m").unwrap().grown(10).canonical(),
            "367m"
        );
    }
}
