//! Layer 3: adapters, the edges to the world. Each implements a trait the engine or loading
//! declares, or feeds them: intake (the Alertmanager webhook, the Prometheus poller), actions
//! (Kubernetes, PostgreSQL, HTTP), the store (SQLite, PostgreSQL with TLS), escalation (pagers,
//! the durable outbox, the digest's I/O), Prometheus queries, metrics, the bearer token check and
//! the wall clock.

pub mod action;
pub mod auth;
pub mod clock;
pub mod escalate;
pub mod intake;
#[allow(unsafe_code)] // madvise and malloc_trim: the module says why each is sound.
pub mod memory;
pub mod pgtls;
pub mod prometheus;
pub mod silence;
pub mod store;
pub mod telemetry;
