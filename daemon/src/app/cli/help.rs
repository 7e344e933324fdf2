//! The examples shown under each command's `--help`, written to work from the repository root;
//! tests/it/docs.rs checks that every command's help has them.

/// `remedyd --help`.
pub const MAIN: &str = "\
Examples:
  remedyd serve                      run on ./remedyd.toml, else the defaults:
                                     dry-run, rules/ and policies/, sqlite://remedyd.db,
                                     http://127.0.0.1:9097
  remedyd check                      validate the config, rules/ and policies/
  remedyd simulate --alerts tests/fixtures/alertmanager/02-firing-grouped-3-alerts.json
  remedyd test rules/tests/runbook.test.yaml
  remedyd review INC-2026-0042
  remedyd resolve INC-2026-0042 --reason \"resolve lost by Alertmanager\" --author alice
  remedyd replay --since 7d --policies policies-candidate

Every key of remedyd.toml can also be set as REMEDYD_<KEY> (REMEDYD_MODE=enforce).
Documentation: README.md and docs/ in the repository (docs/cli.md for these commands).";

/// `remedyd serve --help`.
pub const SERVE: &str = "\
Examples:
  remedyd serve
  remedyd serve --listen 127.0.0.1:9097 --store sqlite://remedyd.db --mode dry-run
  REMEDYD_STORE=postgres://remedyd:PASSWORD@db:5432/remedyd remedyd serve --config /etc/remedyd/remedyd.toml

Exit status: 0 after a clean shutdown (SIGTERM or SIGINT); 1 when the rules or policies are
invalid or a task fails; 2 on a config error. SIGHUP reloads rules/ and policies/.";

/// `remedyd check --help`.
pub const CHECK: &str = "\
Examples:
  remedyd check
  remedyd check --rules rules --policies policies
  REMEDYD_MODE=enforce remedyd check --config remedyd.example.toml

Prints `ok: N rule(s), …` and exits 0, or prints every problem as `file:line: field: message`
and exits 1 (also on a config error).";

/// `remedyd simulate --help`.
pub const SIMULATE: &str = "\
Examples:
  remedyd simulate --alerts tests/fixtures/alertmanager/01-firing-single-alert.json
  remedyd simulate --alerts tests/fixtures/alertmanager/02-firing-grouped-3-alerts.json --policies policies

Reads the file as the webhook would and prints, for each alert and matching rule, the level,
target, policy, ladder and the exact requests. It sends nothing and does not open the store.
Exits 1 when the config, rules, policies or the file cannot be read.";

/// `remedyd test --help`.
pub const TEST: &str = "\
Examples:
  remedyd test rules/tests/runbook.test.yaml
  remedyd test rules/tests/runbook.test.yaml examples/polled/tests.yaml

Each file names its rules and policies directories; the cases run the real engine on a manual
clock, in dry-run, with a throwaway store. Prints FILE: SUCCESS, FAILED or ERROR per file and
exits 1 on any failure.";

/// `remedyd review --help`.
pub const REVIEW: &str = "\
Examples:
  remedyd review INC-2026-0042
  remedyd review INC-2026-0042 --store sqlite:///var/lib/remedyd/remedyd.db > INC-2026-0042.md

Reads a sqlite:// store only (on PostgreSQL, use the dashboard's /incidents/ID/review.md).
Exits 1 for an unknown incident or a missing store (it never creates one), 2 on a config error.";

/// `remedyd resolve --help`.
pub const RESOLVE: &str = "\
Examples:
  remedyd resolve INC-2026-0042 --reason \"resolve lost by Alertmanager\" --author alice
  remedyd resolve INC-2026-0042 --reason \"service healthy\" --author alice --store postgres://remedyd:PASSWORD@db:5432/remedyd

Waits up to 5 s for the engine. Exits 0 when resolved, or when queued because no engine
applied it in time (the leader applies it when it runs); 1 for an unknown or already resolved
incident, or a store that is missing or unreachable; 2 on a bad config, store URL or a blank
--reason or --author.";

/// `remedyd replay --help`.
pub const REPLAY: &str = "\
Examples:
  remedyd replay --since 7d --policies policies-candidate
  remedyd replay --since 2026-11-20T00:00:00Z --rules rules-new --policies policies-new --store sqlite:///var/lib/remedyd/remedyd.db
  remedyd replay --since 24h --policies policies-candidate --format json --store postgres://remedyd:PASSWORD@db:5432/remedyd

Runs the signals received since then through the candidate rules and policies (--rules and
--policies; default: those of the config), in dry-run on a clock that follows the signals, and
prints the incidents that would not open, would open, or would differ in steps, pages, budgets
hit, level or end: against what the store recorded, and against a replay of the config's
rules and policies. It only reads the store (SQLite read-only, PostgreSQL in a READ ONLY
transaction). Exits 0 with a report; 1 when the rules or policies do not load (every problem
as file:line) or the store is missing or unreadable; 2 on a bad --since, store URL or config.";
