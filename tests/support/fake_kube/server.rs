//! The HTTP side: routing, discovery, CRUD, patches, lists, watches, subresources, faults, RBAC
//! and the request log.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::resources::{self, ResDef};
use super::select;
use super::smp;
use super::store::{self, ApiError, Event, State, method_matches};
use super::{Attributes, Recorded, Shared};

enum Reply {
    Json(u16, Value),
    Text(String),
    /// A plain-text answer with a status (`/livez`, `/readyz`).
    Health(u16, String),
    Err(ApiError),
    Watch(Box<WatchSpec>),
    /// Bytes as the test set them (`FakeKube::answer_raw`): status, content type, body, and
    /// any other headers (`FakeKube::raw_header`).
    Raw(u16, String, Vec<u8>, Vec<(String, Vec<u8>)>),
}

impl From<Result<Value, ApiError>> for Reply {
    fn from(r: Result<Value, ApiError>) -> Self {
        match r {
            Ok(v) => Reply::Json(200, v),
            Err(e) => Reply::Err(e),
        }
    }
}

pub fn error_response(e: &ApiError) -> Response {
    let mut resp = (
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        e.status_body().to_string(),
    )
        .into_response();
    if let Some(r) = e.retry_after
        && r > 0
    {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&r.to_string()).unwrap(),
        );
    }
    resp
}

fn json_response(code: u16, v: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(pct_decode(k), pct_decode(v));
    }
    out
}

struct Target {
    def: &'static ResDef,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(path: &str) -> Result<Option<Target>, ApiError> {
    let segs: Vec<String> = path.trim_matches('/').split('/').map(pct_decode).collect();
    let (group, version, rest) = match segs.first().map(String::as_str) {
        Some("api") if segs.len() >= 3 => ("", segs[1].as_str(), &segs[2..]),
        Some("apis") if segs.len() >= 4 => (segs[1].as_str(), segs[2].as_str(), &segs[3..]),
        _ => return Ok(None),
    };
    let (ns, resource, name, sub) = if rest[0] == "namespaces" && rest.len() >= 3 {
        (
            rest[1].clone(),
            rest[2].as_str(),
            rest.get(3).cloned(),
            rest.get(4).cloned(),
        )
    } else {
        (
            String::new(),
            rest[0].as_str(),
            rest.get(1).cloned(),
            rest.get(2).cloned(),
        )
    };
    let Some(def) = resources::by_resource(group, version, resource) else {
        return Ok(None);
    };
    if let Some(s) = &sub
        && !def.subs.iter().any(|d| d.0 == s)
    {
        return Ok(None);
    }
    if def.namespaced && ns.is_empty() && name.is_some() {
        return Ok(None);
    }
    Ok(Some(Target { def, ns, name, sub }))
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .details(json!({}))
}

fn header_text(h: &axum::http::HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(String::from)
}

