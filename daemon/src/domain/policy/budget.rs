//! Rate budgets over sliding windows: pure checks over counts the store supplies.

use serde::Serialize;

use super::limits::Window;

/// One budget scope and its use in the current window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetUse {
    /// Scope key (`action:restart:deployment/ns/name`, `rule:x`, `namespace:ns`, `global`).
    pub key: String,
    /// The limit.
    pub window: Window,
    /// Actions already counted in the window.
    pub used: u32,
}

impl BudgetUse {
    /// Whether one more action fits.
    pub fn allows_one_more(&self) -> bool {
        self.used < self.window.max
    }
    /// Human text: `action:restart:deployment/x/y 3/3 per 1h`.
    pub fn describe(&self) -> String {
        format!(
            "{} {}/{} per {}",
            self.key,
            self.used,
            self.window.max,
            crate::domain::time::fmt_duration(self.window.per)
        )
    }
}

/// The first exhausted budget, if any.
pub fn first_exhausted(uses: &[BudgetUse]) -> Option<&BudgetUse> {
    uses.iter().find(|u| !u.allows_one_more())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn use_(key: &str, max: u32, used: u32) -> BudgetUse {
        BudgetUse {
            key: key.into(),
            window: Window {
                max,
                per: Duration::from_secs(3600),
            },
            used,
        }
    }

    #[test]
    fn third_restart_in_an_hour_is_allowed_the_fourth_is_not() {
        assert!(first_exhausted(&[use_("action:restart", 3, 2)]).is_none());
        let uses = [use_("global", 20, 5), use_("action:restart", 3, 3)];
        let hit = first_exhausted(&uses).unwrap();
        assert_eq!(hit.key, "action:restart");
        assert_eq!(hit.describe(), "action:restart 3/3 per 1h");
    }
}
