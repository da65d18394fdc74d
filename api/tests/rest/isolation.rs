//! Isolation between users, bad input, and a grant forged into the views.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_and_bad_input() {
    let s = stack().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let secret = s
        .ingest(&alice, "note", "private", "the garage code is 4711")
        .await;
    let r = s
        .post(
            "/v1/grants",
            &alice,
            json!({ "grantee": "bob", "capabilities": { "metadata": true, "content": true },
                    "conditions": { "tags": ["shared"] } }),
        )
        .await;
    let grant = r.json()["id"].as_str().unwrap().to_owned();
    let before = (s.head("alice").await, s.head("bob").await);

    // bob against alice's data: never data
    let attempts = [
        (Method::GET, format!("/v1/memories/{secret}")),
        (Method::GET, format!("/v1/memories/{secret}/content")),
        (Method::GET, format!("/v1/memories/{secret}/proof")),
        (Method::GET, format!("/v1/users/alice/memories/{secret}")),
        (
            Method::GET,
            format!("/v1/users/alice/memories/{secret}/content"),
        ),
        (Method::DELETE, format!("/v1/grants/{grant}")),
    ];
    for (m, path) in attempts {
        let r = s
            .call(m.clone(), &path, Some(&bob), None, vec![], &[])
            .await;
        assert!(
            matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND) && r.problem,
            "{m} {path}: {}",
            r.status
        );
        assert!(!String::from_utf8_lossy(&r.body).contains("4711"));
    }
    let r = s.get("/v1/users/alice/memories", &bob).await;
    assert_eq!(
        ids(&r.json()),
        Vec::<String>::new(),
        "grant on another tag: nothing"
    );
    let r = s
        .post("/v1/erasure", &bob, json!({ "memory": secret }))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.get("/v1/memories", &bob).await;
    assert_eq!(ids(&r.json()), Vec::<String>::new());
    let r = s.get("/v1/users/nobody/memories", &bob).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "unknown owners look like no grant"
    );
    // a well-signed token for a user without a chain authenticates nobody
    let ghost = s.auth.issue("ghost", false, 600);
    for path in ["/v1/memories", "/v1/chain", "/v1/grants"] {
        let r = s.get(path, &ghost).await;
        r.assert_status(StatusCode::UNAUTHORIZED);
        assert!(r.problem, "{path}");
    }
    // a grant to a user id without a chain is refused (decided: README, "Grants")
    let r = s
        .post(
            "/v1/grants",
            &bob,
            json!({ "grantee": "ghost", "capabilities": { "metadata": true, "content": false } }),
        )
        .await;
    r.assert_status(StatusCode::NOT_FOUND);
    let after_reads = s.head("alice").await;
    assert_eq!(
        after_reads,
        before.0 + 1,
        "the one list under the grant was recorded"
    );

    // bad input: clear problems, nothing written
    type Case<'a> = (
        Option<&'a str>,
        Method,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        StatusCode,
    );
    let cases: Vec<Case> = vec![
        (Some(&alice), Method::POST, "/v1/memories", Some("application/json"), b"{not json".to_vec(), StatusCode::BAD_REQUEST),
        (Some(&alice), Method::POST, "/v1/memories", Some("application/json"), br#"{"text": 5}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        (Some(&alice), Method::POST, "/v1/memories", Some("application/json"), br#"{"text": "x", "colour": "red"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        (Some(&alice), Method::POST, "/v1/memories", Some("application/json"), [br#"{"text": ""#.as_slice(), &vec![b'a'; 2 << 20], br#""}"#].concat(), StatusCode::PAYLOAD_TOO_LARGE),
        (Some(&alice), Method::POST, "/v1/grants", Some("application/json"), br#"{"grantee": "b.*", "capabilities": {"metadata": true, "content": false}}"#.to_vec(), StatusCode::BAD_REQUEST),
        (Some(&alice), Method::POST, "/v1/grants", Some("application/json"), br#"{"grantee": "bob", "capabilities": {"metadata": true, "content": false}, "expires_at": 1000}"#.to_vec(), StatusCode::BAD_REQUEST),
        (Some(&alice), Method::POST, "/v1/grants", Some("text/plain"), b"grant".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (Some(&alice), Method::GET, "/v1/memories/xyz", None, vec![], StatusCode::BAD_REQUEST),
        (Some(&alice), Method::GET, "/v1/memories/%FF%FF", None, vec![], StatusCode::BAD_REQUEST),
        (Some(&alice), Method::GET, "/v1/users/%FF/memories", None, vec![], StatusCode::BAD_REQUEST),
        (Some(&alice), Method::GET, "/v1/memories?limit=100000", None, vec![], StatusCode::BAD_REQUEST),
        (Some(&alice), Method::GET, "/v1/memories?from=yesterday", None, vec![], StatusCode::BAD_REQUEST),
        (Some(&alice), Method::DELETE, "/v1/grants/zz", None, vec![], StatusCode::BAD_REQUEST),
        (Some(&alice), Method::GET, "/v1/anchors/minus-one", None, vec![], StatusCode::BAD_REQUEST),
        (Some(&alice), Method::POST, "/v1/erasure", Some("application/json"), br#"{"memory": "00", "all": true}"#.to_vec(), StatusCode::BAD_REQUEST),
        (Some(&alice), Method::POST, "/v1/users", Some("application/json"), br#"{"id": "eve"}"#.to_vec(), StatusCode::FORBIDDEN),
        (None, Method::GET, "/v1/memories", None, vec![], StatusCode::UNAUTHORIZED),
        (Some("not-a-jwt"), Method::GET, "/v1/memories", None, vec![], StatusCode::UNAUTHORIZED),
        (Some(&alice), Method::PUT, "/v1/memories", None, vec![], StatusCode::METHOD_NOT_ALLOWED),
        (Some(&alice), Method::GET, "/v2/nothing", None, vec![], StatusCode::NOT_FOUND),
    ];
    for (token, m, path, ct, body, want) in cases {
        let r = s.call(m.clone(), path, token, ct, body, &[]).await;
        assert_eq!(
            r.status,
            want,
            "{m} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.problem, "{m} {path}: problem+json");
        let p = r.json();
        assert_eq!(p["status"], want.as_u16());
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .starts_with("https://mnemo.dev/problems/")
        );
    }
    // tokens: expired, wrong audience, wrong issuer, alg none, HS256 with the public key
    let key = SigningKey::from_bytes(&JWT_SEED);
    let wrong_aud = Auth::new(&key, "mnemo", "someone-else").issue("alice", false, 600);
    let wrong_iss = Auth::new(&key, "evil", "mnemo-api").issue("alice", false, 600);
    let other_key = Auth::new(&SigningKey::from_bytes(&[1; 32]), "mnemo", "mnemo-api")
        .issue("alice", false, 600);
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let now = now_ms() / 1000;
    let claims = |exp: i64| json!({ "sub": "alice", "aud": "mnemo-api", "iss": "mnemo", "exp": exp, "nbf": now - 10 });
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(now + 600))
    );
    let hs256 = {
        let k = jsonwebtoken::EncodingKey::from_secret(key.verifying_key().as_bytes());
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims(now + 600),
            &k,
        )
        .unwrap()
    };
    let expired = {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&JWT_SEED);
        let k = jsonwebtoken::EncodingKey::from_ed_der(&der);
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims(now - 120),
            &k,
        )
        .unwrap()
    };
    for (what, t) in [
        ("wrong audience", wrong_aud),
        ("wrong issuer", wrong_iss),
        ("another key", other_key),
        ("alg none", none),
        ("HS256 with the public key", hs256),
        ("expired", expired),
    ] {
        let r = s.get("/v1/memories", &t).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(r.problem, "{what}");
        // which check failed is not told
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        for word in [
            "Expired",
            "aud",
            "iss",
            "alg",
            "kid",
            "signature",
            "Invalid",
        ] {
            assert!(!detail.contains(word), "{what}: {detail}");
        }
        let r = s
            .post("/v1/memories", &t, json!({ "text": "forged" }))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    assert_eq!(
        (s.head("alice").await, s.head("bob").await),
        (after_reads, before.1),
        "nothing written by bad input"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM memories")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

/// A grant row forged into the PostgreSQL view (no `grant_created` in the chain) lets
/// nobody read: the ledger checks the access record against the chain's own grant state and
/// refuses it, so the read is a 403, nothing is served, nothing is recorded, and the owner's
/// chain still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_forged_into_the_view_reads_nothing() {
    let s = stack().await;
    let owner = s.user("olga").await;
    let thief = s.user("theo").await;
    let id = s
        .ingest(&owner, "note", "secret", "the vault code is 1234")
        .await;
    let before = s.head("olga").await;
    sqlx::query(
        "INSERT INTO grants (user_id, grant_id, grantee, can_metadata, can_content, conditions, created_seq) \
         VALUES ('olga', $1, 'theo', true, true, '{\"tags\": [], \"kinds\": [], \"memories\": []}'::jsonb, 1)",
    )
    .bind(vec![0x66u8; 16])
    .execute(&s.pool)
    .await
    .unwrap();
    for path in [
        "/v1/users/olga/memories".to_owned(),
        format!("/v1/users/olga/memories/{id}"),
        format!("/v1/users/olga/memories/{id}/content"),
    ] {
        let r = s.get(&path, &thief).await;
        r.assert_status(StatusCode::FORBIDDEN);
        assert!(r.problem, "{path}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("vault"),
            "{path} served the content"
        );
    }
    assert_eq!(s.head("olga").await, before, "no access was recorded");
    s.ledger
        .verify_chain(&UserId::new("olga").unwrap())
        .await
        .unwrap();
}
