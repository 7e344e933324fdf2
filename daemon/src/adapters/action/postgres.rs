//! PostgreSQL actions (runbook procedure 3): `postgres_evidence` reads the state of a database;
//! `postgres_cancel_queries` cancels, then terminates, queries active longer than a limit.
//!
//! The DSN comes from an environment variable or a file, never from the policy text, and is
//! never logged. TLS follows its `sslmode`, `sslrootcert`, `sslcert` and `sslkey` as libpq
//! does (the store's connector, [`crate::adapters::pgtls`]). SQL is parameterized. The role needs `pg_read_all_stats` (to see other roles'
//! queries) and `pg_signal_backend` (to cancel and terminate them); without them the action
//! fails with an error that says which GRANT is missing.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_postgres::Client;

use super::{ActionRequest, BoxFuture, Executor, Outcome};

/// Connection and statement timeout: a database in trouble must not hang the ladder.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most sessions one step may act on, whatever the policy says.
const HARD_CAP: u32 = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Conn {
    #[serde(default)]
    dsn_env: Option<String>,
    #[serde(default)]
    dsn_file: Option<String>,
}

impl Conn {
    fn check(&self) -> Result<(), String> {
        match (&self.dsn_env, &self.dsn_file) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err("set exactly one of `dsn_env` or `dsn_file` (the DSN itself never goes in a policy)".into()),
        }
    }

    fn dsn(&self) -> Result<String, String> {
        match (&self.dsn_env, &self.dsn_file) {
            (Some(v), None) => std::env::var(v)
                .map_err(|_| format!("environment variable {v} (the DSN) is not set")),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("DSN file {f}: {e}")),
            _ => Err("set exactly one of `dsn_env` or `dsn_file`".into()),
        }
    }

    async fn connect(&self) -> Result<(Client, Duration), String> {
        let dsn = self.dsn()?;
        let started = Instant::now();
        // TLS as the DSN's sslmode, sslrootcert, sslcert and sslkey say (libpq's meaning).
        let client = tokio::time::timeout(TIMEOUT, crate::adapters::pgtls::connect(&dsn))
            .await
            .map_err(|_| format!("connecting timed out after {}s", TIMEOUT.as_secs()))?
            .map_err(|e| format!("connecting: {e}"))?;
        client
            .batch_execute(&format!("SET statement_timeout = {}", TIMEOUT.as_millis()))
            .await
            .map_err(|e| format!("SET statement_timeout: {e}"))?;
        Ok((client, started.elapsed()))
    }
}

/// `with:` of `postgres_cancel_queries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelParams {
    // Flat, not `#[serde(flatten)] Conn`: `fields::names` reads a flat struct's fields, and
    // serde does not support `deny_unknown_fields` together with `flatten`.
    #[serde(default)]
    dsn_env: Option<String>,
    #[serde(default)]
    dsn_file: Option<String>,
    /// Queries active longer than this are candidates.
    older_than: String,
    /// Time between cancelling and terminating.
    #[serde(default = "default_grace")]
    grace: String,
    /// Terminate the ones still running after the grace period.
    #[serde(default = "default_true")]
    terminate: bool,
    /// At most this many sessions per run.
    #[serde(default = "default_max")]
    max: u32,
    /// Only these databases (default: every database).
    #[serde(default)]
    databases: Vec<String>,
    /// Never these users (e.g. the migration role).
    #[serde(default)]
    exclude_users: Vec<String>,
    /// Never these application names (e.g. pg_dump, backups).
    #[serde(default)]
    exclude_applications: Vec<String>,
    /// Never these databases.
    #[serde(default)]
    exclude_databases: Vec<String>,
}

fn default_grace() -> String {
    "10s".into()
}
fn default_true() -> bool {
    true
}
fn default_max() -> u32 {
    5
}

impl CancelParams {
    fn conn(&self) -> Conn {
        Conn {
            dsn_env: self.dsn_env.clone(),
            dsn_file: self.dsn_file.clone(),
        }
    }
    fn parse(v: &serde_json::Value) -> Result<Self, String> {
        let p: CancelParams = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        p.conn().check()?;
        crate::domain::time::parse_duration(&p.older_than)
            .map_err(|e| format!("older_than: {e}"))?;
        crate::domain::time::parse_duration(&p.grace).map_err(|e| format!("grace: {e}"))?;
        if p.max == 0 || p.max > HARD_CAP {
            return Err(format!("max: {} is not within 1..={HARD_CAP}", p.max));
        }
        Ok(p)
    }
}

