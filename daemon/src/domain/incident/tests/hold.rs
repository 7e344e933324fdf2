//! The hold in the pure machine: kept across its re-tries and a store round trip, ended by
//! anything but holding, and never counted as a step started or a failure.

use super::*;

fn held(inc: &mut Incident, now: i64) -> Effects {
    let (ladder, step) = start(inc, now);
    let result = StepResult::Held {
        reason: "rollout in progress: web is mid-rollout".into(),
    };
    let detail = serde_json::Value::Null;
    let ev = Event::StepFinished {
        ladder,
        step,
        result,
        detail,
    };
    inc.apply(ev, &policy(), t(now))
}

#[test]
fn a_held_step_waits_in_step_held_counts_nothing_and_survives_a_store_round_trip() {
    let (mut inc, _) = open_at(1, 0, 0);
    let fx = held(&mut inc, 1);
    assert_eq!(
        inc.phase,
        Phase::StepHeld {
            ladder: 1,
            step: 0,
            next_check: t(16)
        }
    );
    assert_eq!(inc.steps_started, 0, "a held try is no step started");
    assert_eq!(inc.status(), Status::Open);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::BreakerRelease { .. }))
    );
    assert!(
        !fx.iter()
            .any(|e| matches!(e, Effect::BreakerFailure { .. }))
    );
    assert_eq!(inc.deadline(), Some(t(16)));
    let stored: Incident = serde_json::from_value(serde_json::to_value(&inc).unwrap()).unwrap();
    assert_eq!(stored, inc, "the hold is in the incident's stored body");
    // Not due before its next check; due (the same step) at it.
    assert!(inc.due_step(&policy()).is_none());
    inc.apply(Event::Tick, &policy(), t(16));
    assert_eq!(
        inc.due_step(&policy()).map(|(l, s, _)| (l, s)),
        Some((1, 0))
    );
    assert!(inc.hold.is_some(), "kept while it is re-tried");
}

#[test]
fn a_higher_level_ends_the_hold_and_its_ladder_starts() {
    let (mut inc, _) = open_at(1, 0, 0);
    held(&mut inc, 1);
    let fired = Event::Fired {
        fingerprint: "fp2".into(),
        starts_at: t(2),
        level: 2,
        for_: Duration::ZERO,
    };
    inc.apply(fired, &policy(), t(2));
    assert_eq!(inc.ladder, 2);
    assert_eq!(inc.phase, Phase::Ready);
    assert_eq!(inc.hold, None, "the new ladder's step is not held");
}

#[test]
fn with_rollout_hold_0_the_first_hold_escalates_as_rollout_in_progress() {
    let mut p = policy();
    p.rollout_hold = Duration::ZERO;
    let (mut inc, _) = open_at(1, 0, 0);
    let (ladder, step, _) = inc.due_step(&p).unwrap();
    let started = Event::StepStarted {
        ladder,
        step,
        detail: serde_json::Value::Null,
        dry_run: false,
    };
    inc.apply(started, &p, t(1));
    let result = StepResult::Held {
        reason: "rollout in progress".into(),
    };
    let fx = inc.apply(
        Event::StepFinished {
            ladder,
            step,
            result,
            detail: serde_json::Value::Null,
        },
        &p,
        t(1),
    );
    let why = fx.iter().find_map(|e| match e {
        Effect::Page { why, .. } => Some(*why),
        _ => None,
    });
    assert_eq!(why, Some(EscalationReason::RolloutInProgress));
    assert!(matches!(inc.phase, Phase::Escalated { .. }));
    assert_eq!(inc.hold, None);
}
