//! Human approval of a step (`approve:` on a step): the pending request as stored, and the pure
//! rule that takes one person's decision. The store runs [`Approval::decide`] inside one
//! transaction that only writes while the row is still pending (compare-and-set), so two replicas
//! receiving the same click decide once.

use serde::{Deserialize, Serialize};

use crate::domain::time::Timestamp;

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a decision.
    Pending,
    /// Approved by enough people: the step may run.
    Approved,
    /// Denied by one person: the incident escalates.
    Denied,
    /// Nobody decided before the deadline: the step's `on_timeout` applies.
    TimedOut,
    /// The incident moved on while it was pending (resolved, a higher level's ladder, by hand).
    Void,
}

impl ApprovalState {
    /// Stored and reported spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::TimedOut => "timed_out",
            Self::Void => "void",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Denied,
            Self::TimedOut,
            Self::Void,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Through which channel a decision came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// `POST /api/v1/incidents/{id}/approval` with a token.
    Api,
    /// A button of the Slack message.
    Slack,
    /// The dashboard's form.
    Dashboard,
}

impl Channel {
    /// Reported spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Slack => "slack",
            Self::Dashboard => "dashboard",
        }
    }
}

/// Approve or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The step may run.
    Approve,
    /// It must not.
    Deny,
}

impl Verdict {
    /// Parses `approve` or `deny`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "approve" => Ok(Self::Approve),
            "deny" => Ok(Self::Deny),
            other => Err(format!("unknown decision {other:?}; valid: approve, deny")),
        }
    }
    /// Reported spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// One person's decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The approver, as written on the allowlist.
    pub by: String,
    /// Where it came from.
    pub channel: Channel,
    /// When it was taken.
    pub at: Timestamp,
    /// Free text (may be empty).
    #[serde(default)]
    pub comment: String,
    /// Approve or deny.
    pub decision: Verdict,
}

/// A step waiting for people, as stored (one per incident, ladder and step).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// `INC-2026-0042/1/0`: incident, ladder, step index ([`Approval::key`]).
    pub id: String,
    /// Incident id.
    pub incident: String,
    /// The ladder (escalation level) of the step.
    pub ladder: u8,
    /// Step index in its ladder.
    pub step: usize,
    /// Step name.
    pub step_name: String,
    /// When it was asked.
    pub requested_at: Timestamp,
    /// Decisions at or after this are refused; the engine then applies `on_timeout`.
    pub deadline: Timestamp,
    /// Approvals needed (2 with `two_person`).
    pub required: u32,
    /// Who may decide: names or Slack user ids.
    pub approvers: Vec<String>,
    /// Where it stands.
    pub state: ApprovalState,
    /// Decisions so far, oldest first.
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

/// Why a decision was not taken; each maps to one HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not on the step's allowlist (403).
    #[error("{by:?} is not an approver of step {step:?}; approvers: {approvers}")]
    NotApprover {
        /// Who tried.
        by: String,
        /// The step.
        step: String,
        /// The allowlist, comma-separated.
        approvers: String,
    },
    /// Already decided, timed out, or void (409).
    #[error("the approval of step {step:?} is already {state}")]
    AlreadyDecided {
        /// The step.
        step: String,
        /// Its state, spelled as stored.
        state: &'static str,
    },
    /// The deadline passed (409).
    #[error("the approval of step {step:?} timed out at {deadline}; decisions are no longer taken")]
    Late {
        /// The step.
        step: String,
        /// Its deadline.
        deadline: Timestamp,
    },
    /// The same person approved before; two-person needs someone else (409).
    #[error("{by:?} already approved step {step:?}; a second, different approver is needed")]
    SamePerson {
        /// Who.
        by: String,
        /// The step.
        step: String,
    },
}

/// What a taken decision did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The approval is final: approved or denied.
    Final(ApprovalState),
    /// Recorded; `have` of `need` approvals so far.
    Waiting {
        /// Approvals so far.
        have: u32,
        /// Approvals needed.
        need: u32,
    },
}

impl Approval {
    /// The id of the approval of (incident, ladder, step).
    pub fn key(incident: &str, ladder: u8, step: usize) -> String {
        format!("{incident}/{ladder}/{step}")
    }

    /// The allowlist entry matching one of `names` (a person may be known by a name and a Slack
    /// user id), compared without case.
    pub fn approver(&self, names: &[&str]) -> Option<String> {
        self.approvers
            .iter()
            .find(|a| {
                names
                    .iter()
                    .any(|n| !n.is_empty() && a.eq_ignore_ascii_case(n))
            })
            .cloned()
    }

    /// Approvals recorded so far.
    pub fn approvals(&self) -> u32 {
        self.decisions
            .iter()
            .filter(|d| d.decision == Verdict::Approve)
            .count() as u32
    }

