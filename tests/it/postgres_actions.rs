//! The PostgreSQL actions against a real PostgreSQL 15 (Debian's package, started by the test
//! as user `postgres`): long queries from another role are cancelled or terminated, excluded
//! sessions survive, the cap holds, dry-run touches nothing, a missing privilege gives the
//! documented error, and evidence reports what it saw. A missing server fails the test.

use std::time::Duration;

use remedyd::adapters::action::postgres::{CancelQueries, Evidence};
use remedyd::adapters::action::{ActionRequest, Executor};

use crate::support::services::Postgres;

fn request(action: &str, params: serde_json::Value) -> ActionRequest {
    ActionRequest {
        incident: "INC-2026-0001".into(),
        step: "s".into(),
        action: action.into(),
        params,
        vars: Default::default(),
    }
}

/// The server's URL with another role (same password).
fn role_url(pg: &Postgres, role: &str) -> String {
    let url = pg.url();
    let rest = url
        .strip_prefix("postgres://postgres:")
        .expect("postgres://postgres:PASSWORD@...");
    format!("postgres://{role}:{rest}")
}

/// Starts `n` sessions as `role` with `application_name`, each running `pg_sleep(600)`.
async fn sleepers(
    pg: &Postgres,
    role: &str,
    application: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let url = format!("{}?application_name={application}", role_url(pg, role));
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("sleeper connects");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        out.push(tokio::spawn(async move {
            client
                .simple_query("SELECT pg_sleep(600)")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }));
    }
    out
}

async fn setup() -> (Postgres, tokio_postgres::Client) {
    let pg = Postgres::start().await;
    let admin = pg.client("remedyd").await;
    let password = pg
        .url()
        .split(':')
        .nth(2)
        .and_then(|s| s.split('@').next())
        .unwrap()
        .to_string();
    for stmt in [
        format!("CREATE ROLE app LOGIN PASSWORD '{password}'"),
        format!("CREATE ROLE backup LOGIN PASSWORD '{password}'"),
        format!("CREATE ROLE remedyd LOGIN PASSWORD '{password}'"),
        format!("CREATE ROLE weak LOGIN PASSWORD '{password}'"),
        "GRANT pg_signal_backend, pg_read_all_stats TO remedyd".into(),
        "GRANT pg_read_all_stats TO weak".into(),
    ] {
        admin.batch_execute(&stmt).await.unwrap();
    }
    (pg, admin)
}

fn dsn_file(dir: &tempfile::TempDir, pg: &Postgres, role: &str) -> String {
    let url = role_url(pg, role);
    let path = dir.path().join(format!("{role}.dsn"));
    std::fs::write(&path, format!("{url}\n")).unwrap();
    path.display().to_string()
}

