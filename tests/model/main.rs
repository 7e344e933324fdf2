//! The model-based test of the engine (issue 10 §2).
//!
//! Generated histories drive the real engine (`Engine::pass` on a manual clock, the real SQLite
//! store in memory, the real ruleset loader, poller and outbox) with recording executors and a
//! recording pager. After every event the invariants I1–I8 are checked over what the engine
//! wrote (see `check.rs` and `restart.rs`). A failing history is shrunk to a minimal one and
//! printed in the text form that `regressions/*.txt` keep.
//!
//! - CI: `generated_histories_hold_every_invariant` runs 1 000 histories of 200–240 events (see
//!   [`CI_HISTORIES`]); `two_engines_on_postgresql_…` runs 6 on PostgreSQL.
//! - Campaign: `REMEDYD_MODEL_CAMPAIGN=<histories> [REMEDYD_MODEL_SEED=<n>] cargo nextest run
//!   --test model generated` runs as many as asked and prints the figures; every kind of violation
//!   found is shrunk and printed. `REMEDYD_MODEL_IGNORE=kind,kind` counts kinds already found
//!   instead of stopping at them; `REMEDYD_MODEL_SAVE=DIR` writes each minimal history to
//!   `DIR/KIND.txt`; `REMEDYD_MODEL_WORKERS` sets the threads; `REMEDYD_MODEL_FROM=N` starts at
//!   history N (to replay one a campaign reported).

mod breaker;
mod check;
mod fakes;
mod generate;
mod history;
mod restart;
mod rng;
mod runner;
#[path = "../support/services.rs"]
mod services;
mod spy;
mod world;

use std::time::Duration;

/// Defects of the engine the model finds that are not fixed yet: their checks count instead of
/// failing. Each has a minimal history in `tests/model/regressions/KIND.txt`, which must keep
/// failing while its kind is listed here (and must pass once it is removed).
const KNOWN_OPEN: &[&str] = &[];

/// Histories in the CI run. The issue asks for 2 000 of 200+ events in about a minute; in the
/// debug build on the 2-core CI machine a history costs ~0.3 s of CPU (the engine's work and its
/// store round trips), so 1 000 take ~6 minutes and `REMEDYD_MODEL_CAMPAIGN=2000` runs the full
/// count (docs/testing.md: The model-based test of the engine).
const CI_HISTORIES: u64 = 1_000;
/// Events per history (each history adds up to 40 more).
const EVENTS: usize = 200;
/// The CI run's seed: fixed, so that CI is reproducible; campaigns choose their own.
const CI_SEED: u64 = 0x5eed_2026_0010;
/// Time allowed to shrink a failing history.
const SHRINK_BUDGET: Duration = Duration::from_secs(120);

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

#[test]
fn generated_histories_hold_every_invariant() {
    let campaign = env_u64("REMEDYD_MODEL_CAMPAIGN");
    let histories = campaign.unwrap_or(CI_HISTORIES);
    let seed = env_u64("REMEDYD_MODEL_SEED").unwrap_or(CI_SEED);
    let workers = env_u64("REMEDYD_MODEL_WORKERS").map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        |n| n as usize,
    );
    // Exploring: kinds already found can be counted instead of stopping each history, so that
    // the next kinds show (REMEDYD_MODEL_IGNORE=kind,kind).
    let mut known: Vec<&'static str> = KNOWN_OPEN.to_vec();
    if let Ok(extra) = std::env::var("REMEDYD_MODEL_IGNORE") {
        known.extend(
            extra
                .split(',')
                .map(|k| &*Box::leak(k.trim().to_string().into_boxed_str())),
        );
    }
    // Reproducing a reported history: REMEDYD_MODEL_FROM=<its number> starts there.
    let from = env_u64("REMEDYD_MODEL_FROM").unwrap_or(0);
    let f = runner::campaign(
        from..from + histories,
        seed,
        EVENTS,
        workers,
        Box::leak(known.into_boxed_slice()),
        campaign.is_none(),
        SHRINK_BUDGET,
    );
    let violations: u64 = f.found.values().map(|(n, _)| n).sum();
    println!(
        "model: seed {seed:#x}: {} histories, {} events, {} invariant checks, {} violation(s) ({} kind(s)), known-open {:?}, {:.1}s on {workers} worker(s)",
        f.histories,
        f.events,
        f.checks,
        violations,
        f.found.len(),
        f.known,
        f.elapsed.as_secs_f64()
    );
    let covered = [
        "step_started",
        "breaker_trial",
        "breaker_opened",
        "verified",
        "verification_failed",
        "verification_no_data",
        "step_refused",
        "step_interrupted",
        "superseded",
        "held",
        "suspended",
        "escalated",
        "stale",
        "resolved_by_hand",
        "page_retry",
        "page_superseded",
    ];
    println!(
        "model: exercised {}",
        covered
            .iter()
            .map(|k| format!("{k} {}", f.coverage.get(*k).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let save = std::env::var("REMEDYD_MODEL_SAVE").ok();
    for (kind, (n, text)) in &f.found {
        println!("\n=== {kind}: {n} history(ies); the first, shrunk:\n{text}");
        if let Some(dir) = &save {
            let path = std::path::Path::new(dir).join(format!("{kind}.txt"));
            if let Err(e) = std::fs::write(&path, text) {
                println!("cannot write {}: {e}", path.display());
            }
        }
    }
    assert!(
        f.found.is_empty(),
        "the engine broke an invariant (minimal histories above): {:?}",
        f.found.keys().collect::<Vec<_>>()
    );
    if campaign.is_none() {
        assert_eq!(f.histories, histories, "every history ran");
    }
}

#[test]
fn kept_regression_histories_replay_as_expected() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/model/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let rt = runner::runtime();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.display();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {name}: {e}"));
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: no `# expect: KIND` line"))
            .trim()
            .to_string();
        let h = history::History::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let run = runner::run(&rt, &h, KNOWN_OPEN);
        if KNOWN_OPEN.contains(&kind.as_str()) {
            if !run.known.contains_key(kind.as_str()) {
                failures.push(format!(
                    "{name}: {kind} no longer happens: the defect is fixed; remove it from KNOWN_OPEN"
                ));
            }
        } else if let Some((at, v)) = run.violation {
            let explained = runner::explain(&runner::runtime(), &h, KNOWN_OPEN);
            failures.push(format!(
                "{name}: event {}: {v}\nwhat the engine did:\n{explained}",
                at + 1
            ));
        }
    }
    assert!(failures.is_empty(), "regressions:\n{}", failures.join("\n"));
}

