//! `remedyd replay`'s read of a SQLite store: opened read-only (the file, its journal and its
//! rows are never written), read in one transaction so signals and incidents agree.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use super::rows::{db, decode};
use crate::adapters::store::{History, RecordedSignal, Result, StoreError};
use crate::domain::time::Timestamp;

/// The oldest schema replay can read: version 2 added `signals.last_seen` (re-sends).
const MIN_VERSION: i64 = 2;
/// How long to wait for a running daemon's write to finish before reading.
const BUSY: Duration = Duration::from_secs(5);

/// Reads what the store at `path` recorded since `since`, never writing to it.
pub fn read_history(path: &Path, since: Timestamp) -> Result<History> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    // Belt and braces: even a statement that tried to write would be refused.
    conn.pragma_update(None, "query_only", true).map_err(db)?;
    conn.busy_timeout(BUSY).map_err(db)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    if version < MIN_VERSION {
        return Err(StoreError::Corrupt(format!(
            "{} is not a remedyd store (schema version {version}, replay reads {MIN_VERSION} or later)",
            path.display()
        )));
    }
    let tx = conn.unchecked_transaction().map_err(db)?;
    let signals = tx
        .prepare(
            "SELECT body, received_at, last_seen FROM signals WHERE received_at >= ?1 ORDER BY id",
        )
        .map_err(db)?
        .query_map(params![since.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?
        .into_iter()
        .map(|(body, at, last)| {
            Ok(RecordedSignal {
                signal: decode(&body)?,
                received_at: Timestamp(at),
                last_seen: last.map(Timestamp),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let bodies = tx
        .prepare("SELECT body FROM incidents WHERE opened_at >= ?1 ORDER BY opened_at, seq")
        .map_err(db)?
        .query_map(params![since.0], |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    let mut timeline = tx
        .prepare("SELECT body FROM timeline WHERE incident_id = ?1 ORDER BY id")
        .map_err(db)?;
    let mut incidents = Vec::with_capacity(bodies.len());
    for body in bodies {
        let mut inc: crate::domain::incident::Incident = decode(&body)?;
        // Migration 10 moved the alerts apart from the body.
        if version >= 10 {
            inc = super::rows::with_alerts(&tx, inc)?;
        }
        let entries = timeline
            .query_map(params![inc.id], |r| r.get::<_, String>(0))
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?
            .iter()
            .map(|b| decode(b))
            .collect::<Result<Vec<_>>>()?;
        incidents.push((inc, entries));
    }
    drop(timeline);
    // Migration 6 added the approvals.
    let mut approvals = Vec::new();
    if version >= 6 {
        let mut ids = tx
            .prepare("SELECT id FROM approvals WHERE incident_id = ?1 ORDER BY requested_at, id")
            .map_err(db)?;
        for (inc, _) in &incidents {
            let found = ids
                .query_map(params![inc.id], |r| r.get::<_, String>(0))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            for id in found {
                approvals.extend(super::approvals::get(&tx, &id)?);
            }
        }
    }
    // Nothing was written: ending the read transaction either way is the same.
    tx.rollback().map_err(db)?;
    Ok(History {
        signals,
        incidents,
        approvals,
    })
}
