//! When the WAL is copied back into the database file (a checkpoint). SQLite's own rule, every
//! 1 000 pages and inside the commit that crosses them, puts a checkpoint (the pages written
//! back, then the database file synced) in front of a webhook's 200 now and then. The
//! connection's thread checkpoints instead when it has nothing else to do, after its replies,
//! at the same 1 000 pages; SQLite's rule stays as the backstop of a store that is never idle (a
//! storm), at ten times the pages, which also copies each hot page back once per 10 000 pages
//! written instead of ten times.

use rusqlite::Connection;

/// WAL pages not yet copied back at which an idle connection checkpoints (SQLite's default).
pub(super) const IDLE_PAGES: i64 = 1_000;

/// WAL pages at which SQLite checkpoints inside a commit (`wal_autocheckpoint`; its default
/// is 1 000): 40 MiB of WAL at most, reached only by a store that is never idle.
pub(super) const BACKSTOP_PAGES: u32 = 10_000;

/// Jobs between two looks at the WAL (each a read of its index: a few microseconds).
const LOOK_EVERY: u32 = 32;

/// Sets SQLite's own checkpoint to the backstop.
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)
}

/// WAL pages written and not yet copied back (0 outside WAL mode).
fn pending_pages(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(NOOP)", [], |r| {
        Ok(r.get::<_, i64>(1)?.max(0) - r.get::<_, i64>(2)?.max(0))
    })
}

/// Counts the jobs run and checkpoints when the connection is idle with enough WAL pending.
#[derive(Default)]
pub(super) struct IdleCheckpoint {
    jobs: u32,
}

impl IdleCheckpoint {
    /// A job ran.
    pub(super) fn ran(&mut self) {
        self.jobs = self.jobs.saturating_add(1);
    }

    /// The connection has nothing to do: checkpoints if [`IDLE_PAGES`] are pending. PASSIVE:
    /// it never waits for a reader (another process's) and never blocks a writer; a
    /// checkpoint that fails leaves the WAL to the next idle moment, or to the backstop.
    pub(super) fn idle(&mut self, conn: &Connection) {
        if self.jobs < LOOK_EVERY {
            return;
        }
        self.jobs = 0;
        let r = pending_pages(conn).and_then(|pending| {
            if pending >= IDLE_PAGES {
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the next idle moment tries again");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    use super::{IDLE_PAGES, IdleCheckpoint, LOOK_EVERY, configure, pending_pages};
    use crate::adapters::store::sqlite::SqliteStore;
    use crate::adapters::store::{Receipt, Store};
    use crate::domain::signal::{Labels, Signal, Source, Status};
    use crate::domain::time::Timestamp;

    /// Rows of `table` in the database file itself, without the WAL (what checkpoints copied
    /// back); 0 before the first, when the file does not even hold the schema.
    fn in_database_file(path: &Path, table: &str) -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let c = Connection::open_with_flags(uri, flags).unwrap();
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap_or(0)
    }

    #[test]
    fn commits_leave_the_wal_to_idle_moments_which_copy_it_back_past_a_thousand_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        configure(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t (body TEXT NOT NULL)")
            .unwrap();
        let write = |rows: usize| {
            for _ in 0..rows {
                conn.execute("INSERT INTO t VALUES (?1)", ["x".repeat(3_000)])
                    .unwrap();
            }
        };
        let mut idle = IdleCheckpoint::default();
        let look = |idle: &mut IdleCheckpoint| {
            for _ in 0..LOOK_EVERY {
                idle.ran();
            }
            idle.idle(&conn);
        };
        // Under the threshold an idle moment leaves the WAL alone.
        write(100);
        assert!(pending_pages(&conn).unwrap() < IDLE_PAGES);
        look(&mut idle);
        assert_eq!(in_database_file(&path, "t"), 0);
        // Past SQLite's default of 1 000 pages no commit copied anything back (the backstop
        // is at 10 000)...
        write(600);
        let pending = pending_pages(&conn).unwrap();
        assert!(pending > 1_000, "{pending} pages pending");
        assert_eq!(in_database_file(&path, "t"), 0);
        // ... and the next idle moment copies everything back.
        look(&mut idle);
        assert_eq!(pending_pages(&conn).unwrap(), 0);
        assert_eq!(in_database_file(&path, "t"), 700);
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
    async fn the_store_copies_the_wal_back_between_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path).unwrap();
        let backstop: i64 = store
            .call(|c| {
                c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                    .map_err(crate::adapters::store::sqlite::db)
            })
            .await
            .unwrap();
        assert_eq!(backstop, i64::from(super::BACKSTOP_PAGES));
        // Well over a thousand pages, far under the backstop: only idle moments copy back.
        for n in 0..200 {
            deliver(&store, n).await;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while in_database_file(&path, "signals") == 0 {
            assert!(std::time::Instant::now() < deadline, "no idle checkpoint");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
