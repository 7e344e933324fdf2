//! `remedyd replay`: what candidate rules and policies would have done with the signals a store
//! recorded, compared with what happened.
//!
//! - The store is only read: SQLite opened read-only, PostgreSQL in a `READ ONLY` transaction
//!   (`adapters/store/{sqlite,postgres}/history.rs`).
//! - The signals go through the real engine, in dry-run, on a manual clock, with a store of its
//!   own (`run`).
//! - Each side's incidents become [`Outcome`]s (`outcome`) and are compared (`compare`): with
//!   the recorded incidents, and with a replay of the current rules and policies, the baseline
//!   that differs from the candidate only by the change under review.
//!
//! What replay cannot know, and assumes: every step is a dry run (planned, nothing sent, never
//! failing), so a verification `resolved_within` passes only if the recorded alerts resolved in
//! time; PromQL and HTTP verifications have no data (replay asks no Prometheus of the past and
//! sends no probe); pauses, resolves by hand, maintenance windows set through the API and budgets
//! spent before the period are not in it. A step with `approve:` is decided by the decisions the
//! store recorded for the same step of the same (rule, target), at their recorded times (`run`);
//! without one it would wait for approval, and the report says so.

pub mod compare;
pub mod outcome;
pub mod run;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use self::compare::{Diff, compare};
use self::outcome::Outcome;
use crate::adapters::action::Executors;
use crate::adapters::store::History;
use crate::domain::time::{Timestamp, fmt_duration, parse_duration};
use crate::load::ruleset;

/// `remedyd replay`'s output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// The whole report as one JSON document.
    Json,
}

/// Why replay could not answer; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A bad flag or URL (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The store is missing or cannot be read (exit 1).
    #[error("{0}")]
    Store(String),
    /// The rules or policies do not load: every problem as `file:line: field: message` (exit 1,
    /// as `check`).
    #[error("{0}")]
    Rules(String),
    /// Replay's own store failed (exit 1).
    #[error("replay: {0}")]
    Run(String),
}

impl ReplayError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            ReplayError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// A rules directory and a policies directory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dirs {
    /// Rules directory.
    pub rules: PathBuf,
    /// Policies directory.
    pub policies: PathBuf,
}

/// What to replay.
#[derive(Clone, Debug)]
pub struct Request {
    /// `sqlite://PATH` or `postgres://…`.
    pub store: String,
    /// Start of the period.
    pub since: Timestamp,
    /// End of the period (now).
    pub until: Timestamp,
    /// The rules and policies under review.
    pub candidate: Dirs,
    /// The rules and policies in force (from the config), when they differ from the candidate.
    pub baseline: Option<Dirs>,
    /// Config `stale_after`.
    pub stale_after: Duration,
}

/// What replay found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Start of the period.
    pub since: Timestamp,
    /// End of the period.
    pub until: Timestamp,
    /// Signals received in the period.
    pub signals: usize,
    /// The candidate's directories.
    pub candidate: Dirs,
    /// The baseline's directories, when replayed.
    pub baseline: Option<Dirs>,
    /// Why the baseline was not replayed: its rules or policies do not load.
    pub baseline_error: Option<String>,
    /// Incidents the store recorded in the period.
    pub recorded: Vec<Outcome>,
    /// Incidents the candidate would have opened.
    pub replayed: Vec<Outcome>,
    /// From what was recorded to the candidate.
    pub vs_recorded: Diff,
    /// From a replay of the baseline to the candidate, when there is a baseline.
    pub vs_baseline: Option<Diff>,
}

/// Parses `--since`: a duration back from `now` (`7d`, `12h`) or an RFC 3339 time.
pub fn parse_since(s: &str, now: Timestamp) -> Result<Timestamp, ReplayError> {
    let at = match Timestamp::parse_rfc3339(s.trim()) {
        Ok(t) => t,
        Err(_) => now.minus(parse_duration(s).map_err(|_| {
            ReplayError::Usage(format!(
                "--since: {s:?} is neither a duration (7d, 12h, 90m) nor an RFC 3339 time (2026-11-20T00:00:00Z)"
            ))
        })?),
    };
    if at > now {
        return Err(ReplayError::Usage(format!(
            "--since: {} is in the future",
            at.to_rfc3339()
        )));
    }
    Ok(at)
}

/// Reads the store's history of the period, never writing to it.
pub async fn read_history(url: &str, since: Timestamp) -> Result<History, ReplayError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = Path::new(path);
        if !path.is_file() {
            return Err(ReplayError::Store(format!(
                "no store at {}",
                path.display()
            )));
        }
        return crate::adapters::store::sqlite::read_history(path, since)
            .map_err(|e| ReplayError::Store(format!("reading {}: {e}", path.display())));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ReplayError::Usage(format!(
            "store: {}: valid: sqlite://PATH or postgres://…",
            crate::load::config::redact_url(url)
        )));
    }
    crate::load::dsn::parse_url(url).map_err(|e| ReplayError::Usage(format!("store: {e}")))?;
    crate::adapters::store::postgres::read_history(url, since)
        .await
        .map_err(ReplayError::Store)
}

