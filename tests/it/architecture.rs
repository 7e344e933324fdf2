//! The architecture of `daemon/src`, checked from its source text (issue 12):
//!
//! - **Layers flow one way.** `domain` (1) < `load` (2) < `adapters` (3) < `engine` (4) < `app` (5):
//!   a file may name (`crate::…` or `super::…`) only files of its own layer or a layer before it.
//! - **No import cycle between files.** The graph's nodes are the source files; an edge is a
//!   `crate::…` or `super::…` path in code (comments are not code) that reaches another file. A
//!   parent naming its own children (`mod x; pub use x::Y;`) is containment, not an edge; a child
//!   naming its parent is an edge like any other, so the parent must not depend back on it by a path.
//! - **The domain is pure.** No file under `domain/` uses tokio, kube, k8s-openapi, reqwest,
//!   rusqlite, tokio-postgres, axum, reads the system clock (`SystemTime::now`, `Instant::now`),
//!   the environment, files or the network: time comes in as `now`, secrets through a trait.
//! - **Files hold one idea.** No file of `daemon/src` is over 600 lines.
//!
//! The checks are plain functions over (path, text) pairs, so that the tests below can show each
//! one failing on a small made-up tree before it is run on the real one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, in order; a file's layer is its first directory under `daemon/src`.
const LAYERS: [&str; 5] = ["domain", "load", "adapters", "engine", "app"];

/// What the pure domain must not use: crates of the runtime and the system clock.
const IMPURE: [&str; 13] = [
    "tokio::",
    "tokio_util::",
    "kube::",
    "k8s_openapi::",
    "reqwest::",
    "rusqlite::",
    "tokio_postgres::",
    "axum::",
    "SystemTime::now",
    "Instant::now",
    "std::env::",
    "std::fs::",
    "std::net::",
];

/// A source file holds one idea; past this many lines it holds several (issue 12).
const MAX_LINES: usize = 600;

/// A source tree: module path (`["adapters", "store", "postgres"]`) to the file's text without
/// comments. `mod.rs` and `lib.rs` are their directory's module.
struct Tree {
    files: BTreeMap<Vec<String>, String>,
}

impl Tree {
    fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let files = pairs
            .iter()
            .map(|(p, t)| (module_of(Path::new(p)), strip_comments(t)))
            .collect();
        Tree { files }
    }

    fn read(root: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            for entry in entries {
                let path = entry
                    .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                    .path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                    if rel == Path::new("main.rs") {
                        continue; // the binary: it uses the library from outside
                    }
                    let text = std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                    files.insert(module_of(&rel), strip_comments(&text));
                }
            }
        }
        Tree { files }
    }

    /// The file a path from module `from` reaches: the longest prefix that is a file.
    fn resolve(&self, mut segments: Vec<String>) -> Option<Vec<String>> {
        while !segments.is_empty() {
            if self.files.contains_key(&segments) {
                return Some(segments);
            }
            segments.pop();
        }
        None
    }

    /// Edges between files: (from, to), each with the path text that made it.
    fn edges(&self) -> BTreeMap<(Vec<String>, Vec<String>), String> {
        let mut out = BTreeMap::new();
        for (module, text) in &self.files {
            for path in paths(text) {
                let target = if let Some(rest) = path.strip_prefix("crate::") {
                    let mut segs: Vec<String> = Vec::new();
                    segs.extend(rest.split("::").map(str::to_string));
                    self.resolve(segs)
                } else {
                    let mut base = module.clone();
                    let mut rest = path.as_str();
                    while let Some(r) = rest.strip_prefix("super::") {
                        base.pop();
                        rest = r;
                    }
                    base.extend(rest.split("::").map(str::to_string));
                    self.resolve(base)
                };
                let Some(target) = target else { continue };
                // Containment: a module naming itself or its own descendants.
                if target.starts_with(module) {
                    continue;
                }
                out.entry((module.clone(), target)).or_insert(path);
            }
        }
        out
    }
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = segs.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            segs.push(stem.to_string());
        }
    }
    segs
}

