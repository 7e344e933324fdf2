//! `approvals:` in a `remedyd test` case: the decisions people take on steps with `approve:`,
//! each at a given time. Without one a step waits for approval until its timeout, as in
//! production. Each is checked before any case runs (every error at once, as
//! `FILE:LINE: approvals.FIELD: message`), then taken at its time through the store's
//! compare-and-set, as the API takes it (channel `api`).

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::adapters::store::{Decided, Store};
use crate::domain::approval::{Approval, Channel, Decision, Verdict};
use crate::domain::incident::Phase;
use crate::domain::time::{Timestamp, parse_duration};
use crate::load::ruleset::Ruleset;

/// One decision, as written in the test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestApproval {
    /// When (from the start of the case).
    pub at: String,
    /// The step decided, by name: a step with `approve:`.
    pub step: String,
    /// `approve` or `deny`.
    pub decision: String,
    /// Who: one of the step's `approvers`.
    pub by: String,
    /// Why (optional).
    #[serde(default)]
    pub comment: String,
    /// The incident's target (`kind/namespace/name`) when several may wait for the step.
    #[serde(default)]
    pub target: Option<String>,
}

/// A checked decision, to be taken at `at`.
pub struct Planned {
    at: Duration,
    step: String,
    verdict: Verdict,
    by: String,
    comment: String,
    target: Option<String>,
    line: u64,
    done: bool,
}

/// Checks a case's decisions against the ruleset: a time, a step with `approve:` in some
/// policy, `approve` or `deny`, someone. Every problem is returned, `FILE:LINE: FIELD: message`.
pub fn plan(
    file: &str,
    list: &[Spanned<TestApproval>],
    rs: &Ruleset,
    errors: &mut Vec<String>,
) -> Vec<Planned> {
    let mut out = Vec::new();
    for a in list {
        let line = a.referenced.line();
        let a = &a.value;
        let mut bad = |field: &str, msg: String| {
            errors.push(format!("{file}:{line}: approvals.{field}: {msg}"))
        };
        let at = parse_duration(&a.at).map_err(|e| bad("at", e)).ok();
        let verdict = Verdict::parse(&a.decision)
            .map_err(|e| bad("decision", e))
            .ok();
        let asks = rs.policies.values().any(|p| {
            p.levels
                .values()
                .flat_map(|l| l.steps.iter())
                .any(|s| s.name == a.step && s.approve.is_some())
        });
        if !asks {
            bad(
                "step",
                format!("no step {:?} with approve: in the policies", a.step),
            );
        }
        if a.by.trim().is_empty() {
            bad("by", "required: one of the step's approvers".into());
        }
        if let (Some(at), Some(verdict), true) = (at, verdict, asks) {
            out.push(Planned {
                at,
                step: a.step.clone(),
                verdict,
                by: a.by.trim().to_string(),
                comment: a.comment.clone(),
                target: a.target.clone(),
                line,
                done: false,
            });
        }
    }
    out
}

/// Takes the decisions due at `t` (now `now`) on the incidents waiting for their step. A
/// decision for a step no incident waits for, or one the step's rule refuses (not an approver,
/// too late), is a failure of the case. Returns the failures and whether any decision was taken.
pub async fn take(
    store: &dyn Store,
    planned: &mut [Planned],
    t: Duration,
    now: Timestamp,
) -> Result<(Vec<String>, bool), String> {
    let mut failures = Vec::new();
    let mut taken = false;
    for p in planned.iter_mut().filter(|p| !p.done && p.at <= t) {
        p.done = true;
        let when = crate::domain::time::fmt_duration(p.at);
        let mut waiting = Vec::new();
        for inc in store.active_incidents().await.map_err(|e| e.to_string())? {
            let Phase::AwaitingApproval { ladder, step, .. } = inc.phase else {
                continue;
            };
            if p.target.as_ref().is_some_and(|t| *t != inc.target.key()) {
                continue;
            }
            let id = Approval::key(&inc.id, ladder, step);
            if let Some(a) = store.approval(&id).await.map_err(|e| e.to_string())?
                && a.step_name == p.step
            {
                waiting.push(id);
            }
        }
        let Some(id) = waiting.first() else {
            failures.push(format!(
                "at {when}: approvals (line {}): no incident waits for approval of step {:?}",
                p.line, p.step
            ));
            continue;
        };
        let d = Decision {
            by: p.by.clone(),
            channel: Channel::Api,
            at: now,
            comment: p.comment.clone(),
            decision: p.verdict,
        };
        match store
            .decide_approval(id, d, now)
            .await
            .map_err(|e| e.to_string())?
        {
            Decided::Taken(..) => taken = true,
            Decided::Refused(r) => failures.push(format!(
                "at {when}: approvals (line {}): refused: {r}",
                p.line
            )),
            Decided::Unknown => failures.push(format!(
                "at {when}: approvals (line {}): no approval {id}",
                p.line
            )),
        }
    }
    Ok((failures, taken))
}
