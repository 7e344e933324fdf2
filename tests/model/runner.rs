//! Running histories: one event at a time, checks after each, panics and hangs caught; shrinking
//! a failing history to a minimal one; campaigns over many seeds on worker threads.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use remedyd::domain::time::Clock;

use super::check::{Model, Violation};
use super::history::{Event, History};
use super::spy::Fact;
use super::world::World;
use super::{generate, restart};

/// Wall-clock limit for one event: everything runs on a manual clock and in memory, so a
/// second is already slow; more means the engine hangs.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one run of a history gave.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Events applied.
    pub events: usize,
    /// Invariant checks evaluated.
    pub checks: u64,
    /// Known-open violations seen, by kind.
    pub known: BTreeMap<&'static str, u64>,
    /// What the history exercised (see `Model::coverage`).
    pub coverage: BTreeMap<String, u64>,
    /// The first violation and the index of its event.
    pub violation: Option<(usize, Violation)>,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside a history are findings, not noise: their message is kept for the report and
/// not printed (shrinking replays them hundreds of times). Other panics print as usual.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_history = LAST_PANIC.with(|p| {
                let mut p = p.borrow_mut();
                if p.as_deref() == Some("") {
                    *p = Some(info.to_string());
                    true
                } else {
                    false
                }
            });
            if !in_history {
                default(info);
            }
        }));
    });
}

fn violation(invariant: &'static str, kind: &'static str, message: String) -> Violation {
    Violation {
        invariant,
        kind,
        message,
    }
}

