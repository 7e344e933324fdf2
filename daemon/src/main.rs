//! The `remedyd` binary: parses flags, starts telemetry, calls the library.
#![forbid(unsafe_code)]

use clap::Parser;
use remedyd::app::cli::{Cli, Command};
use remedyd::load::config::Config;

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Check => remedyd::app::cli::check(&cli),
        Command::Simulate { alerts } => remedyd::app::cli::simulate(&cli, alerts),
        Command::Test { files } => remedyd::app::cli::test(files),
        Command::Review { incident, .. } => remedyd::app::cli::review(&cli, incident),
        Command::Resolve {
            incident,
            reason,
            author,
            ..
        } => remedyd::app::cli::resolve(&cli, incident, reason, author),
        Command::Replay { since, format, .. } => remedyd::app::cli::replay(&cli, since, *format),
        Command::Serve { .. } => {
            let cfg = match Config::load(cli.config.as_deref(), &cli.overrides()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("remedyd: {e}");
                    std::process::exit(2);
                }
            };
            remedyd::adapters::telemetry::init_logging(cfg.log_format == "json");
            // A panic in any task reaches the log; the supervisor then stops the process.
            remedyd::adapters::telemetry::install_panic_hook();
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            let parts = remedyd::app::Parts {
                faults: test_faults(),
                ..remedyd::app::Parts::for_config(&cfg)
            };
            match rt.block_on(remedyd::app::serve(cfg.clone(), parts)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("remedyd: {e:#}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}

/// Debug builds only (the tests' binary): `REMEDYD_TEST_PANIC=TASK` makes that task panic as
/// soon as it runs, so that a test can watch the real process log the panic and exit non-zero.
/// Release builds ignore the variable.
#[cfg(debug_assertions)]
fn test_faults() -> Option<std::sync::Arc<remedyd::app::supervise::Faults>> {
    use remedyd::app::supervise::{Fault, Faults, Task};
    let name = std::env::var("REMEDYD_TEST_PANIC").ok()?;
    let Some(task) = Task::parse(&name) else {
        eprintln!("remedyd: REMEDYD_TEST_PANIC={name:?} names no task; ignored");
        return None;
    };
    let faults = Faults::new();
    faults.inject(task, Fault::Panic);
    Some(std::sync::Arc::new(faults))
}

/// Release builds take no faults.
#[cfg(not(debug_assertions))]
fn test_faults() -> Option<std::sync::Arc<remedyd::app::supervise::Faults>> {
    None
}
