//! An evaluator of shipped RBAC manifests (deploy/kubernetes/base/rbac.yaml): which requests do the
//! Roles and ClusterRoles bound to one service account allow? Kubernetes' own RBAC authorizer
//! semantics (`plugin/pkg/auth/authorizer/rbac`), for resource requests only:
//!
//! - A ClusterRoleBinding grants its ClusterRole's rules everywhere: cluster-scoped resources and
//!   every namespace.
//! - A RoleBinding grants its Role's or ClusterRole's rules in the binding's namespace only.
//! - A rule matches when its verbs, apiGroups and resources (`pods`, or `pods/eviction` for a
//!   subresource; `*` and `*/eviction` as wildcards) match, and, when it has resourceNames, the
//!   request carries one of those names. A request without a name (list, watch, create,
//!   deletecollection) never matches a rule with resourceNames.
//! - Bindings whose role does not exist grant nothing (the API server ignores them too).
//! - Subjects: the ServiceAccount itself, the `User` `system:serviceaccount:NS:NAME`, and the
//!   groups `system:serviceaccounts`, `system:serviceaccounts:NS` and `system:authenticated`.
//!   The default roles a cluster binds to those groups are not in the manifests, so they are not
//!   granted here.
//!
//! Non-resource URLs (`/readyz`) are evaluated by `allows_url`: granted only by a ClusterRole
//! bound with a ClusterRoleBinding, exact or a `*` suffix. Aggregated ClusterRoles
//! (aggregationRule) are not evaluated.
//!
//! Used by tests/it/manifests.rs and by the fake API server's RBAC mode.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};

/// Where a granted rule applies.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// Everywhere (ClusterRoleBinding).
    Cluster,
    /// In one namespace (RoleBinding).
    Namespace(String),
}

/// One rule granted to the service account, with where it applies and where it comes from.
#[derive(Clone, Debug)]
struct Grant {
    scope: Scope,
    rule: PolicyRule,
    /// `RoleBinding ns/name -> ClusterRole name`, for messages.
    origin: String,
}

/// The rules the manifests grant to one service account.
#[derive(Clone, Debug)]
pub struct Rbac {
    sa_namespace: String,
    sa_name: String,
    grants: Vec<Grant>,
}

/// The Role/ClusterRole/binding documents of a directory.
#[derive(Default)]
struct Objects {
    roles: Vec<Role>,
    cluster_roles: Vec<ClusterRole>,
    role_bindings: Vec<RoleBinding>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("rbac: reading {}: {e}", dir.display()))
        .map(|e| e.expect("rbac: directory entry").path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    files
}

fn typed<T: serde::de::DeserializeOwned>(file: &Path, doc: serde_json::Value) -> T {
    serde_json::from_value(doc).unwrap_or_else(|e| panic!("rbac: {}: {e}", file.display()))
}

fn load_objects(dir: &Path) -> Objects {
    let mut objects = Objects::default();
    for file in yaml_files(dir) {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("rbac: reading {}: {e}", file.display()));
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("rbac: {}: {e}", file.display()));
        for doc in docs {
            let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            let api_version = doc.get("apiVersion").and_then(|k| k.as_str()).unwrap_or("");
            if api_version != "rbac.authorization.k8s.io/v1" {
                continue;
            }
            match kind {
                "Role" => objects.roles.push(typed(&file, doc)),
                "ClusterRole" => objects.cluster_roles.push(typed(&file, doc)),
                "RoleBinding" => objects.role_bindings.push(typed(&file, doc)),
                "ClusterRoleBinding" => objects.cluster_role_bindings.push(typed(&file, doc)),
                _ => {}
            }
        }
    }
    objects
}

fn names_sa(
    subject: &k8s_openapi::api::rbac::v1::Subject,
    binding_namespace: &str,
    sa_namespace: &str,
    sa_name: &str,
) -> bool {
    match subject.kind.as_str() {
        "ServiceAccount" => {
            // The authorizer defaults an empty subject namespace to the binding's.
            let ns = subject
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            subject.name == sa_name && ns == sa_namespace
        }
        "User" => subject.name == format!("system:serviceaccount:{sa_namespace}:{sa_name}"),
        "Group" => {
            subject.name == "system:serviceaccounts"
                || subject.name == format!("system:serviceaccounts:{sa_namespace}")
                || subject.name == "system:authenticated"
        }
        _ => false,
    }
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == want)
}

