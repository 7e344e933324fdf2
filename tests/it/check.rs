//! The loader's diagnostics corpus: every case under `tests/fixtures/bad/<case>/` holds `rules/`,
//! `policies/` and `expected.txt`, the exact lines `ruleset::load` reports (`FILE:LINE: FIELD:
//! MESSAGE`, with FILE relative to the case directory).
//!
//! A case whose current output is known to be wrong keeps the *right* lines in `expected.txt`
//! and adds `known-bug.txt`: `#` lines saying what is wrong and where, then the exact current
//! output. The test then requires the current output (so any change is noticed) and fails once
//! the bug is fixed, asking for `known-bug.txt` to be deleted.
//!
//! `REMEDYD_BLESS=1 cargo test --test it check::` rewrites every `expected.txt` (or the current output
//! in `known-bug.txt`) from the loader's output; read each changed line before committing it.

use std::path::{Path, PathBuf};

use remedyd::adapters::action::Executors;
use remedyd::load::ruleset;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad")
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/fixtures/bad exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

/// The loader's diagnostics for one case, one per line, with the case directory stripped so
/// that file names read `rules/a.yaml`.
fn diagnostics(case: &Path) -> Vec<String> {
    let result = ruleset::load(
        &case.join("rules"),
        &case.join("policies"),
        &Executors::builtin(),
    );
    let diag = match result {
        Ok(rs) => panic!(
            "{}: loaded without errors ({} rules, {} policies) but every case must fail",
            case.display(),
            rs.rules.len(),
            rs.policies.len()
        ),
        Err(d) => d,
    };
    let prefix = format!("{}/", case.display());
    diag.to_string()
        .replace(&prefix, "")
        .lines()
        .map(str::to_string)
        .collect()
}

/// `known-bug.txt`: its description (`#` lines) and the current, wrong output.
fn known_bug(case: &Path) -> Option<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(case.join("known-bug.txt")).ok()?;
    let (notes, current): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with('#'));
    Some((
        notes.into_iter().map(str::to_string).collect(),
        current.into_iter().map(str::to_string).collect(),
    ))
}

fn expected(case: &Path) -> Vec<String> {
    let path = case.join("expected.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with REMEDYD_BLESS=1 to create it)",
            path.display()
        )
    });
    text.lines().map(str::to_string).collect()
}

#[test]
fn every_bad_case_reports_exactly_its_expected_diagnostics() {
    let bless = std::env::var_os("REMEDYD_BLESS").is_some();
    let cases = cases();
    assert!(cases.len() >= 13, "the corpus lost cases: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let got = diagnostics(case);
        let bug = known_bug(case);
        if bless {
            let (path, mut text) = match &bug {
                Some((notes, _)) => (case.join("known-bug.txt"), notes.join("\n") + "\n"),
                None => (case.join("expected.txt"), String::new()),
            };
            text.push_str(&got.join("\n"));
            text.push('\n');
            std::fs::write(path, text).expect("write the blessed output");
            continue;
        }
        let want = expected(case);
        match bug {
            None if got != want => failures.push(format!(
                "== {name}\n-- expected\n{}\n-- got\n{}",
                want.join("\n"),
                got.join("\n")
            )),
            None => {}
            Some(_) if got == want => failures.push(format!(
                "== {name}: the known bug is fixed (output equals expected.txt); delete {}",
                case.join("known-bug.txt").display()
            )),
            Some((notes, current)) if got != current => failures.push(format!(
                "== {name} (known bug)\n{}\n-- expected (right)\n{}\n-- known-bug.txt (current)\n{}\n-- got\n{}",
                notes.join("\n"),
                want.join("\n"),
                current.join("\n"),
                got.join("\n")
            )),
            Some((notes, _)) => eprintln!("known bug in {name}:\n{}", notes.join("\n")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_expected_diagnostic_is_one_line_naming_a_file_a_line_and_a_field() {
    for case in cases() {
        for line in expected(&case) {
            let mut parts = line.splitn(4, ':');
            let file = parts.next().unwrap_or_default();
            let lineno = parts.next().unwrap_or_default();
            let field = parts.next().unwrap_or_default().trim();
            let message = parts.next().unwrap_or_default().trim();
            assert!(
                (file.starts_with("rules/") || file.starts_with("policies/"))
                    && file.ends_with(".yaml"),
                "{}: {line:?} does not start with a relative file",
                case.display()
            );
            assert!(
                lineno.parse::<u64>().is_ok_and(|n| n > 0),
                "{}: {line:?} has no line number",
                case.display()
            );
            assert!(
                !field.is_empty() && !field.contains(' '),
                "{}: {line:?} has no field",
                case.display()
            );
            assert!(
                !message.is_empty(),
                "{}: {line:?} has no message",
                case.display()
            );
        }
    }
}

#[test]
fn every_error_at_once_reports_all_of_them_from_every_file() {
    let case = corpus().join("every-error-at-once");
    let got = diagnostics(&case);
    assert!(got.len() >= 4, "expected at least 4 errors, got {got:#?}");
    for file in [
        "rules/10-health.yaml:",
        "rules/20-infra.yaml:",
        "policies/routes.yaml:",
        "policies/runbook.yaml:",
    ] {
        assert!(
            got.iter().any(|l| l.starts_with(file)),
            "no error reported for {file} in {got:#?}"
        );
    }
}
