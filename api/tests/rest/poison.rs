//! Values the views cannot store: refused at the door, and quarantined when planted.

use super::*;

/// Hardening: values the views cannot store are refused at the door (REST), and an event
/// that carries one anyway (planted in a chain with the custody key, as an insider or an
/// older version could) quarantines that user's view alone: every other user reads and
/// verifies normally, the poisoned chain is invalid with the check named, and the instance
/// reports the quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_values_are_refused_and_a_planted_one_quarantines_one_user() {
    let s = stack().await;
    let alice = s.user("alice").await;
    let mallory = s.user("mallory").await;
    s.ingest(&alice, "note", "a", "before").await;
    s.ingest(&mallory, "note", "m", "mine").await;
    // At the door: each class gets a 400 problem and writes nothing.
    let before = s.head("alice").await;
    for body in [
        json!({ "text": "a\u{0}b" }),
        json!({ "text": "x", "captured_at": i64::MAX }),
        json!({ "text": "x", "captured_at": i64::MIN }),
        json!({ "text": "x", "tags": ["a\u{0}"] }),
        json!({ "text": "x", "kind": "k\u{0}" }),
    ] {
        let r = s.post("/v1/memories", &alice, body.clone()).await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert!(r.problem, "{body}");
    }
    for body in [
        json!({ "grantee": "mallory", "capabilities": { "metadata": true, "content": false }, "expires_at": i64::MAX }),
        json!({ "grantee": "mallory", "capabilities": { "metadata": true, "content": false }, "conditions": { "from": i64::MAX } }),
        json!({ "grantee": "mallory", "capabilities": { "metadata": true, "content": false }, "conditions": { "tags": ["\u{0}"] } }),
    ] {
        let r = s.post("/v1/grants", &alice, body.clone()).await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert!(r.problem, "{body}");
    }
    assert_eq!(s.head("alice").await, before, "nothing was written");
    // Every text that reaches a chain, a view or a message: an erasure reason (of a memory
    // with no lineage, where no event would carry it), a processor's version and kinds.
    let plain = s.ingest(&alice, "note", "a", "no lineage").await;
    let before = s.head("alice").await;
    for reason in ["a\u{0}b".to_owned(), "x".repeat(5000)] {
        let r = s
            .post(
                "/v1/erasure",
                &alice,
                json!({ "memory": plain, "reason": reason }),
            )
            .await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert!(r.problem);
    }
    assert_eq!(s.head("alice").await, before, "no erasure was written");
    let admin = s.auth.issue("admin", true, 600);
    for body in [
        json!({ "name": "nul", "version": "1\u{0}" }),
        json!({ "name": "nul", "version": "1", "produces": ["sum\u{0}"] }),
        json!({ "name": "nul", "version": "1", "consumes": [""] }),
    ] {
        let r = s.post("/v1/processors", &admin, body.clone()).await;
        r.assert_status(StatusCode::BAD_REQUEST);
        assert!(r.problem, "{body}");
    }
    let r = s.get("/v1/processors", &admin).await;
    assert!(
        !r.json().to_string().contains("\"nul\""),
        "registered: {}",
        r.json()
    );
    for q in [
        "from=9223372036854775807",
        "until=-9223372036854775808",
        "from=100000000000000000",
        "kind=%00",
        "tag=a%00",
        "q=%00",
    ] {
        for path in ["/v1/memories", "/v1/users/mallory/memories"] {
            let r = s.get(&format!("{path}?{q}"), &alice).await;
            r.assert_status(StatusCode::BAD_REQUEST);
            assert!(r.problem, "{path}?{q}");
        }
    }
    // Planted: a grant with an expiry no view can store, signed with the custody key.
    let m = UserId::new("mallory").unwrap();
    s.plant(
        &m,
        mnemo_core::EventBody::GrantCreated {
            grant: mnemo_core::GrantId([3; 16]),
            grantee: UserId::new("alice").unwrap(),
            capabilities: mnemo_core::Capabilities {
                metadata: true,
                content: true,
                ask: false,
            },
            conditions: Default::default(),
            expires_at: Some(mnemo_core::TimestampMs(i64::MAX)),
            not_before: None,
        },
        mnemo_core::TimestampMs(now_ms()),
    )
    .await;
    // The other users go on: writes and reads.
    for i in 0..5 {
        s.ingest(&alice, "note", "a", &format!("after {i}")).await;
    }
    let r = s.get("/v1/memories", &alice).await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 7);
    // The poisoned user's reads say why, at once.
    let r = s.get("/v1/memories", &mallory).await;
    r.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    let p = r.json();
    assert_eq!(p["type"], "https://mnemo.dev/problems/quarantined", "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("invalid_value"),
        "{p}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Reads past the end of a chain answer at once with an empty page; every reader holds
    // one of the user's bounded slots only while it reads.
    let end = s.head("alice").await;
    for from in [end + 1, end + 1000, u64::MAX / 2] {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            s.get(&format!("/v1/chain?from={from}"), &alice),
        )
        .await
        .expect("a read past the end answers at once");
        r.assert_status(StatusCode::OK);
        assert_eq!(r.json()["items"], json!([]));
    }
    let a = UserId::new("alice").unwrap();
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(s.ledger.follow(&a, mnemo_core::Seq(1)).await.unwrap());
    }
    assert!(matches!(
        s.ledger.follow(&a, mnemo_core::Seq(1)).await,
        Err(mnemo_ledger::LedgerError::TooManyReads(_))
    ));
    // Pages of known seqs are direct gets and take no reader: still served. A whole-chain
    // export takes one, and is refused before it starts (429 with Retry-After), never
    // cut short.
    let r = s.get("/v1/chain", &alice).await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), end as usize);
    let r = s.get("/v1/export", &alice).await;
    r.assert_status(StatusCode::TOO_MANY_REQUESTS);
    assert!(r.problem);
    assert_eq!(r.headers[axum::http::header::RETRY_AFTER], "1");
    open.pop();
    s.get("/v1/export", &alice)
        .await
        .assert_status(StatusCode::OK);
    drop(open);
    // The auditor: alice valid, mallory invalid at seq 3 with the same check.
    assert_eq!(audit_export(&s, &alice).await, None);
    assert_eq!(
        audit_export(&s, &mallory).await,
        Some(("invalid_value".into(), Some(3)))
    );
}
