//! Scenario 4 through real Alertmanager: the flood of `flood.rs`, but posted to an HA pair of
//! real Alertmanager 0.25 replicas (`POST /api/v2/alerts`, every batch to both, as Prometheus
//! does) that group it and send it to one `remedyd` on SQLite. Each batch of 1 or 50 alerts has
//! a `batch` label of its own and the route groups by it, so each notification carries 1 or 50
//! alerts. Every distinct alert must be stored once and matched (the pair's duplicate
//! notifications are absorbed), the storm guard engages once, remedyd answers nothing but 200 or
//! the documented 503, and the resident memory returns near its start once all resolved.
//!
//! What reaches remedyd is Alertmanager's pace, not the sender's: the test reports the rate at
//! which it posted to Alertmanager and the rate at which the notifications arrived.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::{Proc, Receiver, campaign, rss_kb, write_config};
use crate::support::services::{
    Alertmanager, free_port, http as client, metric_value, wait_until, within,
};

/// More targets than this in incident at once is a storm.
const MAX_TARGETS: u32 = 20;
/// Distinct targets of the flood (all firing: a storm).
const SERVICES: usize = 100;
/// Posts to Alertmanager in flight at once (each to both replicas).
const IN_FLIGHT: usize = 64;

/// alertmanager.yml of each replica: one group per batch, notified after 1 s, to remedyd.
fn am_config(url: &str, group_interval: &str) -> String {
    format!(
        "route:\n  receiver: remedyd\n  group_by: [alertname, batch]\n  group_wait: 1s\n  \
         group_interval: {group_interval}\n  repeat_interval: 1h\nreceivers:\n  - name: remedyd\n    \
         webhook_configs:\n      - url: \"{url}\"\n        send_resolved: true\n"
    )
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time")
}

/// The API v2 alerts of batch `w` (`n` alerts), firing from `starts_at` until `ends_at`. The
/// explicit `startsAt` makes both replicas notify the same (fingerprint, startsAt).
fn batch(w: usize, n: usize, starts_at: &str, ends_at: &str) -> Vec<Value> {
    (0..n)
        .map(|j| {
            let k = w * 50 + j;
            json!({
                "labels": {
                    "alertname": "HighErrorRate", "severity": "critical",
                    "service": format!("svc-{}", k % SERVICES),
                    "batch": format!("b-{w}"), "n": j.to_string(),
                },
                "annotations": {"summary": "errors"},
                "startsAt": starts_at, "endsAt": ends_at,
                "generatorURL": "http://prometheus/flood",
            })
        })
        .collect()
}

