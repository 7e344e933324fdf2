//! Ingest: deliveries are group-committed per replica (several in one transaction) and
//! serialized across replicas by a transaction advisory lock taken before the first insert, so
//! that signal ids are in commit order (see the `postgres` module doc).

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::wire::{INGEST_LOCK, OP_TIMEOUT, SIGNALS_CHANNEL, db, encode, pool_error, text};
use crate::adapters::store::{IngestResult, Receipt, Result, StoreError};
use crate::domain::signal::Signal;

/// Deliveries per group commit: bounds the latency of the first one in the batch.
const MAX_BATCH: usize = 256;

/// One delivery and where to answer it.
pub(super) type IngestJob = (Receipt, Vec<Signal>, oneshot::Sender<Result<IngestResult>>);

/// The group-commit worker: takes what is queued (up to [`MAX_BATCH`]) and commits it in one
/// transaction, bounded by [`OP_TIMEOUT`]; every delivery of a failed batch gets the error.
pub(super) async fn ingest_worker(pool: Pool, mut rx: mpsc::Receiver<IngestJob>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = match tokio::time::timeout(OP_TIMEOUT, ingest_batch(&pool, &batch)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Database(format!(
                "group commit took longer than {OP_TIMEOUT:?}"
            ))),
        };
        match result {
            Ok(results) => {
                for ((_, _, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                let msg = match e {
                    StoreError::Database(m) => m,
                    other => other.to_string(),
                };
                for (_, _, reply) in batch {
                    let _ = reply.send(Err(StoreError::Database(msg.clone())));
                }
            }
        }
    }
}

/// One transaction for every delivery in `batch`.
async fn ingest_batch(pool: &Pool, batch: &[IngestJob]) -> Result<Vec<IngestResult>> {
    let mut c = pool.get().await.map_err(pool_error)?;
    let tx = c.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INGEST_LOCK])
        .await
        .map_err(db)?;
    let rcpt = tx
        .prepare_cached(
            "INSERT INTO receipts (received_at, receiver, group_key, truncated_alerts, alerts)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .await
        .map_err(db)?;
    // One statement per delivery; rows are inserted (and numbered) in array order.
    let sig = tx
        .prepare_cached(
            "INSERT INTO signals (receipt_id, fingerprint, starts_at, status, source, received_at, body)
             SELECT $1, f, s, st, src, $6, b
             FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $7::text[]) AS u (f, s, st, src, b)
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(db)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut stored = 0;
    for (r, signals, _) in batch {
        let rid: i64 = tx
            .query_one(
                &rcpt,
                &[
                    &r.received_at.0,
                    &text(&r.receiver),
                    &text(&r.group_key),
                    &(r.truncated_alerts as i64),
                    &(r.alerts as i64),
                ],
            )
            .await
            .map_err(db)?
            .get(0);
        let fps: Vec<_> = signals.iter().map(|s| text(&s.fingerprint)).collect();
        let starts: Vec<i64> = signals.iter().map(|s| s.starts_at.0).collect();
        let statuses: Vec<&str> = signals.iter().map(|s| s.status.as_str()).collect();
        let sources: Vec<&str> = signals.iter().map(|s| s.source.as_str()).collect();
        let bodies: Vec<String> = signals.iter().map(encode).collect();
        let n = tx
            .execute(
                &sig,
                &[
                    &rid,
                    &fps,
                    &starts,
                    &statuses,
                    &sources,
                    &r.received_at.0,
                    &bodies,
                ],
            )
            .await
            .map_err(db)? as usize;
        stored += n;
        if n < signals.len() {
            // Re-sent firing alerts: the incident they belong to is still heard of.
            let firing: Vec<usize> = (0..signals.len())
                .filter(|i| signals[*i].status == crate::domain::signal::Status::Firing)
                .collect();
            if !firing.is_empty() {
                let f: Vec<_> = firing.iter().map(|i| fps[*i].clone()).collect();
                let s: Vec<i64> = firing.iter().map(|i| starts[*i]).collect();
                tx.execute(
                    "UPDATE signals SET last_seen = $1
                     FROM unnest($2::text[], $3::bigint[]) AS u (f, s)
                     WHERE fingerprint = u.f AND starts_at = u.s AND status = 'firing'",
                    &[&r.received_at.0, &f, &s],
                )
                .await
                .map_err(db)?;
            }
        }
        results.push(IngestResult {
            stored: n,
            duplicates: signals.len() - n,
        });
    }
    if stored > 0 {
        // Delivered at COMMIT, to the leader's LISTEN connection.
        tx.execute("SELECT pg_notify($1, '')", &[&SIGNALS_CHANNEL])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(results)
}

/// [`Store::last_heard`](crate::adapters::store::Store::last_heard): each (fingerprint, start)
/// looked up as stored (NUL as U+FFFD), answered under the fingerprint asked.
pub(super) async fn last_heard(
    c: &tokio_postgres::Client,
    alerts: Vec<(String, crate::domain::time::Timestamp)>,
) -> Result<Vec<(String, crate::domain::time::Timestamp)>> {
    use crate::domain::time::Timestamp;
    let fps: Vec<_> = alerts.iter().map(|(f, _)| text(f)).collect();
    let starts: Vec<i64> = alerts.iter().map(|(_, s)| s.0).collect();
    let rows = c
        .query(
            "SELECT u.i, coalesce(s.last_seen, s.received_at)
             FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS u (f, st, i)
             JOIN signals s ON s.starts_at = u.st AND s.fingerprint = u.f AND s.status = 'firing'",
            &[&fps, &starts],
        )
        .await
        .map_err(db)?;
    let mut latest: std::collections::BTreeMap<String, Timestamp> = Default::default();
    for r in &rows {
        let i = r.try_get::<_, i64>(0).map_err(db)?;
        let at = Timestamp(r.try_get::<_, i64>(1).map_err(db)?);
        let Some((fp, _)) = usize::try_from(i - 1).ok().and_then(|i| alerts.get(i)) else {
            return Err(StoreError::Corrupt(format!(
                "last_heard: row {i} asked for nothing"
            )));
        };
        let e = latest.entry(fp.clone()).or_insert(at);
        *e = (*e).max(at);
    }
    Ok(latest.into_iter().collect())
}
