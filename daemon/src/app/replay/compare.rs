//! What differs between two sets of incident outcomes over the same signals: the recorded ones
//! (or a replay of the current rules) against a replay of the candidate rules.
//!
//! Incidents are paired by (rule, target) in the order they opened: the first recorded
//! `high-error-rate` incident on `deployment/shop/checkout` with the first replayed one, and so
//! on. An incident left without a partner opened on one side only.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::outcome::Outcome;

/// Each side's incidents under one (rule, target), in opening order.
type Sides<'a> = (Vec<&'a Outcome>, Vec<&'a Outcome>);

/// The differences, from `before` (what happened, or the baseline) to `after` (the candidate).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Diff {
    /// Opened before, not with the candidate.
    pub not_opened: Vec<Outcome>,
    /// Opened with the candidate only.
    pub opened: Vec<Outcome>,
    /// Opened on both sides, but with different steps, pages, budgets hit, level or end.
    pub changed: Vec<Change>,
    /// Paired incidents with nothing different.
    pub same: usize,
}

/// One paired incident that differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// The incident before (its id is the recorded one when comparing with the store).
    pub before: Outcome,
    /// The candidate's.
    pub after: Outcome,
    /// The fields that differ, in the order `steps`, `pages`, `budgets_hit`, `level`, `status`.
    pub fields: Vec<Field>,
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Field {
    /// `steps`, `pages`, `budgets_hit`, `level` or `status`.
    pub field: &'static str,
    /// Its value before.
    pub before: Value,
    /// Its value with the candidate.
    pub after: Value,
}

impl Diff {
    /// Whether the candidate changes nothing.
    pub fn is_empty(&self) -> bool {
        self.not_opened.is_empty() && self.opened.is_empty() && self.changed.is_empty()
    }
}

/// Compares `before` with `after`.
pub fn compare(before: &[Outcome], after: &[Outcome]) -> Diff {
    let mut by_key: BTreeMap<(&str, &str), Sides<'_>> = BTreeMap::new();
    for o in before {
        by_key.entry(o.key()).or_default().0.push(o);
    }
    for o in after {
        by_key.entry(o.key()).or_default().1.push(o);
    }
    let mut diff = Diff::default();
    for (b, a) in by_key.into_values() {
        for i in 0..b.len().max(a.len()) {
            match (b.get(i), a.get(i)) {
                (Some(b), Some(a)) => {
                    let fields = fields(b, a);
                    if fields.is_empty() {
                        diff.same += 1;
                    } else {
                        diff.changed.push(Change {
                            before: (*b).clone(),
                            after: (*a).clone(),
                            fields,
                        });
                    }
                }
                (Some(b), None) => diff.not_opened.push((*b).clone()),
                (None, Some(a)) => diff.opened.push((*a).clone()),
                (None, None) => {}
            }
        }
    }
    diff.not_opened.sort_by_key(|o| o.opened_at);
    diff.opened.sort_by_key(|o| o.opened_at);
    diff.changed.sort_by_key(|c| c.before.opened_at);
    diff
}

fn fields(b: &Outcome, a: &Outcome) -> Vec<Field> {
    let mut out = Vec::new();
    let mut cmp = |field: &'static str, before: Value, after: Value| {
        if before != after {
            out.push(Field {
                field,
                before,
                after,
            });
        }
    };
    cmp("steps", b.steps.clone().into(), a.steps.clone().into());
    cmp("pages", b.pages.clone().into(), a.pages.clone().into());
    cmp(
        "budgets_hit",
        b.budgets_hit.clone().into(),
        a.budgets_hit.clone().into(),
    );
    cmp("level", b.level.into(), a.level.into());
    cmp("status", b.status.clone().into(), a.status.clone().into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::Timestamp;

    fn outcome(id: &str, target: &str, at: i64, steps: &[&str], pages: &[&str]) -> Outcome {
        Outcome {
            id: id.into(),
            rule: "high-error-rate".into(),
            target: target.into(),
            level: 1,
            opened_at: Timestamp(at),
            status: "resolved".into(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            pages: pages.iter().map(|s| s.to_string()).collect(),
            budgets_hit: Vec::new(),
            approvals: Vec::new(),
        }
    }

    #[test]
    fn incidents_pair_by_rule_and_target_in_order_and_only_differences_are_listed() {
        let before = [
            outcome("A", "deployment/shop/a", 1, &["restart"], &[]),
            outcome("B", "deployment/shop/a", 2, &["restart"], &[]),
            outcome("C", "deployment/shop/c", 3, &["restart"], &[]),
        ];
        let after = [
            outcome("X", "deployment/shop/a", 1, &["restart"], &[]),
            outcome("Y", "deployment/shop/a", 2, &[], &["oncall"]),
            outcome("Z", "deployment/shop/z", 4, &[], &[]),
        ];
        let d = compare(&before, &after);
        assert_eq!(d.same, 1);
        assert_eq!(
            d.not_opened.iter().map(|o| &o.id).collect::<Vec<_>>(),
            ["C"]
        );
        assert_eq!(d.opened.iter().map(|o| &o.id).collect::<Vec<_>>(), ["Z"]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].before.id, "B");
        let names: Vec<_> = d.changed[0].fields.iter().map(|f| f.field).collect();
        assert_eq!(names, ["steps", "pages"]);
        assert_eq!(d.changed[0].fields[1].after, serde_json::json!(["oncall"]));
        assert!(!d.is_empty());
        assert!(compare(&before, &before).is_empty());
    }
}
