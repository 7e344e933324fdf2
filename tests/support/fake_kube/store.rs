//! The object store: generic JSON objects keyed by (group, version, resource, namespace, name), a
//! global monotonic resourceVersion, generation rules, a bounded watch-event history, and the
//! write operations shared by the HTTP handlers, the fixtures API and the simulated controllers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::ResDef;
use super::{Attributes, Recorded, Rollout};

pub type Key = (String, String, String, String, String);

pub fn key(def: &ResDef, ns: &str, name: &str) -> Key {
    (
        def.group.to_string(),
        def.version.to_string(),
        def.resource.to_string(),
        if def.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub def: &'static ResDef,
    pub ns: String,
    pub typ: &'static str,
    pub obj: Value,
    pub old: Option<Value>,
}

/// A `metav1.Status` failure.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Value,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
            details: Value::Null,
            retry_after: None,
        }
    }
    pub fn details(mut self, d: Value) -> Self {
        self.details = d;
        self
    }
    pub fn not_found(def: &ResDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.qualified()),
        )
        .details(json!({"name": name, "group": def.group, "kind": def.resource}))
    }
    pub fn conflict(def: &ResDef, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                def.qualified()
            ),
        )
        .details(json!({"name": name, "group": def.group, "kind": def.resource}))
    }
    pub fn already_exists(def: &ResDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.qualified()),
        )
        .details(json!({"name": name, "group": def.group, "kind": def.resource}))
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }
    /// 422 with `(field, message)` causes.
    pub fn invalid(def: &ResDef, name: &str, causes: Vec<(String, String)>) -> Self {
        let msgs: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let kind_q = if def.group.is_empty() {
            def.kind.to_string()
        } else {
            format!("{}.{}", def.kind, def.group)
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{kind_q} \"{name}\" is invalid: {}", msgs.join(", ")),
        )
        .details(json!({"name": name, "group": def.group, "kind": def.kind, "causes": causes}))
    }
    pub fn status_body(&self) -> Value {
        let mut details = if self.details.is_object() {
            self.details.clone()
        } else {
            json!({})
        };
        if let Some(r) = self.retry_after {
            details["retryAfterSeconds"] = json!(r);
        }
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if details.as_object().is_some_and(|m| !m.is_empty()) {
            body["details"] = details;
        }
        body
    }
}

/// A generic failure for an injected status code.
pub fn injected(status: u16, path: &str) -> ApiError {
    let (reason, msg) = match status {
        400 => ("BadRequest", "bad request".to_string()),
        401 => ("Unauthorized", "Unauthorized".to_string()),
        403 => ("Forbidden", format!("injected: forbidden {path}")),
        404 => ("NotFound", format!("injected: not found {path}")),
        409 => ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again".to_string()),
        410 => ("Expired", "too old resource version".to_string()),
        422 => ("Invalid", "injected: invalid".to_string()),
        429 => ("TooManyRequests", "injected: too many requests, please try again later".to_string()),
        500 => ("InternalError", "Internal error occurred: injected".to_string()),
        503 => ("ServiceUnavailable", "injected: the server is currently unable to handle the request".to_string()),
        504 => ("Timeout", "injected: the server was unable to return a response in the time allotted".to_string()),
        _ => ("Unknown", format!("injected status {status}")),
    };
    let mut e = ApiError::new(status, reason, msg);
    if status == 429 {
        e.retry_after = Some(1);
    }
    e
}

pub struct Fault {
    pub method: String,
    pub path_contains: String,
    pub status: u16,
    pub remaining: usize,
    /// Answer these bytes (content type, body) instead of a Status: a broken or absurd answer
    /// for the fuzzing of remedyd's readers (`FakeKube::answer_raw`).
    pub raw: Option<(String, Vec<u8>)>,
    /// Other headers of a raw answer (`Retry-After`).
    pub headers: Vec<(String, Vec<u8>)>,
}

pub struct Delay {
    pub method: String,
    pub path_contains: String,
    pub d: std::time::Duration,
}

pub fn method_matches(pattern: &str, method: &str) -> bool {
    pattern.is_empty() || pattern == "*" || pattern.eq_ignore_ascii_case(method)
}

