//! Alertmanager and the engine's pass: a held incident ("a human silenced it",
//! `respect_human_silences: hold`) asks Alertmanager at most once per `HUMAN_CHECK_EVERY`, not on
//! every pass, and the ladder still follows the human's silence both ways; remedyd's own
//! silences are made in the background, so a pass never waits for Alertmanager to answer. A
//! loopback Alertmanager answers, counts the checks and can hold its answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{RULES, Rig, within};
use crate::adapters::silence::Alertmanagers;
use crate::adapters::store::Store;
use crate::adapters::telemetry::SilenceLabels;
use crate::domain::policy::Mode;
use crate::domain::signal::Status;
use crate::domain::time::Clock;
use crate::engine::silences::HUMAN_CHECK_EVERY;
use crate::engine::{Engine, EngineConfig};

const POLICY: &str = r#"
routes:
  - {name: oncall, type: webhook, url: "http://127.0.0.1:9/"}
limits:
  namespaces: [python-services]
policies:
  - name: p
    escalate_to: oncall
    silence: {for: 10m, max: 1h, respect_human_silences: hold}
    levels:
      - level: 1
        steps:
          - {name: fix, action: fix, verify: {resolved_within: 1m}}
"#;

/// The human's silence, and how often it was looked up (one lookup per human check).
struct Am {
    human: AtomicBool,
    lookups: AtomicUsize,
    /// Creating a silence is answered only once this is true.
    answer: tokio::sync::watch::Sender<bool>,
}

impl Default for Am {
    fn default() -> Self {
        Self {
            human: AtomicBool::new(false),
            lookups: AtomicUsize::new(0),
            answer: tokio::sync::watch::channel(true).0,
        }
    }
}

async fn create(State(am): State<Arc<Am>>) -> axum::Json<Value> {
    let _ = am.answer.subscribe().wait_for(|go| *go).await;
    axum::Json(json!({"silenceID": "ours-1"}))
}

async fn alerts(State(am): State<Arc<Am>>) -> axum::Json<Value> {
    let by: Vec<&str> = if am.human.load(Ordering::SeqCst) {
        vec!["human-1"]
    } else {
        vec![]
    };
    axum::Json(json!([{
        "fingerprint": "checkout-warning",
        "labels": {"alertname": "Broken", "service": "checkout", "severity": "warning"},
        "status": {"state": "suppressed", "silencedBy": by},
    }]))
}

async fn silence(State(am): State<Arc<Am>>, Path(id): Path<String>) -> axum::Json<Value> {
    if id == "human-1" {
        am.lookups.fetch_add(1, Ordering::SeqCst);
    }
    let state = if id != "human-1" || am.human.load(Ordering::SeqCst) {
        "active"
    } else {
        "expired"
    };
    let by = if id == "human-1" { "alice" } else { "remedyd" };
    axum::Json(json!({
        "id": id, "createdBy": by, "comment": "on it", "endsAt": "2026-11-28T12:00:00Z",
        "startsAt": "2026-11-28T09:00:00Z", "matchers": [], "status": {"state": state},
    }))
}

