//! The daily digest (the runbook's daily maintenance): once a day at `digest.at` (UTC), a summary
//! of the last 24 hours goes to `digest.route` through the durable outbox — incidents and what
//! became of them, the actions taken, breakers open, the services restarted most, and budgets
//! nearly spent. This is the pure part: the digest's content and [`build`]; reading the store
//! and the scheduler are in `adapters::escalate::digest`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::narrative;
use crate::domain::incident::{Entry, EntryKind, Incident};
use crate::domain::policy::breaker::BreakerState;
use crate::domain::policy::{DigestSchedule, Window};
use crate::domain::time::{Timestamp, fmt_duration};

/// The window a digest covers.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// At most this many incidents are read for one digest.
pub const MAX_INCIDENTS: usize = 500;
/// Lists in the digest stop after this many lines (with a "… and N more" line).
const MAX_LINES: usize = 50;
/// A budget is "nearly spent" at this share of its limit (4/5).
const NEARLY: (u32, u32) = (4, 5);

/// Counts for the headline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Incidents opened in the window.
    pub opened: u32,
    /// Incidents resolved in the window.
    pub resolved: u32,
    /// Incidents in the window that were handed to a human.
    pub escalated: u32,
    /// Incidents not resolved at the end of the window.
    pub open_now: u32,
    /// Steps that finished in the window.
    pub actions: u32,
    /// Of those, failed.
    pub actions_failed: u32,
    /// Of those, dry-run (recorded, not sent).
    pub dry_run: u32,
}

/// What a digest says, as lists of lines (webhook receivers get it as JSON, Slack as sections).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// Window start.
    pub since: Timestamp,
    /// Window end (when it was built).
    pub until: Timestamp,
    /// Counts.
    pub totals: Totals,
    /// One line per incident touched in the window.
    pub incidents: Vec<String>,
    /// One line per step that finished in the window.
    pub actions: Vec<String>,
    /// Breakers open or half-open now.
    pub breakers_open: Vec<String>,
    /// Services by real restarts in the window, most first.
    pub most_restarted: Vec<String>,
    /// Budgets at 80 % or more of their limit now.
    pub budgets_nearly_spent: Vec<String>,
}

/// A budget scope and its use in its current window, in both modes.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetRow {
    /// Scope key (`global`, `namespace:…`, `rule:…`, `action:KIND:TARGET`).
    pub key: String,
    /// Its limit.
    pub window: Window,
    /// Uses in enforce mode (what the gate counts for enforced policies).
    pub used: u32,
    /// Uses recorded in dry-run mode (counted separately: dry-run never spends a real budget).
    pub dry_run: u32,
}

impl BudgetRow {
    /// The larger of the two modes' uses.
    pub fn peak(&self) -> u32 {
        self.used.max(self.dry_run)
    }
    /// At 80 % or more of the limit.
    pub fn nearly_spent(&self) -> bool {
        self.peak() * NEARLY.1 >= self.window.max * NEARLY.0
    }
}

/// Everything a digest is built from.
#[derive(Clone, Debug)]
pub struct Input {
    /// When it is built.
    pub now: Timestamp,
    /// Incidents touched in the window (opened, updated, or still open), with their timelines.
    pub incidents: Vec<(Incident, Vec<Entry>)>,
    /// Breakers by key with their state now.
    pub breakers: Vec<(String, BreakerState)>,
    /// Budget scopes and their use now.
    pub budgets: Vec<BudgetRow>,
    /// More incidents were in the window than were read.
    pub truncated: bool,
}

