//! The incident machine, driven with `now` injected.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::domain::policy::gate::{Refusal, RefusalKind};
use crate::domain::policy::{Ladder, OnFailure, Policy, Step, Verify};
use crate::domain::rules::{Target, TargetKind};

fn step(name: &str, on_failure: OnFailure) -> Step {
    Step {
        name: name.into(),
        action: "test".into(),
        params: serde_json::json!({}),
        budget: None,
        verify: Verify::ResolvedWithin(Duration::from_secs(300)),
        on_failure,
        approve: None,
    }
}

/// restart → rollback at level 1 (on-call); rollback at level 2 (owner); nothing at level 3.
fn policy() -> Policy {
    let mut levels = BTreeMap::new();
    levels.insert(
        1,
        Ladder {
            steps: vec![
                step("restart", OnFailure::Next),
                step("rollback", OnFailure::Escalate),
            ],
            escalate_to: "oncall".into(),
        },
    );
    levels.insert(
        2,
        Ladder {
            steps: vec![step("rollback", OnFailure::Escalate)],
            escalate_to: "owner".into(),
        },
    );
    levels.insert(
        3,
        Ladder {
            steps: vec![],
            escalate_to: "platform".into(),
        },
    );
    Policy::with_levels("p", levels)
}

fn t(s: i64) -> Timestamp {
    Timestamp(s * 1000)
}

fn open_at(level: u8, for_s: u64, now: i64) -> (Incident, Effects) {
    Incident::open(
        "INC-2026-0001".into(),
        "r",
        &policy(),
        Target {
            kind: TargetKind::Deployment,
            namespace: "python-services".into(),
            name: "checkout".into(),
        },
        Labels::new(),
        "fp1".into(),
        t(now),
        level,
        Duration::from_secs(for_s),
        t(now),
    )
}

fn pages(fx: &Effects) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Page { route, .. } => Some(route.clone()),
            _ => None,
        })
        .collect()
}

fn start(inc: &mut Incident, now: i64) -> (u8, usize) {
    let (ladder, idx, _) = inc.due_step(&policy()).expect("a step is due");
    inc.apply(
        Event::StepStarted {
            ladder,
            step: idx,
            detail: serde_json::Value::Null,
            dry_run: false,
        },
        &policy(),
        t(now),
    );
    (ladder, idx)
}

#[test]
fn new_incident_without_for_has_its_first_step_due() {
    let (inc, fx) = open_at(1, 0, 0);
    assert_eq!(inc.status(), Status::Open);
    assert_eq!(
        inc.due_step(&policy()).map(|s| s.2.name.as_str()),
        Some("restart")
    );
    assert!(matches!(&fx[0], Effect::Record(e) if e.kind == EntryKind::Opened));
}

#[test]
fn for_delays_the_first_step_until_it_elapses() {
    let (mut inc, _) = open_at(1, 120, 0);
    assert!(inc.due_step(&policy()).is_none());
    assert_eq!(inc.deadline(), Some(t(120)));
    inc.apply(Event::Tick, &policy(), t(119));
    assert!(inc.due_step(&policy()).is_none());
    inc.apply(Event::Tick, &policy(), t(120));
    assert!(inc.due_step(&policy()).is_some());
}

#[test]
fn resolved_alert_cancels_pending_steps_and_never_acts() {
    let (mut inc, _) = open_at(1, 120, 0);
    let fx = inc.apply(
        Event::Resolved {
            fingerprint: "fp1".into(),
        },
        &policy(),
        t(30),
    );
    assert_eq!(inc.status(), Status::Resolved);
    assert!(inc.due_step(&policy()).is_none());
    assert!(
        fx.iter().any(
            |e| matches!(e, Effect::Record(e) if e.message.contains("pending steps cancelled"))
        )
    );
    // Not paged, so no resolve notification either.
    assert!(!fx.contains(&Effect::PageResolved));
}

#[test]
fn successful_step_then_resolve_passes_verification_and_closes_breakers() {
    let (mut inc, _) = open_at(1, 0, 0);
    let (ladder, step) = start(&mut inc, 1);
    assert_eq!(inc.status(), Status::Remediating);
    inc.apply(
        Event::StepFinished {
            ladder,
            step,
            result: StepResult::Ok,
            detail: serde_json::Value::Null,
        },
        &policy(),
        t(2),
    );
    assert_eq!(inc.status(), Status::Verifying);
    assert_eq!(inc.deadline(), Some(t(302)));
    let fx = inc.apply(
        Event::Resolved {
            fingerprint: "fp1".into(),
        },
        &policy(),
        t(100),
    );
    assert_eq!(inc.status(), Status::Resolved);
    assert!(fx.contains(&Effect::BreakerSuccess {
        action: "test".into()
    }));
}