/// A session that is a candidate.
#[derive(Debug, Clone, serde::Serialize)]
struct Session {
    pid: i32,
    user: String,
    application: String,
    database: String,
    age_seconds: f64,
    query_start: String,
    query: String,
}

async fn check_privileges(c: &Client, need_signal: bool) -> Result<String, String> {
    let row = c
        .query_one(
            "SELECT current_user::text,
                    pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER'),
                    pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')",
            &[],
        )
        .await
        .map_err(|e| format!("checking privileges: {e}"))?;
    let (user, stats, signal): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let mut missing = Vec::new();
    if !stats {
        missing.push("pg_read_all_stats");
    }
    if need_signal && !signal {
        missing.push("pg_signal_backend");
    }
    if missing.is_empty() {
        Ok(user)
    } else {
        Err(format!(
            "role {user:?} lacks {}: GRANT {} TO {user};",
            missing.join(" and "),
            missing.join(", ")
        ))
    }
}

async fn candidates(c: &Client, p: &CancelParams) -> Result<Vec<Session>, String> {
    let older = crate::domain::time::parse_duration(&p.older_than)?.as_secs_f64();
    let rows = c
        .query(
            "SELECT pid, coalesce(usename::text, ''), coalesce(application_name, ''), coalesce(datname::text, ''),
                    extract(epoch FROM now() - query_start)::float8, query_start::text, left(query, 200)
             FROM pg_stat_activity
             WHERE backend_type = 'client backend'
               AND pid <> pg_backend_pid()
               AND state = 'active'
               AND query_start < now() - make_interval(secs => $1)
               AND (cardinality($2::text[]) = 0 OR datname = ANY($2::text[]))
               AND NOT (coalesce(usename::text, '') = ANY($3::text[]))
               AND NOT (coalesce(application_name, '') = ANY($4::text[]))
               AND NOT (coalesce(datname::text, '') = ANY($5::text[]))
             ORDER BY query_start
             LIMIT $6",
            &[&older, &p.databases, &p.exclude_users, &p.exclude_applications, &p.exclude_databases, &i64::from(p.max)],
        )
        .await
        .map_err(|e| format!("reading pg_stat_activity: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            user: r.get(1),
            application: r.get(2),
            database: r.get(3),
            age_seconds: r.get(4),
            query_start: r.get(5),
            query: r.get(6),
        })
        .collect())
}

/// `postgres_cancel_queries`.
#[derive(Debug, Default)]
pub struct CancelQueries;

