//! The documentation is held to the code: the config keys of docs/configuration.md, the actions
//! and their `with:` keys of docs/policies.md, the metrics of docs/operations.md, the README's
//! quick-start commands, every relative link, and the examples of every command's `--help`.
//! Each list on the code's side comes from the code itself (the default config serialized, the
//! executors' catalogue, the metrics the daemon exports, clap's commands), never from a list here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remedyd::adapters::action::Executors;
use remedyd::load::config::{Config, KEYS};

use crate::support::daemon::{Daemon, fixture};

const BIN: &str = env!("CARGO_BIN_EXE_remedyd");

/// The marker that keeps a README quick-start block from being run here: it must give a reason
/// (the block needs a cluster, a running server, or builds the binary).
const SKIP: &str = "<!-- docs-test: skip (";

/// A bound on one documented command (the slowest, `remedyd test`, takes about a second).
const COMMAND_BOUND: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The cells of a Markdown table row (`| a | b |`), trimmed; `\|` stays inside its cell.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.iter().map(|c| c.trim().to_string()).collect()
}

/// The body rows of the first table whose header row starts with `header` (its first cells).
fn table(doc: &str, header: &[&str]) -> Vec<Vec<String>> {
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines
        .iter()
        .position(|l| {
            l.trim_start().starts_with('|') && {
                let c = cells(l);
                c.len() >= header.len() && c.iter().zip(header).all(|(a, b)| a == b)
            }
        })
        .unwrap_or_else(|| panic!("no table with header {header:?}"));
    lines[start + 2..]
        .iter()
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| cells(l))
        .collect()
}

/// The text of every `code span` in a cell, in order.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// The code span that is the whole of a cell (`` `listen` ``), if it is one.
fn sole_code(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?
        .strip_suffix('`')
        .filter(|s| !s.contains('`'))
}

#[test]
fn every_config_key_is_documented_with_its_env_variable_and_default_and_nothing_else() {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let code: BTreeMap<String, serde_json::Value> = defaults
        .as_object()
        .expect("the config serializes to a map")
        .clone()
        .into_iter()
        .collect();
    let doc = read("docs/configuration.md");
    let rows = table(&doc, &["key", "default", "env"]);
    let mut documented = BTreeSet::new();
    for row in &rows {
        let key = sole_code(&row[0]).unwrap_or_else(|| panic!("key cell {:?}", row[0]));
        assert!(
            documented.insert(key.to_string()),
            "{key} is documented twice"
        );
        let Some(default) = code.get(key) else {
            panic!("docs/configuration.md documents `{key}`, which is not a config key");
        };
        // The env column names REMEDYD_<KEY>, and the loader takes that variable.
        let env = format!("REMEDYD_{}", key.to_uppercase());
        assert!(
            code_spans(&row[2]).contains(&env),
            "`{key}`: env column {:?} does not name {env}",
            row[2]
        );
        assert!(
            KEYS.contains(&key),
            "`{key}`: the loader does not read {env}"
        );
        // The default column: `unset` for none, else its first code span is the value as
        // TOML/JSON writes it.
        let cell = &row[1];
        if default.is_null() {
            assert!(
                cell.starts_with("unset"),
                "`{key}`: default {cell:?}, code: unset"
            );
        } else {
            let shown = code_spans(cell)
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("`{key}`: default {cell:?} has no value"));
            let shown: serde_json::Value = serde_json::from_str(&shown)
                .unwrap_or_else(|e| panic!("`{key}`: default {shown:?} is not a value: {e}"));
            assert_eq!(&shown, default, "`{key}`: documented default vs the code's");
        }
    }
    let missing: Vec<_> = code.keys().filter(|k| !documented.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "config keys missing from docs/configuration.md: {missing:?}"
    );
}

#[test]
fn every_registered_action_is_documented_with_exactly_its_with_keys() {
    let code: BTreeMap<String, BTreeSet<String>> = Executors::builtin()
        .catalogue()
        .into_iter()
        .map(|(kind, params)| {
            (
                kind.to_string(),
                params.into_iter().map(String::from).collect(),
            )
        })
        .collect();
    assert!(
        code.values().all(|p| !p.is_empty()),
        "an action names no parameters (a parameter type that is not a plain struct?): {code:?}"
    );
    let doc = read("docs/policies.md");
    let mut documented = BTreeMap::new();
    for row in table(&doc, &["action", "`with:` keys"]) {
        let kind = sole_code(&row[0]).unwrap_or_else(|| panic!("action cell {:?}", row[0]));
        let keys: BTreeSet<String> = code_spans(&row[1]).into_iter().collect();
        assert!(
            documented.insert(kind.to_string(), keys).is_none(),
            "{kind} is documented twice"
        );
    }
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        code.keys().collect::<Vec<_>>(),
        "actions in docs/policies.md vs the registered ones"
    );
    for (kind, keys) in &code {
        assert_eq!(
            &documented[kind], keys,
            "{kind}: documented `with:` keys vs the code's"
        );
    }
}

/// The metric names a Prometheus text exposition declares (`# TYPE name kind`), with `_total`
/// added to counters as their samples are named.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (name, kind) = (it.next()?, it.next()?);
            Some(match kind {
                "counter" if !name.ends_with("_total") => format!("{name}_total"),
                _ => name.to_string(),
            })
        })
        .filter(|n| n.starts_with("remedyd_"))
        .collect()
}

const RULES: &str = r#"
rules:
  - name: high-error-rate
    match: ['alertname="HighErrorRate"']
    level: 1
    target: {kind: deployment, name: "{{service}}"}
    policy: remediate
"#;

const POLICIES: &str = r#"
policies:
  - name: remediate
    levels:
      - level: 1
        escalate_to: oncall
        steps:
          - {name: restart, action: test, verify: {resolved_within: 1h}}
