//! The daily digest (the runbook's daily maintenance): once a day at `digest.at` (UTC), a summary
//! of the last 24 hours goes to `digest.route` through the durable outbox — incidents and what
//! became of them, the actions taken, breakers open, the services restarted most, and budgets
//! nearly spent. [`build`] is pure; [`gather`] reads the store; [`run`] is the scheduler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::narrative;
use super::{Notification, NotificationKind};
use crate::clock::{Clock, Timestamp, fmt_duration};
use crate::engine::SharedRuleset;
use crate::incident::{Entry, Incident};
use crate::policy::breaker::{self, BreakerState};
use crate::policy::{DigestSchedule, Window};
use crate::ruleset::Ruleset;
use crate::store::{Commit, Store, StoreError};

/// The window a digest covers.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// At most this many incidents are read for one digest.
const MAX_INCIDENTS: usize = 500;
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

/// Builds the digest notification. Pure: the same input gives the same text.
pub fn build(input: &Input) -> Notification {
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
            .any(|e| e.kind == "escalated" && e.at >= since);
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
            if escalated && inc.status() != crate::incident::Status::Escalated {
                ", escalated"
            } else {
                ""
            }
        ));
        for e in timeline.iter().filter(|e| e.at >= since) {
            if !matches!(
                e.kind.as_str(),
                "step_ok" | "step_failed" | "step_interrupted"
            ) {
                continue;
            }
            t.actions += 1;
            let dry = narrative::is_dry_run(e);
            if dry {
                t.dry_run += 1;
            }
            if e.kind == "step_failed" {
                t.actions_failed += 1;
            }
            if e.kind == "step_ok"
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
    let day = &now.to_rfc3339()[..10];
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
    Notification {
        event: NotificationKind::Digest,
        dedup_key: format!("remedyd/digest/{day}"),
        incident: format!("DIGEST-{day}"),
        priority: "P5".into(),
        severity: "info".into(),
        status: "digest".into(),
        service: "remedyd".into(),
        namespace: String::new(),
        rule: String::new(),
        level: 0,
        started_at: since,
        resolved_at: None,
        description: headline,
        impact: String::new(),
        reason: "daily digest".into(),
        actions_taken: digest.actions.clone(),
        updates: digest.incidents.clone(),
        values: digest.budgets_nearly_spent.clone(),
        resolution: None,
        history: Vec::new(),
        root_cause: String::new(),
        digest: Some(digest),
    }
}

/// The budget scopes remedyd can name from its configuration and these incidents, with their use
/// now: global, each allowed namespace, each rule, and action × target for every step of these
/// incidents' policies. (The store has no list of keys; scopes of other targets are not shown.)
pub async fn budget_rows(
    store: &dyn Store,
    rs: &Ruleset,
    incidents: &[Incident],
    now: Timestamp,
) -> Result<Vec<BudgetRow>, StoreError> {
    let mut keys: BTreeMap<String, Window> = BTreeMap::new();
    keys.insert("global".into(), rs.limits.global);
    for ns in &rs.limits.namespaces {
        keys.insert(format!("namespace:{ns}"), rs.limits.namespace);
    }
    for r in &rs.rules {
        keys.insert(format!("rule:{}", r.name), rs.limits.rule);
    }
    for inc in incidents {
        let Some(p) = rs.policies.get(&inc.policy) else {
            continue;
        };
        for ladder in p.levels.values() {
            for s in &ladder.steps {
                keys.entry(format!("action:{}:{}", s.action, inc.target.key()))
                    .or_insert(s.budget.unwrap_or(rs.limits.action_target));
            }
        }
    }
    let mut rows = Vec::with_capacity(keys.len());
    for (key, window) in keys {
        let since = now.minus(window.per);
        let used = store.count_uses(&key, since, false).await?;
        let dry_run = store.count_uses(&key, since, true).await?;
        rows.push(BudgetRow {
            key,
            window,
            used,
            dry_run,
        });
    }
    Ok(rows)
}

/// Every breaker the store knows, with its state now.
pub async fn breaker_states(
    store: &dyn Store,
    rs: &Ruleset,
    now: Timestamp,
) -> Result<Vec<(String, BreakerState)>, StoreError> {
    Ok(store
        .breakers()
        .await?
        .into_iter()
        .map(|(k, rec)| {
            let cfg = if k == "global" {
                rs.limits.breaker_global
            } else {
                rs.limits.breaker_target
            };
            let s = breaker::state(&rec, now, &cfg);
            (k, s)
        })
        .collect())
}

/// Reads what a digest at `now` needs from the store.
pub async fn gather(store: &dyn Store, rs: &Ruleset, now: Timestamp) -> Result<Input, StoreError> {
    let since = now.minus(WINDOW);
    let all = store.list_incidents(None, MAX_INCIDENTS).await?;
    let truncated = all.len() == MAX_INCIDENTS;
    let mut incidents = Vec::new();
    for inc in all {
        if inc.opened_at >= since || inc.updated_at >= since || !inc.is_resolved() {
            let tl = store.timeline(&inc.id).await?;
            incidents.push((inc, tl));
        }
    }
    let list: Vec<Incident> = incidents.iter().map(|(i, _)| i.clone()).collect();
    Ok(Input {
        now,
        budgets: budget_rows(store, rs, &list, now).await?,
        breakers: breaker_states(store, rs, now).await?,
        incidents,
        truncated,
    })
}

/// The first time strictly after `now` at the schedule's time of day (UTC).
pub fn next_run(now: Timestamp, s: &DigestSchedule) -> Timestamp {
    const DAY: i64 = 86_400_000;
    let day_start = now.0 - now.0.rem_euclid(DAY);
    let at = day_start + (i64::from(s.hour) * 60 + i64::from(s.minute)) * 60_000;
    Timestamp(if at > now.0 { at } else { at + DAY })
}

/// Builds today's digest and puts it in the outbox (durable; delivered and retried like a page).
pub async fn enqueue(
    store: &dyn Store,
    rs: &Ruleset,
    route: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let n = build(&gather(store, rs, now).await?);
    let mut c = Commit::default();
    c.outbox.push((route.to_string(), n));
    store.commit(c).await
}

/// Sends the digest every day at `digest.at` while the ruleset has a `digest:` section, until
/// `cancel`. A digest time that passes while the process is down is skipped, not sent late. Run it
/// where the outbox runs (on the leader), so that several replicas send one digest.
pub async fn run(
    store: Arc<dyn Store>,
    ruleset: SharedRuleset,
    clock: Arc<dyn Clock>,
    outbox_wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut next: Option<(DigestSchedule, Timestamp)> = None;
    loop {
        let rs = ruleset.read().expect("ruleset lock").clone();
        let now = clock.now();
        match &rs.digest {
            None => next = None,
            Some(s) => {
                let at = match &next {
                    Some((prev, at)) if prev == s => *at,
                    _ => next_run(now, s),
                };
                next = Some((s.clone(), at));
                if now >= at {
                    match enqueue(&*store, &rs, &s.route, now).await {
                        Ok(()) => {
                            tracing::info!(route = %s.route, "Daily digest queued");
                            outbox_wake.notify_one();
                            next = Some((s.clone(), next_run(now, s)));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Daily digest could not be built; retrying in a minute");
                            next = Some((s.clone(), now.plus(Duration::from_secs(60))));
                        }
                    }
                }
            }
        }
        // Wake at least every 30 s: a reload may change the schedule.
        let wait = next
            .as_ref()
            .map_or(Duration::from_secs(30), |(_, at)| {
                at.since(clock.now()).min(Duration::from_secs(30))
            })
            .max(Duration::from_millis(10));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
