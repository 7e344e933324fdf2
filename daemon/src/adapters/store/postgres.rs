//! PostgreSQL store: several replicas share one database. Same schema and semantics as the
//! SQLite store, plus what sharing needs:
//!
//! - **Migrations** run in one transaction under `pg_advisory_xact_lock`, so replicas starting
//!   together apply them once; `schema_migrations` records what is applied.
//! - **Ingest** is group-committed per replica (several deliveries in one transaction) and
//!   serialized across replicas by a transaction advisory lock taken before the first insert.
//!   That keeps signal ids in commit order, which the engine's watermark relies on: without it,
//!   replica A could take id 10, replica B id 11 and commit first, the engine would move its
//!   watermark past 11 and signal 10 would never be handled.
//! - **Leadership** ([`Leadership`]): a session advisory lock held on a dedicated connection (not
//!   from the pool). Each term bumps a `leader_epoch` counter; the engine writes through a
//!   [`PgStore::fenced`] store whose commits check the epoch under a row lock, so an engine that
//!   lost leadership (and does not know yet) cannot write once a new leader has started.
//! - Ledger claims fail the whole commit with [`StoreError::AlreadyClaimed`], across replicas.
//!
//! TLS follows the URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` as libpq does (see
//! [`crate::adapters::pgtls`]); the pool and the leadership connection use the same connector. The URL's
//! password is never logged: messages name the database by [`describe`].

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_postgres::AsyncMessage;
use tokio_postgres::config::Host;
use tokio_util::sync::CancellationToken;

use super::{
    Commit, IngestResult, OutboxItem, Pause, Receipt, ResolveRequest, ResolveResult, Result, Store,
    StoreError, StoredSignal,
};
use crate::adapters::pgtls::PgTls;
use crate::domain::BoxFuture;
use crate::domain::incident::{Entry, Incident, Status};
use crate::domain::policy::breaker::BreakerRecord;
use crate::domain::signal::Signal;
use crate::domain::time::Timestamp;

/// Session advisory lock of leadership: "remedyd\0" in ASCII, unlikely to collide with another
/// application's keys in the same database.
const LEADER_LOCK: i64 = 0x7265_6d65_6479_6400;
/// Transaction advisory lock around migrations.
const MIGRATE_LOCK: i64 = LEADER_LOCK + 1;
/// Transaction advisory lock that orders ingest commits across replicas (see the module doc).
const INGEST_LOCK: i64 = LEADER_LOCK + 2;
/// `NOTIFY` channel: a replica that stored signals, or a request to resolve an incident by hand,
/// wakes the leader's engine at once instead of at its next 1 s tick.
const SIGNALS_CHANNEL: &str = "remedyd_signals";

/// Pooled connections per replica. 16: the webhook holds one per group commit, the engine and
/// outbox one each, the API a few; more would only queue inside PostgreSQL.
const POOL_SIZE: usize = 16;
/// Bound of one store operation, pool wait included. 5 s: the webhook must answer (503) well
/// within Alertmanager's 10 s, and nothing healthy takes a fraction of that.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
use crate::load::dsn::{CONNECT_TIMEOUT, parse_url};
/// Deliveries queued for the group-commit worker. 1024: a burst of Alertmanager retries fits;
/// beyond it callers wait (backpressure) rather than the queue growing without bound.
const QUEUE: usize = 1024;
/// Deliveries per group commit: bounds the latency of the first one in the batch.
const MAX_BATCH: usize = 256;
/// How often a standby tries the leadership lock and the leader checks its connection: also
/// the failover delay after a leader's session ends.
const LEADER_POLL: Duration = Duration::from_secs(1);
/// The leader's session is ended by PostgreSQL after this long without a query (its pings come
/// every second). A frozen or partitioned leader thus frees the lock in bounded time instead of
/// after the server's TCP keepalive (2 h by default).
const LEADER_IDLE_TIMEOUT: &str = "10s";

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(explain(&e))
}

pub use crate::load::dsn::explain;

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => {
            StoreError::Database(format!("database unreachable: {}", explain(&e)))
        }
        other => StoreError::Database(format!("database unreachable: {other}")),
    }
}

/// Where `config` points, for messages: `user@host:port/dbname`, never the password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            Host::Tcp(h) => format!("{h}:{p}"),
            Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    format!(
        "{}@{}/{}",
        config.get_user().unwrap_or("?"),
        if hosts.is_empty() {
            "localhost:5432".to_string()
        } else {
            hosts.join(",")
        },
        config.get_dbname().unwrap_or("?")
    )
}

