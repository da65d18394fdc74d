//! The OpenAPI 3.1 description served at `/openapi.json`.

use serde_json::{Value, json};

/// Every route as (method, path, summary, needs a token, success status).
pub const ROUTES: &[(&str, &str, &str, bool, u16)] = &[
    ("get", "/healthz", "Liveness", false, 200),
    (
        "get",
        "/readyz",
        "Readiness: the projection's lag",
        false,
        200,
    ),
    (
        "get",
        "/metrics",
        "Prometheus metrics (OpenMetrics text)",
        false,
        200,
    ),
    ("get", "/openapi.json", "This document", false, 200),
    (
        "post",
        "/v1/users",
        "Create a user (admin token): returns the user's token",
        true,
        201,
    ),
    (
        "post",
        "/v1/memories",
        "Ingest a memory: JSON text memory, or a binary upload with metadata in the query string; honours Idempotency-Key",
        true,
        201,
    ),
    (
        "get",
        "/v1/memories",
        "List and search one's memories (tag, kind, from, until, q, cursor, limit)",
        true,
        200,
    ),
    ("get", "/v1/memories/{id}", "A memory's metadata", true, 200),
    (
        "get",
        "/v1/memories/{id}/content",
        "A memory's content, checked against its commitment",
        true,
        200,
    ),
    (
        "get",
        "/v1/memories/{id}/proof",
        "A proof bundle for the memory (anchored once its epoch is)",
        true,
        200,
    ),
    (
        "get",
        "/v1/chain",
        "Signed events of one's chain (from, limit)",
        true,
        200,
    ),
    (
        "get",
        "/v1/chain/head",
        "The head of one's chain",
        true,
        200,
    ),
    (
        "get",
        "/v1/export",
        "One's whole custody bundle (JSON lines, docs/FORMAT.md §13), streamed",
        true,
        200,
    ),
    (
        "post",
        "/v1/grants",
        "Grant another user access (an event in one's chain)",
        true,
        201,
    ),
    (
        "get",
        "/v1/grants",
        "Grants one gave (role=owner) or was given (role=grantee)",
        true,
        200,
    ),
    (
        "delete",
        "/v1/grants/{id}",
        "Revoke a grant (an event in one's chain)",
        true,
        200,
    ),
    (
        "get",
        "/v1/access-log",
        "Who read what of one's memories, when, under which grant",
        true,
        200,
    ),
    (
        "post",
        "/v1/erasure",
        "Crypto-shred one memory ({memory}) or everything ({all: true})",
        true,
        200,
    ),
    ("get", "/v1/anchors", "Anchored epochs", true, 200),
    (
        "get",
        "/v1/anchors/{epoch}",
        "One anchored epoch",
        true,
        200,
    ),
    (
        "get",
        "/v1/users/{owner}/memories",
        "List another user's memories a live grant allows (recorded in their chain)",
        true,
        200,
    ),
    (
        "get",
        "/v1/users/{owner}/memories/{id}",
        "Another user's memory metadata under a grant (recorded)",
        true,
        200,
    ),
    (
        "get",
        "/v1/users/{owner}/memories/{id}/content",
        "Another user's memory content under a grant (recorded)",
        true,
        200,
    ),
];

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, auth, ok) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                ok.to_string(): {"description": "success"},
                "default": {
                    "description": "an RFC 9457 problem",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
                }
            }
        });
        if *auth {
            op["security"] = json!([{"bearer": []}]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "mnemo",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Custody ledger for memories: every write is a signed, hash-chained event in the owner's chain; every read by someone else is recorded there too."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"},
                        "status": {"type": "integer"}, "detail": {"type": "string"}
                    },
                    "required": ["type", "title", "status"]
                }
            }
        }
    })
}
