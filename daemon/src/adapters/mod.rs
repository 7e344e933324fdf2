//! Layer 3: adapters.

pub mod action;
pub mod auth;
pub mod clock;
pub mod escalate;
pub mod intake;
pub mod pgtls;
pub mod prometheus;
pub mod store;
pub mod telemetry;
