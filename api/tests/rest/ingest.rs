//! Ingest: its variants, idempotency keys and uploads.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_variants_idempotency_and_uploads() {
    let s = stack().await;
    let carol = s.user("carol").await;
    // the same Idempotency-Key twice: one event, the same receipt
    let body = serde_json::to_vec(&json!({ "text": "once" })).unwrap();
    let hdr = [("idempotency-key", "k-1")];
    let a = s
        .call(
            Method::POST,
            "/v1/memories",
            Some(&carol),
            Some("application/json"),
            body.clone(),
            &hdr,
        )
        .await;
    let b = s
        .call(
            Method::POST,
            "/v1/memories",
            Some(&carol),
            Some("application/json"),
            body,
            &hdr,
        )
        .await;
    assert_eq!((a.status, b.status), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a.json()["id"], b.json()["id"]);
    assert_eq!(b.json()["duplicate"], true);
    // Both answers carry the same custody receipt, which verifies alone under the custody
    // key (docs/FORMAT.md §5.5).
    let custody =
        mnemo_core::PublicKey(mnemo_core::SigningKey::from_bytes(&[4; 32]).verifying_key());
    for r in [&a, &b] {
        let receipt: mnemo_core::CustodyReceipt =
            serde_json::from_value(r.json()["custody"].clone()).expect("a custody receipt");
        let (event, hash) = receipt.verify(&custody).unwrap();
        assert_eq!(event.user.as_str(), "carol");
        assert_eq!(r.json()["event_hash"], hash.to_string());
    }
    assert_eq!(s.head("carol").await, 2);
    // the same key with another request (JSON text, tags, or a binary body): 422, nothing
    // written, and the original still answers as a duplicate
    for (ct, other) in [
        (
            "application/json",
            serde_json::to_vec(&json!({ "text": "twice" })).unwrap(),
        ),
        (
            "application/json",
            serde_json::to_vec(&json!({ "text": "once", "tags": ["x"] })).unwrap(),
        ),
        ("application/octet-stream", b"once".to_vec()),
    ] {
        let r = s
            .call(
                Method::POST,
                "/v1/memories",
                Some(&carol),
                Some(ct),
                other,
                &hdr,
            )
            .await;
        r.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            r.json()["type"],
            "https://mnemo.dev/problems/idempotency-key-reused"
        );
    }
    assert_eq!(s.head("carol").await, 2);
    // A text memory under the key `k-1`.
    let keyed = async |text: &str| {
        s.call(
            Method::POST,
            "/v1/memories",
            Some(&carol),
            Some("application/json"),
            serde_json::to_vec(&json!({ "text": text })).unwrap(),
            &hdr,
        )
        .await
    };
    let again = keyed("once").await;
    again.assert_status(StatusCode::OK);
    assert_eq!(again.json()["id"], a.json()["id"]);
    // Past the store's duplicate window, the key still holds (it is in the chain): the
    // same request answers the first receipt, another is refused, nothing is appended.
    tokio::time::sleep(DUPLICATE_WINDOW * 2).await;
    let late = keyed("once").await;
    late.assert_status(StatusCode::OK);
    assert_eq!(late.json()["id"], a.json()["id"]);
    assert_eq!(late.json()["duplicate"], true);
    let late_other = keyed("twice").await;
    late_other.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        late_other.json()["type"],
        "https://mnemo.dev/problems/idempotency-key-reused"
    );
    assert_eq!(s.head("carol").await, 2);
    // a binary upload (above the inline limit: the object store), read back
    let audio: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let r = s
        .call(
            Method::POST,
            "/v1/memories?kind=audio&tags=voice,morning",
            Some(&carol),
            Some("audio/ogg"),
            audio.clone(),
            &[],
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = s.get(&format!("/v1/memories/{id}/content"), &carol).await;
    assert_eq!(
        (r.content_type.as_str(), r.body.len()),
        ("audio/ogg", audio.len())
    );
    assert!(r.body == audio);
    assert_eq!(r.headers["content-disposition"], "inline");
    // Served content cannot run in the API's origin: HTML is a download, never sniffed,
    // and sandboxed; text is served as plain UTF-8 text.
    let r = s
        .call(
            Method::POST,
            "/v1/memories?kind=page",
            Some(&carol),
            Some("text/html"),
            b"<script>alert(document.cookie)</script>".to_vec(),
            &[],
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    let html = r.json()["id"].as_str().unwrap().to_owned();
    let r = s.get(&format!("/v1/memories/{html}/content"), &carol).await;
    r.assert_status(StatusCode::OK);
    assert!(
        r.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert!(
        r.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    let text = s.ingest(&carol, "note", "t", "plain words").await;
    let r = s.get(&format!("/v1/memories/{text}/content"), &carol).await;
    assert_eq!(r.content_type, "text/plain; charset=utf-8");
    assert_eq!(r.headers["content-disposition"], "inline");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    let r = s.get(&format!("/v1/memories/{id}"), &carol).await;
    assert_eq!(r.json()["tags"], json!(["voice", "morning"]));
    assert_eq!(r.json()["storage"], "object");
    // the views learn the size from the record, without reading the object
    assert_eq!(r.json()["size"], json!(audio.len()));
    // too large: refused, nothing written
    let r = s
        .call(
            Method::POST,
            "/v1/memories",
            Some(&carol),
            Some("audio/ogg"),
            vec![1; 600 * 1024],
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.problem);
    // ... also when the size is declared up front
    let r = s
        .call(
            Method::POST,
            "/v1/memories",
            Some(&carol),
            Some("audio/ogg"),
            vec![1; 600 * 1024],
            &[("content-length", "614400")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.head("carol").await, 5);
    // an upload that arrives in many small pieces streams into the object store
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        audio.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/memories?kind=audio")
        .header(header::AUTHORIZATION, format!("Bearer {carol}"))
        .header(header::CONTENT_TYPE, "audio/ogg")
        .body(Body::from_stream(futures::stream::iter(pieces)))
        .unwrap();
    let r = s.router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = v["id"].as_str().unwrap();
    let r = s.get(&format!("/v1/memories/{id}/content"), &carol).await;
    assert!(
        r.body == audio,
        "a streamed upload reads back byte for byte"
    );
    assert_eq!(s.head("carol").await, 6);
    // a tampered object (its last byte flipped in the store): the download starts (the first
    // chunks check out) but never completes, so no client takes it for the content
    let store =
        s.js.get_object_store(mnemo_ledger::OBJECTS_BUCKET)
            .await
            .unwrap();
    let name = format!("carol.{id}");
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut store.get(&name).await.unwrap(), &mut raw)
        .await
        .unwrap();
    *raw.last_mut().unwrap() ^= 1;
    store.put(name.as_str(), &mut raw.as_slice()).await.unwrap();
    let req = Request::builder()
        .uri(format!("/v1/memories/{id}/content"))
        .header(header::AUTHORIZATION, format!("Bearer {carol}"))
        .body(Body::empty())
        .unwrap();
    let r = s.router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_LENGTH], audio.len().to_string());
    assert!(
        axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .is_err(),
        "the body breaks off before its end"
    );
    // and a missing object is a problem before any byte
    store.delete(&name).await.unwrap();
    let r = s.get(&format!("/v1/memories/{id}/content"), &carol).await;
    r.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.problem);
}
