//! The OpenAPI document against the router.

use super::*;

/// Every route the API serves is in `/openapi.json`, and everything documented is served;
/// (every response the tests here receive is checked against the documented schema in
/// `Stack::call`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_router() {
    let s = stack().await;
    let alice = s.user("alice").await;
    let r = s
        .call(Method::GET, "/openapi.json", None, None, vec![], &[])
        .await;
    r.assert_status(StatusCode::OK);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    // What the API serves (the README's endpoint table): each is documented...
    let served = [
        ("post", "/v1/users"),
        ("post", "/v1/users/{id}/devices"),
        ("delete", "/v1/users/{id}/devices/{device}"),
        ("post", "/v1/memories"),
        ("get", "/v1/memories"),
        ("get", "/v1/memories/{id}"),
        ("get", "/v1/memories/{id}/content"),
        ("get", "/v1/memories/{id}/proof"),
        ("get", "/v1/chain"),
        ("get", "/v1/chain/head"),
        ("get", "/v1/export"),
        ("post", "/v1/grants"),
        ("get", "/v1/grants"),
        ("delete", "/v1/grants/{id}"),
        ("get", "/v1/access-log"),
        ("post", "/v1/erasure"),
        ("get", "/v1/anchors"),
        ("get", "/v1/anchors/{epoch}"),
        ("get", "/v1/models/{id}/query"),
        ("get", "/v1/processing/stale"),
        ("get", "/v1/users/{owner}/memories"),
        ("get", "/v1/users/{owner}/memories/{id}"),
        ("get", "/v1/users/{owner}/memories/{id}/content"),
        ("get", "/openapi.json"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    for (m, p) in served {
        let op = &doc["paths"][p][m];
        assert!(op.is_object(), "{m} {p} is not documented");
        assert!(
            op["responses"].is_object(),
            "{m} {p} documents no responses"
        );
    }
    // ...and every documented operation is a route of the router (the fallback answers
    // `no such endpoint` or 405 for anything else).
    let mut documented = 0;
    // a well-formed device key (a NATS user public key) that no device holds
    let device = nkeys::KeyPair::new_user().public_key();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            documented += 1;
            let concrete = path
                .replace("{id}", "00000000000000000000000000000000")
                .replace("{owner}", "alice")
                .replace("{epoch}", "1")
                .replace("{device}", &device);
            if ["/healthz", "/readyz", "/metrics"].contains(&path.as_str()) {
                continue; // health::router serves these beside the API (tested in cli.rs)
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s.call(m, &concrete, Some(&alice), None, vec![], &[]).await;
            let routed = r.status != StatusCode::METHOD_NOT_ALLOWED
                && !(r.status == StatusCode::NOT_FOUND && r.json()["detail"] == "no such endpoint");
            assert!(routed, "{method} {path} is documented but not served");
        }
    }
    assert!(documented >= served.len(), "{documented}");
    // the schemas are used: a 201 receipt, a listing
    let r = s
        .post(
            "/v1/memories",
            &alice,
            json!({ "text": "x", "tags": ["t"] }),
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    s.get("/v1/memories?tag=t", &alice)
        .await
        .assert_status(StatusCode::OK);
}

/// Redocly's lint (npm `@redocly/cli`, pinned in scripts/setup.sh, its recommended rules)
/// finds no error in the document: a server, and security stated on every operation (the
/// public ones say it is none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redocly_finds_no_error_in_the_document() {
    let s = stack().await;
    let r = s
        .call(Method::GET, "/openapi.json", None, None, vec![], &[])
        .await;
    r.assert_status(StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &r.body).unwrap();
    let tools = std::env::var("MNEMO_JS_TOOLS").expect("MNEMO_JS_TOOLS (scripts/setup.sh)");
    let out = std::process::Command::new(format!("{tools}/node_modules/.bin/redocly"))
        .arg("lint")
        .arg(&file)
        .args(["--format", "stylish"])
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true")
        .output()
        .expect("run redocly (scripts/setup.sh installs it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "redocly lint:\n{report}");
    assert!(
        !report.contains(" error "),
        "redocly lint reports errors:\n{report}"
    );
}
