//! Resolving an incident by hand: one operation behind three fronts — `POST
//! /api/v1/incidents/{id}/resolve`, the form on the dashboard's incident page, and `remedyd
//! resolve`. The engine is the only writer of incidents (it caches the active ones and, on
//! PostgreSQL, is fenced by leadership), so no front writes the incident: each stores a resolve
//! request, wakes the engine, and waits (bounded) for the engine to apply it. When no engine
//! applies it in time (this replica does not lead and the leader is down), the request stays
//! queued and the next leader applies it.

use std::time::Duration;

use tokio::sync::Notify;

use crate::adapters::store::{ResolveResult, Store, StoreError};
use crate::domain::incident::Incident;
use crate::domain::time::Timestamp;

/// How long a front waits for the engine. 5 s: a pass takes milliseconds and a wake-up (or, from
/// another process on SQLite, the engine's 1 s tick) comes well within it, while a person or a
/// script at a prompt gets a clear "queued" answer instead of a hang when no engine runs.
pub const WAIT: Duration = Duration::from_secs(5);
/// First interval between looks at the request; doubled up to [`POLL_MAX`]. 10 ms: the engine,
/// woken at once, usually applies the request within a few milliseconds.
const POLL_FIRST: Duration = Duration::from_millis(10);
/// Longest interval between looks: one store read per 200 ms while a request waits.
const POLL_MAX: Duration = Duration::from_millis(200);

/// Why resolving by hand did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `reason` or `author` is missing or blank; the message names each.
    #[error("{0}")]
    Missing(String),
    /// No incident has this id.
    #[error("no incident {0}")]
    UnknownIncident(String),
    /// The incident is resolved already.
    #[error("{0} is already resolved")]
    AlreadyResolved(String),
    /// The store failed: nothing is known to be queued.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Who resolves the incident and why: both required and non-blank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    /// Why.
    pub reason: String,
    /// Who.
    pub author: String,
}

impl Fields {
    /// Checks both fields at once; the error names every missing one.
    pub fn check(reason: Option<&str>, author: Option<&str>) -> Result<Self, ResolveError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let author = author.map(str::trim).filter(|a| !a.is_empty());
        let mut missing = Vec::new();
        if reason.is_none() {
            missing.push("reason: required (why the incident is resolved by hand)");
        }
        if author.is_none() {
            missing.push("author: required (who resolves it)");
        }
        match (reason, author) {
            (Some(reason), Some(author)) => Ok(Self {
                reason: reason.to_string(),
                author: author.to_string(),
            }),
            _ => Err(ResolveError::Missing(missing.join("; "))),
        }
    }
}

/// What became of the request.
#[derive(Debug)]
pub enum Answer {
    /// The engine applied it: the incident as committed.
    Resolved(Box<Incident>),
    /// No engine applied it within the wait: request `id` stays queued for the leader.
    Queued(i64),
}

/// Asks the engine to resolve `incident` and waits up to `wait` for the answer. `wake` wakes
/// the engine of this process (the API); on PostgreSQL the store also wakes the leader's engine
/// in whichever replica leads.
pub async fn resolve_by_hand(
    store: &dyn Store,
    wake: Option<&Notify>,
    now: Timestamp,
    incident: &str,
    fields: &Fields,
    wait: Duration,
) -> Result<Answer, ResolveError> {
    match store.get_incident(incident).await? {
        None => return Err(ResolveError::UnknownIncident(incident.to_string())),
        Some(i) if i.is_resolved() => return Err(ResolveError::AlreadyResolved(i.id)),
        Some(_) => {}
    }
    let id = store
        .request_resolve(incident, &fields.reason, &fields.author, now)
        .await?;
    tracing::info!(incident, request = id, author = %fields.author, reason = %fields.reason, "Resolve by hand requested");
    if let Some(w) = wake {
        w.notify_one();
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = POLL_FIRST;
    loop {
        let req = store.resolve_request(id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("resolve request {id} is gone from the store"))
        })?;
        match req.done {
            Some((_, ResolveResult::Resolved)) => {
                let inc = store.get_incident(incident).await?.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "incident {incident} is gone from the store after it was resolved"
                    ))
                })?;
                return Ok(Answer::Resolved(Box::new(inc)));
            }
            Some((_, ResolveResult::UnknownIncident)) => {
                return Err(ResolveError::UnknownIncident(incident.to_string()));
            }
            Some((_, ResolveResult::AlreadyResolved)) => {
                return Err(ResolveError::AlreadyResolved(incident.to_string()));
            }
            None => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Answer::Queued(id));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_fields_missing_are_named_in_one_error() {
        let e = Fields::check(None, Some("  ")).unwrap_err().to_string();
        assert_eq!(
            e,
            "reason: required (why the incident is resolved by hand); author: required (who resolves it)"
        );
    }

    #[test]
    fn fields_are_trimmed() {
        assert_eq!(
            Fields::check(Some(" noise "), Some(" alice ")).unwrap(),
            Fields {
                reason: "noise".into(),
                author: "alice".into()
            }
        );
    }
}
