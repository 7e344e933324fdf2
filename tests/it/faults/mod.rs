//! Issue 11, chaos with real processes: what remedyd keeps and does when its disk fills up or
//! turns read-only (`disk`), when the clock jumps between restarts (`clock`), and when the Kubernetes API server answers
//! 503, hangs or closes connections (`kube_outage`).
//!
//! The promise under test: every alert acknowledged with a 200 is kept, no remediation step runs
//! twice, and service comes back without an operator once the fault is gone. Every wait is
//! bounded; a fault mechanism that is unavailable (no `mount`, no `chattr`) fails the test,
//! naming it, instead of skipping.

mod clock;
mod disk;
mod kube_outage;
