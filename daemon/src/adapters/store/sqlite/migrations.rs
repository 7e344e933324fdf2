//! The SQLite schema, as numbered migrations applied once, in order, each in its own
//! transaction; `PRAGMA user_version` records what is applied. Never edit an applied migration:
//! existing databases are migrated by number.

use rusqlite::Connection;

/// The migrations, version `i + 1` at index `i`.
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
    // 5: the thread a page opened per (incident, route) (Slack Web API: `CHANNEL/ts`), so later
    // pages reply in it across restarts; and which newer update superseded a stale one.
    r#"
CREATE TABLE page_threads (
    incident_id TEXT NOT NULL,
    route TEXT NOT NULL,
    thread TEXT NOT NULL,
    PRIMARY KEY (incident_id, route)
);
ALTER TABLE outbox ADD COLUMN superseded_by INTEGER;
"#,
    // 6: steps waiting for people (`approve:`): one row per (incident, ladder, step), decided by
    // a compare-and-set on `state`; `decisions` is the JSON list of who decided, when, how.
    r#"
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
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
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    cancelled_at INTEGER
);
CREATE INDEX maintenance_windows_live ON maintenance_windows (ends_at) WHERE cancelled_at IS NULL;
"#,
    // 8: weekly maintenance windows through the API (`weekly`: the JSON `{day, from, to}`, NULL
    // for a one-off window) and who cancelled a window.
    r#"
ALTER TABLE maintenance_windows ADD COLUMN weekly TEXT;
ALTER TABLE maintenance_windows ADD COLUMN cancelled_by TEXT;
"#,
    // 9: taken by the signals table's migration (another branch); a no-op here until the two
    // meet, so that the next is numbered 10 on both.
    "",
    // 10: an incident's alerts (`Incident::active`) in rows apart from its body, written as
    // alerts join and leave: an incident holds every firing alert, and writing them with the
    // body on each change made resolving k alerts of an incident of n write k·n alerts. The
    // bodies' maps move here (a body that is not JSON is left as it is: its reads fail as
    // before).
    r#"
CREATE TABLE incident_alerts (
    incident_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint)
) WITHOUT ROWID;
INSERT INTO incident_alerts (incident_id, fingerprint, body)
    SELECT i.id, a.key, a.value
    FROM incidents i,
        json_each(CASE WHEN json_valid(i.body) THEN i.body ELSE '{}' END, '$.active') a;
UPDATE incidents SET body = json_set(body, '$.active', json('{}'))
    WHERE CASE WHEN json_valid(body) THEN json_type(body, '$.active') = 'object' ELSE 0 END;
"#,
];

/// Applies the migrations the database lacks.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(m)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