const MIGRATIONS: &[&str] = &[
    // 1: the schema.
    r#"
CREATE TABLE receipts (
    id BIGSERIAL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    truncated_alerts BIGINT NOT NULL,
    alerts BIGINT NOT NULL
);
CREATE TABLE signals (
    id BIGSERIAL PRIMARY KEY,
    receipt_id BIGINT,
    fingerprint TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (fingerprint, starts_at, status)
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    rule TEXT NOT NULL,
    target_key TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (rule, target_key) WHERE status <> 'resolved';
CREATE INDEX incidents_status ON incidents (status, opened_at);
CREATE TABLE timeline (
    id BIGSERIAL PRIMARY KEY,
    incident_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX timeline_incident ON timeline (incident_id, id);
CREATE TABLE ledger (
    incident_id TEXT NOT NULL,
    ladder INTEGER NOT NULL,
    step INTEGER NOT NULL,
    claimed_at BIGINT NOT NULL,
    finished_at BIGINT,
    result TEXT,
    PRIMARY KEY (incident_id, ladder, step)
);
CREATE TABLE budget_uses (key TEXT NOT NULL, at BIGINT NOT NULL, dry_run BOOLEAN NOT NULL);
CREATE INDEX budget_uses_key ON budget_uses (key, dry_run, at);
CREATE TABLE breaker_failures (key TEXT NOT NULL, at BIGINT NOT NULL);
CREATE INDEX breaker_failures_key ON breaker_failures (key, at);
CREATE TABLE breakers (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE pauses (scope TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    route TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    last_error TEXT,
    done_at BIGINT,
    delivered BOOLEAN
);
CREATE INDEX outbox_due ON outbox (done_at, next_at);
"#,
    // 2: when a firing alert was last received (a re-send is a duplicate): stale incidents.
    r#"
ALTER TABLE signals ADD COLUMN last_seen BIGINT;
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
    id BIGSERIAL PRIMARY KEY,
    incident_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    done_at BIGINT,
    result TEXT
);
CREATE INDEX resolve_requests_pending ON resolve_requests (id) WHERE done_at IS NULL;
"#,
];

async fn migrate(client: &mut tokio_postgres::Client) -> std::result::Result<(), String> {
    let tx = client.transaction().await.map_err(|e| explain(&e))?;
    // Held until COMMIT: a second replica waits here, then finds everything applied.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|e| explain(&e))?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(|e| explain(&e))?
        .get(0);
    if !exists {
        tx.batch_execute(
            "CREATE TABLE schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|e| explain(&e))?;
    }
    let applied: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(|e| explain(&e))?
        .get(0);
    for (i, m) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(m)
            .await
            .map_err(|e| format!("migration {version}: {}", explain(&e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(|e| explain(&e))?;
        tracing::info!(version, "Applied a store migration");
    }
    tx.commit().await.map_err(|e| explain(&e))
}

type IngestJob = (Receipt, Vec<Signal>, oneshot::Sender<Result<IngestResult>>);

/// A PostgreSQL-backed [`Store`], shared by every replica.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    /// The URL's TLS, for the leadership connection (the pool has its own clone).
    tls: PgTls,
    ingest: mpsc::Sender<IngestJob>,
    /// With `Some(epoch)`, commits succeed only while `leader_epoch` equals it.
    fence: Option<i64>,
    describe: Arc<str>,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies migrations. Fails when the database is
    /// unreachable: at startup that is an error, never a silent downgrade.
    pub async fn connect(url: &str) -> std::result::Result<Self, String> {
        let (config, settings) = parse_url(url)?;
        let describe: Arc<str> = describe(&config).into();
        let tls = PgTls::new(&settings).map_err(|e| format!("TLS to {describe}: {e}"))?;
        let (mut client, conn) = config
            .connect(tls.clone())
            .await
            .map_err(|e| format!("connecting to {describe}: {}", explain(&e)))?;
        let driver = tokio::spawn(conn);
        let migrated = migrate(&mut client).await;
        drop(client);
        let _ = driver.await;
        migrated.map_err(|e| format!("migrating {describe}: {e}"))?;

        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                // A connection the server closed reports it; the first query on a silently
                // dead one fails, the request answers 503 and the connection is dropped.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OP_TIMEOUT))
            // Connect plus SCRAM authentication, which costs CPU on both sides when a burst
            // fills the pool at once.
            .create_timeout(Some(OP_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| format!("connection pool: {e}"))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(ingest_worker(pool.clone(), rx));
        tracing::info!(database = %describe, sslmode = %settings.mode, verify_chain = settings.verifies_chain(), client_cert = settings.cert.is_some(), "Connected to the PostgreSQL store");
        Ok(Self {
            pool,
            config,
            tls,
            ingest: tx,
            fence: None,
            describe,
        })
    }

    /// The same store whose commits succeed only while leadership term `epoch` is current: what
    /// the leader's engine writes through.
    pub fn fenced(&self, epoch: i64) -> Self {
        Self {
            fence: Some(epoch),
            ..self.clone()
        }
    }

    /// `user@host:port/dbname`, for messages.
    pub fn database(&self) -> &str {
        &self.describe
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs `f` bounded by [`OP_TIMEOUT`].
    fn op<'a, T: Send + 'a>(
        &'a self,
        f: impl std::future::Future<Output = Result<T>> + Send + 'a,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            tokio::time::timeout(OP_TIMEOUT, f)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Database(format!(
                        "no answer from {} within {OP_TIMEOUT:?}",
                        self.describe
                    )))
                })
        })
    }

    async fn incidents_where(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Incident>> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(db)?;
        c.query(&st, params)
            .await
            .map_err(db)?
            .iter()
            .map(|r| decode(r.get(0)))
            .collect()
    }
}

