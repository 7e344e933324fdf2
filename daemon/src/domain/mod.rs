//! Layer 1: the pure domain.

pub mod diag;
pub mod incident;
pub mod notification;
pub mod policy;
pub mod report;
pub mod rules;
pub mod signal;
pub mod template;
pub mod time;

/// A boxed, sendable future: what the traits the outer layers implement return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
