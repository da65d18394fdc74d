//! The REST API in process (`tower::ServiceExt::oneshot`) against real nats-server,
//! PostgreSQL and anvil: the full flow, isolation, bad input.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use mnemo_anchor::{Anchorer, AnchorerConfig};
use mnemo_api::auth::Auth;
use mnemo_api::http::{Api, ApiConfig, ApiStats, is_problem};
use mnemo_core::custody::{BundleItem, CustodyVerifier};
use mnemo_core::{SigningKey, UserId};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower::ServiceExt;

const JWT_SEED: [u8; 32] = [9; 32];
/// The ledger's duplicate window in these tests.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(1);

/// The shared custody stack (servers, ledger, views, projector) with the API on top.
struct Stack {
    custody: mnemo_testkit::Stack,
    router: axum::Router,
    /// `/openapi.json`: every response is checked against it.
    doc: Value,
    auth: Auth,
    anchorer: Anchorer,
}

impl std::ops::Deref for Stack {
    type Target = mnemo_testkit::Stack;
    fn deref(&self) -> &Self::Target {
        &self.custody
    }
}

async fn stack() -> Stack {
    stack_with(Vec::new()).await
}

/// The stack with CORS allowing `cors_origins`.
async fn stack_with(cors_origins: Vec<String>) -> Stack {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_test_writer()
        .try_init();
    let custody = mnemo_testkit::Stack::builder()
        .custody_seed([4; 32])
        .batch_wait(Duration::from_millis(2))
        // Short, so that a retry past it is tested: keys are kept in the chain for good.
        .duplicate_window(DUPLICATE_WINDOW)
        .anvil()
        .start()
        .await;
    let anchorer = custody.anchorer(AnchorerConfig::default()).await;
    let auth = Auth::new(&SigningKey::from_bytes(&JWT_SEED), "mnemo", "mnemo-api");
    let api = Arc::new(Api {
        ledger: custody.ledger.clone(),
        views: mnemo_projections::Views::from_pool(custody.pool.clone()),
        js: custody.js.clone(),
        auth: auth.clone(),
        cfg: ApiConfig {
            max_upload: 512 * 1024,
            cors_origins,
            ..Default::default()
        },
        stats: Arc::new(ApiStats::default()),
        accounts: None,
        processing: mnemo_processing::Processing::open(custody.ledger.clone(), custody.js.clone())
            .await
            .unwrap(),
        sessions: Default::default(),
    });
    Stack {
        router: mnemo_api::http::router(api),
        doc: serde_json::to_value(mnemo_api::http::openapi()).unwrap(),
        auth,
        anchorer,
        custody,
    }
}

struct Resp {
    status: StatusCode,
    problem: bool,
    content_type: String,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    /// Asserts the status, showing the body when it is another.
    #[track_caller]
    fn assert_status(&self, want: StatusCode) {
        assert_eq!(self.status, want, "{}", String::from_utf8_lossy(&self.body));
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Stack {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let method_for_check = method.clone();
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let r = self
            .router
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let problem = is_problem(r.headers());
        let content_type = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let headers = r.headers().clone();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        let resp = Resp {
            status,
            problem,
            content_type,
            headers,
            body,
        };
        check_against_doc(&self.doc, &method_for_check, path, &resp);
        resp
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None, vec![], &[])
            .await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(
            Method::POST,
            path,
            Some(token),
            Some("application/json"),
            serde_json::to_vec(&body).unwrap(),
            &[],
        )
        .await
    }

    async fn user(&self, id: &str) -> String {
        let admin = self.auth.issue("admin", true, 600);
        let r = self.post("/v1/users", &admin, json!({ "id": id })).await;
        assert_eq!(r.status, StatusCode::CREATED);
        r.json()["token"].as_str().unwrap().to_owned()
    }

    async fn ingest(&self, token: &str, kind: &str, tag: &str, text: &str) -> String {
        let r = self
            .post(
                "/v1/memories",
                token,
                json!({ "kind": kind, "text": text, "tags": [tag], "captured_at": now_ms() }),
            )
            .await;
        r.assert_status(StatusCode::CREATED);
        r.json()["id"].as_str().unwrap().to_owned()
    }

    async fn head(&self, user: &str) -> u64 {
        self.ledger
            .head(&UserId::new(user).unwrap())
            .await
            .unwrap()
            .unwrap()
            .len
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

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

/// Checks `v` against an OpenAPI 3.1 schema (the subset utoipa emits: `$ref`, `type` and
/// type lists, `properties`/`required`, `items`, `oneOf`/`anyOf`/`allOf`).
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema[key].as_array() {
            return alts
                .iter()
                .any(|a| conforms(doc, a, v, at).is_ok())
                .then_some(())
                .ok_or_else(|| format!("{at}: matches none of {key}: {v}"));
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for a in all {
            conforms(doc, a, v, at)?;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => true,
        });
        if !ok {
            return Err(format!("{at}: {v} is not {types:?}"));
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for req in schema["required"].as_array().into_iter().flatten() {
            let req = req.as_str().unwrap_or_default();
            if !obj.contains_key(req) {
                return Err(format!("{at}: missing required {req}"));
            }
        }
        for (k, sub) in props {
            if let Some(x) = obj.get(k) {
                conforms(doc, sub, x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The documented operation for a concrete path.
fn operation<'d>(doc: &'d Value, method: &Method, path: &str) -> Option<&'d Value> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object()?.iter().find_map(|(tpl, item)| {
        let t: Vec<&str> = tpl.split('/').collect();
        let matches = t.len() == segs.len()
            && t.iter()
                .zip(&segs)
                .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')));
        matches
            .then(|| item.get(method.as_str().to_lowercase()))
            .flatten()
    })
}

/// Checks one response against the document: a documented status with a JSON body matches
/// its schema; a refusal is a problem.
fn check_against_doc(doc: &Value, method: &Method, path: &str, r: &Resp) {
    let Some(op) = operation(doc, method, path) else {
        return; // not an API route (the fallback's 404 is checked to be a problem below)
    };
    let code = r.status.as_u16().to_string();
    let range = format!("{}XX", code.chars().next().unwrap());
    let doc_resp = op["responses"].get(&code).or(op["responses"].get(&range));
    let Some(doc_resp) = doc_resp else {
        panic!("{method} {path}: status {code} is not documented");
    };
    if r.status.is_client_error() || r.status.is_server_error() {
        assert!(r.problem, "{method} {path}: a {code} that is not a problem");
    }
    let ct = r
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    if ct == "application/json" || ct == "application/problem+json" {
        let schema = &doc_resp["content"][ct.as_str()]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path}: {code} {ct} is not documented: {doc_resp}"
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        if let Err(e) = conforms(doc, schema, &body, "$") {
            panic!("{method} {path} {code}: the response does not match its schema: {e}");
        }
    }
}

/// Verifies `user`'s export with mnemo-audit's verifier: `None` when valid, else the check.
async fn audit_export(s: &Stack, token: &str) -> Option<(String, Option<u64>)> {
    let r = s.get("/v1/export", token).await;
    r.assert_status(StatusCode::OK);
    let items = mnemo_audit::read_bundle(&r.body[..], |_| {});
    let out = mnemo_audit::verify_items(items, &mnemo_audit::Options::default()).unwrap();
    out.failure.map(|f| (f.code, f.seq))
}

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
            },
            conditions: Default::default(),
            expires_at: Some(mnemo_core::TimestampMs(i64::MAX)),
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