/// PostgreSQL's TEXT cannot hold NUL, which a label value (hence a target, a key) may carry and
/// SQLite accepts: it is stored, and looked up, as U+FFFD, so that one odd alert can neither fail
/// a group commit of other deliveries nor stall the engine.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store values serialize")
}

async fn ingest_worker(pool: Pool, mut rx: mpsc::Receiver<IngestJob>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = match tokio::time::timeout(OP_TIMEOUT, ingest_batch(&pool, &batch)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Database(format!(
                "group commit took longer than {OP_TIMEOUT:?}"
            ))),
        };
        match result {
            Ok(results) => {
                for ((_, _, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                let msg = match e {
                    StoreError::Database(m) => m,
                    other => other.to_string(),
                };
                for (_, _, reply) in batch {
                    let _ = reply.send(Err(StoreError::Database(msg.clone())));
                }
            }
        }
    }
}

/// One transaction for every delivery in `batch`.
async fn ingest_batch(pool: &Pool, batch: &[IngestJob]) -> Result<Vec<IngestResult>> {
    let mut c = pool.get().await.map_err(pool_error)?;
    let tx = c.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INGEST_LOCK])
        .await
        .map_err(db)?;
    let rcpt = tx
        .prepare_cached(
            "INSERT INTO receipts (received_at, receiver, group_key, truncated_alerts, alerts)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .await
        .map_err(db)?;
    // One statement per delivery; rows are inserted (and numbered) in array order.
    let sig = tx
        .prepare_cached(
            "INSERT INTO signals (receipt_id, fingerprint, starts_at, status, source, received_at, body)
             SELECT $1, f, s, st, src, $6, b
             FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $7::text[]) AS u (f, s, st, src, b)
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut stored = 0;
    for (r, signals, _) in batch {
        let rid: i64 = tx
            .query_one(
                &rcpt,
                &[
                    &r.received_at.0,
                    &text(&r.receiver),
                    &text(&r.group_key),
                    &(r.truncated_alerts as i64),
                    &(r.alerts as i64),
                ],
            )
            .await
            .map_err(db)?
            .get(0);
        let fps: Vec<_> = signals.iter().map(|s| text(&s.fingerprint)).collect();
        let starts: Vec<i64> = signals.iter().map(|s| s.starts_at.0).collect();
        let statuses: Vec<&str> = signals.iter().map(|s| s.status.as_str()).collect();
        let sources: Vec<&str> = signals.iter().map(|s| s.source.as_str()).collect();
        let bodies: Vec<String> = signals.iter().map(encode).collect();
        let n = tx
            .execute(
                &sig,
                &[
                    &rid,
                    &fps,
                    &starts,
                    &statuses,
                    &sources,
                    &r.received_at.0,
                    &bodies,
                ],
            )
            .await
            .map_err(db)? as usize;
        stored += n;
        if n < signals.len() {
            // Re-sent firing alerts: the incident they belong to is still heard of.
            let firing: Vec<usize> = (0..signals.len())
                .filter(|i| signals[*i].status == crate::domain::signal::Status::Firing)
                .collect();
            if !firing.is_empty() {
                let f: Vec<_> = firing.iter().map(|i| fps[*i].clone()).collect();
                let s: Vec<i64> = firing.iter().map(|i| starts[*i]).collect();
                tx.execute(
                    "UPDATE signals SET last_seen = $1
                     FROM unnest($2::text[], $3::bigint[]) AS u (f, s)
                     WHERE fingerprint = u.f AND starts_at = u.s AND status = 'firing'",
                    &[&r.received_at.0, &f, &s],
                )
                .await
                .map_err(db)?;
            }
        }
        results.push(IngestResult {
            stored: n,
            duplicates: signals.len() - n,
        });
    }
    if stored > 0 {
        // Delivered at COMMIT, to the leader's LISTEN connection.
        tx.execute("SELECT pg_notify($1, '')", &[&SIGNALS_CHANNEL])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(results)
}

async fn apply_commit(
    c: &mut deadpool_postgres::Object,
    fence: Option<i64>,
    x: Commit,
) -> Result<()> {
    let tx = c.transaction().await.map_err(db)?;
    if let Some(epoch) = fence {
        // FOR SHARE conflicts with the epoch bump of a new leader: either this commit finishes
        // before the new term starts (and the new leader reads it), or it sees the new epoch.
        let current: Option<i64> = tx
            .query_opt(
                "SELECT value FROM counters WHERE name = 'leader_epoch' FOR SHARE",
                &[],
            )
            .await
            .map_err(db)?
            .map(|r| r.get(0));
        if current != Some(epoch) {
            return Err(StoreError::Database(format!(
                "not the leader: leadership term {epoch} ended (current term {})",
                current.map_or("none".to_string(), |c| c.to_string())
            )));
        }
    }
    let claim = tx
        .prepare_cached(
            "INSERT INTO ledger (incident_id, ladder, step, claimed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db)?;
    for (id, ladder, step, at) in &x.claims {
        let n = tx
            .execute(
                &claim,
                &[&text(id), &i32::from(*ladder), &(*step as i32), &at.0],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            tx.rollback().await.map_err(db)?;
            return Err(StoreError::AlreadyClaimed(format!(
                "{id} ladder {ladder} step {step}"
            )));
        }
    }
    if !x.incidents.is_empty() {
        let st = tx
            .prepare_cached(
                "INSERT INTO incidents (id, seq, rule, target_key, status, opened_at, updated_at, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                     updated_at = excluded.updated_at, body = excluded.body",
            )
            .await
            .map_err(db)?;
        for i in &x.incidents {
            let seq: i64 =
                i.id.rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            if let Some(counter) = super::incident_counter_name(&i.id) {
                tx.execute(
                    "INSERT INTO counters (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)",
                    &[&counter, &seq],
                )
                .await
                .map_err(db)?;
            }
            tx.execute(
                &st,
                &[
                    &text(&i.id),
                    &seq,
                    &text(&i.rule),
                    &text(&i.target.key()),
                    &i.status().as_str(),
                    &i.opened_at.0,
                    &i.updated_at.0,
                    &encode(i),
                ],
            )
            .await
            .map_err(db)?;
        }
    }
    for (id, e) in &x.timeline {
        let st = tx
            .prepare_cached("INSERT INTO timeline (incident_id, at, body) VALUES ($1, $2, $3)")
            .await
            .map_err(db)?;
        tx.execute(&st, &[&text(id), &e.at.0, &encode(e)])
            .await
            .map_err(db)?;
    }
    if let Some(id) = x.processed {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ('engine_signals', $1)
             ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, excluded.value)",
            &[&id],
        )
        .await
        .map_err(db)?;
    }
    for (name, value) in &x.counters {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&text(name), value],
        )
        .await
        .map_err(db)?;
    }
    for (route, n) in &x.outbox {
        tx.execute(
            "INSERT INTO outbox (route, incident_id, body, next_at) VALUES ($1, $2, $3, 0)",
            &[&text(route), &text(&n.incident), &encode(n)],
        )
        .await
        .map_err(db)?;
    }
    for (k, at, dry) in &x.budget_uses {
        tx.execute(
            "INSERT INTO budget_uses (key, at, dry_run) VALUES ($1, $2, $3)",
            &[&text(k), &at.0, dry],
        )
        .await
        .map_err(db)?;
    }
    for (k, at) in &x.breaker_failures {
        tx.execute(
            "INSERT INTO breaker_failures (key, at) VALUES ($1, $2)",
            &[&text(k), &at.0],
        )
        .await
        .map_err(db)?;
    }
    for (k, rec) in &x.breakers {
        tx.execute(
            "INSERT INTO breakers (key, body) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET body = excluded.body",
            &[&text(k), &encode(rec)],
        )
        .await
        .map_err(db)?;
    }
    for (id, ladder, step, at, result) in &x.finished {
        tx.execute(
            "UPDATE ledger SET finished_at = $4, result = $5
             WHERE incident_id = $1 AND ladder = $2 AND step = $3",
            &[
                &text(id),
                &i32::from(*ladder),
                &(*step as i32),
                &at.0,
                &encode(result),
            ],
        )
        .await
        .map_err(db)?;
    }
    for (id, at, result) in &x.resolves_done {
        tx.execute(
            "UPDATE resolve_requests SET done_at = $2, result = $3 WHERE id = $1",
            &[id, &at.0, &result.as_str()],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

/// The columns [`resolve_request`] reads, in its order.
const RESOLVE_COLUMNS: &str = "id, incident_id, reason, author, requested_at, done_at, result";

fn resolve_request(r: &tokio_postgres::Row) -> Result<ResolveRequest> {
    let id: i64 = r.try_get(0).map_err(db)?;
    let done_at: Option<i64> = r.try_get(5).map_err(db)?;
    let result: Option<String> = r.try_get(6).map_err(db)?;
    let done = match (done_at, result) {
        (Some(at), Some(result)) => Some((
            Timestamp(at),
            ResolveResult::parse(&result).ok_or_else(|| {
                StoreError::Corrupt(format!("resolve request {id}: unknown result {result:?}"))
            })?,
        )),
        _ => None,
    };
    Ok(ResolveRequest {
        id,
        incident: r.try_get(1).map_err(db)?,
        reason: r.try_get(2).map_err(db)?,
        author: r.try_get(3).map_err(db)?,
        requested_at: Timestamp(r.try_get(4).map_err(db)?),
        done,
    })
}

impl Store for PgStore {
    fn ingest(
        &self,
        receipt: Receipt,
        signals: Vec<Signal>,
    ) -> BoxFuture<'_, Result<IngestResult>> {
        self.op(async move {
            let (tx, rx) = oneshot::channel();
            self.ingest
                .send((receipt, signals, tx))
                .await
                .map_err(|_| StoreError::Unavailable)?;
            rx.await.map_err(|_| StoreError::Unavailable)?
        })
    }

    fn pending_signals(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredSignal>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT id, body, received_at FROM signals
                     WHERE id > coalesce((SELECT value FROM counters WHERE name = 'engine_signals'), 0)
                     ORDER BY id LIMIT $1",
                )
                .await
                .map_err(db)?;
            c.query(&st, &[&(limit as i64)])
                .await
                .map_err(db)?
                .iter()
                .map(|r| {
                    Ok(StoredSignal {
                        id: r.get(0),
                        signal: decode(r.get(1))?,
                        received_at: Timestamp(r.get(2)),
                    })
                })
                .collect()
        })
    }

    fn counter(&self, name: String) -> BoxFuture<'_, Result<i64>> {
        self.op(async move {
            let c = self.client().await?;
            Ok(
                c.query_opt("SELECT value FROM counters WHERE name = $1", &[&name])
                    .await
                    .map_err(db)?
                    .map(|r| r.get(0))
                    .unwrap_or_default(),
            )
        })
    }

    fn active_incidents(&self) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.op(self.incidents_where(
            "SELECT body FROM incidents WHERE status <> 'resolved' ORDER BY opened_at, seq",
            &[],
        ))
    }

    fn commit(&self, c: Commit) -> BoxFuture<'_, Result<()>> {
        // Not bounded by OP_TIMEOUT (the pool bounds getting a connection): a client-side
        // timeout after COMMIT was sent would report a failure for a commit that may have
        // happened, and the engine would not launch a step it had claimed.
        Box::pin(async move {
            let mut client = self.client().await?;
            apply_commit(&mut client, self.fence, c).await
        })
    }

    fn count_uses(&self, key: &str, since: Timestamp, dry_run: bool) -> BoxFuture<'_, Result<u32>> {
        let key = key.to_string();
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM budget_uses WHERE key = $1 AND dry_run = $2 AND at > $3",
                )
                .await
                .map_err(db)?;
            let n: i64 = c
                .query_one(&st, &[&text(&key), &dry_run, &since.0])
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u32)
        })
    }

    fn breaker(&self, key: &str) -> BoxFuture<'_, Result<BreakerRecord>> {
        let key = key.to_string();
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT body FROM breakers WHERE key = $1")
                .await
                .map_err(db)?;
            match c.query_opt(&st, &[&text(&key)]).await.map_err(db)? {
                Some(r) => decode(r.get(0)),
                None => Ok(BreakerRecord::default()),
            }
        })
    }

    fn last_heard(
        &self,
        fingerprints: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<(String, Timestamp)>>> {
        self.op(async move {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT fingerprint, max(coalesce(last_seen, received_at)) FROM signals
                     WHERE fingerprint = ANY($1::text[]) AND status = 'firing'
                     GROUP BY fingerprint",
                    &[&fingerprints],
                )
                .await
                .map_err(db)?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, String>(0), Timestamp(r.get::<_, i64>(1))))
                .collect())
        })
    }

    fn breakers(&self) -> BoxFuture<'_, Result<Vec<(String, BreakerRecord)>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT key, body FROM breakers ORDER BY key")
                .await
                .map_err(db)?;
            c.query(&st, &[])
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((r.get(0), decode(r.get(1))?)))
                .collect()
        })
    }

    fn count_failures(&self, key: &str, since: Timestamp) -> BoxFuture<'_, Result<u32>> {
        let key = key.to_string();
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT COUNT(*) FROM breaker_failures WHERE key = $1 AND at > $2")
                .await
                .map_err(db)?;
            let n: i64 = c
                .query_one(&st, &[&text(&key), &since.0])
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u32)
        })
    }

    fn pauses(&self) -> BoxFuture<'_, Result<Vec<Pause>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT body FROM pauses ORDER BY scope")
                .await
                .map_err(db)?;
            c.query(&st, &[])
                .await
                .map_err(db)?
                .iter()
                .map(|r| decode(r.get(0)))
                .collect()
        })
    }

    fn set_pause(&self, p: Pause) -> BoxFuture<'_, Result<()>> {
        self.op(async move {
            let c = self.client().await?;
            c.execute(
                "INSERT INTO pauses (scope, body) VALUES ($1, $2)
                 ON CONFLICT (scope) DO UPDATE SET body = excluded.body",
                &[&text(&p.scope), &encode(&p)],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn clear_pause(&self, scope: &str) -> BoxFuture<'_, Result<bool>> {
        let scope = scope.to_string();
        self.op(async move {
            let c = self.client().await?;
            let n = c
                .execute("DELETE FROM pauses WHERE scope = $1", &[&text(&scope)])
                .await
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn outbox_due(
        &self,
        now: Timestamp,
        per_route: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxItem>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(
                    "SELECT o.id, o.route, o.body, o.attempts FROM outbox o JOIN (
                         SELECT h.id, row_number() OVER (PARTITION BY h.route ORDER BY h.id) AS nth
                         FROM outbox h
                         WHERE h.done_at IS NULL AND h.next_at <= $1
                           AND NOT EXISTS (
                               SELECT 1 FROM outbox e
                               WHERE e.done_at IS NULL AND e.incident_id = h.incident_id
                                 AND e.route = h.route AND e.id < h.id)
                     ) d ON d.id = o.id
                     WHERE d.nth <= $2 ORDER BY o.id",
                )
                .await
                .map_err(db)?;
            c.query(&st, &[&now.0, &(per_route as i64)])
                .await
                .map_err(db)?
                .iter()
                .map(|r| {
                    Ok(OutboxItem {
                        id: r.get(0),
                        route: r.get(1),
                        notification: decode(r.get(2))?,
                        attempts: r.get::<_, i32>(3) as u32,
                    })
                })
                .collect()
        })
    }

    fn outbox_done(&self, id: i64, now: Timestamp, delivered: bool) -> BoxFuture<'_, Result<()>> {
        self.op(async move {
            let c = self.client().await?;
            c.execute(
                "UPDATE outbox SET done_at = $2, delivered = $3, attempts = attempts + 1 WHERE id = $1",
                &[&id, &now.0, &delivered],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn outbox_retry(&self, id: i64, next_at: Timestamp, error: &str) -> BoxFuture<'_, Result<()>> {
        let error = error.to_string();
        self.op(async move {
            let c = self.client().await?;
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_at = $2, last_error = $3 WHERE id = $1",
                &[&id, &next_at.0, &text(&error)],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn outbox_depth(&self) -> BoxFuture<'_, Result<u64>> {
        self.op(async move {
            let c = self.client().await?;
            let n: i64 = c
                .query_one("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL", &[])
                .await
                .map_err(db)?
                .get(0);
            Ok(n as u64)
        })
    }

    fn list_incidents(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Incident>>> {
        self.op(async move {
            let limit = limit as i64;
            match status {
                Some(s) => {
                    self.incidents_where(
                        "SELECT body FROM incidents WHERE status = $1
                         ORDER BY opened_at DESC, seq DESC LIMIT $2",
                        &[&s.as_str(), &limit],
                    )
                    .await
                }
                None => {
                    self.incidents_where(
                        "SELECT body FROM incidents ORDER BY opened_at DESC, seq DESC LIMIT $1",
                        &[&limit],
                    )
                    .await
                }
            }
        })
    }

    fn get_incident(&self, id: &str) -> BoxFuture<'_, Result<Option<Incident>>> {
        let id = id.to_string();
        self.op(async move {
            Ok(self
                .incidents_where("SELECT body FROM incidents WHERE id = $1", &[&text(&id)])
                .await?
                .into_iter()
                .next())
        })
    }

    fn timeline(&self, id: &str) -> BoxFuture<'_, Result<Vec<Entry>>> {
        let id = id.to_string();
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached("SELECT body FROM timeline WHERE incident_id = $1 ORDER BY id")
                .await
                .map_err(db)?;
            c.query(&st, &[&text(&id)])
                .await
                .map_err(db)?
                .iter()
                .map(|r| decode(r.get(0)))
                .collect()
        })
    }

    fn count_by_status(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>> {
        self.op(async move {
            let c = self.client().await?;
            Ok(c.query(
                "SELECT status, COUNT(*) FROM incidents GROUP BY status ORDER BY status",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
        })
    }

    fn request_resolve(
        &self,
        incident: &str,
        reason: &str,
        author: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<i64>> {
        let (incident, reason, author) = (
            text(incident).into_owned(),
            text(reason).into_owned(),
            text(author).into_owned(),
        );
        self.op(async move {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(db)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO resolve_requests (incident_id, reason, author, requested_at)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&incident, &reason, &author, &at.0],
                )
                .await
                .map_err(db)?
                .get(0);
            // Delivered at COMMIT to the leader's LISTEN connection, whichever replica leads.
            tx.execute("SELECT pg_notify($1, 'resolve')", &[&SIGNALS_CHANNEL])
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(id)
        })
    }

    fn pending_resolves(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ResolveRequest>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {RESOLVE_COLUMNS} FROM resolve_requests
                     WHERE done_at IS NULL ORDER BY id LIMIT $1"
                ))
                .await
                .map_err(db)?;
            c.query(&st, &[&(limit as i64)])
                .await
                .map_err(db)?
                .iter()
                .map(resolve_request)
                .collect()
        })
    }

    fn resolve_request(&self, id: i64) -> BoxFuture<'_, Result<Option<ResolveRequest>>> {
        self.op(async move {
            let c = self.client().await?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {RESOLVE_COLUMNS} FROM resolve_requests WHERE id = $1"
                ))
                .await
                .map_err(db)?;
            c.query_opt(&st, &[&id])
                .await
                .map_err(db)?
                .as_ref()
                .map(resolve_request)
                .transpose()
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.op(async move {
            let c = self.client().await?;
            c.simple_query("SELECT 1").await.map_err(db)?;
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Leadership

/// Leadership among replicas: a session advisory lock on a dedicated connection (not from the
/// pool, whose connections come and go). A standby polls the lock every [`LEADER_POLL`]; the
/// leader pings its connection as often. The lock is released when the session ends: a killed
/// leader's at once (the kernel closes its socket), a frozen or partitioned one's after
/// [`LEADER_IDLE_TIMEOUT`].
pub struct Leadership {
    store: PgStore,
    wake: Arc<Notify>,
}

/// One term of leadership. [`Term::lost`] is cancelled when the connection holding the lock
/// fails (the lock may be gone): stop leading at once.
pub struct Term {
    /// The term's number (`leader_epoch`), increasing across replicas.
    pub epoch: i64,
    /// The store fenced to this term.
    pub store: PgStore,
    lost: CancellationToken,
    client: Arc<tokio_postgres::Client>,
    pinger: tokio::task::JoinHandle<()>,
    driver: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Leadership over `store`'s database; `wake` is notified when any replica stores signals.
    pub fn new(store: PgStore, wake: Arc<Notify>) -> Self {
        Self { store, wake }
    }

    /// Waits until this process holds leadership; `None` when `cancel` fires first. Retries
    /// (every [`LEADER_POLL`]) while the database is unreachable.
    pub async fn acquire(&self, cancel: &CancellationToken) -> Option<Term> {
        let mut failing = false;
        loop {
            match self.try_acquire(cancel, &mut failing).await {
                Ok(Some(term)) => {
                    tracing::info!(database = %self.store.describe, epoch = term.epoch, "Acquired leadership: this replica runs the engine, the poller and the outbox");
                    return Some(term);
                }
                Ok(None) => return None,
                Err(e) => {
                    if !failing {
                        tracing::warn!(database = %self.store.describe, error = %e, "Leadership: cannot use the database; retrying every second");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(LEADER_POLL) => {}
            }
        }
    }

    /// One connection's worth of trying; `failing` is whether the last try failed (logged once
    /// per outage).
    async fn try_acquire(
        &self,
        cancel: &CancellationToken,
        failing: &mut bool,
    ) -> std::result::Result<Option<Term>, String> {
        let (client, mut conn) = self
            .store
            .config
            .connect(self.store.tls.clone())
            .await
            .map_err(|e| explain(&e))?;
        if std::mem::take(failing) {
            tracing::info!(database = %self.store.describe, "Leadership: the database answers again");
        }
        let lost = CancellationToken::new();
        let driver = {
            let lost = lost.clone();
            let wake = self.wake.clone();
            tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %explain(&e), "Leadership connection failed");
                            break;
                        }
                        None => break,
                    }
                }
                lost.cancel();
            })
        };
        // Dropping `client` on any early return closes the session and frees the lock.
        let client = Arc::new(client);
        within(
            "SET",
            client.batch_execute(&format!(
                "SET idle_session_timeout = '{LEADER_IDLE_TIMEOUT}'"
            )),
        )
        .await?;
        let mut standing_by = false;
        loop {
            if lost.is_cancelled() {
                return Err("the connection closed".into());
            }
            let got: bool = within(
                "pg_try_advisory_lock",
                client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK]),
            )
            .await?
            .get(0);
            if got {
                break;
            }
            if !standing_by {
                tracing::info!(database = %self.store.describe, "Another replica leads: standing by (this one takes webhooks and serves the API)");
                standing_by = true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = tokio::time::sleep(LEADER_POLL) => {}
            }
        }
        // A new term: waits for a commit of the previous term in flight (it holds the epoch row
        // FOR SHARE), after which the previous term's commits fail.
        let epoch: i64 = within(
            "leader_epoch",
            client.query_one(
                "INSERT INTO counters (name, value) VALUES ('leader_epoch', 1)
                 ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
                &[],
            ),
        )
        .await?
        .get(0);
        within(
            "LISTEN",
            client.batch_execute(&format!("LISTEN {SIGNALS_CHANNEL}")),
        )
        .await?;
        let pinger = {
            let client = client.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = lost.cancelled() => return,
                        _ = tokio::time::sleep(LEADER_POLL) => {}
                    }
                    let ok = matches!(
                        tokio::time::timeout(OP_TIMEOUT, client.simple_query("SELECT 1")).await,
                        Ok(Ok(_))
                    );
                    if !ok {
                        tracing::warn!("Leadership connection does not answer");
                        lost.cancel();
                        return;
                    }
                }
            })
        };
        Ok(Some(Term {
            epoch,
            store: self.store.fenced(epoch),
            lost,
            client,
            pinger,
            driver,
        }))
    }
}