fn load(dirs: &Dirs) -> Result<ruleset::Ruleset, ReplayError> {
    ruleset::load(&dirs.rules, &dirs.policies, &Executors::builtin())
        .map_err(|d| ReplayError::Rules(format!("{d}{} error(s)", d.len())))
}

/// Replays the period with the candidate (and the baseline) and compares.
pub async fn replay(req: &Request) -> Result<Report, ReplayError> {
    // The rules first: a typo in the candidate is reported without touching the store.
    let candidate = load(&req.candidate)?;
    // The baseline is a second opinion: when the config's rules do not load (moved, or being
    // rewritten), the candidate is still compared with what happened, and the report says why
    // there is no baseline.
    let (baseline, baseline_error) = match req.baseline.as_ref().map(load) {
        Some(Ok(rs)) => (Some(rs), None),
        Some(Err(e)) => (None, Some(e.to_string())),
        None => (None, None),
    };
    let history = read_history(&req.store, req.since).await?;
    let recorded: Vec<Outcome> = history
        .incidents
        .iter()
        .map(|(inc, tl)| Outcome::of(inc, tl))
        .collect();
    let replayed = run::replay(&history, &candidate, req.stale_after, req.since, req.until)
        .await
        .map_err(ReplayError::Run)?;
    let vs_baseline = match &baseline {
        Some(rs) => {
            let base = run::replay(&history, rs, req.stale_after, req.since, req.until)
                .await
                .map_err(ReplayError::Run)?;
            Some(compare(&base, &replayed))
        }
        None => None,
    };
    Ok(Report {
        since: req.since,
        until: req.until,
        signals: history.signals.len(),
        candidate: req.candidate.clone(),
        baseline: req.baseline.clone(),
        baseline_error,
        vs_recorded: compare(&recorded, &replayed),
        recorded,
        replayed,
        vs_baseline,
    })
}

/// The report for people.
pub fn render_text(r: &Report) -> String {
    let mut out = format!(
        "replay: {} signal(s) from {} to {} ({}); {} incident(s) recorded, {} replayed with rules {} and policies {} (dry-run)\n",
        r.signals,
        r.since.to_rfc3339(),
        r.until.to_rfc3339(),
        fmt_duration(r.until.since(r.since)),
        r.recorded.len(),
        r.replayed.len(),
        r.candidate.rules.display(),
        r.candidate.policies.display(),
    );
    out.push_str(&render_diff("against what happened", &r.vs_recorded));
    out.push_str(&render_approvals(&r.replayed));
    if let (Some(b), Some(e)) = (&r.baseline, &r.baseline_error) {
        out.push_str(&format!(
            "\nnot compared with the current rules {} and policies {}: they do not load:\n{e}",
            b.rules.display(),
            b.policies.display()
        ));
    }
    if let (Some(d), Some(b)) = (&r.vs_baseline, &r.baseline) {
        out.push_str(&render_diff(
            &format!(
                "against the current rules {} and policies {} (replayed)",
                b.rules.display(),
                b.policies.display()
            ),
            d,
        ));
    }
    out
}

/// The replayed steps with `approve:`: decided by a recorded decision, or waiting for one.
fn render_approvals(replayed: &[Outcome]) -> String {
    use self::outcome::ApprovalResult;
    let mut out = String::new();
    for o in replayed {
        for a in &o.approvals {
            let what = match (a.result, a.at) {
                (ApprovalResult::Approved | ApprovalResult::Denied, _) => format!(
                    "{} by the recorded decision(s): {}",
                    a.result.as_str(),
                    a.decisions.join("; ")
                ),
                (ApprovalResult::TimedOut, Some(at)) => format!(
                    "would wait for approval: no recorded decision; timed out at {}",
                    at.to_rfc3339()
                ),
                _ => "would wait for approval: no recorded decision; still waiting at the end of the period".to_string(),
            };
            out.push_str(&format!(
                "  {} {} on {}: step {}: {what}\n",
                o.id, o.rule, o.target, a.step
            ));
        }
    }
    if out.is_empty() {
        return out;
    }
    format!("\nsteps with approve: (replayed)\n{out}")
}

fn render_diff(title: &str, d: &Diff) -> String {
    let mut out = format!(
        "\n{title}: {} would not open, {} would open, {} would change, {} the same\n",
        d.not_opened.len(),
        d.opened.len(),
        d.changed.len(),
        d.same
    );
    let line = |o: &Outcome| {
        format!(
            "{} on {} (level {}, opened {}): steps {:?}, pages {:?}",
            o.rule,
            o.target,
            o.level,
            o.opened_at.to_rfc3339(),
            o.steps,
            o.pages
        )
    };
    for o in &d.not_opened {
        out.push_str(&format!("  - would not open: {} {}\n", o.id, line(o)));
    }
    for o in &d.opened {
        out.push_str(&format!("  + would open: {}\n", line(o)));
    }
    for c in &d.changed {
        out.push_str(&format!(
            "  ~ {} {} on {} (opened {}):\n",
            c.before.id,
            c.before.rule,
            c.before.target,
            c.before.opened_at.to_rfc3339()
        ));
        for f in &c.fields {
            out.push_str(&format!("      {}: {} -> {}\n", f.field, f.before, f.after));
        }
    }
    out
}