pub async fn handle(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    let at = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let content_type = header_text(req.headers(), header::CONTENT_TYPE);
    let user_agent = header_text(req.headers(), header::USER_AGENT);
    let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<Value>(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    };
    let mut rec = Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        user_agent,
        body: body.clone(),
        status: 0,
        at,
    };

    let delay = {
        let st = shared.state.lock().unwrap();
        st.delays
            .iter()
            .filter(|d| {
                method_matches(&d.method, method.as_str()) && path.contains(&d.path_contains)
            })
            .map(|d| d.d)
            .max()
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    let unavailable = *shared.outage.borrow() == super::Outage::Unavailable;
    let reply = {
        let mut st = shared.state.lock().unwrap();
        let fault = st.faults.iter_mut().find(|f| {
            f.remaining > 0
                && method_matches(&f.method, method.as_str())
                && path.contains(&f.path_contains)
        });
        match fault {
            _ if unavailable => Reply::Err(store::injected(503, &path)),
            Some(f) => {
                f.remaining -= 1;
                match &f.raw {
                    Some((ct, bytes)) => {
                        Reply::Raw(f.status, ct.clone(), bytes.clone(), f.headers.clone())
                    }
                    None => Reply::Err(store::injected(f.status, &path)),
                }
            }
            None => route(
                &shared,
                &mut st,
                &method,
                &path,
                &query,
                content_type.as_deref(),
                body.as_ref(),
            ),
        }
    };

    let resp = match reply {
        Reply::Json(code, v) => json_response(code, &v),
        Reply::Text(t) => ([(header::CONTENT_TYPE, "text/plain")], t).into_response(),
        Reply::Health(code, t) => (
            axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            t,
        )
            .into_response(),
        Reply::Err(e) => error_response(&e),
        Reply::Watch(spec) => watch_response(shared.clone(), *spec),
        Reply::Raw(code, ct, bytes, headers) => {
            let mut r = (
                axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK),
                [(header::CONTENT_TYPE, ct)],
                bytes,
            )
                .into_response();
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (
                    header::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_bytes(&v),
                ) {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
    };
    rec.status = resp.status().as_u16();
    shared.state.lock().unwrap().requests.push(rec);
    resp
}

fn verb_for(method: &Method, t: &Target, query: &BTreeMap<String, String>) -> &'static str {
    match *method {
        Method::GET if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        Method::GET if t.name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if t.name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

fn route(
    shared: &Shared,
    st: &mut State,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    ct: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let p = path.trim_end_matches('/');
    if *method == Method::GET && matches!(p, "/livez" | "/readyz") {
        return health(st, shared.opts.rbac, p);
    }
    if *method == Method::GET {
        let disc = match p {
            "/version" => Some(resources::version_doc(&st.minor)),
            "/api" => Some(resources::api_versions(&shared.addr)),
            "/apis" => Some(resources::api_group_list()),
            _ => {
                let segs: Vec<&str> = p.trim_start_matches('/').split('/').collect();
                match segs.as_slice() {
                    ["api", v] => resources::resource_list("", v),
                    ["apis", g] => resources::api_group(g),
                    ["apis", g, v] => resources::resource_list(g, v),
                    _ => None,
                }
            }
        };
        if let Some(d) = disc {
            return Reply::Json(200, d);
        }
    }
    let t = match parse_target(p) {
        Ok(Some(t)) => t,
        Ok(None) => return Reply::Err(not_found_path()),
        Err(e) => return Reply::Err(e),
    };
    if shared.opts.rbac {
        let attrs = Attributes {
            verb: verb_for(method, &t, query).to_string(),
            group: t.def.group.to_string(),
            resource: t.def.resource.to_string(),
            subresource: t.sub.clone().unwrap_or_default(),
            namespace: t.ns.clone(),
            // Like the real authorizer: a list or watch with a `metadata.name` field selector
            // is checked against resourceNames with that name.
            name: t.name.clone().unwrap_or_else(|| {
                query
                    .get("fieldSelector")
                    .and_then(|f| f.strip_prefix("metadata.name="))
                    .filter(|n| !n.contains(','))
                    .unwrap_or_default()
                    .to_string()
            }),
        };
        let allowed = st.authorizer.as_ref().is_none_or(|f| f(&attrs));
        if !allowed {
            let res = if attrs.subresource.is_empty() {
                attrs.resource.clone()
            } else {
                format!("{}/{}", attrs.resource, attrs.subresource)
            };
            let scope = if attrs.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{}\"", attrs.namespace)
            };
            let subject = if attrs.name.is_empty() {
                t.def.qualified()
            } else {
                format!("{} \"{}\"", t.def.qualified(), attrs.name)
            };
            let msg = format!(
                "{subject} is forbidden: User \"remedyd\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
                attrs.verb, attrs.group
            );
            st.denied.push(attrs.clone());
            return Reply::Err(ApiError::new(403, "Forbidden", msg).details(
                json!({"name": attrs.name, "group": attrs.group, "kind": attrs.resource}),
            ));
        }
    }
    let def = t.def;
    let ns = t.ns.as_str();
    match (method.clone(), t.name.as_deref(), t.sub.as_deref()) {
        (Method::GET, None, None) => {
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                match watch_spec(st, def, ns, query) {
                    Ok(w) => Reply::Watch(Box::new(w)),
                    Err(e) => Reply::Err(e),
                }
            } else {
                list(st, def, ns, query, shared.opts.page_size).into()
            }
        }
        (Method::GET, Some(name), None | Some("status")) => {
            st.get(def, ns, name).cloned().ok_or_else(|| ApiError::not_found(def, name)).into()
        }
        (Method::GET, Some(name), Some("scale")) => match st.get(def, ns, name) {
            Some(o) => Reply::Json(200, scale_of(o)),
            None => Reply::Err(ApiError::not_found(def, name)),
        },
        (Method::GET, Some(name), Some("log")) => match st.get(def, ns, name) {
            Some(pod) => pod_log(st, ns, name, pod, query),
            None => Reply::Err(ApiError::not_found(def, name)),
        },
        (Method::POST, None, None) => {
            let Some(obj) = body.filter(|b| b.is_object()).cloned() else {
                return Reply::Err(ApiError::bad_request("the body of the request is not a JSON object"));
            };
            if let Some(bns) = obj["metadata"]["namespace"].as_str()
                && def.namespaced
                && !bns.is_empty()
                && bns != ns
            {
                return Reply::Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            match st.insert_new(def, ns, obj) {
                Ok(v) => Reply::Json(201, v),
                Err(e) => Reply::Err(e),
            }
        }
        (Method::POST, Some(name), Some("eviction")) => match super::eviction::evict(st, ns, name, body) {
            Ok(v) => Reply::Json(201, v),
            Err(e) => Reply::Err(e),
        },
        (Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            let Some(obj) = body.filter(|b| b.is_object()).cloned() else {
                return Reply::Err(ApiError::bad_request("the body of the request is not a JSON object"));
            };
            let Some(cur) = st.get(def, ns, name).cloned() else {
                return Reply::Err(ApiError::not_found(def, name));
            };
            if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
                && !rv.is_empty()
                && cur["metadata"]["resourceVersion"].as_str() != Some(rv)
            {
                return Reply::Err(ApiError::conflict(def, name));
            }
            st.replace(def, ns, name, obj, sub.is_some(), true).into()
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            let Some(cur) = st.get(def, ns, name).cloned() else {
                return Reply::Err(ApiError::not_found(def, name));
            };
            let patched = match apply_patch(ct, &cur, body) {
                Ok(p) => p,
                Err(e) => return Reply::Err(e),
            };
            if patched["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"]
                && !patched["metadata"]["resourceVersion"].is_null()
            {
                return Reply::Err(ApiError::conflict(def, name));
            }
            st.replace(def, ns, name, patched, sub.is_some(), true).into()
        }
        (Method::PUT | Method::PATCH, Some(name), Some("scale")) => {
            let Some(cur) = st.get(def, ns, name).cloned() else {
                return Reply::Err(ApiError::not_found(def, name));
            };
            let scale = scale_of(&cur);
            let new = if *method == Method::PUT {
                match body.filter(|b| b.is_object()) {
                    Some(b) => b.clone(),
                    None => return Reply::Err(ApiError::bad_request("the body of the request is not a JSON object")),
                }
            } else {
                match apply_patch(ct, &scale, body) {
                    Ok(p) => p,
                    Err(e) => return Reply::Err(e),
                }
            };
            if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
                && !rv.is_empty()
                && cur["metadata"]["resourceVersion"].as_str() != Some(rv)
            {
                return Reply::Err(ApiError::conflict(def, name));
            }
            let replicas = new["spec"]["replicas"].as_i64().unwrap_or(0);
            if replicas < 0 {
                return Reply::Err(ApiError::invalid(
                    &SCALE_DEF,
                    name,
                    vec![("spec.replicas".into(), format!("Invalid value: {replicas}: must be greater than or equal to 0"))],
                ));
            }
            let mut obj = cur.clone();
            obj["spec"]["replicas"] = json!(replicas);
            match st.replace(def, ns, name, obj, false, true) {
                Ok(o) => Reply::Json(200, scale_of(&o)),
                Err(e) => Reply::Err(e),
            }
        }
        (Method::DELETE, Some(name), None) => {
            let opts = body.cloned().unwrap_or(json!({}));
            let qgrace = query.get("gracePeriodSeconds").and_then(|g| g.parse().ok());
            st.delete(def, ns, name, &opts, qgrace).into()
        }
        (Method::DELETE, None, None) => {
            let opts = body.cloned().unwrap_or(json!({}));
            let qgrace = query.get("gracePeriodSeconds").and_then(|g| g.parse().ok());
            let items = match filtered(st, def, ns, query) {
                Ok(i) => i,
                Err(e) => return Reply::Err(e),
            };
            let mut out = Vec::new();
            for it in items {
                let n = it["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let ons = it["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
                if let Ok(v) = st.delete(def, &ons, &n, &opts, qgrace) {
                    out.push(v);
                }
            }
            Reply::Json(200, list_doc(def, st.rv, out, None, None))
        }
        _ => Reply::Err(
            ApiError::new(405, "MethodNotAllowed", format!("the server does not allow this method on the requested resource ({method} {path})"))
                .details(json!({})),
        ),
    }
}

static SCALE_DEF: ResDef = ResDef {
    group: "autoscaling",
    version: "v1",
    resource: "scale",
    singular: "scale",
    kind: "Scale",
    namespaced: true,
    short: &[],
    subs: &[],
    annotations_bump_generation: false,
};

pub fn scale_of(o: &Value) -> Value {
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": o["metadata"]["name"],
            "namespace": o["metadata"]["namespace"],
            "uid": o["metadata"]["uid"],
            "resourceVersion": o["metadata"]["resourceVersion"],
            "creationTimestamp": o["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": o["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": select::selector_string(o["spec"].get("selector")),
        }
    })
}