impl Rbac {
    /// Loads every Role/ClusterRole/RoleBinding/ClusterRoleBinding in the YAML files of `dir`
    /// (multi-document) and keeps the rules granted to service account `namespace/name`.
    pub fn load(dir: &Path, sa_namespace: &str, sa_name: &str) -> Rbac {
        let objects = load_objects(dir);
        let cluster_role = |name: &str| {
            objects
                .cluster_roles
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(name))
        };
        let mut grants = Vec::new();
        for b in &objects.cluster_role_bindings {
            let bname = b.metadata.name.clone().unwrap_or_default();
            let bound = b
                .subjects
                .iter()
                .flatten()
                .any(|s| names_sa(s, "", sa_namespace, sa_name));
            if !bound || b.role_ref.kind != "ClusterRole" {
                continue;
            }
            if let Some(role) = cluster_role(&b.role_ref.name) {
                for rule in role.rules.iter().flatten() {
                    grants.push(Grant {
                        scope: Scope::Cluster,
                        rule: rule.clone(),
                        origin: format!(
                            "ClusterRoleBinding {bname} -> ClusterRole {}",
                            role.metadata.name.as_deref().unwrap_or("")
                        ),
                    });
                }
            }
        }
        for b in &objects.role_bindings {
            let ns = b.metadata.namespace.clone().unwrap_or_default();
            let bname = b.metadata.name.clone().unwrap_or_default();
            let bound = b
                .subjects
                .iter()
                .flatten()
                .any(|s| names_sa(s, &ns, sa_namespace, sa_name));
            if !bound {
                continue;
            }
            let rules: Vec<PolicyRule> = match b.role_ref.kind.as_str() {
                "ClusterRole" => cluster_role(&b.role_ref.name)
                    .and_then(|r| r.rules.clone())
                    .unwrap_or_default(),
                "Role" => objects
                    .roles
                    .iter()
                    .find(|r| {
                        r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())
                            && r.metadata.namespace.as_deref().unwrap_or("") == ns
                    })
                    .and_then(|r| r.rules.clone())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            for rule in rules {
                grants.push(Grant {
                    scope: Scope::Namespace(ns.clone()),
                    rule,
                    origin: format!(
                        "RoleBinding {ns}/{bname} -> {} {}",
                        b.role_ref.kind, b.role_ref.name
                    ),
                });
            }
        }
        Rbac {
            sa_namespace: sa_namespace.to_string(),
            sa_name: sa_name.to_string(),
            grants,
        }
    }

    /// Kubernetes RBAC semantics: verb, apiGroup, resource ("pods") and subresource ("eviction",
    /// "" if none; rule resource "pods/eviction"), namespace ("" cluster-scoped), name ("" for
    /// collection requests / create). ClusterRoleBinding grants everywhere; RoleBinding to a
    /// ClusterRole grants in the binding's namespace; resourceNames restrict only requests that
    /// carry a name (a list/create with resourceNames rule is denied).
    pub fn allows(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> bool {
        self.granting(verb, group, resource, subresource, namespace, name)
            .is_some()
    }

    /// A non-resource URL (`/readyz`): a ClusterRoleBinding's rule whose verbs and
    /// nonResourceURLs (exact, or a prefix ending in `*`) match. A RoleBinding never grants one.
    pub fn allows_url(&self, verb: &str, url: &str) -> bool {
        self.grants.iter().any(|g| {
            g.scope == Scope::Cluster
                && (has(&g.rule.verbs, verb) || has(&g.rule.verbs, "*"))
                && g.rule
                    .non_resource_urls
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|u| u == url || u.strip_suffix('*').is_some_and(|p| url.starts_with(p)))
        })
    }

    /// Where the grant allowing the request comes from (`RoleBinding ns/name -> ClusterRole x`),
    /// or `None` when it is denied.
    pub fn granting(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<&str> {
        self.grants
            .iter()
            .find(|g| {
                let in_scope = match &g.scope {
                    Scope::Cluster => true,
                    Scope::Namespace(ns) => !namespace.is_empty() && ns == namespace,
                };
                in_scope && rule_allows(&g.rule, verb, group, resource, subresource, name)
            })
            .map(|g| g.origin.as_str())
    }

    /// A readable form of a request, for assertion messages:
    /// `patch apps/deployments/scale "coredns" in kube-system`.
    pub fn describe(
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> String {
        let mut s = format!("{verb} ");
        if !group.is_empty() {
            s.push_str(group);
            s.push('/');
        }
        s.push_str(resource);
        if !subresource.is_empty() {
            s.push('/');
            s.push_str(subresource);
        }
        if !name.is_empty() {
            s.push_str(&format!(" {name:?}"));
        }
        if namespace.is_empty() {
            s.push_str(" (cluster-wide)");
        } else {
            s.push_str(&format!(" in {namespace}"));
        }
        s
    }

    /// Every granted rule, one per line, for messages.
    pub fn dump(&self) -> String {
        let mut out = format!(
            "rules granted to system:serviceaccount:{}:{}:\n",
            self.sa_namespace, self.sa_name
        );
        for g in &self.grants {
            let r = &g.rule;
            out.push_str(&format!(
                "  {}: verbs {:?} apiGroups {:?} resources {:?} resourceNames {:?}\n",
                g.origin,
                r.verbs,
                r.api_groups.as_deref().unwrap_or_default(),
                r.resources.as_deref().unwrap_or_default(),
                r.resource_names.as_deref().unwrap_or_default()
            ));
        }
        out
    }
}

/// `RuleAllows` of the RBAC authorizer (`pkg/apis/rbac/v1/evaluation_helpers.go`).
fn rule_allows(
    rule: &PolicyRule,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    name: &str,
) -> bool {
    let verbs_ok = has(&rule.verbs, verb) || has(&rule.verbs, "*");
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    let groups_ok = has(groups, group) || has(groups, "*");
    let resources = rule.resources.as_deref().unwrap_or_default();
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    let resources_ok = resources.iter().any(|r| {
        r == "*" || *r == combined || (!subresource.is_empty() && *r == format!("*/{subresource}"))
    });
    let names = rule.resource_names.as_deref().unwrap_or_default();
    let names_ok = names.is_empty() || (!name.is_empty() && has(names, name));
    verbs_ok && groups_ok && resources_ok && names_ok
}