fn capped(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > MAX_LINES {
        let more = lines.len() - MAX_LINES;
        lines.truncate(MAX_LINES);
        lines.push(format!("… and {more} more"));
    }
    lines
}

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The digest's headline and content. Pure: the same input gives the same text
/// ([`crate::domain::notification::digest`] wraps it in a notification).
pub fn summarize(input: &Input) -> (String, Digest) {
    let now = input.now;
    let since = now.minus(WINDOW);
    let mut t = Totals::default();
    let mut incidents = Vec::new();
    let mut actions = Vec::new();
    let mut restarts: BTreeMap<String, u32> = BTreeMap::new();
    let mut list: Vec<&(Incident, Vec<Entry>)> = input.incidents.iter().collect();
    list.sort_by(|a, b| (a.0.opened_at, &a.0.id).cmp(&(b.0.opened_at, &b.0.id)));
    for (inc, timeline) in list {
        if inc.opened_at >= since {
            t.opened += 1;
        }
        let escalated = timeline
            .iter()
            .any(|e| e.kind == EntryKind::Escalated && e.at >= since);
        if escalated {
            t.escalated += 1;
        }
        let status = match inc.resolved_at {
            Some(at) if at >= since => {
                t.resolved += 1;
                format!(
                    "resolved at {} after {}",
                    at.hms(),
                    fmt_duration(at.since(inc.opened_at))
                )
            }
            Some(at) => format!("resolved at {}", narrative::datetime(at)),
            None => {
                t.open_now += 1;
                format!("{} now", inc.status().as_str())
            }
        };
        let opened = if inc.opened_at >= since {
            format!("opened {}", inc.opened_at.hms())
        } else {
            format!("opened {}", narrative::datetime(inc.opened_at))
        };
        incidents.push(format!(
            "{} {} level {} ({}): {opened}, {status}{}",
            inc.id,
            inc.target.name,
            inc.level,
            inc.rule,
            if escalated && inc.status() != crate::domain::incident::Status::Escalated {
                ", escalated"
            } else {
                ""
            }
        ));
        for e in timeline.iter().filter(|e| e.at >= since) {
            if !matches!(
                e.kind,
                EntryKind::StepOk | EntryKind::StepFailed | EntryKind::StepInterrupted
            ) {
                continue;
            }
            t.actions += 1;
            let dry = narrative::is_dry_run(e);
            if dry {
                t.dry_run += 1;
            }
            if e.kind == EntryKind::StepFailed {
                t.actions_failed += 1;
            }
            if e.kind == EntryKind::StepOk
                && !dry
                && narrative::step_of(e).is_some_and(|s| narrative::is_restart(&s))
            {
                let svc = if inc.target.namespace.is_empty() {
                    inc.target.name.clone()
                } else {
                    format!("{}/{}", inc.target.namespace, inc.target.name)
                };
                *restarts.entry(svc).or_default() += 1;
            }
            actions.push((
                e.at,
                format!("{} {} {}", e.at.hms(), inc.id, narrative::phrase(inc, e)),
            ));
        }
    }
    actions.sort_by_key(|(at, _)| *at);
    let actions: Vec<String> = actions.into_iter().map(|(_, l)| l).collect();
    let mut most: Vec<(String, u32)> = restarts.into_iter().collect();
    most.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let most_restarted: Vec<String> = most
        .iter()
        .take(5)
        .map(|(svc, n)| format!("{svc}: {}", plural(*n, "restart", "restarts")))
        .collect();
    let breakers_open: Vec<String> = input
        .breakers
        .iter()
        .filter_map(|(k, s)| match s {
            BreakerState::Closed => None,
            BreakerState::Open { until } => {
                Some(format!("{k}: open until {}", narrative::datetime(*until)))
            }
            BreakerState::HalfOpen => Some(format!("{k}: half-open (the next step is a trial)")),
        })
        .collect();
    let budgets_nearly_spent: Vec<String> = input
        .budgets
        .iter()
        .filter(|b| b.nearly_spent())
        .map(|b| {
            let (n, mode) = if b.used >= b.dry_run {
                (b.used, "")
            } else {
                (b.dry_run, " (dry-run)")
            };
            format!(
                "{}: {n}/{} per {}{mode}{}",
                b.key,
                b.window.max,
                fmt_duration(b.window.per),
                if n >= b.window.max { ", spent" } else { "" }
            )
        })
        .collect();
    let mut headline = format!(
        "Last 24 h: {} opened ({} resolved, {} escalated), {} still open; {} ({} failed{}); {}.",
        plural(t.opened, "incident", "incidents"),
        t.resolved,
        t.escalated,
        t.open_now,
        plural(t.actions, "automated action", "automated actions"),
        t.actions_failed,
        if t.dry_run > 0 {
            format!(", {} dry-run", t.dry_run)
        } else {
            String::new()
        },
        plural(breakers_open.len() as u32, "breaker open", "breakers open"),
    );
    if input.truncated {
        headline.push_str(&format!(
            " Only the {MAX_INCIDENTS} newest incidents were read."
        ));
    }
    let digest = Digest {
        since,
        until: now,
        totals: t,
        incidents: capped(incidents),
        actions: capped(actions),
        breakers_open: capped(breakers_open),
        most_restarted,
        budgets_nearly_spent: capped(budgets_nearly_spent),
    };
    (headline, digest)
}

/// The first time strictly after `now` at the schedule's time of day (UTC).
pub fn next_run(now: Timestamp, s: &DigestSchedule) -> Timestamp {
    const DAY: i64 = 86_400_000;
    let day_start = now.0 - now.0.rem_euclid(DAY);
    let at = day_start + (i64::from(s.hour) * 60 + i64::from(s.minute)) * 60_000;
    Timestamp(if at > now.0 { at } else { at + DAY })
}
