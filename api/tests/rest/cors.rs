//! CORS: allowed origins only.

use super::*;

/// CORS (for browsers): a preflight from an allowed origin is answered with the methods and
/// headers the API takes; an answer to it names the origin and exposes the API's headers; a
/// page of another origin gets no CORS header at all (its browser refuses to read); and a
/// server configured with no origin sends none, preflight or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_allowed_origins_only() {
    let app = "http://localhost:5173";
    let s = stack_with(vec![app.to_owned()]).await;
    let token = s.auth.issue("admin", true, 60);
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/memories")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .body(Body::empty())
            .unwrap()
    };
    let r = s.router.clone().oneshot(preflight(app)).await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], app);
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for want in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(want), "{allowed}");
    }
    assert_eq!(h["access-control-max-age"], "600");
    // An answer to the page names its origin and exposes the proof level.
    let get = |origin: &str| {
        Request::builder()
            .uri("/v1/users/nobody/memories")
            .header("origin", origin)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let r = s.router.clone().oneshot(get(app)).await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], app);
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("mnemo-proof-level"), "{exposed}");
    // Another origin: no CORS header, preflight or not.
    let evil = "https://evil.example";
    let r = s.router.clone().oneshot(preflight(evil)).await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = s.router.clone().oneshot(get(evil)).await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // No origins configured: no CORS at all, and a preflight is a 405 problem.
    let plain = stack().await;
    let r = plain.router.clone().oneshot(preflight(app)).await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}
