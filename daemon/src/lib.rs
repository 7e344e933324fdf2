//! remedyd: alert-driven auto-remediation.
//!
//! The pipeline, and the five layers that hold it. Each layer imports only from the layers above
//! it in this list (`tests/it/architecture.rs` fails on any import against them, on any import cycle
//! between files, and on runtime or clock use in the domain):
//!
//! ```text
//! Alertmanager webhook ─┐                                                  ┌─> Kubernetes, PostgreSQL, HTTP
//! Prometheus poll ──────┴─> signals ─> rules ─> incidents ─> policy ladders ┴─> pages (outbox)
//! ```
// No unsafe code, except the two advisory system calls of `adapters/memory.rs` (madvise,
// malloc_trim); `tests/it/architecture.rs` fails on any other `allow(unsafe_code)`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// 3. Adapters: intake (webhook, poller), actions, the store, escalation (pagers, outbox), Prometheus, metrics.
pub mod adapters;
/// 5. Wiring and the faces: serve, HTTP API and dashboard, leadership, supervision, CLI.
pub mod app;
/// 1. The pure domain: signals, rules, incidents, policies (gate, budgets, breakers), time, pages and reports. No I/O, no clock.
pub mod domain;
/// 4. The engine: the only writer of incidents; drives ladders through the gates and the ledger.
pub mod engine;
/// 2. Loading and checking: the config, the ruleset (rules + policies, every error at once), DSNs.
pub mod load;
