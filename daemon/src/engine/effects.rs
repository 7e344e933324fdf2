//! Turning a transition's effects into store writes and pages: timeline entries, breaker
//! failures, successes and releases, and escalation pages with their metric label; and the
//! storm guard's one page per storm, resolved when the storm is over.

use super::Engine;
use crate::adapters::escalate::{self, NotificationKind};
use crate::adapters::store::{Commit, StoreError};
use crate::adapters::telemetry::Metrics;
use crate::domain::incident::{Effect, Entry, EntryKind, Incident};
use crate::domain::policy::breaker;
use crate::domain::scope::Scope;
use crate::domain::time::Timestamp;
use crate::load::ruleset::Ruleset;

// === impl Engine: effects ===

impl Engine {
    /// Turns a transition's effects into writes.
    pub(super) async fn effects(
        &self,
        inc: &Incident,
        fx: Vec<Effect>,
        rs: &Ruleset,
        c: &mut Commit,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut pages = Vec::new();
        let mut update_since = None;
        let mut asks = Vec::new();
        for e in fx {
            let e_kind = match e {
                Effect::BreakerSuccess { .. } => EffectKind::Success,
                _ => EffectKind::Other,
            };
            match e {
                Effect::Record(entry) => c.timeline.push((inc.id.clone(), entry)),
                Effect::Page { route, reason, why } => {
                    pages.push((Some(route), reason, NotificationKind::Trigger, Some(why)))
                }
                Effect::PageResolved => {
                    for r in &inc.paged {
                        pages.push((
                            Some(r.clone()),
                            "recovered".into(),
                            NotificationKind::Resolve,
                            None,
                        ));
                    }
                }
                Effect::PageUpdate { since } => update_since = Some(since),
                Effect::RequestApproval {
                    ladder,
                    step,
                    until,
                } => asks.push((ladder, step, until)),
                Effect::BreakerFailure { action, denied } => {
                    for (key, cfg, at_once) in [
                        (
                            Scope::action(&action, &inc.target).key(),
                            rs.limits.breaker_target,
                            denied,
                        ),
                        (Scope::Global.key(), rs.limits.breaker_global, false),
                    ] {
                        let rec = self.store.breaker(&key).await?;
                        let since = breaker::window_start(&rec, now, &cfg);
                        let mut failures = self.store.count_failures(&key, since).await? + 1;
                        if at_once {
                            // Permission denied will not fix itself: the threshold is met now.
                            failures = failures.max(cfg.failures);
                        }
                        let next = breaker::on_failure(&rec, failures, now, &cfg);
                        if next.opened_at != rec.opened_at {
                            tracing::warn!(breaker = %key, failures, denied = at_once, "Breaker opened");
                            let message = if at_once {
                                format!("breaker {key} opened: the action was denied permission")
                            } else {
                                format!(
                                    "breaker {key} opened after {failures} failure(s) within {}",
                                    crate::domain::time::fmt_duration(cfg.within)
                                )
                            };
                            c.timeline.push((inc.id.clone(), Entry { at: now, kind: EntryKind::BreakerOpened, message, data: serde_json::json!({"key": key, "failures": failures, "denied": at_once}) }));
                        }
                        c.breaker_failures.push((key.clone(), now));
                        c.breakers.push((key, next));
                    }
                }
                Effect::BreakerSuccess { action } | Effect::BreakerRelease { action } => {
                    let success = matches!(e_kind, EffectKind::Success);
                    for key in [
                        Scope::action(&action, &inc.target).key(),
                        Scope::Global.key(),
                    ] {
                        let rec = self.store.breaker(&key).await?;
                        let next = if success {
                            breaker::on_success(&rec, now, &inc.id)
                        } else {
                            breaker::on_release(&rec, &inc.id)
                        };
                        if next != rec {
                            if success {
                                tracing::info!(breaker = %key, incident = %inc.id, "Breaker closed: its trial verified");
                            }
                            c.breakers.push((key, next));
                        }
                    }
                }
            }
        }
        if pages.is_empty() && update_since.is_none() && asks.is_empty() {
            return Ok(());
        }
        let mut timeline = self.store.timeline(&inc.id).await?;
        timeline.extend(
            c.timeline
                .iter()
                .filter(|(id, _)| *id == inc.id)
                .map(|(_, e)| e.clone()),
        );
        for ask in asks {
            self.request_approval(inc, rs, ask, &timeline, now, c);
        }
        for (route, reason, kind, why) in pages {
            let Some(route) = route else { continue };
            // A trigger carries why it escalated; a resolve does not count.
            if let Some(why) = why {
                Metrics::reason(&self.metrics.escalations, why.as_str());
                tracing::warn!(incident = %inc.id, route = %route, reason = %reason, "Escalating");
            }
            c.outbox
                .push((route, escalate::notification(inc, &timeline, kind, &reason)));
        }
        if let Some(since) = update_since {
            let n = crate::domain::notification::update(inc, &timeline, since);
            for route in &inc.paged {
                c.outbox.push((route.clone(), n.clone()));
            }
            c.timeline.push((
                inc.id.clone(),
                crate::domain::notification::update_entry(&n, &inc.paged, now),
            ));
        }
        Ok(())
    }

