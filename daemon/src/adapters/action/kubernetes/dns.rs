//! DNS repair (runbook procedure 5 for CoreDNS): what `kube_dns_scale` (`kubectl -n kube-system
//! scale deployment/coredns`, the `dns` variant of `scale`) and `kube_dns_restart_pods`
//! (`kubectl -n kube-system delete pod -l k8s-app=kube-dns`, the `dns` variant of
//! `delete_pods`) act on: CoreDNS only, the one thing in kube-system remedyd touches.

/// The only namespace workload actions never touch (the DNS actions own it).
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// The CoreDNS Deployment `kube_dns_scale` scales (in kube-system).
pub(super) const CORE_DNS: &str = "coredns";
/// CoreDNS's pods, as kube-system labels them, for `kube_dns_restart_pods`.
pub(super) const DNS_PODS: &str = "k8s-app=kube-dns";