/// POSTs `body` to `/api/v2/alerts` of every replica at once; the answers (None: no answer).
async fn post_pair(http: &reqwest::Client, ams: &[String], body: &str) -> Vec<Option<u16>> {
    futures::future::join_all(ams.iter().map(|am| async move {
        let r = http
            .post(format!("{am}/api/v2/alerts"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        r.bytes().await.ok()?;
        Some(status)
    }))
    .await
}

/// Posts every body to the pair, paced at `per_second`, `IN_FLIGHT` at once. Answers the
/// replicas' status counts and the bodies no replica accepted (Prometheus would send them again).
async fn send_all(
    http: &reqwest::Client,
    ams: &[String],
    bodies: Vec<String>,
    per_second: usize,
) -> (BTreeMap<Option<u16>, usize>, Vec<String>) {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (w, body) in bodies.into_iter().enumerate() {
        let due = Duration::from_secs_f64(w as f64 / per_second as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (http, ams) = (http.clone(), ams.to_vec());
        tasks.push(tokio::spawn(async move {
            let answers = post_pair(&http, &ams, &body).await;
            drop(permit);
            (answers, body)
        }));
    }
    let mut codes = BTreeMap::new();
    let mut refused = Vec::new();
    for t in tasks {
        let (answers, body) = t.await.expect("a sender task");
        for a in &answers {
            *codes.entry(*a).or_insert(0) += 1;
        }
        if !answers.contains(&Some(200)) {
            refused.push(body);
        }
    }
    (codes, refused)
}

/// remedyd's webhook answers by status code.
fn webhook_codes(metrics: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("remedyd_webhook_requests_total{code=\""))
        .filter_map(|rest| {
            let (code, value) = rest.split_once("\"} ")?;
            Some((code.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// remedyd's metrics; empty when they do not come within the client's 10 s (in a campaign, the
/// notifications of thousands of groups at once fill its connections and its store queue).
async fn metrics(p: &Proc) -> String {
    match client().get(p.url("/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn stored(metrics: &str, status: &str) -> f64 {
    metric_value(
        metrics,
        &format!("remedyd_signals_total{{source=\"webhook\",status=\"{status}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_through_an_alertmanager_pair_is_stored_once_and_engages_the_storm_guard_once() {
    // CI: 150 batches over ~5 s (every fifth of 50 alerts: 1 620 alerts). Campaign: <kills> ×
    // 600 batches at up to 1 000 batches/s (100 → 60 000 batches, 648 000 alerts, 60 s); a
    // longer group_interval there (it only delays the resolved notifications) so that 60 000
    // groups do not each run Alertmanager's notification pipeline every second.
    let (batches, per_second, group_interval) = match campaign() {
        Some(k) => (k * 600, 1000, "30s"),
        None => (150, 30, "1s"),
    };
    let rx = Receiver::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(dir.path(), &rx, 1, "10m", Some(MAX_TARGETS));
    let db = dir.path().join("r.db");
    let mut p = Proc::new(
        "remedyd",
        dir.path(),
        free_port(),
        &format!("sqlite://{}", db.display()),
    );
    within(300 + batches as u64 / 20, async {
        p.spawn();
        p.ready().await;
        let pid = p.pid().expect("running");
        let cfg = am_config(&p.url("/webhook/alertmanager"), group_interval);
        // Gossip every 50 ms: the pair settles in ~2.5 s instead of 10; the second replica
        // waits 2 s (not 15) for the first's notification log before notifying itself.
        let flags = [
            "--cluster.gossip-interval=50ms",
            "--cluster.peer-timeout=2s",
            "--log.level=info",
        ];
        let (c0, c1) = (free_port(), free_port());
        let pair = [
            Alertmanager::start_clustered_with_args(&cfg, c0, c1, &flags).await,
            Alertmanager::start_clustered_with_args(&cfg, c1, c0, &flags).await,
        ];
        let ams: Vec<String> = pair.iter().map(Alertmanager::url).collect();
        let http = client();
        let t0 = time::OffsetDateTime::now_utc();
        let starts_at = rfc3339(t0);
        let ends_at = rfc3339(t0 + time::Duration::hours(1));

        // Warm up through the pair (gossip settled, remedyd's first passes) before the baseline.
        let warm = batch(batches, 1, &starts_at, &ends_at);
        let warm_body = Value::from(warm.clone()).to_string();
        assert!(
            post_pair(&http, &ams, &warm_body)
                .await
                .contains(&Some(200))
        );
        wait_until(60, "the warm-up alert stored through the pair", || async {
            stored(&metrics(&p).await, "stored") == 1.0
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_start = rss_kb(pid);

        let mut alerts = 0usize;
        let mut bodies = Vec::with_capacity(batches);
        for w in 0..batches {
            let n = if w.is_multiple_of(5) { 50 } else { 1 };
            alerts += n;
            bodies.push(Value::from(batch(w, n, &starts_at, &ends_at)).to_string());
        }
        let bytes: usize = bodies.iter().map(String::len).sum();
        let expected = (alerts + 1) as f64; // and the warm-up alert

        // Watch what reaches remedyd while the flood goes on: (seconds, webhooks 200, stored).
        let stop = tokio_util::sync::CancellationToken::new();
        let started = Instant::now();
        let watch = {
            let (stop, url) = (stop.clone(), p.url("/metrics"));
            tokio::spawn(async move {
                let http = client();
                let mut samples: Vec<(f64, f64, f64)> = Vec::new();
                while !stop.is_cancelled() {
                    if let Ok(r) = http.get(&url).send().await
                        && let Ok(m) = r.text().await
                    {
                        let ok = webhook_codes(&m).get("200").copied().unwrap_or(0.0);
                        samples.push((started.elapsed().as_secs_f64(), ok, stored(&m, "stored")));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                samples
            })
        };
        let (codes, refused) = send_all(&http, &ams, bodies, per_second).await;
        let posted_in = started.elapsed();
        let refused_bodies = refused.len();
        // Prometheus re-sends what got no 200 (every resend-delay): so does the test.
        for body in &refused {
            wait_until(60, "a refused batch accepted by a replica", || async {
                post_pair(&http, &ams, body).await.contains(&Some(200))
            })
            .await;
        }
        drop(refused);

        // Every distinct alert stored once and matched by the engine.
        let drain = 120 + alerts as u64 / 500;
        let waited = Instant::now();
        wait_until(drain, "every alert stored and matched", || async {
            let m = metrics(&p).await;
            stored(&m, "matched") >= expected && stored(&m, "stored") >= expected
        })
        .await;
        let all_in = started.elapsed();
        stop.cancel();
        let samples = watch.await.expect("the watcher");
        eprintln!(
            "flood_am: posted {batches} batches in {posted_in:?}; every alert stored and matched \
             {:?} after the last post",
            waited.elapsed()
        );
        // Let late duplicates (the second replica) arrive before counting.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let m = p.metrics().await;
        let (n_stored, n_matched) = (stored(&m, "stored"), stored(&m, "matched"));
        let duplicates = stored(&m, "duplicate");
        assert_eq!(n_stored, expected, "stored vs distinct alerts posted");
        assert_eq!(n_matched, expected, "matched vs distinct alerts posted");
        let rows = super::sqlite_facts(&db).fingerprints.len();
        assert_eq!(
            rows as f64, expected,
            "signals rows (by fingerprint) vs alerts posted"
        );
        let answers = webhook_codes(&m);
        let bad: Vec<_> = answers
            .iter()
            .filter(|(c, n)| !matches!(c.as_str(), "200" | "503") && **n > 0.0)
            .collect();
        assert!(
            bad.is_empty(),
            "remedyd answered {bad:?} (only 200 and 503 are documented)"
        );

        // What reached remedyd, and how fast: the busiest second of notifications, and all of
        // them over the time from the first post to the last alert stored.
        let webhooks = answers.get("200").copied().unwrap_or(0.0);
        let peak = samples
            .iter()
            .filter_map(|(t, ok, _)| {
                let (_, then, _) = samples.iter().rev().find(|(u, _, _)| *u <= t - 1.0)?;
                Some(ok - then)
            })
            .fold(0.0f64, f64::max);
        let mut notified = 0.0;
        let mut failed = 0.0;
        for am in &pair {
            notified += am
                .metric(r#"alertmanager_notifications_total{integration="webhook"}"#)
                .await;
            failed += am
                .metric(r#"alertmanager_notifications_failed_total{integration="webhook"}"#)
                .await;
        }

        // The storm guard engaged once: one storm page, a storm refusal counted.
        wait_until(30, "the storm page", || async {
            rx.pages()
                .iter()
                .any(|(i, e)| i.starts_with("STORM-") && e == "trigger")
        })
        .await;
        let storms = rx
            .pages()
            .iter()
            .filter(|(i, _)| i.starts_with("STORM-"))
            .count();
        assert_eq!(storms, 1, "one storm page: {:?}", rx.pages());
        let refused_storm = metric_value(&m, "remedyd_refusals_total{reason=\"storm\"}");
        assert!(refused_storm >= 1.0, "no step refused by the storm guard");
        let actions = rx.actions().len();
        assert!(
            actions <= MAX_TARGETS as usize,
            "{actions} actions ran: the guard must stop automation past {MAX_TARGETS} targets"
        );
        let rss_firing = rss_kb(pid);

        // The flood ends: every alert resolved through the pair, every incident and the storm
        // with it; then memory must come back near its start.
        let ended = rfc3339(time::OffsetDateTime::now_utc());
        let mut bodies: Vec<String> = (0..batches)
            .map(|w| {
                let n = if w.is_multiple_of(5) { 50 } else { 1 };
                Value::from(batch(w, n, &starts_at, &ended)).to_string()
            })
            .collect();
        let mut warm_end = warm;
        warm_end[0]["endsAt"] = ended.clone().into();
        bodies.push(Value::from(warm_end).to_string());
        let (_, refused) = send_all(&http, &ams, bodies, per_second).await;
        for body in &refused {
            wait_until(60, "a resolved batch accepted by a replica", || async {
                post_pair(&http, &ams, body).await.contains(&Some(200))
            })
            .await;
        }
        wait_until(drain, "every incident resolved, the storm over", || async {
            // The storm page first: the incidents are read once the flood has passed.
            rx.pages()
                .iter()
                .any(|(i, e)| i.starts_with("STORM-") && e == "resolve")
                && p.incidents()
                    .await
                    .iter()
                    .all(|i| i["status"] == "resolved")
        })
        .await;
        let storm_pages: Vec<_> = rx
            .pages()
            .into_iter()
            .filter(|(i, _)| i.starts_with("STORM-"))
            .map(|(_, e)| e)
            .collect();
        assert_eq!(storm_pages, ["trigger", "resolve"], "one storm, paged once");
        // As flood.rs: 64 MiB or half the flood's bytes, whichever is larger. remedyd gives
        // back what a busy period left resident once it has been quiet for a few seconds
        // (adapters/memory.rs, every 2 s): the reading is taken once quiet, within 30 s.
        let bound = (64 * 1024).max(bytes as u64 / 1024 / 2);
        let quiet = Instant::now();
        let mut rss_end = rss_kb(pid);
        while rss_end.saturating_sub(rss_start) > bound && quiet.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss_end = rss_kb(pid);
        }
        let quiet_after = quiet.elapsed();
        p.assert_alive();
        let m = p.metrics().await;
        let answers = webhook_codes(&m);
        let bad: Vec<_> = answers
            .iter()
            .filter(|(c, n)| !matches!(c.as_str(), "200" | "503") && **n > 0.0)
            .collect();
        assert!(
            bad.is_empty(),
            "remedyd answered {bad:?} (only 200 and 503 are documented)"
        );
        let growth = rss_end.saturating_sub(rss_start);
        eprintln!(
            "chaos-summary scenario=flood_am batches={batches} alerts={alerts} bytes={bytes} \
             posted_in={posted_in:?} post_rate_per_s={:.0} am_api_codes={codes:?} \
             refused_batches={refused_bodies} all_stored_after={all_in:?} \
             webhooks_per_s_avg={:.0} webhooks_per_s_peak={peak:.0} alerts_per_s_avg={:.0} \
             am_notifications={notified} am_failed={failed} remedyd_answers={answers:?} \
             stored={n_stored} matched={n_matched} duplicates={duplicates} actions={actions} \
             storm_pages={} refused_storm={refused_storm} rss_start_kb={rss_start} \
             rss_firing_kb={rss_firing} rss_end_kb={rss_end} rss_read_after={quiet_after:?} \
             growth_kb={growth} bound_kb={bound}",
            batches as f64 / posted_in.as_secs_f64(),
            webhooks / all_in.as_secs_f64(),
            expected / all_in.as_secs_f64(),
            storm_pages.len(),
        );
        assert!(
            growth <= bound,
            "RSS grew {growth} kB ({rss_start} → {rss_end}) over the flood; bound {bound} kB"
        );
    })
    .await;
}
