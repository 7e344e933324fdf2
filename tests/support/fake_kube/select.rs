//! Label selectors (string form and `metav1.LabelSelector`) and field selectors.
#![allow(dead_code)]

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("expected (values), got {s:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

pub fn parse_labels(s: &str) -> Result<Vec<Req>, String> {
    let mut reqs = Vec::new();
    for part in split_top(s) {
        if let Some(k) = part.strip_prefix('!') {
            reqs.push(Req::NotExists(k.trim().to_string()));
        } else if let Some((k, v)) = part.split_once("!=") {
            reqs.push(Req::Ne(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = part.split_once("==") {
            reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = part.split_once('=') {
            reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
        } else if let Some(idx) = part.find(" notin ") {
            reqs.push(Req::NotIn(
                part[..idx].trim().into(),
                set_values(&part[idx + 7..])?,
            ));
        } else if let Some(idx) = part.find(" in ") {
            reqs.push(Req::In(
                part[..idx].trim().into(),
                set_values(&part[idx + 4..])?,
            ));
        } else if part.contains(['(', ')', ' ']) {
            return Err(format!("unable to parse requirement: {part:?}"));
        } else {
            reqs.push(Req::Exists(part));
        }
    }
    Ok(reqs)
}

pub fn label_of<'a>(labels: Option<&'a Value>, key: &str) -> Option<&'a str> {
    labels?.get(key)?.as_str()
}

pub fn matches(reqs: &[Req], labels: Option<&Value>) -> bool {
    reqs.iter().all(|r| match r {
        Req::Eq(k, v) => label_of(labels, k) == Some(v.as_str()),
        Req::Ne(k, v) => label_of(labels, k) != Some(v.as_str()),
        Req::In(k, vs) => label_of(labels, k).is_some_and(|l| vs.iter().any(|v| v == l)),
        Req::NotIn(k, vs) => label_of(labels, k).is_none_or(|l| !vs.iter().any(|v| v == l)),
        Req::Exists(k) => label_of(labels, k).is_some(),
        Req::NotExists(k) => label_of(labels, k).is_none(),
    })
}

/// A `metav1.LabelSelector` (matchLabels + matchExpressions) as requirements.
/// `None` selector yields no requirements (matches everything).
pub fn from_label_selector(sel: Option<&Value>) -> Vec<Req> {
    let mut reqs = Vec::new();
    let Some(sel) = sel else { return reqs };
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push(Req::Eq(
                k.clone(),
                v.as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or_default().to_string();
            let values: Vec<String> = e["values"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or_default() {
                "In" => reqs.push(Req::In(key, values)),
                "NotIn" => reqs.push(Req::NotIn(key, values)),
                "Exists" => reqs.push(Req::Exists(key)),
                "DoesNotExist" => reqs.push(Req::NotExists(key)),
                _ => {}
            }
        }
    }
    reqs
}

/// The string form of a `metav1.LabelSelector`, as `kubectl` and Scale's status.selector print it.
pub fn selector_string(sel: Option<&Value>) -> String {
    let mut parts = Vec::new();
    for r in from_label_selector(sel) {
        parts.push(match r {
            Req::Eq(k, v) => format!("{k}={v}"),
            Req::Ne(k, v) => format!("{k}!={v}"),
            Req::In(k, vs) => format!("{k} in ({})", vs.join(",")),
            Req::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            Req::Exists(k) => k,
            Req::NotExists(k) => format!("!{k}"),
        });
    }
    parts.join(",")
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldReq {
    pub path: String,
    pub value: String,
    pub negate: bool,
}

const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
    "involvedObject.name",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.uid",
    "spec.unschedulable",
    "reason",
    "type",
];

pub fn parse_fields(s: &str) -> Result<Vec<FieldReq>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (path, value, negate) = if let Some((k, v)) = part.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = part.split_once("==") {
            (k, v, false)
        } else if let Some((k, v)) = part.split_once('=') {
            (k, v, false)
        } else {
            return Err(format!("invalid field selector: {part:?}"));
        };
        let path = path.trim();
        if !FIELDS.contains(&path) {
            return Err(format!("field label not supported: {path}"));
        }
        out.push(FieldReq {
            path: path.into(),
            value: value.trim().into(),
            negate,
        });
    }
    Ok(out)
}

fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

pub fn fields_match(reqs: &[FieldReq], obj: &Value) -> bool {
    reqs.iter().all(|r| {
        let v = field_value(obj, &r.path);
        let v = if r.path == "spec.unschedulable" && v.is_empty() {
            "false".to_string()
        } else {
            v
        };
        (v == r.value) != r.negate
    })
}
