//! The kubectl oracle: runs the image's kubectl (google-cloud-cli's dispatcher, which runs the
//! bundled `kubectl.1.NN` matching the server's minor version) against a `FakeKube`, with a
//! throwaway HOME (discovery cache) and kubeconfig, and normalises request logs for trace
//! comparisons (kube.md §3.2 (a)).
//!
//! A missing `/usr/bin/kubectl` fails the test (never skips): install the `kubectl` apt package
//! from the google-cloud-cli repository (the image ships 1:528.0.0-0).
//!
//! `crate::support::kubectl`, beside `crate::support::fake_kube` (tests/support/mod.rs).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Map, Value, json};

use super::fake_kube::{FakeKube, Recorded};

pub const KUBECTL: &str = "/usr/bin/kubectl";

fn require() {
    assert!(
        Path::new(KUBECTL).exists(),
        "{KUBECTL} is missing: these tests need the real kubectl as an oracle (apt package `kubectl` from the \
         google-cloud-cli repository, which bundles kubectl.1.27..1.33); they fail rather than skip"
    );
}

/// Runs `kubectl ARGS` against `fake` with `HOME=<dir>/home` and `KUBECONFIG=<dir>/kubeconfig`
/// and a minimal environment (TZ=UTC, so RFC 3339 times end in `Z`). Synchronous; the fake runs
/// on its own thread, so calling this from an async test does not stall it (prefer
/// `tokio::task::spawn_blocking` when the test's runtime must keep going, e.g. to step the fake).
pub fn kubectl(fake: &FakeKube, dir: &Path, args: &[&str]) -> Output {
    require();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("create kubectl HOME");
    let kubeconfig = fake.kubeconfig(dir);
    Command::new(KUBECTL)
        .args(args)
        .env_clear()
        .env("HOME", &home)
        .env("KUBECONFIG", &kubeconfig)
        .env("PATH", "/usr/lib/google-cloud-sdk/bin:/usr/bin:/bin")
        .env("TZ", "UTC")
        .env("LANG", "C.UTF-8")
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {KUBECTL}: {e}"))
}

/// `kubectl` on a blocking thread, for async tests whose runtime must keep going meanwhile
/// (e.g. to step the fake).
pub async fn kubectl_async(fake: &FakeKube, dir: &Path, args: &[&str]) -> Output {
    let fake = fake.clone();
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(&fake, &dir, &refs)
    })
    .await
    .expect("the kubectl thread")
}

/// Runs `kubectl ARGS` without a server (`--local`, `version --client`, ...).
pub fn kubectl_offline(dir: &Path, args: &[&str]) -> Output {
    require();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("create kubectl HOME");
    Command::new(KUBECTL)
        .args(args)
        .env_clear()
        .env("HOME", &home)
        .env("KUBECONFIG", dir.join("no-kubeconfig"))
        .env("PATH", "/usr/lib/google-cloud-sdk/bin:/usr/bin:/bin")
        .env("TZ", "UTC")
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {KUBECTL}: {e}"))
}

/// stdout + stderr as text, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Discovery requests: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/<g>`, `/apis/<g>/<v>`,
/// `/openapi/...`.
pub fn is_discovery(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    let segs: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    matches!(
        segs.as_slice(),
        ["version"] | ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _]
    ) || segs.first() == Some(&"openapi")
}

fn is_timestamp(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
            .unwrap()
    })
    .is_match(s)
}

/// Replaces every RFC 3339 timestamp string in `v` by `"<ts>"`.
pub fn mask_timestamps(v: &Value) -> Value {
    match v {
        Value::String(s) if is_timestamp(s) => json!("<ts>"),
        Value::Array(a) => Value::Array(a.iter().map(mask_timestamps).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), mask_timestamps(v)))
                .collect(),
        ),
        o => o.clone(),
    }
}

/// The comparable part of a request log: discovery dropped; Accept/User-Agent not kept;
/// timestamps in bodies masked; random query keys (`timeoutSeconds` of watches) dropped. Each
/// entry is `{method, path, query, content_type, body}`.
pub fn normalise(reqs: &[Recorded]) -> Vec<Value> {
    reqs.iter()
        .filter(|r| !is_discovery(&r.path))
        .map(|r| {
            let watch = r
                .query
                .get("watch")
                .is_some_and(|w| w == "true" || w == "1");
            let query: Map<String, Value> = r
                .query
                .iter()
                .filter(|(k, _)| !(watch && k.as_str() == "timeoutSeconds"))
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({
                "method": r.method,
                "path": r.path,
                "query": query,
                "content_type": r.content_type,
                "body": r.body.as_ref().map(mask_timestamps),
            })
        })
        .collect()
}
