//! SQLite store: one connection on its own thread; webhook writes are group-committed (several
//! deliveries in one durable transaction) so that durability costs one fsync per batch.
//!
//! This file holds the handle ([`SqliteStore`]) and the connection's thread; `rows` what every
//! file shares, then one file per concern: `migrations`, `ingest`, `commit` and `queries` (the
//! rest of the [`Store`](super::Store) interface), and `history` (`remedyd replay`'s read-only
//! read).

mod approvals;
mod checkpoint;
mod commit;
mod history;
mod ingest;
mod maintenance;
mod migrations;
mod queries;
mod recent;
mod retention;
mod rows;
mod threads;

use std::collections::VecDeque;
use std::path::Path;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

pub use self::history::read_history;
use self::ingest::ingest_batch;
use self::migrations::migrate;
use self::recent::Recent;
use self::rows::db;
use super::{IngestResult, Receipt, Result, StoreError, StoredSignal};
use crate::domain::BoxFuture;
use crate::domain::signal::Signal;

/// Jobs waiting for the connection. 1024: a burst of Alertmanager retries fits; beyond it callers
/// wait (backpressure) rather than the queue growing without bound.
const QUEUE: usize = 1024;
/// Deliveries per group commit: bounds the latency of the first one in the batch.
const MAX_BATCH: usize = 256;

/// Prepared statements kept by the connection (see [`SqliteStore::open`]).
const STATEMENT_CACHE: usize = 128;

/// A call run on the connection's thread.
type Call = Box<dyn FnOnce(&mut Connection) + Send>;

/// What the connection's thread is asked to do.
enum Job {
    /// A delivery, its signals encoded by the caller ([`ingest::Bodies`]).
    Ingest(
        Receipt,
        Vec<Signal>,
        ingest::Bodies,
        oneshot::Sender<Result<IngestResult>>,
    ),
    /// The engine's read of unhandled signals ([`Recent::take`]).
    Pending(
        Option<i64>,
        usize,
        oneshot::Sender<Result<Vec<StoredSignal>>>,
    ),
    Call(Call),
}

/// A SQLite-backed [`Store`](super::Store).
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Job>,
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
        checkpoint::configure(&conn).map_err(db)?;
        migrate(&mut conn).map_err(db)?;
        // Room for every statement the store runs (about 70): at rusqlite's default of 16 the
        // cache evicted the engine's per-pass statements, which were then parsed again each pass.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let recent = Recent::open(&conn)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("remedyd-sqlite".into())
            .spawn(move || worker(conn, recent, rx))
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

    /// Tests: runs SQL on the store's connection (e.g. a trigger counting what commits write).
    #[cfg(test)]
    pub(crate) async fn execute_batch(&self, sql: &'static str) -> Result<()> {
        self.call(move |c| c.execute_batch(sql).map_err(db)).await
    }

    /// Tests: one integer a query answers.
    #[cfg(test)]
    pub(crate) async fn query_i64(&self, sql: impl Into<String>) -> Result<i64> {
        let sql = sql.into();
        self.call(move |c| c.query_row(&sql, [], |r| r.get(0)).map_err(db))
            .await
    }

    /// Tests: the rows a query answers, each as (text, integer, integer, integer).
    #[cfg(test)]
    pub(crate) async fn query_rows(
        &self,
        sql: &'static str,
    ) -> Result<Vec<(String, i64, i64, i64)>> {
        self.call(move |c| {
            let mut st = c.prepare(sql).map_err(db)?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)
        })
        .await
    }
}

/// The connection's thread: runs calls in order, and group-commits consecutive ingests (up to
/// [`MAX_BATCH`]); a call met while collecting a batch runs right after it. What ingest stores
/// is kept in `recent` for the engine's next read. Checkpoints run when it is idle
/// ([`checkpoint`]).
fn worker(mut conn: Connection, mut recent: Recent, mut rx: mpsc::Receiver<Job>) {
    let mut backlog: VecDeque<Job> = VecDeque::new();
    let mut checkpoint = checkpoint::IdleCheckpoint::default();
    loop {
        let job = match backlog.pop_front() {
            Some(j) => j,
            None => match rx.try_recv() {
                Ok(j) => j,
                Err(_) => {
                    checkpoint.idle(&conn);
                    match rx.blocking_recv() {
                        Some(j) => j,
                        None => return,
                    }
                }
            },
        };
        checkpoint.ran();
        match job {
            Job::Call(f) => f(&mut conn),
            Job::Pending(after, limit, reply) => {
                let _ = reply.send(recent.take(&conn, after, limit));
            }
            Job::Ingest(r, s, b, reply) => {
                let mut batch = vec![(r, s, b, reply)];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Job::Ingest(r, s, b, reply)) => batch.push((r, s, b, reply)),
                        Ok(other) => {
                            backlog.push_back(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                ingest_batch(&mut conn, batch, &mut recent);
            }
        }
    }
}
