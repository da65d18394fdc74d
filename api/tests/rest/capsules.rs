//! Time capsules (FORMAT.md §4.1: `grant_created` with `not_before`, kind tag 0x23): a
//! grant that opens later serves nothing before it opens, records nothing, and says when
//! it opens; once open it serves like any grant. Bad openings are refused.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_capsule_serves_nothing_before_it_opens() {
    let s = stack().await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let letter = s
        .ingest(&alice, "note", "family", "for when you are older")
        .await;
    let opens = now_ms() + 4_000;
    let r = s
        .post(
            "/v1/grants",
            &alice,
            json!({
                "grantee": "bob",
                "capabilities": { "metadata": true, "content": true, "ask": true },
                "not_before": opens,
            }),
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    let grant = r.json()["id"].as_str().unwrap().to_owned();

    // Listed, to both sides, as not open yet, with its opening.
    for (token, role) in [(&alice, "owner"), (&bob, "grantee")] {
        let r = s.get(&format!("/v1/grants?role={role}"), token).await;
        let g = &r.json()["items"][0];
        assert_eq!(g["id"], grant.as_str());
        assert_eq!(
            (g["state"].as_str(), g["live"].as_bool()),
            (Some("not_yet_open"), Some(false))
        );
        assert_eq!(g["not_before"], opens);
        assert_eq!(g["capabilities"]["ask"], true);
    }

    // Before it opens: every read is a 403 that says when, and nothing is recorded.
    let head = s.head("alice").await;
    for path in [
        "/v1/users/alice/memories".to_owned(),
        format!("/v1/users/alice/memories/{letter}"),
        format!("/v1/users/alice/memories/{letter}/content"),
    ] {
        let r = s.get(&path, &bob).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(
            detail.contains("time capsule") && detail.contains(&opens.to_string()),
            "{detail}"
        );
    }
    assert_eq!(
        s.head("alice").await,
        head,
        "a refused read recorded something"
    );

    // Once open: served, and recorded in alice's chain.
    tokio::time::sleep(Duration::from_millis(
        (opens - now_ms()).max(0) as u64 + 200,
    ))
    .await;
    let r = s.get("/v1/users/alice/memories", &bob).await;
    r.assert_status(StatusCode::OK);
    assert_eq!(ids(&r.json()), std::slice::from_ref(&letter));
    let r = s
        .get(&format!("/v1/users/alice/memories/{letter}/content"), &bob)
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        s.head("alice").await,
        head + 2,
        "two reads, two access records"
    );
    let r = s.get("/v1/grants?role=grantee", &bob).await;
    assert_eq!(r.json()["items"][0]["state"], "live");

    // The chain holds it as a time capsule: kind tag 0x23, its opening in the event.
    let r = s.get("/v1/chain?from=1&limit=100", &alice).await;
    let created = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["event"]["kind"] == "grant_created")
        .cloned()
        .unwrap();
    assert_eq!(created["event"]["body"]["not_before"], opens, "{created}");
    let wire = hex::decode(created["wire"].as_str().unwrap()).unwrap();
    let kind_at = 1 + 4 + "alice".len() + 8 + 32 + 8;
    assert_eq!(wire[kind_at], 0x23, "the kind tag of a time capsule");

    // What cannot open is refused, and nothing is written.
    let head = s.head("alice").await;
    for (body, why) in [
        (
            json!({ "grantee": "bob", "capabilities": { "metadata": true, "content": false }, "not_before": opens + 10_000, "expires_at": opens + 5_000 }),
            "expires before it opens",
        ),
        (
            json!({ "grantee": "bob", "capabilities": { "metadata": true, "content": false }, "not_before": i64::MAX }),
            "an opening out of the time range",
        ),
        (
            json!({ "processor": "asr", "not_before": opens + 10_000 }),
            "a processing grant with an opening",
        ),
    ] {
        let r = s.post("/v1/grants", &alice, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.json());
    }
    assert_eq!(s.head("alice").await, head);
}
