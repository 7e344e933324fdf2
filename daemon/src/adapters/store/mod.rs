//! The store: the single source of truth. Signals are written before the 200; every incident
//! change, timeline entry, ledger claim, budget use, breaker change and page is written before it
//! takes effect, so a restart resumes from here (crash-only).

mod commit;
pub mod maintenance;
pub mod postgres;
pub mod retention;
pub mod sqlite;

use serde::{Deserialize, Serialize};

use crate::adapters::escalate::Notification;
use crate::domain::BoxFuture;
use crate::domain::approval::{Approval, ApprovalState, Decision, Refused, Taken};
use crate::domain::incident::{Entry, Incident, Status};
use crate::domain::policy::breaker::BreakerRecord;
use crate::domain::signal::Signal;
use crate::domain::time::Timestamp;
pub use commit::{AlertWrite, alert_writes};
pub use maintenance::{Cancelled, MaintenanceWindow, NewWindow, RECURS, cancel_row};

/// Store errors; every one means "the write did not happen".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("store: {0}")]
    Database(String),
    /// The store's worker is gone (shutting down).
    #[error("store: unavailable")]
    Unavailable,
    /// The (incident, ladder, step) was claimed before: the step must not run again.
    #[error("store: step already claimed: {0}")]
    AlreadyClaimed(String),
    /// A stored row could not be decoded.
    #[error("store: corrupt row: {0}")]
    Corrupt(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One webhook delivery, as received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    /// When it arrived.
    pub received_at: Timestamp,
    /// Alertmanager receiver name.
    pub receiver: String,
    /// Alertmanager group key (opaque).
    pub group_key: String,
    /// Alerts Alertmanager left out (`max_alerts`); never read as resolved.
    pub truncated_alerts: u64,
    /// Alerts in the body.
    pub alerts: usize,
}

/// What ingest did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestResult {
    /// New signals stored.
    pub stored: usize,
    /// Signals already stored (same fingerprint, startsAt and status).
    pub duplicates: usize,
}

/// A stored signal awaiting the engine.
#[derive(Clone, Debug)]
pub struct StoredSignal {
    /// Row id.
    pub id: i64,
    /// The signal.
    pub signal: Signal,
    /// When it arrived.
    pub received_at: Timestamp,
}

/// A signal as recorded, for `remedyd replay`: when it arrived and when a re-send of it (a
/// duplicate firing alert) was last heard of.
#[derive(Clone, Debug)]
pub struct RecordedSignal {
    /// The signal.
    pub signal: Signal,
    /// When it arrived.
    pub received_at: Timestamp,
    /// When a re-send was last received (`None`: never re-sent).
    pub last_seen: Option<Timestamp>,
}

/// What a store recorded since a time, read in one read-only snapshot for `remedyd replay`.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Signals received since then, in the order the engine handled them (row id).
    pub signals: Vec<RecordedSignal>,
    /// Incidents opened since then, oldest first, each with its timeline (oldest first).
    pub incidents: Vec<(Incident, Vec<Entry>)>,
    /// The approvals of those incidents' steps (`approvals`): who decided, when, how; none from
    /// a store older than migration 6.
    pub approvals: Vec<Approval>,
}

/// A page to deliver.
#[derive(Clone, Debug)]
pub struct OutboxItem {
    /// Row id.
    pub id: i64,
    /// Route name.
    pub route: String,
    /// The notification, frozen at enqueue time.
    pub notification: Notification,
    /// Attempts so far.
    pub attempts: u32,
    /// The thread an earlier page of this incident opened on this route (Slack Web API:
    /// `CHANNEL/ts`), kept by [`Store::outbox_threaded`].
    pub thread: Option<String>,
}

/// Which of the pending pages of one (incident, route) a newer update supersedes: `pending` is
/// (id, is an update) in id order from the page the outbox picked. The updates before the first
/// trigger or resolve are a run; all but the newest of them are superseded by it (returned with
/// it). Triggers and resolves are never superseded, and nothing passes one.
pub fn superseded_updates(pending: &[(i64, bool)]) -> Option<(Vec<i64>, i64)> {
    let run: Vec<i64> = pending
        .iter()
        .take_while(|(_, update)| *update)
        .map(|(id, _)| *id)
        .collect();
    let (newest, older) = run.split_last()?;
    (!older.is_empty()).then(|| (older.to_vec(), *newest))
}

/// A pause.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// `global`, `rule:NAME` or `namespace:NAME`.
    pub scope: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub author: String,
    /// Since when.
    pub since: Timestamp,
}