/// Applies a PATCH body by Content-Type.
pub fn apply_patch(ct: Option<&str>, cur: &Value, body: Option<&Value>) -> Result<Value, ApiError> {
    let ct = ct
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some(body) = body else {
        return Err(ApiError::bad_request("the body of the request was empty"));
    };
    let mut out = cur.clone();
    match ct.as_str() {
        "application/merge-patch+json" => {
            if !body.is_object() {
                return Err(ApiError::bad_request(
                    "the body of the request was not a JSON object",
                ));
            }
            json_patch::merge(&mut out, body);
        }
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(body.clone()).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            json_patch::patch(&mut out, &ops.0).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        "application/strategic-merge-patch+json" => {
            out = smp::apply(cur, body).map_err(|e| ApiError::new(422, "Invalid", e))?;
        }
        _ => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"
                ),
            ));
        }
    }
    Ok(out)
}

struct Filter {
    def: &'static ResDef,
    ns: String,
    labels: Vec<select::Req>,
    fields: Vec<select::FieldReq>,
}

impl Filter {
    fn new(
        def: &'static ResDef,
        ns: &str,
        query: &BTreeMap<String, String>,
    ) -> Result<Filter, ApiError> {
        let labels = select::parse_labels(
            query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = select::parse_fields(
            query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .map_err(ApiError::bad_request)?;
        Ok(Filter {
            def,
            ns: ns.to_string(),
            labels,
            fields,
        })
    }
    fn matches(&self, o: &Value) -> bool {
        (self.ns.is_empty() || o["metadata"]["namespace"].as_str() == Some(self.ns.as_str()))
            && select::matches(&self.labels, o["metadata"].get("labels"))
            && select::fields_match(&self.fields, o)
    }
    fn same_resource(&self, e: &Event) -> bool {
        e.def.group == self.def.group && e.def.resource == self.def.resource
    }
    /// The watch event this client sees for `e`, if any.
    fn translate(&self, e: &Event) -> Option<(&'static str, Value)> {
        if !self.same_resource(e) {
            return None;
        }
        let now = self.matches(&e.obj);
        match e.typ {
            "MODIFIED" => {
                let before = e.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some(("MODIFIED", e.obj.clone())),
                    (false, true) => Some(("ADDED", e.obj.clone())),
                    (true, false) => Some(("DELETED", e.obj.clone())),
                    (false, false) => None,
                }
            }
            t => now.then(|| (t, e.obj.clone())),
        }
    }
}

fn filtered(
    st: &State,
    def: &'static ResDef,
    ns: &str,
    query: &BTreeMap<String, String>,
) -> Result<Vec<Value>, ApiError> {
    let f = Filter::new(def, ns, query)?;
    Ok(st
        .list(def, ns)
        .into_iter()
        .filter(|o| f.matches(o))
        .collect())
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn list_doc(
    def: &ResDef,
    rv: u64,
    items: Vec<Value>,
    cont: Option<String>,
    remaining: Option<usize>,
) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
        meta["remainingItemCount"] = json!(remaining.unwrap_or(0));
    }
    json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": meta, "items": items})
}

