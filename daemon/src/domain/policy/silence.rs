//! `silence:`: the Alertmanager silences a policy asks for while its ladder acts, and whether a
//! human's silence holds the ladder.

use std::time::Duration;

/// Default `silence.for`: short, so a silence remedyd forgets (a crash) lapses soon on its own.
pub const DEFAULT_SILENCE_FOR: Duration = Duration::from_secs(10 * 60);
/// Default `silence.max`: an hour of automation without a human hearing of it is the most the
/// runbook allows; past it the silence is not renewed and the normal routing pages.
pub const DEFAULT_SILENCE_MAX: Duration = Duration::from_secs(3600);

/// A policy's `silence:` (opt-in): while its ladder acts, the incident's alerts are silenced in
/// Alertmanager; the silence ends when it escalates or resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SilencePolicy {
    /// How long each silence (and each renewal) lasts (`for`).
    pub for_: Duration,
    /// The most silence one incident gets, from its first silence (`max`).
    pub max: Duration,
    /// What a human's silence on the incident's alerts does (`respect_human_silences`).
    pub human: HumanSilences,
}

impl Default for SilencePolicy {
    fn default() -> Self {
        Self {
            for_: DEFAULT_SILENCE_FOR,
            max: DEFAULT_SILENCE_MAX,
            human: HumanSilences::Hold,
        }
    }
}

/// `respect_human_silences`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HumanSilences {
    /// A human silenced the alerts: a human is on it; the ladder holds until the silence ends.
    #[default]
    Hold,
    /// The ladder goes on regardless.
    Ignore,
}

impl HumanSilences {
    /// Parses the policy's spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "hold" => Ok(Self::Hold),
            "ignore" => Ok(Self::Ignore),
            other => Err(format!(
                "respect_human_silences {other:?} is not one of hold, ignore"
            )),
        }
    }
}
