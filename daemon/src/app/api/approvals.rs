//! Deciding a step that waits for people: `POST /api/v1/incidents/{id}/approvals` (with the
//! write token), and the one path every channel (API, Slack, dashboard) takes to the store's
//! compare-and-set ([`decide`]).
//!
//! | answer | when |
//! |---|---|
//! | 200 | decided (approved or denied) |
//! | 202 | recorded; a second approver is needed (`two_person`) |
//! | 403 | the person is not on the step's allowlist |
//! | 404 | no such incident or approval |
//! | 409 | already decided, timed out, or the step is already past |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, check_token, json_body};
use crate::adapters::store::Decided;
use crate::domain::approval::{Approval, Channel, Decision, Refused, Taken, Verdict};
use crate::domain::incident::Phase;

/// `POST /api/v1/incidents/{id}/approvals` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    /// `approve` or `deny` (required).
    #[serde(default)]
    pub decision: Option<String>,
    /// Who decides: a name on the step's `approvers` list (required).
    #[serde(default)]
    pub by: Option<String>,
    /// Why (optional), kept in the timeline and the review.
    #[serde(default)]
    pub comment: Option<String>,
    /// The step meant, by name (optional): refused with 409 when the incident waits for another.
    #[serde(default)]
    pub step: Option<String>,
}

/// A taken decision, for the answer.
pub(crate) struct Answer {
    /// 200 or 202.
    pub code: StatusCode,
    /// The approval as it now stands.
    pub approval: Approval,
    /// One line for people (Slack shows it).
    pub message: String,
}

impl Answer {
    /// The JSON answer of the API.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "incident": self.approval.incident,
            "approval": self.approval.id,
            "step": self.approval.step_name,
            "state": self.approval.state.as_str(),
            "required": self.approval.required,
            "decisions": self.approval.decisions,
            "message": self.message,
        })
    }
}

/// The token API's decision route (Slack's interactivity request URL, which comes here through
/// [`decide`], is routed by the parent: naming `slack` from here would be an import cycle).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/incidents/{id}/approvals", post(post_approval))
}

/// `POST /api/v1/incidents/{id}/approvals`: a read-only token cannot decide.
pub(super) async fn post_approval(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_token(&state, &headers)?;
    let req: ApprovalBody = json_body(&body)?;
    let verdict = match req.decision.as_deref() {
        None => return Err(bad("decision: required (approve or deny)")),
        Some(d) => Verdict::parse(d).map_err(|e| bad(&format!("decision: {e}")))?,
    };
    let by = req
        .by
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("by: required (a name on the step's approvers list)"))?;
    let ask = Ask {
        incident: &id,
        approval: None,
        step: req.step.as_deref(),
        names: &[by],
        channel: Channel::Api,
        verdict,
        comment: req.comment.unwrap_or_default(),
    };
    let a = decide(&state, ask).await?;
    Ok((a.code, Json(a.json())).into_response())
}

fn bad(msg: &str) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.to_string())
}

fn conflict(msg: String) -> ApiError {
    ApiError(StatusCode::CONFLICT, msg)
}

/// One person's decision, as a channel received it.
pub(crate) struct Ask<'a> {
    /// The incident.
    pub incident: &'a str,
    /// The approval meant (Slack's button carries it): refused when it is not the one awaited.
    pub approval: Option<&'a str>,
    /// The step meant, by name.
    pub step: Option<&'a str>,
    /// Who, by every name the channel knows (a Slack user id and username).
    pub names: &'a [&'a str],
    /// Where it came from.
    pub channel: Channel,
    /// Approve or deny.
    pub verdict: Verdict,
    /// Why.
    pub comment: String,
}

/// Takes a decision for the step the incident awaits, through the store's compare-and-set, and
/// wakes the engine when it is final.
pub(crate) async fn decide(state: &AppState, ask: Ask<'_>) -> Result<Answer, ApiError> {
    let Some(inc) = state.store.get_incident(ask.incident).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no incident {}", ask.incident),
        ));
    };
    let awaited = match inc.phase {
        Phase::AwaitingApproval { ladder, step, .. } => Some(Approval::key(&inc.id, ladder, step)),
        _ => None,
    };
    if let Some(meant) = ask.approval
        && awaited.as_deref() != Some(meant)
    {
        return Err(match state.store.approval(meant).await? {
            None => ApiError(StatusCode::NOT_FOUND, format!("no approval {meant}")),
            Some(a) if a.state.as_str() != "pending" => conflict(
                Refused::AlreadyDecided {
                    step: a.step_name,
                    state: a.state.as_str(),
                }
                .to_string(),
            ),
            Some(a) => conflict(format!(
                "step {:?} is already past: incident {} is {}",
                a.step_name,
                inc.id,
                inc.status().as_str()
            )),
        });
    }
    let Some(key) = awaited else {
        return Err(conflict(format!(
            "incident {} is not waiting for an approval (it is {}); the step is already past or was never asked",
            inc.id,
            inc.status().as_str()
        )));
    };
    let Some(pending) = state.store.approval(&key).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no approval {key}"),
        ));
    };
    if let Some(step) = ask.step
        && step != pending.step_name
    {
        return Err(conflict(format!(
            "step {step:?} is already past or not yet due: incident {} waits for approval of step {:?}",
            inc.id, pending.step_name
        )));
    }
    // Recorded under the allowlist's spelling; an unknown person is refused by the store's rule.
    let by = pending
        .approver(ask.names)
        .unwrap_or_else(|| ask.names.join(" / "));
    let now = state.clock.now();
    let d = Decision {
        by,
        channel: ask.channel,
        at: now,
        comment: ask.comment,
        decision: ask.verdict,
    };
    match state.store.decide_approval(&key, d, now).await? {
        Decided::Unknown => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no approval {key}"),
        )),
        Decided::Refused(r @ Refused::NotApprover { .. }) => {
            Err(ApiError(StatusCode::FORBIDDEN, r.to_string()))
        }
        Decided::Refused(r) => Err(conflict(r.to_string())),
        Decided::Taken(Taken::Waiting { have, need }, approval) => {
            let message = format!(
                "approval of step {} recorded ({have} of {need}); waiting for a second, different approver",
                approval.step_name
            );
            tracing::info!(incident = %approval.incident, step = %approval.step_name, channel = ask.channel.as_str(), "Approval recorded; waiting for a second approver");
            Ok(Answer {
                code: StatusCode::ACCEPTED,
                approval,
                message,
            })
        }
        Decided::Taken(Taken::Final(_), approval) => {
            let last = approval
                .decisions
                .last()
                .map(|d| d.line())
                .unwrap_or_default();
            let message = format!("step {} {last}", approval.step_name);
            tracing::info!(incident = %approval.incident, step = %approval.step_name, state = approval.state.as_str(), channel = ask.channel.as_str(), "Approval decided");
            state.wake.notify_one();
            Ok(Answer {
                code: StatusCode::OK,
                approval,
                message,
            })
        }
    }
}
