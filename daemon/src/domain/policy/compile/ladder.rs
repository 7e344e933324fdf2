//! The `policies:` section: each policy's mode and levels, each level's ladder of steps, and each
//! step's action, budget, verification and failure path. Actions and routes are collected for the
//! cross-checks that run once every file is read.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::limits::window;
use super::verify::compile_verify;
use crate::domain::diag::Diagnostics;
use crate::domain::policy::raw::{RawApprove, RawLevel, RawPolicy, RawSilence, RawStep};
use crate::domain::policy::{
    Approve, DEFAULT_APPROVAL_TIMEOUT, DEFAULT_ROLLOUT_HOLD, DEFAULT_UPDATE_EVERY, GitOps, Ladder,
    MAX_APPROVAL_TIMEOUT, MAX_ROLLOUT_HOLD, MIN_APPROVAL_TIMEOUT, Mode, OnFailure, OnTimeout,
    Policy, PolicyParts, Step, Verify,
};
use crate::domain::policy::{HumanSilences, SilencePolicy};

/// Compiles one policy into `parts.policies`; a name defined twice is reported.
pub(super) fn compile_policy(
    file: &str,
    p: RawPolicy,
    parts: &mut PolicyParts,
    diag: &mut Diagnostics,
) {
    let line = p.name.referenced.line();
    let mode = p.mode.as_ref().and_then(|m| {
        Mode::parse(&m.value)
            .map_err(|e| diag.push(file, m.referenced.line(), "mode", e))
            .ok()
    });
    if let Some(e) = &p.escalate_to {
        parts
            .route_refs
            .push((e.value.clone(), file.to_string(), e.referenced.line()));
    }
    let mut levels = BTreeMap::new();
    if p.levels.is_empty() {
        diag.push(
            file,
            line,
            "levels",
            format!("policy {:?} has no levels", p.name.value),
        );
    }
    for lv in p.levels {
        let level_line = lv.level.referenced.line();
        let (l, ladder) = compile_level(file, &p.name.value, &p.escalate_to, lv, parts, diag);
        if levels.insert(l, ladder).is_some() {
            diag.push(
                file,
                level_line,
                "levels.level",
                format!("level {l} appears twice in policy {:?}", p.name.value),
            );
        }
    }
    let update_every = match &p.update_every {
        None => Some(DEFAULT_UPDATE_EVERY),
        Some(u) => update_every(&u.value).unwrap_or_else(|e| {
            diag.push(file, u.referenced.line(), "update_every", e);
            Some(DEFAULT_UPDATE_EVERY)
        }),
    };
    let silence = p.silence.as_ref().map(|raw| {
        silence(&raw.value).unwrap_or_else(|(field, e)| {
            diag.push(file, raw.referenced.line(), field, e);
            SilencePolicy::default()
        })
    });
    let gitops = p.gitops.as_ref().map_or(GitOps::default(), |g| {
        GitOps::parse(&g.value).unwrap_or_else(|e| {
            diag.push(file, g.referenced.line(), "gitops", e);
            GitOps::default()
        })
    });
    let rollout_hold = p.rollout_hold.as_ref().map_or(DEFAULT_ROLLOUT_HOLD, |h| {
        rollout_hold(&h.value).unwrap_or_else(|e| {
            diag.push(file, h.referenced.line(), "rollout_hold", e);
            DEFAULT_ROLLOUT_HOLD
        })
    });
    let policy = Policy {
        name: p.name.value.clone(),
        description: p.description.unwrap_or_default(),
        mode,
        levels,
        update_every,
        silence,
        gitops,
        rollout_hold,
    };
    if let Some((_, first)) = parts.policies.get(&p.name.value) {
        diag.push(
            file,
            line,
            "name",
            format!("policy {:?} is already defined at {first}", p.name.value),
        );
    } else {
        parts
            .policies
            .insert(p.name.value, (policy, format!("{file}:{line}")));
    }
}