fn list(
    st: &State,
    def: &'static ResDef,
    ns: &str,
    query: &BTreeMap<String, String>,
    page_size: Option<usize>,
) -> Result<Value, ApiError> {
    let mut items = filtered(st, def, ns, query)?;
    let (list_rv, after) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let decoded = unhex(c).ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
            })?;
            let (rv, k) = decoded
                .split_once('|')
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            (rv, Some(k.to_string()))
        }
        None => (st.rv, None),
    };
    if let Some(after) = after {
        items.retain(|o| {
            let k = format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            );
            k > after
        });
    }
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let limit = match (limit, page_size) {
        (Some(l), Some(p)) => Some(l.min(p)),
        (l, _) => l,
    };
    let mut cont = None;
    let mut remaining = None;
    if let Some(l) = limit
        && items.len() > l
    {
        remaining = Some(items.len() - l);
        items.truncate(l);
        let last = items.last().unwrap();
        let k = format!(
            "{}/{}",
            last["metadata"]["namespace"].as_str().unwrap_or_default(),
            last["metadata"]["name"].as_str().unwrap_or_default()
        );
        cont = Some(hex(&format!("{list_rv}|{k}")));
    }
    Ok(list_doc(def, list_rv, items, cont, remaining))
}

pub struct WatchSpec {
    filter: Filter,
    initial: Vec<(&'static str, Value)>,
    error: Option<ApiError>,
    bookmarks: bool,
    initial_end_bookmark: bool,
    start_rv: u64,
    timeout: Duration,
    rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
}

fn watch_spec(
    st: &State,
    def: &'static ResDef,
    ns: &str,
    query: &BTreeMap<String, String>,
) -> Result<WatchSpec, ApiError> {
    let filter = Filter::new(def, ns, query)?;
    let rx = st.tx.subscribe();
    let rv = query.get("resourceVersion").filter(|r| !r.is_empty());
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let mut initial = Vec::new();
    let mut error = None;
    let from_rv: Option<u64> = match rv {
        None => None,
        Some(r) if r == "0" => None,
        Some(r) => Some(
            r.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?,
        ),
    };
    match from_rv {
        Some(_) if send_initial => {
            for o in st.list(def, ns).into_iter().filter(|o| filter.matches(o)) {
                initial.push(("ADDED", o));
            }
        }
        None => {
            for o in st.list(def, ns).into_iter().filter(|o| filter.matches(o)) {
                initial.push(("ADDED", o));
            }
        }
        Some(r) if r < st.compacted => {
            error = Some(
                ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {r} ({})", st.compacted),
                )
                .details(json!({})),
            );
        }
        Some(r) => {
            for e in st.history.iter().filter(|e| e.rv > r) {
                if let Some(t) = filter.translate(e) {
                    initial.push(t);
                }
            }
        }
    }
    Ok(WatchSpec {
        filter,
        initial,
        error,
        bookmarks,
        initial_end_bookmark: send_initial && bookmarks,
        start_rv: st.rv,
        timeout,
        rx,
    })
}

