//! Post-incident reviews: incidents with known histories (driven through the real incident
//! machine at fixed times) are committed to a SQLite store through the `Store` trait, rendered by
//! the library and by `remedyd review INCIDENT --store URL`, and compared with the golden files in
//! tests/fixtures/review/ byte for byte. `REMEDYD_UPDATE_GOLDEN=1` rewrites the golden files
//! (review the diff before committing it).

use std::path::PathBuf;
use std::process::Command;

use remedyd::adapters::store::Store;
use remedyd::adapters::store::sqlite::SqliteStore;
use remedyd::domain::report::review;

use crate::support::story;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/review/{name}.md"))
}

fn compare(name: &str, got: &str) {
    let path = golden(name);
    if std::env::var_os("REMEDYD_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (REMEDYD_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    if want != got {
        let first = want
            .lines()
            .zip(got.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(got.lines().count()));
        panic!(
            "{name}: review differs from {} at line {}:\n want: {:?}\n  got: {:?}\n\nwhole review:\n{got}",
            path.display(),
            first + 1,
            want.lines().nth(first),
            got.lines().nth(first)
        );
    }
}

fn stories() -> Vec<(&'static str, story::Story)> {
    vec![
        ("escalated-then-resolved", story::escalated_then_resolved()),
        ("self-healed", story::self_healed()),
        ("page-only-open", story::page_only_open()),
    ]
}

#[tokio::test]
async fn reviews_from_the_store_match_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("r.db")).unwrap();
    for (name, s) in stories() {
        s.commit(&store).await;
        let inc = store
            .get_incident(&s.incident.id)
            .await
            .unwrap()
            .expect("stored");
        let tl = store.timeline(&s.incident.id).await.unwrap();
        assert_eq!(tl, s.timeline, "the store keeps the timeline as committed");
        compare(name, &review::render(&inc, &tl));
    }
}

#[tokio::test]
async fn remedyd_review_prints_the_same_review_and_fails_on_an_unknown_incident() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    {
        let store = SqliteStore::open(&db).unwrap();
        for (_, s) in stories() {
            s.commit(&store).await;
        }
    }
    let url = format!("sqlite://{}", db.display());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_remedyd"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("REMEDYD_CONFIG")
            .env_remove("REMEDYD_STORE")
            .output()
            .expect("runs remedyd")
    };
    for (name, s) in stories() {
        let out = run(&["review", &s.incident.id, "--store", &url]);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        if std::env::var_os("REMEDYD_UPDATE_GOLDEN").is_none() {
            compare(name, &stdout);
        }
    }
    let out = run(&["review", "INC-2026-9999", "--store", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no incident INC-2026-9999"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = format!("sqlite://{}", dir.path().join("nope.db").display());
    let out = run(&["review", "INC-2026-0042", "--store", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !dir.path().join("nope.db").exists(),
        "review never creates a store"
    );
}

#[test]
fn review_has_the_runbook_sections_and_leaves_the_root_cause_to_a_human() {
    let s = story::escalated_then_resolved();
    let md = review::render(&s.incident, &s.timeline);
    for part in [
        "# Post-incident review: INC-2026-0042",
        "## Summary",
        "| Duration | 20m |",
        "## Timeline",
        "## What automation did",
        "0.073 → 0.061 → 0.055 → 0.052",
        "## Resolution",
        "Root cause: _to be filled in_",
        "Preventive actions: _to be filled in",
    ] {
        assert!(md.contains(part), "missing {part:?} in:\n{md}");
    }
}