/// How the engine answered a [`ResolveRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveResult {
    /// The incident was resolved by hand.
    Resolved,
    /// No incident has this id.
    UnknownIncident,
    /// The incident was already resolved (by its alerts, or by an earlier request).
    AlreadyResolved,
}

impl ResolveResult {
    /// Stored and reported spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveResult::Resolved => "resolved",
            ResolveResult::UnknownIncident => "unknown_incident",
            ResolveResult::AlreadyResolved => "already_resolved",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ResolveResult::Resolved,
            ResolveResult::UnknownIncident,
            ResolveResult::AlreadyResolved,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A person's request to resolve an incident by hand (API, dashboard or CLI). The engine, the
/// only writer of incidents, applies it and marks it done in the same commit.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolveRequest {
    /// Row id.
    pub id: i64,
    /// The incident to resolve.
    pub incident: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub author: String,
    /// When it was asked.
    pub requested_at: Timestamp,
    /// When the engine applied it, and how; `None` while pending.
    pub done: Option<(Timestamp, ResolveResult)>,
}

/// One atomic change produced by the engine.
///
/// Writes of three fields or more are named structs ([`BudgetCharge`], [`Claim`], [`Finished`],
/// [`ResolveDone`]); pairs stay tuples where the types already say which is which:
/// `(incident id, Entry)`, `(route, Notification)`, `(key, BreakerRecord)` (as
/// [`Store::breakers`] answers), `(key, at)` and `(name, value)`.
#[derive(Clone, Debug, Default)]
pub struct Commit {
    /// Incidents to insert or replace, each once: its state at the end of the work the commit
    /// carries ([`Commit::put_incident`]). An incident holds every firing alert, so a copy per
    /// change would write its alerts once per change.
    pub incidents: Vec<Incident>,
    /// How the alerts of the incidents carried changed, in order (the stores keep them in rows
    /// apart from the body); `None`: not known, each incident's alerts are written whole.
    pub alerts: Option<Vec<AlertWrite>>,
    /// Timeline entries to append: (incident id, entry).
    pub timeline: Vec<(String, Entry)>,
    /// Every signal up to this id is handled (the engine handles them in id order, and ingest
    /// commits ids in increasing order, so one watermark replaces a flag per row).
    pub processed: Option<i64>,
    /// Pages to enqueue: (route, notification).
    pub outbox: Vec<(String, Notification)>,
    /// Budget uses to count.
    pub budget_uses: Vec<BudgetCharge>,
    /// Breaker failures: (key, at).
    pub breaker_failures: Vec<(String, Timestamp)>,
    /// Breaker records to set: (key, record).
    pub breakers: Vec<(String, BreakerRecord)>,
    /// Ledger claims. The whole commit fails with [`StoreError::AlreadyClaimed`] if any was
    /// claimed before: at most once per step.
    pub claims: Vec<Claim>,
    /// Ledger rows to finish.
    pub finished: Vec<Finished>,
    /// Ledger claims to give back, with their budget uses: steps whose action returned
    /// "held before any write" ([`Release`]).
    pub released: Vec<Release>,
    /// Named engine state to set: (name, value), e.g. [`STORM_COUNTER`].
    pub counters: Vec<(String, i64)>,
    /// Resolve requests applied.
    pub resolves_done: Vec<ResolveDone>,
    /// Approvals requested (pending; an id stored before is left as it is). Every incident in
    /// the commit also voids its pending approvals other than the one its phase awaits.
    pub approvals: Vec<Approval>,
    /// The engine can derive everything this commit writes again from signals already stored
    /// durably, and nothing outside remedyd was told of it: its signal batches changed the
    /// alerts and timelines of incidents, none opened, resolved, re-levelled or moved on. Set
    /// only by the engine, for held signal batches written as they are; the stores may then
    /// write it without its own flush to disk ([`Commit::skips_flush`]).
    pub rederivable: bool,
    /// Incidents carried whose own row the store holds already: only their alerts changed
    /// (an alert joined again with a new start, after a lost resolve), written through
    /// `alerts`. The stores skip encoding and writing the row. Set only by the engine, which
    /// compares with what was last written ([`Incident::same_but_alerts`]);
    /// [`Commit::put_incident`] and [`Commit::absorb`] keep it true.
    pub alerts_only: std::collections::BTreeSet<String>,
}

/// One use of a budget by a claimed step, counted by [`Store::count_uses`] in its mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetCharge {
    /// The budget's scope key (`action:KIND:TARGET`, `rule:NAME`, `namespace:NS`, `global`).
    pub key: String,
    /// When the step using it was claimed.
    pub at: Timestamp,
    /// Used by a dry run (counted apart from real uses).
    pub dry_run: bool,
}

