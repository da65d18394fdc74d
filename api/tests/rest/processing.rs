//! Processing over REST, from a processor's registration to erasure.

use super::*;

/// Processing over REST: register a processor (admin), grant it (`/v1/grants`), fetch and
/// submit with its token, lineage, models, erasure of the lineage, dead letters, revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_over_rest_from_registration_to_erasure() {
    use base64::Engine;
    let s = stack().await;
    let admin = s.auth.issue("admin", true, 600);
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    // Only an admin registers processors.
    let r = s
        .post(
            "/v1/processors",
            &alice,
            json!({ "name": "asr", "version": "1" }),
        )
        .await;
    r.assert_status(StatusCode::FORBIDDEN);
    let r = s
        .post(
            "/v1/processors",
            &admin,
            json!({ "name": "asr", "version": "1", "consumes": ["note"], "produces": ["transcript"] }),
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    let reg = r.json();
    let token = reg["token"].as_str().unwrap().to_owned();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(reg["signing_seed"].as_str().unwrap(), &mut seed).unwrap();
    let key = SigningKey::from_bytes(&seed);
    let again = s
        .post(
            "/v1/processors",
            &admin,
            json!({ "name": "asr", "version": "1" }),
        )
        .await;
    again.assert_status(StatusCode::CONFLICT);
    let listed = s.get("/v1/processors", &admin).await;
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);
    // A processing grant through /v1/grants; an unknown processor is a 404.
    let memory = s.ingest(&alice, "note", "t", "hello").await;
    let r = s
        .post("/v1/grants", &alice, json!({ "processor": "nobody" }))
        .await;
    r.assert_status(StatusCode::NOT_FOUND);
    let r = s
        .post(
            "/v1/grants",
            &alice,
            json!({ "processor": "asr", "conditions": { "kinds": ["note"] } }),
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    let grant = r.json()["id"].as_str().unwrap().to_owned();
    let listed = s.get("/v1/grants", &alice).await.json();
    assert!(
        listed["processing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["processor"] == "asr")
    );
    // A user token can not fetch; the processor's can, and the fetch is in the chain.
    let fetch = json!({ "user": "alice", "grant": grant, "memory": memory });
    s.post("/v1/processing/fetch", &alice, fetch.clone())
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let before = s.head("alice").await;
    let f = s.post("/v1/processing/fetch", &token, fetch.clone()).await;
    f.assert_status(StatusCode::OK);
    assert_eq!(s.head("alice").await, before + 1);
    let content = base64::engine::general_purpose::STANDARD
        .decode(f.json()["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(content, b"hello");
    // The owner's access log tells it: which processor, which memory, under which grant.
    let log = s.get("/v1/access-log", &alice).await.json();
    let fetched = &log["items"][0];
    assert_eq!(
        (
            &fetched["accessor"],
            &fetched["accessor_kind"],
            &fetched["action"]
        ),
        (&json!("asr"), &json!("processor"), &json!("fetch")),
        "{log}"
    );
    assert_eq!(fetched["grant"], json!(grant));
    assert_eq!(fetched["memories"], json!([memory]));
    // bob's memory under alice's grant: refused, nothing recorded.
    let bobs = s.ingest(&bob, "note", "t", "bob's").await;
    let r = s
        .post(
            "/v1/processing/fetch",
            &token,
            json!({ "user": "alice", "grant": grant, "memory": bobs }),
        )
        .await;
    assert!(
        r.problem && r.status == StatusCode::NOT_FOUND,
        "{}",
        r.status
    );
    // A signed result.
    let record = mnemo_core::MemoryRecord {
        kind: "transcript".into(),
        tags: vec![],
        captured_at: None,
        source: None,
        content_type: "text/plain".into(),
        content: mnemo_core::Content::Inline {
            bytes: b"HELLO".to_vec(),
        },
    };
    let salt = [7u8; 32];
    let c = mnemo_core::commitment::commit(&salt, &record.canonical_bytes());
    let grant_id = mnemo_core::GrantId::from_hex(&grant).unwrap();
    let input = mnemo_core::MemoryId::from_hex(&memory).unwrap();
    let msg = mnemo_core::processing::derived_signing_message(
        &UserId::new("alice").unwrap(),
        &grant_id,
        &mnemo_core::ProcessorId::new("asr").unwrap(),
        "1",
        &[input],
        &c,
    );
    let sig = mnemo_core::processing::sign(&key, &msg);
    // Held to the registration: another version, or a kind the processor does not declare
    // (asr produces transcripts), is refused and nothing is written, signed or not.
    let before = s.head("alice").await;
    for (version, kind) in [("2", "transcript"), ("1\u{0}", "transcript"), ("1", "note")] {
        let msg = mnemo_core::processing::derived_signing_message(
            &UserId::new("alice").unwrap(),
            &grant_id,
            &mnemo_core::ProcessorId::new("asr").unwrap(),
            version,
            &[input],
            &c,
        );
        let r = s
            .post(
                "/v1/processing/results",
                &token,
                json!({
                    "user": "alice", "grant": grant, "version": version, "inputs": [memory],
                    "record": { "kind": kind, "content_type": "text/plain",
                                "content": base64::engine::general_purpose::STANDARD.encode("HELLO") },
                    "salt": hex::encode(salt),
                    "signature": mnemo_core::processing::sign(&key, &msg),
                }),
            )
            .await;
        r.assert_status(StatusCode::FORBIDDEN);
        assert!(r.problem);
    }
    assert_eq!(s.head("alice").await, before, "nothing was written");
    let submit = json!({
        "user": "alice", "grant": grant, "version": "1", "inputs": [memory],
        "record": { "kind": "transcript", "content_type": "text/plain",
                    "content": base64::engine::general_purpose::STANDARD.encode("HELLO") },
        "salt": hex::encode(salt), "signature": sig,
    });
    let r = s
        .post("/v1/processing/results", &token, submit.clone())
        .await;
    r.assert_status(StatusCode::OK);
    let derived = r.json()["memory"].as_str().unwrap().to_owned();
    let r = s.post("/v1/processing/results", &token, submit).await;
    assert_eq!(r.json()["duplicate"], true);
    // Lineage both ways; the owner reads the derived memory like any memory.
    s.no_lag(Duration::from_secs(20)).await;
    let c = s
        .get(&format!("/v1/memories/{derived}/content"), &alice)
        .await;
    c.assert_status(StatusCode::OK);
    assert_eq!(&c.body[..], b"HELLO");
    // Marked as a processor's result wherever it is shown; the input is the owner's own.
    let m = s
        .get(&format!("/v1/memories/{derived}"), &alice)
        .await
        .json();
    assert_eq!(m["derived"], true, "{m}");
    let m = s
        .get(&format!("/v1/memories/{memory}"), &alice)
        .await
        .json();
    assert_eq!(m["derived"], false, "{m}");
    let l = s
        .get(&format!("/v1/memories/{memory}/lineage"), &alice)
        .await;
    l.assert_status(StatusCode::OK);
    assert_eq!(l.json()["outputs"], json!([derived]));
    let l = s
        .get(&format!("/v1/memories/{derived}/lineage"), &alice)
        .await
        .json();
    assert_eq!(l["inputs"], json!([memory]));
    assert_eq!(s.get("/v1/models", &alice).await.json()["items"], json!([]));
    // A search model over the fetched input, its artifact kept by mnemo and queried by
    // the owner; a wrong hash or an index that is not the training set is refused.
    let member = mnemo_core::processing::SetMember {
        seq: mnemo_core::Seq(f.json()["seq"].as_u64().unwrap()),
        event_hash: mnemo_core::Hash32::from_hex(f.json()["event_hash"].as_str().unwrap()).unwrap(),
    };
    let words = mnemo_core::search_index::term_counts("hello");
    let index = mnemo_core::search_index::SearchIndex::build([(input, member, &words)]);
    let object = serde_json::to_vec(&index).unwrap();
    let artifact = mnemo_core::Hash32(*blake3::hash(&object).as_bytes());
    let set = mnemo_core::TrainingSet::new(vec![member]).unwrap();
    let model_request = |artifact: mnemo_core::Hash32, object: &[u8]| {
        let sig = mnemo_core::processing::sign(
            &key,
            &mnemo_core::processing::model_signing_message(&mnemo_core::processing::ModelClaim {
                user: &UserId::new("alice").unwrap(),
                grant: &grant_id,
                processor: &mnemo_core::ProcessorId::new("asr").unwrap(),
                version: "1",
                artifact: &artifact,
                set_root: &set.root(),
                set_count: 1,
            }),
        );
        json!({
            "user": "alice", "grant": grant, "version": "1", "artifact": artifact,
            "inputs": [memory], "signature": sig, "format": "mnemo-bm25-v1",
            "object": base64::engine::general_purpose::STANDARD.encode(object),
        })
    };
    let r = s
        .post(
            "/v1/processing/models",
            &token,
            model_request(artifact, b"other bytes"),
        )
        .await;
    assert!(
        r.problem && r.status == StatusCode::BAD_REQUEST,
        "{}",
        r.status
    );
    let empty = serde_json::to_vec(&mnemo_core::search_index::SearchIndex::build([])).unwrap();
    let empty_hash = mnemo_core::Hash32(*blake3::hash(&empty).as_bytes());
    let r = s
        .post(
            "/v1/processing/models",
            &token,
            model_request(empty_hash, &empty),
        )
        .await;
    assert!(
        r.problem && r.status == StatusCode::BAD_REQUEST,
        "{}",
        r.status
    );
    let r = s
        .post(
            "/v1/processing/models",
            &token,
            model_request(artifact, &object),
        )
        .await;
    r.assert_status(StatusCode::OK);
    let model = r.json()["model"].as_str().unwrap().to_owned();
    let q = s.get("/v1/models/latest/query?q=Hello", &alice).await;
    q.assert_status(StatusCode::OK);
    assert_eq!(q.json()["model"], model);
    assert_eq!(q.json()["hits"][0]["memory"], memory);
    let proof = q.json()["hits"][0]["proof"].as_str().unwrap().to_owned();
    let p = s.get(&proof, &alice).await;
    p.assert_status(StatusCode::OK);
    assert_eq!(p.json()["proof"]["verdict"], "included");
    let none = s
        .get(&format!("/v1/models/{model}/query?q=absent"), &alice)
        .await;
    assert_eq!(none.json()["hits"], json!([]));
    s.get("/v1/models/latest/query?q=hello", &bob)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    // Dead letters: none; a processor sees only its own.
    let d = s.get("/v1/processing/dead-letters", &token).await;
    d.assert_status(StatusCode::OK);
    s.get("/v1/processing/dead-letters", &alice)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    // Erasing the input erases what was derived from it.
    s.no_lag(Duration::from_secs(20)).await;
    let r = s
        .post(
            "/v1/erasure",
            &alice,
            json!({ "memory": memory, "reason": "mine" }),
        )
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["closure"], json!([derived]));
    let d = s.get(&format!("/v1/memories/{derived}"), &alice).await;
    d.assert_status(StatusCode::OK);
    assert_eq!(
        d.json()["erased"],
        true,
        "the derived memory is erased with its input"
    );
    let found = s.get("/v1/memories?q=HELLO", &alice).await.json();
    assert!(
        ids(&found).is_empty(),
        "its text is out of the search index"
    );
    s.get(&format!("/v1/memories/{derived}/content"), &alice)
        .await
        .assert_status(StatusCode::GONE);
    // The model is stale, its artifact deleted; the processor is told what to leave out.
    let q = s
        .get(&format!("/v1/models/{model}/query?q=hello"), &alice)
        .await;
    assert!(q.problem && q.status == StatusCode::GONE, "{}", q.status);
    assert!(String::from_utf8_lossy(&q.body).contains("model-stale"));
    let stale = s.get("/v1/processing/stale", &token).await;
    stale.assert_status(StatusCode::OK);
    assert_eq!(stale.json()["stale"][0]["model"], model);
    assert_eq!(stale.json()["stale"][0]["erased"], json!([memory]));
    // Revoking the processor stops its fetches at once.
    let r = s
        .call(
            Method::DELETE,
            "/v1/processors/asr",
            Some(&admin),
            None,
            vec![],
            &[],
        )
        .await;
    r.assert_status(StatusCode::OK);
    let other = s.ingest(&alice, "note", "t", "later").await;
    let r = s
        .post(
            "/v1/processing/fetch",
            &token,
            json!({ "user": "alice", "grant": grant, "memory": other }),
        )
        .await;
    r.assert_status(StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&r.body).contains("revoked"));
    // The processing grant is revoked through /v1/grants like any other.
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
    r.assert_status(StatusCode::OK);
    assert!(
        audit_export(&s, &alice).await.is_none(),
        "the chain verifies"
    );
}
