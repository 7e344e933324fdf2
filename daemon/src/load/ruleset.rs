//! Loading `rules/` and `policies/` into one validated set, reporting every error at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use crate::domain::diag::Diagnostics;
use crate::domain::policy::{self, Limits, Policy, PolicyParts, Route};
use crate::domain::rules::index::RuleIndex;
use crate::domain::rules::{self, Rule};
use crate::domain::signal::Signal;
use crate::load::secrets::SystemSecrets;

/// The current ruleset, swapped whole on reload.
pub type SharedRuleset = Arc<RwLock<Arc<Ruleset>>>;

/// What loading needs to know of the actions: declared here, implemented by the action
/// registry, so that loading does not depend on the executors.
pub trait ActionCatalogue {
    /// Checks a step's action kind and parameters; the error names what would be valid.
    fn validate(&self, kind: &str, params: &serde_json::Value) -> Result<(), String>;
    /// Whether the action only gathers evidence (and so may go without `verify`).
    fn gathers_evidence(&self, kind: &str) -> bool;
}

/// Rules, policies, routes and limits: what the engine runs on. Replaced whole on reload.
#[derive(Clone, Debug, Default)]
pub struct Ruleset {
    /// In file order (files sorted by name).
    pub rules: Vec<Rule>,
    /// By name.
    pub policies: BTreeMap<String, Policy>,
    /// By name.
    pub routes: BTreeMap<String, Route>,
    /// Limits.
    pub limits: Limits,
    /// Template variables `vars.*`.
    pub vars: BTreeMap<String, String>,
    /// Files loaded, for the log.
    pub files: Vec<PathBuf>,
    /// Where each policy is defined (`file:line`), for later cross-checks.
    pub policy_origins: BTreeMap<String, String>,
    /// The daily digest, when a policies file sets one.
    pub digest: Option<policy::DigestSchedule>,
    /// Maintenance windows (`maintenance:`): automation holds while one covers an incident.
    pub maintenance: Vec<policy::maintenance::Maintenance>,
    /// `rules`, filed for matching; built on first use, so edit `rules` before matching.
    pub index: LazyIndex,
}

/// A [`RuleIndex`] built on first use. A clone starts empty and files its own rules again, so
/// a ruleset cloned and then edited never matches through the original's index.
#[derive(Default)]
pub struct LazyIndex(OnceLock<RuleIndex>);

impl Clone for LazyIndex {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for LazyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some(i) => write!(f, "RuleIndex({} rules)", i.len()),
            None => f.write_str("RuleIndex(not built)"),
        }
    }
}

impl Ruleset {
    /// The rules that may match `signal`, in file order; the others cannot (rules::index).
    pub fn candidates<'a>(&'a self, signal: &Signal) -> impl Iterator<Item = &'a Rule> + 'a {
        let index = self.index.0.get_or_init(|| RuleIndex::new(&self.rules));
        debug_assert_eq!(index.len(), self.rules.len(), "rules edited after matching");
        index
            .candidates(signal)
            .into_iter()
            .filter_map(|i| self.rules.get(i))
    }
}

fn yaml_files(dir: &Path, diag: &mut Diagnostics) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            diag.push(
                &dir.display().to_string(),
                0,
                "directory",
                format!("cannot read directory: {e}"),
            );
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, diag: &mut Diagnostics) -> Option<T> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diag.push(&file, 0, "file", format!("cannot read: {e}"));
            return None;
        }
    };
    match serde_saphyr::from_str::<T>(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().map(|l| l.line()).unwrap_or(0);
            let msg = e.to_string();
            // serde-saphyr puts the position first ("error: line 6 column 5: ..."); the diagnostic
            // already carries the line.
            let first = msg.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let msg = match first.split_once(": ") {
                Some((pos, rest)) if pos.starts_with("line ") => rest.to_string(),
                _ => first.to_string(),
            };
            diag.push(&file, line, "yaml", msg);
            None
        }
    }
}