    /// Takes one decision at `now`: refused when late (at or after the deadline), not pending,
    /// from someone not on the allowlist, or a second approval by the same person. A deny is
    /// final at once; approvals are final when `required` different people approved.
    pub fn decide(&mut self, mut d: Decision, now: Timestamp) -> Result<Taken, Refused> {
        let step = self.step_name.clone();
        if self.state != ApprovalState::Pending {
            return Err(Refused::AlreadyDecided {
                step,
                state: self.state.as_str(),
            });
        }
        if now >= self.deadline {
            return Err(Refused::Late {
                step,
                deadline: self.deadline,
            });
        }
        let Some(by) = self.approver(&[d.by.as_str()]) else {
            return Err(Refused::NotApprover {
                by: d.by,
                step,
                approvers: self.approvers.join(", "),
            });
        };
        if self.decisions.iter().any(|x| x.by == by) {
            return Err(Refused::SamePerson { by, step });
        }
        d.by = by;
        d.at = now;
        let verdict = d.decision;
        self.decisions.push(d);
        match verdict {
            Verdict::Deny => self.state = ApprovalState::Denied,
            Verdict::Approve if self.approvals() >= self.required => {
                self.state = ApprovalState::Approved
            }
            Verdict::Approve => {
                return Ok(Taken::Waiting {
                    have: self.approvals(),
                    need: self.required,
                });
            }
        }
        Ok(Taken::Final(self.state))
    }

    /// One line per decision: `approved by alice via slack at T: comment`.
    pub fn lines(&self) -> Vec<String> {
        self.decisions.iter().map(Decision::line).collect()
    }
}

impl Decision {
    /// `approved by alice via slack at T ("comment")`.
    pub fn line(&self) -> String {
        let what = match self.decision {
            Verdict::Approve => "approved",
            Verdict::Deny => "denied",
        };
        let comment = if self.comment.is_empty() {
            String::new()
        } else {
            format!(" ({:?})", self.comment)
        };
        format!(
            "{what} by {} via {} at {}{comment}",
            self.by,
            self.channel.as_str(),
            self.at
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(required: u32) -> Approval {
        Approval {
            id: Approval::key("INC-2026-0001", 1, 0),
            incident: "INC-2026-0001".into(),
            ladder: 1,
            step: 0,
            step_name: "restart".into(),
            requested_at: Timestamp(0),
            deadline: Timestamp(60_000),
            required,
            approvers: vec!["alice".into(), "U024BE7LH".into(), "bob".into()],
            state: ApprovalState::Pending,
            decisions: Vec::new(),
        }
    }

    fn by(who: &str, v: Verdict) -> Decision {
        Decision {
            by: who.into(),
            channel: Channel::Api,
            at: Timestamp(0),
            comment: String::new(),
            decision: v,
        }
    }

    #[test]
    fn one_approval_decides_a_one_person_step_and_a_second_decision_is_refused() {
        let mut a = pending(1);
        let t = a.decide(by("ALICE", Verdict::Approve), Timestamp(10));
        assert_eq!(t, Ok(Taken::Final(ApprovalState::Approved)));
        assert_eq!(a.decisions[0].by, "alice", "recorded as on the allowlist");
        assert_eq!(a.decisions[0].at, Timestamp(10));
        let again = a.decide(by("bob", Verdict::Deny), Timestamp(11));
        assert!(
            matches!(
                again,
                Err(Refused::AlreadyDecided {
                    state: "approved",
                    ..
                })
            ),
            "{again:?}"
        );
    }

    #[test]
    fn two_person_needs_two_different_approvers() {
        let mut a = pending(2);
        assert_eq!(
            a.decide(by("alice", Verdict::Approve), Timestamp(1)),
            Ok(Taken::Waiting { have: 1, need: 2 })
        );
        let same = a.decide(by("alice", Verdict::Approve), Timestamp(2));
        assert!(matches!(same, Err(Refused::SamePerson { .. })), "{same:?}");
        assert_eq!(a.state, ApprovalState::Pending);
        assert_eq!(
            a.decide(by("U024BE7LH", Verdict::Approve), Timestamp(3)),
            Ok(Taken::Final(ApprovalState::Approved))
        );
    }

    #[test]
    fn one_deny_is_final_even_after_a_first_approval() {
        let mut a = pending(2);
        a.decide(by("alice", Verdict::Approve), Timestamp(1))
            .unwrap();
        assert_eq!(
            a.decide(by("bob", Verdict::Deny), Timestamp(2)),
            Ok(Taken::Final(ApprovalState::Denied))
        );
    }

    #[test]
    fn strangers_and_late_decisions_are_refused_and_change_nothing() {
        let mut a = pending(1);
        let e = a.decide(by("mallory", Verdict::Approve), Timestamp(1));
        assert_eq!(
            e.unwrap_err().to_string(),
            "\"mallory\" is not an approver of step \"restart\"; approvers: alice, U024BE7LH, bob"
        );
        let late = a.decide(by("alice", Verdict::Approve), Timestamp(60_000));
        assert!(matches!(late, Err(Refused::Late { .. })), "{late:?}");
        assert_eq!(a.state, ApprovalState::Pending);
        assert!(a.decisions.is_empty());
    }
}
