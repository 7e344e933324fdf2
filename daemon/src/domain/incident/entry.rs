//! The timeline entry: what happened to an incident, one readable line, and the values behind it.
//!
//! An entry's kind is an [`EntryKind`]: one variant per kind this version writes, stored and
//! served as the same snake_case strings as before (`"step_ok"`), so stored timelines, the API's
//! JSON and pages are unchanged.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::time::Timestamp;

/// A timeline entry: what happened and the values behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When.
    pub at: Timestamp,
    /// What happened (`opened`, `step_started`, `refused`, …).
    pub kind: EntryKind,
    /// One readable line.
    pub message: String,
    /// The values behind the decision.
    pub data: serde_json::Value,
}

impl Entry {
    /// An entry of `kind` at `at`.
    pub(crate) fn new(
        at: Timestamp,
        kind: EntryKind,
        message: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Entry {
            at,
            kind,
            message: message.into(),
            data,
        }
    }
}

/// Declares [`EntryKind`] with its stored names, so a variant and its name are written once.
macro_rules! entry_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)+) => {
        /// What a timeline entry records. Serialized as its snake_case name (`as_str`).
        ///
        /// A kind this version does not know (a row written by a newer version, or a kind an
        /// older one wrote and this one no longer does) is read as [`EntryKind::Other`], kept
        /// and written back unchanged: the timeline is the incident's record, so an unknown
        /// kind must neither fail the read of the whole timeline nor lose the entry. Reports
        /// show such an entry by its message.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EntryKind {
            $($(#[$doc])* $variant,)+
            /// A kind this version does not write (read from the store).
            Other(OtherKind),
        }

        impl EntryKind {
            /// Every kind this version writes, in declaration order.
            pub const ALL: &'static [EntryKind] = &[$(EntryKind::$variant,)+];

            /// The stored name (`step_ok`).
            pub fn as_str(&self) -> &str {
                match self {
                    $(EntryKind::$variant => $name,)+
                    EntryKind::Other(o) => &o.0,
                }
            }

            /// The kind of a stored name; a name this version does not know is `Other`.
            pub fn parse(name: &str) -> Self {
                match name {
                    $($name => EntryKind::$variant,)+
                    other => EntryKind::Other(OtherKind(other.to_string())),
                }
            }
        }
    };
}

entry_kinds! {
    /// The incident opened.
    Opened = "opened",
    /// Waiting for the alert's `for` before acting.
    Waiting = "waiting",
    /// The alert still fires after its `for`: acting.
    ForElapsed = "for_elapsed",
    /// Another alert joined the incident.
    AlertJoined = "alert_joined",
    /// One of its alerts resolved (others still fire).
    AlertResolved = "alert_resolved",
    /// A higher level fires; it applies if it still fires after its `for`.
    UpgradePending = "upgrade_pending",
    /// A higher level's ladder supersedes pending steps.
    Superseded = "superseded",
    /// A step started.
    StepStarted = "step_started",
    /// A step succeeded.
    StepOk = "step_ok",
    /// A step failed.
    StepFailed = "step_failed",
    /// A step's precondition refused it.
    StepRefused = "step_refused",
    /// A step stopped before any change: someone else's rollout is in progress; it is retried.
    StepHeld = "step_held",
    /// The hold is over (the rollout finished): the held step ran.
    HoldOver = "hold_over",
    /// A GitOps reconciler put back what a step changed (seen while verifying).
    Reverted = "reverted",
    /// A step was interrupted by a restart; its outcome is unknown.
    StepInterrupted = "step_interrupted",
    /// A step finished with no verification to run.
    StepFinished = "step_finished",
    /// Verifying a step.
    Verifying = "verifying",
    /// One verification probe.
    Probe = "probe",
    /// A verification probe had no data.
    ProbeNoData = "probe_no_data",
    /// Verification passed.
    Verified = "verified",
    /// Verification failed.
    VerificationFailed = "verification_failed",
    /// Verification had no data at its deadline.
    VerificationNoData = "verification_no_data",
    /// A gate held the step (target busy).
    Held = "held",
    /// A pause suspended the ladder.
    Suspended = "suspended",
    /// The pause was lifted; the ladder continues.
    Resumed = "resumed",
    /// A gate refused the step (breaker, budget, namespace).
    Refused = "refused",
    /// Handed to a human.
    Escalated = "escalated",
    /// A breaker opened (written by the engine).
    BreakerOpened = "breaker_opened",
    /// None of its alerts heard of for `stale_after`.
    Stale = "stale",
    /// An alert of a stale incident was heard of again.
    HeardAgain = "heard_again",
    /// Its alerts resolved: the incident resolved.
    Resolved = "resolved",
    /// A person resolved the incident.
    ResolvedByHand = "resolved_by_hand",
    /// An update went to the routes paged (every `update_every` while it is open).
    UpdateSent = "update_sent",
    /// Its alerts were silenced in Alertmanager while the ladder acts (policy `silence:`).
    Silenced = "silenced",
    /// Its silence's end was moved on.
    SilenceRenewed = "silence_renewed",
    /// Its silence was expired (escalated, resolved) or reached the policy's `max`.
    SilenceExpired = "silence_expired",
    /// A silence request to Alertmanager failed (remediation goes on).
    SilenceFailed = "silence_failed",
    /// A human's silence on its alerts holds the ladder.
    HeldByHumanSilence = "held_by_human_silence",
    /// A step waits for people to approve it.
    ApprovalRequested = "approval_requested",
    /// A person approved or denied a step (who, when, through which channel, with what comment).
    ApprovalDecided = "approval_decided",
    /// Nobody decided a step's approval in time (its `on_timeout` follows).
    ApprovalTimedOut = "approval_timed_out",
}

/// The name of a kind this version does not write, kept as read. Only [`EntryKind::parse`] makes
/// one, so `Other` never holds a known name and equal kinds compare equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OtherKind(String);

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EntryKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EntryKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(EntryKind::parse(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_serde_and_as_str() {
        for kind in EntryKind::ALL {
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(&serde_json::from_str::<EntryKind>(&json).unwrap(), kind);
            assert_eq!(&EntryKind::parse(kind.as_str()), kind);
            assert!(!matches!(kind, EntryKind::Other(_)));
        }
        assert_eq!(EntryKind::ALL.len(), 41);
        assert_eq!(EntryKind::StepOk.as_str(), "step_ok");
        assert_eq!(EntryKind::BreakerOpened.to_string(), "breaker_opened");
    }

    #[test]
    fn an_unknown_kind_is_kept_and_written_back_unchanged() {
        let stored = serde_json::json!({"at": Timestamp(0), "kind": "rollout_paused", "message": "m", "data": {"x": 1}});
        let e: Entry = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(e.kind.as_str(), "rollout_paused");
        assert!(matches!(e.kind, EntryKind::Other(_)));
        assert_eq!(serde_json::to_value(&e).unwrap(), stored);
    }

    #[test]
    fn a_known_kind_read_from_the_store_is_its_variant() {
        let e: Entry = serde_json::from_value(
            serde_json::json!({"at": 0, "kind": "escalated", "message": "", "data": null}),
        )
        .unwrap();
        assert_eq!(e.kind, EntryKind::Escalated);
    }
}