fn event_line(typ: &str, obj: &Value) -> String {
    format!("{}\n", json!({"type": typ, "object": obj}))
}

fn bookmark(def: &ResDef, rv: u64, initial_end: bool) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta})
}

fn watch_response(shared: Arc<Shared>, spec: WatchSpec) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(256);
    let mut drop_rx = shared.drop_watches.subscribe();
    tokio::spawn(async move {
        let WatchSpec {
            filter,
            initial,
            error,
            bookmarks,
            initial_end_bookmark,
            start_rv,
            timeout,
            mut rx,
        } = spec;
        if let Some(e) = error {
            let _ = tx.send(event_line("ERROR", &e.status_body())).await;
            return;
        }
        for (t, o) in initial {
            if tx.send(event_line(t, &o)).await.is_err() {
                return;
            }
        }
        let mut last_rv = start_rv;
        if bookmarks
            && tx
                .send(event_line(
                    "BOOKMARK",
                    &bookmark(filter.def, last_rv, initial_end_bookmark),
                ))
                .await
                .is_err()
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    if bookmarks {
                        let _ = tx.send(event_line("BOOKMARK", &bookmark(filter.def, last_rv, false))).await;
                    }
                    return;
                }
                _ = drop_rx.changed() => return,
                _ = tick.tick() => {
                    if bookmarks && tx.send(event_line("BOOKMARK", &bookmark(filter.def, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                ev = rx.recv() => match ev {
                    Ok(e) => {
                        last_rv = last_rv.max(e.rv);
                        if let Some((t, o)) = filter.translate(&e)
                            && tx.send(event_line(t, &o)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn _assert_send(s: AxState<Arc<Shared>>, r: Request) {
    fn is_send<T: Send>(_: T) {}
    is_send(handle(s, r));
}

/// `GET …/pods/NAME/log` as a real API server answers it: a pod with several containers needs
/// `container` (400 naming the choices otherwise), an unknown container is 400, and `previous=true`
/// needs a container that has restarted (400 otherwise). The text is the container's log set by
/// the test (`set_container_log`), else the pod's (`set_pod_log`).
fn pod_log(
    st: &State,
    ns: &str,
    name: &str,
    pod: &Value,
    query: &BTreeMap<String, String>,
) -> Reply {
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.contains(c) => c.clone(),
        Some(c) => {
            return Reply::Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if names.len() > 1 => {
            return Reply::Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
        None => names.first().cloned().unwrap_or_default(),
    };
    let previous = query.get("previous").is_some_and(|p| p == "true");
    if previous {
        let restarted = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["name"] == container.as_str() && c["restartCount"].as_i64().unwrap_or(0) > 0
            });
        if !restarted {
            return Reply::Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
    }
    let text = st
        .container_logs
        .get(&(ns.to_string(), name.to_string(), container, previous))
        .or_else(|| st.logs.get(&(ns.to_string(), name.to_string())))
        .cloned()
        .unwrap_or_default();
    Reply::Text(text)
}

/// `/livez` and `/readyz`: what the test set (`FakeKube::set_health`), else every check passing.
/// In RBAC mode the authorizer is asked about the non-resource URL: `resource` is the path
/// (`/readyz`), everything else empty. The fake does not run the real checks (etcd, informers
/// synced…): a test sets the answer a failing API server would give.
fn health(st: &mut State, rbac: bool, p: &str) -> Reply {
    if rbac {
        let attrs = Attributes {
            verb: "get".into(),
            group: String::new(),
            resource: p.to_string(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        };
        if !st.authorizer.as_ref().is_none_or(|f| f(&attrs)) {
            st.denied.push(attrs);
            return Reply::Err(ApiError::new(
                403,
                "Forbidden",
                format!("forbidden: User \"remedyd\" cannot get path \"{p}\""),
            ));
        }
    }
    match st.health.get(p) {
        Some((code, body)) => Reply::Health(*code, body.clone()),
        None => Reply::Health(
            200,
            format!("[+]ping ok\n[+]etcd ok\n{} check passed\n", &p[1..]),
        ),
    }
}
