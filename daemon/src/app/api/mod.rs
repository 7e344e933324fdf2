//! The HTTP API: webhook, incidents, resolve by hand, pause/resume, health, metrics, dashboard.

mod dashboard;

pub(crate) mod access;
pub(crate) mod approvals;
mod errors;
pub(crate) mod limits;
mod maintenance;
pub mod slack;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::adapters::intake::alertmanager;
use crate::adapters::store::{Pause, Store, StoreError};
use crate::adapters::telemetry::{EngineHealth, Metrics, StateLabel};
use crate::domain::incident::{Entry, Incident, Status};
use crate::domain::scope::Scope;
use crate::domain::time::{Clock, Timestamp};
use crate::load::ruleset::SharedRuleset;
use access::Access;

/// What handlers share.
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Wakes the engine after signals are stored.
    pub wake: Arc<Notify>,
    /// Bearer token for the webhook and every write (and every read).
    pub token: Option<String>,
    /// Read-only bearer token: incidents, timelines, reviews (see [`access`]).
    pub read_token: Option<String>,
    /// Clock.
    pub clock: Arc<dyn Clock>,
    /// The ruleset (readiness and the dashboard).
    pub ruleset: SharedRuleset,
    /// Cleared when shutdown begins.
    pub ready: AtomicBool,
    /// Webhook body limit.
    pub max_body: usize,
    /// The listener's limits: the router answers header and body-time refusals itself.
    pub limits: crate::load::config::ListenerLimits,
    /// Whether this replica's engine runs, and since when (readiness).
    pub engine: Arc<EngineHealth>,
    /// Readiness fails when signals are pending and no engine pass completed for this long.
    pub engine_stall_after: Duration,
    /// Slack's Approve/Deny clicks: the signing secret and the signatures seen.
    pub slack: slack::SlackInteractions,
}

/// An API error: a status and a JSON `{"error": ...}` that never leaks internals.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "Store error in API");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into())
    }
}

/// The router; tests call it directly or serve it.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        // The handler reads the body itself so that the token is checked first and an
        // oversized body gets the same JSON error as every other refusal.
        .route(
            "/webhook/alertmanager",
            post(webhook_handler).layer(DefaultBodyLimit::disable()),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/incidents/{id}/resolve", post(resolve))
        .merge(approvals::routes())
        .route("/api/v1/slack/interactions", post(slack::interactions))
        .merge(maintenance::routes())
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/", get(dashboard::page))
        .route("/incidents/{id}", get(dashboard::incident_page))
        .route("/incidents/{id}/review.md", get(dashboard::review))
        .route("/ui/login", post(dashboard::ui_login))
        .route("/ui/logout", post(dashboard::ui_logout))
        .route("/ui/pause", post(dashboard::ui_pause))
        .route("/ui/resume", post(dashboard::ui_resume))
        .route("/ui/incidents/{id}/resolve", post(dashboard::ui_resolve))
        .route("/ui/incidents/{id}/approval", post(dashboard::ui_approval))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::guard,
        ))
        .layer(axum::middleware::from_fn(errors::json_errors))
        .with_state(state)
}

/// Writes (the webhook, pause, resume, resolve) need `webhook_token`.
fn check_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if access::allows(state, headers, Access::Write) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token".into(),
        ))
    }
}

/// Reads of incidents need `webhook_token` or `read_token` (when a token is configured).
fn check_read(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if access::allows(state, headers, Access::Read) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token (reads of incidents need webhook_token or read_token)"
                .into(),
        ))
    }
}

async fn webhook_handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let started = Instant::now();
    let resp = match check_token(&state, &headers) {
        Err(e) => Err(e),
        Ok(()) => match axum::body::to_bytes(body, state.max_body).await {
            Ok(bytes) => webhook_inner(&state, &bytes).await,
            Err(_) => Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body: larger than max_body ({} bytes), or cut short",
                    state.max_body
                ),
            )),
        },
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state
        .metrics
        .webhook_duration
        .observe(started.elapsed().as_secs_f64());
    state.metrics.webhooks_seen.fetch_add(1, Ordering::Relaxed);
    state.metrics.webhook_answered(resp.status().as_u16());
    resp
}

async fn webhook_inner(state: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let (receipt, signals) = alertmanager::parse(body, now).map_err(|e| {
        state.metrics.signal("webhook", "rejected", 1);
        tracing::warn!(error = %e.0, "Rejected webhook payload");
        ApiError(StatusCode::BAD_REQUEST, e.0)
    })?;
    if receipt.truncated_alerts > 0 {
        state
            .metrics
            .truncated_alerts
            .inc_by(receipt.truncated_alerts);
        tracing::warn!(truncated = receipt.truncated_alerts, group_key = %receipt.group_key, "Alertmanager truncated this payload; missing alerts are not treated as resolved");
    }
    let truncated = receipt.truncated_alerts;
    let r = state.store.ingest(receipt, signals).await.map_err(|e| {
        state.metrics.store_error("ingest");
        tracing::error!(error = %e, "Could not store webhook signals; answering 503 so Alertmanager retries");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "store unavailable; retry".into())
    })?;
    state
        .metrics
        .webhook_stored(r.stored as u64, r.duplicates as u64);
    if r.stored > 0 {
        state.wake.notify_one();
    }
    // Three numbers: written out, not built as a JSON value (a map and its keys per webhook).
    let body = format!(
        "{{\"stored\":{},\"duplicates\":{},\"truncated_alerts\":{truncated}}}",
        r.stored, r.duplicates
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    if !state.ready.load(Ordering::SeqCst) {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down".into(),
        ));
    }
    state.store.ping().await?;
    if let Some(reason) = engine_stall(&state).await? {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, reason));
    }
    Ok("ready\n")
}

