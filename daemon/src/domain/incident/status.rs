//! The status the API reports for an incident, one word per group of phases.

use serde::{Deserialize, Serialize};

/// The status the API reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for `for`, for its first step, or held.
    Open,
    /// A step is running or the next one is due.
    Remediating,
    /// Waiting for a step's verification.
    Verifying,
    /// Handed to a human.
    Escalated,
    /// Paused by a person; resumes on resume.
    Suspended,
    /// Over.
    Resolved,
}

impl Status {
    /// API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Remediating => "remediating",
            Status::Verifying => "verifying",
            Status::Escalated => "escalated",
            Status::Suspended => "suspended",
            Status::Resolved => "resolved",
        }
    }
    /// All, for metrics.
    pub const ALL: [Status; 6] = [
        Status::Open,
        Status::Remediating,
        Status::Verifying,
        Status::Escalated,
        Status::Suspended,
        Status::Resolved,
    ];
    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}
