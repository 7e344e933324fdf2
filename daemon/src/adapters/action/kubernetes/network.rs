//! `kube_network_evidence` (runbook procedure 5's reads): what `kubectl get
//! svc/X endpoints/X`, `kubectl get endpointslices -l kubernetes.io/service-name=X` and `kubectl
//! get networkpolicy,ingress` show about one Service: its ports and selector, its ready and
//! not-ready endpoints (a Service without ready endpoints is named: the usual cause of
//! "connection refused"), the namespace's NetworkPolicies and its Ingresses (those routing to
//! the Service marked). It only reads; network policies are never changed.

use serde::Deserialize;
use serde_json::{Value, json};

use super::bounded::{FIELD_CHARS, clip, inline};
use super::dns::SYSTEM_NAMESPACE;
use super::error::{Failure, bad};
use super::executor::KubeAction;
use super::objects::list_all;
use super::params::{check_template, namespace, params, render};
use super::request::{get, path};
use super::session::Session;
use crate::adapters::action::{ActionRequest, BoxFuture};

/// Policies, Ingresses and endpoint addresses kept in one record, each.
const MAX_ITEMS: usize = 50;
/// Page size of the namespace lists (kubectl's `--chunk-size`).
const PAGE: u32 = 500;

fn default_service() -> String {
    "{{target.name}}".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkParams {
    /// The Service (template); the target's name by default.
    #[serde(default = "default_service")]
    service: String,
    /// `kube-system` to read the cluster DNS's Service (`kube-dns`); otherwise the target's
    /// namespace, which `limits.namespaces` governs.
    #[serde(default)]
    namespace: Option<String>,
}

impl NetworkParams {
    fn check(&self) -> Result<(), String> {
        check_template("service", &self.service)?;
        match self.namespace.as_deref() {
            None | Some(SYSTEM_NAMESPACE) => Ok(()),
            Some(ns) => Err(format!(
                "namespace: only {SYSTEM_NAMESPACE} (the cluster DNS); {ns:?} comes from the target instead"
            )),
        }
    }
    fn resolve(&self, req: &ActionRequest) -> Result<(String, String), String> {
        self.check()?;
        let ns = match &self.namespace {
            Some(ns) => ns.clone(),
            None => namespace(req)?,
        };
        Ok((ns, render("service", &self.service, req)?))
    }
}

/// `kube_network_evidence`: a Service's endpoints, the namespace's NetworkPolicies and Ingresses.
pub struct NetworkEvidence;

fn collections(ns: &str) -> [(&'static str, String); 4] {
    [
        ("services", path("v1", ns, "services")),
        ("endpoints", path("v1", ns, "endpoints")),
        (
            "endpointslices",
            path("discovery.k8s.io/v1", ns, "endpointslices"),
        ),
        (
            "networkpolicies",
            path("networking.k8s.io/v1", ns, "networkpolicies"),
        ),
    ]
}

fn ingresses(ns: &str) -> String {
    path("networking.k8s.io/v1", ns, "ingresses")
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// (ready, not ready) addresses, from EndpointSlices when there are any, else from Endpoints.
fn addresses(slices: &[Value], endpoints: Option<&Value>) -> (Vec<String>, Vec<String>) {
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    if !slices.is_empty() {
        for e in slices
            .iter()
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        {
            let ip = inline(&strs(&e["addresses"]).join(","), FIELD_CHARS / 2);
            let who = match e["targetRef"]["name"].as_str() {
                Some(p) => format!("{ip} ({})", inline(p, 253)),
                None => ip,
            };
            // `ready` unset means ready (discovery.k8s.io/v1).
            if e["conditions"]["ready"] == false {
                not_ready.push(who);
            } else {
                ready.push(who);
            }
        }
    } else if let Some(ep) = endpoints {
        for sub in ep["subsets"].as_array().into_iter().flatten() {
            for (key, out) in [
                ("addresses", &mut ready),
                ("notReadyAddresses", &mut not_ready),
            ] {
                for a in sub[key].as_array().into_iter().flatten() {
                    let ip = inline(a["ip"].as_str().unwrap_or_default(), 63);
                    out.push(match a["targetRef"]["name"].as_str() {
                        Some(p) => format!("{ip} ({})", inline(p, 253)),
                        None => ip,
                    });
                }
            }
        }
    }
    (ready, not_ready)
}

fn policy_summary(p: &Value) -> Value {
    clip(&json!({
        "name": p["metadata"]["name"],
        "pod_selector": p["spec"]["podSelector"],
        "policy_types": p["spec"]["policyTypes"],
        "ingress_rules": p["spec"]["ingress"].as_array().map_or(0, Vec::len),
        "egress_rules": p["spec"]["egress"].as_array().map_or(0, Vec::len),
    }))
}

/// An Ingress's hosts and backends; `to_service` when one backend is the Service.
fn ingress_summary(i: &Value, svc: &str) -> Value {
    let mut backends = Vec::new();
    let mut hosts = Vec::new();
    let mut to_service = false;
    let mut backend = |label: String, b: &Value| {
        let s = &b["service"];
        if let Some(n) = s["name"].as_str() {
            let port = s["port"]["number"]
                .as_i64()
                .map(|p| p.to_string())
                .or_else(|| s["port"]["name"].as_str().map(str::to_string))
                .unwrap_or_default();
            to_service |= n == svc;
            backends.push(format!("{label}{n}:{port}"));
        }
    };
    backend("(default) ".into(), &i["spec"]["defaultBackend"]);
    for r in i["spec"]["rules"].as_array().into_iter().flatten() {
        let host = r["host"].as_str().unwrap_or("*");
        hosts.push(host.to_string());
        for p in r["http"]["paths"].as_array().into_iter().flatten() {
            let label = format!("{host}{} -> ", p["path"].as_str().unwrap_or("/"));
            backend(label, &p["backend"]);
        }
    }
    clip(&json!({
        "name": i["metadata"]["name"],
        "class": i["spec"]["ingressClassName"],
        "hosts": hosts,
        "backends": backends,
        "to_service": to_service,
    }))
}

impl KubeAction for NetworkEvidence {
    fn params(&self) -> Vec<&'static str> {
        crate::adapters::action::fields::names::<NetworkParams>().to_vec()
    }
    fn validate(&self, p: &Value) -> Result<(), String> {
        params::<NetworkParams>(p)?.check()
    }
    fn plan(&self, req: &ActionRequest) -> Result<Value, String> {
        let (ns, svc) = params::<NetworkParams>(&req.params)?.resolve(req)?;
        let [s, e, sl, np] = collections(&ns);
        Ok(json!({"reads": [
            format!("{}/{svc}", s.1), format!("{}/{svc}", e.1),
            format!("{}?labelSelector=kubernetes.io/service-name={svc}", sl.1), np.1, ingresses(&ns),
        ]}))
    }
    fn evidence(&self) -> bool {
        true
    }
    fn run<'a>(
        &'a self,
        s: &'a mut Session,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<String, Failure>> {
        Box::pin(async move {
            let p = params::<NetworkParams>(&req.params).map_err(bad)?;
            let (ns, svc) = p.resolve(req).map_err(bad)?;
            let [services, endpoints, slices, policies] = collections(&ns).map(|c| c.1);
            let mut said = Vec::new();
            // The Service: its absence is itself the finding (nothing to connect to).
            let service: Option<Value> = match s.read::<Value>(get(&services, &svc)).await {
                Ok(v) => Some(v),
                Err(e) if e.code == 404 => {
                    said.push(format!("service {ns}/{svc} does not exist"));
                    None
                }
                Err(e) => return Err(Failure::Api(format!("reading service {ns}/{svc}"), e)),
            };
            let ep = match s.read::<Value>(get(&endpoints, &svc)).await {
                Ok(v) => Some(v),
                Err(e) => {
                    if e.code != 404 {
                        s.notes.push(format!("endpoints {ns}/{svc}: {e}"));
                    }
                    None
                }
            };
            let sel = format!("kubernetes.io/service-name={svc}");
            let sl = match list_all(s, &slices, Some(&sel), None, Some(PAGE)).await {
                Ok(v) => v,
                Err(e) => {
                    s.notes.push(format!("endpointslices of {ns}/{svc}: {e}"));
                    Vec::new()
                }
            };
            let (mut ready, mut not_ready) = addresses(&sl, ep.as_ref());
            let (ready_n, not_ready_n) = (ready.len(), not_ready.len());
            ready.truncate(MAX_ITEMS);
            not_ready.truncate(MAX_ITEMS);
            let external = service
                .as_ref()
                .is_some_and(|v| v["spec"]["type"] == "ExternalName");
            let selectorless = service.as_ref().is_some_and(|v| {
                v["spec"]["selector"]
                    .as_object()
                    .is_none_or(|m| m.is_empty())
            });
            if service.is_some() && ready_n == 0 && !external {
                said.push(format!(
                    "no ready endpoints behind svc {svc} ({not_ready_n} not ready{})",
                    if selectorless {
                        "; the Service has no selector"
                    } else {
                        ""
                    }
                ));
            } else if service.is_some() {
                said.push(format!(
                    "svc {svc}: {ready_n} ready endpoint(s), {not_ready_n} not ready"
                ));
            }
            let pols = list_all(s, &policies, None, None, Some(PAGE))
                .await
                .map_err(Failure::api(format!("listing networkpolicies in {ns}")))?;
            let ings = list_all(s, &ingresses(&ns), None, None, Some(PAGE))
                .await
                .map_err(Failure::api(format!("listing ingresses in {ns}")))?;
            let pol: Vec<Value> = pols.iter().take(MAX_ITEMS).map(policy_summary).collect();
            let ing: Vec<Value> = ings
                .iter()
                .take(MAX_ITEMS)
                .map(|i| ingress_summary(i, &svc))
                .collect();
            let routed: Vec<&str> = ing
                .iter()
                .filter(|i| i["to_service"] == true)
                .filter_map(|i| i["name"].as_str())
                .collect();
            said.push(format!(
                "{} network polic(ies){}; {} ingress(es){}",
                pols.len(),
                if pol.is_empty() {
                    String::new()
                } else {
                    // The answer's names, on one line and short: the summary is one line.
                    let names: Vec<String> = pol
                        .iter()
                        .take(10)
                        .filter_map(|p| p["name"].as_str().map(|n| inline(n, 63)))
                        .collect();
                    format!(" ({})", names.join(", "))
                },
                ings.len(),
                if routed.is_empty() {
                    String::new()
                } else {
                    let routed: Vec<String> =
                        routed.iter().take(10).map(|n| inline(n, 63)).collect();
                    format!(", routing to {svc}: {}", routed.join(", "))
                }
            ));
            s.detail.insert(
                "evidence".into(),
                json!({
                    "service": service.as_ref().map(|v| json!({
                        "name": svc, "namespace": ns, "type": clip(&v["spec"]["type"]),
                        "cluster_ip": clip(&v["spec"]["clusterIP"]), "selector": clip(&v["spec"]["selector"]),
                        "ports": clip(&v["spec"]["ports"]),
                    })),
                    "endpoints": {
                        "ready": ready_n, "not_ready": not_ready_n,
                        "ready_addresses": ready, "not_ready_addresses": not_ready,
                        "source": if sl.is_empty() { "endpoints" } else { "endpointslices" },
                    },
                    "network_policies_total": pols.len(),
                    "network_policies": pol,
                    "ingresses_total": ings.len(),
                    "ingresses": ing,
                }),
            );
            Ok(format!("{ns}/{svc}: {}", said.join("; ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ingress_routing_to_the_service_is_marked() {
        let i = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"host": "a.example",
            "http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        let s = ingress_summary(&i, "web");
        assert_eq!(s["to_service"], true);
        assert_eq!(s["backends"][0], "a.example/ -> web:80");
        assert_eq!(ingress_summary(&i, "webx")["to_service"], false);
    }

    #[test]
    fn endpoints_count_ready_and_not_ready_addresses() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}],
            "notReadyAddresses": [{"ip": "10.0.0.2", "targetRef": {"name": "web-1"}}]}]});
        let (r, n) = addresses(&[], Some(&ep));
        assert_eq!(
            (r, n),
            (
                vec!["10.0.0.1".to_string()],
                vec!["10.0.0.2 (web-1)".to_string()]
            )
        );
        let sl =
            [json!({"endpoints": [{"addresses": ["10.0.0.3"], "conditions": {"ready": false}}]})];
        let (r, n) = addresses(&sl, Some(&ep));
        assert!(r.is_empty());
        assert_eq!(n, vec!["10.0.0.3".to_string()]);
    }
}
