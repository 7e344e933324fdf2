//! Alertmanager silences tied to the ladder. The decisions are here, pure: when the incident's
//! silence is created (its first remediation step is claimed, not in dry-run), renewed (halfway
//! to its `endsAt`, never past the policy's `max`), and expired (it escalates, is suspended,
//! goes stale or resolves); what a request's result changes; and a human's silence holding the
//! ladder. The engine makes the requests (`engine/silences.rs`, `adapters/silence.rs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Effects, EntryKind, Incident, Phase, record};
use crate::domain::policy::{Policy, SilencePolicy, Step, Verify};
use crate::domain::time::{Timestamp, fmt_duration};

/// After a failed create or renewal, the next try: soon enough that a brief Alertmanager outage
/// costs little silence, rare enough that an Alertmanager that is down is not hammered.
pub const SILENCE_RETRY: Duration = Duration::from_secs(30);

/// One silence remedyd created: for which alert, its id, and the Alertmanager that answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceRef {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// Alertmanager's silence id.
    pub id: String,
    /// The Alertmanager that has it (renewed and expired there first).
    pub url: String,
}

/// The incident's silences, stored with it so a restart renews or expires them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceState {
    /// When silencing began (the policy's `max` counts from here).
    pub since: Timestamp,
    /// The silences created, one per alert.
    #[serde(default)]
    pub ids: Vec<SilenceRef>,
    /// The `endsAt` last set.
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    /// When the next create or renewal is due.
    pub next: Timestamp,
    /// The last request failed (its failure is recorded once, not on every retry).
    #[serde(default)]
    pub failing: bool,
    /// Over: expired, or past `max`; never silenced again in this incident.
    #[serde(default)]
    pub over: bool,
}

/// What the engine must ask Alertmanager now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SilenceOp {
    /// Silence each alert of the incident until `ends_at`.
    Create {
        /// `endsAt`.
        ends_at: Timestamp,
    },
    /// Move the silences' `endsAt`.
    Renew {
        /// `endsAt`.
        ends_at: Timestamp,
    },
    /// Expire the silences now.
    Expire {
        /// Why, in words.
        reason: String,
    },
    /// `max` is reached: not renewed; the silence ended at its last `endsAt` (no request).
    Lapse,
}

impl SilenceOp {
    /// The operation's name, for the timeline and the log.
    pub fn as_str(&self) -> &'static str {
        match self {
            SilenceOp::Create { .. } => "create",
            SilenceOp::Renew { .. } => "renew",
            SilenceOp::Expire { .. } => "expire",
            SilenceOp::Lapse => "lapse",
        }
    }
}

/// A human's silence on one of the incident's alerts (not one of remedyd's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HumanSilence {
    /// Silence id.
    pub id: String,
    /// `createdBy`.
    pub created_by: String,
    /// `endsAt`, as Alertmanager wrote it.
    pub ends_at: String,
    /// `comment`.
    pub comment: String,
}

/// Whether a step is a remediation (it has a verification): evidence only reads.
fn remediation(step: &Step) -> bool {
    step.verify != Verify::None
}

// === impl Incident: silences ===

impl Incident {
    /// A step was claimed: its first remediation, for real (not in dry-run), starts silencing
    /// when the policy opts in. Evidence only reads, and a dry run changes nothing, so neither
    /// takes the humans' pages away.
    pub(super) fn begin_silence(
        &mut self,
        policy: &Policy,
        step: Option<&Step>,
        dry_run: bool,
        now: Timestamp,
    ) {
        if policy.silence.is_some()
            && self.silence.is_none()
            && !dry_run
            && step.is_some_and(remediation)
        {
            self.silence = Some(SilenceState {
                since: now,
                ids: Vec::new(),
                ends_at: None,
                next: now,
                failing: false,
                over: false,
            });
        }
    }

    /// What must be asked of Alertmanager now, if anything.
    pub fn silence_due(&self, spec: &SilencePolicy, now: Timestamp) -> Option<SilenceOp> {
        let s = self.silence.as_ref().filter(|s| !s.over)?;
        let why = match &self.phase {
            Phase::Escalated { .. } => {
                Some("the incident escalated: the humans are paged as usual")
            }
            Phase::Suspended { .. } => Some("the ladder is suspended by a pause"),
            Phase::Resolved => Some("the incident resolved"),
            _ if self.stale_since.is_some() => Some("the incident is stale"),
            _ => None,
        };
        if let Some(why) = why {
            return Some(SilenceOp::Expire {
                reason: why.to_string(),
            });
        }
        if now < s.next {
            return None;
        }
        let cap = s.since.plus(spec.max);
        if now >= cap {
            return Some(SilenceOp::Lapse);
        }
        let ends_at = now.plus(spec.for_).min(cap);
        if s.ids.is_empty() {
            Some(SilenceOp::Create { ends_at })
        } else if s.ends_at.is_some_and(|e| e >= ends_at) {
            None
        } else {
            Some(SilenceOp::Renew { ends_at })
        }
    }

