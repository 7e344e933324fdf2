//! The poller: evaluates polled rules on their interval and turns level changes per series into
//! signals, stored like webhook signals. A failed query changes nothing: an outage never opens
//! or resolves an incident.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::adapters::prometheus::{MetricSource, QueryError, Sample};
use crate::adapters::store::{Receipt, Store, StoreError};
use crate::adapters::telemetry::Metrics;
use crate::domain::rules::{LevelSpec, Rule, polled};
use crate::domain::signal::{Labels, Signal, Source, Status};
use crate::domain::time::{Clock, Timestamp};
use crate::load::ruleset::SharedRuleset;

/// Queries in flight at once: enough to keep a cycle of 1 000 rules short, few enough not to
/// load Prometheus.
const CONCURRENCY: usize = 16;

#[derive(Clone, Debug, PartialEq)]
struct SeriesState {
    level: u8,
    since: Timestamp,
    labels: Labels,
}

/// Polls rules with a `query`.
pub struct Poller {
    store: Arc<dyn Store>,
    ruleset: SharedRuleset,
    source: Arc<dyn MetricSource>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    state: BTreeMap<(String, String), SeriesState>,
    last_run: BTreeMap<String, Timestamp>,
    seeded: bool,
}

/// Stable identity of a series: its labels, sorted.
pub fn series_key(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A 16-hex-digit fingerprint for (rule, series, level), stable across versions (FNV-1a).
pub fn fingerprint(rule: &str, key: &str, level: u8) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rule.bytes().chain([0]).chain(key.bytes()).chain([0, level]) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[allow(clippy::too_many_arguments)]
/// The signals a series' level change produces, the new level's firing first so that an
/// upgrade supersedes instead of resolving the incident.
fn transitions(
    rule: &Rule,
    query: &str,
    key: &str,
    prev: Option<&SeriesState>,
    level: u8,
    value: f64,
    labels: &Labels,
    now: Timestamp,
) -> Vec<Signal> {
    let p = prev.map_or(0, |s| s.level);
    if p == level {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mk = |status, lvl: u8, starts_at, ends_at, labels: &Labels| Signal {
        source: Source::Poller,
        status,
        labels: labels.clone(),
        annotations: [
            ("query".to_string(), query.to_string()),
            ("value".to_string(), value.to_string()),
        ]
        .into(),
        starts_at,
        ends_at,
        fingerprint: fingerprint(&rule.name, key, lvl),
        generator_url: String::new(),
        value: Some(value),
        rule: Some(rule.name.clone()),
        level: Some(lvl),
    };
    if level > 0 {
        out.push(mk(Status::Firing, level, now, None, labels));
    }
    if let Some(prev) = prev.filter(|s| s.level > 0) {
        out.push(mk(
            Status::Resolved,
            prev.level,
            prev.since,
            Some(now),
            &prev.labels,
        ));
    }
    out
}

impl Poller {
    /// A poller reading from `source`.
    pub fn new(
        store: Arc<dyn Store>,
        ruleset: SharedRuleset,
        source: Arc<dyn MetricSource>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            ruleset,
            source,
            clock,
            metrics,
            wake,
            state: BTreeMap::new(),
            last_run: BTreeMap::new(),
            seeded: false,
        }
    }

    /// Runs until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.cycle().await {
                self.metrics.store_error("poller");
                tracing::warn!(error = %e, "Poll cycle could not store its signals; retrying next cycle");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                // 1 s: the finest `every` allowed.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Seeds series state from incidents opened by polled rules before a restart, so that a
    /// series that cleared while the process was down still resolves its incident.
    async fn seed(&mut self) -> Result<(), StoreError> {
        let rs = self.ruleset.read().expect("ruleset lock").clone();
        for inc in self.store.active_incidents().await? {
            if !rs
                .rules
                .iter()
                .any(|r| r.name == inc.rule && r.polled.is_some())
            {
                continue;
            }
            if let Some(top) = inc.active.values().max_by_key(|a| a.level) {
                self.state.insert(
                    (inc.rule.clone(), series_key(&inc.labels)),
                    SeriesState {
                        level: top.level,
                        since: top.starts_at,
                        labels: (*inc.labels).clone(),
                    },
                );
            }
        }
        self.seeded = true;
        Ok(())
    }

    /// Evaluates every due polled rule once; returns the signals stored.
    pub async fn cycle(&mut self) -> Result<usize, StoreError> {
        if !self.seeded {
            self.seed().await?;
        }
        let rs = self.ruleset.read().expect("ruleset lock").clone();
        let now = self.clock.now();
        let due: Vec<Rule> = rs
            .rules
            .iter()
            .filter(|r| match (&r.polled, self.last_run.get(&r.name)) {
                (Some(p), Some(last)) => now >= last.plus(p.every),
                (Some(_), None) => true,
                (None, _) => false,
            })
            .cloned()
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let sem = Arc::new(Semaphore::new(CONCURRENCY));
        let mut set = tokio::task::JoinSet::new();
        for (i, r) in due.iter().enumerate() {
            self.last_run.insert(r.name.clone(), now);
            let source = self.source.clone();
            let sem = sem.clone();
            let q = r
                .polled
                .as_ref()
                .expect("due rules are polled")
                .query
                .clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, source.query(&q).await)
            });
        }
        let mut results: Vec<(usize, Result<Vec<Sample>, QueryError>)> =
            Vec::with_capacity(due.len());
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        results.sort_by_key(|(i, _)| *i);
        let mut signals = Vec::new();
        let mut next_state = Vec::new();
        for (i, res) in results {
            let rule = &due[i];
            let LevelSpec::Polled(thresholds) = &rule.level else {
                continue;
            };
            let query = &rule.polled.as_ref().expect("polled").query;
            let samples = match res {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "Polled query failed; no incident is opened or resolved because of it");
                    continue;
                }
            };
            let mut seen = BTreeSet::new();
            for s in &samples {
                let key = series_key(&s.labels);
                let prev = self.state.get(&(rule.name.clone(), key.clone()));
                let level = polled::level_for(thresholds, prev.map_or(0, |p| p.level), s.value);
                signals.extend(transitions(
                    rule, query, &key, prev, level, s.value, &s.labels, now,
                ));
                let since = match prev {
                    Some(p) if p.level == level => p.since,
                    _ => now,
                };
                next_state.push((
                    (rule.name.clone(), key.clone()),
                    SeriesState {
                        level,
                        since,
                        labels: s.labels.clone(),
                    },
                ));
                seen.insert(key);
            }
            // A series that left a successful result is over, as in Prometheus alerting.
            for ((r, key), st) in self.state.range((rule.name.clone(), String::new())..) {
                if *r != rule.name {
                    break;
                }
                if !seen.contains(key) && st.level > 0 {
                    signals.extend(transitions(
                        rule,
                        query,
                        key,
                        Some(st),
                        0,
                        f64::NAN,
                        &st.labels,
                        now,
                    ));
                    next_state.push((
                        (r.clone(), key.clone()),
                        SeriesState {
                            level: 0,
                            since: now,
                            labels: st.labels.clone(),
                        },
                    ));
                }
            }
        }
        let n = signals.len();
        if n > 0 {
            let receipt = Receipt {
                received_at: now,
                receiver: "poller".into(),
                group_key: String::new(),
                truncated_alerts: 0,
                alerts: n,
            };
            let r = self.store.ingest(receipt, signals).await?;
            self.metrics.signal("poller", "stored", r.stored as u64);
            self.metrics
                .signal("poller", "duplicate", r.duplicates as u64);
            self.wake.notify_one();
        }
        for (k, st) in next_state {
            if st.level == 0 {
                self.state.remove(&k);
            } else {
                self.state.insert(k, st);
            }
        }
        self.metrics
            .poll_cycle_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::RwLock;

    use super::*;
    use crate::adapters::action::{BoxFuture, Executors};
    use crate::adapters::store::sqlite::SqliteStore;
    use crate::domain::time::ManualClock;

    /// Answers from a queue: each call pops the next answer.
    struct Scripted(Mutex<Vec<Result<Vec<Sample>, QueryError>>>);

    impl MetricSource for Scripted {
        fn query<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<Sample>, QueryError>> {
            Box::pin(async move {
                let mut q = self.0.lock().unwrap();
                if q.is_empty() {
                    Err(QueryError::Rejected("unexpected query".into()))
                } else {
                    q.remove(0)
                }
            })
        }
    }

    fn sample(v: f64) -> Sample {
        Sample {
            labels: [("service".to_string(), "checkout".to_string())].into(),
            value: v,
        }
    }

    async fn setup(
        answers: Vec<Result<Vec<Sample>, QueryError>>,
    ) -> (Poller, Arc<dyn Store>, Arc<ManualClock>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("rules/r.yaml"),
            "rules:\n  - name: er\n    query: 'sum by (service) (rate(x[1m]))'\n    every: 15s\n    levels:\n      - {level: 2, above: 0.05}\n      - {level: 1, above: 0.02}\n    target: {kind: deployment, name: '{{service}}'}\n    policy: p\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("policies/p.yaml"),
            "routes: [{name: oncall, type: webhook, url: 'http://127.0.0.1:9/'}]\npolicies:\n  - name: p\n    escalate_to: oncall\n    levels: [{level: 1}]\n",
        )
        .unwrap();
        let rs = crate::load::ruleset::load(
            &dir.path().join("rules"),
            &dir.path().join("policies"),
            &Executors::default(),
        )
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let clock = Arc::new(ManualClock::new(Timestamp(1_000_000)));
        let p = Poller::new(
            store.clone(),
            Arc::new(RwLock::new(Arc::new(rs))),
            Arc::new(Scripted(Mutex::new(answers))),
            clock.clone(),
            Arc::new(Metrics::new()),
            Arc::new(Notify::new()),
        );
        (p, store, clock, dir)
    }

    #[tokio::test]
    async fn an_outage_neither_opens_nor_resolves() {
        let (mut p, store, clock, _d) = setup(vec![
            Err(QueryError::Unavailable("connection refused".into())),
            Ok(vec![sample(0.03)]),
            Err(QueryError::Unavailable("connection refused".into())),
        ])
        .await;
        assert_eq!(p.cycle().await.unwrap(), 0);
        clock.advance(Duration::from_secs(15));
        assert_eq!(p.cycle().await.unwrap(), 1, "level 1 fires");
        clock.advance(Duration::from_secs(15));
        assert_eq!(p.cycle().await.unwrap(), 0, "an outage resolves nothing");
        let pending = store.pending_signals(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].signal.status, Status::Firing);
    }

    #[tokio::test]
    async fn an_upgrade_fires_the_new_level_before_resolving_the_old() {
        let (mut p, store, clock, _d) = setup(vec![
            Ok(vec![sample(0.03)]),
            Ok(vec![sample(0.08)]),
            Ok(vec![]),
        ])
        .await;
        p.cycle().await.unwrap();
        clock.advance(Duration::from_secs(15));
        assert_eq!(p.cycle().await.unwrap(), 2);
        clock.advance(Duration::from_secs(15));
        assert_eq!(
            p.cycle().await.unwrap(),
            1,
            "a series gone from the result resolves"
        );
        let s: Vec<(Status, Option<u8>)> = store
            .pending_signals(10)
            .await
            .unwrap()
            .iter()
            .map(|s| (s.signal.status, s.signal.level))
            .collect();
        assert_eq!(
            s,
            [
                (Status::Firing, Some(1)),
                (Status::Firing, Some(2)),
                (Status::Resolved, Some(1)),
                (Status::Resolved, Some(2))
            ]
        );
    }

    #[tokio::test]
    async fn rules_are_polled_on_their_interval_only() {
        let (mut p, store, clock, _d) = setup(vec![
            Ok(vec![]),
            Ok(vec![sample(0.03)]),
            Ok(vec![sample(0.03)]),
        ])
        .await;
        p.cycle().await.unwrap();
        clock.advance(Duration::from_secs(14));
        assert_eq!(
            p.cycle().await.unwrap(),
            0,
            "not due: the scripted 0.03 is not consumed"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(p.cycle().await.unwrap(), 1);
        assert_eq!(store.pending_signals(10).await.unwrap().len(), 1);
    }

    #[test]
    fn fingerprints_are_stable_and_distinct_per_level() {
        assert_eq!(
            fingerprint("r", "service=\"a\"", 1),
            fingerprint("r", "service=\"a\"", 1)
        );
        assert_ne!(
            fingerprint("r", "service=\"a\"", 1),
            fingerprint("r", "service=\"a\"", 2)
        );
        assert_eq!(fingerprint("r", "", 1).len(), 16);
    }
}