/// The text without `//` comments (line, doc) and `/* */` blocks; string contents stay (a path in
/// a string is rare and harmless here), but `//` inside a string literal is kept as code.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('\'', Some('"')) => {
                // The char literal '"' does not open a string.
                out.push(c);
                out.push('"');
                chars.next();
            }
            ('"', _) => {
                in_str = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every `crate::a::b` and `super::a` path in code, expanding one level of `{…}` groups.
fn paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let starts = (rest.starts_with(b"crate::") || rest.starts_with(b"super::"))
            && (i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':');
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len() && (is_ident(bytes[j]) || bytes[j] == b':') {
            j += 1;
        }
        let head = text[i..j].trim_end_matches(':').to_string();
        if text[j..].starts_with('{') {
            let close = text[j..].find('}').map_or(bytes.len(), |k| j + k);
            for item in text[j + 1..close].split(',') {
                let item = item.split_whitespace().next().unwrap_or("");
                let item = item.trim_end_matches(':');
                if !item.is_empty() && item != "self" {
                    out.push(format!("{head}::{item}"));
                } else if item == "self" {
                    out.push(head.clone());
                }
            }
            i = close;
        } else {
            out.push(head);
            i = j;
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn layer(module: &[String]) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module.first().is_some_and(|m| m == l))
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("::")
    }
}

/// Edges that run from a layer to a later one.
fn layer_violations(tree: &Tree) -> Vec<String> {
    tree.edges()
        .into_iter()
        .filter_map(|((from, to), path)| match (layer(&from), layer(&to)) {
            (Some(a), Some(b)) if b > a => Some(format!(
                "{} (layer {}) names {} (layer {}) through `{path}`",
                name(&from),
                LAYERS[a],
                name(&to),
                LAYERS[b]
            )),
            _ => None,
        })
        .collect()
}

/// The cycles: strongly connected components of more than one file, each with its edges.
fn cycles(tree: &Tree) -> Vec<String> {
    let edges = tree.edges();
    let mut next: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    // Tarjan's algorithm, iteratively over a small graph.
    struct State<'a> {
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        out: Vec<Vec<&'a Vec<String>>>,
    }
    fn visit<'a>(
        v: &'a Vec<String>,
        next: &BTreeMap<&'a Vec<String>, Vec<&'a Vec<String>>>,
        s: &mut State<'a>,
    ) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on.insert(v);
        for &w in next.get(v).map(Vec::as_slice).unwrap_or(&[]) {
            if !s.index.contains_key(w) {
                visit(w, next, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in tree.files.keys() {
        if !s.index.contains_key(v) {
            visit(v, &next, &mut s);
        }
    }
    s.out
        .iter()
        .map(|comp| {
            let members: BTreeSet<&Vec<String>> = comp.iter().copied().collect();
            let ties: Vec<String> = edges
                .iter()
                .filter(|((f, t), _)| members.contains(f) && members.contains(t))
                .map(|((f, t), p)| format!("{} -> {} (`{p}`)", name(f), name(t)))
                .collect();
            format!("cycle of {} files: {}", comp.len(), ties.join("; "))
        })
        .collect()
}

/// Uses of the runtime or the system clock in the domain.
fn impurities(tree: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (module, text) in &tree.files {
        if layer(module) != Some(0) {
            continue;
        }
        for word in IMPURE {
            for (n, line) in text.lines().enumerate() {
                let hit = line
                    .match_indices(word)
                    .any(|(i, _)| i == 0 || !is_ident(line.as_bytes()[i - 1]));
                if hit {
                    out.push(format!("{} line {}: uses `{word}`", name(module), n + 1));
                }
            }
        }
    }
    out
}

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("daemon/src")
}

#[test]
fn the_checks_find_a_cycle_a_layer_violation_and_an_impure_domain_in_a_made_up_tree() {
    let tree = Tree::from_pairs(&[
        ("lib.rs", "pub mod domain; pub mod adapters;"),
        ("domain/mod.rs", "pub mod a; pub mod b;"),
        ("domain/a.rs", "use crate::domain::b::B;\npub struct A;"),
        (
            "domain/b.rs",
            "use super::a::A; // a comment naming crate::adapters::x is not code\npub struct B;\nfn f() { let _ = std::time::Instant::now(); }",
        ),
        ("adapters/mod.rs", "pub mod x;"),
        (
            "adapters/x.rs",
            "use crate::domain::{a::A, b};\npub fn g() -> tokio::task::JoinHandle<()> { todo!() }",
        ),
    ]);
    let cycles = cycles(&tree);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains("domain::a -> domain::b"), "{cycles:?}");
    assert!(cycles[0].contains("domain::b -> domain::a"), "{cycles:?}");
    // adapters may name the domain; the domain's comment naming adapters is not an edge.
    assert!(
        layer_violations(&tree).is_empty(),
        "{:?}",
        layer_violations(&tree)
    );
    let impure = impurities(&tree);
    assert_eq!(
        impure,
        vec!["domain::b line 3: uses `Instant::now`".to_string()]
    );

    let upward = Tree::from_pairs(&[
        ("domain/mod.rs", "pub mod a;"),
        ("domain/a.rs", "fn f() { crate::engine::run(); }"),
        ("engine/mod.rs", "pub fn run() {}"),
    ]);
    let v = layer_violations(&upward);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].starts_with("domain::a (layer domain) names engine (layer engine)"),
        "{v:?}"
    );
}

