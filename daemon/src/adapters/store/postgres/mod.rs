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
//!
//! This file holds the handle ([`PgStore`]: the pool, the ingest queue, the fence) and how it
//! connects; `wire` what every file shares, then one file per concern: `migrations`, `ingest`,
//! `commit`, `queries` (the rest of the [`Store`](super::Store) interface), `leadership`, and `history`
//! (`remedyd replay`'s read-only read).

mod approvals;
mod commit;
mod history;
mod ingest;
mod leadership;
mod maintenance;
mod migrations;
mod queries;
mod retention;
mod threads;
mod wire;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;

use self::ingest::{IngestJob, ingest_worker};
use self::migrations::migrate;
use self::wire::{OP_TIMEOUT, db, decode, pool_error};
use super::{Result, StoreError};
use crate::adapters::pgtls::PgTls;
use crate::domain::BoxFuture;
use crate::domain::incident::Incident;
use crate::load::dsn::{CONNECT_TIMEOUT, parse_url};

pub use self::history::read_history;
pub use self::leadership::{Leadership, Term};
pub use self::wire::describe;
pub use crate::load::dsn::explain;

/// Pooled connections per replica. 16: the webhook holds one per group commit, the engine and
/// outbox one each, the API a few; more would only queue inside PostgreSQL.
const POOL_SIZE: usize = 16;
/// Deliveries queued for the group-commit worker. 1024: a burst of Alertmanager retries fits;
/// beyond it callers wait (backpressure) rather than the queue growing without bound.
const QUEUE: usize = 1024;

/// A PostgreSQL-backed [`Store`](super::Store), shared by every replica.
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
        let mut incidents = c
            .query(&st, params)
            .await
            .map_err(db)?
            .iter()
            .map(|r| decode(r.get(0)))
            .collect::<Result<Vec<Incident>>>()?;
        with_alerts(&**c, &mut incidents).await?;
        Ok(incidents)
    }
}

/// Fills `incidents`' alerts, which are kept in rows apart from their bodies (migration 10;
/// a row's body is `[fingerprint, alert]`).
pub(super) async fn with_alerts(
    c: &impl tokio_postgres::GenericClient,
    incidents: &mut [Incident],
) -> Result<()> {
    if incidents.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = incidents
        .iter()
        .map(|i| wire::text(&i.id).into_owned())
        .collect();
    let rows = c
        .query(
            "SELECT incident_id, body FROM incident_alerts WHERE incident_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(db)?;
    let at: std::collections::HashMap<String, usize> = incidents
        .iter()
        .enumerate()
        .map(|(n, i)| (wire::text(&i.id).into_owned(), n))
        .collect();
    for r in rows {
        let (id, body): (String, String) = (r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?);
        if let Some(inc) = at.get(&id).and_then(|n| incidents.get_mut(*n)) {
            let (fp, alert): (String, crate::domain::incident::ActiveAlert) = decode(&body)?;
            inc.active.insert(fp, alert);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
