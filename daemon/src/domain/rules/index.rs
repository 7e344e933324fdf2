//! Which rules can match a signal, found without trying them all.
//!
//! Every signal used to be tried against every rule in turn; with 10 000 rules that is 10 000
//! evaluations per alert. The index files each rule under one label it pins down:
//!
//! - an equality matcher `label="v"` matches only signals whose `label` is `v` (a missing
//!   label is `""`, as in Alertmanager), so the rule is filed under (`label`, `v`);
//! - a regex that is a plain alternation of literals (`alertname=~"KubePodCrashLooping|
//!   KubePodNotReady"`, anchored like every matcher regex) matches only those values, so the
//!   rule is filed under each of them.
//!
//! Of a rule's such matchers, `alertname` is preferred (most rules name their alert), then the
//! label most rules are filed under (fewer lookups per signal). A rule with none of them
//! (`!=`, `!~`, or real regexes only) is tried for every alert. A polled rule is filed under its
//! own name: a polled signal is for its rule only.
//!
//! [`RuleIndex::candidates`] returns the positions of the rules worth evaluating, ascending, so
//! rules are still evaluated in file order and [`Rule::evaluate`] still decides: the index only
//! skips rules that cannot match. The unit tests check that on generated rule sets.

use std::collections::{BTreeMap, HashMap};

use super::Rule;
use super::matcher::Op;
use crate::domain::signal::Signal;

/// Rule positions by the values of one label.
#[derive(Clone, Debug, Default)]
struct ByValue {
    label: String,
    values: HashMap<String, Vec<usize>>,
}

/// The rules of a ruleset, filed for matching (module docs).
#[derive(Clone, Debug, Default)]
pub struct RuleIndex {
    /// One entry per label some rule is filed under; `alertname` first when present.
    by_label: Vec<ByValue>,
    /// Alert rules tried for every alert signal.
    always: Vec<usize>,
    /// Polled rules by name.
    polled: HashMap<String, Vec<usize>>,
    /// How many rules were indexed (a guard against using an index of another rule list).
    len: usize,
}

/// The values a matcher admits, when it admits a known finite set; `None` otherwise.
fn pinned_values(op: Op, value: &str) -> Option<Vec<String>> {
    match op {
        Op::Eq => Some(vec![value.to_string()]),
        Op::Re => literal_alternatives(value),
        Op::Ne | Op::NotRe => None,
    }
}

/// `a|b\.c|d` → `["a", "b.c", "d"]`; `None` when the regex is anything but literals joined by
/// `|` (classes, repetition, groups, flags, anchors or escapes such as `\d`).
fn literal_alternatives(re: &str) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push(String::new()),
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => out.last_mut()?.push(e),
                _ => return None,
            },
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' => {
                return None;
            }
            c => out.last_mut()?.push(c),
        }
    }
    Some(out)
}

impl RuleIndex {
    /// Files every rule (module docs).
    pub fn new(rules: &[Rule]) -> Self {
        // Which labels each alert rule could be filed under, with their values.
        let options: Vec<Vec<(&str, Vec<String>)>> = rules
            .iter()
            .map(|r| {
                if r.polled.is_some() {
                    return Vec::new();
                }
                r.matchers
                    .iter()
                    .filter_map(|m| Some((m.name.as_str(), pinned_values(m.op, &m.value)?)))
                    .collect()
            })
            .collect();
        let mut popularity: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &options {
            for (label, _) in o {
                *popularity.entry(label).or_default() += 1;
            }
        }
        let mut index = RuleIndex {
            len: rules.len(),
            ..RuleIndex::default()
        };
        for (i, (rule, opts)) in rules.iter().zip(options).enumerate() {
            if rule.polled.is_some() {
                index.polled.entry(rule.name.clone()).or_default().push(i);
                continue;
            }
            let best = opts.into_iter().max_by_key(|(label, _)| {
                (
                    *label == "alertname",
                    popularity.get(label).copied(),
                    *label,
                )
            });
            let Some((label, values)) = best else {
                index.always.push(i);
                continue;
            };
            let slot = match index.by_label.iter().position(|b| b.label == label) {
                Some(p) => p,
                None => {
                    index.by_label.push(ByValue {
                        label: label.to_string(),
                        values: HashMap::new(),
                    });
                    index.by_label.len() - 1
                }
            };
            for v in values {
                let ids = index.by_label[slot].values.entry(v).or_default();
                if ids.last() != Some(&i) {
                    ids.push(i);
                }
            }
        }
        index
            .by_label
            .sort_by_key(|b| (b.label != "alertname", b.label.clone()));
        index
    }