/// Compiles one level: its number (1 to 3), the route it escalates to (its own, else the
/// policy's) and its ladder of steps.
fn compile_level(
    file: &str,
    policy: &str,
    policy_escalate_to: &Option<Spanned<String>>,
    lv: RawLevel,
    parts: &mut PolicyParts,
    diag: &mut Diagnostics,
) -> (u8, Ladder) {
    let l = lv.level.value;
    if !(1..=3).contains(&l) {
        diag.push(
            file,
            lv.level.referenced.line(),
            "levels.level",
            format!("level {l} is out of range; valid: 1, 2, 3"),
        );
    }
    let escalate_to = match (&lv.escalate_to, policy_escalate_to) {
        (Some(e), _) => {
            parts
                .route_refs
                .push((e.value.clone(), file.to_string(), e.referenced.line()));
            e.value.clone()
        }
        (None, Some(e)) => e.value.clone(),
        (None, None) => {
            diag.push(
                file,
                lv.level.referenced.line(),
                "escalate_to",
                format!(
                    "level {l} of policy {policy:?} has no escalate_to (set it on the level or the policy)"
                ),
            );
            String::new()
        }
    };
    let mut steps: Vec<Step> = Vec::new();
    for s in lv.steps {
        if steps.iter().any(|x| x.name == s.name.value) {
            diag.push(
                file,
                s.name.referenced.line(),
                "steps.name",
                format!("step {:?} appears twice in level {l}", s.name.value),
            );
        }
        steps.push(compile_step(file, s, parts, diag));
    }
    (l, Ladder { steps, escalate_to })
}

/// Compiles one step; its action is recorded in `parts.action_refs` for the cross-check against
/// the executors.
fn compile_step(file: &str, s: RawStep, parts: &mut PolicyParts, diag: &mut Diagnostics) -> Step {
    let sline = s.name.referenced.line();
    let params = s
        .params
        .map(|p| p.value)
        .unwrap_or(serde_json::Value::Object(Default::default()));
    parts.action_refs.push((
        s.action.value.clone(),
        params.clone(),
        file.to_string(),
        s.action.referenced.line(),
        s.verify.is_none().then(|| (s.name.value.clone(), sline)),
    ));
    let budget = s
        .budget
        .as_ref()
        .map(|b| window(file, "steps.budget", b, diag));
    // Only evidence actions may go without `verify`; checked once executors are known.
    let verify = match &s.verify {
        Some(v) => compile_verify(file, v, diag),
        None => Verify::None,
    };
    let on_failure = match s.on_failure.as_ref().map(|o| (o.value.as_str(), o)) {
        None | Some(("next", _)) => OnFailure::Next,
        Some(("escalate", _)) => OnFailure::Escalate,
        Some((other, o)) => {
            diag.push(
                file,
                o.referenced.line(),
                "steps.on_failure",
                format!("unknown on_failure {other:?}; valid: next, escalate"),
            );
            OnFailure::Next
        }
    };
    let approve = s.approve.as_ref().map(|a| {
        let line = a.referenced.line();
        for route in &a.value.notify {
            parts
                .notify_refs
                .push((route.clone(), file.to_string(), line));
        }
        approve(&a.value).unwrap_or_else(|(field, e)| {
            diag.push(file, line, field, e);
            // Compiled as refusing nobody, so nothing runs on an invalid file anyway.
            Approve {
                approvers: Vec::new(),
                two_person: false,
                timeout: DEFAULT_APPROVAL_TIMEOUT,
                on_timeout: OnTimeout::Escalate,
                notify: Vec::new(),
            }
        })
    });
    Step {
        name: s.name.value,
        action: s.action.value,
        params,
        budget,
        verify,
        on_failure,
        approve,
    }
}

