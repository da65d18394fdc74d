//! Questions under grants (`POST /v1/users/{owner}/ask`, FORMAT.md §4.3): a search model
//! trained on alice's memories by a processor; bob asks under a grant with `ask` limited to
//! a tag and is answered only with memories it covers, recorded in alice's chain first;
//! a retry records nothing twice; no ask bit, revocation and an erased model refuse with
//! nothing recorded; the owner reads and erases the question; mnemo-audit refuses a
//! planted citation outside the grant with a named check.

use super::*;

/// A processor `trainer` that fetched `memories` of alice and recorded a search model over
/// them; returns the model's id.
async fn train(s: &Stack, alice: &str, memories: &[(String, &str)]) -> String {
    use base64::Engine;
    let admin = s.auth.issue("admin", true, 600);
    let r = s
        .post(
            "/v1/processors",
            &admin,
            json!({ "name": "trainer", "version": "1" }),
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(r.json()["signing_seed"].as_str().unwrap(), &mut seed).unwrap();
    let key = SigningKey::from_bytes(&seed);
    let r = s
        .post("/v1/grants", alice, json!({ "processor": "trainer" }))
        .await;
    r.assert_status(StatusCode::CREATED);
    let grant = r.json()["id"].as_str().unwrap().to_owned();
    let mut docs = Vec::new();
    for (id, text) in memories {
        let f = s
            .post(
                "/v1/processing/fetch",
                &token,
                json!({ "user": "alice", "grant": grant, "memory": id }),
            )
            .await;
        f.assert_status(StatusCode::OK);
        let member = mnemo_core::processing::SetMember {
            seq: mnemo_core::Seq(f.json()["seq"].as_u64().unwrap()),
            event_hash: mnemo_core::Hash32::from_hex(f.json()["event_hash"].as_str().unwrap())
                .unwrap(),
        };
        let words = mnemo_core::search_index::term_counts(text);
        docs.push((mnemo_core::MemoryId::from_hex(id).unwrap(), member, words));
    }
    docs.sort_by_key(|d| d.1.seq);
    let index = mnemo_core::search_index::SearchIndex::build(
        docs.iter().map(|(m, member, w)| (*m, *member, w)),
    );
    let object = serde_json::to_vec(&index).unwrap();
    let artifact = mnemo_core::Hash32(*blake3::hash(&object).as_bytes());
    let set = mnemo_core::TrainingSet::new(docs.iter().map(|d| d.1).collect()).unwrap();
    let sig = mnemo_core::processing::sign(
        &key,
        &mnemo_core::processing::model_signing_message(&mnemo_core::processing::ModelClaim {
            user: &UserId::new("alice").unwrap(),
            grant: &mnemo_core::GrantId::from_hex(&grant).unwrap(),
            processor: &mnemo_core::ProcessorId::new("trainer").unwrap(),
            version: "1",
            artifact: &artifact,
            set_root: &set.root(),
            set_count: docs.len() as u64,
        }),
    );
    let inputs: Vec<String> = docs.iter().map(|d| d.0.to_string()).collect();
    let r = s
        .post(
            "/v1/processing/models",
            &token,
            json!({
                "user": "alice", "grant": grant, "version": "1", "artifact": artifact,
                "inputs": inputs, "signature": sig, "format": "mnemo-bm25-v1",
                "object": base64::engine::general_purpose::STANDARD.encode(&object),
            }),
        )
        .await;
    r.assert_status(StatusCode::OK);
    r.json()["model"].as_str().unwrap().to_owned()
}

fn cited(answer: &Value) -> Vec<String> {
    let mut v: Vec<String> = answer["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["memory"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

async fn ask(s: &Stack, token: &str, q: &str, key: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    s.call(
        Method::POST,
        "/v1/users/alice/ask",
        Some(token),
        Some("application/json"),
        serde_json::to_vec(&json!({ "q": q, "k": 5 })).unwrap(),
        &headers,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_are_answered_within_the_grant_and_recorded_first() {
    let s = stack().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    let texts = [
        ("family", "dinner with grandma on sunday"),
        ("family", "grandma's recipe for rye bread"),
        ("family", "the lake trip with the kids"),
        ("work", "grandma project deadline at work"),
    ];
    let mut memories = Vec::new();
    for (tag, text) in texts {
        memories.push((s.ingest(&alice, "note", tag, text).await, text));
    }
    let (family, work): (Vec<_>, Vec<_>) = memories.iter().partition(|(_, t)| !t.contains("work"));
    let model = train(&s, &alice, &memories).await;
    // bob may ask about (and read) family memories; carol may only list them.
    let r = s
        .post(
            "/v1/grants",
            &alice,
            json!({ "grantee": "bob", "capabilities": { "metadata": true, "content": true, "ask": true }, "conditions": { "tags": ["family"] } }),
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    let bobs_grant = r.json()["id"].as_str().unwrap().to_owned();
    s.post(
        "/v1/grants",
        &alice,
        json!({ "grantee": "carol", "capabilities": { "metadata": true, "content": false }, "conditions": { "tags": ["family"] } }),
    )
    .await
    .assert_status(StatusCode::CREATED);

    // bob asks: the work memory matches too, but only family memories are cited.
    let head = s.head("alice").await;
    let r = ask(&s, &bob, "grandma", Some("q-1")).await;
    r.assert_status(StatusCode::OK);
    let a = r.json();
    let mut want: Vec<String> = family[..2].iter().map(|(id, _)| id.clone()).collect();
    want.sort();
    assert_eq!(cited(&a), want, "{a}");
    assert!(!cited(&a).contains(&work[0].0));
    assert_eq!(
        (a["grant"].as_str(), a["model"].as_str()),
        (Some(bobs_grant.as_str()), Some(model.as_str()))
    );
    for c in a["citations"].as_array().unwrap() {
        assert!(c["snippet"].as_str().unwrap().contains("grandma"), "{c}");
        assert_eq!(
            c["proof"],
            format!(
                "/v1/models/{model}/training-set/{}",
                c["memory"].as_str().unwrap()
            )
        );
    }
    // Recorded in alice's chain before the answer came back.
    assert_eq!(s.head("alice").await, head + 1);
    let chain = s.get("/v1/chain?from=1&limit=100", &alice).await.json();
    let event = chain["items"].as_array().unwrap().last().unwrap()["event"].clone();
    assert_eq!(event["kind"], "question_asked", "{event}");
    assert_eq!(event["body"]["asker"], "bob");
    assert_eq!(event["body"]["question"], a["question"]);
    assert!(
        event["payload"].is_string(),
        "the question's text is sealed: {event}"
    );

    // A retry with the same key: the recorded answer, nothing recorded twice.
    let again = ask(&s, &bob, "grandma", Some("q-1")).await;
    again.assert_status(StatusCode::OK);
    assert_eq!(
        (
            again.json()["duplicate"].as_bool(),
            &again.json()["question"]
        ),
        (Some(true), &a["question"])
    );
    assert_eq!(cited(&again.json()), want);
    assert_eq!(s.head("alice").await, head + 1);

    // The owner's access log: who asked, what, what the answer cited.
    let log = s.get("/v1/access-log", &alice).await.json();
    let entry = &log["items"][0];
    assert_eq!(
        (&entry["action"], &entry["accessor"]),
        (&json!("ask"), &json!("bob")),
        "{log}"
    );
    assert_eq!(entry["question"]["text"], "grandma");
    let mut logged: Vec<String> = entry["memories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    logged.sort();
    assert_eq!(logged, want);

    // No ask bit, another owner, bad input: refused, nothing recorded.
    let head = s.head("alice").await;
    let r = ask(&s, &carol, "grandma", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for body in [
        json!({ "q": "" }),
        json!({ "q": "x", "k": 0 }),
        json!({ "q": "x", "k": 21 }),
        json!({ "q": "x".repeat(4097) }),
    ] {
        let r = s.post("/v1/users/alice/ask", &bob, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
    let r = s
        .post("/v1/users/nobody/ask", &bob, json!({ "q": "x" }))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "an unknown owner looks like no grant"
    );
    assert_eq!(s.head("alice").await, head);

    // The owner erases the question's text: the log keeps the entry, not the words.
    let r = s
        .post("/v1/erasure", &alice, json!({ "memory": a["question"] }))
        .await;
    r.assert_status(StatusCode::OK);
    let log = s.get("/v1/access-log", &alice).await.json();
    let entry = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["question"]["id"] == a["question"])
        .unwrap();
    assert_eq!(entry["question"]["text"], Value::Null, "{entry}");

    // alice's export, with the question's opening gone, verifies.
    assert_eq!(audit_export(&s, &alice).await, None);

    // A question recorded past the API, citing the work memory under bob's family-only
    // grant: the chain rules cannot see tags, but mnemo-audit, holding the records, refuses
    // it with a named check.
    let planted = s
        .ledger
        .append_question(
            &UserId::new("alice").unwrap(),
            mnemo_ledger::NewQuestion {
                asker: UserId::new("bob").unwrap(),
                grant: mnemo_core::GrantId::from_hex(&bobs_grant).unwrap(),
                model: mnemo_core::ModelId::from_hex(&model).unwrap(),
                cited: vec![mnemo_core::MemoryId::from_hex(&work[0].0).unwrap()],
                text: "planted".into(),
                idempotency_key: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        audit_export(&s, &alice).await,
        Some(("citation_not_covered".into(), Some(planted.seq.0)))
    );

    // Revoked: refused, nothing recorded.
    s.call(
        Method::DELETE,
        &format!("/v1/grants/{bobs_grant}"),
        Some(&alice),
        None,
        vec![],
        &[],
    )
    .await
    .assert_status(StatusCode::OK);
    let head = s.head("alice").await;
    assert_eq!(
        ask(&s, &bob, "grandma", None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.head("alice").await, head);
}