impl Executor for CancelQueries {
    fn params(&self) -> Vec<&'static str> {
        super::fields::names::<CancelParams>().to_vec()
    }
    fn validate(&self, params: &serde_json::Value) -> Result<(), String> {
        CancelParams::parse(params).map(|_| ())
    }

    fn plan(&self, req: &ActionRequest) -> Result<serde_json::Value, String> {
        let p = CancelParams::parse(&req.params)?;
        Ok(serde_json::json!({
            "cancel": format!("active client queries older than {} (at most {})", p.older_than, p.max),
            "terminate_after": p.terminate.then_some(p.grace),
            "databases": p.databases, "exclude_users": p.exclude_users,
            "exclude_applications": p.exclude_applications, "exclude_databases": p.exclude_databases,
        }))
    }

    fn dry_run<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let run = async {
                let p = CancelParams::parse(&req.params)?;
                let (c, _) = p.conn().connect().await?;
                check_privileges(&c, true).await?;
                let s = candidates(&c, &p).await?;
                Ok::<_, String>((s, p.terminate))
            };
            match run.await {
                Ok((s, terminate)) => Outcome::dry_run(
                    format!(
                        "dry-run: would cancel {} quer(ies){}",
                        s.len(),
                        if terminate {
                            ", then terminate those still running"
                        } else {
                            ""
                        }
                    ),
                    serde_json::json!({"cancel": s, "terminate_after_grace": terminate}),
                ),
                Err(e) => Outcome::failed(false, format!("dry-run: {e}"), serde_json::Value::Null),
            }
        })
    }

    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let p = match CancelParams::parse(&req.params) {
                Ok(p) => p,
                Err(e) => return Outcome::failed(false, e, serde_json::Value::Null),
            };
            let (c, _) = match p.conn().connect().await {
                Ok(c) => c,
                Err(e) => return Outcome::failed(true, e, serde_json::Value::Null),
            };
            if let Err(e) = check_privileges(&c, true).await {
                return Outcome::failed(false, e, serde_json::Value::Null);
            }
            let found = match candidates(&c, &p).await {
                Ok(s) => s,
                Err(e) => return Outcome::failed(true, e, serde_json::Value::Null),
            };
            let mut cancelled = Vec::new();
            let mut errors = Vec::new();
            for s in &found {
                match c.query_one("SELECT pg_cancel_backend($1)", &[&s.pid]).await {
                    Ok(r) if r.get::<_, bool>(0) => cancelled.push(s.pid),
                    Ok(_) => errors.push(format!(
                        "pid {}: cancel had no effect (already gone)",
                        s.pid
                    )),
                    Err(e) => errors.push(format!("pid {}: {e}", s.pid)),
                }
            }
            let mut terminated = Vec::new();
            if p.terminate && !cancelled.is_empty() {
                tokio::time::sleep(
                    crate::domain::time::parse_duration(&p.grace).unwrap_or_default(),
                )
                .await;
                // Only the same query (pid and start) is terminated, never a newer one on that pid.
                let pids: Vec<i32> = cancelled.clone();
                let still = c
                    .query(
                        "SELECT pid, query_start::text FROM pg_stat_activity WHERE pid = ANY($1) AND state = 'active'",
                        &[&pids],
                    )
                    .await
                    .map(|rows| rows.iter().map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1))).collect::<Vec<_>>())
                    .unwrap_or_default();
                for (pid, start) in still {
                    if !found.iter().any(|s| s.pid == pid && s.query_start == start) {
                        continue;
                    }
                    match c
                        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                        .await
                    {
                        Ok(r) if r.get::<_, bool>(0) => terminated.push(pid),
                        Ok(_) => errors.push(format!("pid {pid}: terminate had no effect")),
                        Err(e) => errors.push(format!("pid {pid}: {e}")),
                    }
                }
            }
            let detail = serde_json::json!({"found": found, "cancelled": cancelled, "terminated": terminated, "errors": errors});
            let summary = format!(
                "{} quer(ies) older than {}: {} cancelled, {} terminated{}",
                found.len(),
                p.older_than,
                cancelled.len(),
                terminated.len(),
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(", {} error(s)", errors.len())
                }
            );
            if !errors.is_empty() && cancelled.is_empty() && !found.is_empty() {
                Outcome::failed(false, summary, detail)
            } else {
                Outcome::ok(summary, detail)
            }
        })
    }
}

/// `postgres_evidence`.
#[derive(Debug, Default)]
pub struct Evidence;

