//! SQLite store: one connection on its own thread; webhook writes are group-committed (several
//! deliveries in one durable transaction) so that durability costs one fsync per batch.

use std::collections::VecDeque;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{
    Commit, IngestResult, OutboxItem, Pause, Receipt, ResolveRequest, ResolveResult, Result, Store,
    StoreError, StoredSignal,
};
use crate::domain::BoxFuture;
use crate::domain::incident::{Entry, Incident, Status};
use crate::domain::policy::breaker::BreakerRecord;
use crate::domain::signal::Signal;
use crate::domain::time::Timestamp;

/// Jobs waiting for the connection. 1024: a burst of Alertmanager retries fits; beyond it callers
/// wait (backpressure) rather than the queue growing without bound.
const QUEUE: usize = 1024;
/// Deliveries per group commit: bounds the latency of the first one in the batch.
const MAX_BATCH: usize = 256;

type Call = Box<dyn FnOnce(&mut Connection) + Send>;

enum Job {
    Ingest(Receipt, Vec<Signal>, oneshot::Sender<Result<IngestResult>>),
    Call(Call),
}

/// A SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Job>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

const MIGRATIONS: &[&str] = &[
    // 1: the schema.
    r#"
CREATE TABLE receipts (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    truncated_alerts INTEGER NOT NULL,
    alerts INTEGER NOT NULL
);
CREATE TABLE signals (
    id INTEGER PRIMARY KEY,
    receipt_id INTEGER,
    fingerprint TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (fingerprint, starts_at, status)
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    rule TEXT NOT NULL,
    target_key TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (rule, target_key) WHERE status != 'resolved';
CREATE INDEX incidents_status ON incidents (status, opened_at);
CREATE TABLE timeline (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX timeline_incident ON timeline (incident_id, id);
CREATE TABLE ledger (
    incident_id TEXT NOT NULL,
    ladder INTEGER NOT NULL,
    step INTEGER NOT NULL,
    claimed_at INTEGER NOT NULL,
    finished_at INTEGER,
    result TEXT,
    PRIMARY KEY (incident_id, ladder, step)
);
CREATE TABLE budget_uses (key TEXT NOT NULL, at INTEGER NOT NULL, dry_run INTEGER NOT NULL);
CREATE INDEX budget_uses_key ON budget_uses (key, dry_run, at);
CREATE TABLE breaker_failures (key TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX breaker_failures_key ON breaker_failures (key, at);
CREATE TABLE breakers (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE pauses (scope TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    route TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT,
    done_at INTEGER,
    delivered INTEGER
);
CREATE INDEX outbox_due ON outbox (done_at, next_at);
"#,
    // 2: when a firing alert was last received: Alertmanager re-sends it every repeat_interval, and
    // ingest counts the re-send as a duplicate; an incident that hears nothing goes stale.
    r#"
ALTER TABLE signals ADD COLUMN last_seen INTEGER;
"#,
    // 3: pages are delivered in order per (incident, route): `outbox_due` asks, for each due
    // page, whether an earlier page of its incident and route is still pending. This partial
    // index answers that from the pending rows alone, however many delivered rows pile up.
    r#"
CREATE INDEX outbox_pending ON outbox (incident_id, route, id) WHERE done_at IS NULL;
"#,
    // 4: resolve requests (API, form, `remedyd resolve`), applied by the engine.
    r#"
CREATE TABLE resolve_requests (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    done_at INTEGER,
    result TEXT
);
CREATE INDEX resolve_requests_pending ON resolve_requests (id) WHERE done_at IS NULL;
"#,
];

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(m)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`; `:memory:` for tests.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path).map_err(db)?;
        // WAL lets readers proceed during writes; synchronous=FULL makes each commit durable
        // before the webhook answers 200.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        // 1 s: only another process (a backup, the sqlite3 shell) can hold the lock; the webhook
        // must answer 503 quickly so that Alertmanager retries well within its 10 s.
        conn.pragma_update(None, "busy_timeout", 1000).map_err(db)?;
        migrate(&mut conn).map_err(db)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("remedyd-sqlite".into())
            .spawn(move || worker(conn, rx))
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(Self { tx })
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> BoxFuture<'_, Result<T>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            let job: Call = Box::new(move |c| {
                let _ = tx.send(f(c));
            });
            self.tx
                .send(Job::Call(job))
                .await
                .map_err(|_| StoreError::Unavailable)?;
            rx.await.map_err(|_| StoreError::Unavailable)?
        })
    }
}

fn worker(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut backlog: VecDeque<Job> = VecDeque::new();
    loop {
        let job = match backlog.pop_front() {
            Some(j) => j,
            None => match rx.blocking_recv() {
                Some(j) => j,
                None => return,
            },
        };
        match job {
            Job::Call(f) => f(&mut conn),
            Job::Ingest(r, s, reply) => {
                let mut batch = vec![(r, s, reply)];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Job::Ingest(r, s, reply)) => batch.push((r, s, reply)),
                        Ok(other) => {
                            backlog.push_back(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                ingest_batch(&mut conn, batch);
            }
        }
    }
}

type IngestJob = (Receipt, Vec<Signal>, oneshot::Sender<Result<IngestResult>>);

fn ingest_batch(conn: &mut Connection, batch: Vec<IngestJob>) {
    let run = |conn: &mut Connection, batch: &[IngestJob]| -> rusqlite::Result<Vec<IngestResult>> {
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(batch.len());
        {
            let mut rcpt = tx.prepare_cached(
                "INSERT INTO receipts (received_at, receiver, group_key, truncated_alerts, alerts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut sig = tx.prepare_cached(
                "INSERT INTO signals (receipt_id, fingerprint, starts_at, status, source, received_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?;
            let mut heard = tx.prepare_cached(
                "UPDATE signals SET last_seen = ?1
                 WHERE fingerprint = ?2 AND starts_at = ?3 AND status = 'firing'",
            )?;
            for (r, signals, _) in batch {
                rcpt.execute(params![
                    r.received_at.0,
                    r.receiver,
                    r.group_key,
                    r.truncated_alerts as i64,
                    r.alerts as i64
                ])?;
                let rid = tx.last_insert_rowid();
                let mut res = IngestResult::default();
                for s in signals {
                    let body = serde_json::to_string(s).expect("signal serializes");
                    let n = sig.execute(params![
                        rid,
                        s.fingerprint,
                        s.starts_at.0,
                        s.status.as_str(),
                        s.source.as_str(),
                        r.received_at.0,
                        body
                    ])?;
                    if n == 1 {
                        res.stored += 1;
                    } else {
                        res.duplicates += 1;
                        if s.status == crate::domain::signal::Status::Firing {
                            heard.execute(params![
                                r.received_at.0,
                                s.fingerprint,
                                s.starts_at.0
                            ])?;
                        }
                    }
                }
                results.push(res);
            }
        }
        tx.commit()?;
        Ok(results)
    };
    match run(conn, &batch) {
        Ok(results) => {
            for ((_, _, reply), r) in batch.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for (_, _, reply) in batch {
                let _ = reply.send(Err(StoreError::Database(msg.clone())));
            }
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store values serialize")
}

fn incidents_where(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Incident>> {
    let mut st = c.prepare_cached(sql).map_err(db)?;
    let rows = st
        .query_map(p, |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    rows.iter().map(|b| decode(b)).collect()
}

fn apply_commit(conn: &mut Connection, c: Commit) -> Result<()> {
    let tx = conn.transaction().map_err(db)?;
    for (id, ladder, step, at) in &c.claims {
        let n = tx
            .execute(
                "INSERT INTO ledger (incident_id, ladder, step, claimed_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![id, *ladder as i64, *step as i64, at.0],
            )
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::AlreadyClaimed(format!(
                "{id} ladder {ladder} step {step}"
            )));
        }
    }
    apply_rest(&tx, &c).map_err(db)?;
    tx.commit().map_err(db)
}

fn apply_rest(tx: &rusqlite::Transaction<'_>, c: &Commit) -> rusqlite::Result<()> {
    for i in &c.incidents {
        let seq: i64 =
            i.id.rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        if let Some(counter) = super::incident_counter_name(&i.id) {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                params![counter, seq],
            )?;
        }
        tx.execute(
            "INSERT INTO incidents (id, seq, rule, target_key, status, opened_at, updated_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at, body = excluded.body",
            params![
                i.id,
                seq,
                i.rule,
                i.target.key(),
                i.status().as_str(),
                i.opened_at.0,
                i.updated_at.0,
                encode(i)
            ],
        )?;
    }
    for (id, e) in &c.timeline {
        tx.execute(
            "INSERT INTO timeline (incident_id, at, body) VALUES (?1, ?2, ?3)",
            params![id, e.at.0, encode(e)],
        )?;
    }
    if let Some(id) = c.processed {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ('engine_signals', ?1)
             ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            params![id],
        )?;
    }
    for (route, n) in &c.outbox {
        tx.execute(
            "INSERT INTO outbox (route, incident_id, body, next_at) VALUES (?1, ?2, ?3, 0)",
            params![route, n.incident, encode(n)],
        )?;
    }
    for (k, at, dry) in &c.budget_uses {
        tx.execute(
            "INSERT INTO budget_uses (key, at, dry_run) VALUES (?1, ?2, ?3)",
            params![k, at.0, *dry as i64],
        )?;
    }
    for (k, at) in &c.breaker_failures {
        tx.execute(
            "INSERT INTO breaker_failures (key, at) VALUES (?1, ?2)",
            params![k, at.0],
        )?;
    }
    for (k, rec) in &c.breakers {
        tx.execute(
            "INSERT INTO breakers (key, body) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET body = excluded.body",
            params![k, encode(rec)],
        )?;
    }
    for (name, value) in &c.counters {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
    }
    for (id, ladder, step, at, result) in &c.finished {
        tx.execute(
            "UPDATE ledger SET finished_at = ?4, result = ?5 WHERE incident_id = ?1 AND ladder = ?2 AND step = ?3",
            params![id, *ladder as i64, *step as i64, at.0, encode(result)],
        )?;
    }
    for (id, at, result) in &c.resolves_done {
        tx.execute(
            "UPDATE resolve_requests SET done_at = ?2, result = ?3 WHERE id = ?1",
            params![id, at.0, result.as_str()],
        )?;
    }
    Ok(())
}

/// The columns [`resolve_row`] reads, in its order.
const RESOLVE_COLUMNS: &str = "id, incident_id, reason, author, requested_at, done_at, result";

type ResolveRow = (
    i64,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

fn resolve_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResolveRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn resolve_request(row: ResolveRow) -> Result<ResolveRequest> {
    let (id, incident, reason, author, requested_at, done_at, result) = row;
    let done = match (done_at, result) {
        (Some(at), Some(r)) => Some((
            Timestamp(at),
            ResolveResult::parse(&r).ok_or_else(|| {
                StoreError::Corrupt(format!("resolve request {id}: unknown result {r:?}"))
            })?,
        )),
        _ => None,
    };
    Ok(ResolveRequest {
        id,
        incident,
        reason,
        author,
        requested_at: Timestamp(requested_at),
        done,
    })
}

impl Store for SqliteStore {
    fn ingest(
        &self,
        receipt: Receipt,
        signals: Vec<Signal>,
    ) -> BoxFuture<'_, Result<IngestResult>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send(Job::Ingest(receipt, signals, tx))
                .await
                .map_err(|_| StoreError::Unavailable)?;
            rx.await.map_err(|_| StoreError::Unavailable)?
        })
    }

    fn pending_signals(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredSignal>>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, body, received_at FROM signals
                     WHERE id > coalesce((SELECT value FROM counters WHERE name = 'engine_signals'), 0)
                     ORDER BY id LIMIT ?1",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(id, body, at)| {
                    Ok(StoredSignal {
                        id,
                        signal: decode(&body)?,
                        received_at: Timestamp(at),
                    })
                })
                .collect()
        })
    }

    fn counter(&self, name: String) -> BoxFuture<'_, Result<i64>> {
        self.call(move |c| {
            c.query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(db)
        })
    }

    fn active_incidents(&self) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.call(|c| {
            incidents_where(
                c,
                "SELECT body FROM incidents WHERE status != 'resolved' ORDER BY opened_at, seq",
                [],
            )
        })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<()>> {
        self.call(move |c| apply_commit(c, commit))
    }

    fn count_uses(&self, key: &str, since: Timestamp, dry_run: bool) -> BoxFuture<'_, Result<u32>> {
        let key = key.to_string();
        self.call(move |c| count_uses(c, &key, since, dry_run))
    }

    fn breaker(&self, key: &str) -> BoxFuture<'_, Result<BreakerRecord>> {
        let key = key.to_string();
        self.call(move |c| breaker(c, &key))
    }

    fn gate_reads(
        &self,
        uses: Vec<(String, Timestamp)>,
        dry_run: bool,
        breakers: Vec<String>,
    ) -> BoxFuture<'_, Result<(Vec<u32>, Vec<BreakerRecord>)>> {
        // One trip to the store thread instead of one per key.
        self.call(move |c| {
            let counts = uses
                .iter()
                .map(|(k, since)| count_uses(c, k, *since, dry_run))
                .collect::<Result<Vec<_>>>()?;
            let records = breakers
                .iter()
                .map(|k| breaker(c, k))
                .collect::<Result<Vec<_>>>()?;
            Ok((counts, records))
        })
    }

    fn last_heard(
        &self,
        fingerprints: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<(String, Timestamp)>>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT max(coalesce(last_seen, received_at)) FROM signals
                     WHERE fingerprint = ?1 AND status = 'firing'",
                )
                .map_err(db)?;
            let mut out = Vec::with_capacity(fingerprints.len());
            for fp in fingerprints {
                let at: Option<i64> = st.query_row(params![fp], |r| r.get(0)).map_err(db)?;
                if let Some(at) = at {
                    out.push((fp, Timestamp(at)));
                }
            }
            Ok(out)
        })
    }

    fn breakers(&self) -> BoxFuture<'_, Result<Vec<(String, BreakerRecord)>>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached("SELECT key, body FROM breakers ORDER BY key")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(k, b)| Ok((k, decode(&b)?)))
                .collect()
        })
    }

    fn count_failures(&self, key: &str, since: Timestamp) -> BoxFuture<'_, Result<u32>> {
        let key = key.to_string();
        self.call(move |c| {
            c.query_row(
                "SELECT COUNT(*) FROM breaker_failures WHERE key = ?1 AND at > ?2",
                params![key, since.0],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u32)
            .map_err(db)
        })
    }

    fn pauses(&self) -> BoxFuture<'_, Result<Vec<Pause>>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached("SELECT body FROM pauses ORDER BY scope")
                .map_err(db)?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.iter().map(|b| decode(b)).collect()
        })
    }

    fn set_pause(&self, p: Pause) -> BoxFuture<'_, Result<()>> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO pauses (scope, body) VALUES (?1, ?2) ON CONFLICT (scope) DO UPDATE SET body = excluded.body",
                params![p.scope, encode(&p)],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    fn clear_pause(&self, scope: &str) -> BoxFuture<'_, Result<bool>> {
        let scope = scope.to_string();
        self.call(move |c| {
            c.execute("DELETE FROM pauses WHERE scope = ?1", params![scope])
                .map(|n| n > 0)
                .map_err(db)
        })
    }

    fn outbox_due(
        &self,
        now: Timestamp,
        per_route: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxItem>>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT o.id, o.route, o.body, o.attempts FROM outbox o JOIN (
                         SELECT h.id, row_number() OVER (PARTITION BY h.route ORDER BY h.id) AS nth
                         FROM outbox h
                         WHERE h.done_at IS NULL AND h.next_at <= ?1
                           AND NOT EXISTS (
                               SELECT 1 FROM outbox e
                               WHERE e.done_at IS NULL AND e.incident_id = h.incident_id
                                 AND e.route = h.route AND e.id < h.id)
                     ) d ON d.id = o.id
                     WHERE d.nth <= ?2 ORDER BY o.id",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![now.0, per_route as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(id, route, body, attempts)| {
                    Ok(OutboxItem {
                        id,
                        route,
                        notification: decode(&body)?,
                        attempts: attempts as u32,
                    })
                })
                .collect()
        })
    }

    fn outbox_done(&self, id: i64, now: Timestamp, delivered: bool) -> BoxFuture<'_, Result<()>> {
        self.call(move |c| {
            c.execute(
                "UPDATE outbox SET done_at = ?2, delivered = ?3, attempts = attempts + 1 WHERE id = ?1",
                params![id, now.0, delivered as i64],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    fn outbox_retry(&self, id: i64, next_at: Timestamp, error: &str) -> BoxFuture<'_, Result<()>> {
        let error = error.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE id = ?1",
                params![id, next_at.0, error],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    fn outbox_depth(&self) -> BoxFuture<'_, Result<u64>> {
        self.call(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM outbox WHERE done_at IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(db)
        })
    }

    fn list_incidents(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.call(move |c| match status {
            Some(s) => incidents_where(
                c,
                "SELECT body FROM incidents WHERE status = ?1 ORDER BY opened_at DESC, seq DESC LIMIT ?2",
                params![s.as_str(), limit as i64],
            ),
            None => incidents_where(
                c,
                "SELECT body FROM incidents ORDER BY opened_at DESC, seq DESC LIMIT ?1",
                params![limit as i64],
            ),
        })
    }

    fn get_incident(&self, id: &str) -> BoxFuture<'_, Result<Option<Incident>>> {
        let id = id.to_string();
        self.call(move |c| {
            Ok(
                incidents_where(c, "SELECT body FROM incidents WHERE id = ?1", params![id])?
                    .into_iter()
                    .next(),
            )
        })
    }

    fn timeline(&self, id: &str) -> BoxFuture<'_, Result<Vec<Entry>>> {
        let id = id.to_string();
        self.call(move |c| {
            let mut st = c
                .prepare_cached("SELECT body FROM timeline WHERE incident_id = ?1 ORDER BY id")
                .map_err(db)?;
            let rows = st
                .query_map(params![id], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.iter().map(|b| decode(b)).collect()
        })
    }

    fn count_by_status(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>> {
        self.call(|c| {
            let mut st = c
                .prepare_cached("SELECT status, COUNT(*) FROM incidents GROUP BY status")
                .map_err(db)?;
            st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)
        })
    }

    fn request_resolve(
        &self,
        incident: &str,
        reason: &str,
        author: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<i64>> {
        let (incident, reason, author) =
            (incident.to_string(), reason.to_string(), author.to_string());
        // One replica: the caller wakes the engine in this process; another process (the CLI)
        // is picked up at the engine's next tick.
        self.call(move |c| {
            c.execute(
                "INSERT INTO resolve_requests (incident_id, reason, author, requested_at) VALUES (?1, ?2, ?3, ?4)",
                params![incident, reason, author, at.0],
            )
            .map_err(db)?;
            Ok(c.last_insert_rowid())
        })
    }

    fn pending_resolves(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ResolveRequest>>> {
        self.call(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {RESOLVE_COLUMNS} FROM resolve_requests WHERE done_at IS NULL ORDER BY id LIMIT ?1"
                ))
                .map_err(db)?;
            let rows = st
                .query_map(params![limit as i64], resolve_row)
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            rows.into_iter().map(resolve_request).collect()
        })
    }

    fn resolve_request(&self, id: i64) -> BoxFuture<'_, Result<Option<ResolveRequest>>> {
        self.call(move |c| {
            c.prepare_cached(&format!(
                "SELECT {RESOLVE_COLUMNS} FROM resolve_requests WHERE id = ?1"
            ))
            .and_then(|mut st| st.query_row(params![id], resolve_row).optional())
            .map_err(db)?
            .map(resolve_request)
            .transpose()
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.call(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db))
    }
}

fn count_uses(c: &Connection, key: &str, since: Timestamp, dry_run: bool) -> Result<u32> {
    c.prepare_cached("SELECT COUNT(*) FROM budget_uses WHERE key = ?1 AND dry_run = ?2 AND at > ?3")
        .and_then(|mut st| {
            st.query_row(params![key, dry_run as i64, since.0], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|n| n as u32)
        .map_err(db)
}

fn breaker(c: &Connection, key: &str) -> Result<BreakerRecord> {
    let body: Option<String> = c
        .prepare_cached("SELECT body FROM breakers WHERE key = ?1")
        .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
        .map_err(db)?;
    body.map(|b| decode(&b))
        .transpose()
        .map(Option::unwrap_or_default)
}
