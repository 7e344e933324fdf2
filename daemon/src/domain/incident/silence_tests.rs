//! When the incident's silence is created, renewed and expired, decided with `now` injected.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::*;
use super::*;
use crate::domain::policy::{Ladder, OnFailure, Policy, SilencePolicy, Step, Verify};
use crate::domain::rules::{Target, TargetKind};

fn step(name: &str, verify: Verify) -> Step {
    Step {
        name: name.into(),
        action: "test".into(),
        params: serde_json::json!({}),
        budget: None,
        verify,
        on_failure: OnFailure::Escalate,
        approve: None,
    }
}

/// evidence → restart (escalates on failure), silences of 10 minutes, an hour at most.
fn policy() -> Policy {
    let mut levels = BTreeMap::new();
    levels.insert(
        1,
        Ladder {
            steps: vec![
                step("evidence", Verify::None),
                step("restart", Verify::ResolvedWithin(Duration::from_secs(300))),
            ],
            escalate_to: "oncall".into(),
        },
    );
    Policy {
        silence: Some(SilencePolicy::default()),
        ..Policy::with_levels("p", levels)
    }
}

fn spec() -> SilencePolicy {
    SilencePolicy::default()
}

fn t(s: i64) -> Timestamp {
    Timestamp(s * 1000)
}

fn open() -> Incident {
    let target = Target {
        kind: TargetKind::Deployment,
        namespace: "ns".into(),
        name: "checkout".into(),
    };
    let (inc, _) = Incident::open(
        "INC-2026-0001".into(),
        "r",
        &policy(),
        target,
        Labels::new(),
        "fp1".into(),
        t(0),
        1,
        Duration::ZERO,
        t(0),
    );
    inc
}

fn start(inc: &mut Incident, dry_run: bool, now: i64) -> Effects {
    let (ladder, idx, _) = inc.due_step(&policy()).expect("a step is due");
    inc.apply(
        Event::StepStarted {
            ladder,
            step: idx,
            detail: serde_json::Value::Null,
            dry_run,
        },
        &policy(),
        t(now),
    )
}

fn finish(inc: &mut Incident, result: StepResult, now: i64) -> Effects {
    let Phase::Running { ladder, step } = inc.phase else {
        panic!("not running: {:?}", inc.phase)
    };
    let detail = serde_json::Value::Null;
    inc.apply(
        Event::StepFinished {
            ladder,
            step,
            result,
            detail,
        },
        &policy(),
        t(now),
    )
}

fn refs() -> Vec<SilenceRef> {
    vec![SilenceRef {
        fingerprint: "fp1".into(),
        id: "s1".into(),
        url: "http://am-0".into(),
    }]
}

fn kinds(fx: &Effects) -> Vec<EntryKind> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Record(e) => Some(e.kind.clone()),
            _ => None,
        })
        .collect()
}

/// Opened, evidence run, restart claimed at 10 s and silenced until 10 min later.
fn silenced() -> Incident {
    let mut inc = open();
    start(&mut inc, false, 1);
    finish(&mut inc, StepResult::Ok, 2);
    start(&mut inc, false, 10);
    let op = inc.silence_due(&spec(), t(10)).expect("a create is due");
    assert_eq!(op, SilenceOp::Create { ends_at: t(610) });
    let fx = inc.silence_done(&op, Ok(refs()), &spec(), t(10));
    assert_eq!(kinds(&fx), [EntryKind::Silenced]);
    inc
}

#[test]
fn evidence_does_not_silence_the_first_remediation_does() {
    let mut inc = open();
    start(&mut inc, false, 1);
    assert_eq!(inc.silence_due(&spec(), t(1)), None, "evidence only reads");
    finish(&mut inc, StepResult::Ok, 2);
    start(&mut inc, false, 10);
    assert!(matches!(
        inc.silence_due(&spec(), t(10)),
        Some(SilenceOp::Create { .. })
    ));
}

#[test]
fn a_dry_run_never_silences() {
    let mut inc = open();
    start(&mut inc, true, 1);
    finish(&mut inc, StepResult::Ok, 2);
    start(&mut inc, true, 10);
    assert_eq!(inc.silence, None);
}

