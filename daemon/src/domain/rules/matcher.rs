//! Alertmanager label matchers: `=`, `!=`, `=~`, `!~`, with regexes anchored and compiled once.

use std::fmt;

use regex::Regex;

use crate::domain::signal::Labels;

/// How a matcher compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    NotRe,
}

/// One compiled matcher.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: Op,
    /// The value or the regex source as written.
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// Parses one or several comma-separated matchers, optionally in braces, as Alertmanager
    /// writes them: `{alertname="X", severity=~"warning|critical"}`.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        let t = s.trim();
        let t = t
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(t);
        let mut out = Vec::new();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        for (i, c) in t.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    out.push(Self::parse(&t[start..i])?);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if !t[start..].trim().is_empty() || out.is_empty() {
            out.push(Self::parse(&t[start..])?);
        }
        Ok(out)
    }

    /// Parses `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"`; quotes are optional.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(s)
            .trim();
        let pos = s
            .find(['=', '!'])
            .ok_or_else(|| format!("`{s}` has no operator; valid: =, !=, =~, !~"))?;
        let name = s[..pos].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`{s}`: label name `{name}` must be letters, digits and _"
            ));
        }
        let rest = &s[pos..];
        let (op, raw) = if let Some(r) = rest.strip_prefix("=~") {
            (Op::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (Op::NotRe, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (Op::Ne, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (Op::Eq, r)
        } else {
            return Err(format!("`{s}`: unknown operator; valid: =, !=, =~, !~"));
        };
        let value = unquote(raw.trim()).map_err(|e| format!("`{s}`: {e}"))?;
        let regex = match op {
            Op::Re | Op::NotRe => Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                // regex's message spans lines and shows our anchoring; keep its last line.
                let text = e.to_string();
                let last = text.lines().last().unwrap_or_default().trim();
                format!(
                    "`{s}`: invalid regex: {}",
                    last.trim_start_matches("error: ")
                )
            })?),
            _ => None,
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// Whether the label set satisfies this matcher; a missing label is the empty string, as in Alertmanager.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (Op::Eq, _) => v == self.value,
            (Op::Ne, _) => v != self.value,
            (Op::Re, Some(r)) => r.is_match(v),
            (Op::NotRe, Some(r)) => !r.is_match(v),
            _ => false,
        }
    }
}

fn unquote(raw: &str) -> Result<String, String> {
    let Some(inner) = raw.strip_prefix('"') else {
        if raw.contains('"') {
            return Err("unbalanced quote".into());
        }
        return Ok(raw.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| "unterminated quote".to_string())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => return Err("dangling backslash".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_inequality_compare_exactly() {
        let l = labels(&[("alertname", "HighErrorRate")]);
        assert!(
            Matcher::parse(r#"alertname="HighErrorRate""#)
                .unwrap()
                .matches(&l)
        );
        assert!(!Matcher::parse("alertname=HighError").unwrap().matches(&l));
        assert!(Matcher::parse(r#"alertname!="Other""#).unwrap().matches(&l));
    }

    #[test]
    fn regexes_are_anchored_like_alertmanager() {
        let l = labels(&[("severity", "critical-ish")]);
        assert!(
            !Matcher::parse(r#"severity=~"critical""#)
                .unwrap()
                .matches(&l)
        );
        assert!(
            Matcher::parse(r#"severity=~"critical.*""#)
                .unwrap()
                .matches(&l)
        );
        assert!(
            Matcher::parse(r#"severity!~"warning|critical""#)
                .unwrap()
                .matches(&l)
        );
    }

    #[test]
    fn missing_label_is_the_empty_string() {
        let l = labels(&[]);
        assert!(Matcher::parse(r#"team="""#).unwrap().matches(&l));
        assert!(Matcher::parse(r#"team!="sre""#).unwrap().matches(&l));
        assert!(!Matcher::parse(r#"team=~".+""#).unwrap().matches(&l));
    }

    #[test]
    fn a_matcher_list_in_alertmanager_syntax_is_split_outside_quotes() {
        let ms =
            Matcher::parse_list(r#"{alertname="X", severity=~"warning|critical", note="a,b"}"#)
                .unwrap();
        assert_eq!(ms.len(), 3);
        assert_eq!(ms[2].value, "a,b");
        assert!(Matcher::parse_list(r#"a="x",, b="y""#).is_err());
    }

    #[test]
    fn bad_matchers_say_what_is_valid() {
        assert!(
            Matcher::parse("alertname")
                .unwrap_err()
                .contains("valid: =, !=, =~, !~")
        );
        assert!(
            Matcher::parse(r#"a=~"(""#)
                .unwrap_err()
                .contains("invalid regex")
        );
        assert!(
            Matcher::parse(r#"a="x"#)
                .unwrap_err()
                .contains("unterminated quote")
        );
        assert!(
            Matcher::parse(r#"bad-name="x""#)
                .unwrap_err()
                .contains("label name")
        );
    }
}
