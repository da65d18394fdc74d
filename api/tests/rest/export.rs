//! Exports: one cut short is seen as failed.

use super::*;

/// An export that fails midway (here: a payload key that no longer decrypts, planted in
/// the key bucket) is seen as failed: the HTTP body ends in an error instead of a clean
/// end, and what arrived is refused by mnemo-audit (no end item).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_cut_short_is_seen_as_failed() {
    use http_body_util::BodyExt;
    let s = stack().await;
    let dora = s.user("dora").await;
    for i in 0..3 {
        s.ingest(&dora, "note", "t", &format!("note {i}")).await;
    }
    // Garbage in place of dora's generation keys: opening her payloads now fails.
    let kv =
        s.js.get_key_value(mnemo_core::names::KEYS_BUCKET)
            .await
            .unwrap();
    let mut keys = kv.keys().await.unwrap();
    let mut planted = 0;
    while let Some(k) = futures::StreamExt::next(&mut keys).await {
        let k = k.unwrap();
        if k.starts_with("g.dora.") {
            kv.put(&k, vec![7u8; 80].into()).await.unwrap();
            planted += 1;
        }
    }
    assert!(planted > 0);
    let req = Request::builder()
        .uri("/v1/export")
        .header(header::AUTHORIZATION, format!("Bearer {dora}"))
        .body(Body::empty())
        .unwrap();
    let r = s.router.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the stream had started");
    let mut body = r.into_body();
    let mut got = Vec::new();
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => got.extend_from_slice(f.data_ref().map(|d| &d[..]).unwrap_or_default()),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed,
        "the body ended cleanly: {}",
        String::from_utf8_lossy(&got)
    );
    let items = mnemo_audit::read_bundle(&got[..], |_| {});
    let out = mnemo_audit::verify_items(items, &mnemo_audit::Options::default()).unwrap();
    let f = out.failure.expect("a bundle cut short is refused");
    assert_eq!(f.code, "structure", "{}", f.message);
}
