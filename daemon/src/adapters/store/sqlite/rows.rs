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
