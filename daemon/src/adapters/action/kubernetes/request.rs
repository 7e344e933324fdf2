//! The requests kubectl builds (`kubectl get`, `kubectl patch --type`, `kubectl get -l`):
//! paths, GETs, strategic and merge patches, lists with selectors, through kube-core's builder.

use serde_json::Value;

/// A request builder for a path (kube-core's, which kube's typed `Api` uses).
pub fn at(path: impl Into<String>) -> ::kube::core::Request {
    ::kube::core::Request::new(path.into())
}

/// A `GET` of one object.
pub fn get(collection: &str, name: &str) -> http::Request<Vec<u8>> {
    at(collection)
        .get(name, &Default::default())
        .expect("a valid object name (checked when rendered)")
}

/// The collection path of a namespaced resource.
pub fn path(group_version: &str, ns: &str, resource: &str) -> String {
    let base = if group_version == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{group_version}")
    };
    format!("{base}/namespaces/{ns}/{resource}")
}

/// A patch of an object, or of its `subresource`, with an optional field manager; the content
/// type follows the patch kind (strategic, merge or JSON), as kubectl's `--type`.
pub fn patch(
    collection: &str,
    name: &str,
    subresource: Option<&str>,
    manager: Option<&str>,
    body: &::kube::api::Patch<Value>,
) -> http::Request<Vec<u8>> {
    let pp = ::kube::api::PatchParams {
        field_manager: manager.map(str::to_string),
        ..Default::default()
    };
    let r = at(collection);
    match subresource {
        Some(sub) => r.patch_subresource(sub, name, &pp, body),
        None => r.patch(name, &pp, body),
    }
    .expect("a valid patch request (names are checked when rendered)")
}

/// A strategic merge patch of an object.
pub fn strategic(
    collection: &str,
    name: &str,
    manager: Option<&str>,
    body: &Value,
) -> http::Request<Vec<u8>> {
    patch(
        collection,
        name,
        None,
        manager,
        &::kube::api::Patch::Strategic(body.clone()),
    )
}

/// A merge patch of an object.
pub fn merge(
    collection: &str,
    name: &str,
    manager: Option<&str>,
    body: &Value,
) -> http::Request<Vec<u8>> {
    patch(
        collection,
        name,
        None,
        manager,
        &::kube::api::Patch::Merge(body.clone()),
    )
}

/// A list with a label and/or field selector, kubectl's way (no limit unless paging).
pub fn list(
    collection: &str,
    labels: Option<&str>,
    fields: Option<&str>,
    limit: Option<u32>,
    cont: Option<&str>,
) -> http::Request<Vec<u8>> {
    let mut lp = ::kube::api::ListParams::default();
    if let Some(l) = labels {
        lp = lp.labels(l);
    }
    if let Some(f) = fields {
        lp = lp.fields(f);
    }
    if let Some(n) = limit {
        lp = lp.limit(n);
    }
    if let Some(c) = cont {
        lp = lp.continue_token(c);
    }
    at(collection).list(&lp).expect("a valid list request")
}