/// `f` bounded by [`OP_TIMEOUT`], its error named after `what`.
async fn within<T>(
    what: &str,
    f: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {}", explain(&e))),
        Err(_) => Err(format!("{what}: no answer within {OP_TIMEOUT:?}")),
    }
}

impl Term {
    /// Cancelled when leadership may be lost.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Gives leadership up (unlock, close the session) so that a standby takes over at once.
    pub async fn release(self) {
        self.pinger.abort();
        let _ = self.pinger.await;
        if !self.lost.is_cancelled() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.client
                    .execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK]),
            )
            .await;
        }
        drop(self.client);
        // The driver ends once the session is closed; abort it if the server does not answer.
        let mut driver = self.driver;
        if tokio::time::timeout(Duration::from_secs(1), &mut driver)
            .await
            .is_err()
        {
            driver.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_database_without_its_password() {
        let (c, _) = parse_url("postgres://remedyd:s3cr3t@db.example:6543/incidents").unwrap();
        assert_eq!(describe(&c), "remedyd@db.example:6543/incidents");
        let (c, _) = parse_url("postgresql://remedyd@db?password=s3cr3t&dbname=x").unwrap();
        assert!(!describe(&c).contains("s3cr3t"), "{}", describe(&c));
        for url in [
            "postgres://remedyd:s3cr3t@db/x",
            "postgres://remedyd@db/x?password=s3cr3t&sslmode=disable",
            "postgres://remedyd:p@ss:s3cr3t@db/x",
        ] {
            let r = crate::load::config::redact_url(url);
            assert!(!r.contains("s3cr3t"), "{r}");
        }
    }

    #[test]
    fn the_urls_tls_settings_are_taken_and_a_verify_mode_without_a_ca_is_refused() {
        let (c, tls) =
            parse_url("postgres://u:s3cr3t@db/x?sslmode=verify-full&sslrootcert=/etc/ca.pem")
                .unwrap();
        assert_eq!(tls.mode, crate::load::dsn::SslMode::VerifyFull);
        assert_eq!(
            tls.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        let e = parse_url("postgres://u:s3cr3t@db/x?sslmode=verify-ca").unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(parse_url("postgres://u@db/x?sslmode=disable").is_ok());
        assert!(parse_url("mysql://u@db/x").is_err());
        let e = parse_url("postgres://u:s3cr3t@db/x?sslmode=bogus").unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn an_unset_connect_timeout_gets_a_bound() {
        let (c, _) = parse_url("postgres://u@db/x").unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        let (c, _) = parse_url("postgres://u@db/x?connect_timeout=9").unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(9)));
    }
}
