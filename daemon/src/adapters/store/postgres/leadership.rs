//! Leadership among replicas: a session advisory lock held on a dedicated connection (not
//! from the pool). Each term bumps a `leader_epoch` counter; the engine writes through a
//! [`PgStore::fenced`] store whose commits check the epoch under a row lock, so an engine that
//! lost leadership (and does not know yet) cannot write once a new leader has started. The same
//! connection `LISTEN`s for stored signals and wakes the engine.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::PgStore;
use super::wire::{LEADER_LOCK, OP_TIMEOUT, SIGNALS_CHANNEL};
use crate::load::dsn::explain;

/// How often a standby tries the leadership lock and the leader checks its connection: also
/// the failover delay after a leader's session ends.
const LEADER_POLL: Duration = Duration::from_secs(1);
/// The leader's session is ended by PostgreSQL after this long without a query (its pings come
/// every second). A frozen or partitioned leader thus frees the lock in bounded time instead of
/// after the server's TCP keepalive (2 h by default).
const LEADER_IDLE_TIMEOUT: &str = "10s";

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
