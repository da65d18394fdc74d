//! The whole flow: grants, reads, revocation, expiry, erasure, anchoring and export.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_grants_reads_revocation_expiry_erasure_anchor_export() {
    let s = stack().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let lisbon = s
        .ingest(
            &alice,
            "conversation",
            "travel",
            "Planned the Lisbon trip with Ana",
        )
        .await;
    let tram = s
        .ingest(&alice, "web", "travel", "Tram 28 and the Alfama viewpoints")
        .await;
    let health = s
        .ingest(&alice, "note", "health", "Blood pressure 120/80")
        .await;

    // search and filters
    let r = s.get("/v1/memories?q=lisbon", &alice).await;
    assert_eq!(ids(&r.json()), vec![lisbon.clone()]);
    let r = s.get("/v1/memories?tag=travel", &alice).await;
    assert_eq!(ids(&r.json()), vec![tram.clone(), lisbon.clone()]);
    let r = s.get("/v1/memories?kind=note&limit=1", &alice).await;
    assert_eq!(ids(&r.json()), vec![health.clone()]);
    let r = s.get("/v1/memories?limit=2", &alice).await;
    let page = r.json();
    assert_eq!(ids(&page), vec![health.clone(), tram.clone()]);
    let cursor = page["next_cursor"].as_i64().unwrap();
    let r = s
        .get(&format!("/v1/memories?limit=2&cursor={cursor}"), &alice)
        .await;
    assert_eq!(ids(&r.json()), vec![lisbon.clone()]);
    let r = s
        .get(&format!("/v1/memories/{lisbon}/content"), &alice)
        .await;
    assert_eq!(r.body, b"Planned the Lisbon trip with Ana");

    // grant alice -> bob on the travel tag, for an hour
    let r = s
        .post(
            "/v1/grants",
            &alice,
            json!({
                "grantee": "bob",
                "capabilities": { "metadata": true, "content": true },
                "conditions": { "tags": ["travel"] },
                "expires_at": now_ms() + 3_600_000,
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let grant = r.json()["id"].as_str().unwrap().to_owned();
    // grants given to bob (alice's chain: eventually in the view)
    let t = std::time::Instant::now();
    while s.get("/v1/grants?role=grantee", &bob).await.json()["items"][0]["id"] != grant.as_str() {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // bob reads what is allowed and nothing else
    let r = s.get("/v1/users/alice/memories", &bob).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ids(&r.json()), vec![tram.clone(), lisbon.clone()]);
    let r = s
        .get(&format!("/v1/users/alice/memories/{lisbon}/content"), &bob)
        .await;
    assert_eq!(r.body, b"Planned the Lisbon trip with Ana");
    let r = s
        .get(&format!("/v1/users/alice/memories/{health}/content"), &bob)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.problem && !String::from_utf8_lossy(&r.body).contains("Blood"));
    let r = s
        .get(&format!("/v1/users/alice/memories/{health}"), &bob)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // the reads show in alice's access log and chain
    let r = s.get("/v1/access-log", &alice).await;
    let log = r.json();
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["read_content", "list"]);
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["accessor"] == "bob" && e["grant"] == grant.as_str())
    );
    assert_eq!(log["items"][0]["memories"], json!([lisbon]));
    let r = s.get("/v1/chain?from=1&limit=100", &alice).await;
    let kinds: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "access_recorded").count(),
        2,
        "{kinds:?}"
    );

    // revoke: bob is refused
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/grants/{grant}"),
            Some(&alice),
            None,
            vec![],
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.get("/v1/users/alice/memories", &bob).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.problem);
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/grants/{grant}"),
            Some(&alice),
            None,
            vec![],
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "revoked twice");

    // expiry: a grant that lapses by itself (the API stops 2 s before expires_at)
    let r = s
        .post(
            "/v1/grants",
            &alice,
            json!({
                "grantee": "bob",
                "capabilities": { "metadata": true, "content": false },
                "expires_at": now_ms() + 4_000,
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s.get("/v1/users/alice/memories", &bob).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ids(&r.json()).len(), 3, "no conditions: every memory");
    let r = s
        .get(&format!("/v1/users/alice/memories/{lisbon}/content"), &bob)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "metadata only");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let r = s.get("/v1/users/alice/memories", &bob).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "expired");

    // erase one memory
    let r = s
        .post("/v1/erasure", &alice, json!({ "memory": health }))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .get(&format!("/v1/memories/{health}/content"), &alice)
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    let r = s.get(&format!("/v1/memories/{health}"), &alice).await;
    assert_eq!(r.json()["erased"], true);
    // The erasure took the record's metadata: only what the chain shows is left, in the
    // API and in PostgreSQL, and no filter matches it any more.
    let mut shown: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
    shown.sort();
    assert_eq!(
        shown,
        ["derived", "erased", "id", "ingested_at", "seq"],
        "{}",
        r.json()
    );
    let kept: (Option<String>, Option<Vec<String>>, Option<String>, Option<i64>) =
        sqlx::query_as(
            "SELECT kind, tags, content_type, size FROM memories WHERE user_id = 'alice' AND memory_id = $1",
        )
        .bind(hex::decode(&health).unwrap())
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(kept, (None, None, None, None));
    let r = s.get("/v1/memories?tag=health", &alice).await;
    assert!(
        !ids(&r.json()).contains(&health),
        "an erased memory matched its old tag"
    );
    let r = s.get("/v1/memories?q=blood", &alice).await;
    assert!(
        ids(&r.json()).is_empty(),
        "erased text is out of the search index"
    );
    let r = s
        .post("/v1/erasure", &alice, json!({ "memory": health }))
        .await;
    assert_eq!(r.status, StatusCode::GONE);

    // anchor, then the proof of a memory is anchored
    let alice_id = UserId::new("alice").unwrap();
    let t = std::time::Instant::now();
    let len = s.head("alice").await;
    while mnemo_projections::kv_head(&s.js, &alice_id)
        .await
        .unwrap()
        .is_none_or(|h| h.seq != len)
    {
        assert!(t.elapsed() < Duration::from_secs(30), "heads view stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rec = s.anchorer.run_epoch().await.unwrap().unwrap();
    assert_eq!(rec.epoch, 1);
    let r = s.get("/v1/anchors", &bob).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    let r = s.get("/v1/anchors/1", &alice).await;
    assert_eq!(r.json()["epoch"], 1);
    assert!(r.json()["receipt"]["tx_hash"].is_string());
    let r = s.get(&format!("/v1/memories/{lisbon}/proof"), &alice).await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.headers["mnemo-proof-level"], "anchored");
    // the body is the proof bundle mnemo-audit reads, as it reads it
    let bundle = mnemo_audit::read_proof(&r.body).unwrap();
    assert_eq!(bundle.verify(), Ok(mnemo_core::ProofLevel::Anchored));
    assert_eq!(
        mnemo_audit::verify_proof(&bundle, &Default::default()),
        Ok(mnemo_core::ProofLevel::Anchored)
    );

    // export: the whole custody bundle verifies
    let r = s.get("/v1/export", &alice).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "application/x-ndjson");
    let mut v = CustodyVerifier::new(Default::default());
    for line in r.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let item: BundleItem = serde_json::from_slice(line).unwrap();
        v.push(item).unwrap();
    }
    let summary = v.finish().unwrap();
    assert_eq!(summary.events, s.head("alice").await);
    assert_eq!(summary.anchors.len(), 1);
    assert_eq!(
        (summary.memories, summary.erasures, summary.payloads_opened),
        (3, 1, 2)
    );
    assert_eq!(
        (summary.grants, summary.revocations, summary.accesses),
        (2, 1, 3)
    );
}
