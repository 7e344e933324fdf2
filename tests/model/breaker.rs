//! The reference breaker: the state machine of the semantics, fed with the failures, successes
//! and trials the model classifies itself (evidence, dry-run and precondition refusals never
//! count), compared with the engine's breaker records after every commit.

use remedyd::domain::policy::BreakerConfig;
use remedyd::domain::policy::breaker::{self, BreakerRecord, BreakerState};
use remedyd::domain::time::Timestamp;

/// A breaker's state as the reference sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum St {
    /// Steps run.
    Closed,
    /// Steps are refused (cool-down, or a trial running).
    Open,
    /// The next remediation step is the trial.
    HalfOpen,
    /// A released trial's cool-down: the semantics allow either open or half-open here (counted
    /// from the trial's start or from its release).
    OpenOrHalfOpen,
}

impl St {
    /// Whether the engine's state is one this allows.
    pub fn allows(self, engine: BreakerState) -> bool {
        matches!(
            (self, engine),
            (St::Closed, BreakerState::Closed)
                | (St::Open, BreakerState::Open { .. })
                | (St::HalfOpen, BreakerState::HalfOpen)
                | (
                    St::OpenOrHalfOpen,
                    BreakerState::Open { .. } | BreakerState::HalfOpen
                )
        )
    }
}

/// The step holding a half-open breaker's trial.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Incident id (empty when adopted from the engine's record).
    pub incident: String,
    /// Ladder of the step.
    pub ladder: u8,
    /// Step index.
    pub step: usize,
    /// When it started.
    pub since: Timestamp,
    /// Taken over from the engine's record (which names the incident, not the step).
    pub adopted: bool,
}

/// One reference breaker.
#[derive(Clone, Debug)]
pub struct RefBreaker {
    /// Settings.
    pub cfg: BreakerConfig,
    failures: Vec<Timestamp>,
    reset_at: Option<Timestamp>,
    opened_at: Option<Timestamp>,
    /// The running trial.
    pub trial: Option<Trial>,
    released: Option<(Timestamp, Timestamp)>,
    /// Another step's counted failure while open, K or more in the window: the semantics do not
    /// say whether it reopens with a fresh cool-down (ending a running trial) or changes
    /// nothing, so the model follows the engine's choice.
    pub ambiguous: bool,
}

impl RefBreaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            failures: Vec::new(),
            reset_at: None,
            opened_at: None,
            trial: None,
            released: None,
            ambiguous: false,
        }
    }

    /// Counted failures in the window since the last reset, at `now`.
    pub fn count(&self, now: Timestamp) -> usize {
        let since = match self.reset_at {
            Some(r) if r > now.minus(self.cfg.within) => r,
            _ => now.minus(self.cfg.within),
        };
        self.failures.iter().filter(|t| **t > since).count()
    }

    /// The state at `now`.
    pub fn state(&self, now: Timestamp) -> St {
        let Some(at) = self.opened_at else {
            return St::Closed;
        };
        if now < at.plus(self.cfg.cooldown) || self.trial.is_some() {
            return St::Open;
        }
        match self.released {
            // Released "after a cool-down": counted from the trial's start or from its release.
            Some((_, release)) if now < release.plus(self.cfg.cooldown) => St::OpenOrHalfOpen,
            _ => St::HalfOpen,
        }
    }

    /// A remediation step starts; returns whether it takes the trial.
    pub fn start(&mut self, trial: Trial, now: Timestamp) -> bool {
        match self.state(now) {
            St::HalfOpen | St::OpenOrHalfOpen => {
                self.trial = Some(trial);
                self.released = None;
                self.ambiguous = false;
                true
            }
            St::Closed | St::Open => false,
        }
    }

    /// Whether this step holds the trial.
    pub fn is_trial(&self, incident: &str, ladder: u8, step: usize) -> bool {
        self.trial.as_ref().is_some_and(|t| {
            t.incident == incident && ((t.ladder == ladder && t.step == step) || t.adopted)
        })
    }

    /// A counted failure. `at_once`: permission denied on the action×target breaker.
    pub fn failure(&mut self, now: Timestamp, at_once: bool, of_trial: bool) {
        self.failures.push(now);
        let open = match self.opened_at {
            // Open: the trial's failure reopens it (a fresh cool-down); another step's failure
            // may or may not give one.
            Some(_) => {
                if !of_trial && self.count(now) >= self.cfg.failures as usize {
                    self.ambiguous = true;
                }
                of_trial
            }
            // Closed: opens at the K-th counted failure in the window, or at once on a denial.
            None => at_once || self.count(now) >= self.cfg.failures as usize,
        };
        if open {
            self.opened_at = Some(now);
            self.trial = None;
            self.released = None;
            self.ambiguous = false;
        }
    }

    /// A verified remediation: the trial's success closes the breaker.
    pub fn success(&mut self, now: Timestamp, of_trial: bool) {
        if of_trial {
            self.opened_at = None;
            self.trial = None;
            self.released = None;
            self.ambiguous = false;
            self.reset_at = Some(now);
        }
    }

    /// The trial ended with neither success nor counted failure: half-open again at once
    /// (`at_once`, a precondition refusal) or after a cool-down.
    pub fn release(&mut self, now: Timestamp, at_once: bool) {
        if let Some(t) = self.trial.take() {
            self.released = (!at_once).then_some((t.since, now));
        }
    }

    /// Adopts the engine's record (after a known-open defect made them differ).
    pub fn adopt(&mut self, rec: &BreakerRecord, now: Timestamp) {
        self.opened_at = rec.opened_at;
        self.reset_at = rec.reset_at;
        self.released = None;
        self.ambiguous = false;
        self.trial = match (rec.trial_since, breaker::state(rec, now, &self.cfg)) {
            (Some(since), BreakerState::Open { .. }) => Some(Trial {
                incident: rec.trial_by.clone().unwrap_or_default(),
                ladder: 0,
                step: 0,
                since,
                adopted: true,
            }),
            _ => None,
        };
        if rec.opened_at.is_none() {
            self.failures
                .retain(|t| rec.reset_at.is_none_or(|r| *t > r));
        }
    }
}
