//! Where the engine's safety features meet (issue 10): evidence steps, budgets, breakers,
//! dry-run, precondition refusals and levels, each a regression test that failed on the engine
//! before the fix. The real engine and SQLite store on a manual clock; a scripted remediation
//! action (`fix`), an evidence action (`look`) and a recording pager. This file is the rig; the
//! tests are in `safety.rs`.

mod approvals;
mod backlog;
mod coalesce;
mod flush;
mod hold;
mod human_silence;
mod maintenance;
mod probe;
mod revert;
mod safety;
mod updates;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::adapters::action::{ActionRequest, BoxFuture, Executor, Executors, Outcome};
use crate::adapters::escalate::{Notification, NotificationKind, Pager, PagerError};
use crate::adapters::store::sqlite::SqliteStore;
use crate::adapters::store::{Receipt, Store};
use crate::adapters::telemetry::Metrics;
use crate::domain::incident::EntryKind;
use crate::domain::policy::Mode;
use crate::domain::policy::Route;
use crate::domain::signal::{Labels, Signal, Source, Status};
use crate::domain::time::{Clock, ManualClock, Timestamp};
use crate::engine::{Engine, EngineConfig};
use crate::load::ruleset::SharedRuleset;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

/// What the scripted action answers.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Fail,
    NoChange,
    Panic,
    /// Someone else's rollout is in progress: held before any write.
    Held,
    /// Never returns (a process killed while the action runs).
    Hang,
    /// Succeeds, leaving a watch for the revert check (a change a reconciler owns).
    OkWatched,
}

/// A remediation action answering from a script (then ok), recording every call.
#[derive(Default)]
struct Fix {
    script: Mutex<Vec<Answer>>,
    calls: Mutex<Vec<(String, bool)>>,
    /// What a read-back of its watch finds (`None`: as written), and how many were made.
    reverted: Mutex<Option<String>>,
    checks: Mutex<usize>,
}

impl Executor for Fix {
    fn validate(&self, _: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
    fn plan(&self, req: &ActionRequest) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({"fix": req.vars.get("target.name")}))
    }
    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push((req.incident.clone(), false));
            let answer = {
                let mut s = self.script.lock().unwrap();
                if s.is_empty() {
                    Answer::Ok
                } else {
                    s.remove(0)
                }
            };
            match answer {
                Answer::Ok => Outcome::ok("fixed", serde_json::Value::Null),
                Answer::Fail => Outcome::failed(false, "fix failed", serde_json::Value::Null),
                Answer::NoChange => Outcome::refused("nothing to fix", serde_json::Value::Null),
                Answer::Panic => panic!("fix blew up"),
                Answer::Held => Outcome::held(
                    "rollout in progress: deployment is mid-rollout",
                    serde_json::Value::Null,
                ),
                Answer::Hang => std::future::pending().await,
                Answer::OkWatched => Outcome::ok(
                    "fixed",
                    serde_json::json!({"watch": {"name": req.vars.get("target.name")}}),
                ),
            }
        })
    }
    fn revert_check<'a>(
        &'a self,
        _: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            *self.checks.lock().unwrap() += 1;
            Ok(self.reverted.lock().unwrap().clone())
        })
    }
    fn dry_run<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push((req.incident.clone(), true));
            Outcome::dry_run("dry-run", serde_json::json!(req.vars.get("target.name")))
        })
    }
}

/// An evidence action: only reads.
#[derive(Default)]
struct Look {
    calls: Mutex<usize>,
}

impl Executor for Look {
    fn validate(&self, _: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
    fn plan(&self, _: &ActionRequest) -> Result<serde_json::Value, String> {
        Ok(serde_json::Value::Null)
    }
    fn execute<'a>(&'a self, _: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            *self.calls.lock().unwrap() += 1;
            Outcome::ok("looked", serde_json::Value::Null)
        })
    }
    fn gathers_evidence(&self) -> bool {
        true
    }
}

#[derive(Default)]
struct Pages(Mutex<Vec<(String, Notification)>>);

impl Pager for Pages {
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async move {
            self.0.lock().unwrap().push((route.name.clone(), n.clone()));
            Ok(true)
        })
    }
}