/// A ledger claim: the step (incident, ladder, step) runs at most once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Incident id.
    pub incident: String,
    /// The ladder (escalation level) the step belongs to.
    pub ladder: u8,
    /// The step's index in its ladder.
    pub step: usize,
    /// When it was claimed.
    pub at: Timestamp,
}

/// A claimed ledger step that finished (or was found interrupted after a restart).
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// Incident id.
    pub incident: String,
    /// The ladder (escalation level) the step belongs to.
    pub ladder: u8,
    /// The step's index in its ladder.
    pub step: usize,
    /// When it finished.
    pub at: Timestamp,
    /// What is stored as the ledger row's result: the action's outcome, or
    /// `{"result": "interrupted"}`.
    pub result: serde_json::Value,
}

/// A claimed step whose action stopped before any write ([`crate::adapters::action::Outcome::held`]):
/// its ledger row is deleted, so the same step may be claimed again, and the budget uses its
/// claim charged are given back. Only a row not finished is deleted: a step recorded as
/// finished or interrupted (one that may have written) keeps its claim, and so never runs twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// Incident id.
    pub incident: String,
    /// The ladder (escalation level) the step belongs to.
    pub ladder: u8,
    /// The step's index in its ladder.
    pub step: usize,
    /// The budget uses charged with the claim (one row each is deleted).
    pub budget_uses: Vec<BudgetCharge>,
}

/// A [`ResolveRequest`] the engine applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolveDone {
    /// The request's row id.
    pub request: i64,
    /// When it was applied.
    pub at: Timestamp,
    /// How.
    pub result: ResolveResult,
}

/// The counter holding when the current storm began (milliseconds since the epoch), 0 when no
/// storm is open: a restart neither pages the same storm again nor forgets to resolve it.
pub const STORM_COUNTER: &str = "storm_open";

