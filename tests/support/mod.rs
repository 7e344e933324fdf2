//! Shared test support, one module per kind of helper. The integration tests (`tests/it`) and
//! the opt-in staging suite (`tests/staging.rs`) include all of it as `mod support`; the
//! model-based test and the benchmarks include the parts they need by `#[path]`.
//!
//! - `daemon`: remedyd in-process on a loopback port, a counting executor, a capturing pager;
//! - `services`: real Prometheus, Alertmanager, PostgreSQL and exporters as child processes;
//! - `story`: incident histories written straight to a store (review, digest, pagers, outbox);
//! - `fake_kube`: the stateful fake Kubernetes API server; `kubectl`: the real kubectl against it;
//! - `fuzz`: the seeded generator of the mutation fuzz tests;
//! - `rbac`: Kubernetes RBAC evaluated over the shipped manifests;
//! - `staging`: the Kubernetes staging suite, run against the fake and, opt-in, a real cluster.
// Each binary that includes this uses a part of it.
#![allow(dead_code)]

pub mod daemon;
pub mod fake_kube;
pub mod fuzz;
pub mod kubectl;
pub mod rbac;
pub mod services;
pub mod staging;
pub mod story;
