//! The command line: `serve`, `check`, `simulate`, `test`, `review`, `resolve`, `replay`.

mod help;
pub(crate) mod out;
mod replay;
pub mod test;
pub mod test_approvals;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use out::{out, outln};

use crate::adapters::action::{ActionRequest, Executors};
use crate::adapters::clock::SystemClock;
use crate::adapters::intake::alertmanager;
use crate::domain::policy::Mode;
use crate::domain::signal::Status;
use crate::domain::time::Clock;
use crate::load::config::{Config, Overrides};

/// remedyd: alert-driven auto-remediation.
#[derive(Debug, Parser)]
#[command(name = "remedyd", version, after_help = help::MAIN)]
pub struct Cli {
    /// Config file (default: ./remedyd.toml if present).
    #[arg(long, global = true, env = "REMEDYD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Rules directory.
    #[arg(long, global = true)]
    pub rules: Option<PathBuf>,
    /// Policies directory.
    #[arg(long, global = true)]
    pub policies: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    #[command(after_help = help::SERVE)]
    Serve {
        /// Listen address (HOST:PORT).
        #[arg(long)]
        listen: Option<String>,
        /// Store URL (sqlite://PATH or postgres://…).
        #[arg(long)]
        store: Option<String>,
        /// dry-run or enforce.
        #[arg(long, value_parser = Mode::parse)]
        mode: Option<Mode>,
    },
    /// Validate config, rules and policies; print every error; exit 1 on any.
    #[command(after_help = help::CHECK)]
    Check,
    /// Feed an Alertmanager payload through the rules and policies and print the plan.
    #[command(after_help = help::SIMULATE)]
    Simulate {
        /// Alertmanager webhook JSON file.
        #[arg(long)]
        alerts: PathBuf,
    },
    /// Run rule and policy unit tests (series and alerts over time, expected incidents).
    #[command(after_help = help::TEST)]
    Test {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the post-incident review of an incident in Markdown, from the store.
    #[command(after_help = help::REVIEW)]
    Review {
        /// Incident id (`INC-2026-0042`).
        incident: String,
        /// Store URL (sqlite://PATH); default from the config.
        #[arg(long)]
        store: Option<String>,
    },
    /// Resolve an incident by hand: the running engine applies it, records who and why, and
    /// sends a resolve to every route that was paged.
    #[command(after_help = help::RESOLVE)]
    Resolve {
        /// Incident id (`INC-2026-0042`).
        incident: String,
        /// Why it is resolved by hand (required).
        #[arg(long)]
        reason: String,
        /// Who resolves it (required).
        #[arg(long)]
        author: String,
        /// Store URL (sqlite://PATH or postgres://…); default from the config.
        #[arg(long)]
        store: Option<String>,
    },
    /// Replay the signals a store recorded through candidate rules and policies (--rules,
    /// --policies), in dry-run, and print what would differ from what happened. Never writes to
    /// the store.
    #[command(after_help = help::REPLAY)]
    Replay {
        /// The period: a duration back from now (`7d`, `12h`) or an RFC 3339 time.
        #[arg(long)]
        since: String,
        /// Store URL (sqlite://PATH or postgres://…) to read; default from the config.
        #[arg(long)]
        store: Option<String>,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: ReplayFormat,
    },
}

pub use crate::app::replay::Format as ReplayFormat;

/// `remedyd replay`: prints the report; returns the exit code (0: a report; 1: the rules or
/// policies do not load, or the store is missing or unreadable; 2: a bad flag, URL or config).
pub fn replay(cli: &Cli, since: &str, format: ReplayFormat) -> i32 {
    self::replay::replay(cli.config.as_deref(), cli.overrides(), since, format)
}

/// `remedyd review`: prints the review to stdout; returns the exit code (1: no such incident or
/// the store cannot be read; 2: bad config).
pub fn review(cli: &Cli, incident: &str) -> i32 {
    let cfg = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("remedyd: {e}");
            return 2;
        }
    };
    let Some(path) = cfg.sqlite_path() else {
        eprintln!(
            "remedyd: review reads a sqlite:// store; for {} use GET /api/v1/incidents/{incident} or the dashboard's review link",
            crate::load::config::redact_url(&cfg.store)
        );
        return 2;
    };
    if !path.exists() {
        eprintln!("remedyd: no store at {}", path.display());
        return 1;
    }
    let store = match crate::adapters::store::sqlite::SqliteStore::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("remedyd: opening store {}: {e}", path.display());
            return 1;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let store: &dyn crate::adapters::store::Store = &store;
    let found = rt.block_on(async {
        let Some(inc) = store.get_incident(incident).await? else {
            return Ok(None);
        };
        let tl = store.timeline(incident).await?;
        Ok::<_, crate::adapters::store::StoreError>(Some((inc, tl)))
    });
    match found {
        Ok(Some((inc, tl))) => {
            out!("{}", crate::domain::report::review::render(&inc, &tl));
            0
        }
        Ok(None) => {
            eprintln!("remedyd: no incident {incident} in {}", path.display());
            1
        }
        Err(e) => {
            eprintln!("remedyd: {e}");
            1
        }
    }
}

