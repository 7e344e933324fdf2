//! Signals the engine has not read yet, kept in memory as ingest commits them: the engine's next
//! read ([`Store::pending_signals`]) takes them from here instead of selecting and decoding the
//! rows that were just written. The table stays the record; memory is only a shortcut, taken
//! when it provably holds every row the engine has not seen:
//!
//! - every row with an id ≥ `covered_from` is in `rows`, in id order (ingest is the only writer
//!   of the table on this connection, and a failed batch rolls its ids back);
//! - a row written by another connection (a gap before the next pushed id, or a newest id in the
//!   table that was not pushed) drops the shortcut until the engine has caught up through the
//!   table;
//! - rows handed out, or dropped because memory is full (the engine lags), move `covered_from`
//!   past them, so a re-read after a failed engine commit, or a lagging engine, reads the table.
//!
//! [`Store::pending_signals`]: crate::adapters::store::Store::pending_signals

use std::collections::VecDeque;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{db, decode};
use crate::adapters::store::{Result, StoredSignal};
use crate::domain::time::Timestamp;

/// Signals kept at most (a few kilobytes each). Beyond it the oldest are dropped from memory
/// (never from the table) and the engine reads them from the table. 8 192: at 2 048, a
/// saturating storm of 50-alert webhooks kept the engine (which shares the core with intake)
/// just past the cap, so that every signal was encoded, dropped from memory unread, then read
/// and decoded again from the table: a fifth of the process's CPU. The engine's largest batch
/// holds twice this many when it reads a backlog from the table.
const CAP: usize = 8192;

/// The unread signals in memory, and what they cover.
pub(super) struct Recent {
    rows: VecDeque<StoredSignal>,
    /// Every existing row with an id ≥ this is in `rows`.
    covered_from: i64,
    /// The newest id known to this connection: pushed, or the table's newest when reset.
    newest: i64,
}

/// The table's newest signal id (0 when empty).
fn newest_id(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT coalesce(max(id), 0) FROM signals")
        .map_err(db)?
        .query_row([], |r| r.get(0))
        .map_err(db)
}

/// The id of the last signal the engine has committed as handled.
fn cursor(c: &Connection) -> Result<i64> {
    Ok(
        c.prepare_cached("SELECT value FROM counters WHERE name = 'engine_signals'")
            .map_err(db)?
            .query_row([], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(db)?
            .unwrap_or(0),
    )
}

/// Up to `limit` signals after `cursor`, from the table.
fn select(c: &Connection, cursor: i64, limit: usize) -> Result<Vec<StoredSignal>> {
    let mut st = c
        .prepare_cached(
            "SELECT id, body, received_at FROM signals WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .map_err(db)?;
    let rows = st
        .query_map(params![cursor, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
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
}

impl Recent {
    /// Nothing in memory; covers what is written from now on.
    pub(super) fn open(c: &Connection) -> Result<Self> {
        let newest = newest_id(c)?;
        Ok(Self {
            rows: VecDeque::new(),
            covered_from: newest + 1,
            newest,
        })
    }

    /// A signal ingest has just committed (called in id order).
    pub(super) fn push(&mut self, s: StoredSignal) {
        if s.id != self.newest + 1 {
            // A gap: rows another connection wrote in between are only in the table.
            self.rows.clear();
            self.covered_from = s.id;
        }
        if self.rows.len() == CAP
            && let Some(old) = self.rows.pop_front()
        {
            self.covered_from = old.id + 1;
        }
        self.newest = s.id;
        self.rows.push_back(s);
    }

    /// Up to `limit` signals the engine has not handled, in id order: from memory when it
    /// holds all of them, else from the table. Handled means committed, or up to `after` (what
    /// the engine has handled and holds to commit later).
    pub(super) fn take(
        &mut self,
        c: &Connection,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredSignal>> {
        let cursor = cursor(c)?.max(after.unwrap_or(0));
        let newest = newest_id(c)?;
        if newest != self.newest {
            // Written by another connection: memory no longer covers the table's tail.
            self.rows.clear();
            self.covered_from = newest + 1;
            self.newest = newest;
            return select(c, cursor, limit);
        }
        while self.rows.front().is_some_and(|s| s.id <= cursor) {
            self.rows.pop_front();
        }
        if cursor + 1 < self.covered_from {
            return select(c, cursor, limit);
        }
        let n = limit.min(self.rows.len());
        let out: Vec<StoredSignal> = self.rows.drain(..n).collect();
        if let Some(last) = out.last() {
            self.covered_from = last.id + 1;
        }
        Ok(out)
    }
}
