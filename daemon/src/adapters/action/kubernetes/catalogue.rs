//! The Kubernetes action kinds by name (`KINDS`), `register`, which binds each to one cluster,
//! and `used_by`, whether a ruleset needs the cluster at all.

use std::sync::Arc;

use super::cluster::Cluster;
use super::delete_pods::DeletePods;
use super::evidence::Evidence;
use super::executor::{KubeAction, KubeExecutor};
use super::hpa::HpaPatch;
use super::infra::ClusterEvidence;
use super::network::NetworkEvidence;
use super::node::Drain;
use super::resources::SetResources;
use super::restart::Restart;
use super::rollout::Status;
use super::scale::Scale;
use super::undo::Undo;
use crate::adapters::action::{Executor, Executors};

/// Action kinds, by name.
pub const KINDS: &[&str] = &[
    "kube_evidence",
    "kube_network_evidence",
    "kube_cluster_evidence",
    "kube_rollout_restart",
    "kube_rollout_status",
    "kube_rollout_undo",
    "kube_scale",
    "kube_hpa_patch",
    "kube_set_resources",
    "kube_delete_pods",
    "kube_drain_node",
    "kube_dns_scale",
    "kube_dns_restart_pods",
];

/// Registers every Kubernetes action on one cluster.
pub fn register(e: &mut Executors, cluster: Arc<Cluster>) {
    let mk = |a: Box<dyn KubeAction>| -> Arc<dyn Executor> {
        Arc::new(KubeExecutor {
            cluster: cluster.clone(),
            action: a,
        })
    };
    e.register("kube_evidence", mk(Box::new(Evidence)));
    e.register("kube_network_evidence", mk(Box::new(NetworkEvidence)));
    e.register("kube_cluster_evidence", mk(Box::new(ClusterEvidence)));
    e.register("kube_rollout_restart", mk(Box::new(Restart)));
    e.register("kube_rollout_status", mk(Box::new(Status)));
    e.register("kube_rollout_undo", mk(Box::new(Undo)));
    e.register("kube_scale", mk(Box::new(Scale { dns: false })));
    e.register("kube_hpa_patch", mk(Box::new(HpaPatch)));
    e.register("kube_set_resources", mk(Box::new(SetResources)));
    e.register("kube_delete_pods", mk(Box::new(DeletePods { dns: false })));
    e.register("kube_drain_node", mk(Box::new(Drain)));
    e.register("kube_dns_scale", mk(Box::new(Scale { dns: true })));
    e.register(
        "kube_dns_restart_pods",
        mk(Box::new(DeletePods { dns: true })),
    );
}

/// True when a policy step uses a Kubernetes action.
pub fn used_by(rs: &crate::load::ruleset::Ruleset) -> bool {
    rs.policies.values().any(|p| {
        p.levels
            .values()
            .any(|l| l.steps.iter().any(|s| KINDS.contains(&s.action.as_str())))
    })
}