#[test]
fn a_parent_naming_its_children_is_containment_but_siblings_naming_each_other_is_a_cycle() {
    let tree = Tree::from_pairs(&[
        (
            "adapters/store/mod.rs",
            "mod sqlite;\npub use sqlite::Sqlite;\npub struct Commit;",
        ),
        (
            "adapters/store/sqlite.rs",
            "use super::Commit;\nuse super::pg::Pg;\npub struct Sqlite;",
        ),
        (
            "adapters/store/pg.rs",
            "use super::sqlite::Sqlite;\npub struct Pg;",
        ),
    ]);
    let c = cycles(&tree);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].starts_with("cycle of 2 files"), "{c:?}");
    assert!(!c[0].contains("adapters::store ->"), "{c:?}");
}

#[test]
fn no_import_cycle_between_the_files_of_daemon_src() {
    let tree = Tree::read(&source_root());
    assert!(
        tree.files.len() > 50,
        "read only {} files",
        tree.files.len()
    );
    let c = cycles(&tree);
    assert!(c.is_empty(), "import cycles:\n{}", c.join("\n"));
}

#[test]
fn every_layer_names_only_itself_and_the_layers_before_it() {
    let tree = Tree::read(&source_root());
    for module in tree.files.keys() {
        assert!(
            module.is_empty() || layer(module).is_some(),
            "{} is in no layer; put it under one of {LAYERS:?}",
            name(module)
        );
    }
    let v = layer_violations(&tree);
    assert!(
        v.is_empty(),
        "imports against the layers:\n{}",
        v.join("\n")
    );
}

#[test]
fn the_domain_uses_neither_the_runtime_nor_the_system_clock() {
    let tree = Tree::read(&source_root());
    let domain = tree.files.keys().filter(|m| layer(m) == Some(0)).count();
    assert!(domain > 10, "found only {domain} domain files");
    let i = impurities(&tree);
    assert!(i.is_empty(), "the domain must stay pure:\n{}", i.join("\n"));
}

/// Every `.rs` file under `daemon/src`, with its text.
fn rust_sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![source_root()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((path, text));
            }
        }
    }
    out
}

#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = rust_sources()
        .into_iter()
        .filter_map(|(path, text)| {
            let n = text.lines().count();
            (n > MAX_LINES).then(|| format!("{} has {n} lines", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split along its seams:\n{}",
        long.join("\n")
    );
}

/// The crate denies unsafe code; one module may allow it (two advisory system calls for memory
/// at rest, `adapters/memory.rs`), and nothing else.
#[test]
fn unsafe_code_is_allowed_for_the_memory_module_only() {
    let lib = std::fs::read_to_string(source_root().join("lib.rs")).unwrap();
    assert!(
        lib.contains("#![deny(unsafe_code)]"),
        "lib.rs denies unsafe code"
    );
    let mut allowed = Vec::new();
    for (path, text) in rust_sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("allow(unsafe_code)") && !line.trim_start().starts_with("//") {
                let rel = path.strip_prefix(source_root()).unwrap_or(&path);
                let next = lines.get(i + 1).map_or("", |l| l.trim());
                allowed.push(format!(
                    "{}:{}: {} {next}",
                    rel.display(),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert_eq!(allowed.len(), 1, "{allowed:#?}");
    assert!(
        allowed[0].starts_with("adapters/mod.rs:") && allowed[0].ends_with("pub mod memory;"),
        "{allowed:#?}"
    );
}
