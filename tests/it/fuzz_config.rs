//! Mutation fuzzing of the other parsers of input remedyd does not control: the rules and
//! policies YAML (written by SREs, reloaded on SIGHUP) and the config TOML. The shipped files are
//! corrupted thousands of ways, deterministically (a fixed seed, so a failure reproduces), on the
//! stable toolchain. Loading must never panic; every problem must be one line naming the file and
//! the field (and the config's problems the key); what loads must be usable.

use std::path::Path;

use remedyd::adapters::action::Executors;
use remedyd::load::config::{Config, Overrides};
use remedyd::load::ruleset;

use crate::support::fuzz::Rng;

/// Pieces of YAML and TOML that break structure or types in interesting places.
const TOKENS: &[&str] = &[
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\n",
    "\n  ",
    "\t",
    "null",
    "~",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!binary ",
    "1e999",
    "-1",
    "99999999999999999999",
    "5x",
    "0s",
    "é",
    "=",
    "\"\"",
    "[[x]]",
    "true",
    "{{",
    "}}",
    "{{ labels.service }}",
    "#",
    "---\n",
    "? ",
    "|\n",
    ">-\n",
    "\u{0}",
];

fn mutate(rng: &mut Rng, input: &str) -> String {
    let mut b = input.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            b.extend_from_slice(b"x: 1");
        }
        let at = rng.below(b.len());
        match rng.below(5) {
            0 => {
                const BYTES: &[u8] = b" :-{}[]\n\"'#0a";
                b[at] = BYTES[rng.below(BYTES.len())];
            }
            1 => {
                let end = (at + rng.below(24)).min(b.len());
                b.drain(at..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.bytes());
            }
            3 => {
                let end = (at + rng.below(48)).min(b.len());
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
            _ => b.truncate(at),
        }
    }
    // Files are text: a mutation that breaks UTF-8 is read as such by the loader too, but the
    // interesting cases are structural; keep them valid UTF-8.
    String::from_utf8_lossy(&b).into_owned()
}

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn yaml_files(dir: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(repo(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn corrupted_rules_and_policies_never_panic_and_every_problem_names_file_and_field() {
    let rules = yaml_files("rules");
    let policies = yaml_files("policies");
    assert!(!rules.is_empty() && !policies.is_empty());
    let executors = Executors::builtin_for(None);
    let tmp = tempfile::tempdir().unwrap();
    let (rd, pd) = (tmp.path().join("rules"), tmp.path().join("policies"));
    let mut rng = Rng(0x0c0f_f1ee_5eed_2026);
    let (mut loaded, mut refused) = (0, 0);
    for i in 0..1_000 {
        // A fresh copy of the shipped files with one of them corrupted.
        for (dir, files) in [(&rd, &rules), (&pd, &policies)] {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).unwrap();
            for (name, text) in files.iter() {
                std::fs::write(dir.join(name), text).unwrap();
            }
        }
        let (dir, files) = if rng.below(2) == 0 {
            (&rd, &rules)
        } else {
            (&pd, &policies)
        };
        let (name, text) = &files[rng.below(files.len())];
        let bad = mutate(&mut rng, text);
        std::fs::write(dir.join(name), &bad).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ruleset::load(&rd, &pd, &executors).map(|_| ())
        }));
        match result {
            Err(_) => panic!("iteration {i}: loading panicked on {name}:\n{bad}"),
            Ok(Ok(())) => loaded += 1,
            Ok(Err(diags)) => {
                refused += 1;
                assert!(!diags.is_empty(), "iteration {i}: refused without a reason");
                for d in &diags.0 {
                    let line = d.to_string();
                    assert!(
                        !line.contains('\n') && !d.field.is_empty() && !d.file.is_empty(),
                        "iteration {i}: a problem must be one line naming file and field: {line:?}\n{name}:\n{bad}"
                    );
                }
            }
        }
    }
    eprintln!("rules and policies: 1000 corrupted sets, {loaded} loaded, {refused} refused");
    assert!(
        loaded > 50 && refused > 300,
        "the mutations must exercise both paths: loaded {loaded}, refused {refused}"
    );
}

#[test]
fn corrupted_config_files_never_panic_and_every_problem_names_the_key() {
    let example = std::fs::read_to_string(repo("remedyd.example.toml")).unwrap();
    // The example with every key set, so that mutations reach values and not only comments.
    let full = example
        .lines()
        .map(|l| {
            l.strip_prefix('#')
                .filter(|r| r.contains(" = "))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("remedyd.toml");
    let mut rng = Rng(0x70_6d1e_5eed_0011);
    let (mut loaded, mut refused) = (0, 0);
    for i in 0..3_000 {
        let base = if i % 2 == 0 { &example } else { &full };
        let bad = mutate(&mut rng, base);
        std::fs::write(&path, &bad).unwrap();
        let result = std::panic::catch_unwind(|| Config::load(Some(&path), &Overrides::default()));
        match result {
            Err(_) => panic!("iteration {i}: config loading panicked on:\n{bad}"),
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(e)) => {
                refused += 1;
                let m = e.to_string();
                assert!(
                    m.starts_with("config: ") && m.len() > "config: ".len(),
                    "iteration {i}: {m:?}"
                );
            }
        }
    }
    eprintln!("config: 3000 corrupted files, {loaded} loaded, {refused} refused");
    assert!(
        loaded > 100 && refused > 500,
        "the mutations must exercise both paths: loaded {loaded}, refused {refused}"
    );
}