/// `remedyd resolve`: asks the engine (of the running daemon, or on PostgreSQL of the leading
/// replica) to resolve an incident by hand, and waits up to [`crate::app::resolve::WAIT`] for it.
/// Returns the exit code: 0 when resolved, and 0 with a message when only queued (no engine
/// applied it in time: the leader applies it when it runs); 1 for an unknown or already
/// resolved incident, or a store that cannot be used; 2 for a bad config or a blank reason or
/// author.
pub fn resolve(cli: &Cli, incident: &str, reason: &str, author: &str) -> i32 {
    let cfg = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("remedyd: {e}");
            return 2;
        }
    };
    let fields = match crate::app::resolve::Fields::check(Some(reason), Some(author)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("remedyd: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("remedyd: starting the async runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async {
        let store = match open_existing_store(&cfg.store).await {
            Ok(s) => s,
            Err((code, msg)) => {
                eprintln!("remedyd: {msg}");
                return code;
            }
        };
        let answer = crate::app::resolve::resolve_by_hand(
            &*store,
            None,
            SystemClock.now(),
            incident,
            &fields,
            crate::app::resolve::WAIT,
        )
        .await;
        match answer {
            Ok(crate::app::resolve::Answer::Resolved(inc)) => {
                outln!(
                    "{} resolved by hand by {}: {}",
                    inc.id, fields.author, fields.reason
                );
                if !inc.paged.is_empty() {
                    outln!("resolve queued for the paged route(s): {}", inc.paged.join(", "));
                }
                0
            }
            Ok(crate::app::resolve::Answer::Queued(request)) => {
                outln!(
                    "{incident}: queued as resolve request {request}; no engine applied it within {}s \
                     (is `remedyd serve` running on this store? with PostgreSQL, does a replica lead?). \
                     The leader applies it when it runs.",
                    crate::app::resolve::WAIT.as_secs()
                );
                0
            }
            Err(crate::app::resolve::ResolveError::Missing(e)) => {
                eprintln!("remedyd: {e}");
                2
            }
            Err(e) => {
                eprintln!("remedyd: {e}");
                1
            }
        }
    })
}

/// Opens the store named by `url` for a one-off command, never creating one: `Err((exit code,
/// message))` — 2 for a URL that is not a store URL, 1 for a store that is missing or cannot be
/// reached.
async fn open_existing_store(
    url: &str,
) -> Result<std::sync::Arc<dyn crate::adapters::store::Store>, (i32, String)> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = std::path::Path::new(path);
        if !path.exists() {
            return Err((1, format!("no store at {}", path.display())));
        }
        let store = crate::adapters::store::sqlite::SqliteStore::open(path)
            .map_err(|e| (1, format!("opening store {}: {e}", path.display())))?;
        return Ok(std::sync::Arc::new(store));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err((
            2,
            format!(
                "store: {}: valid: sqlite://PATH or postgres://…",
                crate::load::config::redact_url(url)
            ),
        ));
    }
    crate::load::dsn::parse_url(url).map_err(|e| (2, format!("store: {e}")))?;
    let store = crate::adapters::store::postgres::PgStore::connect(url)
        .await
        .map_err(|e| (1, format!("opening the PostgreSQL store: {e}")))?;
    Ok(std::sync::Arc::new(store))
}

/// `remedyd test`: returns the exit code.
pub fn test(files: &[PathBuf]) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut failed = 0;
    for f in files {
        match rt.block_on(crate::app::cli::test::run_file(f)) {
            Ok(fails) if fails.is_empty() => outln!("{}: SUCCESS", f.display()),
            Ok(fails) => {
                failed += 1;
                outln!("{}: FAILED", f.display());
                for x in fails {
                    outln!("  {x}");
                }
            }
            Err(e) => {
                failed += 1;
                outln!("{}: ERROR\n  {e}", f.display());
            }
        }
    }
    i32::from(failed > 0)
}

impl Cli {
    /// Flag overrides for the config.
    pub fn overrides(&self) -> Overrides {
        let mut o = Overrides {
            rules: self.rules.clone(),
            policies: self.policies.clone(),
            ..Default::default()
        };
        if let Command::Serve {
            listen,
            store,
            mode,
        } = &self.command
        {
            o.listen = listen.clone();
            o.store = store.clone();
            o.mode = *mode;
        }
        if let Command::Review { store, .. }
        | Command::Resolve { store, .. }
        | Command::Replay { store, .. } = &self.command
        {
            o.store = store.clone();
        }
        o
    }
}

