//! The engine's safety features where they meet, one regression test each (see the rig in
//! `mod.rs`).

use super::*;

#[tokio::test]
async fn evidence_steps_spend_no_budget_of_any_scope() {
    within(async {
        let mut rig = Rig::new(RULES, &policy("", LOOK_THEN_FIX));
        rig.fire("checkout", "warning").await;
        assert_eq!(*rig.look.calls.lock().unwrap(), 1, "evidence ran");
        assert_eq!(rig.fix_calls(), 1, "the remediation ran");
        // One remediation: one use in each scope; the evidence step spent none.
        assert_eq!(rig.uses("rule:r", false).await, 1);
        assert_eq!(rig.uses("global", false).await, 1);
        assert_eq!(rig.uses("namespace:python-services", false).await, 1);
        assert_eq!(
            rig.uses("action:look:deployment/python-services/checkout", false)
                .await,
            0
        );
    })
    .await
}

#[tokio::test]
async fn a_half_open_global_breaker_gives_its_trial_to_the_remediation_not_the_evidence_step() {
    within(async {
        let limits = "  breakers:\n    global: {failures: 1, within: 1h, cooldown: 10m}";
        let mut rig = Rig::new(RULES, &policy(limits, LOOK_THEN_FIX));
        // First incident: the fix does not help; its failed verification opens the global breaker.
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(70)).await;
        assert_eq!(rig.status("checkout").await, "escalated");
        assert!(rig.breaker_open("global").await, "one failure opens it");
        // After the cool-down a second service breaks: evidence runs, and the fix is the trial.
        rig.advance(Duration::from_secs(600)).await;
        rig.fire("payments", "warning").await;
        assert_eq!(*rig.look.calls.lock().unwrap(), 2);
        assert_eq!(rig.fix_calls(), 2, "the remediation got the trial");
        assert_eq!(rig.status("payments").await, "verifying");
        // It works: the trial's success closes the breaker.
        let since = rig.clock.now();
        rig.alert("payments", "warning", Status::Resolved, since)
            .await;
        assert_eq!(rig.status("payments").await, "resolved");
        assert!(!rig.breaker_open("global").await, "the trial closed it");
    })
    .await
}

#[tokio::test]
async fn dry_run_verification_failures_open_no_breaker() {
    within(async {
        let limits = "  breakers:\n    global: {failures: 1, within: 1h, cooldown: 10m}\n    target: {failures: 1, within: 1h, cooldown: 10m}";
        let dry = policy(limits, LOOK_THEN_FIX).replace(
            "    escalate_to: oncall\n",
            "    escalate_to: oncall\n    mode: dry-run\n",
        );
        let mut rig = Rig::new(RULES, &dry);
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(70)).await;
        assert_eq!(rig.status("checkout").await, "escalated");
        assert_eq!(
            rig.fix.calls.lock().unwrap().clone(),
            vec![("INC-2026-0001".to_string(), true)],
            "dry-run only"
        );
        assert!(!rig.breaker_open("global").await);
        assert!(
            !rig.breaker_open("action:fix:deployment/python-services/checkout")
                .await
        );
        // The next incident's dry run is not refused by a breaker.
        rig.fire("payments", "warning").await;
        assert_eq!(rig.fix_calls(), 2);
    })
    .await
}

#[tokio::test]
async fn a_precondition_refusal_goes_up_the_ladder_without_counting_as_a_failure() {
    within(async {
        let limits = "  breakers:\n    global: {failures: 1, within: 1h, cooldown: 10m}\n    target: {failures: 1, within: 1h, cooldown: 10m}";
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1m}, on_failure: next}\n          - {name: fix-again, action: fix, verify: {resolved_within: 1m}}";
        let mut rig = Rig::new(RULES, &policy(limits, steps));
        rig.fix.script.lock().unwrap().push(Answer::NoChange);
        rig.fire("checkout", "warning").await;
        // "nothing to fix": the next step runs at once, and is not refused by an open breaker.
        assert_eq!(rig.fix_calls(), 2);
        assert_eq!(rig.status("checkout").await, "verifying");
        assert!(!rig.breaker_open("global").await);
        assert!(
            !rig.breaker_open("action:fix:deployment/python-services/checkout")
                .await
        );
        let tl = rig.store.timeline("INC-2026-0001").await.unwrap();
        assert!(
            tl.iter().any(|e| e.kind == EntryKind::StepRefused),
            "the refusal is in the timeline: {tl:#?}"
        );
    })
    .await
}