async fn evidence(conn: &Conn) -> Result<serde_json::Value, String> {
    let (c, latency) = conn.connect().await?;
    let started = Instant::now();
    c.query_one("SELECT 1", &[])
        .await
        .map_err(|e| format!("SELECT 1: {e}"))?;
    let roundtrip = started.elapsed();
    let privileges = check_privileges(&c, false).await.err();
    let by_state: Vec<(String, i64)> = c
        .query(
            "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 2 DESC",
            &[],
        )
        .await
        .map_err(|e| format!("pg_stat_activity: {e}"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let by_application: Vec<(String, i64)> = c
        .query(
            "SELECT coalesce(application_name, ''), count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
            &[],
        )
        .await
        .map_err(|e| format!("pg_stat_activity: {e}"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let installed = c
        .query_opt(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
            &[],
        )
        .await
        .map_err(|e| format!("pg_extension: {e}"))?
        .is_some();
    let statements = if installed {
        match c
            .query(
                "SELECT left(query, 200), calls, total_exec_time, mean_exec_time FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 5",
                &[],
            )
            .await
        {
            Ok(rows) => serde_json::json!(rows.iter().map(|r| serde_json::json!({
                "query": r.get::<_, String>(0), "calls": r.get::<_, i64>(1),
                "total_ms": r.get::<_, f64>(2), "mean_ms": r.get::<_, f64>(3),
            })).collect::<Vec<_>>()),
            Err(e) => serde_json::json!({"note": format!("pg_stat_statements is installed but cannot be read: {e} (is it in shared_preload_libraries?)")}),
        }
    } else {
        serde_json::json!({"note": "pg_stat_statements is not installed: add it to shared_preload_libraries and CREATE EXTENSION pg_stat_statements to see the top statements"})
    };
    let slots = match c
        .query(
            "SELECT slot_name::text, slot_type, active,
                    CASE WHEN pg_is_in_recovery() THEN NULL
                         ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 END
             FROM pg_replication_slots ORDER BY 1",
            &[],
        )
        .await
    {
        Ok(rows) => serde_json::json!(rows.iter().map(|r| serde_json::json!({
            "slot": r.get::<_, String>(0), "type": r.get::<_, String>(1), "active": r.get::<_, bool>(2),
            "lag_bytes": r.get::<_, Option<f64>>(3),
        })).collect::<Vec<_>>()),
        Err(e) => serde_json::json!({"note": format!("replication slots: {e}")}),
    };
    Ok(serde_json::json!({
        "connect_ms": latency.as_secs_f64() * 1000.0,
        "roundtrip_ms": roundtrip.as_secs_f64() * 1000.0,
        "sessions_by_state": by_state,
        "sessions_by_application": by_application,
        "top_statements": statements,
        "replication_slots": slots,
        "privileges": privileges.unwrap_or_else(|| "ok".into()),
    }))
}

impl Executor for Evidence {
    fn params(&self) -> Vec<&'static str> {
        super::fields::names::<Conn>().to_vec()
    }
    fn validate(&self, params: &serde_json::Value) -> Result<(), String> {
        let c: Conn = serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
        c.check()
    }

    fn plan(&self, _req: &ActionRequest) -> Result<serde_json::Value, String> {
        Ok(
            serde_json::json!({"read": ["connection test", "pg_stat_activity", "pg_stat_statements", "pg_replication_slots"]}),
        )
    }

    /// Evidence only reads, so dry-run gathers it too.
    fn dry_run<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        self.execute(req)
    }

    fn execute<'a>(&'a self, req: &'a ActionRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let conn: Conn = match serde_json::from_value(req.params.clone()) {
                Ok(c) => c,
                Err(e) => return Outcome::failed(false, e.to_string(), serde_json::Value::Null),
            };
            match evidence(&conn).await {
                Ok(v) => Outcome::ok(
                    format!(
                        "database answered in {:.1} ms; sessions by state {}",
                        v["roundtrip_ms"].as_f64().unwrap_or_default(),
                        v["sessions_by_state"]
                    ),
                    v,
                ),
                Err(e) => Outcome::failed(true, e, serde_json::Value::Null),
            }
        })
    }

    fn gathers_evidence(&self) -> bool {
        true
    }
}

/// In `enforce` mode a database that policies act on must be reachable at startup, with the
/// privileges the actions need: a missing connection is a startup error, never a silent
/// downgrade (DESIGN.md §5). Checks every distinct DSN source once.
pub async fn preflight(
    rs: &crate::load::ruleset::Ruleset,
    global: crate::domain::policy::Mode,
) -> Result<(), Vec<String>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut errors = Vec::new();
    for p in rs.policies.values() {
        if p.mode.unwrap_or(global) != crate::domain::policy::Mode::Enforce {
            continue;
        }
        for (level, l) in &p.levels {
            for s in &l.steps {
                if !s.action.starts_with("postgres_") {
                    continue;
                }
                let Ok(conn) = serde_json::from_value::<Conn>(
                    s.params
                        .as_object()
                        .map(|o| {
                            o.iter()
                                .filter(|(k, _)| *k == "dsn_env" || *k == "dsn_file")
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default(),
                ) else {
                    continue;
                };
                let key = format!("{:?}/{:?}", conn.dsn_env, conn.dsn_file);
                if !seen.insert((key, s.action == "postgres_cancel_queries")) {
                    continue;
                }
                let check = async {
                    let (c, _) = conn.connect().await?;
                    check_privileges(&c, s.action == "postgres_cancel_queries").await
                };
                if let Err(e) = check.await {
                    errors.push(format!(
                        "policy {:?} level {level} step {:?} ({}): {e}",
                        p.name, s.name, s.action
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
