//! remedyd: alert-driven auto-remediation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapters;
pub mod app;
pub mod domain;
pub mod engine;
pub mod load;
