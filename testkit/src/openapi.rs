//! Checks responses against an OpenAPI 3.1 document, for the tests of every client of the
//! REST API: [`check_response`] finds the documented operation of a concrete request and
//! checks the status, the content type and the body's schema ([`conforms`]).

use serde_json::Value;

/// Checks `v` against an OpenAPI 3.1 schema (the subset utoipa emits: `$ref`, `type` and
/// type lists, `properties`/`required`, `items`, `oneOf`/`anyOf`/`allOf`).
pub fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema[key].as_array() {
            return alts
                .iter()
                .any(|a| conforms(doc, a, v, at).is_ok())
                .then_some(())
                .ok_or_else(|| format!("{at}: matches none of {key}: {v}"));
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for a in all {
            conforms(doc, a, v, at)?;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => true,
        });
        if !ok {
            return Err(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for req in schema["required"].as_array().into_iter().flatten() {
            let req = req.as_str().unwrap_or_default();
            if !obj.contains_key(req) {
                return Err(format!("{at}: missing required {req}"));
            }
        }
        for (k, sub) in props {
            if let Some(x) = obj.get(k) {
                conforms(doc, sub, x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The documented operation for a concrete path.
pub fn operation<'d>(doc: &'d Value, method: &str, path: &str) -> Option<&'d Value> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object()?.iter().find_map(|(tpl, item)| {
        let t: Vec<&str> = tpl.split('/').collect();
        let matches = t.len() == segs.len()
            && t.iter()
                .zip(&segs)
                .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')));
        matches.then(|| item.get(method.to_lowercase())).flatten()
    })
}

/// Checks one response against the document: a documented status with a JSON body matches
/// its schema; a refusal (4xx, 5xx) is a problem. Panics, naming the request, when not.
pub fn check_response(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
    problem: bool,
    body: &[u8],
) {
    let Some(op) = operation(doc, method, path) else {
        return; // not an API route (the fallback's 404 is checked to be a problem below)
    };
    let code = status.to_string();
    let range = format!("{}XX", code.chars().next().unwrap());
    let doc_resp = op["responses"].get(&code).or(op["responses"].get(&range));
    let Some(doc_resp) = doc_resp else {
        panic!("{method} {path}: status {code} is not documented");
    };
    if status >= 400 {
        assert!(problem, "{method} {path}: a {code} that is not a problem");
    }
    let ct = content_type.split(';').next().unwrap_or_default();
    if ct == "application/json" || ct == "application/problem+json" {
        let schema = &doc_resp["content"][ct]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path}: {code} {ct} is not documented: {doc_resp}"
        );
        let body: Value = serde_json::from_slice(body).unwrap();
        if let Err(e) = conforms(doc, schema, &body, "$") {
            panic!("{method} {path} {code}: the response does not match its schema: {e}");
        }
    }
}