#[tokio::test]
async fn a_real_failure_still_opens_the_breaker_after_exactly_k() {
    within(async {
        let limits = "  breakers:\n    global: {failures: 2, within: 1h, cooldown: 10m}";
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1m}}";
        let mut rig = Rig::new(RULES, &policy(limits, steps));
        rig.fix
            .script
            .lock()
            .unwrap()
            .extend([Answer::Fail, Answer::Fail]);
        rig.fire("checkout", "warning").await;
        assert!(!rig.breaker_open("global").await, "1 of 2");
        rig.fire("payments", "warning").await;
        assert!(rig.breaker_open("global").await, "2 of 2");
        rig.fire("search", "warning").await;
        assert_eq!(rig.fix_calls(), 2, "refused by the open breaker");
        assert_eq!(rig.status("search").await, "escalated");
        let pages = rig.pages.0.lock().unwrap().clone();
        assert!(
            pages
                .iter()
                .all(|(r, n)| r == "oncall" && n.event == NotificationKind::Trigger),
            "{pages:#?}"
        );
    })
    .await
}

#[tokio::test]
async fn a_level_upgrade_waits_for_the_rules_for() {
    within(async {
        let rules = RULES.replace("    policy: p\n", "    policy: p\n    for: 1m\n");
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 10m}}";
        let mut rig = Rig::new(&rules, &policy("", steps));
        let t0 = rig.clock.now();
        rig.alert("checkout", "warning", Status::Firing, t0).await;
        rig.advance(Duration::from_secs(65)).await;
        assert_eq!(rig.fix_calls(), 1, "level 1 acted after its for");
        // One noisy critical sample: it resolves before its own `for` has passed.
        let t1 = rig.clock.now();
        rig.alert("checkout", "critical", Status::Firing, t1).await;
        assert_eq!(rig.level("checkout").await, 1, "not yet level 2");
        assert_eq!(rig.fix_calls(), 1, "no level-2 step at once");
        rig.advance(Duration::from_secs(30)).await;
        rig.alert("checkout", "critical", Status::Resolved, t1)
            .await;
        rig.advance(Duration::from_secs(60)).await;
        assert_eq!(rig.level("checkout").await, 1, "the blip never counted");
        assert_eq!(rig.fix_calls(), 1);
        // A critical alert that stays for its `for` does supersede the ladder.
        let t2 = rig.clock.now();
        rig.alert("checkout", "critical", Status::Firing, t2).await;
        rig.advance(Duration::from_secs(30)).await;
        assert_eq!(rig.fix_calls(), 1);
        rig.advance(Duration::from_secs(35)).await;
        assert_eq!(rig.level("checkout").await, 2);
        assert_eq!(rig.fix_calls(), 2, "the level-2 ladder ran after its for");
    })
    .await
}

#[tokio::test]
async fn an_incident_that_hears_nothing_goes_stale_pages_once_and_stops_counting_for_the_storm() {
    within(async {
        let limits = "  storm_guard: {max_targets: 1, route: platform}";
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 24h}}";
        let mut rig = Rig::with(RULES, &policy(limits, steps), Duration::from_secs(3600));
        let t0 = rig.clock.now();
        rig.alert("checkout", "warning", Status::Firing, t0).await;
        assert_eq!(rig.status("checkout").await, "verifying");
        // Alertmanager re-sends it every 30 minutes (duplicates at ingest): not stale.
        for _ in 0..4 {
            rig.advance_by(Duration::from_secs(1800), Duration::from_secs(60))
                .await;
            rig.alert("checkout", "warning", Status::Firing, t0).await;
        }
        assert_eq!(rig.status("checkout").await, "verifying", "heard of");
        assert!(rig.pages().is_empty());
        // Then silence for more than stale_after.
        rig.advance_by(Duration::from_secs(3700), Duration::from_secs(60))
            .await;
        assert_eq!(rig.status("checkout").await, "escalated");
        let inc = rig
            .store
            .get_incident("INC-2026-0001")
            .await
            .unwrap()
            .unwrap();
        assert!(inc.stale_since.is_some());
        assert_eq!(
            rig.pages(),
            vec![(
                "oncall".to_string(),
                NotificationKind::Trigger,
                "INC-2026-0001".to_string()
            )],
            "paged once"
        );
        // More silence pages nobody again: the route paged gets updates, not a second trigger.
        rig.advance_by(Duration::from_secs(7200), Duration::from_secs(300))
            .await;
        let pages = rig.pages();
        assert_eq!(
            pages
                .iter()
                .filter(|p| p.1 == NotificationKind::Trigger)
                .count(),
            1
        );
        assert!(
            pages
                .iter()
                .skip(1)
                .all(|p| p.0 == "oncall" && p.1 == NotificationKind::Update),
            "{pages:?}"
        );
        // A stale incident does not count toward the storm guard: the next one is remediated.
        rig.fire("payments", "warning").await;
        assert_eq!(
            rig.fix_calls(),
            2,
            "no storm: the stale incident is not counted"
        );
        // Never resolved silently; heard of again, it is no longer stale (a human owns it).
        rig.alert("checkout", "warning", Status::Firing, t0).await;
        rig.advance_by(Duration::from_secs(120), Duration::from_secs(60))
            .await;
        let inc = rig
            .store
            .get_incident("INC-2026-0001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(inc.stale_since, None);
        assert_eq!(inc.status().as_str(), "escalated");
        let now = rig.clock.now();
        rig.alert("checkout", "warning", Status::Resolved, now)
            .await;
        assert_eq!(rig.status("checkout").await, "resolved");
        assert_eq!(
            rig.pages().last().map(|p| p.1),
            Some(NotificationKind::Resolve)
        );
    })
    .await
}

