//! Incidents with known histories at fixed times, built by driving the real incident machine
//! (the same events the engine feeds it), for golden files and pager payload tests
//! (`crate::support::story`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use remedyd::adapters::store::{Commit, Store};
use remedyd::domain::incident::{Effect, Entry, Event, Incident, Probe, StepResult};
use remedyd::domain::policy::budget::BudgetUse;
use remedyd::domain::policy::{Ladder, NoData, OnFailure, Policy, Step, Verify, Window};
use remedyd::domain::rules::{Target, TargetKind};
use remedyd::domain::time::Timestamp;

/// 2026-03-01T12:00:00Z.
pub const T0: i64 = 1_772_366_400_000;

pub fn at(secs: i64) -> Timestamp {
    Timestamp(T0 + secs * 1000)
}

fn step(name: &str, verify: Verify) -> Step {
    Step {
        name: name.into(),
        action: "http".into(),
        params: serde_json::json!({"url": format!("http://deploy-hooks.platform:8080/v1/{name}")}),
        budget: None,
        verify,
        on_failure: OnFailure::Next,
        approve: None,
    }
}

fn query_verify() -> Verify {
    Verify::Query {
        query: "service:error_ratio:rate5m{service=\"{{target.name}}\"}".into(),
        above: false,
        bound: 0.05,
        within: Duration::from_secs(300),
        every: Duration::from_secs(60),
        no_data: NoData::Escalate,
    }
}

/// The runbook's degradation policy: level 1 restarts, level 2 rolls back; PromQL verification.
pub fn policy() -> Policy {
    let mut levels = BTreeMap::new();
    levels.insert(
        1,
        Ladder {
            steps: vec![step("restart", query_verify())],
            escalate_to: "oncall".into(),
        },
    );
    levels.insert(
        2,
        Ladder {
            steps: vec![step("rollback", query_verify())],
            escalate_to: "service-owner".into(),
        },
    );
    Policy::with_levels("service-degradation", levels)
}

/// Page only: no automated step.
pub fn page_only() -> Policy {
    let mut levels = BTreeMap::new();
    levels.insert(
        1,
        Ladder {
            steps: vec![],
            escalate_to: "oncall".into(),
        },
    );
    Policy::with_levels("page-only", levels)
}

fn target(name: &str) -> Target {
    Target {
        kind: TargetKind::Deployment,
        namespace: "python-services".into(),
        name: name.into(),
    }
}

/// An incident and everything the machine recorded, as the engine would commit it.
pub struct Story {
    pub incident: Incident,
    pub timeline: Vec<Entry>,
    /// Pages the machine asked for: (route, reason) for triggers, ("resolve", _) for resolves.
    pub pages: Vec<(String, String)>,
    policy: Policy,
}

