//! The layout of the tests holds: with one test binary, a file under tests/it/ that main.rs does
//! not declare is never compiled, and with `autotests = false` a new tests/*.rs is never built;
//! both would pass silently. This fails instead, naming the file.

use std::collections::BTreeSet;
use std::path::Path;

fn tests_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests"))
}

fn rs_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".rs"))
        .collect()
}

#[test]
fn every_file_in_tests_it_is_a_module_of_main() {
    let main = std::fs::read_to_string(tests_dir().join("it/main.rs")).unwrap();
    let declared: BTreeSet<String> = main
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .map(|m| format!("{m}.rs"))
        .collect();
    let undeclared: Vec<String> = rs_files(&tests_dir().join("it"))
        .into_iter()
        .filter(|f| f != "main.rs" && !declared.contains(f))
        .collect();
    assert!(
        undeclared.is_empty(),
        "tests/it/{undeclared:?} not declared in tests/it/main.rs (`mod NAME;`): never compiled"
    );
}

#[test]
fn every_test_target_in_tests_is_declared_in_cargo_toml() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let stray: Vec<String> = rs_files(tests_dir())
        .into_iter()
        .filter(|f| !manifest.contains(&format!("path = \"tests/{f}\"")))
        .collect();
    assert!(
        stray.is_empty(),
        "tests/{stray:?} is no [[test]] of Cargo.toml (autotests = false): never built; \
         integration tests go in tests/it/ as a module"
    );
}
