//! The PostgreSQL schema, as numbered migrations applied once, in order, under a transaction
//! advisory lock (replicas starting together apply them once); `schema_migrations` records what
//! is applied. Never edit an applied migration: existing databases are migrated by number.

use super::wire::{MIGRATE_LOCK, encode, text};
use crate::domain::incident::Incident;
use crate::load::dsn::explain;

/// The migrations, version `i + 1` at index `i`.
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
    // 5: the thread a page opened per (incident, route) (Slack Web API: `CHANNEL/ts`), so later
    // pages reply in it across restarts and failovers; and which newer update superseded a stale
    // one.
    r#"
CREATE TABLE page_threads (
    incident_id TEXT NOT NULL,
    route TEXT NOT NULL,
    thread TEXT NOT NULL,
    PRIMARY KEY (incident_id, route)
);
ALTER TABLE outbox ADD COLUMN superseded_by BIGINT;
"#,
    // 6: steps waiting for people (`approve:`): one row per (incident, ladder, step), decided by
    // a compare-and-set on `state` under a row lock; `decisions` is the JSON list of who decided,
    // when and how.
    r#"
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    deadline BIGINT NOT NULL,
    required INTEGER NOT NULL,
    decisions TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX approvals_pending ON approvals (incident_id) WHERE state = 'pending';
"#,
    // 7: maintenance windows set through the API (one-off; the engine reads the live ones each
    // pass). Times in milliseconds since the epoch, as everywhere.
    r#"
CREATE TABLE maintenance_windows (
    id BIGSERIAL PRIMARY KEY,
    scope TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    cancelled_at BIGINT
);
CREATE INDEX maintenance_windows_live ON maintenance_windows (ends_at) WHERE cancelled_at IS NULL;
"#,
    // 8: weekly maintenance windows through the API (`weekly`: the JSON `{day, from, to}`, NULL
    // for a one-off window) and who cancelled a window.
    r#"
ALTER TABLE maintenance_windows ADD COLUMN weekly TEXT;
ALTER TABLE maintenance_windows ADD COLUMN cancelled_by TEXT;
"#,
    // 9: the signals' unique key leads with the start instead of the fingerprint (a hash): new
    // alerts append to the index instead of dirtying a random page each. The same key as
    // SQLite's migration 9; `ON CONFLICT DO NOTHING` needs no name.
    r#"
ALTER TABLE signals DROP CONSTRAINT signals_fingerprint_starts_at_status_key;
ALTER TABLE signals ADD CONSTRAINT signals_start_key UNIQUE (starts_at, fingerprint, status);
"#,
    // 10: an incident's alerts (`Incident::active`) in rows apart from its body, written as
    // alerts join and leave: an incident holds every firing alert, and writing them with the
    // body on each change made resolving k alerts of an incident of n write k·n alerts. The
    // bodies' maps move here after it (`alerts_apart`). A row's body is `[fingerprint, alert]`.
    r#"
CREATE TABLE incident_alerts (
    incident_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint)
);
"#,
];

/// Applies the migrations `client`'s database lacks, in one transaction.
pub(super) async fn migrate(
    client: &mut tokio_postgres::Client,
) -> std::result::Result<(), String> {
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
        if version == ALERTS_APART {
            alerts_apart(&tx)
                .await
                .map_err(|e| format!("migration {version}: {e}"))?;
        }
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

/// The migration that keeps incidents' alerts apart from their bodies.
const ALERTS_APART: i32 = 10;

/// Migration 10's data: each incident's alerts move from its body to rows. In Rust rather than
/// SQL: a fingerprint may hold a NUL (stored escaped in the JSON body), which `jsonb` refuses.
/// A body that does not decode is left as it is (its reads fail as before).
async fn alerts_apart(tx: &tokio_postgres::Transaction<'_>) -> Result<(), String> {
    let rows = tx
        .query(
            r#"SELECT id, body FROM incidents WHERE body NOT LIKE '%"active":{}%'"#,
            &[],
        )
        .await
        .map_err(|e| explain(&e))?;
    for r in rows {
        let id: String = r.try_get(0).map_err(|e| explain(&e))?;
        let body: String = r.try_get(1).map_err(|e| explain(&e))?;
        let Ok(mut inc) = serde_json::from_str::<Incident>(&body) else {
            tracing::warn!(incident = %id, "Migration 10: an incident body does not decode; left as it is");
            continue;
        };
        for (fp, a) in &inc.active {
            tx.execute(
                "INSERT INTO incident_alerts (incident_id, fingerprint, body) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&id, &text(fp), &encode(&(fp, a))],
            )
            .await
            .map_err(|e| explain(&e))?;
        }
        inc.active.clear();
        tx.execute(
            "UPDATE incidents SET body = $2 WHERE id = $1",
            &[&id, &encode(&inc)],
        )
        .await
        .map_err(|e| explain(&e))?;
    }
    Ok(())
}