#[test]
fn renewed_halfway_to_its_end_and_never_past_max() {
    let mut inc = silenced();
    assert_eq!(inc.silence_due(&spec(), t(309)), None);
    let op = inc
        .silence_due(&spec(), t(310))
        .expect("renewal due halfway");
    assert_eq!(op, SilenceOp::Renew { ends_at: t(910) });
    let fx = inc.silence_done(&op, Ok(refs()), &spec(), t(310));
    assert_eq!(kinds(&fx), [EntryKind::SilenceRenewed]);
    // Close to max (since 10 s + 1 h): the end is capped at max, then no more renewals.
    let near = 10 + 3600 - 120;
    let op = inc.silence_due(&spec(), t(near)).unwrap();
    assert_eq!(op, SilenceOp::Renew { ends_at: t(3610) });
    inc.silence_done(&op, Ok(refs()), &spec(), t(near));
    assert_eq!(inc.silence_due(&spec(), t(3609)), None);
    let op = inc.silence_due(&spec(), t(3610)).unwrap();
    assert_eq!(op, SilenceOp::Lapse);
    let fx = inc.silence_done(&op, Ok(Vec::new()), &spec(), t(3610));
    assert_eq!(kinds(&fx), [EntryKind::SilenceExpired]);
    assert_eq!(inc.silence_due(&spec(), t(4000)), None, "over for good");
}

#[test]
fn escalation_and_resolve_expire_it() {
    let mut inc = silenced();
    finish(
        &mut inc,
        StepResult::Failed {
            error: "x".into(),
            denied: false,
        },
        20,
    );
    assert!(matches!(inc.phase, Phase::Escalated { .. }));
    let op = inc.silence_due(&spec(), t(20)).unwrap();
    assert!(matches!(op, SilenceOp::Expire { .. }), "{op:?}");
    let fx = inc.silence_done(&op, Ok(refs()), &spec(), t(20));
    assert_eq!(kinds(&fx), [EntryKind::SilenceExpired]);
    assert_eq!(
        inc.silence_due(&spec(), t(400)),
        None,
        "never silenced again"
    );

    let mut inc = silenced();
    finish(&mut inc, StepResult::Ok, 20);
    inc.apply(
        Event::Resolved {
            fingerprint: "fp1".into(),
        },
        &policy(),
        t(30),
    );
    assert!(inc.is_resolved());
    assert!(matches!(
        inc.silence_due(&spec(), t(30)),
        Some(SilenceOp::Expire { .. })
    ));
}

#[test]
fn a_failure_is_recorded_once_retried_and_never_holds_the_ladder() {
    let mut inc = open();
    start(&mut inc, false, 1);
    finish(&mut inc, StepResult::Ok, 2);
    start(&mut inc, false, 10);
    let op = inc.silence_due(&spec(), t(10)).unwrap();
    let fx = inc.silence_done(&op, Err("both down".into()), &spec(), t(10));
    assert_eq!(kinds(&fx), [EntryKind::SilenceFailed]);
    assert!(
        matches!(inc.phase, Phase::Running { .. }),
        "the step goes on"
    );
    assert_eq!(inc.silence_due(&spec(), t(39)), None);
    let op = inc
        .silence_due(&spec(), t(40))
        .expect("retried after SILENCE_RETRY");
    assert!(
        inc.silence_done(&op, Err("still".into()), &spec(), t(40))
            .is_empty()
    );
    let op = inc.silence_due(&spec(), t(70)).unwrap();
    let fx = inc.silence_done(&op, Ok(refs()), &spec(), t(70));
    assert_eq!(kinds(&fx), [EntryKind::Silenced]);
}

#[test]
fn a_human_silence_holds_once_and_the_incident_stays_open() {
    let mut inc = open();
    let h = [HumanSilence {
        id: "h1".into(),
        created_by: "alice".into(),
        ends_at: "2026-01-01T00:00:00Z".into(),
        comment: "on it".into(),
    }];
    let fx = inc.held_by_human(&h, t(1));
    assert_eq!(kinds(&fx), [EntryKind::HeldByHumanSilence]);
    assert!(inc.held_by_human(&h, t(2)).is_empty(), "recorded once");
    assert_eq!(inc.status(), Status::Open);
    assert!(
        inc.due_step(&policy()).is_some(),
        "asked again on every pass"
    );
}
