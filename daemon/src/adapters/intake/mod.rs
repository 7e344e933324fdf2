//! Intake: where signals come from.

pub mod alertmanager;
pub mod poller;
