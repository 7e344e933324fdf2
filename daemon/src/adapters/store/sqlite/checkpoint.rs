//! When the WAL is copied back into the database file (a checkpoint). SQLite's own rule, every
//! 1 000 pages and inside the commit that crosses them, put a checkpoint (the pages written
//! back, then the database file synced) in front of the webhook's 200 about every 2 s at
//! 100 webhooks/s: the light-load p99. The connection's thread checkpoints instead when it
//! has nothing else to do, after its replies; SQLite's rule stays as the backstop of a store
//! that is never idle (a storm), at ten times the pages, which also copies each hot page back
//! once per 10 000 pages written instead of ten times.

use rusqlite::Connection;

/// Jobs run since the last checkpoint before an idle connection checkpoints: at 100 webhooks/s
/// (two jobs each, ingest and the engine's pass) about once a second, each copying what the
/// second wrote, a millisecond or two of work that a request arriving meanwhile waits for.
pub(super) const IDLE_AFTER: u32 = 200;

/// WAL pages at which SQLite checkpoints inside a commit (`wal_autocheckpoint`; its default
/// is 1 000): 40 MiB of WAL at most, reached only by a store never idle for [`IDLE_AFTER`] jobs.
pub(super) const BACKSTOP_PAGES: u32 = 10_000;

/// Sets SQLite's own checkpoint to the backstop.
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)
}

/// Counts the jobs run and checkpoints when the connection is idle after enough of them.
#[derive(Default)]
pub(super) struct IdleCheckpoint {
    jobs: u32,
}

impl IdleCheckpoint {
    /// A job ran.
    pub(super) fn ran(&mut self) {
        self.jobs = self.jobs.saturating_add(1);
    }

    /// The connection has nothing to do: checkpoints if enough jobs ran since the last time.
    /// PASSIVE: it never waits for a reader (another process's) and never blocks a writer; a
    /// checkpoint that fails leaves the WAL to the next one, or to the backstop.
    pub(super) fn idle(&mut self, conn: &Connection) {
        if self.jobs < IDLE_AFTER {
            return;
        }
        self.jobs = 0;
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the next idle moment tries again");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    use super::IDLE_AFTER;
    use crate::adapters::store::sqlite::SqliteStore;
    use crate::adapters::store::{Receipt, Store};
    use crate::domain::signal::{Labels, Signal, Source, Status};
    use crate::domain::time::Timestamp;

    /// Signals in the database file itself, without the WAL (what a checkpoint copied back).
    fn in_database_file(path: &Path) -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let c = Connection::open_with_flags(uri, flags).unwrap();
        // Before the first checkpoint the file does not even hold the schema.
        c.query_row("SELECT count(*) FROM signals", [], |r| r.get(0))
            .unwrap_or(0)
    }

    /// One delivery of 40 alerts with bodies of about a kilobyte: 10 WAL pages or so.
    async fn deliver(store: &SqliteStore, n: usize) {
        let signals = (0..40)
            .map(|i| Signal {
                source: Source::Webhook,
                status: Status::Firing,
                labels: Labels::from([("alertname".to_string(), "Broken".to_string())]),
                annotations: Labels::from([("description".to_string(), "x".repeat(900))]),
                starts_at: Timestamp(n as i64),
                ends_at: None,
                fingerprint: format!("fp-{i}"),
                generator_url: String::new(),
                value: None,
                rule: None,
                level: None,
            })
            .collect();
        let receipt = Receipt {
            received_at: Timestamp(n as i64),
            receiver: "remedyd".into(),
            group_key: "{}".into(),
            truncated_alerts: 0,
            alerts: 40,
        };
        store.ingest(receipt, signals).await.unwrap();
    }

    #[tokio::test]
    async fn the_wal_is_copied_back_when_the_store_is_idle_not_inside_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).unwrap();
        // Fewer jobs than IDLE_AFTER, over 1 000 pages of WAL (SQLite's default checkpoint):
        // no commit checkpointed, and no idle moment did.
        let first = IDLE_AFTER as usize - 20;
        for n in 0..first {
            deliver(&store, n).await;
        }
        let pages: i64 = store
            .call(|c| {
                c.query_row("PRAGMA wal_checkpoint(NOOP)", [], |r| r.get(1))
                    .map_err(crate::adapters::store::sqlite::db)
            })
            .await
            .unwrap();
        assert!(pages > 1_000, "{pages} pages in the WAL");
        assert_eq!(in_database_file(&path), 0, "nothing copied back yet");
        // Past IDLE_AFTER jobs: an idle moment copies back everything written before it, the
        // first phase's deliveries and more.
        for n in first..first + 40 {
            deliver(&store, n).await;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while in_database_file(&path) <= 40 * first as i64 {
            assert!(std::time::Instant::now() < deadline, "no idle checkpoint");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
