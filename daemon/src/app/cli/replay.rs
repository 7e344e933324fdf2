//! `remedyd replay`: the command's face; the work is in [`crate::app::replay`].

use std::path::Path;

use super::out::{out, outln};
use crate::adapters::clock::SystemClock;
use crate::app::replay::{Dirs, Format, ReplayError, Request, parse_since, render_text};
use crate::domain::time::Clock;
use crate::load::config::{Config, Overrides};

/// Prints the report for the config at `config` with the command line's `overrides`; returns
/// the exit code.
pub(super) fn replay(
    config: Option<&Path>,
    overrides: Overrides,
    since: &str,
    format: Format,
) -> i32 {
    match build(config, overrides, since).and_then(|req| run(&req)) {
        Ok(report) => {
            match format {
                Format::Text => out!("{}", render_text(&report)),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(j) => outln!("{j}"),
                    Err(e) => {
                        eprintln!("remedyd: replay: {e}");
                        return 1;
                    }
                },
            }
            0
        }
        Err(e) => {
            let text = e.to_string();
            eprint!("remedyd: {text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
            e.exit_code()
        }
    }
}

fn build(config: Option<&Path>, overrides: Overrides, since: &str) -> Result<Request, ReplayError> {
    let cfg = Config::load(config, &overrides).map_err(|e| ReplayError::Usage(e.to_string()))?;
    // The config without --rules and --policies: the rules and policies in force.
    let current = Config::load(
        config,
        &Overrides {
            rules: None,
            policies: None,
            ..overrides
        },
    )
    .map_err(|e| ReplayError::Usage(e.to_string()))?;
    let stale_after = cfg
        .stale_after()
        .map_err(|e| ReplayError::Usage(e.to_string()))?;
    let now = SystemClock.now();
    let candidate = Dirs {
        rules: cfg.rules.clone(),
        policies: cfg.policies.clone(),
    };
    let baseline = Dirs {
        rules: current.rules.clone(),
        policies: current.policies.clone(),
    };
    let since = parse_since(since, now)?;
    if let Ok(Some(kept)) = cfg.signal_retention()
        && since < now.minus(kept)
    {
        eprintln!(
            "remedyd replay: signals are kept for signal_retention ({}): nothing received before {} is left to replay",
            cfg.signal_retention,
            now.minus(kept).to_rfc3339()
        );
    }
    Ok(Request {
        store: cfg.store.clone(),
        since,
        until: now,
        baseline: (!same_dirs(&baseline, &candidate)).then_some(baseline),
        candidate,
        stale_after,
    })
}

/// Whether both name the same directories (however spelled).
fn same_dirs(a: &Dirs, b: &Dirs) -> bool {
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(&a.rules) == canon(&b.rules) && canon(&a.policies) == canon(&b.policies)
}

fn run(req: &Request) -> Result<crate::app::replay::Report, ReplayError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ReplayError::Run(format!("starting the async runtime: {e}")))?;
    rt.block_on(crate::app::replay::replay(req))
}
