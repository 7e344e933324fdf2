//! TLS to PostgreSQL over rustls with the ring provider, shared by the store and the database
//! actions. The settings come from the DSN, parsed by [`crate::load::dsn`].

mod connector;

pub use connector::{PgTls, PgTlsConnect, PgTlsStream};

use crate::load::dsn::{explain, parse};

/// Parses `dsn`, sets its TLS up (reading the files it names) and connects; the connection
/// runs on a task of the current runtime. The error never contains the password.
pub async fn connect(dsn: &str) -> Result<tokio_postgres::Client, String> {
    let (config, settings) = parse(dsn).map_err(|e| e.to_string())?;
    let tls = PgTls::new(&settings).map_err(|e| e.to_string())?;
    let (client, conn) = config.connect(tls).await.map_err(|e| explain(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %explain(&e), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}