pub type Authorizer = Arc<dyn Fn(&Attributes) -> bool + Send + Sync>;

pub struct State {
    pub objects: BTreeMap<Key, Value>,
    pub rv: u64,
    pub history: VecDeque<Arc<Event>>,
    pub history_limit: usize,
    /// Watches starting before this resourceVersion get 410 Expired.
    pub compacted: u64,
    pub requests: Vec<Recorded>,
    pub faults: Vec<Fault>,
    pub delays: Vec<Delay>,
    pub rollouts: HashMap<(String, String), Rollout>,
    /// A GitOps reconciler's desired state (`FakeKube::reconcile`): (ns, deployment) -> the
    /// values git holds at JSON pointers, put back on every controller step.
    pub reconciled: HashMap<(String, String), Vec<(String, Value)>>,
    /// (ns, deployment) -> (new RS name, steps taken for it)
    pub progress: HashMap<(String, String), (String, u32)>,
    pub logs: HashMap<(String, String), String>,
    /// Logs per (namespace, pod, container, previous instance).
    pub container_logs: HashMap<(String, String, String, bool), String>,
    /// `/livez` and `/readyz` answers set by the test: path -> (status, body).
    pub health: HashMap<String, (u16, String)>,
    pub authorizer: Option<Authorizer>,
    pub denied: Vec<Attributes>,
    pub counter: u64,
    pub rr: usize,
    pub minor: String,
    pub tx: tokio::sync::broadcast::Sender<Arc<Event>>,
}

pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

pub fn rfc3339_in(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        + time::Duration::seconds(secs);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Removes null-valued map entries (a typed decode drops them).
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Semantic normal form for comparisons: no nulls, no empty maps or lists.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let n = normalize(v);
                let empty = match &n {
                    Value::Null => true,
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        o => o.clone(),
    }
}

/// JSON with sorted keys (independent of serde_json's map ordering feature).
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        o => o.to_string(),
    }
}

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn safe_encode(mut n: u64, len: usize) -> String {
    let mut out = String::new();
    for _ in 0..len {
        out.push(SAFE[(n % SAFE.len() as u64) as usize] as char);
        n /= SAFE.len() as u64;
    }
    out
}

