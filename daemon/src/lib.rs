//! remedyd: alert-driven auto-remediation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod action;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod escalate;
pub mod incident;
pub mod intake;
pub mod leader;
pub mod pgtls;
pub mod policy;
pub mod prom;
pub mod resolve;
pub mod rules;
pub mod ruleset;
pub mod signal;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod template;
pub mod testing;
