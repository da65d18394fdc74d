//! The REST API in process (`tower::ServiceExt::oneshot`) against real nats-server,
//! PostgreSQL and anvil, one file per feature: the whole flow (`flow`), ingest (`ingest`),
//! isolation and bad input (`isolation`), time capsules (`capsules`), the OpenAPI document
//! (`openapi`), poison values
//! (`poison`), processing (`processing`), CORS (`cors`) and exports (`export`). Every
//! response is checked against `/openapi.json` (mnemo-testkit's `openapi`).

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

mod ask;
mod capsules;
mod cors;
mod export;
mod flow;
mod ingest;
mod isolation;
mod openapi;
mod poison;
mod processing;

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

/// Checks one response against the document (mnemo-testkit's `openapi`).
fn check_against_doc(doc: &Value, method: &Method, path: &str, r: &Resp) {
    mnemo_testkit::openapi::check_response(
        doc,
        method.as_str(),
        path,
        r.status.as_u16(),
        &r.content_type,
        r.problem,
        &r.body,
    );
}

/// Verifies `user`'s export with mnemo-audit's verifier: `None` when valid, else the check.
async fn audit_export(s: &Stack, token: &str) -> Option<(String, Option<u64>)> {
    let r = s.get("/v1/export", token).await;
    r.assert_status(StatusCode::OK);
    let items = mnemo_audit::read_bundle(&r.body[..], |_| {});
    let out = mnemo_audit::verify_items(items, &mnemo_audit::Options::default()).unwrap();
    out.failure.map(|f| (f.code, f.seq))
}
