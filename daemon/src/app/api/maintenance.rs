//! Maintenance windows through the API, e.g. before a planned database upgrade, without editing a
//! policies file. Stored (they survive restarts and every replica's engine sees them), applied
//! by the engine exactly as the policies' `maintenance:` windows: once (`starts_at`, `ends_at`
//! or `duration`), or every week (`weekly: {day, from, to}`, the policies file's form, parsed by
//! the same domain code) until cancelled.
//!
//! | request | needs | answer |
//! |---|---|---|
//! | `POST /api/v1/maintenance` | `webhook_token` | 201 and the stored window; 400 naming the field |
//! | `GET /api/v1/maintenance` | `webhook_token` or `read_token` | the windows open or to come |
//! | `DELETE /api/v1/maintenance/{id}` | `webhook_token` | 200 and the cancelled window (with `cancelled_by`: `?author=` or the body's `author`); 404 unknown; 409 already ended or cancelled |

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, check_read, check_token, json_body};
use crate::adapters::store::{Cancelled, NewWindow, RECURS};
use crate::domain::policy::maintenance::Weekly;
use crate::domain::scope::Scope;
use crate::domain::time::{Timestamp, fmt_duration, parse_duration};

/// The longest window the API sets: a longer hold is a pause (or a policies file), not
/// maintenance.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// `POST /api/v1/maintenance` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowBody {
    /// `global`, `rule:NAME` or `namespace:NAME` (required).
    #[serde(default)]
    pub scope: Option<String>,
    /// Opens (RFC 3339); now when left out.
    #[serde(default)]
    pub starts_at: Option<Timestamp>,
    /// Closes (RFC 3339); or `duration`.
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    /// How long from `starts_at` (`2h`, `90m`); or `ends_at`.
    #[serde(default)]
    pub duration: Option<String>,
    /// Every week, `{"day": "sat", "from": "02:00", "to": "04:00"}` (UTC), until cancelled;
    /// instead of `starts_at`, `ends_at` and `duration`.
    #[serde(default)]
    pub weekly: Option<serde_json::Value>,
    /// Why (required).
    #[serde(default)]
    pub reason: Option<String>,
    /// Who.
    #[serde(default)]
    pub author: Option<String>,
}

/// The routes.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/maintenance", get(list).post(add))
        .route("/api/v1/maintenance/{id}", delete(cancel))
}

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

/// The window a request asks for at `now`, or a 400 naming the field.
pub fn validate(b: WindowBody, now: Timestamp) -> Result<NewWindow, ApiError> {
    let scope = b
        .scope
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad("scope: required (global, rule:NAME or namespace:NAME)".into()))?;
    match scope.parse::<Scope>() {
        Ok(Scope::Action { .. }) | Err(_) => {
            return Err(bad(format!(
                "scope: {scope:?}: expected global, rule:NAME or namespace:NAME"
            )));
        }
        Ok(_) => {}
    }
    let reason = b
        .reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| bad("reason: required for a maintenance window".into()))?;
    let author = b
        .author
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    if let Some(raw) = b.weekly {
        for (given, field) in [
            (b.starts_at.is_some(), "starts_at"),
            (b.ends_at.is_some(), "ends_at"),
            (b.duration.is_some(), "duration"),
        ] {
            if given {
                return Err(bad(format!(
                    "{field}: not with weekly (a weekly window recurs until it is cancelled)"
                )));
            }
        }
        let weekly: Weekly = serde_json::from_value(raw).map_err(|e| {
            bad(format!(
                "weekly: {e}; expected {{\"day\": \"sat\", \"from\": \"02:00\", \"to\": \"04:00\"}}"
            ))
        })?;
        weekly
            .when()
            .map_err(|(field, e)| bad(format!("weekly.{field}: {e}")))?;
        return Ok(NewWindow {
            scope,
            starts_at: now,
            ends_at: RECURS,
            weekly: Some(weekly.normalized()),
            reason,
            author,
            created_at: now,
        });
    }
    let starts_at = b.starts_at.unwrap_or(now);
    let ends_at = match (b.ends_at, b.duration) {
        (Some(_), Some(_)) => {
            return Err(bad("ends_at, duration: give one, not both".into()));
        }
        (None, None) => return Err(bad("ends_at: required (or duration)".into())),
        (Some(end), None) => end,
        (None, Some(d)) => {
            let d = parse_duration(&d).map_err(|e| bad(format!("duration: {e}")))?;
            starts_at.plus(d)
        }
    };
    if ends_at <= starts_at {
        return Err(bad(format!(
            "ends_at: {} is not after starts_at {}",
            ends_at.to_rfc3339(),
            starts_at.to_rfc3339()
        )));
    }
    if ends_at <= now {
        return Err(bad(format!(
            "ends_at: {} is in the past",
            ends_at.to_rfc3339()
        )));
    }
    if ends_at.since(starts_at) > MAX_WINDOW {
        return Err(bad(format!(
            "ends_at: the window would last {}, longer than {} (pause automation instead)",
            fmt_duration(ends_at.since(starts_at)),
            fmt_duration(MAX_WINDOW)
        )));
    }
    Ok(NewWindow {
        scope,
        starts_at,
        ends_at,
        weekly: None,
        reason,
        author,
        created_at: now,
    })
}

