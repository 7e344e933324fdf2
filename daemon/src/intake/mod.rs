//! Intake: where signals come from.

pub mod webhook;