/// The narrow interface the engine, intake and API use: SQLite (one replica) or PostgreSQL
/// (several replicas sharing one database).
pub trait Store: Send + Sync + 'static {
    /// Stores one delivery's signals durably, deduplicating on (fingerprint, startsAt, status).
    fn ingest(&self, receipt: Receipt, signals: Vec<Signal>)
    -> BoxFuture<'_, Result<IngestResult>>;
    /// Signals not yet handled by the engine, oldest first.
    fn pending_signals(&self, limit: usize) -> BoxFuture<'_, Result<Vec<StoredSignal>>> {
        self.pending_signals_after(None, limit)
    }
    /// Signals after the committed watermark and after `after`, oldest first: the engine holds
    /// the signals of a pass handled but not yet committed (up to `after`) and reads on past them.
    fn pending_signals_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredSignal>>>;
    /// The highest incident number committed for `year` (`INC-YYYY-NNNN`), 0 if none: the
    /// engine, the only writer of incidents, numbers new ones after it in memory, and committing
    /// an incident advances it in the same transaction (no transaction of its own per id).
    fn incident_counter(&self, year: i32) -> BoxFuture<'_, Result<i64>> {
        self.counter(format!("incident-{year}"))
    }
    /// A named counter's value, 0 if never set.
    fn counter(&self, name: String) -> BoxFuture<'_, Result<i64>>;
    /// Incidents not resolved.
    fn active_incidents(&self) -> BoxFuture<'_, Result<Vec<Incident>>>;
    /// Applies a commit atomically.
    fn commit(&self, c: Commit) -> BoxFuture<'_, Result<()>>;
    /// Budget uses of `key` since `since` in the given mode.
    fn count_uses(&self, key: &str, since: Timestamp, dry_run: bool) -> BoxFuture<'_, Result<u32>>;
    /// A breaker's record (default when never touched).
    fn breaker(&self, key: &str) -> BoxFuture<'_, Result<BreakerRecord>>;
    /// What the gates read before a step, in one go: the budget uses of each `(key, since)` in
    /// the given mode, and the breaker records of `breakers`. The default asks one by one; a
    /// store may answer in one round trip.
    fn gate_reads(
        &self,
        uses: Vec<(String, Timestamp)>,
        dry_run: bool,
        breakers: Vec<String>,
    ) -> BoxFuture<'_, Result<(Vec<u32>, Vec<BreakerRecord>)>> {
        Box::pin(async move {
            let mut counts = Vec::with_capacity(uses.len());
            for (key, since) in &uses {
                counts.push(self.count_uses(key, *since, dry_run).await?);
            }
            let mut records = Vec::with_capacity(breakers.len());
            for key in &breakers {
                records.push(self.breaker(key).await?);
            }
            Ok((counts, records))
        })
    }
    /// When each firing alert, named by (fingerprint, startsAt), was last received (stored or
    /// re-sent, which ingest counts as a duplicate), the latest per fingerprint: fingerprints
    /// never received under any of their starts asked are left out. An exact lookup on the
    /// signals' unique key, which leads with the start (see migration 9).
    fn last_heard(
        &self,
        alerts: Vec<(String, Timestamp)>,
    ) -> BoxFuture<'_, Result<Vec<(String, Timestamp)>>>;
    /// Removes what the signal retention (config `signal_retention`) lets go, in one small
    /// transaction: of the signals after id `after`, up to `limit` that the engine has handled
    /// (never the newest signal: SQLite would give its id out again), those last heard of
    /// (received, or re-sent while firing) before `before`; and the oldest `limit` receipts, those
    /// received before `before`. A firing alert Alertmanager keeps re-sending stays, so its
    /// re-sends stay duplicates. See [`retention`].
    fn prune_signals(
        &self,
        after: i64,
        before: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Pruned>>;
    /// All breaker records.
    fn breakers(&self) -> BoxFuture<'_, Result<Vec<(String, BreakerRecord)>>>;
    /// Failures of `key` since `since`.
    fn count_failures(&self, key: &str, since: Timestamp) -> BoxFuture<'_, Result<u32>>;
    /// Active pauses.
    fn pauses(&self) -> BoxFuture<'_, Result<Vec<Pause>>>;
    /// Sets (or replaces) a pause.
    fn set_pause(&self, p: Pause) -> BoxFuture<'_, Result<()>>;
    /// Lifts a pause; `false` if there was none.
    fn clear_pause(&self, scope: &str) -> BoxFuture<'_, Result<bool>>;
    /// Stores a maintenance window set through the API; returns it with its id.
    fn add_maintenance(&self, w: NewWindow) -> BoxFuture<'_, Result<MaintenanceWindow>>;
    /// Maintenance windows neither cancelled nor ended at `now` (open or to come), by start.
    fn maintenance_windows(&self, now: Timestamp) -> BoxFuture<'_, Result<Vec<MaintenanceWindow>>>;
    /// Cancels a live window ([`cancel_row`]) in one transaction that writes only while it is
    /// not cancelled; on PostgreSQL it wakes the leader's engine.
    /// `by` is who cancelled it, kept with it.
    fn cancel_maintenance(
        &self,
        id: i64,
        now: Timestamp,
        by: &str,
    ) -> BoxFuture<'_, Result<Cancelled>>;
    /// Pages due for delivery, oldest first. Per (incident, route) only the oldest page not yet
    /// done (delivered, recorded or given up) can be due, and only once its `next_at` has come:
    /// a resolve waits behind its trigger while the trigger is retried. At most `per_route` pages
    /// of each route, so that a backlog on one route never hides another route's pages.
    fn outbox_due(
        &self,
        now: Timestamp,
        per_route: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxItem>>>;
    /// Marks a page delivered (or recorded only, when the route has no destination).
    fn outbox_done(&self, id: i64, now: Timestamp, delivered: bool) -> BoxFuture<'_, Result<()>>;
    /// Marks a page delivered and keeps `thread` as the thread of its (incident, route), which
    /// later pages get in [`OutboxItem::thread`]. The first thread kept stays: a later one is
    /// ignored. One transaction: a page is never done without its thread.
    fn outbox_threaded(&self, id: i64, now: Timestamp, thread: &str) -> BoxFuture<'_, Result<()>>;
    /// Coalesces stale updates: when `id` (the page the outbox picked, the oldest pending of its
    /// incident and route) is an update with newer pending updates behind it, and no trigger or
    /// resolve between, marks it and them but the newest done, undelivered and superseded by the
    /// newest ([`superseded_updates`]). Returns the ids marked (none when `id` is not such an
    /// update).
    fn outbox_supersede(&self, id: i64, now: Timestamp) -> BoxFuture<'_, Result<Vec<i64>>>;
    /// Schedules a retry.
    fn outbox_retry(&self, id: i64, next_at: Timestamp, error: &str) -> BoxFuture<'_, Result<()>>;
    /// Pages not yet done.
    fn outbox_depth(&self) -> BoxFuture<'_, Result<u64>>;
    /// Incidents newest first, optionally by status.
    fn list_incidents(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Incident>>>;
    /// One incident.
    fn get_incident(&self, id: &str) -> BoxFuture<'_, Result<Option<Incident>>>;
    /// An incident's timeline, oldest first.
    fn timeline(&self, id: &str) -> BoxFuture<'_, Result<Vec<Entry>>>;
    /// Incident counts by status.
    fn count_by_status(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>>;
    /// Stores a request to resolve `incident` by hand and wakes the leader's engine (on
    /// PostgreSQL, in whichever replica leads); returns the request's id.
    fn request_resolve(
        &self,
        incident: &str,
        reason: &str,
        author: &str,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<i64>>;
    /// Resolve requests the engine has not applied yet, oldest first.
    fn pending_resolves(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ResolveRequest>>>;
    /// One resolve request (to see whether, and how, it was applied).
    fn resolve_request(&self, id: i64) -> BoxFuture<'_, Result<Option<ResolveRequest>>>;
    /// Whether the store answers.
    fn ping(&self) -> BoxFuture<'_, Result<()>>;
    /// One approval.
    fn approval(&self, id: &str) -> BoxFuture<'_, Result<Option<Approval>>>;
    /// Takes one person's decision on an approval ([`Approval::decide`]) in one transaction that
    /// writes only while the row is still pending, so of two replicas receiving the same click
    /// one decides and the other is told it is already decided. On PostgreSQL it wakes the
    /// leader's engine.
    fn decide_approval(
        &self,
        id: &str,
        d: Decision,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Decided>>;
    /// Marks a pending approval whose deadline has passed as timed out (compare-and-set, like a
    /// decision); returns the approval as it stands afterwards (a decision taken just before
    /// the deadline wins).
    fn expire_approval(&self, id: &str, now: Timestamp) -> BoxFuture<'_, Result<Option<Approval>>>;
    /// Keeps where the request of approval `id` was posted on `route` (Slack Web API:
    /// `CHANNEL/ts` of the message with the buttons), so that its outcome can edit it. Kept in
    /// `page_threads` under the approval's id (an incident id never holds a `/`); the first
    /// kept stays.
    fn keep_approval_message(
        &self,
        id: &str,
        route: &str,
        message: &str,
    ) -> BoxFuture<'_, Result<()>>;
    /// Where the request of approval `id` was posted on `route`, when known.
    fn approval_message(&self, id: &str, route: &str) -> BoxFuture<'_, Result<Option<String>>>;
}

/// What one [`Store::prune_signals`] call removed, and where the next should look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Signals removed.
    pub signals: u64,
    /// Receipts removed.
    pub receipts: u64,
    /// The highest signal id looked at, when signals after it may be old enough too; `None`
    /// when this call reached handled signals heard of after `before`, or none were left: the
    /// round is over.
    pub next: Option<i64>,
}

/// What [`Store::decide_approval`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Decided {
    /// No approval has this id.
    Unknown,
    /// Refused; nothing written.
    Refused(Refused),
    /// Taken and written; the approval as it now stands.
    Taken(Taken, Approval),
}

/// The decision rule both stores run inside their transaction: `a` as read, the decision, and
/// what to write back (the new state and decisions) when taken.
pub fn decide_row(a: Option<Approval>, d: Decision, now: Timestamp) -> Decided {
    let Some(mut a) = a else {
        return Decided::Unknown;
    };
    match a.decide(d, now) {
        Ok(t) => Decided::Taken(t, a),
        Err(r) => Decided::Refused(r),
    }
}

/// The expiry rule both stores run inside their transaction: a pending approval at or past its
/// deadline becomes timed out (returned to be written); anything else stays.
pub fn expire_row(a: &Approval, now: Timestamp) -> Option<ApprovalState> {
    (a.state == ApprovalState::Pending && now >= a.deadline).then_some(ApprovalState::TimedOut)
}

/// The counter an incident id advances: `INC-2026-0042` → `incident-2026`.
pub fn incident_counter_name(id: &str) -> Option<String> {
    let mut parts = id.split('-');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("INC"), Some(year), Some(_), None) if year.parse::<i32>().is_ok() => {
            Some(format!("incident-{year}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::superseded_updates;

    #[test]
    fn only_a_run_of_updates_is_coalesced_into_its_newest_and_nothing_jumps_a_resolve() {
        // update, update, update, resolve, update: the first two go, superseded by the third.
        let pending = [(2, true), (3, true), (4, true), (5, false), (6, true)];
        assert_eq!(superseded_updates(&pending), Some((vec![2, 3], 4)));
        // One update before a resolve: nothing to coalesce.
        assert_eq!(
            superseded_updates(&[(2, true), (3, false), (4, true)]),
            None
        );
        // The picked page is a trigger or a resolve: never superseded.
        assert_eq!(
            superseded_updates(&[(1, false), (2, true), (3, true)]),
            None
        );
        assert_eq!(superseded_updates(&[]), None);
    }
}