impl Story {
    fn open(id: &str, policy: Policy, service: &str, alert: &str, level: u8, secs: i64) -> Self {
        let labels: BTreeMap<String, String> = [
            ("alertname", alert),
            ("service", service),
            ("severity", if level >= 2 { "critical" } else { "warning" }),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (incident, fx) = Incident::open(
            id.into(),
            "high-error-rate",
            &policy,
            target(service),
            labels,
            format!("fp-{id}"),
            at(secs - 60),
            level,
            Duration::ZERO,
            at(secs),
        );
        let mut s = Story {
            incident,
            timeline: Vec::new(),
            pages: Vec::new(),
            policy,
        };
        s.effects(fx);
        s
    }

    fn effects(&mut self, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::Record(entry) => self.timeline.push(entry),
                Effect::Page { route, reason, .. } => self.pages.push((route, reason)),
                Effect::PageResolved => self.pages.push(("resolve".into(), String::new())),
                _ => {}
            }
        }
    }

    fn apply(&mut self, secs: i64, event: Event) {
        let fx = self.incident.apply(event, &self.policy, at(secs));
        self.effects(fx);
    }

    /// The step start, with the gate values the engine records.
    fn start(&mut self, secs: i64, name: &str, used: u32) {
        let ladder = self.incident.ladder;
        let key = self.incident.target.key();
        let hour = Duration::from_secs(3600);
        let budgets = vec![
            BudgetUse {
                key: format!("action:http:{key}"),
                window: Window { max: 3, per: hour },
                used,
            },
            BudgetUse {
                key: "rule:high-error-rate".into(),
                window: Window { max: 10, per: hour },
                used,
            },
            BudgetUse {
                key: "namespace:python-services".into(),
                window: Window { max: 10, per: hour },
                used: used + 1,
            },
            BudgetUse {
                key: "global".into(),
                window: Window { max: 20, per: hour },
                used: used + 2,
            },
        ];
        let detail = serde_json::json!({
            "action": "http", "dry_run": false,
            "request": {"method": "POST", "url": format!("http://deploy-hooks.platform:8080/v1/{name}"),
                        "headers": {"Idempotency-Key": format!("{}/{name}", self.incident.id)},
                        "body": {"deployment": self.incident.target.name, "incident": self.incident.id}},
            "plan_error": null,
            "gates": {"budgets": budgets, "breakers": {format!("action:http:{key}"): "closed", "global": "closed"}},
        });
        self.apply(
            secs,
            Event::StepStarted {
                ladder,
                step: 0,
                detail,
                dry_run: false,
            },
        );
    }

    fn finish_ok(&mut self, secs: i64, name: &str) {
        let ladder = self.incident.ladder;
        self.apply(
            secs,
            Event::StepFinished {
                ladder,
                step: 0,
                result: StepResult::Ok,
                detail: serde_json::json!({
                    "attempts": 1, "status": 202,
                    "summary": format!("POST http://deploy-hooks.platform:8080/v1/{name}: 202"),
                    "retryable": false,
                }),
            },
        );
    }

    fn probe(&mut self, secs: i64, v: f64) {
        self.apply(
            secs,
            Event::Probe {
                step: 0,
                probe: Probe::Value(v),
            },
        );
    }

    fn resolve(&mut self, secs: i64) {
        let fp = format!("fp-{}", self.incident.id);
        self.apply(secs, Event::Resolved { fingerprint: fp });
    }

    /// Stores it the way the engine does: the incident and its timeline in one commit.
    pub async fn commit(&self, store: &dyn Store) {
        let mut c = Commit::default();
        c.incidents.push(self.incident.clone());
        for e in &self.timeline {
            c.timeline.push((self.incident.id.clone(), e.clone()));
        }
        store.commit(c).await.expect("commit");
    }
}

/// Level 1 on checkout: restart ok, the error ratio stays above 5 % (7.3 % → 5.2 %), the ladder
/// runs out, on-call is paged; the alert resolves 20 minutes after it opened.
pub fn escalated_then_resolved() -> Story {
    let mut s = escalated();
    s.resolve(1200);
    s
}

/// The same incident at the moment on-call is paged (12:05:05).
pub fn escalated() -> Story {
    let mut s = Story::open("INC-2026-0042", policy(), "checkout", "HighErrorRate", 1, 0);
    s.start(2, "restart", 0);
    s.finish_ok(5, "restart");
    for (i, v) in [0.073, 0.061, 0.055, 0.052].into_iter().enumerate() {
        s.probe(65 + 60 * i as i64, v);
    }
    s.apply(305, Event::Tick);
    s
}

/// Level 2 on payments: rollback ok, the error ratio drops to 4.1 % at the first probe, the
/// alert clears; nobody is paged.
pub fn self_healed() -> Story {
    let mut s = Story::open(
        "INC-2026-0043",
        policy(),
        "payments",
        "ServiceUnavailable",
        2,
        3600,
    );
    s.start(3602, "rollback", 1);
    s.finish_ok(3606, "rollback");
    s.probe(3666, 0.041);
    s.resolve(3720);
    s
}

/// Level 1 on search with a page-only policy: paged at once, still escalated.
pub fn page_only_open() -> Story {
    Story::open(
        "INC-2026-0044",
        page_only(),
        "search",
        "HighLatency",
        1,
        7200,
    )
}