    /// When the open storm began, from memory or the store.
    pub(super) async fn storm_open(&mut self) -> Result<Option<Timestamp>, StoreError> {
        if let Some(open) = self.storm {
            return Ok(open);
        }
        let at = self
            .store
            .counter(crate::adapters::store::STORM_COUNTER.to_string())
            .await?;
        let open = (at != 0).then_some(Timestamp(at));
        self.storm = Some(open);
        Ok(open)
    }

    /// The storm page: one trigger per storm to the storm guard's route, listing every target in
    /// incident (`lines`, from the cache, so incidents opened by this very pass are in it). The
    /// storm's start is committed with it, so a restart neither pages it again nor forgets it.
    pub(super) fn storm_page(
        &mut self,
        rs: &Ruleset,
        reason: &str,
        lines: &[String],
        now: Timestamp,
        c: &mut Commit,
    ) {
        let Some(sg) = &rs.limits.storm_guard else {
            return;
        };
        let mut n = storm_notification(now, NotificationKind::Trigger, reason);
        n.description = format!(
            "{} targets in incident at once; workload automation stopped",
            lines.len()
        );
        n.updates = lines.to_vec();
        c.outbox.push((sg.route.clone(), n));
        c.counters
            .push((crate::adapters::store::STORM_COUNTER.to_string(), now.0));
        Metrics::reason(&self.metrics.escalations, "storm");
        tracing::warn!(route = %sg.route, reason = %reason, "Storm guard tripped; paging once");
        // Shown as open at once; a failed commit reloads it from the store.
        self.storm = Some(Some(now));
    }

    /// The storm is over (targets in incident back within the limit): its page is resolved.
    pub(super) async fn storm_over(
        &mut self,
        rs: &Ruleset,
        began: Timestamp,
        n: u32,
        max: u32,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut c = Commit::default();
        if let Some(sg) = &rs.limits.storm_guard {
            let reason = format!("storm over: {n} target(s) in incident (limit {max})");
            let mut note = storm_notification(began, NotificationKind::Resolve, &reason);
            note.resolved_at = Some(now);
            note.description = reason.clone();
            c.outbox.push((sg.route.clone(), note));
            tracing::info!(route = %sg.route, "Storm over; resolving its page");
        }
        c.counters
            .push((crate::adapters::store::STORM_COUNTER.to_string(), 0));
        self.storm = None;
        self.commit(c).await?;
        self.storm = Some(None);
        Ok(())
    }
}

/// Whether a breaker effect is a success or a release (they share the per-key loop).
enum EffectKind {
    Success,
    Other,
}

/// A storm page (trigger or resolve): one identity per storm, from when it began.
fn storm_notification(
    began: Timestamp,
    kind: NotificationKind,
    reason: &str,
) -> escalate::Notification {
    escalate::Notification {
        event: kind,
        dedup_key: format!("remedyd/storm/{}", began.0),
        incident: format!("STORM-{}", began.0),
        priority: "P1".into(),
        severity: "critical".into(),
        status: match kind {
            NotificationKind::Resolve => "resolved".into(),
            _ => "escalated".into(),
        },
        service: String::new(),
        namespace: String::new(),
        rule: "storm_guard".into(),
        level: 3,
        started_at: began,
        resolved_at: None,
        description: String::new(),
        impact: "several services down: infrastructure-level incident".into(),
        reason: reason.to_string(),
        actions_taken: Vec::new(),
        updates: Vec::new(),
        values: Vec::new(),
        resolution: None,
        history: Vec::new(),
        root_cause: String::new(),
        digest: None,
        url: None,
        approval: None,
    }
}