async fn add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
    let w = validate(json_body(&body)?, state.clock.now())?;
    let w = state.store.add_maintenance(w).await?;
    tracing::warn!(
        id = w.id,
        scope = %w.scope,
        starts_at = %w.starts_at,
        ends_at = %w.ends_at,
        weekly = ?w.weekly,
        author = %w.author,
        reason = %w.reason,
        "Maintenance window set"
    );
    state.wake.notify_one();
    Ok((StatusCode::CREATED, Json(w)).into_response())
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_read(&state, &headers)?;
    let windows = state.store.maintenance_windows(state.clock.now()).await?;
    Ok(Json(serde_json::json!({ "windows": windows })))
}

/// `DELETE /api/v1/maintenance/{id}` query: `?author=bob`.
#[derive(Debug, Default, Deserialize)]
pub struct CancelQuery {
    /// Who cancels.
    #[serde(default)]
    pub author: Option<String>,
}

/// `DELETE /api/v1/maintenance/{id}` body (optional): `{"author": "bob"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Who cancels.
    #[serde(default)]
    pub author: Option<String>,
}

/// Who cancels: `?author=` or the body's `author` (not both, unless equal); `unknown` when
/// neither is given, as for a window set without an author.
pub fn canceller(query: Option<String>, body: &[u8]) -> Result<String, ApiError> {
    let from_body = json_body::<CancelBody>(body)?.author;
    let clean = |a: Option<String>| a.map(|a| a.trim().to_string()).filter(|a| !a.is_empty());
    match (clean(query), clean(from_body)) {
        (Some(q), Some(b)) if q != b => Err(bad(format!(
            "author: given twice ({q:?} in the query, {b:?} in the body); give it once"
        ))),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Ok("unknown".into()),
    }
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<CancelQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_token(&state, &headers)?;
    let by = canceller(q.author, &body)?;
    let unknown = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no maintenance window {id:?}"),
        )
    };
    let n: i64 = id.parse().map_err(|_| unknown())?;
    match state
        .store
        .cancel_maintenance(n, state.clock.now(), &by)
        .await?
    {
        Cancelled::Unknown => Err(unknown()),
        Cancelled::Over(w) => Err(ApiError(
            StatusCode::CONFLICT,
            match w.cancelled_at {
                Some(at) => format!(
                    "maintenance window {n} was already cancelled at {at} by {}",
                    w.cancelled_by.as_deref().unwrap_or("unknown")
                ),
                None => format!("maintenance window {n} already ended at {}", w.ends_at),
            },
        )),
        Cancelled::Done(w) => {
            tracing::warn!(id = w.id, scope = %w.scope, by = %by, "Maintenance window cancelled");
            state.wake.notify_one();
            Ok(Json(serde_json::json!({ "cancelled": w })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn body(json: serde_json::Value) -> WindowBody {
        serde_json::from_value(json).unwrap()
    }

    fn refusal(json: serde_json::Value) -> String {
        match validate(body(json), NOW) {
            Err(ApiError(code, msg)) => {
                assert_eq!(code, StatusCode::BAD_REQUEST);
                msg
            }
            Ok(w) => panic!("accepted: {w:?}"),
        }
    }

    #[test]
    fn a_window_starts_now_unless_told_and_ends_at_its_end_or_after_its_duration() {
        let w = validate(
            body(serde_json::json!({"scope": "namespace:db", "duration": "2h", "reason": "pg 17"})),
            NOW,
        )
        .unwrap();
        assert_eq!(w.starts_at, NOW);
        assert_eq!(w.ends_at, NOW.plus(Duration::from_secs(7200)));
        assert_eq!(w.author, "unknown");
        let start = NOW.plus(Duration::from_secs(3600));
        let w = validate(
            body(serde_json::json!({
                "scope": "rule:r", "reason": "x", "author": "alice",
                "starts_at": start.to_rfc3339(), "ends_at": start.plus(MAX_WINDOW).to_rfc3339(),
            })),
            NOW,
        )
        .unwrap();
        assert_eq!((w.starts_at, w.ends_at), (start, start.plus(MAX_WINDOW)));
    }

    #[test]
    fn every_refusal_names_its_field() {
        let end = |t: Timestamp| t.to_rfc3339();
        let cases = [
            (
                serde_json::json!({"duration": "1h", "reason": "x"}),
                "scope:",
            ),
            (
                serde_json::json!({"scope": "team:x", "duration": "1h", "reason": "x"}),
                "scope:",
            ),
            (
                serde_json::json!({"scope": "action:fix:t", "duration": "1h", "reason": "x"}),
                "scope:",
            ),
            (
                serde_json::json!({"scope": "global", "duration": "1h"}),
                "reason:",
            ),
            (
                serde_json::json!({"scope": "global", "reason": "x"}),
                "ends_at:",
            ),
            (
                serde_json::json!({"scope": "global", "reason": "x", "duration": "soon"}),
                "duration:",
            ),
            (
                serde_json::json!({"scope": "global", "reason": "x", "duration": "1h",
                    "ends_at": end(NOW.plus(Duration::from_secs(60)))}),
                "ends_at, duration:",
            ),
            (
                serde_json::json!({"scope": "global", "reason": "x",
                    "starts_at": end(NOW.plus(Duration::from_secs(600))),
                    "ends_at": end(NOW.plus(Duration::from_secs(60)))}),
                "ends_at:",
            ),
            (
                serde_json::json!({"scope": "global", "reason": "x",
                    "starts_at": end(NOW.minus(Duration::from_secs(600))),
                    "ends_at": end(NOW.minus(Duration::from_secs(60)))}),
                "ends_at:",
            ),
            (
                serde_json::json!({"scope": "global", "reason": "x", "duration": "7days 1s"}),
                "ends_at:",
            ),
        ];
        for (json, field) in cases {
            let msg = refusal(json.clone());
            assert!(msg.starts_with(field), "{json}: {msg}");
        }
        assert!(
            refusal(serde_json::json!({"scope": "global", "reason": "x", "duration": "8d"}))
                .contains("longer than 7days")
        );
        assert!(
            refusal(serde_json::json!({"scope": "global", "reason": "x",
                "starts_at": end(NOW.minus(Duration::from_secs(600))),
                "ends_at": end(NOW.minus(Duration::from_secs(60)))}))
            .contains("in the past")
        );
    }
}