async fn active_sleepers(admin: &tokio_postgres::Client) -> Vec<(String, String)> {
    admin
        .query(
            "SELECT usename::text, application_name FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%' AND state = 'active' ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("finished in time")
}

#[tokio::test]
async fn long_queries_are_cancelled_excluded_ones_survive_and_the_cap_holds() {
    within(async {
        let (pg, admin) = setup().await;
        let dir = tempfile::tempdir().unwrap();
        let _app = sleepers(&pg, "app", "checkout", 3).await;
        let _backup = sleepers(&pg, "backup", "pg_dump", 1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(active_sleepers(&admin).await.len(), 4);
        let params = serde_json::json!({
            "dsn_file": dsn_file(&dir, &pg, "remedyd"), "older_than": "1s", "grace": "1s", "max": 2,
            "exclude_applications": ["pg_dump"],
        });
        let out = CancelQueries
            .execute(&request("postgres_cancel_queries", params))
            .await;
        assert!(out.ok, "{out:?}");
        assert_eq!(
            out.detail["cancelled"].as_array().unwrap().len(),
            2,
            "the cap: {}",
            out.detail
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left = active_sleepers(&admin).await;
        assert_eq!(
            left,
            vec![
                ("app".to_string(), "checkout".to_string()),
                ("backup".to_string(), "pg_dump".to_string())
            ],
            "one app query over the cap and the excluded backup survive"
        );
    })
    .await
}

#[tokio::test]
async fn a_query_that_ignores_cancel_is_terminated_after_the_grace_period() {
    within(async {
        let (pg, admin) = setup().await;
        let dir = tempfile::tempdir().unwrap();
        // A session in a loop that swallows the cancel: a PL/pgSQL block catching query_canceled.
        let url = role_url(&pg, "app");
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let stubborn = tokio::spawn(async move {
            client
                .simple_query(
                    "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(600); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$",
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let params = serde_json::json!({"dsn_file": dsn_file(&dir, &pg, "remedyd"), "older_than": "1s", "grace": "1s"});
        let out = CancelQueries.execute(&request("postgres_cancel_queries", params)).await;
        assert!(out.ok, "{out:?}");
        assert_eq!(out.detail["cancelled"].as_array().unwrap().len(), 1, "{}", out.detail);
        assert_eq!(out.detail["terminated"].as_array().unwrap().len(), 1, "{}", out.detail);
        // The session's connection was terminated under it: its query ends in an error.
        let res = tokio::time::timeout(Duration::from_secs(10), stubborn).await.unwrap().unwrap();
        assert!(res.is_err());
        let n: i64 = admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'", &[]).await.unwrap().get(0);
        assert_eq!(n, 0);
    })
    .await
}

#[tokio::test]
async fn dry_run_lists_who_would_be_cancelled_and_touches_nothing() {
    within(async {
        let (pg, admin) = setup().await;
        let dir = tempfile::tempdir().unwrap();
        let _app = sleepers(&pg, "app", "checkout", 2).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let params = serde_json::json!({"dsn_file": dsn_file(&dir, &pg, "remedyd"), "older_than": "1s", "grace": "1s"});
        let out = CancelQueries.dry_run(&request("postgres_cancel_queries", params)).await;
        assert!(out.ok && out.dry_run, "{out:?}");
        let listed = out.detail["would_send"]["cancel"].as_array().unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|s| s["user"] == "app" && s["query"].as_str().unwrap().contains("pg_sleep")));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(active_sleepers(&admin).await.len(), 2, "dry-run cancelled nothing");
    })
    .await
}

#[tokio::test]
async fn a_role_without_pg_signal_backend_gets_the_documented_error() {
    within(async {
        let (pg, admin) = setup().await;
        let dir = tempfile::tempdir().unwrap();
        let _app = sleepers(&pg, "app", "checkout", 1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let params =
            serde_json::json!({"dsn_file": dsn_file(&dir, &pg, "weak"), "older_than": "1s"});
        let out = CancelQueries
            .execute(&request("postgres_cancel_queries", params))
            .await;
        assert!(!out.ok);
        assert_eq!(
            out.summary,
            "role \"weak\" lacks pg_signal_backend: GRANT pg_signal_backend TO weak;"
        );
        assert_eq!(active_sleepers(&admin).await.len(), 1);
    })
    .await
}

#[tokio::test]
async fn evidence_reports_sessions_statements_and_slots() {
    within(async {
        let (pg, admin) = setup().await;
        let dir = tempfile::tempdir().unwrap();
        admin
            .batch_execute("SELECT pg_create_physical_replication_slot('standby_1')")
            .await
            .unwrap();
        let _app = sleepers(&pg, "app", "checkout", 2).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let params = serde_json::json!({"dsn_file": dsn_file(&dir, &pg, "remedyd")});
        assert!(Evidence.gathers_evidence());
        let out = Evidence
            .execute(&request("postgres_evidence", params))
            .await;
        assert!(out.ok, "{out:?}");
        let d = &out.detail;
        assert!(d["roundtrip_ms"].as_f64().unwrap() >= 0.0);
        let apps = d["sessions_by_application"].as_array().unwrap();
        assert!(apps.iter().any(|a| a[0] == "checkout" && a[1] == 2), "{d}");
        assert!(
            d["top_statements"]["note"]
                .as_str()
                .unwrap()
                .contains("pg_stat_statements is not installed"),
            "{d}"
        );
        assert_eq!(d["replication_slots"][0]["slot"], "standby_1");
        assert_eq!(d["privileges"], "ok");
    })
    .await
}

#[test]
fn parameters_are_checked_at_load_and_a_dsn_never_goes_in_a_policy() {
    let e = CancelQueries;
    assert!(
        e.validate(&serde_json::json!({"older_than": "5m"}))
            .unwrap_err()
            .contains("dsn_env")
    );
    assert!(
        e.validate(&serde_json::json!({"dsn": "postgres://x", "older_than": "5m"}))
            .unwrap_err()
            .contains("unknown field `dsn`")
    );
    assert!(
        e.validate(&serde_json::json!({"dsn_env": "X", "older_than": "soon"}))
            .unwrap_err()
            .starts_with("older_than:")
    );
    assert!(
        e.validate(&serde_json::json!({"dsn_env": "X", "older_than": "5m", "max": 500}))
            .unwrap_err()
            .starts_with("max:")
    );
    assert!(
        e.validate(&serde_json::json!({"dsn_env": "X", "older_than": "5m"}))
            .is_ok()
    );
}
