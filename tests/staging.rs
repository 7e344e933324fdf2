//! The Kubernetes staging suite against a real cluster: opt-in, by hand, never in CI, and not
//! built or counted by a default `cargo test`/`cargo nextest run` (it needs the `staging`
//! feature). The suite (tests/support/staging.rs) creates a Deployment of `pause` containers in
//! a namespace of its own (`remedyd-test-<pid>`), runs status, evidence, restart, scale, set
//! resources, undo and pod deletion on it, then deletes the namespace; the kubeconfig's user
//! needs rights to create a namespace. The same suite runs against the fake API server in every
//! run (`cargo nextest run --test it kube_actions::staging`).
//!
//! ```sh
//! REMEDYD_TEST_KUBECONFIG=/path/to/kubeconfig cargo test --features staging --test staging
//! ```

#[path = "support/mod.rs"]
mod support;

/// Asked for by name, so a missing kubeconfig fails instead of passing without checking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_suite_against_a_real_cluster() {
    let path = std::env::var_os("REMEDYD_TEST_KUBECONFIG").expect(
        "REMEDYD_TEST_KUBECONFIG names the kubeconfig of the staging cluster (this target is opt-in)",
    );
    support::staging::suite(path.into()).await;
}