#[test]
fn failed_verification_counts_against_the_breaker_and_moves_to_the_next_step() {
    let (mut inc, _) = open_at(1, 0, 0);
    let (ladder, step) = start(&mut inc, 1);
    inc.apply(
        Event::StepFinished {
            ladder,
            step,
            result: StepResult::Ok,
            detail: serde_json::Value::Null,
        },
        &policy(),
        t(2),
    );
    let fx = inc.apply(Event::Tick, &policy(), t(302));
    assert!(fx.contains(&Effect::BreakerFailure {
        action: "test".into(),
        denied: false,
    }));
    assert_eq!(
        inc.due_step(&policy()).map(|s| s.2.name.as_str()),
        Some("rollback")
    );
}

#[test]
fn exhausted_ladder_escalates_to_the_level_route() {
    let (mut inc, _) = open_at(1, 0, 0);
    for (i, now) in [(0, 1), (1, 400)] {
        let (ladder, step) = start(&mut inc, now);
        assert_eq!(step, i);
        inc.apply(
            Event::StepFinished {
                ladder,
                step,
                result: StepResult::Failed {
                    error: "boom".into(),
                    denied: false,
                },
                detail: serde_json::Value::Null,
            },
            &policy(),
            t(now + 1),
        );
    }
    // rollback has on_failure: escalate.
    assert_eq!(inc.status(), Status::Escalated);
    assert_eq!(inc.paged, vec!["oncall".to_string()]);
    let fx = inc.apply(
        Event::Resolved {
            fingerprint: "fp1".into(),
        },
        &policy(),
        t(500),
    );
    assert!(fx.contains(&Effect::PageResolved));
}

#[test]
fn a_denied_step_asks_for_its_breaker_to_open_at_once() {
    let (mut inc, _) = open_at(1, 0, 0);
    let (ladder, step) = start(&mut inc, 1);
    let fx = inc.apply(
        Event::StepFinished {
            ladder,
            step,
            result: StepResult::Failed {
                error: "403 Forbidden".into(),
                denied: true,
            },
            detail: serde_json::Value::Null,
        },
        &policy(),
        t(2),
    );
    assert!(fx.contains(&Effect::BreakerFailure {
        action: "test".into(),
        denied: true,
    }));
}

#[test]
fn higher_level_supersedes_pending_lower_steps() {
    let (mut inc, _) = open_at(1, 0, 0);
    let fx = inc.apply(
        Event::Fired {
            fingerprint: "fp2".into(),
            starts_at: t(5),
            level: 2,
            for_: Duration::ZERO,
        },
        &policy(),
        t(5),
    );
    assert_eq!(inc.level, 2);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Record(e) if e.kind == EntryKind::Superseded))
    );
    let p = policy();
    let (ladder, _, s) = inc.due_step(&p).unwrap();
    assert_eq!((ladder, s.name.as_str()), (2, "rollback"));
    // The level-1 alert resolving does not resolve the incident while level 2 fires.
    inc.apply(
        Event::Resolved {
            fingerprint: "fp1".into(),
        },
        &policy(),
        t(6),
    );
    assert_ne!(inc.status(), Status::Resolved);
    assert_eq!(inc.level, 2);
}

#[test]
fn running_step_finishes_before_the_superseding_ladder_starts() {
    let (mut inc, _) = open_at(1, 0, 0);
    let (ladder, step) = start(&mut inc, 1);
    inc.apply(
        Event::Fired {
            fingerprint: "fp2".into(),
            starts_at: t(2),
            level: 2,
            for_: Duration::ZERO,
        },
        &policy(),
        t(2),
    );
    assert!(matches!(inc.phase, Phase::Running { ladder: 1, step: 0 }));
    inc.apply(
        Event::StepFinished {
            ladder,
            step,
            result: StepResult::Ok,
            detail: serde_json::Value::Null,
        },
        &policy(),
        t(3),
    );
    assert_eq!(inc.due_step(&policy()).map(|s| (s.0, s.1)), Some((2, 0)));
}

#[test]
fn level_three_ladder_without_steps_escalates_at_once() {
    let (inc, fx) = open_at(3, 0, 0);
    assert_eq!(inc.status(), Status::Escalated);
    assert_eq!(pages(&fx), vec!["platform".to_string()]);
}

