//! The replay driver on made-up histories: the clock stops at every deadline between signals,
//! and a recorded re-send keeps an incident from going stale.

use std::time::Duration;

use super::run::replay;
use crate::adapters::action::Executors;
use crate::adapters::store::{History, RecordedSignal};
use crate::domain::signal::{Labels, Signal, Source, Status};
use crate::domain::time::Timestamp;
use crate::load::ruleset::{self, Ruleset};

const T0: Timestamp = Timestamp(1_767_225_600_000); // 2026-01-01T00:00:00Z
const MIN: i64 = 60_000;

fn ruleset(for_: &str) -> Ruleset {
    let dir = tempfile::tempdir().unwrap();
    let (r, p) = (dir.path().join("rules"), dir.path().join("policies"));
    std::fs::create_dir_all(&r).unwrap();
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        r.join("r.yaml"),
        format!(
            "rules:\n  - name: errors\n    match: ['alertname=\"Errors\"']\n    level: 1\n    for: {for_}\n    target: {{kind: deployment, namespace: shop, name: \"{{{{service}}}}\"}}\n    policy: fix\n"
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("p.yaml"),
        "limits: {namespaces: [shop]}\nroutes:\n  - {name: oncall, type: webhook, url: \"http://127.0.0.1:9/x\"}\npolicies:\n  - name: fix\n    levels:\n      - level: 1\n        escalate_to: oncall\n        steps:\n          - {name: restart, action: http, with: {url: \"http://127.0.0.1:9/y\"}, verify: {resolved_within: 5m}, on_failure: escalate}\n",
    )
    .unwrap();
    ruleset::load(&r, &p, &Executors::builtin()).unwrap_or_else(|d| panic!("{d}"))
}

fn signal(status: Status, at: i64, last_seen: Option<i64>) -> RecordedSignal {
    let labels: Labels = [("alertname", "Errors"), ("service", "cart")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RecordedSignal {
        signal: Signal {
            source: Source::Webhook,
            status,
            labels,
            annotations: Labels::new(),
            starts_at: T0,
            ends_at: (status == Status::Resolved).then_some(Timestamp(T0.0 + at)),
            fingerprint: "f1".into(),
            generator_url: String::new(),
            value: None,
            rule: None,
            level: None,
        },
        received_at: Timestamp(T0.0 + at),
        last_seen: last_seen.map(|l| Timestamp(T0.0 + l)),
    }
}

fn run(rs: &Ruleset, signals: Vec<RecordedSignal>, until: i64) -> super::outcome::Outcome {
    let history = History {
        signals,
        incidents: Vec::new(),
        approvals: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = rt
        .block_on(replay(
            &history,
            rs,
            Duration::from_secs(3600),
            T0,
            Timestamp(T0.0 + until),
        ))
        .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

#[test]
fn the_clock_stops_at_the_for_deadline_between_two_signals() {
    // Between the minute heartbeats: only stopping at the deadline itself starts the step.
    let rs = ruleset("5m30s");
    // Resolved after 5m15s: the `for` never elapsed.
    let early = run(
        &rs,
        vec![
            signal(Status::Firing, 0, None),
            signal(Status::Resolved, 5 * MIN + 15_000, None),
        ],
        30 * MIN,
    );
    assert_eq!(early.steps, Vec::<String>::new());
    // Resolved after 5m45s: the step started at 5m30s, before the resolve was heard.
    let late = run(
        &rs,
        vec![
            signal(Status::Firing, 0, None),
            signal(Status::Resolved, 5 * MIN + 45_000, None),
        ],
        30 * MIN,
    );
    assert_eq!(late.steps, ["restart"], "{late:?}");
    assert_eq!(late.status, "resolved");
    assert!(late.pages.is_empty(), "{late:?}");
}

#[test]
fn a_recorded_re_send_keeps_the_incident_from_going_stale() {
    // `for: 3h`: nothing acts; only staleness (1 h without news) can escalate.
    let rs = ruleset("3h");
    let silent = run(&rs, vec![signal(Status::Firing, 0, None)], 90 * MIN);
    assert_eq!(silent.status, "escalated", "{silent:?}");
    assert_eq!(silent.pages, ["oncall"]);
    let re_sent = run(
        &rs,
        vec![signal(Status::Firing, 0, Some(50 * MIN))],
        90 * MIN,
    );
    assert_eq!(re_sent.status, "open", "{re_sent:?}");
    assert!(re_sent.pages.is_empty(), "{re_sent:?}");
}