/// Loads and compiles both directories. On any error, returns all of them and no ruleset.
pub fn load(
    rules_dir: &Path,
    policies_dir: &Path,
    executors: &dyn ActionCatalogue,
) -> Result<Ruleset, Diagnostics> {
    let mut diag = Diagnostics::default();
    let mut rules: Vec<Rule> = Vec::new();
    let mut files = Vec::new();
    for path in yaml_files(rules_dir, &mut diag) {
        let file = path.display().to_string();
        if let Some(raw) = parse::<rules::RawRuleFile>(&path, &mut diag) {
            for r in rules::compile(&file, raw, &mut diag) {
                if let Some(first) = rules.iter().find(|x| x.name == r.name) {
                    let line = r
                        .origin
                        .rsplit(':')
                        .next()
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    diag.push(
                        &file,
                        line,
                        "name",
                        format!("rule {:?} is already defined at {}", r.name, first.origin),
                    );
                } else {
                    rules.push(r);
                }
            }
        }
        files.push(path);
    }
    let mut parts = PolicyParts::default();
    // A policy file that does not parse defines nothing; naming its policies and routes as
    // missing would only bury the real error.
    let mut unparsed = false;
    for path in yaml_files(policies_dir, &mut diag) {
        let file = path.display().to_string();
        match parse::<policy::RawPolicyFile>(&path, &mut diag) {
            Some(raw) => policy::compile(&file, raw, &SystemSecrets, &mut parts, &mut diag),
            None => unparsed = true,
        }
        files.push(path);
    }
    let known = |names: Vec<&String>, what: &str| {
        if names.is_empty() {
            format!("no {what} is defined")
        } else {
            format!(
                "known: {}",
                names.into_iter().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    for r in rules.iter().filter(|_| !unparsed) {
        if !parts.policies.contains_key(&r.policy) {
            let (file, line) = &r.policy_origin;
            diag.push(
                file,
                *line,
                "policy",
                format!(
                    "rule {:?} names policy {:?}, which no file in {} defines ({})",
                    r.name,
                    r.policy,
                    policies_dir.display(),
                    known(parts.policies.keys().collect(), "policy")
                ),
            );
        }
    }
    for (route, file, line) in parts.route_refs.iter().filter(|_| !unparsed) {
        if !parts.routes.contains_key(route) {
            diag.push(
                file,
                *line,
                "escalate_to",
                format!(
                    "route {route:?} is not defined ({})",
                    known(parts.routes.keys().collect(), "route")
                ),
            );
        }
    }
    for (route, file, line) in parts.notify_refs.iter().filter(|_| !unparsed) {
        match parts.routes.get(route).map(|r| &r.transport) {
            None => diag.push(
                file,
                *line,
                "steps.approve.notify",
                format!(
                    "route {route:?} is not defined ({})",
                    known(parts.routes.keys().collect(), "route")
                ),
            ),
            Some(
                policy::Transport::Webhook { .. }
                | policy::Transport::Slack { .. }
                | policy::Transport::SlackApi { .. },
            ) => {}
            Some(t) => diag.push(
                file,
                *line,
                "steps.approve.notify",
                format!(
                    "route {route:?} is a {} route: an approval request goes to a slack or webhook route",
                    t.kind()
                ),
            ),
        }
    }
    if let Some((d, file, line)) = &parts.digest
        && let Some(r) = parts.routes.get(&d.route)
        && !matches!(
            r.transport,
            policy::Transport::Webhook { .. }
                | policy::Transport::Slack { .. }
                | policy::Transport::SlackApi { .. }
        )
    {
        diag.push(
            file,
            *line,
            "digest.route",
            format!(
                "route {:?} is a {} route: a daily digest would page someone; send it to a webhook or slack route",
                d.route,
                r.transport.kind()
            ),
        );
    }
    for (kind, params, file, line, unverified) in &parts.action_refs {
        if let Err(e) = executors.validate(kind, params) {
            diag.push(file, *line, "action", e);
        } else if let Some((step, step_line)) = unverified
            && !executors.gathers_evidence(kind)
        {
            diag.push(
                file,
                *step_line,
                "steps.verify",
                format!(
                    "step {step:?} has no verify; every step that changes something is verified (e.g. verify: {{resolved_within: 5m}})"
                ),
            );
        }
    }
    if !diag.is_empty() {
        return Err(diag);
    }
    let policy_origins = parts
        .policies
        .iter()
        .map(|(k, (_, o))| (k.clone(), o.clone()))
        .collect();
    Ok(Ruleset {
        rules,
        policies: parts
            .policies
            .into_iter()
            .map(|(k, (p, _))| (k, p))
            .collect(),
        routes: parts.routes,
        limits: parts.limits.map(|(l, _)| l).unwrap_or_default(),
        vars: parts.vars,
        files,
        policy_origins,
        digest: parts.digest.map(|(d, _, _)| d),
        maintenance: parts.maintenance.into_iter().map(|(m, _)| m).collect(),
        index: LazyIndex::default(),
    })
}
