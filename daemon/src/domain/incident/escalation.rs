//! Why an incident pages a human: decided where the page is (the ladder, a step, a gate, the
//! stale check), so the metric label comes from the decision and not from the page's wording.

/// Why an incident is handed to a human with a page. `as_str()` is the page's
/// `remedyd_escalations_total` label; several reasons share the `policy` label, as docs/operations.md's
/// metrics table documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EscalationReason {
    /// Every step of the ladder ran and the alert still fires.
    Exhausted,
    /// The level's ladder has no automated steps.
    NoSteps,
    /// A step failed, changed nothing or failed its verification, and its `on_failure` escalates.
    StepFailed,
    /// Verification passed, but the alert still fires at the end of the verified hold.
    StillFiring,
    /// Verification had no data and its `no_data` escalates.
    NoData,
    /// None of its alerts was heard of for `stale_after`.
    Stale,
    /// A pause suspended the ladder.
    Paused,
    /// A budget is spent.
    Budget,
    /// A breaker is open.
    Breaker,
    /// The target's namespace is not in `limits.namespaces`.
    Namespace,
    /// A person denied a step that needs approval.
    ApprovalDenied,
    /// Nobody decided a step's approval in time, and its `on_timeout` escalates.
    ApprovalTimeout,
    /// A step stayed held by someone else's rollout for the policy's `rollout_hold`.
    RolloutInProgress,
    /// A GitOps reconciler (Argo CD, Flux) put back what a step changed, seen while verifying.
    GitopsRevert,
}

impl EscalationReason {
    /// The `remedyd_escalations_total` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exhausted => "exhausted",
            Self::Paused => "paused",
            Self::Budget => "budget",
            Self::Breaker => "breaker",
            Self::Stale => "stale",
            Self::ApprovalDenied => "approval_denied",
            Self::ApprovalTimeout => "approval_timeout",
            Self::RolloutInProgress => "rollout_in_progress",
            Self::GitopsRevert => "gitops_revert",
            Self::NoSteps
            | Self::StepFailed
            | Self::StillFiring
            | Self::NoData
            | Self::Namespace => "policy",
        }
    }
}