#[test]
fn busy_target_holds_once_and_pause_suspends_until_resumed() {
    let (mut inc, _) = open_at(1, 0, 0);
    let busy = Refusal {
        kind: RefusalKind::Busy,
        reason: "held: target busy with INC-2026-0002".into(),
    };
    let fx1 = inc.apply(Event::Refused(busy.clone()), &policy(), t(1));
    let fx2 = inc.apply(Event::Refused(busy), &policy(), t(2));
    assert_eq!(fx1.len(), 1);
    assert!(fx2.is_empty(), "held is recorded once");
    assert_eq!(inc.status(), Status::Open);
    assert!(inc.due_step(&policy()).is_some(), "held steps are retried");
    let fx = inc.apply(
        Event::Refused(Refusal {
            kind: RefusalKind::Paused,
            reason: "paused".into(),
        }),
        &policy(),
        t(3),
    );
    assert_eq!(inc.status(), Status::Suspended);
    assert_eq!(pages(&fx), vec!["oncall".to_string()]);
    assert!(inc.due_step(&policy()).is_none());
    inc.apply(Event::Resumed, &policy(), t(4));
    assert_eq!(
        inc.due_step(&policy()).map(|s| s.2.name.as_str()),
        Some("restart")
    );
}

#[test]
fn budget_refusal_escalates_with_the_reason() {
    let (mut inc, _) = open_at(1, 0, 0);
    let fx = inc.apply(
        Event::Refused(Refusal {
            kind: RefusalKind::Budget,
            reason: "budget spent: global 20/20 per 1h".into(),
        }),
        &policy(),
        t(1),
    );
    assert_eq!(inc.status(), Status::Escalated);
    assert!(fx.iter().any(|e| matches!(e, Effect::Page { route, reason, .. } if route == "oncall" && reason.contains("20/20"))));
}

#[test]
fn storm_refusal_escalates_without_a_page_of_its_own() {
    let (mut inc, _) = open_at(1, 0, 0);
    let fx = inc.apply(
        Event::Refused(Refusal {
            kind: RefusalKind::Storm,
            reason: "storm".into(),
        }),
        &policy(),
        t(1),
    );
    assert_eq!(inc.status(), Status::Escalated);
    assert!(pages(&fx).is_empty());
}

#[test]
fn interrupted_step_is_not_repeated_and_goes_to_verification() {
    let (mut inc, _) = open_at(1, 0, 0);
    let (ladder, step) = start(&mut inc, 1);
    inc.apply(
        Event::StepFinished {
            ladder,
            step,
            result: StepResult::Unknown,
            detail: serde_json::Value::Null,
        },
        &policy(),
        t(50),
    );
    assert_eq!(inc.status(), Status::Verifying);
    assert!(inc.due_step(&policy()).is_none());
}

// === resolved by hand ===

fn by_hand(inc: &mut Incident, now: i64) -> Effects {
    inc.apply(
        Event::ResolvedByHand {
            reason: "false alarm: load test".into(),
            author: "alice".into(),
        },
        &policy(),
        t(now),
    )
}

#[test]
fn resolving_a_paged_incident_by_hand_records_who_and_why_and_resolves_its_pages() {
    let (mut inc, fx) = open_at(3, 0, 0);
    assert_eq!(pages(&fx), ["platform"]);
    let fx = by_hand(&mut inc, 60);
    assert_eq!(inc.status(), Status::Resolved);
    assert_eq!(inc.resolved_at, Some(t(60)));
    let entry = fx
        .iter()
        .find_map(|e| match e {
            Effect::Record(e) if e.kind == EntryKind::ResolvedByHand => Some(e),
            _ => None,
        })
        .expect("a resolved_by_hand entry");
    assert_eq!(entry.data["author"], "alice");
    assert_eq!(entry.data["reason"], "false alarm: load test");
    assert!(
        entry.message.contains("alice") && entry.message.contains("false alarm: load test"),
        "{}",
        entry.message
    );
    assert!(fx.contains(&Effect::PageResolved));
}

#[test]
fn resolving_by_hand_while_a_step_runs_lets_it_finish_and_nothing_further_runs() {
    let (mut inc, _) = open_at(1, 0, 0);
    let (ladder, step) = start(&mut inc, 1);
    let fx = by_hand(&mut inc, 5);
    assert!(
        !fx.contains(&Effect::PageResolved),
        "nobody was paged, so no resolve"
    );
    let fx = inc.apply(
        Event::StepFinished {
            ladder,
            step,
            result: StepResult::Failed {
                error: "boom".into(),
                denied: false,
            },
            detail: serde_json::Value::Null,
        },
        &policy(),
        t(9),
    );
    assert_eq!(inc.status(), Status::Resolved);
    assert!(inc.due_step(&policy()).is_none());
    // The late result is recorded, and counted against the breakers (it failed); nothing
    // else happens.
    assert!(
        fx.iter().all(
            |e| matches!(e, Effect::Record(e) if e.kind == EntryKind::StepFinished)
                || matches!(e, Effect::BreakerFailure { .. })
        ),
        "{fx:?}"
    );
}