/// Why this replica's engine counts as stalled, if it does: it runs here, no pass has completed
/// for `engine_stall_after` (counted from the later of its start and its last pass), and
/// signals are waiting for it. An idle engine is not stalled, and neither is a replica that
/// does not lead: its engine does not run, by design, and its readiness is about intake.
async fn engine_stall(state: &AppState) -> Result<Option<String>, ApiError> {
    let Some(started) = state.engine.running_since() else {
        return Ok(None);
    };
    let last = state
        .metrics
        .engine_last_pass()
        .map_or(started, |t| t.max(started));
    let idle = state.clock.now().since(last);
    if idle < state.engine_stall_after {
        return Ok(None);
    }
    if state.store.pending_signals(1).await?.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "engine stalled: signals are waiting and no engine pass has completed for {} (engine_stall_after = {})",
        crate::domain::time::fmt_duration(idle),
        crate::domain::time::fmt_duration(state.engine_stall_after)
    )))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Ok(counts) = state.store.count_by_status().await {
        for s in Status::ALL {
            let n = counts
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map_or(0, |(_, n)| *n);
            state
                .metrics
                .incidents
                .get_or_create(&StateLabel {
                    state: s.as_str().into(),
                })
                .set(n as i64);
        }
    }
    if let Ok(d) = state.store.outbox_depth().await {
        state.metrics.outbox_depth.set(d as i64);
    }
    if let Ok(bs) = state.store.breakers().await {
        let rs = state.ruleset.read().expect("ruleset lock").clone();
        let now = state.clock.now();
        let mut counts =
            std::collections::BTreeMap::from([("closed", 0i64), ("open", 0), ("half_open", 0)]);
        for (k, rec) in bs {
            let cfg = if k == Scope::Global.key() {
                rs.limits.breaker_global
            } else {
                rs.limits.breaker_target
            };
            *counts
                .entry(crate::domain::policy::breaker::state(&rec, now, &cfg).as_str())
                .or_default() += 1;
        }
        for (s, n) in counts {
            state
                .metrics
                .breakers
                .get_or_create(&StateLabel { state: s.into() })
                .set(n);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// An incident as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct IncidentView {
    /// Id.
    pub id: String,
    /// Rule.
    pub rule: String,
    /// Policy.
    pub policy: String,
    /// Level.
    pub level: u8,
    /// Status.
    pub status: Status,
    /// Target.
    pub target: crate::domain::rules::Target,
    /// Labels of the opening signal.
    pub labels: crate::domain::signal::Labels,
    /// Alerts still firing.
    pub firing: Vec<String>,
    /// Opened.
    pub opened_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Resolved.
    pub resolved_at: Option<Timestamp>,
    /// Machine phase, with its reason.
    pub phase: crate::domain::incident::Phase,
    /// Its Alertmanager silences (policy `silence:`), if it has had any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silence: Option<crate::domain::incident::SilenceState>,
    /// Timeline (single-incident answer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<Entry>>,
}

impl IncidentView {
    /// Builds the view.
    pub fn new(i: &Incident, timeline: Option<Vec<Entry>>) -> Self {
        Self {
            id: i.id.clone(),
            rule: i.rule.clone(),
            policy: i.policy.clone(),
            level: i.level,
            status: i.status(),
            target: i.target.clone(),
            labels: (*i.labels).clone(),
            firing: i.active.keys().cloned().collect(),
            opened_at: i.opened_at,
            updated_at: i.updated_at,
            resolved_at: i.resolved_at,
            phase: i.phase.clone(),
            silence: i.silence.clone(),
            timeline,
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

async fn list_incidents(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_read(&state, &headers)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("status: {s:?}; valid: open, remediating, verifying, escalated, suspended, resolved"),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100).min(1000);
    let list = state.store.list_incidents(status, limit).await?;
    let views: Vec<IncidentView> = list.iter().map(|i| IncidentView::new(i, None)).collect();
    Ok(Json(serde_json::json!({"incidents": views})))
}

async fn get_incident(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    check_read(&state, &headers)?;
    let inc = state
        .store
        .get_incident(&id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no incident {id}")))?;
    let tl = state.store.timeline(&id).await?;
    Ok(Json(IncidentView::new(&inc, Some(tl))))
}

/// `POST /api/v1/incidents/{id}/resolve` body: both fields required and non-blank.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// Why the incident is resolved by hand.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who resolves it.
    #[serde(default)]
    pub author: Option<String>,
}

impl From<crate::app::resolve::ResolveError> for ApiError {
    fn from(e: crate::app::resolve::ResolveError) -> Self {
        use crate::app::resolve::ResolveError as E;
        let code = match &e {
            E::Missing(_) => StatusCode::BAD_REQUEST,
            E::UnknownIncident(_) => StatusCode::NOT_FOUND,
            E::AlreadyResolved(_) => StatusCode::CONFLICT,
            E::Store(_) => {
                tracing::error!(error = %e, "Store error while resolving by hand");
                return ApiError(StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into());
            }
        };
        ApiError(code, e.to_string())
    }
}

/// Resolves an incident by hand (the API and the dashboard's form both come here): the engine
/// applies the request; `Queued` when it did not within [`crate::app::resolve::WAIT`].
pub(crate) async fn apply_resolve(
    state: &AppState,
    id: &str,
    reason: Option<&str>,
    author: Option<&str>,
) -> Result<crate::app::resolve::Answer, ApiError> {
    let fields = crate::app::resolve::Fields::check(reason, author)?;
    Ok(crate::app::resolve::resolve_by_hand(
        &*state.store,
        Some(&state.wake),
        state.clock.now(),
        id,
        &fields,
        crate::app::resolve::WAIT,
    )
    .await?)
}

async fn resolve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
    let req: ResolveBody = json_body(&body)?;
    match apply_resolve(&state, &id, req.reason.as_deref(), req.author.as_deref()).await? {
        crate::app::resolve::Answer::Resolved(inc) => {
            let tl = state.store.timeline(&inc.id).await?;
            Ok(Json(IncidentView::new(&inc, Some(tl))).into_response())
        }
        crate::app::resolve::Answer::Queued(request) => Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "request": request,
                "incident": id,
                "status": "queued",
                "message": format!(
                    "no engine applied the request within {}s (this replica does not lead, or the leader is down); the leader applies it when it runs",
                    crate::app::resolve::WAIT.as_secs()
                ),
            })),
        )
            .into_response()),
    }
}

