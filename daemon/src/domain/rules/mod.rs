//! Rules: which signals matter, at which level, on which target, with which policy.

pub mod index;
pub mod matcher;
pub mod polled;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::domain::diag::Diagnostics;
use crate::domain::signal::Signal;
use crate::domain::template::Template;
use crate::domain::time::parse_duration;
pub use matcher::Matcher;

/// Default namespace of the runbook's services.
pub const DEFAULT_NAMESPACE: &str = "python-services";

/// A `rules/*.yaml` file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleFile {
    /// The rules.
    pub rules: Vec<RawRule>,
}

/// One rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "match", default)]
    matchers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    query: Option<Spanned<String>>,
    #[serde(default)]
    every: Option<Spanned<String>>,
    #[serde(default)]
    levels: Option<Vec<polled::RawThreshold>>,
    #[serde(default)]
    level: Option<Spanned<u8>>,
    #[serde(default)]
    level_from: Option<Spanned<RawLevelFrom>>,
    target: Spanned<RawTarget>,
    policy: Spanned<String>,
    #[serde(default, rename = "for")]
    for_: Option<Spanned<String>>,
}

/// `level_from: {label: severity, map: {warning: 1, critical: 2}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevelFrom {
    label: String,
    map: BTreeMap<String, Spanned<u8>>,
}

/// The target as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    kind: Spanned<String>,
    name: Spanned<String>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
}

/// What a rule acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A Kubernetes Deployment.
    Deployment,
    /// A Kubernetes node.
    Node,
    /// A database.
    Database,
    /// A set of services (platform-wide incidents).
    Platform,
}

impl TargetKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "deployment" => Self::Deployment,
            "node" => Self::Node,
            "database" => Self::Database,
            "platform" => Self::Platform,
            _ => return None,
        })
    }
    /// Spelling in keys and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::Node => "node",
            Self::Database => "database",
            Self::Platform => "platform",
        }
    }
    fn namespaced(self) -> bool {
        matches!(self, Self::Deployment | Self::Database)
    }
}

/// A concrete target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Kind of object.
    pub kind: TargetKind,
    /// Namespace, empty for cluster-scoped kinds.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl Target {
    /// `kind/namespace/name`: the unit of "one ladder at a time" and of budgets.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// How a rule derives the level.
#[derive(Clone, Debug)]
pub enum LevelSpec {
    /// Always this level.
    Fixed(u8),
    /// From a label's value.
    FromLabel {
        /// Label name.
        label: String,
        /// Value → level.
        map: BTreeMap<String, u8>,
    },
    /// From a polled query's value (the poller computes it; signals carry it).
    Polled(Vec<polled::Threshold>),
}

/// A polled rule's query.
#[derive(Clone, Debug)]
pub struct PolledQuery {
    /// PromQL.
    pub query: String,
    /// Interval.
    pub every: Duration,
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// All must match (alert rules).
    pub matchers: Vec<Matcher>,
    /// The query, for polled rules.
    pub polled: Option<PolledQuery>,
    /// Level derivation.
    pub level: LevelSpec,
    /// Target kind.
    pub target_kind: TargetKind,
    /// Target name template.
    pub target_name: Template,
    /// Target namespace template.
    pub target_namespace: Option<Template>,
    /// Policy name.
    pub policy: String,
    /// Wait before the first step.
    pub for_: Duration,
    /// File and line of the rule, for messages.
    pub origin: String,
    /// File and line of its `policy:` field, for the cross-check against policies.
    pub policy_origin: (String, u64),
}

/// The result of matching one signal against one rule. Names are the rule's own (borrowed:
/// matching runs per signal, and copies of them were allocations per alert).
#[derive(Clone, Debug, PartialEq)]
pub struct Match<'r> {
    /// Rule name.
    pub rule: &'r str,
    /// Level.
    pub level: u8,
    /// Target.
    pub target: Target,
    /// Policy name.
    pub policy: &'r str,
    /// Delay before acting.
    pub for_: Duration,
}

