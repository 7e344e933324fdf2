//! The timeline entry: what happened to an incident, one readable line, and the values behind it.

use serde::{Deserialize, Serialize};

use crate::domain::time::Timestamp;

/// A timeline entry: what happened and the values behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When.
    pub at: Timestamp,
    /// Short kind (`opened`, `step_started`, `refused`, …).
    pub kind: String,
    /// One readable line.
    pub message: String,
    /// The values behind the decision.
    pub data: serde_json::Value,
}

impl Entry {
    /// An entry of `kind` at `at`.
    pub(crate) fn new(
        at: Timestamp,
        kind: &str,
        message: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Entry {
            at,
            kind: kind.to_string(),
            message: message.into(),
            data,
        }
    }
}
