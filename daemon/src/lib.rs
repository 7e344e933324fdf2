//! remedyd: alert-driven auto-remediation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod action;
pub mod clock;
pub mod config;
pub mod escalate;
pub mod incident;
pub mod policy;
pub mod rules;
pub mod ruleset;
pub mod signal;
pub mod store;
pub mod template;
pub mod telemetry;
pub mod engine;