/// The PostgreSQL run: fewer, shorter histories (each on a fresh database, two replicas, real
/// round trips), with leadership moving often.
const PG_HISTORIES: u64 = 6;
/// Events per PostgreSQL history.
const PG_EVENTS: usize = 120;
/// Leadership moves every this many events (on top of the generated restarts).
const PG_HANDOVER_EVERY: usize = 12;
/// Bound on the whole PostgreSQL run (server start included).
const PG_LIMIT: Duration = Duration::from_secs(600);

#[test]
fn two_engines_on_postgresql_hold_every_invariant_while_leadership_moves() {
    let rt = runner::runtime();
    let seed = env_u64("REMEDYD_MODEL_SEED").unwrap_or(CI_SEED);
    let failures = rt.block_on(async {
        tokio::time::timeout(PG_LIMIT, async {
            let pg = services::Postgres::start().await;
            let mut failures = Vec::new();
            let (mut events, mut checks, mut handovers) = (0, 0, 0);
            for n in 0..PG_HISTORIES {
                let url = pg.create_database(&format!("model_{n}")).await;
                let mut h = generate::history(seed ^ (n + 1).wrapping_mul(0x51_7cc1_b727_220a), PG_EVENTS);
                for (i, e) in h.events.iter_mut().enumerate() {
                    if i % PG_HANDOVER_EVERY == PG_HANDOVER_EVERY - 1 {
                        *e = history::Event::Restart;
                    }
                }
                handovers += h.events.iter().filter(|e| **e == history::Event::Restart).count();
                let run = runner::run_pg(&h, &url, KNOWN_OPEN).await;
                events += run.events;
                checks += run.checks;
                if let Some((at, v)) = run.violation {
                    // Shrink on SQLite when it fails there too (no database per attempt).
                    let text = tokio::task::spawn_blocking(move || {
                        let rt = runner::runtime();
                        match runner::run(&rt, &h, KNOWN_OPEN).violation {
                            Some((at, sv)) if sv.kind == v.kind => {
                                let (small, at, sv) =
                                    runner::shrink(&rt, &h, at, sv, KNOWN_OPEN, SHRINK_BUDGET);
                                let explained = runner::explain(&rt, &small, KNOWN_OPEN);
                                runner::report(&small, at, &sv, "found on PostgreSQL; shrunk on SQLite", &explained)
                            }
                            _ => runner::report(&h, at, &v, "found on PostgreSQL only (not shrunk)", ""),
                        }
                    })
                    .await
                    .unwrap_or_else(|e| format!("shrinking panicked: {e}"));
                    failures.push(text);
                }
            }
            println!(
                "model on PostgreSQL: {PG_HISTORIES} histories, {events} events, {handovers} leadership moves, {checks} invariant checks, {} violation(s)",
                failures.len()
            );
            failures
        })
        .await
        .unwrap_or_else(|_| vec![format!("the PostgreSQL run did not finish within {PG_LIMIT:?}")])
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
