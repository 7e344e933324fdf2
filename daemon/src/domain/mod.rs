//! Layer 1: the pure domain. What remedyd decides, as plain data and functions of `now`: no
//! tokio, no Kubernetes, no HTTP, no database, no system clock (`tests/it/architecture.rs`). The
//! traits the outer layers implement return [`BoxFuture`]; they are declared by their consumers.
//!
//! - [`signal`], [`rules`] (matchers, polled thresholds), [`template`]: what fires and whom it concerns.
//! - [`incident`]: the state machine, one per (rule, target), over events with `now` passed in.
//! - [`policy`]: ladders, routes, limits; the pure [`policy::gate`], budgets and breakers.
//! - [`time`], [`diag`]: timestamps and durations; problems with file, line and field.
//! - [`notification`], [`report`]: what a page, a review and the digest say.
//! - [`approval`]: a step waiting for people's decisions, and the rule that takes one.

pub mod approval;
pub mod diag;
pub mod incident;
pub mod notification;
pub mod policy;
pub mod redact;
pub mod report;
pub mod rules;
pub mod scope;
pub mod signal;
pub mod template;
pub mod time;

/// A boxed, sendable future: what the traits the outer layers implement return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
