//! The policy file as written: serde structs that mirror `policies/*.yaml` field for field, with
//! the spans the diagnostics need. `compile` turns them into the compiled types.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A `policies/*.yaml` file as written; every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyFile {
    #[serde(default)]
    pub(super) vars: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) limits: Option<Spanned<RawLimits>>,
    #[serde(default)]
    pub(super) policies: Vec<RawPolicy>,
    #[serde(default)]
    pub(super) digest: Option<Spanned<RawDigest>>,
    #[serde(default)]
    pub(super) maintenance: Vec<RawMaintenance>,
}

/// One `maintenance:` window: `start` and `end`, or `weekly`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) scope: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) start: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) end: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) weekly: Option<Spanned<RawWeekly>>,
}

/// `weekly: {day: sat, from: "02:00", to: "04:00"}` (UTC).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeekly {
    pub(super) day: String,
    pub(super) from: String,
    pub(super) to: String,
}

/// One `routes:` entry; which fields apply depends on `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) url_env: Option<String>,
    #[serde(default)]
    pub(super) url_file: Option<String>,
    #[serde(default)]
    pub(super) routing_key_env: Option<String>,
    #[serde(default)]
    pub(super) routing_key_file: Option<String>,
    #[serde(default)]
    pub(super) api_key_env: Option<String>,
    #[serde(default)]
    pub(super) api_key_file: Option<String>,
    #[serde(default)]
    pub(super) token_env: Option<String>,
    #[serde(default)]
    pub(super) token_file: Option<String>,
    #[serde(default)]
    pub(super) channel: Option<String>,
    #[serde(default)]
    pub(super) timeout: Option<Spanned<String>>,
}

/// `digest: {route: NAME, at: "08:00"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDigest {
    pub(super) route: Spanned<String>,
    pub(super) at: String,
}

/// `limits:`; what is left out keeps its default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default)]
    pub(super) namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub(super) budgets: RawBudgets,
    #[serde(default)]
    pub(super) breakers: RawBreakers,
    #[serde(default)]
    pub(super) storm_guard: Option<RawStorm>,
}

/// `limits.budgets`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudgets {
    #[serde(default)]
    pub(super) global: Option<Spanned<RawWindow>>,
    #[serde(default)]
    pub(super) namespace: Option<Spanned<RawWindow>>,
    #[serde(default)]
    pub(super) rule: Option<Spanned<RawWindow>>,
    #[serde(default)]
    pub(super) action_target: Option<Spanned<RawWindow>>,
}

/// A budget window: `{max: N, per: 1h}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub(super) max: u32,
    pub(super) per: String,
}

/// `limits.breakers`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreakers {
    #[serde(default)]
    pub(super) target: Option<Spanned<RawBreaker>>,
    #[serde(default)]
    pub(super) global: Option<Spanned<RawBreaker>>,
}

/// One breaker: `{failures: N, within: 1h, cooldown: 30m}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    pub(super) failures: u32,
    pub(super) within: String,
    pub(super) cooldown: String,
}

/// `limits.storm_guard`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorm {
    pub(super) max_targets: u32,
    pub(super) route: Spanned<String>,
}

/// One `policies:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) escalate_to: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) update_every: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) silence: Option<Spanned<RawSilence>>,
    pub(super) gitops: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) rollout_hold: Option<Spanned<String>>,
    pub(super) levels: Vec<RawLevel>,
}

/// A policy's `silence: {for: 10m, max: 1h, respect_human_silences: hold}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSilence {
    #[serde(default, rename = "for")]
    pub(super) for_: Option<String>,
    #[serde(default)]
    pub(super) max: Option<String>,
    #[serde(default)]
    pub(super) respect_human_silences: Option<String>,
}

/// One level of a policy, with its ladder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLevel {
    pub(super) level: Spanned<u8>,
    #[serde(default)]
    pub(super) escalate_to: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) steps: Vec<RawStep>,
}

/// One step of a ladder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) name: Spanned<String>,
    pub(super) action: Spanned<String>,
    #[serde(default, rename = "with")]
    pub(super) params: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    pub(super) budget: Option<Spanned<RawWindow>>,
    pub(super) verify: Option<Spanned<RawVerify>>,
    #[serde(default)]
    pub(super) on_failure: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) approve: Option<Spanned<RawApprove>>,
}

/// A step's `approve: {approvers: [..], two_person: false, timeout: 15m, on_timeout: escalate,
/// notify: [..]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprove {
    #[serde(default)]
    pub(super) approvers: Vec<String>,
    #[serde(default)]
    pub(super) two_person: bool,
    #[serde(default)]
    pub(super) timeout: Option<String>,
    #[serde(default)]
    pub(super) on_timeout: Option<String>,
    #[serde(default)]
    pub(super) notify: Vec<String>,
}

/// A step's `verify:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerify {
    #[serde(default)]
    pub(super) resolved_within: Option<String>,
    #[serde(default)]
    pub(super) query: Option<String>,
    #[serde(default)]
    pub(super) above: Option<f64>,
    #[serde(default)]
    pub(super) below: Option<f64>,
    #[serde(default)]
    pub(super) within: Option<String>,
    #[serde(default)]
    pub(super) every: Option<String>,
    #[serde(default)]
    pub(super) no_data: Option<String>,
    #[serde(default)]
    pub(super) http: Option<String>,
    #[serde(default)]
    pub(super) expect_status: Option<u16>,
    #[serde(default)]
    pub(super) body_contains: Option<String>,
    #[serde(default)]
    pub(super) successes: Option<u32>,
    #[serde(default)]
    pub(super) timeout: Option<String>,
}