async fn run_async(
    h: &History,
    known_open: &[&'static str],
    progress: &AtomicUsize,
    mut trace: Option<&mut String>,
    pg: Option<&str>,
) -> Run {
    let mut run = Run::default();
    let world = match pg {
        Some(url) => World::new_pg(h, url).await,
        None => World::new(h),
    };
    let mut world = match world {
        Ok(w) => w,
        Err(e) => {
            run.violation = Some((0, violation("harness", "setup", e)));
            return run;
        }
    };
    let mut model = Model::new(world.ruleset(), world.mode, world.stale_after, known_open);
    for (i, e) in h.events.iter().enumerate() {
        progress.store(i, Ordering::Relaxed);
        run.events = i + 1;
        let storm_paged = model.storm_paged();
        let before = match e {
            Event::Restart => match restart::snapshot(&*world.raw, &model.budget_keys()).await {
                Ok(s) => Some(s),
                Err(m) => {
                    run.violation = Some((i, violation("I1", "store_error", m)));
                    break;
                }
            },
            _ => None,
        };
        let step = async {
            world.apply(e).await?;
            if let Event::Reload(_) = e {
                model.reload(world.ruleset());
            }
            if let Event::Restart = e {
                model.restart();
            }
            model.at(world.clock.now());
            // Scripts, metric values and route states are read later (by the next call, probe,
            // poll or delivery), not by a pass at this instant: the daemon is still at rest.
            let at_rest = matches!(
                e,
                Event::Next(..) | Event::Poll(..) | Event::Health(..) | Event::Route(..)
            );
            if !at_rest {
                world.settle(before.is_none()).await?;
            }
            let mut diffs = Vec::new();
            if let Some(before) = &before {
                let after = restart::snapshot(&*world.raw, &model.budget_keys()).await?;
                diffs = restart::compare(before, &after, storm_paged);
            }
            let facts = world.log.drain();
            if let Some(t) = trace.as_deref_mut() {
                t.push_str(&format!("{:>4} {e}\n", i + 1));
                for f in &facts {
                    t.push_str(&describe(f));
                }
            }
            model.facts(facts);
            // The outbox task only finds work when a page is due; the model knows when.
            if model.outbox_due() {
                world.deliver().await?;
                let facts = world.log.drain();
                if let Some(t) = trace.as_deref_mut() {
                    for f in &facts {
                        t.push_str(&describe(f));
                    }
                }
                model.facts(facts);
            }
            Ok::<_, String>(diffs)
        };
        let diffs = match tokio::time::timeout(EVENT_TIMEOUT, step).await {
            Err(_) => {
                run.violation = Some((
                    i,
                    violation(
                        "I1",
                        "hang",
                        format!("event {e} did not finish within {EVENT_TIMEOUT:?}"),
                    ),
                ));
                break;
            }
            Ok(Err(m)) => {
                let kind = if m.contains("task") {
                    "hang"
                } else {
                    "store_error"
                };
                if !model.violate("I1", kind, m.clone()) {
                    run.violation = Some((i, violation("I1", kind, m)));
                }
                break;
            }
            Ok(Ok(d)) => d,
        };
        model.checks += 1;
        for d in diffs {
            model.violate(d.invariant, d.kind, d.message);
        }
        if world.fenced_commits > 0 {
            model.violate(
                "I8",
                "fenced_engine_committed",
                format!(
                    "an engine that had lost leadership committed {} time(s) after the new leader started",
                    world.fenced_commits
                ),
            );
        }
        let pager = world.pager.clone();
        model.end_of_event(&|r| pager.up(r));
        if let Some(v) = model.violations.first() {
            run.violation = Some((i, v.clone()));
            break;
        }
    }
    if run.violation.is_none() {
        // I1: what the API reports is what was committed.
        match world.raw.list_incidents(None, 100_000).await {
            Ok(list) => {
                model.checks += 1;
                for i in list {
                    if model.incidents().get(&i.id) != Some(&i) {
                        run.violation = Some((
                            run.events.saturating_sub(1),
                            violation(
                                "I1",
                                "store_differs",
                                format!("{} in the store is not what the engine committed", i.id),
                            ),
                        ));
                        break;
                    }
                }
            }
            Err(e) => {
                run.violation = Some((
                    run.events.saturating_sub(1),
                    violation("I1", "store_error", format!("listing incidents: {e}")),
                ))
            }
        }
    }
    world.close().await;
    world.release_all();
    run.checks = model.checks;
    run.known = model.known;
    run.coverage = model.coverage;
    run
}

/// Runs a history on `rt`; a panic is reported as an I1 violation at the event it happened in.
pub fn run(rt: &tokio::runtime::Runtime, h: &History, known_open: &[&'static str]) -> Run {
    quiet_panics();
    let progress = AtomicUsize::new(0);
    LAST_PANIC.with(|p| *p.borrow_mut() = Some(String::new()));
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(run_async(h, known_open, &progress, None, None))
    }));
    let msg = LAST_PANIC.with(|p| p.borrow_mut().take());
    match r {
        Ok(run) => run,
        Err(_) => {
            let at = progress.load(Ordering::Relaxed);
            let message = msg.unwrap_or_default();
            let mut run = Run {
                events: at + 1,
                ..Run::default()
            };
            if known_open.contains(&"panic") {
                run.known.insert("panic", 1);
            } else {
                run.violation = Some((at, violation("I1", "panic", message)));
            }
            run
        }
    }
}

/// What the engine did after each event of a (small) history: timeline entries, executor
/// calls, pages and deliveries, for the report of a minimal failing history.
pub fn explain(rt: &tokio::runtime::Runtime, h: &History, known_open: &[&'static str]) -> String {
    quiet_panics();
    let progress = AtomicUsize::new(0);
    let mut out = String::new();
    LAST_PANIC.with(|p| *p.borrow_mut() = Some(String::new()));
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(run_async(h, known_open, &progress, Some(&mut out), None))
    }));
    if let Some(m) = LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .filter(|m| !m.is_empty())
    {
        out.push_str(&format!("     panic: {m}\n"));
    }
    out
}

fn describe(f: &Fact) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    match f {
        Fact::Commit(c) => {
            for (id, e) in &c.timeline {
                let _ = writeln!(s, "       {id} {}: {}", e.kind, e.message);
            }
            for (route, n) in &c.outbox {
                let _ = writeln!(s, "       page {:?} to {route} for {}", n.event, n.incident);
            }
            for (k, r) in &c.breakers {
                let _ = writeln!(s, "       breaker {k}: {r:?}");
            }
        }
        Fact::Call(c) => {
            let _ = writeln!(
                s,
                "       call {} ({}) for {} step {}",
                c.action,
                if c.dry_run { "dry_run" } else { "execute" },
                c.incident,
                c.step
            );
        }
        Fact::OutboxDone(id, true) => {
            let _ = writeln!(s, "       page row {id} delivered");
        }
        Fact::OutboxRetry(id, at) => {
            let _ = writeln!(s, "       page row {id} failed; retry at {at}");
        }
        Fact::OutboxSuperseded(ids) => {
            let _ = writeln!(s, "       page rows {ids:?} superseded by a newer update");
        }
        _ => {}
    }
    s
}

