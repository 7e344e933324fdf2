//! Maintenance windows set through the API (`POST /api/v1/maintenance`): one-off or weekly
//! windows kept in the store, so that they survive restarts and every replica's engine sees them. The engine
//! turns each into the domain's [`Maintenance`] and holds incidents under it exactly as under a
//! window of a policies file.

use serde::{Deserialize, Serialize};

use crate::domain::policy::maintenance::{Maintenance, Weekly, When};
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;

/// The `ends_at` of a weekly window, which recurs until it is cancelled: 9999-12-31T23:59:59Z
/// (the last second RFC 3339 can write), so that the store's "live" filter needs no special case.
pub const RECURS: Timestamp = Timestamp(253_402_300_799_000);

/// A window to store (its id is given by the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWindow {
    /// `global`, `rule:NAME` or `namespace:NAME`.
    pub scope: String,
    /// Opens (included); for a weekly window, when it was set.
    pub starts_at: Timestamp,
    /// Closes (excluded); [`RECURS`] for a weekly window.
    pub ends_at: Timestamp,
    /// Every week at these times (as a policies file's `weekly:`), instead of once.
    pub weekly: Option<Weekly>,
    /// Why.
    pub reason: String,
    /// Who.
    pub author: String,
    /// When it was set.
    pub created_at: Timestamp,
}

/// A stored window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    /// The store's id.
    pub id: i64,
    /// `global`, `rule:NAME` or `namespace:NAME`.
    pub scope: String,
    /// Opens (included).
    pub starts_at: Timestamp,
    /// Closes (excluded); [`RECURS`] for a weekly window.
    pub ends_at: Timestamp,
    /// Every week at these times, instead of once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<Weekly>,
    /// Why.
    pub reason: String,
    /// Who.
    pub author: String,
    /// When it was set.
    pub created_at: Timestamp,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<Timestamp>,
    /// Who cancelled it.
    #[serde(default)]
    pub cancelled_by: Option<String>,
}

impl MaintenanceWindow {
    /// The stored window with its id.
    pub fn stored(id: i64, w: NewWindow) -> Self {
        Self {
            id,
            scope: w.scope,
            starts_at: w.starts_at,
            ends_at: w.ends_at,
            weekly: w.weekly,
            reason: w.reason,
            author: w.author,
            created_at: w.created_at,
            cancelled_at: None,
            cancelled_by: None,
        }
    }

    /// Neither cancelled nor ended at `now`: open, or still to come.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.cancelled_at.is_none() && self.ends_at > now
    }

    /// The domain's window, named `#ID "REASON" (by AUTHOR)`; an error naming the scope when
    /// the stored scope is not one a window can have.
    pub fn to_domain(&self) -> std::result::Result<Maintenance, String> {
        let scope: Scope = self.scope.parse()?;
        if matches!(scope, Scope::Action { .. }) {
            return Err(format!(
                "{:?}: a maintenance window covers global, rule:NAME or namespace:NAME",
                self.scope
            ));
        }
        let when = match &self.weekly {
            Some(w) => w
                .when()
                .map_err(|(field, e)| format!("weekly.{field}: {e}"))?,
            None => When::Once {
                start: self.starts_at,
                end: self.ends_at,
            },
        };
        Ok(Maintenance {
            name: format!("#{} {:?} (by {})", self.id, self.reason, self.author),
            scope,
            when,
        })
    }
}

/// What [`Store::cancel_maintenance`](super::Store::cancel_maintenance) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// No window has this id.
    Unknown,
    /// Already ended or cancelled; nothing written. The window as it stands.
    Over(MaintenanceWindow),
    /// Cancelled now; the window as it now stands.
    Done(MaintenanceWindow),
}

/// The cancel rule both stores run inside their transaction: `w` as read; a live window is
/// cancelled at `now` by `by` (returned to be written).
pub fn cancel_row(w: Option<MaintenanceWindow>, now: Timestamp, by: &str) -> Cancelled {
    match w {
        None => Cancelled::Unknown,
        Some(w) if !w.is_live(now) => Cancelled::Over(w),
        Some(mut w) => {
            w.cancelled_at = Some(now);
            w.cancelled_by = Some(by.to_string());
            Cancelled::Done(w)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(scope: &str) -> MaintenanceWindow {
        MaintenanceWindow::stored(
            7,
            NewWindow {
                scope: scope.into(),
                starts_at: Timestamp(1_000),
                ends_at: Timestamp(5_000),
                weekly: None,
                reason: "pg 17".into(),
                author: "alice".into(),
                created_at: Timestamp(500),
            },
        )
    }

    #[test]
    fn a_stored_window_becomes_a_one_off_domain_window_of_its_scope() {
        let m = window("namespace:db").to_domain().unwrap();
        assert_eq!(m.scope, Scope::namespace("db"));
        assert_eq!(m.name, "#7 \"pg 17\" (by alice)");
        assert_eq!(m.open_until(Timestamp(999)), None);
        assert_eq!(m.open_until(Timestamp(1_000)), Some(Timestamp(5_000)));
        assert!(window("action:x:y").to_domain().is_err());
        assert!(window("team:x").to_domain().is_err());
    }

    #[test]
    fn a_weekly_window_becomes_the_same_weekly_window_as_a_policies_files() {
        let mut w = window("global");
        w.ends_at = RECURS;
        w.weekly = Some(Weekly {
            day: "sat".into(),
            from: "02:00".into(),
            to: "04:00".into(),
        });
        let m = w.to_domain().unwrap();
        assert_eq!(
            m.when,
            When::Weekly {
                day: 5,
                from: 120,
                to: 240
            }
        );
        assert_eq!(RECURS.to_rfc3339(), "9999-12-31T23:59:59.000Z");
        w.weekly = Some(Weekly {
            day: "someday".into(),
            from: "02:00".into(),
            to: "04:00".into(),
        });
        assert!(w.to_domain().unwrap_err().starts_with("weekly.day: "));
    }

    #[test]
    fn only_a_live_window_is_cancelled() {
        assert_eq!(cancel_row(None, Timestamp(0), "bob"), Cancelled::Unknown);
        let Cancelled::Done(w) = cancel_row(Some(window("global")), Timestamp(2_000), "bob") else {
            panic!("a live window is cancelled");
        };
        assert_eq!(w.cancelled_at, Some(Timestamp(2_000)));
        assert_eq!(w.cancelled_by.as_deref(), Some("bob"));
        assert!(matches!(
            cancel_row(Some(w), Timestamp(2_500), "carol"),
            Cancelled::Over(_)
        ));
        assert!(matches!(
            cancel_row(Some(window("global")), Timestamp(5_000), "bob"),
            Cancelled::Over(_)
        ));
    }
}
