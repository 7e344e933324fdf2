//! What every file of the SQLite store shares: how driver errors become [`StoreError`]s and
//! how values are written to rows (JSON bodies).

use crate::adapters::store::{Result, StoreError};

/// A driver error.
pub(super) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A stored JSON body; a body that does not decode is [`StoreError::Corrupt`].
pub(super) fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A value as the JSON body it is stored as.
pub(super) fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("store values serialize")
}

/// `inc` with its alerts, which are kept in rows apart from its body (migration 10).
pub(super) fn with_alerts(
    c: &rusqlite::Connection,
    mut inc: crate::domain::incident::Incident,
) -> Result<crate::domain::incident::Incident> {
    let mut st = c
        .prepare_cached("SELECT fingerprint, body FROM incident_alerts WHERE incident_id = ?1")
        .map_err(db)?;
    let rows = st
        .query_map([&inc.id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)?;
    for (fp, body) in rows {
        inc.active.insert(fp, decode(&body)?);
    }
    Ok(inc)
}
