//! Each page carries why it escalated, decided where the page is; its label is the
//! `remedyd_escalations_total` label.

use super::*;

/// The labels of the pages among `fx`.
fn labels(fx: &Effects) -> Vec<&'static str> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Page { why, .. } => Some(why.as_str()),
            _ => None,
        })
        .collect()
}

fn refused(kind: RefusalKind) -> Vec<&'static str> {
    let (mut inc, _) = open_at(1, 0, 0);
    let reason = "a gate said no".to_string();
    labels(&inc.apply(Event::Refused(Refusal { kind, reason }), &policy(), t(1)))
}

/// Runs the due step of `inc` and fails it.
fn fail_due_step(inc: &mut Incident, p: &Policy, now: i64) -> Effects {
    let (ladder, step, _) = inc.due_step(p).expect("a step is due");
    let detail = serde_json::Value::Null;
    let started = Event::StepStarted {
        ladder,
        step,
        detail: detail.clone(),
        dry_run: false,
    };
    inc.apply(started, p, t(now));
    let result = StepResult::Failed {
        error: "boom".into(),
        denied: false,
    };
    let finished = Event::StepFinished {
        ladder,
        step,
        result,
        detail,
    };
    inc.apply(finished, p, t(now + 1))
}

#[test]
fn a_gates_refusal_pages_with_its_gate_as_the_label() {
    assert_eq!(refused(RefusalKind::Budget), ["budget"]);
    assert_eq!(refused(RefusalKind::Breaker), ["breaker"]);
    assert_eq!(refused(RefusalKind::Paused), ["paused"]);
    assert_eq!(refused(RefusalKind::Namespace), ["policy"]);
    assert!(
        refused(RefusalKind::Storm).is_empty(),
        "the storm page counts once"
    );
}

#[test]
fn a_ladder_that_ran_out_of_steps_is_exhausted_and_one_without_steps_is_policy() {
    let mut p = policy();
    p.levels.get_mut(&1).unwrap().steps[1].on_failure = OnFailure::Next;
    let (mut inc, _) = open_at(1, 0, 0);
    assert!(labels(&fail_due_step(&mut inc, &p, 1)).is_empty());
    assert_eq!(labels(&fail_due_step(&mut inc, &p, 3)), ["exhausted"]);
    let (_, fx) = open_at(3, 0, 0);
    assert_eq!(labels(&fx), ["policy"]);
}

#[test]
fn a_failed_step_that_escalates_is_policy() {
    let p = policy();
    let (mut inc, _) = open_at(1, 0, 0);
    fail_due_step(&mut inc, &p, 1);
    let fx = fail_due_step(&mut inc, &p, 3);
    assert!(matches!(
        fx.iter().find(|e| matches!(e, Effect::Page { .. })),
        Some(Effect::Page {
            why: EscalationReason::StepFailed,
            ..
        })
    ));
    assert_eq!(labels(&fx), ["policy"]);
}

#[test]
fn a_stale_incident_pages_as_stale_even_while_suspended() {
    let stale = Event::Stale {
        heard: t(0),
        after: Duration::from_secs(12 * 3600),
    };
    let (mut inc, _) = open_at(1, 0, 0);
    assert_eq!(
        labels(&inc.apply(stale.clone(), &policy(), t(100))),
        ["stale"]
    );
    // Suspended by a pause on the level-1 route, then raised to level 3 (another route): the
    // stale page to the new route is stale, not paused.
    let (mut inc, _) = open_at(1, 0, 0);
    let pause = Refusal {
        kind: RefusalKind::Paused,
        reason: "paused".into(),
    };
    inc.apply(Event::Refused(pause), &policy(), t(1));
    let fired = Event::Fired {
        fingerprint: "fp2".into(),
        starts_at: t(2),
        level: 3,
        for_: Duration::ZERO,
    };
    inc.apply(fired, &policy(), t(2));
    assert_eq!(inc.status(), Status::Suspended);
    assert_eq!(labels(&inc.apply(stale, &policy(), t(100))), ["stale"]);
}
