//! Strategic merge patch (apimachinery `strategicpatch`), schema-free: the patch strategy of a list
//! is decided by its field name. Implemented: map merge, `null` deletes, merge-key lists
//! (`containers`/`initContainers`/`ephemeralContainers`/`env`/`volumes`/`imagePullSecrets` by
//! `name`, `volumeMounts` by `mountPath`, `ports` by `containerPort`, `conditions` by `type`,
//! `ownerReferences` by `uid`), `finalizers` as a merged set of strings, `$setElementOrder/<list>`,
//! `$deleteFromPrimitiveList/<list>`, `$retainKeys`, `$patch: delete|replace|merge`; every other list
//! (HPA `metrics`, `behavior.*.policies`, `tolerations`, `args`, ...) is atomic and replaced whole.
#![allow(dead_code)]

use serde_json::{Map, Value};

const ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// `Some(merge key)` for a merge-keyed list of maps; `Some("")` for a merged list of primitives;
/// `None` for an atomic list.
pub fn list_strategy(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "ports" => Some("containerPort"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "finalizers" => Some(""),
        _ => None,
    }
}

/// Applies `patch` to `original`. Errors are the apiserver's 422/400 messages.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Err("strategic merge patch must be a JSON object".into());
    };
    let base = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    match merge_map(base, p)? {
        Some(m) => Ok(Value::Object(m)),
        None => Ok(Value::Object(Map::new())),
    }
}

/// Strips directives and nulls from a value that has no original counterpart.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if k.starts_with('$') || v.is_null() {
                    continue;
                }
                out.insert(k.clone(), clean(v));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| !matches!(e.get("$patch").and_then(Value::as_str), Some("delete")))
                .map(clean)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Returns `None` when the map itself is deleted (`$patch: delete`).
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut p = patch.clone();
            p.remove("$patch");
            return match clean(&Value::Object(p)) {
                Value::Object(m) => Ok(Some(m)),
                _ => unreachable!(),
            };
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("Unknown patch type: {other}")),
    }
    let retain: Option<Vec<String>> = patch.get("$retainKeys").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    });

    // Deletions from primitive lists.
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            let del: Vec<Value> = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|e| !del.contains(e));
            }
        }
    }

    let pre_order: Vec<(String, Vec<Value>)> = patch
        .keys()
        .filter_map(|k| k.strip_prefix(ORDER))
        .map(|f| {
            (
                f.to_string(),
                original
                    .get(f)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();

    for (k, pv) in patch {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            original.remove(k);
            continue;
        }
        let merged = match original.remove(k) {
            None => Some(clean(pv)),
            Some(ov) => merge_value(k, ov, pv)?,
        };
        if let Some(m) = merged {
            original.insert(k.clone(), m);
        }
    }

    // Ordering directives, after the lists were merged.
    for (k, order) in patch {
        let Some(field) = k.strip_prefix(ORDER) else {
            continue;
        };
        let Some(order) = order.as_array() else {
            return Err(format!("{k}: expected a list"));
        };
        let Some(Value::Array(merged)) = original.get(field).cloned() else {
            continue;
        };
        let key = list_strategy(field).unwrap_or("");
        let server_order: Vec<Value> = pre_order
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, l)| l.clone())
            .unwrap_or_default();
        let all = reorder(merged, order, &server_order, key);
        original.insert(field.to_string(), Value::Array(all));
    }

    if let Some(retain) = retain {
        original.retain(|k, _| retain.contains(k));
    }
    Ok(Some(original))
}

/// apimachinery `normalizeElementOrder`: items named in `order` sorted by it, server-only items
/// in server order, interleaved by their server positions.
fn reorder(merged: Vec<Value>, order: &[Value], server: &[Value], key: &str) -> Vec<Value> {
    let id = |v: &Value| -> Value {
        if key.is_empty() {
            v.clone()
        } else {
            v.get(key).cloned().unwrap_or(Value::Null)
        }
    };
    let order_ids: Vec<Value> = order.iter().map(&id).collect();
    let pos = |list: &[Value], v: &Value| list.iter().position(|o| *o == id(v));
    let (mut patch_items, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|e| pos(&order_ids, e).is_some());
    patch_items.sort_by_key(|e| pos(&order_ids, e));
    let server_ids: Vec<Value> = server.iter().map(&id).collect();
    merge_sorted(server_only, patch_items, |l, r| {
        match (pos(&server_ids, l), pos(&server_ids, r)) {
            (Some(a), Some(b)) => a < b,
            _ => false,
        }
    })
}

fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    less: impl Fn(&Value, &Value) -> bool,
) -> Vec<Value> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(left.len() + right.len());
    while i < left.len() || j < right.len() {
        if i >= left.len() {
            out.push(right[j].clone());
            j += 1;
        } else if j >= right.len() || less(&left[i], &right[j]) {
            out.push(left[i].clone());
            i += 1;
        } else {
            out.push(right[j].clone());
            j += 1;
        }
    }
    out
}

fn merge_value(field: &str, original: Value, patch: &Value) -> Result<Option<Value>, String> {
    match (original, patch) {
        (Value::Object(o), Value::Object(p)) => Ok(merge_map(o, p)?.map(Value::Object)),
        (Value::Array(o), Value::Array(p)) => match list_strategy(field) {
            None => Ok(Some(clean(patch))),
            Some("") => {
                let mut out = o.clone();
                for v in p {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Ok(Some(Value::Array(reorder(out, p, &o, ""))))
            }
            Some(key) => merge_keyed_list(o, p, key).map(|v| Some(Value::Array(v))),
        },
        (_, p) => Ok(Some(clean(p))),
    }
}

fn merge_keyed_list(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
) -> Result<Vec<Value>, String> {
    let server = original.clone();
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    if patch.iter().any(|e| {
        e.get("$patch").and_then(Value::as_str) == Some("replace")
            && e.as_object().is_some_and(|m| m.len() == 1)
    }) {
        return Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .map(clean)
            .collect());
    }
    let mut appended = Vec::new();
    for pe in patch {
        let Some(pm) = pe.as_object() else {
            return Err(format!(
                "merging an object in a list of maps: element {pe} is not a map"
            ));
        };
        let Some(kv) = pm.get(key) else {
            return Err(format!(
                "map: {pe} does not contain declared merge key: {key}"
            ));
        };
        let idx = original.iter().position(|o| o.get(key) == Some(kv));
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = idx {
                original.remove(i);
            }
            continue;
        }
        match idx {
            Some(i) => {
                let o = original[i].as_object().cloned().unwrap_or_default();
                match merge_map(o, pm)? {
                    Some(m) => original[i] = Value::Object(m),
                    None => {
                        original.remove(i);
                    }
                }
            }
            None => appended.push(clean(pe)),
        }
    }
    original.extend(appended);
    // Without `$setElementOrder`, the patch list itself gives the order (apimachinery mergeSlice).
    let order: Vec<Value> = patch
        .iter()
        .filter(|e| e.get("$patch").is_none())
        .cloned()
        .collect();
    Ok(reorder(original, &order, &server, key))
}