    /// How many rules this index was built from.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it was built from no rules.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions of the rules that may match `signal`, ascending (file order); every rule
    /// left out cannot match it.
    pub fn candidates(&self, signal: &Signal) -> Vec<usize> {
        if let Some(rule) = &signal.rule {
            return self.polled.get(rule).cloned().unwrap_or_default();
        }
        let mut out = self.always.clone();
        for b in &self.by_label {
            let v = signal
                .labels
                .get(&b.label)
                .map(String::as_str)
                .unwrap_or("");
            if let Some(ids) = b.values.get(v) {
                out.extend_from_slice(ids);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::diag::Diagnostics;
    use crate::domain::rules::{RawRuleFile, compile};
    use crate::domain::signal::{Labels, Signal, Source, Status};
    use crate::domain::time::Timestamp;

    fn alert(labels: Labels) -> Signal {
        Signal {
            source: Source::Webhook,
            status: Status::Firing,
            labels,
            annotations: Labels::new(),
            starts_at: Timestamp(0),
            ends_at: None,
            fingerprint: "f".into(),
            generator_url: String::new(),
            value: None,
            rule: None,
            level: None,
        }
    }

    #[test]
    fn literal_alternations_are_recognised_and_real_regexes_are_not() {
        let alts = |s: &str| literal_alternatives(s);
        assert_eq!(alts("A|B"), Some(vec!["A".into(), "B".into()]));
        assert_eq!(
            alts(r"api\.v1|web"),
            Some(vec!["api.v1".into(), "web".into()])
        );
        assert_eq!(alts("A|"), Some(vec!["A".into(), String::new()]));
        for re in [
            "Kube.*", "a+", "(a|b)", "[ab]", r"\d", "(?i)x", "a{2}", "^a", "a?",
        ] {
            assert_eq!(alts(re), None, "{re}");
        }
    }

    /// A tiny deterministic generator (the domain takes no dependency for tests).
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    const LABELS: &[&str] = &["alertname", "service", "severity", "namespace"];
    const VALUES: &[&str] = &["A", "B", "C", "api.v1", ""];

    fn matcher(g: &mut Gen) -> String {
        let label = g.pick(LABELS);
        let v = g.pick(VALUES).replace('.', r"\\.");
        match g.next() % 6 {
            0 | 1 => format!("{label}=\"{}\"", g.pick(VALUES)),
            2 => format!("{label}=~\"{v}|{}\"", g.pick(VALUES).replace('.', r"\\.")),
            3 => format!("{label}=~\"{}.*\"", g.pick(&["A", "B", "ap"])),
            4 => format!("{label}!=\"{}\"", g.pick(VALUES)),
            _ => format!("{label}!~\"{v}|C\""),
        }
    }

    fn rules(g: &mut Gen, n: usize) -> Vec<Rule> {
        let mut yaml = String::from("rules:\n");
        for i in 0..n {
            if g.next().is_multiple_of(10) {
                yaml.push_str(&format!(
                    "  - name: p{i}\n    query: up\n    levels: [{{above: 1, level: 1}}]\n    target: {{kind: deployment, name: x}}\n    policy: p\n"
                ));
                continue;
            }
            let ms: Vec<String> = (0..1 + g.next() % 3).map(|_| matcher(g)).collect();
            yaml.push_str(&format!(
                "  - name: r{i}\n    match: [{}]\n    level: 1\n    target: {{kind: deployment, name: x}}\n    policy: p\n",
                ms.iter()
                    .map(|m| format!("'{m}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let raw: RawRuleFile = serde_saphyr::from_str(&yaml).unwrap();
        let mut diag = Diagnostics::default();
        let out = compile("gen.yaml", raw, &mut diag);
        assert!(diag.is_empty(), "{diag:?}\n{yaml}");
        assert_eq!(out.len(), n);
        out
    }

    fn signal(g: &mut Gen) -> Signal {
        let mut labels = Labels::new();
        for l in LABELS {
            let v = g.pick(VALUES);
            if !v.is_empty() {
                labels.insert(l.to_string(), v.to_string());
            }
        }
        let mut s = alert(labels);
        if g.next().is_multiple_of(8) {
            s.rule = Some(format!("p{}", g.next() % 40));
            s.level = Some(1);
        }
        s
    }

    /// The index's answer equals trying every rule, on generated rules and signals.
    #[test]
    fn candidates_keep_every_rule_that_matches_in_file_order() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let rs = rules(&mut g, 1 + (round % 40));
            let index = RuleIndex::new(&rs);
            assert_eq!(index.len(), rs.len());
            for _ in 0..50 {
                let s = signal(&mut g);
                let full: Vec<usize> = (0..rs.len())
                    .filter(|&i| !matches!(rs[i].evaluate(&s), Ok(None)))
                    .collect();
                let cands = index.candidates(&s);
                assert!(cands.windows(2).all(|w| w[0] < w[1]), "{cands:?}");
                let via: Vec<usize> = cands
                    .into_iter()
                    .filter(|&i| !matches!(rs[i].evaluate(&s), Ok(None)))
                    .collect();
                assert_eq!(via, full, "round {round}, signal {:?}", s.labels);
            }
        }
    }

    #[test]
    fn an_alertname_equality_files_the_rule_under_that_alert_only() {
        let yaml = "rules:\n  - name: a\n    match: ['alertname=\"X\"', 'service=\"s\"']\n    level: 1\n    target: {kind: deployment, name: x}\n    policy: p\n  - name: b\n    match: ['service!=\"s\"']\n    level: 1\n    target: {kind: deployment, name: x}\n    policy: p\n";
        let raw: RawRuleFile = serde_saphyr::from_str(yaml).unwrap();
        let mut diag = Diagnostics::default();
        let rs = compile("f.yaml", raw, &mut diag);
        let index = RuleIndex::new(&rs);
        let mut l = Labels::new();
        l.insert("alertname".into(), "Y".into());
        assert_eq!(index.candidates(&alert(l.clone())), vec![1]);
        l.insert("alertname".into(), "X".into());
        assert_eq!(index.candidates(&alert(l)), vec![0, 1]);
    }
}
