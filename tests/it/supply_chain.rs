//! Supply chain: what `cargo deny check` holds the dependency graph to (deny.toml, run by
//! scripts/deny.sh in a full `scripts/test.sh`), checked again here offline and without cargo-deny,
//! so that a developer's `cargo nextest run` catches it too, and kept in step with deny.toml:
//!
//! - **sources**: every package comes from crates.io (no git or path dependency but remedyd);
//! - **licences**: every package's licence expression is satisfied by the allow-list below;
//! - **bans**: crates the project decided against are absent (deprecated, unmaintained, or
//!   OpenSSL/aws-lc, which need cmake or a system library this build avoids);
//! - **duplicates**: crates present in two versions are exactly the reviewed ones below;
//! - **advisories**: no package version is affected by a RustSec advisory, from the snapshot
//!   `supply-chain/advisories.tsv` (the front matter of every advisory of the RustSec
//!   advisory-db, CC0). With `REMEDYD_ADVISORY_DB=<advisory-db checkout>` the test reads that
//!   database too; adding `REMEDYD_BLESS=1` rewrites the snapshot from it.
//!
//! The graph is `cargo metadata --locked --filter-platform x86_64-unknown-linux-gnu`: what the
//! shipped binary and the tests build on. The lists below are deny.toml's (a test fails when they
//! differ), and the advisory subset cargo-deny reads without ../shared/advisory-db
//! (`supply-chain/advisory-db/`) must hold every advisory of the snapshot for a crate of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const PLATFORM: &str = "x86_64-unknown-linux-gnu";

/// Licences every dependency's terms may be chosen from: permissive, compatible with
/// remedyd's Apache-2.0, each needed by some crate (deny.toml gives each one's reason).
const ALLOWED_LICENCES: &[&str] = &[
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "MIT",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
];

/// Crates decided against, and why.
const BANNED: &[(&str, &str)] = &[
    (
        "backoff",
        "unmaintained (RUSTSEC-2025-0012); backon is used",
    ),
    ("serde_yaml", "deprecated; serde-saphyr is used"),
    ("serde_yml", "unsound and unmaintained (RUSTSEC-2025-0068)"),
    ("unsafe-libyaml", "unmaintained (RUSTSEC-2024-0449)"),
    (
        "openssl",
        "rustls with ring is the TLS stack; OpenSSL needs the system library",
    ),
    ("openssl-sys", "as openssl"),
    ("native-tls", "as openssl"),
    ("aws-lc-rs", "needs cmake; ring is the provider"),
    ("aws-lc-sys", "as aws-lc-rs"),
];

/// Crates in two versions, reviewed: each pair comes from dependencies not yet on one version.
const REVIEWED_DUPLICATES: &[(&str, &str)] = &[
    (
        "base64",
        "0.22 (k8s-openapi, postgres-protocol, tower-http) and 0.23 (kube, reqwest)",
    ),
    (
        "fallible-iterator",
        "0.2 (tokio-postgres) and 0.3 (rusqlite)",
    ),
    (
        "getrandom",
        "0.2 (ring), 0.3 (ahash) and 0.4 (rand, tempfile)",
    ),
    ("hashbrown", "0.16 (kube-runtime) and 0.17 (indexmap)"),
    (
        "syn",
        "2 (tracing's and promql-parser's macros) and 3 (serde, clap, thiserror, tokio)",
    ),
    ("tower-http", "0.6 (reqwest) and 0.7 (kube)"),
    ("unicode-width", "0.1 (promql-parser's lrpar) and 0.2"),
];

/// Advisories accepted, and why.
const IGNORED_ADVISORIES: &[(&str, &str)] = &[(
    "RUSTSEC-2025-0141",
    "bincode is unmaintained (informational), reached only through promql-parser's grammar \
     tables, which remedyd uses to validate PromQL; no fixed version exists",
)];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Package {
    name: String,
    version: String,
    source: Option<String>,
    license: Option<String>,
}