/// `POST /api/v1/pause` and `/resume` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Pause one rule.
    #[serde(default)]
    pub rule: Option<String>,
    /// Pause one namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Why (required to pause).
    #[serde(default)]
    pub reason: Option<String>,
    /// Who.
    #[serde(default)]
    pub author: Option<String>,
}

fn scope(p: &PauseRequest) -> Result<String, ApiError> {
    match (&p.rule, &p.namespace) {
        (None, None) => Ok(Scope::Global.key()),
        (Some(r), None) => Ok(Scope::rule(r).key()),
        (None, Some(n)) => Ok(Scope::namespace(n).key()),
        _ => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "rule, namespace: give one scope, or neither for a global pause".into(),
        )),
    }
}

/// A JSON body whose fields are all optional (an empty body is all defaults); a bad one is a
/// 400 naming the field.
fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{path}: {}", msg.split(" at line ").next().unwrap_or(&msg)),
        )
    })
}

fn pause_body(body: &[u8]) -> Result<PauseRequest, ApiError> {
    json_body(body)
}

async fn pause(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_token(&state, &headers)?;
    let req = pause_body(&body)?;
    let scope = scope(&req)?;
    let p = apply_pause(&state, scope, req.reason, req.author).await?;
    Ok(Json(serde_json::json!({"paused": p})))
}

/// Stores a pause (the API and the dashboard's form both come here).
pub(crate) async fn apply_pause(
    state: &AppState,
    scope: String,
    reason: Option<String>,
    author: Option<String>,
) -> Result<Pause, ApiError> {
    let reason = reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "reason: required to pause automation".into(),
        )
    })?;
    let p = Pause {
        scope,
        reason,
        author: author
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| "unknown".into()),
        since: state.clock.now(),
    };
    state.store.set_pause(p.clone()).await?;
    tracing::warn!(scope = %p.scope, author = %p.author, reason = %p.reason, "Automation paused");
    state.wake.notify_one();
    Ok(p)
}

/// Lifts a pause (the API and the dashboard's form both come here).
pub(crate) async fn apply_resume(
    state: &AppState,
    scope: &str,
    author: Option<&str>,
) -> Result<(), ApiError> {
    let existed = state.store.clear_pause(scope).await?;
    if !existed {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no pause for scope {scope}"),
        ));
    }
    tracing::warn!(scope = %scope, author = author.unwrap_or("unknown"), "Automation resumed");
    state.wake.notify_one();
    Ok(())
}

async fn resume(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_token(&state, &headers)?;
    let req = pause_body(&body)?;
    let scope = scope(&req)?;
    apply_resume(&state, &scope, req.author.as_deref()).await?;
    Ok(Json(serde_json::json!({"resumed": scope})))
}