/// `approve:`: at least one approver (two for `two_person`), a timeout from 1m to 24h, and
/// `on_timeout` escalate or skip; on error, the field and what is wrong.
fn approve(raw: &RawApprove) -> Result<Approve, (&'static str, String)> {
    let mut approvers: Vec<String> = Vec::new();
    for a in &raw.approvers {
        let a = a.trim();
        if a.is_empty() {
            return Err(("steps.approve.approvers", "an approver is empty".into()));
        }
        if approvers.iter().any(|x| x.eq_ignore_ascii_case(a)) {
            return Err((
                "steps.approve.approvers",
                format!("approver {a:?} is listed twice"),
            ));
        }
        approvers.push(a.to_string());
    }
    if approvers.is_empty() {
        return Err((
            "steps.approve.approvers",
            "no approvers: list the people (names or Slack user ids) who may approve the step"
                .into(),
        ));
    }
    if raw.two_person && approvers.len() < 2 {
        return Err((
            "steps.approve.two_person",
            format!(
                "two_person needs two different approvers, but only {:?} is listed",
                approvers[0]
            ),
        ));
    }
    let timeout = match &raw.timeout {
        None => DEFAULT_APPROVAL_TIMEOUT,
        Some(t) => {
            crate::domain::time::parse_duration(t).map_err(|e| ("steps.approve.timeout", e))?
        }
    };
    if !(MIN_APPROVAL_TIMEOUT..=MAX_APPROVAL_TIMEOUT).contains(&timeout) {
        return Err((
            "steps.approve.timeout",
            format!(
                "{:?} is out of range; write from 1m to 24h",
                raw.timeout.as_deref().unwrap_or_default()
            ),
        ));
    }
    let on_timeout = match raw.on_timeout.as_deref() {
        None | Some("escalate") => OnTimeout::Escalate,
        Some("skip") => OnTimeout::Skip,
        Some(other) => {
            return Err((
                "steps.approve.on_timeout",
                format!("unknown on_timeout {other:?}; valid: escalate, skip"),
            ));
        }
    };
    Ok(Approve {
        approvers,
        two_person: raw.two_person,
        timeout,
        on_timeout,
        notify: raw.notify.clone(),
    })
}

/// `silence:`: `for` of at least a second (minutes in practice: each renewal is a request to
/// Alertmanager), `max` not shorter than `for`; on error, the field and what is wrong.
fn silence(raw: &RawSilence) -> Result<SilencePolicy, (&'static str, String)> {
    let mut s = SilencePolicy::default();
    if let Some(f) = &raw.for_ {
        s.for_ = crate::domain::time::parse_duration(f).map_err(|e| ("silence.for", e))?;
        if s.for_ < std::time::Duration::from_secs(1) {
            return Err((
                "silence.for",
                format!("{f:?} is too short; write at least 1s"),
            ));
        }
    }
    if let Some(m) = &raw.max {
        s.max = crate::domain::time::parse_duration(m).map_err(|e| ("silence.max", e))?;
    }
    if s.max < s.for_ {
        return Err((
            "silence.max",
            format!(
                "max {} is shorter than for {}; write a max at least as long",
                crate::domain::time::fmt_duration(s.max),
                crate::domain::time::fmt_duration(s.for_)
            ),
        ));
    }
    if let Some(h) = &raw.respect_human_silences {
        s.human = HumanSilences::parse(h).map_err(|e| ("silence.respect_human_silences", e))?;
    }
    Ok(s)
}

/// `rollout_hold`: a duration from `0` (escalate at the first hold) to [`MAX_ROLLOUT_HOLD`].
fn rollout_hold(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let d = if t == "0" {
        std::time::Duration::ZERO
    } else {
        crate::domain::time::parse_duration(t)?
    };
    if d > MAX_ROLLOUT_HOLD {
        return Err(format!(
            "{s:?} is longer than {}h; write 0 to {}h (a hold waits out a rollout; for a change freeze use a pause or a maintenance window)",
            MAX_ROLLOUT_HOLD.as_secs() / 3600,
            MAX_ROLLOUT_HOLD.as_secs() / 3600
        ));
    }
    Ok(d)
}

/// `update_every`: a duration of at least a minute, or `0`/`off` for no updates.
fn update_every(s: &str) -> Result<Option<std::time::Duration>, String> {
    let t = s.trim();
    if t == "0" || t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let d = crate::domain::time::parse_duration(t)?;
    if d.is_zero() {
        return Ok(None);
    }
    if d < std::time::Duration::from_secs(60) {
        return Err(format!(
            "{s:?} is too often for updates to people; write at least 1m, or 0/off to send none"
        ));
    }
    Ok(Some(d))
}
