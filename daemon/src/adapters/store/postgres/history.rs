//! `remedyd replay`'s read of a PostgreSQL store: one connection of its own (no pool, no
//! migrations, no ingest worker), and every query in one `READ ONLY` transaction at
//! `REPEATABLE READ`, so PostgreSQL itself refuses any write and signals and incidents come from
//! one snapshot.

use std::time::Duration;

use tokio_postgres::IsolationLevel;

use super::wire::{decode, describe};
use crate::adapters::pgtls::PgTls;
use crate::adapters::store::{History, RecordedSignal};
use crate::domain::incident::Incident;
use crate::domain::time::Timestamp;
use crate::load::dsn::{explain, parse_url};

/// Bound of the whole read. 60 s: a week of signals is a few thousand rows; a read that takes
/// longer is stuck, and replay must end with an error rather than hang.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads what the store at `url` recorded since `since`, never writing to it. Errors name the
/// database (never its password).
pub async fn read_history(url: &str, since: Timestamp) -> Result<History, String> {
    let (config, settings) = parse_url(url)?;
    let name = describe(&config);
    let tls = PgTls::new(&settings).map_err(|e| format!("TLS to {name}: {e}"))?;
    let (mut client, conn) = config
        .connect(tls)
        .await
        .map_err(|e| format!("connecting to {name}: {}", explain(&e)))?;
    let driver = tokio::spawn(conn);
    let read = tokio::time::timeout(READ_TIMEOUT, read(&mut client, since)).await;
    drop(client);
    let _ = driver.await;
    match read {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => Err(format!("reading {name}: {e}")),
        Err(_) => Err(format!("reading {name}: no answer within {READ_TIMEOUT:?}")),
    }
}

async fn read(client: &mut tokio_postgres::Client, since: Timestamp) -> Result<History, String> {
    let e = |e: tokio_postgres::Error| explain(&e);
    let tx = client
        .build_transaction()
        .read_only(true)
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(e)?;
    let signals = tx
        .query(
            "SELECT body, received_at, last_seen FROM signals WHERE received_at >= $1 ORDER BY id",
            &[&since.0],
        )
        .await
        .map_err(e)?
        .iter()
        .map(|r| {
            Ok(RecordedSignal {
                signal: decode(r.try_get(0).map_err(e)?).map_err(|x| x.to_string())?,
                received_at: Timestamp(r.try_get(1).map_err(e)?),
                last_seen: r.try_get::<_, Option<i64>>(2).map_err(e)?.map(Timestamp),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let rows = tx
        .query(
            "SELECT body FROM incidents WHERE opened_at >= $1 ORDER BY opened_at, seq",
            &[&since.0],
        )
        .await
        .map_err(e)?;
    let timeline = tx
        .prepare("SELECT body FROM timeline WHERE incident_id = $1 ORDER BY id")
        .await
        .map_err(e)?;
    // Migration 10 moved the incidents' alerts apart from their bodies.
    let apart: bool = tx
        .query_one("SELECT to_regclass('incident_alerts') IS NOT NULL", &[])
        .await
        .map_err(e)?
        .get(0);
    let mut incidents = Vec::with_capacity(rows.len());
    for r in rows {
        let mut inc: Incident = decode(r.try_get(0).map_err(e)?).map_err(|x| x.to_string())?;
        if apart {
            super::with_alerts(&tx, std::slice::from_mut(&mut inc))
                .await
                .map_err(|x| x.to_string())?;
        }
        let entries = tx
            .query(&timeline, &[&inc.id])
            .await
            .map_err(e)?
            .iter()
            .map(|r| decode(r.try_get(0).map_err(e)?).map_err(|x| x.to_string()))
            .collect::<Result<Vec<_>, String>>()?;
        incidents.push((inc, entries));
    }
    // Migration 6 added the approvals.
    let mut approvals = Vec::new();
    let has: bool = tx
        .query_one("SELECT to_regclass('approvals') IS NOT NULL", &[])
        .await
        .map_err(e)?
        .try_get(0)
        .map_err(e)?;
    if has {
        for (inc, _) in &incidents {
            let rows = tx
                .query(
                    "SELECT state, decisions, body FROM approvals WHERE incident_id = $1
                     ORDER BY requested_at, id",
                    &[&inc.id],
                )
                .await
                .map_err(e)?;
            for r in rows {
                let state: String = r.try_get(0).map_err(e)?;
                let mut a: crate::domain::approval::Approval =
                    decode(r.try_get(2).map_err(e)?).map_err(|x| x.to_string())?;
                a.state = crate::domain::approval::ApprovalState::parse(&state)
                    .ok_or_else(|| format!("approval {}: unknown state {state:?}", a.id))?;
                a.decisions = decode(r.try_get(1).map_err(e)?).map_err(|x| x.to_string())?;
                approvals.push(a);
            }
        }
    }
    // Nothing was written: rolling back ends the snapshot.
    tx.rollback().await.map_err(e)?;
    Ok(History {
        signals,
        incidents,
        approvals,
    })
}
