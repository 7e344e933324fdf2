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
    // 9: the signals' unique key leads with the start instead of the fingerprint. A fingerprint
    // is a hash: keyed by it, every new alert landed on a random page of the index, which each
    // commit wrote and each checkpoint copied (3× the store's CPU per delivery, measured in
    // docs/performance.md); keyed by start, new alerts append. Lookups give both (ingest's
    // re-send update, `last_heard`). SQLite cannot drop a UNIQUE constraint: the table is
    // rebuilt, ids kept (the engine's watermark counts them).
    r#"
CREATE TABLE signals_v9 (
    id INTEGER PRIMARY KEY,
    receipt_id INTEGER,
    fingerprint TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    last_seen INTEGER,
    UNIQUE (starts_at, fingerprint, status)
);
INSERT INTO signals_v9 (id, receipt_id, fingerprint, starts_at, status, source, received_at, body, last_seen)
    SELECT id, receipt_id, fingerprint, starts_at, status, source, received_at, body, last_seen
    FROM signals ORDER BY id;
DROP TABLE signals;
ALTER TABLE signals_v9 RENAME TO signals;
"#,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 9 rebuilds `signals` under a new key: a store written before it keeps every
    /// row with its id (the engine's watermark counts ids), its `last_seen`, and its dedup.
    #[test]
    fn the_signals_rebuild_keeps_rows_ids_and_dedup() {
        let mut c = Connection::open_in_memory().unwrap();
        for m in &MIGRATIONS[..8] {
            c.execute_batch(m).unwrap();
        }
        c.pragma_update(None, "user_version", 8).unwrap();
        c.execute_batch(
            "INSERT INTO signals (id, receipt_id, fingerprint, starts_at, status, source, received_at, body, last_seen)
             VALUES (3, 1, 'b', 20, 'firing', 'webhook', 5, '{}', 9),
                    (7, 1, 'a', 10, 'firing', 'webhook', 6, '{}', NULL),
                    (8, 2, 'a', 10, 'resolved', 'webhook', 7, '{}', NULL);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        let rows: Vec<(i64, String, i64, String, Option<i64>)> = c
            .prepare(
                "SELECT id, fingerprint, starts_at, status, last_seen FROM signals ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (3, "b".into(), 20, "firing".into(), Some(9)),
                (7, "a".into(), 10, "firing".into(), None),
                (8, "a".into(), 10, "resolved".into(), None),
            ]
        );
        // The same alert again is a duplicate; a new one takes the next id.
        let insert = "INSERT INTO signals (receipt_id, fingerprint, starts_at, status, source, received_at, body)
                      VALUES (3, ?1, ?2, 'firing', 'webhook', 10, '{}') ON CONFLICT DO NOTHING";
        assert_eq!(c.execute(insert, rusqlite::params!["a", 10]).unwrap(), 0);
        assert_eq!(c.execute(insert, rusqlite::params!["a", 11]).unwrap(), 1);
        assert_eq!(c.last_insert_rowid(), 9);
        // The key leads with the start.
        let sql: String = c
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'signals'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            sql.contains("UNIQUE (starts_at, fingerprint, status)"),
            "{sql}"
        );
    }
}
