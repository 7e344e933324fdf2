//! The `remedyd` binary: parses flags, starts telemetry, calls the library.
#![forbid(unsafe_code)]

use clap::Parser;
use remedyd::cli::{Cli, Command};
use remedyd::config::Config;

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::Check => remedyd::cli::check(&cli),
        Command::Simulate { alerts } => remedyd::cli::simulate(&cli, alerts),
        Command::Test { files } => remedyd::cli::test(files),
        Command::Review { incident, .. } => remedyd::cli::review(&cli, incident),
        Command::Resolve {
            incident,
            reason,
            author,
            ..
        } => remedyd::cli::resolve(&cli, incident, reason, author),
        Command::Serve { .. } => {
            let cfg = match Config::load(cli.config.as_deref(), &cli.overrides()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("remedyd: {e}");
                    std::process::exit(2);
                }
            };
            remedyd::telemetry::init_logging(cfg.log_format == "json");
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            match rt.block_on(remedyd::app::serve(
                cfg.clone(),
                remedyd::app::Parts::for_config(&cfg),
            )) {
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