/// Runs a history on two replicas of a fresh PostgreSQL database (`url`), leadership moving
/// at every restart; a panic fails the caller.
pub async fn run_pg(h: &History, url: &str, known_open: &[&'static str]) -> Run {
    let progress = AtomicUsize::new(0);
    run_async(h, known_open, &progress, None, Some(url)).await
}

/// A runtime for one worker: current-thread, so that a history is deterministic.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("building a tokio runtime: {e}"))
}

// === shrinking ===

fn fails_with(
    rt: &tokio::runtime::Runtime,
    h: &History,
    kind: &str,
    known_open: &[&'static str],
) -> Option<(usize, Violation)> {
    run(rt, h, known_open)
        .violation
        .filter(|(_, v)| v.kind == kind)
}

fn simpler(e: &Event) -> Vec<Event> {
    match e {
        Event::Wait(s) if *s > 1 => vec![Event::Wait(s / 2)],
        Event::Alerts(a) if a.len() > 1 => (0..a.len())
            .map(|i| {
                let mut b = a.clone();
                b.remove(i);
                Event::Alerts(b)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Shrinks a history that fails with `v` to a minimal one failing with the same kind: drops
/// chunks of events (delta debugging), then single events, then simplifies the rest (shorter
/// waits, smaller payloads), within `budget`.
pub fn shrink(
    rt: &tokio::runtime::Runtime,
    h: &History,
    at: usize,
    v: Violation,
    known_open: &[&'static str],
    budget: Duration,
) -> (History, usize, Violation) {
    let start = Instant::now();
    let mut best = h.clone();
    best.events.truncate(at + 1);
    let mut best_v = (at, v);
    let kind = best_v.1.kind;
    let try_candidate = |cand: History, best: &mut History, best_v: &mut (usize, Violation)| {
        if start.elapsed() > budget {
            return false;
        }
        match fails_with(rt, &cand, kind, known_open) {
            Some((i, v)) => {
                let mut cand = cand;
                cand.events.truncate(i + 1);
                *best = cand;
                *best_v = (i, v);
                true
            }
            None => false,
        }
    };
    loop {
        let len_before = best.events.len();
        // Delta debugging over chunks: n pieces, remove one at a time.
        let mut n = 2;
        while best.events.len() >= 2 && start.elapsed() < budget {
            let len = best.events.len();
            let chunk = len.div_ceil(n);
            let mut removed = false;
            let mut s = 0;
            while s < best.events.len() {
                let mut cand = best.clone();
                let end = (s + chunk).min(cand.events.len());
                cand.events.drain(s..end);
                if try_candidate(cand, &mut best, &mut best_v) {
                    removed = true;
                } else {
                    s += chunk;
                }
            }
            if removed {
                n = n.saturating_sub(1).max(2);
            } else if chunk == 1 {
                break;
            } else {
                n = (n * 2).min(best.events.len());
            }
        }
        // Simplify the events that remain: two waits become one, then each event is made
        // simpler.
        let mut i = 0;
        while i + 1 < best.events.len() && start.elapsed() < budget {
            if let (Event::Wait(a), Event::Wait(b)) = (&best.events[i], &best.events[i + 1]) {
                let mut cand = best.clone();
                cand.events.splice(i..i + 2, [Event::Wait(a + b)]);
                if try_candidate(cand, &mut best, &mut best_v) {
                    continue;
                }
            }
            i += 1;
        }
        let mut i = 0;
        while i < best.events.len() && start.elapsed() < budget {
            let mut changed = false;
            for e in simpler(&best.events[i]) {
                let mut cand = best.clone();
                cand.events[i] = e;
                if try_candidate(cand, &mut best, &mut best_v) {
                    changed = true;
                    break;
                }
            }
            if !changed {
                i += 1;
            }
        }
        if best.events.len() == len_before || start.elapsed() > budget {
            break;
        }
    }
    (best, best_v.0, best_v.1)
}

/// The text of a minimal failing history, ready to keep under `tests/model/regressions/`.
pub fn report(h: &History, at: usize, v: &Violation, origin: &str, explained: &str) -> String {
    let note = format!(
        "{origin}\nviolation at event {}: {v}\nexpect: {}\nkeep it: save this file as tests/model/regressions/{}.txt\n\nwhat the engine did:\n{explained}",
        at + 1,
        v.kind,
        v.kind
    );
    h.to_text(&note)
}

// === campaigns ===

/// Figures of a campaign.
#[derive(Default, Debug)]
pub struct Figures {
    /// Histories run.
    pub histories: u64,
    /// Events applied.
    pub events: u64,
    /// Invariant checks evaluated.
    pub checks: u64,
    /// Known-open violations by kind.
    pub known: BTreeMap<&'static str, u64>,
    /// What the histories exercised.
    pub coverage: BTreeMap<String, u64>,
    /// Other violations by kind: count and the first minimal history's report.
    pub found: BTreeMap<&'static str, (u64, String)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs `histories` generated histories from `seed` on `workers` threads. With `stop`, the first
/// violation stops every worker (CI); otherwise each kind is counted and its first history
/// shrunk (campaign).
pub fn campaign(
    histories: std::ops::Range<u64>,
    seed: u64,
    events: usize,
    workers: usize,
    known_open: &'static [&'static str],
    stop: bool,
    shrink_budget: Duration,
) -> Figures {
    let next = Arc::new(AtomicU64::new(histories.start));
    let halt = Arc::new(AtomicBool::new(false));
    let figures = Arc::new(Mutex::new(Figures::default()));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, halt, figures) = (next.clone(), halt.clone(), figures.clone());
            std::thread::spawn(move || {
                let mut rt = runtime();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= histories.end || halt.load(Ordering::Relaxed) {
                        return;
                    }
                    let hseed = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    let len = events + (hseed % 41) as usize;
                    let h = generate::history(hseed, len);
                    let r = run(&rt, &h, known_open);
                    let mut found = None;
                    if let Some((at, v)) = r.violation.clone() {
                        let first = {
                            let f = figures.lock().unwrap_or_else(|e| e.into_inner());
                            !f.found.contains_key(v.kind)
                        };
                        if stop {
                            halt.store(true, Ordering::Relaxed);
                        }
                        if first {
                            // A panic may leave the runtime unusable: shrink on a fresh one.
                            rt = runtime();
                            let (small, at, v) = shrink(&rt, &h, at, v, known_open, shrink_budget);
                            let origin = format!(
                                "found by the model-based test: seed {seed:#x}, history {n} (its seed {hseed:#x}, {len} events), shrunk to {} events",
                                small.events.len()
                            );
                            rt = runtime();
                            let explained = explain(&rt, &small, known_open);
                            found = Some((v.kind, Some(report(&small, at, &v, &origin, &explained))));
                        } else {
                            found = Some((v.kind, None));
                        }
                        rt = runtime();
                    }
                    let mut f = figures.lock().unwrap_or_else(|e| e.into_inner());
                    f.histories += 1;
                    f.events += r.events as u64;
                    f.checks += r.checks;
                    for (k, c) in r.known {
                        *f.known.entry(k).or_default() += c;
                    }
                    for (k, c) in r.coverage {
                        *f.coverage.entry(k).or_default() += c;
                    }
                    if let Some((kind, text)) = found {
                        let e = f.found.entry(kind).or_insert((0, String::new()));
                        e.0 += 1;
                        if let Some(t) = text {
                            e.1 = t;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        if h.join().is_err() {
            halt.store(true, Ordering::Relaxed);
        }
    }
    let mut f = std::mem::take(&mut *figures.lock().unwrap_or_else(|e| e.into_inner()));
    f.elapsed = started.elapsed();
    f
}