impl State {
    pub fn new(minor: String, tx: tokio::sync::broadcast::Sender<Arc<Event>>) -> Self {
        State {
            objects: BTreeMap::new(),
            rv: 1000,
            history: VecDeque::new(),
            history_limit: 2000,
            compacted: 0,
            requests: Vec::new(),
            faults: Vec::new(),
            delays: Vec::new(),
            rollouts: HashMap::new(),
            reconciled: HashMap::new(),
            progress: HashMap::new(),
            logs: HashMap::new(),
            container_logs: HashMap::new(),
            health: HashMap::new(),
            authorizer: None,
            denied: Vec::new(),
            counter: 0,
            rr: 0,
            minor,
            tx,
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn uid(&mut self) -> String {
        self.counter += 1;
        let h = fnv(&format!("uid-{}-{}", self.counter, self.rv));
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (h >> 32) as u32,
            (h >> 16) as u16,
            (h & 0xfff) as u16,
            self.counter & 0xfff,
            (h ^ self.counter.wrapping_mul(0x9e3779b97f4a7c15)) & 0xffff_ffff_ffff
        )
    }

    /// Five "random" characters for generated names.
    pub fn suffix(&mut self) -> String {
        self.counter += 1;
        safe_encode(fnv(&format!("suffix-{}", self.counter)), 5)
    }

    fn emit(
        &mut self,
        def: &'static ResDef,
        ns: &str,
        typ: &'static str,
        obj: Value,
        old: Option<Value>,
        rv: u64,
    ) {
        let ev = Arc::new(Event {
            rv,
            def,
            ns: ns.to_string(),
            typ,
            obj,
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    /// Forgets the event history: every watch from an earlier resourceVersion gets 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn get(&self, def: &ResDef, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(def, ns, name))
    }

    /// Objects of one resource, in key order; `ns` "" means all namespaces.
    pub fn list(&self, def: &ResDef, ns: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| {
                k.0 == def.group
                    && k.1 == def.version
                    && k.2 == def.resource
                    && (ns.is_empty() || k.3 == ns)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Stores a new object: sets uid, creationTimestamp, generation 1, resourceVersion.
    pub fn insert_new(
        &mut self,
        def: &'static ResDef,
        ns: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        strip_nulls(&mut obj);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let mut name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            if let Some(g) = obj["metadata"]["generateName"].as_str().map(String::from) {
                name = format!("{g}{}", self.suffix());
                obj["metadata"]["name"] = json!(name);
            } else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "name or generateName is required",
                ));
            }
        }
        let k = key(def, ns, &name);
        if self.objects.contains_key(&k) {
            return Err(ApiError::already_exists(def, &name));
        }
        validate(def, &obj)?;
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        let uid = self.uid();
        let rv = self.next_rv();
        let meta = obj["metadata"].as_object_mut().unwrap();
        if def.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        if obj.get("spec").is_some() || def.resource != "events" {
            obj["metadata"]["generation"] = json!(1);
        }
        self.objects.insert(k, obj.clone());
        self.emit(def, ns, "ADDED", obj.clone(), None, rv);
        Ok(obj)
    }

    /// Replaces an existing object with `new` (already merged by the caller). `status_only`: a
    /// status subresource write (only `.status` changes, no generation bump). Otherwise `.status`
    /// is kept from the stored object when `keep_status` (HTTP writes of the main resource).
    /// Unchanged objects are not rewritten (no new resourceVersion), as the apiserver does.
    pub fn replace(
        &mut self,
        def: &'static ResDef,
        ns: &str,
        name: &str,
        mut new: Value,
        status_only: bool,
        keep_status: bool,
    ) -> Result<Value, ApiError> {
        let k = key(def, ns, name);
        let Some(old) = self.objects.get(&k).cloned() else {
            return Err(ApiError::not_found(def, name));
        };
        strip_nulls(&mut new);
        if new["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                new["metadata"]["name"].as_str().unwrap_or_default()
            )));
        }
        let mut obj = if status_only {
            let mut o = old.clone();
            match new.get("status") {
                Some(s) => o["status"] = s.clone(),
                None => {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            o
        } else {
            let mut o = new;
            if !o.get("metadata").is_some_and(Value::is_object) {
                o["metadata"] = json!({});
            }
            if keep_status && def.has_status() {
                match old.get("status") {
                    Some(s) => o["status"] = s.clone(),
                    None => {
                        o.as_object_mut().unwrap().remove("status");
                    }
                }
            }
            // System-owned metadata comes from the stored object.
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old["metadata"].get(f) {
                    Some(v) => o["metadata"][f] = v.clone(),
                    None => {
                        o["metadata"].as_object_mut().unwrap().remove(f);
                    }
                }
            }
            o
        };
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        obj["metadata"]["name"] = json!(name);
        if def.namespaced {
            obj["metadata"]["namespace"] = json!(ns);
        }
        if !status_only {
            validate(def, &obj)?;
            let spec_changed = normalize(&old["spec"]) != normalize(&obj["spec"]);
            let ann_changed = def.annotations_bump_generation
                && normalize(&old["metadata"]["annotations"])
                    != normalize(&obj["metadata"]["annotations"]);
            if spec_changed || ann_changed {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                obj["metadata"]["generation"] = json!(g);
            }
        }
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if obj == old {
            return Ok(old);
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(k, obj.clone());
        self.emit(def, ns, "MODIFIED", obj.clone(), Some(old), rv);
        Ok(obj)
    }

    /// Removes an object now; returns it as last stored.
    pub fn remove_now(&mut self, def: &'static ResDef, ns: &str, name: &str) -> Option<Value> {
        let k = key(def, ns, name);
        let mut obj = self.objects.remove(&k)?;
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(def, ns, "DELETED", obj.clone(), None, rv);
        Some(obj)
    }

    /// DELETE semantics: pods with a grace period become terminating (deletionTimestamp,
    /// deletionGracePeriodSeconds) and stay until the kubelet step; everything else goes now.
    pub fn delete(
        &mut self,
        def: &'static ResDef,
        ns: &str,
        name: &str,
        opts: &Value,
        query_grace: Option<i64>,
    ) -> Result<Value, ApiError> {
        let Some(old) = self.get(def, ns, name).cloned() else {
            return Err(ApiError::not_found(def, name));
        };
        if let Some(pre) = opts.get("preconditions") {
            if let Some(uid) = pre.get("uid").and_then(Value::as_str)
                && old["metadata"]["uid"].as_str() != Some(uid)
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        old["metadata"]["uid"].as_str().unwrap_or_default()
                    ),
                )
                .details(json!({"name": name, "group": def.group, "kind": def.resource})));
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str)
                && old["metadata"]["resourceVersion"].as_str() != Some(rv)
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        old["metadata"]["resourceVersion"].as_str().unwrap_or_default()
                    ),
                )
                .details(json!({"name": name, "group": def.group, "kind": def.resource})));
            }
        }
        if def.resource != "pods" {
            return Ok(self.remove_now(def, ns, name).unwrap());
        }
        let phase = old["status"]["phase"].as_str().unwrap_or_default();
        let mut grace = opts
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or(query_grace)
            .unwrap_or_else(|| {
                old["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30)
            });
        if old["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
            || matches!(phase, "Succeeded" | "Failed")
        {
            grace = 0;
        }
        if grace <= 0 {
            return Ok(self.remove_now(def, ns, name).unwrap());
        }
        let current = old["metadata"]["deletionGracePeriodSeconds"].as_i64();
        if current.is_some_and(|c| c <= grace) {
            return Ok(old);
        }
        let mut obj = old.clone();
        obj["metadata"]["deletionTimestamp"] = json!(rfc3339_in(grace));
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key(def, ns, name), obj.clone());
        self.emit(def, ns, "MODIFIED", obj.clone(), Some(old), rv);
        Ok(obj)
    }
}

