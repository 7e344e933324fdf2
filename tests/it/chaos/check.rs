//! What the store holds at the end of a chaos run, read behind remedyd's back, and the
//! invariants every kill scenario ends with.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{Receiver, check_pages, repeated, str_of};

// ---------------------------------------------------------------------------------------------
// What the store holds at the end, read behind remedyd's back

/// The store's rows that the invariants are checked against.
#[derive(Default)]
pub(super) struct Facts {
    /// Fingerprints of the stored signals.
    pub(super) fingerprints: std::collections::BTreeSet<String>,
    /// (incident, ladder, step, result) of every ledger claim.
    pub(super) ledger: Vec<(String, i64, i64, Option<String>)>,
    /// (incident, route, event, done) of every outbox row.
    pub(super) outbox: Vec<(String, String, String, bool)>,
}

fn event_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .map(|v| str_of(&v["event"]))
        .unwrap_or_default()
}

/// Reads the SQLite store (remedyd may be running: WAL readers do not block it).
pub(super) fn sqlite_facts(db: &Path) -> Facts {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {}: {e}", db.display()));
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let mut f = Facts::default();
    let mut q = c
        .prepare("SELECT fingerprint FROM signals")
        .expect("signals");
    f.fingerprints = q
        .query_map([], |r| r.get::<_, String>(0))
        .expect("signals")
        .map(|r| r.expect("signal row"))
        .collect();
    let mut q = c
        .prepare("SELECT incident_id, ladder, step, result FROM ledger")
        .expect("ledger");
    f.ledger = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("ledger")
        .map(|r| r.expect("ledger row"))
        .collect();
    let mut q = c
        .prepare("SELECT incident_id, route, body, done_at IS NOT NULL FROM outbox")
        .expect("outbox");
    f.outbox = q
        .query_map([], |r| {
            let body: String = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, event_of(&body), r.get(3)?))
        })
        .expect("outbox")
        .map(|r| r.expect("outbox row"))
        .collect();
    f
}

/// Reads the PostgreSQL store.
pub(super) async fn pg_facts(c: &tokio_postgres::Client) -> Facts {
    let mut f = Facts::default();
    for r in c
        .query("SELECT fingerprint FROM signals", &[])
        .await
        .expect("signals")
    {
        f.fingerprints.insert(r.get(0));
    }
    for r in c
        .query("SELECT incident_id, ladder, step, result FROM ledger", &[])
        .await
        .expect("ledger")
    {
        let ladder: i32 = r.get(1);
        let step: i32 = r.get(2);
        f.ledger
            .push((r.get(0), ladder.into(), step.into(), r.get(3)));
    }
    for r in c
        .query(
            "SELECT incident_id, route, body, done_at IS NOT NULL FROM outbox",
            &[],
        )
        .await
        .expect("outbox")
    {
        let body: String = r.get(2);
        f.outbox
            .push((r.get(0), r.get(1), event_of(&body), r.get(3)));
    }
    f
}

/// What a chaos run counted; printed as one `chaos-summary` line.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) kills: usize,
    /// Alerts posted (first sends; an Alertmanager re-send of an unacknowledged one not counted).
    pub(super) sent: usize,
    /// Alerts answered 200 on their first send.
    pub(super) acked: usize,
    /// Alerts without a 200 on their first send (connection refused or reset by a kill, or a
    /// 503): Alertmanager's to re-send, which the test does before checking.
    pub(super) unacked: usize,
    pub(super) answered_503: usize,
    pub(super) stored: usize,
    pub(super) incidents: usize,
    pub(super) steps_claimed: usize,
    pub(super) steps_executed: usize,
    pub(super) steps_interrupted_before_request: usize,
    /// Claims recorded as interrupted by a kill (the request may or may not have left).
    pub(super) steps_interrupted: usize,
    pub(super) duplicates: usize,
    pub(super) trigger_pages: usize,
    pub(super) trigger_resent: usize,
    pub(super) lost: usize,
}

impl Tally {
    pub(super) fn print(&self, scenario: &str) {
        eprintln!("chaos-summary scenario={scenario} {self:?}");
    }
}

/// The invariants every kill scenario ends with, given the store's facts, the receiver, the
/// fingerprints answered 200 and the incidents (all escalated). Fills `t`.
pub(super) fn check_invariants(
    f: &Facts,
    rx: &Receiver,
    acked: &std::collections::BTreeSet<String>,
    incidents: &[String],
    t: &mut Tally,
) {
    // 1. Every alert answered 200 is in the store.
    let lost: Vec<&String> = acked.difference(&f.fingerprints).collect();
    t.stored = f.fingerprints.len();
    t.lost = lost.len();
    assert!(
        lost.is_empty(),
        "{} acknowledged alerts lost: {lost:?}",
        lost.len()
    );

    // 2. No step ran twice: each (incident, step) reached the receiver at most once.
    let actions = rx.actions();
    let dup = repeated(&actions);
    t.duplicates = dup.len();
    t.steps_executed = actions.len();
    assert!(dup.is_empty(), "steps executed more than once: {dup:?}");

    // 3. No request without its claim committed first: per incident, requests ≤ claims, and
    //    every claim is finished (ok, failed or interrupted) once the run has settled.
    let mut claims: BTreeMap<&str, usize> = BTreeMap::new();
    for (inc, _, _, result) in &f.ledger {
        *claims.entry(inc).or_insert(0) += 1;
        assert!(
            result.is_some(),
            "{inc}: a claim left unfinished: {:?}",
            f.ledger
        );
    }
    let mut hits: BTreeMap<&str, usize> = BTreeMap::new();
    for (inc, _) in &actions {
        *hits.entry(inc).or_insert(0) += 1;
    }
    for (inc, n) in &hits {
        let c = claims.get(inc).copied().unwrap_or(0);
        assert!(*n <= c, "{inc}: {n} requests but {c} ledger claims");
    }
    t.steps_claimed = f.ledger.len();
    t.steps_interrupted = f
        .ledger
        .iter()
        .filter(|l| l.3.as_deref().is_some_and(|r| r.contains("interrupted")))
        .count();
    t.steps_interrupted_before_request = f.ledger.len() - actions.len();

    // 4. One trigger page per incident and route in the store (the outbox), all delivered, and
    //    the first page each incident's route receives is its trigger. A send cut by a kill is
    //    re-sent (at least once; same dedup key): at most one per kill.
    let mut triggers: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (inc, route, event, done) in &f.outbox {
        assert!(done, "{inc} {route} {event}: page not delivered");
        if event == "trigger" && !inc.starts_with("STORM-") {
            *triggers.entry((inc, route)).or_insert(0) += 1;
        }
    }
    let twice: Vec<_> = triggers.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "trigger pages enqueued more than once: {twice:?}"
    );
    assert_eq!(
        triggers.len(),
        incidents.len(),
        "one trigger per escalated incident: {triggers:?}"
    );
    let (delivered, resent) = check_pages(&rx.pages(), incidents);
    t.trigger_pages = delivered;
    t.trigger_resent = resent;
    assert!(
        resent <= t.kills,
        "{resent} trigger pages re-sent with only {} kills",
        t.kills
    );
}
