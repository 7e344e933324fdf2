//! `{{name}}` templates over a flat set of variables, parsed at load so that errors have a line.

use std::collections::BTreeMap;

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Var {
        name: String,
        fallback: Option<String>,
    },
}

/// Variables a template is rendered with: labels by name, plus `target.*`, `incident.*`, `vars.*`.
pub type Vars = BTreeMap<String, String>;

impl Template {
    /// Parses `text {{ name }} more {{ other | fallback }}`.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("`{source}`: unclosed `{{{{`"))?;
            let inner = after[..end].trim();
            let (name, fallback) = match inner.split_once('|') {
                Some((n, f)) => (n.trim(), Some(f.trim().to_string())),
                None => (inner, None),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(format!(
                    "`{source}`: `{{{{{inner}}}}}` must name a label, target.*, incident.* or vars.*"
                ));
            }
            parts.push(Part::Var {
                name: name.to_string(),
                fallback,
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Self {
            source: source.to_string(),
            parts,
        })
    }

    /// Renders; a variable that is missing and has no fallback is an error naming it.
    pub fn render(&self, vars: &Vars) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var { name, fallback } => match (vars.get(name), fallback) {
                    (Some(v), _) if !v.is_empty() => out.push_str(v),
                    (_, Some(f)) => out.push_str(f),
                    (Some(v), None) => out.push_str(v),
                    (None, None) => {
                        return Err(format!("`{}`: no value for `{name}`", self.source));
                    }
                },
            }
        }
        Ok(out)
    }

    /// The variables this template reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var { name, .. } => Some(name.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Renders every string inside a JSON value.
pub fn render_json(v: &serde_json::Value, vars: &Vars) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => Value::String(Template::parse(s)?.render(vars)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(x, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Checks that every string inside a JSON value parses as a template.
pub fn check_json(v: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    match v {
        Value::String(s) => Template::parse(s).map(|_| ()),
        Value::Array(a) => a.iter().try_for_each(check_json),
        Value::Object(o) => o.values().try_for_each(check_json),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_labels_and_fallbacks() {
        let t = Template::parse("{{service}} in {{ namespace | python-services }}").unwrap();
        assert_eq!(
            t.render(&vars(&[("service", "checkout")])).unwrap(),
            "checkout in python-services"
        );
        assert_eq!(
            t.render(&vars(&[("service", "checkout"), ("namespace", "shop")]))
                .unwrap(),
            "checkout in shop"
        );
    }

    #[test]
    fn missing_variable_is_named() {
        let t = Template::parse("{{service}}").unwrap();
        assert!(
            t.render(&vars(&[]))
                .unwrap_err()
                .contains("no value for `service`")
        );
    }

    #[test]
    fn unclosed_braces_fail_at_parse() {
        assert!(
            Template::parse("{{service")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(Template::parse("{{ a b }}").is_err());
    }
}