/// Why a rule whose matchers matched still did not apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Miss {
    /// Rule name.
    pub rule: String,
    /// Reason.
    pub reason: String,
}

impl Rule {
    /// Matches a signal; `Ok(None)` when the matchers do not match, `Err` when they do but the
    /// level or target cannot be derived (recorded, never guessed).
    pub fn evaluate(&self, signal: &Signal) -> Result<Option<Match<'_>>, Miss> {
        let mine = match (&self.polled, &signal.rule) {
            (Some(_), Some(r)) => *r == self.name,
            (None, None) => self.matchers.iter().all(|m| m.matches(&signal.labels)),
            _ => false,
        };
        if !mine {
            return Ok(None);
        }
        let miss = |reason: String| Miss {
            rule: self.name.clone(),
            reason,
        };
        let level = match &self.level {
            LevelSpec::Polled(_) => signal
                .level
                .filter(|l| (1..=3).contains(l))
                .ok_or_else(|| miss("polled signal carries no level".into()))?,
            LevelSpec::Fixed(l) => *l,
            LevelSpec::FromLabel { label, map } => {
                let v = signal.labels.get(label).map(String::as_str).unwrap_or("");
                *map.get(v).ok_or_else(|| {
                    miss(format!(
                        "label {label}={v:?} maps to no level (known: {})",
                        map.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?
            }
        };
        let vars = &signal.labels;
        let name = self.target_name.render(vars).map_err(miss)?;
        let namespace = match &self.target_namespace {
            Some(t) => t.render(vars).map_err(miss)?,
            None => String::new(),
        };
        if name.is_empty() {
            return Err(miss("target name rendered empty".into()));
        }
        Ok(Some(Match {
            rule: &self.name,
            level,
            target: Target {
                kind: self.target_kind,
                namespace,
                name,
            },
            policy: &self.policy,
            for_: self.for_,
        }))
    }
}

/// Compiles raw rules, reporting every problem to `diag`.
pub fn compile(file: &str, raw: RawRuleFile, diag: &mut Diagnostics) -> Vec<Rule> {
    let mut out = Vec::new();
    for r in raw.rules {
        let line = r.name.referenced.line();
        let at = |l: u64| format!("{file}:{l}");
        let before = diag.len();
        if r.name.value.is_empty()
            || !r
                .name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            diag.push(
                file,
                line,
                "name",
                format!(
                    "rule name {:?} must be non-empty letters, digits, - and _",
                    r.name.value
                ),
            );
        }
        let mut matchers = Vec::new();
        let mut polled = None;
        match (&r.matchers, &r.query) {
            (Some(ms), None) => {
                if ms.value.is_empty() {
                    diag.push(
                        file,
                        ms.referenced.line(),
                        "match",
                        "at least one matcher is required (e.g. alertname=\"HighErrorRate\")",
                    );
                }
                for m in &ms.value {
                    match Matcher::parse_list(&m.value) {
                        Ok(m) => matchers.extend(m),
                        Err(e) => diag.push(file, m.referenced.line(), "match", e),
                    }
                }
                if r.every.is_some() || r.levels.is_some() {
                    diag.push(
                        file,
                        line,
                        "every",
                        "`every` and `levels` belong to polled rules (with `query`)",
                    );
                }
            }
            (None, Some(q)) => {
                if let Err(e) = polled::check_promql(&q.value) {
                    diag.push(file, q.referenced.line(), "query", e);
                }
                let every = match &r.every {
                    Some(e) => parse_duration(&e.value).unwrap_or_else(|m| {
                        diag.push(file, e.referenced.line(), "every", m);
                        Duration::from_secs(15)
                    }),
                    None => Duration::from_secs(15),
                };
                if every < Duration::from_secs(1) {
                    diag.push(
                        file,
                        q.referenced.line(),
                        "every",
                        "every must be at least 1s",
                    );
                }
                polled = Some(PolledQuery {
                    query: q.value.clone(),
                    every,
                });
            }
            _ => diag.push(
                file,
                line,
                "match",
                "set exactly one of `match` (Alertmanager alerts) or `query` (polled PromQL)",
            ),
        }
        let level = match (&r.level, &r.level_from) {
            _ if polled.is_some() => {
                if r.level.is_some() || r.level_from.is_some() {
                    diag.push(
                        file,
                        line,
                        "level",
                        "a polled rule takes its levels from `levels:` thresholds",
                    );
                }
                LevelSpec::Polled(polled::compile(
                    file,
                    r.levels.as_deref().unwrap_or(&[]),
                    diag,
                ))
            }
            (Some(l), None) => {
                check_level(file, l.referenced.line(), "level", l.value, diag);
                LevelSpec::Fixed(l.value)
            }
            (None, Some(lf)) => {
                if lf.value.map.is_empty() {
                    diag.push(
                        file,
                        lf.referenced.line(),
                        "level_from.map",
                        "map at least one label value to a level",
                    );
                }
                for (k, v) in &lf.value.map {
                    check_level(
                        file,
                        v.referenced.line(),
                        &format!("level_from.map.{k}"),
                        v.value,
                        diag,
                    );
                }
                LevelSpec::FromLabel {
                    label: lf.value.label.clone(),
                    map: lf
                        .value
                        .map
                        .iter()
                        .map(|(k, v)| (k.clone(), v.value))
                        .collect(),
                }
            }
            _ => {
                diag.push(
                    file,
                    line,
                    "level",
                    "set exactly one of `level` (1-3) or `level_from` ({label, map})",
                );
                LevelSpec::Fixed(1)
            }
        };
        let t = &r.target.value;
        let kind = TargetKind::parse(&t.kind.value).unwrap_or_else(|| {
            diag.push(
                file,
                t.kind.referenced.line(),
                "target.kind",
                format!(
                    "unknown target kind {:?}; valid: deployment, node, database, platform",
                    t.kind.value
                ),
            );
            TargetKind::Deployment
        });
        let target_name = Template::parse(&t.name.value).unwrap_or_else(|e| {
            diag.push(file, t.name.referenced.line(), "target.name", e);
            Template::parse("").expect("empty template parses")
        });
        let target_namespace = match (&t.namespace, kind.namespaced()) {
            (Some(ns), true) => Some(Template::parse(&ns.value).unwrap_or_else(|e| {
                diag.push(file, ns.referenced.line(), "target.namespace", e);
                Template::parse("").expect("empty template parses")
            })),
            (None, true) => Some(
                Template::parse(&format!("{{{{namespace|{DEFAULT_NAMESPACE}}}}}"))
                    .expect("default namespace template parses"),
            ),
            (Some(ns), false) => {
                diag.push(
                    file,
                    ns.referenced.line(),
                    "target.namespace",
                    format!("a {} target has no namespace", kind.as_str()),
                );
                None
            }
            (None, false) => None,
        };
        let for_ = match &r.for_ {
            Some(f) => parse_duration(&f.value).unwrap_or_else(|e| {
                diag.push(file, f.referenced.line(), "for", e);
                Duration::ZERO
            }),
            None => Duration::ZERO,
        };
        if diag.len() == before {
            out.push(Rule {
                name: r.name.value.clone(),
                description: r.description.unwrap_or_default(),
                matchers,
                polled,
                level,
                target_kind: kind,
                target_name,
                target_namespace,
                policy: r.policy.value.clone(),
                for_,
                origin: at(line),
                policy_origin: (file.to_string(), r.policy.referenced.line()),
            });
        }
    }
    out
}

fn check_level(file: &str, line: u64, field: &str, level: u8, diag: &mut Diagnostics) {
    if !(1..=3).contains(&level) {
        diag.push(
            file,
            line,
            field,
            format!("level {level} is out of range; valid: 1, 2, 3"),
        );
    }
}