    /// What came of `op`: the silences (created or renewed; the ones expired), or why it failed.
    /// A failure never holds the ladder; it is recorded once until a request succeeds again.
    pub fn silence_done(
        &mut self,
        op: &SilenceOp,
        result: Result<Vec<SilenceRef>, String>,
        spec: &SilencePolicy,
        now: Timestamp,
    ) -> Effects {
        let mut fx = Vec::new();
        let Some(s) = self.silence.as_mut() else {
            return fx;
        };
        let ids = |r: &[SilenceRef]| r.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        match (op, result) {
            (SilenceOp::Create { ends_at } | SilenceOp::Renew { ends_at }, Ok(refs)) => {
                let created = matches!(op, SilenceOp::Create { .. });
                let (kind, what) = if created {
                    (EntryKind::Silenced, "silenced in Alertmanager")
                } else {
                    (EntryKind::SilenceRenewed, "silence renewed")
                };
                fx.push(record(
                    now,
                    kind,
                    format!(
                        "{what} until {ends_at} ({} alert(s); at most {} in all, until {})",
                        refs.len(),
                        fmt_duration(spec.max),
                        s.since.plus(spec.max)
                    ),
                    serde_json::json!({"ids": ids(&refs), "ends_at": ends_at, "silences": refs}),
                ));
                s.ids = refs;
                s.ends_at = Some(*ends_at);
                s.failing = false;
                // Renewed halfway to its end: one failed renewal still leaves time to retry.
                s.next = now.plus(ends_at.since(now) / 2);
            }
            (SilenceOp::Expire { reason }, Ok(refs)) => {
                s.over = true;
                if !refs.is_empty() {
                    s.ends_at = Some(now);
                    fx.push(record(
                        now,
                        EntryKind::SilenceExpired,
                        format!("silence expired: {reason}"),
                        serde_json::json!({"ids": ids(&refs), "reason": reason}),
                    ));
                }
            }
            (SilenceOp::Lapse, _) => {
                s.over = true;
                fx.push(record(
                    now,
                    EntryKind::SilenceExpired,
                    format!(
                        "silence not renewed: the policy's max {} is reached; it ended at {}",
                        fmt_duration(spec.max),
                        s.ends_at.map(|e| e.to_string()).unwrap_or_default()
                    ),
                    serde_json::json!({"ids": ids(&s.ids), "reason": "max"}),
                ));
            }
            (op, Err(error)) => {
                let expire = matches!(op, SilenceOp::Expire { .. });
                if expire {
                    // It lapses at its `endsAt` on its own (at most `for` from now).
                    s.over = true;
                } else {
                    s.next = now.plus(SILENCE_RETRY);
                }
                if !s.failing || expire {
                    let then = if expire {
                        format!(
                            "it ends on its own at {}",
                            s.ends_at.map(|e| e.to_string()).unwrap_or_default()
                        )
                    } else {
                        format!(
                            "retrying every {}; remediation goes on",
                            fmt_duration(SILENCE_RETRY)
                        )
                    };
                    fx.push(record(
                        now,
                        EntryKind::SilenceFailed,
                        format!("silence {} failed: {error}; {then}", op.as_str()),
                        serde_json::json!({"op": op.as_str(), "error": error}),
                    ));
                }
                s.failing = !expire;
            }
        }
        self.stamped(now, fx)
    }

    /// Humans silenced the incident's alerts and the policy respects that: the ladder holds ("a
    /// human is on it") until their silences end; recorded once per set of silences.
    pub fn held_by_human(&mut self, silences: &[HumanSilence], now: Timestamp) -> Effects {
        let mut fx = Vec::new();
        let Some(first) = silences.first() else {
            return fx;
        };
        let ids: Vec<&str> = silences.iter().map(|s| s.id.as_str()).collect();
        let reason = format!(
            "a human is on it: the alerts are silenced in Alertmanager by {} until {} (silence {}: {:?}); the ladder holds until the silence ends",
            first.created_by,
            first.ends_at,
            ids.join(", "),
            first.comment
        );
        if self.phase
            != (Phase::Held {
                reason: reason.clone(),
            })
        {
            fx.push(record(
                now,
                EntryKind::HeldByHumanSilence,
                reason.clone(),
                serde_json::json!({"silences": ids, "created_by": first.created_by, "ends_at": first.ends_at}),
            ));
            self.phase = Phase::Held { reason };
        }
        self.stamped(now, fx)
    }

    /// The ids of remedyd's own live silences (excluded when looking for a human's).
    pub fn own_silences(&self) -> Vec<String> {
        self.silence
            .iter()
            .flat_map(|s| s.ids.iter().map(|r| r.id.clone()))
            .collect()
    }
}

#[cfg(test)]
#[path = "silence_tests.rs"]
mod tests;