const RULES: &str = r#"
rules:
  - name: r
    match: ['alertname="Broken"']
    level_from: {label: severity, map: {warning: 1, critical: 2}}
    target: {kind: deployment, name: "{{service}}"}
    policy: p
"#;

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    shared: SharedRuleset,
    engine: Engine,
    tasks: TaskTracker,
    fix: Arc<Fix>,
    look: Arc<Look>,
    pages: Arc<Pages>,
    metrics: Arc<Metrics>,
    start: Timestamp,
    executors: Executors,
}

impl Rig {
    fn new(rules: &str, policies: &str) -> Self {
        Self::with(rules, policies, EngineConfig::default().stale_after)
    }

    fn with(rules: &str, policies: &str, stale_after: Duration) -> Self {
        Self::build(rules, policies, stale_after, &[])
    }

    /// A rig whose HTTP probes may reach `probe_allow`.
    fn probing(rules: &str, policies: &str, probe_allow: &[&str]) -> Self {
        let allow: Vec<String> = probe_allow.iter().map(|a| a.to_string()).collect();
        Self::build(rules, policies, EngineConfig::default().stale_after, &allow)
    }

    fn build(rules: &str, policies: &str, stale_after: Duration, probe_allow: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (rd, pd) = (dir.path().join("rules"), dir.path().join("policies"));
        std::fs::create_dir_all(&rd).unwrap();
        std::fs::create_dir_all(&pd).unwrap();
        std::fs::write(rd.join("r.yaml"), rules).unwrap();
        std::fs::write(pd.join("p.yaml"), policies).unwrap();
        let fix = Arc::new(Fix::default());
        let look = Arc::new(Look::default());
        let mut executors = Executors::builtin();
        executors.set_probe_allow(crate::load::ProbeAllowList::parse(probe_allow).unwrap());
        executors.register("fix", fix.clone());
        executors.register("look", look.clone());
        let rs = crate::load::ruleset::load(&rd, &pd, &executors)
            .unwrap_or_else(|d| panic!("rules and policies load: {d}"));
        let shared: SharedRuleset = Arc::new(RwLock::new(Arc::new(rs)));
        let store = Arc::new(SqliteStore::open(Path::new(":memory:")).unwrap());
        let start = Timestamp::parse_rfc3339("2026-11-28T10:00:00Z").unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::new(
            store.clone(),
            shared.clone(),
            executors.clone(),
            clock.clone(),
            metrics.clone(),
            EngineConfig {
                mode: Mode::Enforce,
                stale_after,
                ..Default::default()
            },
            Arc::new(Notify::new()),
        );
        Rig {
            _dir: dir,
            store,
            clock,
            shared,
            engine,
            tasks: TaskTracker::new(),
            fix,
            look,
            pages: Arc::new(Pages::default()),
            metrics,
            start,
            executors,
        }
    }

    /// A restart (or a failover): a new engine on the same store, with nothing in memory.
    fn restart(&mut self) {
        self.engine = Engine::new(
            self.store.clone(),
            self.shared.clone(),
            self.executors.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            EngineConfig {
                mode: Mode::Enforce,
                ..Default::default()
            },
            Arc::new(Notify::new()),
        );
    }

    /// A reload: the same rules, new policies.
    fn reload_policies(&mut self, policies: &str) {
        let (rd, pd) = (
            self._dir.path().join("rules"),
            self._dir.path().join("policies"),
        );
        std::fs::write(pd.join("p.yaml"), policies).unwrap();
        let rs = crate::load::ruleset::load(&rd, &pd, &self.executors)
            .unwrap_or_else(|d| panic!("rules and policies load: {d}"));
        *self.shared.write().unwrap() = Arc::new(rs);
    }

    /// A reload: new rules, the same policies.
    fn reload_rules(&mut self, rules: &str) {
        let (rd, pd) = (
            self._dir.path().join("rules"),
            self._dir.path().join("policies"),
        );
        std::fs::write(rd.join("r.yaml"), rules).unwrap();
        let rs = crate::load::ruleset::load(&rd, &pd, &self.executors)
            .unwrap_or_else(|d| panic!("rules and policies load: {d}"));
        *self.shared.write().unwrap() = Arc::new(rs);
    }

