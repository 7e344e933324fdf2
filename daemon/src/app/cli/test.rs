//! `remedyd test FILE`: rule and policy unit tests in the spirit of `promtool test rules`.
//!
//! A test feeds polled rules' query values and Alertmanager alerts over time through the real
//! rules, policies, engine and store (SQLite in a temporary file) on a manual clock, in dry-run,
//! and compares incidents, planned steps and pages at given instants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::adapters::action::{BoxFuture, Executors};
use crate::adapters::escalate::{Notification, Pager, PagerError};
use crate::adapters::prometheus::{MetricSource, QueryError, Sample};
use crate::adapters::store::sqlite::SqliteStore;
use crate::adapters::store::{Receipt, Store};
use crate::adapters::telemetry::Metrics;
use crate::domain::incident::EntryKind;
use crate::domain::policy::Mode;
use crate::domain::policy::Route;
use crate::domain::signal::{Labels, Signal, Source, Status};
use crate::domain::time::parse_duration;
use crate::domain::time::{Clock, ManualClock, Timestamp};
use crate::engine::{Engine, EngineConfig};
use crate::load::ruleset;
use crate::load::ruleset::SharedRuleset;

/// Query → the series it answers with, each with its values per interval.
type SeriesByQuery = BTreeMap<String, Vec<(Labels, Vec<Option<f64>>)>>;

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Rules directory, relative to the test file.
    pub rules: PathBuf,
    /// Policies directory, relative to the test file.
    pub policies: PathBuf,
    /// Step of the series values (default 15s).
    #[serde(default)]
    pub interval: Option<String>,
    /// The cases.
    pub tests: Vec<TestCase>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Name, printed on failure.
    pub name: String,
    /// Values of polled rules' queries over time.
    #[serde(default)]
    pub series: Vec<Series>,
    /// Alertmanager alerts at given times.
    #[serde(default)]
    pub alerts: Vec<TestAlert>,
    /// Decisions on steps with `approve:` at given times ([`super::test_approvals`]).
    #[serde(default)]
    pub approvals: Vec<serde_saphyr::Spanned<super::test_approvals::TestApproval>>,
    /// What must hold at given times.
    pub expect: Vec<Expectation>,
}

/// Values of one rule's query for one series: `"0.01 0.03x10 _ 0.01x5"` (one per interval; `_`
/// is no value; `vxN` repeats v N more times).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// Polled rule.
    pub rule: String,
    /// Series labels.
    #[serde(default)]
    pub labels: Labels,
    /// Values.
    pub values: String,
}

/// An alert delivered at `at`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestAlert {
    /// When (from the start of the case).
    pub at: String,
    /// Labels.
    pub labels: Labels,
    /// `firing` (default) or `resolved`.
    #[serde(default)]
    pub status: Option<String>,
}

/// What must hold at `at`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// When (from the start of the case).
    pub at: String,
    /// Every incident (resolved ones included), in any order.
    #[serde(default)]
    pub incidents: Option<Vec<ExpectedIncident>>,
    /// Names of the steps started so far, in order (dry-run: planned, not sent).
    #[serde(default)]
    pub actions: Option<Vec<String>>,
    /// Routes paged so far, in order.
    #[serde(default)]
    pub pages: Option<Vec<String>>,
}

/// An expected incident; unset fields are not compared.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedIncident {
    /// Rule.
    pub rule: String,
    /// `kind/namespace/name`.
    pub target: String,
    /// Level.
    #[serde(default)]
    pub level: Option<u8>,
    /// Status.
    #[serde(default)]
    pub status: Option<String>,
}

fn parse_values(s: &str, field: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let (v, n) = match tok.split_once('x') {
            Some((v, n)) => (
                v,
                n.parse::<usize>()
                    .map_err(|_| format!("{field}: bad repeat in {tok:?}"))?,
            ),
            None => (tok, 0),
        };
        let v = if v == "_" {
            None
        } else {
            Some(
                v.parse::<f64>()
                    .map_err(|_| format!("{field}: {tok:?} is not a number, _ or vxN"))?,
            )
        };
        for _ in 0..=n {
            out.push(v);
        }
    }
    Ok(out)
}

/// Query values from the test file: the value at index `elapsed / interval`.
struct FileSource {
    clock: Arc<ManualClock>,
    start: Timestamp,
    interval: Duration,
    by_query: SeriesByQuery,
}

