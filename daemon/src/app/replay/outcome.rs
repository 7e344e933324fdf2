//! What happened to one incident, in the terms replay compares: opened or not, the steps
//! started, the routes paged, the budgets that refused a step, and how it ended. Built the same
//! way from the recorded store and from a replay, so that the two compare field by field.

use serde::Serialize;

use crate::domain::incident::{Entry, EntryKind, Incident};
use crate::domain::time::Timestamp;

/// One incident's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// Incident id (the recorded one; a replay numbers its own).
    pub id: String,
    /// Rule that opened it.
    pub rule: String,
    /// `kind/namespace/name`.
    pub target: String,
    /// Highest level reached.
    pub level: u8,
    /// When it opened.
    pub opened_at: Timestamp,
    /// Status at the end of the period (`open`, `verifying`, `escalated`, `resolved`, …).
    pub status: String,
    /// Steps started, in order (in dry-run: planned, nothing sent).
    pub steps: Vec<String>,
    /// Routes paged (triggers), in order.
    pub pages: Vec<String>,
    /// Steps a budget refused: the refusal's reason, as the timeline says it.
    pub budgets_hit: Vec<String>,
    /// Steps that asked for approval (`approve:`), in order, and what came of each.
    pub approvals: Vec<StepApproval>,
}

/// What came of one step's request for approval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepApproval {
    /// The step.
    pub step: String,
    /// How it ended ([`ApprovalResult`]).
    pub result: ApprovalResult,
    /// Each decision: `approved by alice via slack at T ("comment")`.
    pub decisions: Vec<String>,
    /// When it was decided or timed out; none while still waiting.
    pub at: Option<Timestamp>,
}

/// How a request for approval ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalResult {
    /// Approved (in a replay: by the recorded decisions, fed at their recorded times).
    Approved,
    /// Denied.
    Denied,
    /// Nobody decided by the deadline (in a replay: no recorded decision matched; the step
    /// would wait for approval until then).
    TimedOut,
    /// Still waiting at the end of the period.
    Waiting,
}

impl ApprovalResult {
    /// Reported spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::TimedOut => "timed_out",
            Self::Waiting => "waiting",
        }
    }
}

/// The requests for approval in a timeline, and what came of each. The decisions of one
/// approval are recorded together, when the engine applied it (the same entry time).
fn approvals(timeline: &[Entry]) -> Vec<StepApproval> {
    let mut out: Vec<StepApproval> = Vec::new();
    for e in timeline {
        let step = e.data["step"].as_str().unwrap_or_default().to_string();
        let awaiting = out.iter().rposition(|a| {
            a.step == step && (a.result == ApprovalResult::Waiting || a.at == Some(e.at))
        });
        match (&e.kind, awaiting) {
            (EntryKind::ApprovalRequested, _) => out.push(StepApproval {
                step,
                result: ApprovalResult::Waiting,
                decisions: Vec::new(),
                at: None,
            }),
            (EntryKind::ApprovalDecided, Some(i)) => {
                let a = &mut out[i];
                let prefix = format!("step {step} ");
                a.decisions.push(
                    e.message
                        .strip_prefix(&prefix)
                        .unwrap_or(&e.message)
                        .to_string(),
                );
                a.at = Some(e.at);
                a.result = if e.data["decision"] == "deny" || a.result == ApprovalResult::Denied {
                    ApprovalResult::Denied
                } else {
                    ApprovalResult::Approved
                };
            }
            (EntryKind::ApprovalTimedOut, Some(i)) => {
                out[i].result = ApprovalResult::TimedOut;
                out[i].at = Some(e.at);
            }
            _ => {}
        }
    }
    out
}

impl Outcome {
    /// The outcome of `inc` from its timeline.
    pub fn of(inc: &Incident, timeline: &[Entry]) -> Self {
        let steps = timeline
            .iter()
            .filter(|e| e.kind == EntryKind::StepStarted)
            .map(|e| step_name(&e.message))
            .collect();
        let budgets_hit = timeline
            .iter()
            .filter(|e| e.kind == EntryKind::Refused && e.data["kind"] == "budget")
            .map(|e| e.message.clone())
            .collect();
        Self {
            id: inc.id.clone(),
            rule: inc.rule.clone(),
            target: inc.target.key(),
            level: inc.level,
            opened_at: inc.opened_at,
            status: inc.status().as_str().to_string(),
            steps,
            pages: inc.paged.clone(),
            budgets_hit,
            approvals: approvals(timeline),
        }
    }

    /// The (rule, target) an incident is compared under.
    pub fn key(&self) -> (&str, &str) {
        (&self.rule, &self.target)
    }
}

/// `step restart (http) started …` → `restart`.
fn step_name(message: &str) -> String {
    message
        .strip_prefix("step ")
        .and_then(|m| m.split(' ').next())
        .unwrap_or(message)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_named_from_its_timeline_message() {
        assert_eq!(
            step_name("step restart (kube_rollout_restart) started (dry-run: recorded, not sent)"),
            "restart"
        );
        assert_eq!(step_name("odd"), "odd");
    }
}
