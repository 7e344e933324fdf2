//! The integration tests: one test binary, one module per subject (`cargo nextest run --test it
//! store::` runs the store's). One binary is one link after a change to the library instead of
//! one per file; the shared support (tests/support/) is compiled once, as `crate::support`.
//!
//! **Meant for nextest** (`scripts/test.sh`, which CI runs through `.ci/run`): nextest runs each
//! test in a process of its own, so process-wide state never leaks from one test into another:
//! environment variables, the rustls crypto provider, a global tracing subscriber, the process
//! id, file descriptors inherited by children, a panic that aborts, and a slow test's share of
//! the CPU (each timed wait is measured against the tests it runs beside). Under `cargo test`
//! the tests of all 26 modules share one process and its threads: they are written to tolerate
//! that (none sets an environment variable; the process-wide installs are idempotent), but a new
//! test that changes process-wide state must not rely on running alone.
//!
//! Not here: the model-based test (`tests/model/`, its own binary: one long generated run that
//! uses every core for minutes, with its own knobs, `cargo nextest run --test model`) and the
//! staging suite against a real cluster (`tests/staging.rs`, opt-in: `--features staging`).
//! Unit tests live beside the code in `daemon/src`.

#[path = "../support/mod.rs"]
mod support;

mod architecture;
mod layout;

// The HTTP action and the webhook pager against loopback servers.
mod actions;
mod pagers;
mod postgres_actions;
mod probe;
mod slack_threads;

// Human approval of steps: Slack clicks signed in the test, the token API, the fake cluster.
mod approvals;
mod store_approvals;

// The core loop, in-process through the real HTTP API.
mod core_loop;
mod listener;
mod maintenance_api;
mod resolve;
mod silences;
mod supervise;

// Notifications and reports built from known incident histories.
mod digest;
mod outbox;
mod replay;
mod review;

// The store contract and PostgreSQL.
mod ha;
mod pg_tls;
mod retention;
mod store;
// Supply chain: sources, licences, bans, duplicates, advisories (offline).
mod supply_chain;

// The binary as a child process.
mod process;

// The binary under kill -9, failover and floods (REMEDYD_CHAOS_CAMPAIGN for a campaign).
mod chaos;
// Disk trouble and clock jumps.
mod faults;

// Kubernetes: the fake API server against kubectl, the actions, the runbook's scenarios.
mod fake_kube;
mod handsoff;
mod kube_actions;
mod kube_evidence_reads;
mod kube_scenarios;

// Real Prometheus, Alertmanager and a browser.
mod alertmanager_e2e;
mod dashboard;
mod prometheus_e2e;
mod read_access;

// What ships: rules, policies, manifests, dashboards, Prometheus rules, the docs; the loader's
// corpus.
mod check;
mod docs;
mod grafana;
mod manifests;
mod promtool;
mod rule_tests;

// The parsers of untrusted input under mutation: the webhook, the YAML and TOML, and every
// answer from a pager, Alertmanager, Prometheus and the API server.
mod fuzz_config;
mod fuzz_responses;
mod fuzz_webhook;
