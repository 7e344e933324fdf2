//! Intake: where signals come from.

pub mod poller;
pub mod webhook;
