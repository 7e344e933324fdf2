//! Scopes: what a budget, a breaker or a pause applies to. One type, one spelling: the key the
//! store keeps (`global`, `namespace:N`, `rule:R`, `action:KIND:TARGET`) is its `Display`, and
//! `FromStr` reads it back.

use std::fmt;
use std::str::FromStr;

use crate::domain::rules::Target;

/// What a budget, a breaker or a pause covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Everything remedyd does (`global`).
    Global,
    /// One namespace (`namespace:NAME`).
    Namespace(String),
    /// One rule (`rule:NAME`).
    Rule(String),
    /// One action on one target (`action:KIND:TARGET`, the target as [`Target::key`]).
    Action {
        /// The action kind, e.g. `kube_rollout_restart`.
        action: String,
        /// The target's key, e.g. `deployment/shop/checkout`.
        target: String,
    },
}

impl Scope {
    /// The scope of `action` on `target`.
    pub fn action(action: &str, target: &Target) -> Self {
        Scope::Action {
            action: action.to_string(),
            target: target.key(),
        }
    }

    /// The scope of one rule.
    pub fn rule(name: &str) -> Self {
        Scope::Rule(name.to_string())
    }

    /// The scope of one namespace.
    pub fn namespace(name: &str) -> Self {
        Scope::Namespace(name.to_string())
    }

    /// The key the store keeps.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Whether this is the global scope.
    pub fn is_global(&self) -> bool {
        matches!(self, Scope::Global)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Namespace(n) => write!(f, "namespace:{n}"),
            Scope::Rule(r) => write!(f, "rule:{r}"),
            Scope::Action { action, target } => write!(f, "action:{action}:{target}"),
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "global" {
            return Ok(Scope::Global);
        }
        let named = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(format!("{s:?}: the {what} name is empty"))
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(rest) = s.strip_prefix("namespace:") {
            return named(rest, "namespace").map(Scope::Namespace);
        }
        if let Some(rest) = s.strip_prefix("rule:") {
            return named(rest, "rule").map(Scope::Rule);
        }
        if let Some(rest) = s.strip_prefix("action:") {
            // Action kinds never contain `:`; the target key may.
            return match rest.split_once(':') {
                Some((action, target)) if !action.is_empty() && !target.is_empty() => {
                    Ok(Scope::Action {
                        action: action.to_string(),
                        target: target.to_string(),
                    })
                }
                _ => Err(format!("{s:?}: expected action:KIND:TARGET")),
            };
        }
        Err(format!(
            "{s:?}: expected global, namespace:NAME, rule:NAME or action:KIND:TARGET"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::TargetKind;

    #[test]
    fn every_scope_reads_back_what_it_writes() {
        let target = Target {
            kind: TargetKind::Deployment,
            namespace: "shop".into(),
            name: "checkout".into(),
        };
        for s in [
            Scope::Global,
            Scope::namespace("shop"),
            Scope::rule("HighErrorRate"),
            Scope::action("kube_rollout_restart", &target),
        ] {
            assert_eq!(s.key().parse::<Scope>(), Ok(s.clone()), "{s}");
        }
        assert_eq!(
            Scope::action("kube_rollout_restart", &target).key(),
            "action:kube_rollout_restart:deployment/shop/checkout"
        );
    }

    #[test]
    fn a_malformed_key_is_refused_with_what_would_be_valid() {
        for bad in ["", "rule:", "namespace:", "action:x", "action::t", "team:x"] {
            let e = bad.parse::<Scope>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