fn graph() -> Vec<Package> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", PLATFORM])
        .current_dir(repo())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let ids: BTreeSet<&str> = m["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    m["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| ids.contains(id)))
        .map(|p| Package {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            version: p["version"].as_str().unwrap_or_default().to_string(),
            source: p["source"].as_str().map(String::from),
            license: p["license"].as_str().map(String::from),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Licence expressions (SPDX, plus the old `A/B` for `A OR B`)

/// Whether the allow-list satisfies `expr`: OR needs one side, AND both; WITH binds tightest.
fn licence_ok(expr: &str) -> Result<bool, String> {
    let spaced = expr
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut pos = 0;
    let ok = or_expr(&tokens, &mut pos)?;
    if pos != tokens.len() {
        return Err(format!("{expr:?}: unexpected {:?}", tokens[pos]));
    }
    Ok(ok)
}

fn or_expr(t: &[&str], pos: &mut usize) -> Result<bool, String> {
    let mut ok = and_expr(t, pos)?;
    while t.get(*pos) == Some(&"OR") {
        *pos += 1;
        ok |= and_expr(t, pos)?;
    }
    Ok(ok)
}

fn and_expr(t: &[&str], pos: &mut usize) -> Result<bool, String> {
    let mut ok = atom(t, pos)?;
    while t.get(*pos) == Some(&"AND") {
        *pos += 1;
        ok &= atom(t, pos)?;
    }
    Ok(ok)
}

fn atom(t: &[&str], pos: &mut usize) -> Result<bool, String> {
    match t.get(*pos) {
        Some(&"(") => {
            *pos += 1;
            let ok = or_expr(t, pos)?;
            if t.get(*pos) != Some(&")") {
                return Err("unbalanced parenthesis".into());
            }
            *pos += 1;
            Ok(ok)
        }
        Some(id) if !["AND", "OR", "WITH", ")"].contains(id) => {
            *pos += 1;
            let mut name = id.to_string();
            if t.get(*pos) == Some(&"WITH") {
                let exception = t.get(*pos + 1).ok_or("WITH without an exception")?;
                name = format!("{name} WITH {exception}");
                *pos += 2;
            }
            Ok(ALLOWED_LICENCES.contains(&name.as_str()))
        }
        other => Err(format!("expected a licence, found {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Versions and advisories

/// (major, minor, patch, is-release, pre-release): orders as semver does for these purposes.
type Version = (u64, u64, u64, bool, String);

fn version(s: &str) -> Option<Version> {
    let s = s.split('+').next()?;
    let (core, pre) = s.split_once('-').unwrap_or((s, ""));
    let mut parts = core.split('.').map(|p| p.trim().parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch, pre.is_empty(), pre.to_string()))
}

/// Whether `v` meets a RustSec requirement such as `>= 1.2.3, < 1.3` or `^0.4.1`.
fn satisfies(v: &Version, req: &str) -> Result<bool, String> {
    for c in req.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (op, rest) = ["<=", ">=", "<", ">", "=", "^", "~"]
            .iter()
            .find_map(|op| c.strip_prefix(op).map(|r| (*op, r.trim())))
            .unwrap_or(("^", c));
        let r = version(rest).ok_or_else(|| format!("bad version in requirement {req:?}"))?;
        let given = rest.split('.').count();
        let next = |level: usize| -> Version {
            match level {
                0 => (r.0 + 1, 0, 0, false, String::new()),
                1 => (r.0, r.1 + 1, 0, false, String::new()),
                _ => (r.0, r.1, r.2 + 1, false, String::new()),
            }
        };
        let ok = match op {
            ">=" => *v >= r,
            ">" => *v > r,
            "<" => *v < r,
            "<=" => *v <= r,
            "=" => (v.0, v.1, v.2) == (r.0, r.1, r.2),
            "~" => *v >= r && *v < next(if given >= 2 { 1 } else { 0 }),
            _ => {
                // ^: the leftmost non-zero component given may not change.
                let level = if r.0 > 0 || given == 1 {
                    0
                } else if r.1 > 0 || given == 2 {
                    1
                } else {
                    2
                };
                *v >= r && *v < next(level)
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One advisory's front matter, as kept in the snapshot.
#[derive(Clone, Debug, PartialEq)]
struct Advisory {
    id: String,
    package: String,
    informational: String,
    withdrawn: String,
    patched: Vec<String>,
    unaffected: Vec<String>,
}

/// The `key = value` and `key = [ … ]` lines of an advisory's TOML front matter (the advisory
/// database keeps them one per line, arrays possibly over several lines).
fn front_matter(text: &str) -> Option<BTreeMap<String, Vec<String>>> {
    let toml = text.split("```toml").nth(1)?.split("```").next()?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut open: Option<(String, String)> = None;
    for line in toml.lines() {
        if let Some((key, mut acc)) = open.take() {
            acc.push_str(line);
            if line.contains(']') {
                out.insert(key, strings(&acc));
            } else {
                open = Some((key, acc));
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().to_string(), value.trim());
        if value.starts_with('[') && !value.contains(']') {
            open = Some((key, value.to_string()));
        } else {
            out.insert(key, strings(value));
        }
    }
    Some(out)
}

/// The double-quoted strings in `s`.
fn strings(s: &str) -> Vec<String> {
    s.split('"').skip(1).step_by(2).map(String::from).collect()
}

fn read_db(db: &Path) -> Vec<Advisory> {
    let mut out = Vec::new();
    let crates = db.join("crates");
    let dirs = std::fs::read_dir(&crates)
        .unwrap_or_else(|e| panic!("{}: {e} (an advisory-db checkout?)", crates.display()));
    for dir in dirs.flatten() {
        for f in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            let Some(m) = front_matter(&text) else {
                panic!("{}: no TOML front matter", f.path().display());
            };
            let one = |k: &str| {
                m.get(k)
                    .and_then(|v| v.first())
                    .cloned()
                    .unwrap_or_default()
            };
            out.push(Advisory {
                id: one("id"),
                package: one("package"),
                informational: one("informational"),
                withdrawn: one("withdrawn"),
                patched: m.get("patched").cloned().unwrap_or_default(),
                unaffected: m.get("unaffected").cloned().unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

const SNAPSHOT: &str = "supply-chain/advisories.tsv";

fn snapshot_text(advisories: &[Advisory]) -> String {
    let mut s = String::from(
        "# RustSec advisory-db front matter (CC0): id, package, informational, withdrawn, \
         patched (;), unaffected (;).\n# Regenerate: REMEDYD_ADVISORY_DB=<checkout> REMEDYD_BLESS=1 \
         cargo nextest run --test it supply_chain::\n",
    );
    for a in advisories {
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            a.id,
            a.package,
            a.informational,
            a.withdrawn,
            a.patched.join(";"),
            a.unaffected.join(";")
        ));
    }
    s
}

fn read_snapshot() -> Vec<Advisory> {
    let path = repo().join(SNAPSHOT);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let list = |s: &str| -> Vec<String> {
        s.split(';')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 6, "{SNAPSHOT}:{}: six tab-separated fields", i + 1);
            Advisory {
                id: f[0].into(),
                package: f[1].into(),
                informational: f[2].into(),
                withdrawn: f[3].into(),
                patched: list(f[4]),
                unaffected: list(f[5]),
            }
        })
        .collect()
}

/// The advisories that affect a package of the graph: (package@version, id, kind).
fn findings(graph: &[Package], advisories: &[Advisory]) -> Vec<String> {
    let mut out = Vec::new();
    for a in advisories.iter().filter(|a| a.withdrawn.is_empty()) {
        for p in graph.iter().filter(|p| p.name == a.package) {
            let Some(v) = version(&p.version) else {
                out.push(format!("{}@{}: unreadable version", p.name, p.version));
                continue;
            };
            let safe = a
                .patched
                .iter()
                .chain(&a.unaffected)
                .any(|r| satisfies(&v, r).unwrap_or_else(|e| panic!("{}: {e}", a.id)));
            if !safe && !IGNORED_ADVISORIES.iter().any(|(id, _)| *id == a.id) {
                let kind = if a.informational.is_empty() {
                    "vulnerability"
                } else {
                    &a.informational
                };
                out.push(format!("{}@{}: {} ({kind})", p.name, p.version, a.id));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_dependency_comes_from_crates_io_under_an_allowed_licence_and_none_is_banned() {
    let g = graph();
    assert!(g.len() > 100, "the graph has {} packages", g.len());
    let mut problems = Vec::new();
    for p in &g {
        match (&p.source, p.name.as_str()) {
            (None, "remedyd") => continue,
            (Some(s), _) if s == "registry+https://github.com/rust-lang/crates.io-index" => {}
            (s, _) => problems.push(format!("{}@{}: source {s:?}", p.name, p.version)),
        }
        match p.license.as_deref().map(licence_ok) {
            Some(Ok(true)) => {}
            Some(Ok(false)) => problems.push(format!(
                "{}@{}: licence {:?} is not satisfied by the allow-list",
                p.name,
                p.version,
                p.license.as_deref().unwrap_or_default()
            )),
            Some(Err(e)) => problems.push(format!("{}@{}: licence {e}", p.name, p.version)),
            None => problems.push(format!("{}@{}: no licence", p.name, p.version)),
        }
        if let Some((_, why)) = BANNED.iter().find(|(b, _)| *b == p.name) {
            problems.push(format!("{}@{} is banned: {why}", p.name, p.version));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn crates_in_two_versions_are_exactly_the_reviewed_ones() {
    let g = graph();
    let mut versions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in &g {
        versions.entry(&p.name).or_default().insert(&p.version);
    }
    let dup: BTreeMap<&str, &BTreeSet<&str>> = versions
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, v)| (*k, v))
        .collect();
    let found: BTreeSet<&str> = dup.keys().copied().collect();
    let reviewed: BTreeSet<&str> = REVIEWED_DUPLICATES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        found, reviewed,
        "duplicate versions changed: review them and update REVIEWED_DUPLICATES: {dup:?}"
    );
}

#[test]
fn no_dependency_is_affected_by_a_rustsec_advisory() {
    let g = graph();
    let live = std::env::var("REMEDYD_ADVISORY_DB")
        .ok()
        .map(|db| read_db(Path::new(&db)));
    if let Some(live) = &live
        && std::env::var_os("REMEDYD_BLESS").is_some()
    {
        std::fs::write(repo().join(SNAPSHOT), snapshot_text(live)).expect("writing the snapshot");
    }
    let snapshot = read_snapshot();
    assert!(
        snapshot.len() > 500,
        "{SNAPSHOT} holds {} advisories",
        snapshot.len()
    );
    let mut found = findings(&g, &snapshot);
    if let Some(live) = &live {
        found.extend(findings(&g, live));
        found.sort();
        found.dedup();
    }
    assert!(found.is_empty(), "advisories:\n{}", found.join("\n"));
}

/// deny.toml, parsed.
fn deny_toml() -> Value {
    use figment::Figment;
    use figment::providers::{Format, Toml};
    Figment::from(Toml::file(repo().join("deny.toml")))
        .extract()
        .unwrap_or_else(|e| panic!("deny.toml: {e}"))
}

/// The strings at `key` of each table of the array at `pointer` (or the strings themselves).
fn names_at(v: &Value, pointer: &str, key: Option<&str>) -> BTreeSet<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("deny.toml has no {pointer}"))
        .iter()
        .filter_map(|x| match key {
            Some(k) => x[k].as_str(),
            None => x.as_str(),
        })
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .collect()
}

#[test]
fn deny_toml_holds_the_same_lists_as_this_test() {
    let d = deny_toml();
    let set =
        |xs: &mut dyn Iterator<Item = &str>| -> BTreeSet<String> { xs.map(String::from).collect() };
    assert_eq!(
        names_at(&d, "/licenses/allow", None),
        set(&mut ALLOWED_LICENCES.iter().copied()),
        "deny.toml [licenses] allow"
    );
    assert_eq!(
        names_at(&d, "/bans/deny", Some("crate")),
        set(&mut BANNED.iter().map(|(n, _)| *n)),
        "deny.toml [bans] deny"
    );
    assert_eq!(
        names_at(&d, "/bans/skip", Some("crate")),
        set(&mut REVIEWED_DUPLICATES.iter().map(|(n, _)| *n)),
        "deny.toml [bans] skip"
    );
    assert_eq!(
        names_at(&d, "/advisories/ignore", Some("id")),
        set(&mut IGNORED_ADVISORIES.iter().map(|(n, _)| *n)),
        "deny.toml [advisories] ignore"
    );
    assert_eq!(d["bans"]["multiple-versions"], "deny");
    assert_eq!(d["sources"]["unknown-git"], "deny");
    assert_eq!(d["sources"]["unknown-registry"], "deny");
    assert_eq!(d["licenses"]["unused-allowed-license"], "deny");
}

#[test]
fn the_vendored_advisory_db_holds_every_advisory_of_a_crate_in_the_graph() {
    let g = graph();
    let names: BTreeSet<&str> = g.iter().map(|p| p.name.as_str()).collect();
    let vendored = repo().join("supply-chain/advisory-db/crates");
    let mut missing = Vec::new();
    for a in read_snapshot()
        .iter()
        .filter(|a| names.contains(a.package.as_str()))
    {
        let file = vendored.join(&a.package).join(format!("{}.md", a.id));
        if !file.is_file() {
            missing.push(format!("{} ({})", a.id, a.package));
        }
    }
    assert!(
        missing.is_empty(),
        "supply-chain/advisory-db lacks advisories of crates in the graph (run \
         scripts/refresh-advisories.sh ../shared/advisory-db): {missing:?}"
    );
    let date = std::fs::read_to_string(repo().join("supply-chain/advisory-db/SNAPSHOT"))
        .expect("supply-chain/advisory-db/SNAPSHOT");
    assert!(
        version(&date.trim().replace('-', ".")).is_some(),
        "SNAPSHOT: {date:?}"
    );
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // Licences.
    assert_eq!(licence_ok("MIT OR Apache-2.0"), Ok(true));
    assert_eq!(licence_ok("MIT/Apache-2.0"), Ok(true));
    assert_eq!(licence_ok("(MIT OR Apache-2.0) AND Unicode-3.0"), Ok(true));
    assert_eq!(licence_ok("Apache-2.0 WITH LLVM-exception"), Ok(true));
    assert_eq!(licence_ok("GPL-3.0-only"), Ok(false));
    assert_eq!(licence_ok("MIT AND GPL-3.0-only"), Ok(false));
    assert_eq!(licence_ok("GPL-3.0-only OR MIT"), Ok(true));
    assert!(licence_ok("(MIT").is_err());
    // Requirements.
    let v = |s: &str| version(s).expect("version");
    assert_eq!(satisfies(&v("0.14.10"), ">= 0.14.10"), Ok(true));
    assert_eq!(satisfies(&v("0.14.9"), ">= 0.14.10"), Ok(false));
    assert_eq!(satisfies(&v("0.4.3"), "^0.4.1"), Ok(true));
    assert_eq!(satisfies(&v("0.5.0"), "^0.4.1"), Ok(false));
    assert_eq!(satisfies(&v("1.9.0"), "^1.2"), Ok(true));
    assert_eq!(satisfies(&v("0.3.5"), ">= 0.3.2, < 0.4.0"), Ok(true));
    assert_eq!(satisfies(&v("0.4.0"), ">= 0.3.2, < 0.4.0"), Ok(false));
    assert_eq!(satisfies(&v("1.0.0-rc.1"), ">= 1.0.0"), Ok(false));
    // An advisory against a version in the graph is found; a patched one is not.
    let g = vec![Package {
        name: "hyper".into(),
        version: "0.14.9".into(),
        source: None,
        license: None,
    }];
    let a = Advisory {
        id: "RUSTSEC-2021-0078".into(),
        package: "hyper".into(),
        informational: String::new(),
        withdrawn: String::new(),
        patched: vec![">= 0.14.10".into()],
        unaffected: vec![],
    };
    assert_eq!(findings(&g, std::slice::from_ref(&a)).len(), 1);
    let fixed = Advisory {
        patched: vec![">= 0.14.9".into()],
        ..a.clone()
    };
    assert!(findings(&g, &[fixed]).is_empty());
    let withdrawn = Advisory {
        withdrawn: "2021-08-01".into(),
        ..a.clone()
    };
    assert!(findings(&g, &[withdrawn]).is_empty());
    // The front matter parser reads multi-line arrays.
    let text = "```toml\n[advisory]\nid = \"RUSTSEC-X\"\npackage = \"p\"\n[versions]\npatched = [\n  \">= 1.2\",\n  \"^0.9.3\",\n]\n```\n# title";
    let m = front_matter(text).expect("front matter");
    assert_eq!(
        m["patched"],
        vec![">= 1.2".to_string(), "^0.9.3".to_string()]
    );
    assert_eq!(m["id"], vec!["RUSTSEC-X".to_string()]);
    // The snapshot round-trips.
    assert!(snapshot_text(&[a]).contains("RUSTSEC-2021-0078\thyper\t\t\t>= 0.14.10\t\n"));
}