/// `remedyd check`: returns the exit code.
pub fn check(cli: &Cli) -> i32 {
    let cfg = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    match crate::app::load_ruleset(&cfg, &Executors::builtin()) {
        Ok(rs) => {
            outln!(
                "ok: {} rule(s), {} polic(ies), {} route(s) from {} file(s); mode {}",
                rs.rules.len(),
                rs.policies.len(),
                rs.routes.len(),
                rs.files.len(),
                cfg.mode.as_str()
            );
            for n in route_notes(&rs) {
                outln!("note: {n}");
            }
            if cfg.alertmanager_url.is_empty() {
                for p in rs.policies.values().filter(|p| p.silence.is_some()) {
                    outln!(
                        "note: policy {:?} asks for Alertmanager silences but alertmanager_url is not set: it silences nothing",
                        p.name
                    );
                }
            }
            0
        }
        Err(d) => {
            eprint!("{d}");
            eprintln!("{} error(s)", d.len());
            1
        }
    }
}

/// Notes for `check`: routes that will record pages without sending them (not errors).
fn route_notes(rs: &crate::load::ruleset::Ruleset) -> Vec<String> {
    rs.routes.values().filter_map(|r| r.note()).collect()
}

/// `remedyd simulate`: prints the plan for each alert; acts on nothing. Returns the exit code.
pub fn simulate(cli: &Cli, alerts: &std::path::Path) -> i32 {
    let cfg = match Config::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let executors = Executors::builtin();
    let rs = match crate::app::load_ruleset(&cfg, &executors) {
        Ok(rs) => rs,
        Err(d) => {
            eprint!("{d}");
            return 1;
        }
    };
    let body = match std::fs::read(alerts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", alerts.display());
            return 1;
        }
    };
    let (receipt, signals) = match alertmanager::parse(&body, SystemClock.now()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}: {e}", alerts.display());
            return 1;
        }
    };
    outln!(
        "simulate: {} alert(s), mode {} (nothing is sent)",
        signals.len(),
        cfg.mode.as_str()
    );
    if receipt.truncated_alerts > 0 {
        outln!(
            "note: truncatedAlerts = {}: those alerts are missing, not resolved",
            receipt.truncated_alerts
        );
    }
    for s in &signals {
        outln!(
            "\nalert {} {} {:?}",
            s.fingerprint,
            s.status.as_str(),
            s.labels
        );
        let mut any = false;
        for rule in rs.candidates(s) {
            let m = match rule.evaluate(s) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(miss) => {
                    outln!(
                        "  rule {}: matched but not mapped: {}",
                        miss.rule,
                        miss.reason
                    );
                    continue;
                }
            };
            any = true;
            outln!(
                "  rule {} → level {} on {} (policy {})",
                m.rule,
                m.level,
                m.target.key(),
                m.policy
            );
            if s.status == Status::Resolved {
                outln!(
                    "    resolved: resolves an open incident and cancels its pending steps; never acts"
                );
                continue;
            }
            if !m.for_.is_zero() {
                outln!(
                    "    waits {} (for) before the first step",
                    crate::domain::time::fmt_duration(m.for_)
                );
            }
            let Some(policy) = rs.policies.get(m.policy) else {
                continue;
            };
            let Some((ladder, l)) = policy.ladder(m.level) else {
                continue;
            };
            let mode = policy.mode.unwrap_or(cfg.mode);
            outln!("    ladder level {ladder} ({}):", mode.as_str());
            for (i, step) in l.steps.iter().enumerate() {
                let req = ActionRequest::for_step(
                    "INC-SIMULATED",
                    m.level,
                    m.rule,
                    &m.target,
                    &s.labels,
                    &rs.vars,
                    step,
                );
                let plan = executors
                    .get(&step.action)
                    .map(|e| e.plan(&req))
                    .unwrap_or_else(|| Err("unknown action".into()));
                let budget = step.budget.unwrap_or(rs.limits.action_target);
                let verify = match &step.verify {
                    crate::domain::policy::Verify::None
                    | crate::domain::policy::Verify::ResolvedWithin(_) => step.verify.condition(),
                    v @ crate::domain::policy::Verify::Query { query, within, .. } => format!(
                        "{} {} within {}",
                        query.split_whitespace().collect::<Vec<_>>().join(" "),
                        v.condition(),
                        crate::domain::time::fmt_duration(*within)
                    ),
                    v @ crate::domain::policy::Verify::Http { url, within, .. } => format!(
                        "GET {url} {} within {}",
                        v.condition(),
                        crate::domain::time::fmt_duration(*within)
                    ),
                };
                let on_failure = match step.on_failure {
                    crate::domain::policy::OnFailure::Next => "next",
                    crate::domain::policy::OnFailure::Escalate => "escalate",
                };
                outln!(
                    "    {}. {} ({}), budget {}/{}, verify: {verify}, on failure: {on_failure}",
                    i + 1,
                    step.name,
                    step.action,
                    budget.max,
                    crate::domain::time::fmt_duration(budget.per),
                );
                match plan {
                    Ok(p) => outln!("       request: {p}"),
                    Err(e) => outln!("       cannot build request: {e}"),
                }
            }
            outln!("    then escalate to {}", l.escalate_to);
        }
        if !any {
            outln!("  no rule matches: recorded, nothing to do");
        }
    }
    0
}
