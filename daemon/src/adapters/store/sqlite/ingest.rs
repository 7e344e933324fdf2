//! Ingest: the deliveries the connection's thread collected are group-committed, several in one
//! durable transaction, so that durability costs one fsync per batch. A re-sent firing alert is a
//! duplicate that still counts as heard of (`last_seen`). What a committed batch stored is handed
//! to [`Recent`] for the engine's next read. Signals arrive encoded ([`Bodies`], by the caller):
//! the connection's thread, which every write of the store waits for, only binds them.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::recent::Recent;
use crate::adapters::store::{IngestResult, Receipt, Result, StoreError, StoredSignal};
use crate::domain::signal::Signal;

/// One delivery and where to answer it.
pub(super) type IngestJob = (
    Receipt,
    Vec<Signal>,
    Bodies,
    oneshot::Sender<Result<IngestResult>>,
);

/// The stored JSON bodies of a delivery's signals, in order, in one buffer.
pub(super) struct Bodies {
    text: Vec<u8>,
    /// Where each body is in `text`.
    spans: Vec<std::ops::Range<usize>>,
}

impl Bodies {
    /// Encodes each signal ([`Signal::write_json`]).
    pub(super) fn encode(signals: &[Signal]) -> Result<Self> {
        let mut b = Bodies {
            // About 1 KiB a signal with Alertmanager's usual labels: grown once, if at all.
            text: Vec::with_capacity(signals.len() * 1024),
            spans: Vec::with_capacity(signals.len()),
        };
        for s in signals {
            let start = b.text.len();
            s.write_json(&mut b.text)
                .map_err(|e| StoreError::Database(format!("encoding a signal: {e}")))?;
            b.spans.push(start..b.text.len());
        }
        Ok(b)
    }

    /// The `i`th body (empty past the last).
    fn get(&self, i: usize) -> &[u8] {
        self.spans
            .get(i)
            .and_then(|span| self.text.get(span.clone()))
            .unwrap_or_default()
    }
}

/// Commits `batch` in one transaction and answers each delivery; every delivery of a failed
/// batch gets the error. The stored signals go to `recent`, in id order.
pub(super) fn ingest_batch(conn: &mut Connection, batch: Vec<IngestJob>, recent: &mut Recent) {
    // Per delivery, its result and the row id of each signal it stored (`None`: a duplicate).
    type Outcome = (IngestResult, Vec<Option<i64>>);
    let run = |conn: &mut Connection, batch: &[IngestJob]| -> rusqlite::Result<Vec<Outcome>> {
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(batch.len());
        {
            let mut rcpt = tx.prepare_cached(
                "INSERT INTO receipts (received_at, receiver, group_key, truncated_alerts, alerts) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut sig = tx.prepare_cached(
                "INSERT INTO signals (receipt_id, fingerprint, starts_at, status, source, received_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?;
            let mut heard = tx.prepare_cached(
                "UPDATE signals SET last_seen = ?1
                 WHERE fingerprint = ?2 AND starts_at = ?3 AND status = 'firing'",
            )?;
            for (r, signals, bodies, _) in batch {
                rcpt.execute(params![
                    r.received_at.0,
                    r.receiver,
                    r.group_key,
                    r.truncated_alerts as i64,
                    r.alerts as i64
                ])?;
                let rid = tx.last_insert_rowid();
                let mut res = IngestResult::default();
                let mut ids = Vec::with_capacity(signals.len());
                for (i, s) in signals.iter().enumerate() {
                    // JSON of `&str`s is UTF-8: bound as text as it is, without validating it
                    // again (that was 3 % of ingest at 50 alerts per webhook).
                    let body = ToSqlOutput::Borrowed(ValueRef::Text(bodies.get(i)));
                    let n = sig.execute(params![
                        rid,
                        s.fingerprint,
                        s.starts_at.0,
                        s.status.as_str(),
                        s.source.as_str(),
                        r.received_at.0,
                        body
                    ])?;
                    if n == 1 {
                        res.stored += 1;
                        ids.push(Some(tx.last_insert_rowid()));
                    } else {
                        res.duplicates += 1;
                        ids.push(None);
                        if s.status == crate::domain::signal::Status::Firing {
                            heard.execute(params![
                                r.received_at.0,
                                s.fingerprint,
                                s.starts_at.0
                            ])?;
                        }
                    }
                }
                results.push((res, ids));
            }
        }
        tx.commit()?;
        Ok(results)
    };
    // A failed restore of durable commits (commit.rs) fails the batch: never a 200 without fsync.
    let outcome = if super::commit::durability_lost() {
        super::commit::ensure_durable(conn).map_err(|e| e.to_string())
    } else {
        Ok(())
    }
    .and_then(|()| run(conn, &batch).map_err(|e| e.to_string()));
    match outcome {
        Ok(results) => {
            for ((receipt, signals, _, reply), (r, ids)) in batch.into_iter().zip(results) {
                let _ = reply.send(Ok(r));
                for (signal, id) in signals.into_iter().zip(ids) {
                    if let Some(id) = id {
                        recent.push(StoredSignal {
                            id,
                            signal,
                            received_at: receipt.received_at,
                        });
                    }
                }
            }
        }
        Err(msg) => {
            for (_, _, _, reply) in batch {
                let _ = reply.send(Err(StoreError::Database(msg.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bodies;
    use crate::domain::signal::{Labels, Signal, Source, Status};
    use crate::domain::time::Timestamp;

    #[test]
    fn each_body_is_its_signals_json() {
        let signals: Vec<Signal> = (0..3)
            .map(|i| Signal {
                source: Source::Webhook,
                status: Status::Firing,
                labels: Labels::from([("n".to_string(), "x".repeat(i * 7))]),
                annotations: Labels::new(),
                starts_at: Timestamp(i as i64),
                ends_at: None,
                fingerprint: format!("fp{i}"),
                generator_url: String::new(),
                value: None,
                rule: None,
                level: None,
            })
            .collect();
        let b = Bodies::encode(&signals).unwrap();
        for (i, s) in signals.iter().enumerate() {
            assert_eq!(b.get(i), serde_json::to_vec(s).unwrap(), "body {i}");
        }
        assert!(b.get(3).is_empty());
        assert!(Bodies::encode(&[]).unwrap().get(0).is_empty());
    }
}