#[test]
fn resolving_by_hand_an_incident_already_resolved_changes_nothing() {
    let (mut inc, _) = open_at(3, 0, 0);
    by_hand(&mut inc, 10);
    let before = inc.clone();
    assert!(by_hand(&mut inc, 20).is_empty());
    assert_eq!(inc, before);
}

#[test]
fn a_route_gets_one_trigger_per_incident_however_often_it_escalates() {
    let (mut inc, _) = open_at(1, 0, 0);
    let paused = Refusal {
        kind: RefusalKind::Paused,
        reason: "paused".into(),
    };
    let fx = inc.apply(Event::Refused(paused.clone()), &policy(), t(1));
    assert_eq!(pages(&fx), vec!["oncall".to_string()]);
    inc.apply(Event::Resumed, &policy(), t(2));
    // Suspended again, then refused by a budget: the on-call route already has it.
    let fx = inc.apply(Event::Refused(paused), &policy(), t(3));
    assert!(pages(&fx).is_empty(), "{fx:?}");
    assert_eq!(inc.status(), Status::Suspended);
    inc.apply(Event::Resumed, &policy(), t(4));
    let fx = inc.apply(
        Event::Refused(Refusal {
            kind: RefusalKind::Budget,
            reason: "budget spent".into(),
        }),
        &policy(),
        t(5),
    );
    assert_eq!(inc.status(), Status::Escalated);
    assert!(pages(&fx).is_empty(), "{fx:?}");
    assert_eq!(inc.paged, vec!["oncall".to_string()]);
    // A level whose ladder escalates elsewhere pages that route, once.
    let fx = inc.apply(
        Event::Fired {
            fingerprint: "fp2".into(),
            starts_at: t(6),
            level: 3,
            for_: Duration::ZERO,
        },
        &policy(),
        t(6),
    );
    assert_eq!(pages(&fx), vec!["platform".to_string()]);
}

#[test]
fn a_step_that_fails_after_its_incident_resolved_still_counts_against_the_breakers() {
    // Found by the model-based test: the failure was recorded but no breaker counted it.
    let (mut inc, _) = open_at(1, 0, 0);
    inc.apply(
        Event::StepStarted {
            ladder: 1,
            step: 0,
            detail: serde_json::Value::Null,
            dry_run: false,
        },
        &policy(),
        t(1),
    );
    inc.apply(
        Event::Resolved {
            fingerprint: "fp1".into(),
        },
        &policy(),
        t(2),
    );
    assert!(inc.is_resolved());
    let fx = inc.apply(
        Event::StepFinished {
            ladder: 1,
            step: 0,
            result: StepResult::Failed {
                error: "boom".into(),
                denied: false,
            },
            detail: serde_json::Value::Null,
        },
        &policy(),
        t(3),
    );
    assert!(fx.contains(&Effect::BreakerFailure {
        action: "test".into(),
        denied: false,
    }));
    assert!(inc.is_resolved(), "still resolved");
}

mod escalation;
mod hold;

#[test]
fn a_restart_changes_only_the_alerts_and_a_join_changes_the_row() {
    let p = policy();
    let (inc, _) = open_at(1, 0, 0);
    let fired = |fp: &str, starts: i64| Event::Fired {
        fingerprint: fp.into(),
        starts_at: t(starts),
        level: 1,
        for_: Duration::ZERO,
    };
    // Its alert fires again with a new start (its resolve lost): only the alert records it.
    let mut restarted = inc.clone();
    assert!(restarted.apply(fired("fp1", 60), &p, t(60)).is_empty());
    assert_ne!(restarted, inc);
    assert!(restarted.same_but_alerts(&inc));
    // Another alert joins: the timeline learns of it and the row's `updated_at` moves.
    let mut joined = inc.clone();
    assert!(!joined.apply(fired("fp2", 60), &p, t(60)).is_empty());
    assert!(!joined.same_but_alerts(&inc));
    // Any other field counts.
    let mut other = inc.clone();
    other.steps_started += 1;
    assert!(!other.same_but_alerts(&inc) && !inc.same_but_alerts(&other));
}