"#;

#[tokio::test]
async fn every_documented_metric_is_exported_and_every_exported_one_is_documented() {
    // A labelled counter is exported once its first label set is counted: one webhook and one
    // action count the ones that start empty (signals, webhook answers, actions).
    let text = tokio::time::timeout(Duration::from_secs(120), async {
        let d = Daemon::start(RULES, POLICIES).await;
        let (status, _) = d.post(&fixture("01-firing-single-alert.json")).await;
        assert_eq!(status, 200);
        d.wait("the step ran", || d.exec.count() == 1).await;
        let mut text = d.metrics().await;
        while !text.contains("remedyd_actions_total{") {
            tokio::time::sleep(Duration::from_millis(50)).await;
            text = d.metrics().await;
        }
        d.stop().await;
        text
    })
    .await
    .expect("the step ran and /metrics counted it in time");
    let exported = exported(&text);
    assert!(
        exported.len() >= 10,
        "too few metrics parsed from /metrics: {exported:?}\n{text}"
    );
    let doc = read("docs/operations.md");
    let documented: BTreeSet<String> = table(&doc, &["metric", "type"])
        .iter()
        .map(|row| {
            sole_code(&row[0])
                .unwrap_or_else(|| panic!("metric cell {:?}", row[0]))
                .to_string()
        })
        .collect();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty(),
        "exported, not in docs/operations.md: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "in docs/operations.md, not exported: {missing:?}"
    );
}

/// The README's quick-start shell blocks: (runnable, lines) per block.
fn quick_start_blocks(readme: &str) -> Vec<(bool, Vec<String>)> {
    let start = readme
        .find("\n## Quick start")
        .expect("README has a Quick start");
    let section = &readme[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut previous = "";
    let mut lines = section[..end].lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let skipped = previous.trim_start().starts_with(SKIP);
            let body: Vec<String> = lines
                .by_ref()
                .take_while(|l| l.trim() != "```")
                .map(String::from)
                .collect();
            blocks.push((!skipped, body));
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    blocks
}

/// The commands of a block: continuation lines joined, comments and blank lines left out.
fn commands(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for l in lines {
        let l = l.trim();
        if current.is_empty() && (l.is_empty() || l.starts_with('#')) {
            continue;
        }
        match l.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(l);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs `sh -c command` in `dir` with the built `remedyd` first on the PATH and no inherited
/// REMEDYD_ variables; (exit success, output) once it exits, within [`COMMAND_BOUND`].
fn run_documented(command: &str, dir: &Path) -> (bool, String) {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_file = dir.join(".docs-test-output");
    let out = std::fs::File::create(&out_file).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + COMMAND_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{command}` did not finish within {COMMAND_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&out_file).unwrap_or_default();
    (status.success(), output)
}

#[test]
fn every_runnable_quick_start_command_exits_0_on_a_copy_of_the_repository() {
    let readme = read("README.md");
    let blocks = quick_start_blocks(&readme);
    let runnable: Vec<String> = blocks
        .iter()
        .filter(|(run, _)| *run)
        .flat_map(|(_, lines)| commands(lines))
        .collect();
    assert!(
        blocks.iter().any(|(run, _)| !run),
        "the quick start has no cluster block marked {SKIP}…)"
    );
    assert!(
        runnable.len() >= 3,
        "too few runnable quick-start commands: {runnable:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        "rules",
        "policies",
        "examples",
        "tests/fixtures/alertmanager",
    ] {
        copy_dir(&repo().join(sub), &dir.path().join(sub));
    }
    for command in &runnable {
        // Only remedyd itself runs here: anything else (a server, curl, kubectl) belongs in a
        // block marked as skipped, with its reason.
        assert!(
            command.starts_with("remedyd "),
            "quick-start command {command:?} is not a remedyd command: mark its block {SKIP}reason)"
        );
        let (ok, output) = run_documented(command, dir.path());
        assert!(ok, "`{command}` failed:\n{output}");
    }
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, other punctuation but `-` and `_`
/// dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(doc: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for l in doc.lines() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && l.starts_with('#') {
            out.insert(slug(l.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_readme_and_docs_points_at_a_file_and_heading_that_exist() {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for cap in link.captures_iter(&text) {
            let target = &cap[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            checked += 1;
            let name = file.strip_prefix(repo()).unwrap().display().to_string();
            if !resolved.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if !fragment.is_empty()
                && resolved.extension().is_some_and(|x| x == "md")
                && !anchors(&std::fs::read_to_string(&resolved).unwrap()).contains(fragment)
            {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(checked >= 20, "too few links found: {checked}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn remedyd_help_and_every_subcommand_help_exit_0_and_show_examples_that_use_it() {
    let cli = <remedyd::app::cli::Cli as clap::CommandFactory>::command();
    let mut invocations = vec![(Vec::new(), "remedyd ".to_string())];
    for sub in cli.get_subcommands() {
        let name = sub.get_name().to_string();
        invocations.push((vec![name.clone()], format!("remedyd {name}")));
    }
    assert!(
        invocations.len() >= 7,
        "serve, check, simulate, test, review, resolve"
    );
    for (args, example) in invocations {
        let out = Command::new(BIN)
            .args(&args)
            .arg("--help")
            .env_remove("REMEDYD_CONFIG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "remedyd {args:?} --help: {:?}",
            out.status
        );
        let Some((_, examples)) = text.split_once("\nExamples:\n") else {
            panic!("remedyd {args:?} --help has no Examples section:\n{text}");
        };
        assert!(
            examples
                .lines()
                .any(|l| l.trim_start().starts_with(&example)),
            "remedyd {args:?} --help: no example starting with {example:?}:\n{examples}"
        );
    }
}
