//! The requests kubectl builds (`kubectl get`, `kubectl patch --type`, `kubectl get -l`):
//! paths, GETs, strategic and merge patches, lists with selectors, through kube-core's builder.

use serde_json::Value;

use super::error::ApiError;

/// A request kube-core built, or why it could not: a name from an API server's answer (a pod
/// to delete, a ReplicaSet) is network input, and a URI it breaks is an error of the step, not
/// a panic.
pub type Built = Result<http::Request<Vec<u8>>, ApiError>;

/// What [`super::session::Session`] sends: a request, or a build that may have failed.
pub trait IntoRequest {
    /// The request, or the 400 that says why it could not be built.
    fn into_request(self) -> Built;
}

impl IntoRequest for http::Request<Vec<u8>> {
    fn into_request(self) -> Built {
        Ok(self)
    }
}

impl IntoRequest for Built {
    fn into_request(self) -> Built {
        self
    }
}

/// The error of a request that could not be built (never retried: it is not transient).
fn unbuildable(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError {
        code: 400,
        reason: "BadRequest".into(),
        message: format!("cannot build the request for {what}: {e}"),
    }
}

/// A request builder for a path (kube-core's, which kube's typed `Api` uses).
pub fn at(path: impl Into<String>) -> ::kube::core::Request {
    ::kube::core::Request::new(path.into())
}

/// A `GET` of one object.
pub fn get(collection: &str, name: &str) -> Built {
    at(collection)
        .get(name, &Default::default())
        .map_err(|e| unbuildable(&format!("{collection}/{name}"), e))
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
) -> Built {
    let pp = ::kube::api::PatchParams {
        field_manager: manager.map(str::to_string),
        ..Default::default()
    };
    let r = at(collection);
    match subresource {
        Some(sub) => r.patch_subresource(sub, name, &pp, body),
        None => r.patch(name, &pp, body),
    }
    .map_err(|e| unbuildable(&format!("{collection}/{name}"), e))
}

/// A strategic merge patch of an object.
pub fn strategic(collection: &str, name: &str, manager: Option<&str>, body: &Value) -> Built {
    patch(
        collection,
        name,
        None,
        manager,
        &::kube::api::Patch::Strategic(body.clone()),
    )
}

/// A merge patch of an object.
pub fn merge(collection: &str, name: &str, manager: Option<&str>, body: &Value) -> Built {
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
) -> Built {
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
    at(collection)
        .list(&lp)
        .map_err(|e| unbuildable(collection, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_breaks_the_uri_is_a_non_transient_error_not_a_panic() {
        // A pod name from an API server's answer is network input.
        let e = get("/api/v1/namespaces/shop/pods", "bad\nname").unwrap_err();
        assert_eq!(e.code, 400, "{e}");
        assert!(
            !e.transient(),
            "a request that cannot be built is not retried"
        );
        assert!(e.message.contains("shop/pods/bad"), "{e}");
        assert!(get("/api/v1/namespaces/shop/pods", "web-1").is_ok());
    }
}