    fn signal(service: &str, severity: &str, status: Status, starts_at: Timestamp) -> Signal {
        let labels: Labels = BTreeMap::from([
            ("alertname".to_string(), "Broken".to_string()),
            ("service".to_string(), service.to_string()),
            ("severity".to_string(), severity.to_string()),
        ]);
        Signal {
            source: Source::Webhook,
            status,
            labels,
            annotations: Labels::new(),
            starts_at,
            ends_at: None,
            fingerprint: format!("{service}-{severity}"),
            generator_url: String::new(),
            value: None,
            rule: None,
            level: None,
        }
    }

    /// One delivery of several alerts (one Alertmanager group), then the engine.
    async fn deliver(&mut self, signals: Vec<Signal>) {
        let receipt = Receipt {
            received_at: self.clock.now(),
            receiver: "remedyd".into(),
            group_key: "{}".into(),
            truncated_alerts: 0,
            alerts: signals.len(),
        };
        self.store.ingest(receipt, signals).await.unwrap();
        self.settle().await;
    }

    fn pages(&self) -> Vec<(String, NotificationKind, String)> {
        self.pages
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(r, n)| (r.clone(), n.event, n.incident.clone()))
            .collect()
    }

    /// An Alertmanager alert for `service` at `severity`, `firing` or `resolved`.
    async fn alert(&mut self, service: &str, severity: &str, status: Status, starts_at: Timestamp) {
        self.deliver(vec![Self::signal(service, severity, status, starts_at)])
            .await;
    }

    async fn fire(&mut self, service: &str, severity: &str) {
        let now = self.clock.now();
        self.alert(service, severity, Status::Firing, now).await;
    }

    /// Engine passes until nothing moves, then the outbox.
    async fn settle(&mut self) {
        tokio::time::timeout(Duration::from_secs(30), self.engine.settle(&self.tasks))
            .await
            .expect("the engine settles")
            .unwrap();
        crate::adapters::escalate::outbox::deliver_due(
            &*self.store,
            &*self.pages,
            &self.shared,
            &*self.clock,
            &self.metrics,
        )
        .await
        .unwrap();
    }

    async fn advance(&mut self, d: Duration) {
        // In steps of the engine's tick, as time passes for the real engine.
        self.advance_by(d, Duration::from_secs(5)).await
    }

    async fn advance_by(&mut self, d: Duration, step: Duration) {
        let mut left = d;
        while !left.is_zero() {
            let s = left.min(step);
            self.clock.advance(s);
            left -= s;
            self.settle().await;
        }
    }

    async fn status(&self, service: &str) -> String {
        let list = self.store.list_incidents(None, 100).await.unwrap();
        list.iter()
            .find(|i| i.target.name == service)
            .map(|i| i.status().as_str().to_string())
            .unwrap_or_else(|| "none".into())
    }

    async fn level(&self, service: &str) -> u8 {
        let list = self.store.list_incidents(None, 100).await.unwrap();
        list.iter()
            .find(|i| i.target.name == service && !i.is_resolved())
            .map(|i| i.level)
            .unwrap_or(0)
    }

    async fn uses(&self, key: &str, dry_run: bool) -> u32 {
        self.store
            .count_uses(key, self.start.minus(Duration::from_secs(1)), dry_run)
            .await
            .unwrap()
    }

    async fn breaker_open(&self, key: &str) -> bool {
        self.store.breaker(key).await.unwrap().opened_at.is_some()
    }

    fn fix_calls(&self) -> usize {
        self.fix.calls.lock().unwrap().len()
    }
}

fn policy(extra_limits: &str, steps: &str) -> String {
    format!(
        r#"
routes:
  - {{name: oncall, type: webhook, url: "http://127.0.0.1:9/"}}
  - {{name: platform, type: webhook, url: "http://127.0.0.1:9/"}}
limits:
  namespaces: [python-services]
{extra_limits}
policies:
  - name: p
    escalate_to: oncall
    levels:
      - level: 1
        steps:
{steps}
      - level: 2
        steps:
          - {{name: big-fix, action: fix, verify: {{resolved_within: 1m}}}}
"#
    )
}

const LOOK_THEN_FIX: &str = "          - {name: evidence, action: look}\n          - {name: fix, action: fix, verify: {resolved_within: 1m}}";

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test finished in time")
}
