//! Kubernetes actions (runbook procedures 1, 2, 4, 5 and node drain) with kubectl's semantics.
//!
//! Every action reads what it acts on first, then sends the same requests kubectl would (method,
//! path, query, content type and body; `reference/kube.md` §2), with these deliberate
//! differences, each safer than kubectl's default:
//!
//! - every wait is bounded (`wait`, `timeout`); a Deployment change waits for kubectl's rollout
//!   viewer and a failed rollout fails the step;
//! - `kube_set_resources` names its containers (kubectl's default `*` hits sidecars too);
//! - scale is HPA-aware, drain keeps `min_ready_nodes`, deleting pods never takes more than a
//!   share of the ready ones;
//! - the client's own retry layer is off: 409 and 5xx are retried here (bounded, recorded), a
//!   PDB's 429 during drain every 5 s up to the drain timeout, and 403 trips the breaker.
//!
//! Namespaces come from the incident's target, so `limits.namespaces` governs every workload
//! action; `kube-system` is refused except by the two DNS actions, which act on CoreDNS only.
//! In dry-run, reads go to the cluster and writes are recorded, exactly as they would be sent.
//!
//! One file per action, each naming the kubectl command it mirrors: `restart`, `rollout`
//! (status, and the wait every Deployment change ends with), `undo`, `scale`, `hpa`,
//! `resources`, `delete_pods`, `handsoff` (rollouts in progress and GitOps owners, checked
//! before every Deployment change), `revert` (a verified change read back for a GitOps
//! revert), `dns` (what the two DNS actions act on), `evidence`, `network`
//! (procedure 5's reads), `infra` (level 3's cluster checks) and `node` (drain). Beneath them, the plumbing they share, in the order it builds up: `error`, `cluster`,
//! `session` (one run's requests), `request` (kubectl's request builders), `objects` (reading
//! what an action acts on), `params` (a step's `with:`), `executor` (an action kind as an
//! `Executor`) and `catalogue` (the kinds by name, `register`).

mod bounded;
mod catalogue;
mod cluster;
mod delete_pods;
mod dns;
mod error;
mod evidence;
mod executor;
mod handsoff;
mod hpa;
mod infra;
mod network;
mod node;
mod objects;
mod params;
pub mod quantity;
mod request;
mod resources;
mod restart;
mod revert;
mod rollout;
mod scale;
mod session;
mod undo;
mod usage;

pub use catalogue::{KINDS, register, used_by};
pub use cluster::{Cluster, USER_AGENT};
pub use dns::SYSTEM_NAMESPACE;
pub use error::{ApiError, Failure};
pub use executor::{KubeAction, KubeExecutor};
pub use handsoff::{GITOPS_VAR, Owner, gitops_owner, rollout_in_progress};
pub use objects::{list_all, selector_string};
pub use params::{check_template, duration, fmt, namespace, params, render};
pub use request::{at, get, list, merge, patch, path, strategic};
pub use restart::now_rfc3339;
pub use rollout::{Rollout, rollout_state, wait_rollout};
pub use session::Session;