impl MetricSource for FileSource {
    fn query<'a>(&'a self, promql: &'a str) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>> {
        Box::pin(async move {
            let i = (self.clock.now().since(self.start).as_millis()
                / self.interval.as_millis().max(1)) as usize;
            Ok(self
                .by_query
                .get(promql)
                .into_iter()
                .flatten()
                .filter_map(|(labels, vals)| {
                    vals.get(i).copied().flatten().map(|value| Sample {
                        labels: labels.clone(),
                        value,
                    })
                })
                .collect())
        })
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Pager for Recorder {
    fn send<'a>(
        &'a self,
        route: &'a Route,
        n: &'a Notification,
    ) -> BoxFuture<'a, Result<bool, PagerError>> {
        Box::pin(async move {
            // `pages:` lists pages (triggers and resolves); the updates every `update_every`
            // to routes already paged would only make long scenarios depend on the interval.
            if n.event != crate::adapters::escalate::NotificationKind::Update {
                self.0
                    .lock()
                    .expect("recorder lock")
                    .push(route.name.clone());
            }
            Ok(true)
        })
    }
}

/// Runs every case of a file; returns the failures (empty: all passed).
pub async fn run_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TestFile = serde_saphyr::from_str(&text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(0);
        format!(
            "{}:{line}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let executors = Executors::builtin().plan_only();
    let rs = ruleset::load(
        &base.join(&file.rules),
        &base.join(&file.policies),
        &executors,
    )
    .map_err(|d| d.to_string())?;
    let interval = parse_duration(file.interval.as_deref().unwrap_or("15s"))?;
    let mut errors = Vec::new();
    let mut plans: Vec<_> = file
        .tests
        .iter()
        .map(|c| {
            super::test_approvals::plan(&path.display().to_string(), &c.approvals, &rs, &mut errors)
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let mut failures = Vec::new();
    for (case, plan) in file.tests.iter().zip(plans.iter_mut()) {
        failures.extend(
            run_case(&rs, &executors, interval, case, plan)
                .await?
                .into_iter()
                .map(|f| format!("{}: {}", case.name, f)),
        );
    }
    Ok(failures)
}

async fn run_case(
    rs: &ruleset::Ruleset,
    executors: &Executors,
    interval: Duration,
    case: &TestCase,
    approvals: &mut [super::test_approvals::Planned],
) -> Result<Vec<String>, String> {
    // A fixed start keeps incident ids and times reproducible.
    let start = Timestamp(1_767_225_600_000); // 2026-01-01T00:00:00Z
    let clock = Arc::new(ManualClock::new(start));
    let dir = tempfile_dir()?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("test.db")).map_err(|e| e.to_string())?);
    let metrics = Arc::new(Metrics::new());
    let mut rs = rs.clone();
    for p in rs.policies.values_mut() {
        p.mode = Some(Mode::DryRun);
    }
    let shared: SharedRuleset = Arc::new(RwLock::new(Arc::new(rs.clone())));
    let mut by_query: SeriesByQuery = BTreeMap::new();
    for s in &case.series {
        let rule = rs
            .rules
            .iter()
            .find(|r| r.name == s.rule)
            .ok_or_else(|| format!("series: rule {:?} does not exist", s.rule))?;
        let q = rule
            .polled
            .as_ref()
            .ok_or_else(|| format!("series: rule {:?} is not polled", s.rule))?;
        by_query
            .entry(q.query.clone())
            .or_default()
            .push((s.labels.clone(), parse_values(&s.values, "values")?));
    }
    let source = Arc::new(FileSource {
        clock: clock.clone(),
        start,
        interval,
        by_query,
    });
    let wake = Arc::new(Notify::new());
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let mut engine = Engine::new(
        store.clone(),
        shared.clone(),
        executors.clone(),
        clock_dyn.clone(),
        metrics.clone(),
        EngineConfig {
            mode: Mode::DryRun,
            ..Default::default()
        },
        wake.clone(),
    )
    .with_source(source.clone());
    let mut poller = crate::adapters::intake::poller::Poller::new(
        store.clone(),
        shared.clone(),
        source,
        clock_dyn.clone(),
        metrics.clone(),
        wake,
    );
    let pager = Recorder::default();
    let tasks = TaskTracker::new();

    let mut alerts: Vec<(Duration, &TestAlert)> = case
        .alerts
        .iter()
        .map(|a| Ok((parse_duration(&a.at)?, a)))
        .collect::<Result<_, String>>()?;
    alerts.sort_by_key(|(t, _)| *t);
    let mut expects: Vec<(Duration, &Expectation)> = case
        .expect
        .iter()
        .map(|e| Ok((parse_duration(&e.at)?, e)))
        .collect::<Result<_, String>>()?;
    expects.sort_by_key(|(t, _)| *t);
    let end = expects.last().map(|(t, _)| *t).unwrap_or_default();
    let mut firing: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut t = Duration::ZERO;
    let (mut ai, mut ei) = (0, 0);
    loop {
        let now = clock.now();
        let mut signals = Vec::new();
        while ai < alerts.len() && alerts[ai].0 <= t {
            let a = alerts[ai].1;
            let fp = crate::adapters::intake::poller::fingerprint(
                "alert",
                &crate::adapters::intake::poller::series_key(&a.labels),
                0,
            );
            let status = match a.status.as_deref() {
                None | Some("firing") => Status::Firing,
                Some("resolved") => Status::Resolved,
                Some(o) => return Err(format!("alerts: status {o:?}; valid: firing, resolved")),
            };
            let starts_at = match status {
                Status::Firing => *firing.entry(fp.clone()).or_insert(now),
                Status::Resolved => firing.remove(&fp).unwrap_or(now),
            };
            signals.push(Signal {
                source: Source::Webhook,
                status,
                labels: a.labels.clone(),
                annotations: Labels::new(),
                starts_at,
                ends_at: (status == Status::Resolved).then_some(now),
                fingerprint: fp,
                generator_url: String::new(),
                value: None,
                rule: None,
                level: None,
            });
            ai += 1;
        }
        if !signals.is_empty() {
            let n = signals.len();
            store
                .ingest(
                    Receipt {
                        received_at: now,
                        receiver: "test".into(),
                        group_key: String::new(),
                        truncated_alerts: 0,
                        alerts: n,
                    },
                    signals,
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        poller.cycle().await.map_err(|e| e.to_string())?;
        engine.settle(&tasks).await.map_err(|e| e.to_string())?;
        let (refused, taken) = super::test_approvals::take(&*store, approvals, t, now).await?;
        failures.extend(refused);
        if taken {
            engine.settle(&tasks).await.map_err(|e| e.to_string())?;
        }
        crate::adapters::escalate::outbox::deliver_due(
            &*store,
            &pager,
            &shared,
            &*clock_dyn,
            &metrics,
        )
        .await
        .map_err(|e| e.to_string())?;
        while ei < expects.len() && expects[ei].0 <= t {
            failures.extend(check(&*store, &pager, expects[ei].1, expects[ei].0).await?);
            ei += 1;
        }
        if t >= end {
            break;
        }
        t += Duration::from_secs(1);
        clock.advance(Duration::from_secs(1));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(failures)
}

async fn check(
    store: &dyn Store,
    pager: &Recorder,
    e: &Expectation,
    at: Duration,
) -> Result<Vec<String>, String> {
    let at = crate::domain::time::fmt_duration(at);
    let mut out = Vec::new();
    let incidents = store
        .list_incidents(None, 1000)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(want) = &e.incidents {
        let got: Vec<ExpectedIncident> = incidents
            .iter()
            .map(|i| ExpectedIncident {
                rule: i.rule.clone(),
                target: i.target.key(),
                level: Some(i.level),
                status: Some(i.status().as_str().into()),
            })
            .collect();
        let matches = |w: &ExpectedIncident, g: &ExpectedIncident| {
            w.rule == g.rule
                && w.target == g.target
                && w.level.is_none_or(|l| Some(l) == g.level)
                && w.status
                    .as_ref()
                    .is_none_or(|s| Some(s) == g.status.as_ref())
        };
        let ok = want.len() == got.len() && want.iter().all(|w| got.iter().any(|g| matches(w, g)));
        if !ok {
            out.push(format!(
                "at {at}: incidents\n    want: {want:?}\n    got:  {got:?}"
            ));
        }
    }
    if let Some(want) = &e.actions {
        let mut started: Vec<(Timestamp, String)> = Vec::new();
        for i in &incidents {
            for entry in store.timeline(&i.id).await.map_err(|e| e.to_string())? {
                if entry.kind == EntryKind::StepStarted {
                    let name = entry
                        .message
                        .strip_prefix("step ")
                        .and_then(|m| m.split(' ').next())
                        .unwrap_or_default()
                        .to_string();
                    started.push((entry.at, name));
                }
            }
        }
        // Stable: steps started in the same instant keep their timeline order.
        started.sort_by_key(|(at, _)| *at);
        let got: Vec<String> = started.into_iter().map(|(_, n)| n).collect();
        if &got != want {
            out.push(format!(
                "at {at}: actions\n    want: {want:?}\n    got:  {got:?}"
            ));
        }
    }
    if let Some(want) = &e.pages {
        let got = pager.0.lock().expect("recorder lock").clone();
        if &got != want {
            out.push(format!(
                "at {at}: pages\n    want: {want:?}\n    got:  {got:?}"
            ));
        }
    }
    Ok(out)
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir().join(format!(
        "remedyd-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    Ok(base)
}