/// A Kubernetes quantity as a number (cores, bytes).
pub fn quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let suffixes: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suf, mult) in suffixes {
        if let Some(n) = s.strip_suffix(suf) {
            return n.parse::<f64>().ok().map(|n| n * mult);
        }
    }
    s.parse::<f64>().ok()
}

fn qty_value(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => quantity(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// The light validation of kube.md §3.3 #14.
pub fn validate(def: &ResDef, obj: &Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let mut causes: Vec<(String, String)> = Vec::new();
    if matches!(def.resource, "deployments" | "replicasets")
        && let Some(r) = obj["spec"]["replicas"].as_i64()
        && r < 0
    {
        causes.push((
            "spec.replicas".into(),
            format!("Invalid value: {r}: must be greater than or equal to 0"),
        ));
    }
    if def.resource == "horizontalpodautoscalers" {
        let min = obj["spec"]["minReplicas"].as_i64().unwrap_or(1);
        let max = obj["spec"]["maxReplicas"].as_i64().unwrap_or(0);
        if min < 1 {
            causes.push((
                "spec.minReplicas".into(),
                format!("Invalid value: {min}: must be greater than or equal to 1"),
            ));
        }
        if max < min {
            causes.push((
                "spec.maxReplicas".into(),
                format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
            ));
        }
    }
    let (pod_spec, prefix) = match def.resource {
        "pods" => (obj.get("spec"), "spec"),
        "deployments" | "replicasets" | "daemonsets" => {
            (obj.pointer("/spec/template/spec"), "spec.template.spec")
        }
        _ => (None, ""),
    };
    if let Some(ps) = pod_spec {
        for list in ["containers", "initContainers"] {
            for (i, c) in ps
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                for res in ["cpu", "memory"] {
                    let req = c.pointer(&format!("/resources/requests/{res}"));
                    let lim = c.pointer(&format!("/resources/limits/{res}"));
                    if let (Some(req), Some(lim)) = (req, lim)
                        && let (Some(r), Some(l)) = (qty_value(req), qty_value(lim))
                        && r > l * (1.0 + 1e-12)
                    {
                        let show = |v: &Value| {
                            v.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string())
                        };
                        causes.push((
                            format!("{prefix}.{list}[{i}].resources.requests"),
                            format!("Invalid value: \"{}\": must be less than or equal to {res} limit of {}", show(req), show(lim)),
                        ));
                    }
                }
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(def, name, causes))
    }
}