/// Alertmanager on loopback: alerts, silences (ours are created as `ours-N`).
async fn alertmanager(am: Arc<Am>) -> String {
    let app = axum::Router::new()
        .route("/api/v2/alerts", axum::routing::get(alerts))
        .route(
            "/api/v2/silences",
            axum::routing::get(|| async { axum::Json(json!([])) }).post(create),
        )
        .route(
            "/api/v2/silence/{id}",
            axum::routing::get(silence).delete(|| async { "" }),
        )
        .with_state(am);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

impl Rig {
    /// This rig's engine, asking the Alertmanager at `url` about silences.
    fn silenced_by(&mut self, url: &str) {
        let am = Alertmanagers::new(&[url.to_string()], None).unwrap();
        self.engine = Engine::new(
            self.store.clone(),
            self.shared.clone(),
            self.executors.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            EngineConfig {
                mode: Mode::Enforce,
                silencer: Some(Arc::new(am)),
                ..Default::default()
            },
            Arc::new(tokio::sync::Notify::new()),
        );
    }

    fn silence_calls(&self, op: &str, result: &str) -> u64 {
        self.metrics
            .silence_calls
            .get_or_create(&SilenceLabels {
                op: op.into(),
                result: result.into(),
            })
            .get()
    }
}

#[tokio::test]
async fn a_held_incident_asks_alertmanager_about_human_silences_at_most_once_per_interval() {
    within(async {
        let am = Arc::new(Am::default());
        am.human.store(true, Ordering::SeqCst);
        let url = alertmanager(am.clone()).await;
        let mut rig = Rig::new(RULES, POLICY);
        rig.silenced_by(&url);

        rig.fire("checkout", "warning").await;
        assert_eq!(rig.fix_calls(), 0, "a human's silence holds the step");
        assert_eq!(am.lookups.load(Ordering::SeqCst), 1);

        // A minute of engine passes, one second apart (several passes each): the held step is
        // due on every one of them, Alertmanager is asked once per interval.
        rig.advance_by(Duration::from_secs(60), Duration::from_secs(1))
            .await;
        let checks = am.lookups.load(Ordering::SeqCst);
        let most = 1 + 60 / HUMAN_CHECK_EVERY.as_secs() as usize;
        assert!(
            (2..=most).contains(&checks),
            "{checks} checks in 61 s of passes, at most {most}"
        );
        assert_eq!(rig.fix_calls(), 0, "still held");
        assert_eq!(rig.silence_calls("check", "ok"), checks as u64);

        // The human's silence ends: the ladder goes on within one interval.
        am.human.store(false, Ordering::SeqCst);
        rig.advance_by(HUMAN_CHECK_EVERY, Duration::from_secs(1))
            .await;
        assert_eq!(rig.fix_calls(), 1, "the step ran once the silence ended");
        assert!(
            rig.silence_calls("create", "ok") >= 1,
            "remedyd's own silence"
        );
        assert_eq!(rig.silence_calls("check", "error"), 0);
    })
    .await
}

#[tokio::test]
async fn a_pass_does_not_wait_for_alertmanager_to_create_a_silence() {
    within(async {
        let am = Arc::new(Am::default());
        am.answer.send_replace(false);
        let url = alertmanager(am.clone()).await;
        let mut rig = Rig::new(RULES, POLICY);
        rig.silenced_by(&url);
        let now = rig.clock.now();
        let receipt = crate::adapters::store::Receipt {
            received_at: now,
            receiver: "remedyd".into(),
            group_key: "{}".into(),
            truncated_alerts: 0,
            alerts: 1,
        };
        let signal = Rig::signal("checkout", "warning", Status::Firing, now);
        rig.store.ingest(receipt, vec![signal]).await.unwrap();

        // One pass while Alertmanager holds its answer: the step starts, nothing about the
        // silence is known yet (a pass that waited would have recorded its failure).
        rig.engine.pass(&rig.tasks).await.unwrap();
        let kinds = |tl: &[crate::domain::incident::Entry]| -> Vec<String> {
            tl.iter().map(|e| e.kind.as_str().to_string()).collect()
        };
        let tl = rig.store.timeline("INC-2026-0001").await.unwrap();
        assert!(kinds(&tl).contains(&"step_started".to_string()), "{tl:#?}");
        assert!(
            !kinds(&tl).iter().any(|k| k.starts_with("silence")),
            "{tl:#?}"
        );

        // Alertmanager answers: the silence is recorded with the incident.
        am.answer.send_replace(true);
        rig.settle().await;
        let tl = rig.store.timeline("INC-2026-0001").await.unwrap();
        assert!(kinds(&tl).contains(&"silenced".to_string()), "{tl:#?}");
        assert_eq!(rig.silence_calls("create", "ok"), 1);
        assert_eq!(rig.fix_calls(), 1);
    })
    .await
}