#[tokio::test]
async fn an_alert_that_restarted_is_heard_under_its_new_start() {
    within(async {
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 24h}}";
        let mut rig = Rig::with(RULES, &policy("", steps), Duration::from_secs(3600));
        let t0 = rig.clock.now();
        rig.alert("checkout", "warning", Status::Firing, t0).await;
        // Its resolve is lost; it fires again with a new start, which Alertmanager then re-sends
        // every 30 minutes (duplicates at ingest, heard of under that start only).
        rig.advance_by(Duration::from_secs(600), Duration::from_secs(60))
            .await;
        let t1 = rig.clock.now();
        rig.alert("checkout", "warning", Status::Firing, t1).await;
        for _ in 0..5 {
            rig.advance_by(Duration::from_secs(1800), Duration::from_secs(60))
                .await;
            rig.alert("checkout", "warning", Status::Firing, t1).await;
        }
        let inc = rig
            .store
            .get_incident("INC-2026-0001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            inc.stale_since, None,
            "heard of for 2.5 h after its restart"
        );
        let alert = inc.active.values().next().unwrap();
        assert_eq!(
            (alert.starts_at, alert.restarted),
            (t0, Some(t1)),
            "its for counts from the first start; the restart is recorded"
        );
        assert!(rig.pages().is_empty(), "{:?}", rig.pages());
        // Silence: stale. A second restart is heard of at once.
        rig.advance_by(Duration::from_secs(3700), Duration::from_secs(60))
            .await;
        let stale = |rig: &Rig| {
            let store = rig.store.clone();
            async move {
                let inc = store.get_incident("INC-2026-0001").await.unwrap().unwrap();
                inc.stale_since.is_some()
            }
        };
        assert!(stale(&rig).await);
        let t2 = rig.clock.now();
        rig.alert("checkout", "warning", Status::Firing, t2).await;
        rig.advance_by(Duration::from_secs(120), Duration::from_secs(60))
            .await;
        assert!(!stale(&rig).await, "the second restart is heard of");
    })
    .await
}

#[tokio::test]
async fn a_resolve_closes_its_incident_after_a_reload_renamed_the_rule() {
    within(async {
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1h}}";
        let mut rig = Rig::new(RULES, &policy("", steps));
        let t0 = rig.clock.now();
        rig.alert("checkout", "warning", Status::Firing, t0).await;
        assert_eq!(rig.status("checkout").await, "verifying");
        rig.reload_rules(&RULES.replace("  - name: r\n", "  - name: r-renamed\n"));
        rig.alert("checkout", "warning", Status::Resolved, t0).await;
        let list = rig.store.list_incidents(None, 10).await.unwrap();
        assert_eq!(list.len(), 1, "{list:#?}");
        assert!(list[0].is_resolved(), "{list:#?}");
    })
    .await
}

#[tokio::test]
async fn an_alert_that_resolves_and_fires_again_in_one_delivery_opens_a_new_incident() {
    within(async {
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1h}}";
        let mut rig = Rig::new(RULES, &policy("", steps));
        let t0 = rig.clock.now();
        rig.alert("checkout", "warning", Status::Firing, t0).await;
        rig.advance(Duration::from_secs(10)).await;
        let t1 = rig.clock.now();
        rig.deliver(vec![
            Rig::signal("checkout", "warning", Status::Resolved, t0),
            Rig::signal("checkout", "warning", Status::Firing, t1),
        ])
        .await;
        let list = rig.store.list_incidents(None, 10).await.unwrap();
        let states: Vec<(String, String)> = list
            .iter()
            .map(|i| (i.id.clone(), i.status().as_str().to_string()))
            .collect();
        assert!(
            states.contains(&("INC-2026-0001".into(), "resolved".into())),
            "{states:?}"
        );
        assert!(
            states.contains(&("INC-2026-0002".into(), "verifying".into())),
            "{states:?}"
        );
        assert_eq!(rig.fix_calls(), 2);
    })
    .await
}

