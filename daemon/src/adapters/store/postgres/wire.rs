//! What every file of the PostgreSQL store shares: the advisory-lock keys and the `NOTIFY`
//! channel (one namespace in the database), the bound of one operation, how driver and pool
//! errors become [`StoreError`]s, how the database is named in messages, and how values are
//! written to rows (JSON bodies, NUL-free text).

use std::time::Duration;

use tokio_postgres::config::Host;

use crate::adapters::store::{Result, StoreError};
use crate::load::dsn::explain;

/// Session advisory lock of leadership: "remedyd\0" in ASCII, unlikely to collide with another
/// application's keys in the same database.
pub(super) const LEADER_LOCK: i64 = 0x7265_6d65_6479_6400;
/// Transaction advisory lock around migrations.
pub(super) const MIGRATE_LOCK: i64 = LEADER_LOCK + 1;
/// Transaction advisory lock that orders ingest commits across replicas (see the `postgres` module doc).
pub(super) const INGEST_LOCK: i64 = LEADER_LOCK + 2;
/// `NOTIFY` channel: a replica that stored signals, or a request to resolve an incident by hand,
/// wakes the leader's engine at once instead of at its next 1 s tick.
pub(super) const SIGNALS_CHANNEL: &str = "remedyd_signals";
/// Bound of one store operation, pool wait included. 5 s: the webhook must answer (503) well
/// within Alertmanager's 10 s, and nothing healthy takes a fraction of that.
pub(super) const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// A driver error, explained (never with the password).
pub(super) fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(explain(&e))
}

/// A pool error: the database could not be reached in time.
pub(super) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => {
            StoreError::Database(format!("database unreachable: {}", explain(&e)))
        }
        other => StoreError::Database(format!("database unreachable: {other}")),
    }
}

/// Where `config` points, for messages: `user@host:port/dbname`, never the password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, p)| match h {
            Host::Tcp(h) => format!("{h}:{p}"),
            Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    format!(
        "{}@{}/{}",
        config.get_user().unwrap_or("?"),
        if hosts.is_empty() {
            "localhost:5432".to_string()
        } else {
            hosts.join(",")
        },
        config.get_dbname().unwrap_or("?")
    )
}

/// PostgreSQL's TEXT cannot hold NUL, which a label value (hence a target, a key) may carry and
/// SQLite accepts: it is stored, and looked up, as U+FFFD, so that one odd alert can neither fail
/// a group commit of other deliveries nor stall the engine.
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

/// A stored JSON body; a body that does not decode is [`StoreError::Corrupt`].
pub(super) fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A value as the JSON body it is stored as.
pub(super) fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store values serialize")
}
