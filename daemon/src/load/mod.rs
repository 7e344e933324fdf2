//! Layer 2: loading and checking.

pub mod config;
pub mod dsn;
pub mod ruleset;