#[tokio::test]
async fn a_panicking_action_is_a_failed_step_and_the_engine_goes_on() {
    within(async {
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1m}}";
        let mut rig = Rig::new(RULES, &policy("", steps));
        rig.fix.script.lock().unwrap().push(Answer::Panic);
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.status("checkout").await, "escalated");
        let tl = rig.store.timeline("INC-2026-0001").await.unwrap();
        assert!(
            tl.iter()
                .any(|e| e.kind == EntryKind::StepFailed && e.message.contains("fix blew up")),
            "{tl:#?}"
        );
        // The engine still works for the next incident.
        rig.fire("payments", "warning").await;
        assert_eq!(rig.status("payments").await, "verifying");
    })
    .await
}

#[tokio::test]
async fn a_failed_verification_that_opens_a_breaker_stops_the_next_step_of_the_same_ladder() {
    within(async {
        // Found by the model-based test: the next step's gates read the breakers before the
        // failed verification that opened one was written.
        let limits = "  breakers:\n    global: {failures: 1, within: 1h, cooldown: 10m}";
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1m}, on_failure: next}\n          - {name: fix-again, action: fix, verify: {resolved_within: 1m}}";
        let mut rig = Rig::new(RULES, &policy(limits, steps));
        rig.fire("checkout", "warning").await;
        assert_eq!(rig.fix_calls(), 1);
        rig.advance(Duration::from_secs(70)).await;
        assert!(rig.breaker_open("global").await);
        assert_eq!(rig.fix_calls(), 1, "the open breaker refused fix-again");
        assert_eq!(rig.status("checkout").await, "escalated");
    })
    .await
}

#[tokio::test]
async fn a_dry_run_step_does_not_take_a_half_open_breakers_trial() {
    within(async {
        // Found by the model-based test: a dry-run policy's step took the trial of a breaker an
        // enforce policy had opened, and its result could never close or reopen it.
        let limits = "  breakers:\n    global: {failures: 1, within: 1h, cooldown: 10m}";
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 1m}}";
        let mut p = policy(limits, steps);
        p.push_str("  - name: p-dry\n    escalate_to: oncall\n    mode: dry-run\n    levels:\n      - level: 1\n        steps:\n          - {name: fix, action: fix, verify: {resolved_within: 1m}}\n");
        let rules = format!(
            "{RULES}  - name: r-dry\n    match: ['alertname=\"Dry\"']\n    level: 1\n    target: {{kind: deployment, name: \"{{{{service}}}}\"}}\n    policy: p-dry\n"
        );
        let mut rig = Rig::new(&rules, &p);
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(70)).await;
        assert!(rig.breaker_open("global").await, "the enforce failure opened it");
        rig.advance(Duration::from_secs(600)).await;
        // Half-open: a dry run passes without taking the trial...
        let now = rig.clock.now();
        let mut s = Rig::signal("search", "warning", Status::Firing, now);
        s.labels.insert("alertname".into(), "Dry".into());
        s.fingerprint = "search-dry".into();
        rig.deliver(vec![s]).await;
        assert_eq!(rig.fix.calls.lock().unwrap().last().map(|c| c.1), Some(true));
        let rec = rig.store.breaker("global").await.unwrap();
        assert_eq!(rec.trial_by, None, "{rec:?}");
        // ...and the next enforce remediation gets it.
        rig.fire("payments", "warning").await;
        let rec = rig.store.breaker("global").await.unwrap();
        assert!(rec.trial_by.is_some(), "{rec:?}");
        assert_eq!(rig.status("payments").await, "verifying");
    })
    .await
}

#[tokio::test]
async fn a_trial_still_being_verified_does_not_expire_into_a_second_trial() {
    within(async {
        // Found by the model-based test: a trial's verification outlasted the cool-down, the
        // trial "expired", and a second remediation went through the half-open breaker.
        let limits = "  breakers:\n    global: {failures: 1, within: 1h, cooldown: 1m}";
        let steps = "          - {name: fix, action: fix, verify: {resolved_within: 5m}}";
        let mut rig = Rig::new(RULES, &policy(limits, steps));
        rig.fire("checkout", "warning").await;
        rig.advance(Duration::from_secs(310)).await;
        assert!(rig.breaker_open("global").await);
        rig.advance(Duration::from_secs(60)).await;
        rig.fire("payments", "warning").await;
        assert_eq!(rig.fix_calls(), 2, "payments is the trial");
        // Two minutes into the trial's five-minute verification, past the cool-down:
        rig.advance(Duration::from_secs(120)).await;
        rig.fire("search", "warning").await;
        assert_eq!(rig.fix_calls(), 2, "one trial at a time");
        assert_eq!(rig.status("search").await, "escalated");
    })
    .await
}
