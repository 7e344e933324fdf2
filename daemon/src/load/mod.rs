//! Layer 2: loading and checking. The config (defaults < file < env < flags), the ruleset
//! (`rules/` and `policies/` compiled by the domain, every error reported at once, actions checked
//! against the [`ruleset::ActionCatalogue`] the action registry implements), and PostgreSQL DSNs.

pub mod config;
pub mod dsn;
pub mod probe_allow;
pub mod ruleset;
pub mod secrets;

pub use probe_allow::ProbeAllowList;
