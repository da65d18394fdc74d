//! The REST API (axum): routes, handlers, the view barrier and grant checks.
//!
//! Writes go to the ledger (the chains are the truth); reads come from the PostgreSQL
//! views, after a barrier that waits until the view has caught up with the chain's head as
//! it was when the request came in, so a client reads its own writes and a revoked grant is
//! refused from the moment the revocation was acknowledged. A read by someone other than the
//! owner is recorded in the owner's chain (`access_recorded`) *before* any data is returned,
//! and only if the owner's chain has not moved since the grant was checked
//! (`Ledger::append_event_after`): an access record can never follow a revocation.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::StreamExt;
use mnemo_anchor::AnchorReader;
use mnemo_core::merkle::CHAIN_TREE;
use mnemo_core::{
    AccessAction, Capabilities, Checkpoint, ErasureTarget, EventBody, GrantConditions, GrantId,
    Hash32, MemoryId, MerkleTree, ProofBundle, PublicKey, Seq, TimestampMs, UserId,
};
use mnemo_ledger::{Ledger, LedgerError, NewMemory};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::auth::{Auth, Principal};
use crate::problem::{ApiResult, Problem};

/// Limits and timings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest JSON body.
    pub max_json: usize,
    /// Largest binary upload.
    pub max_upload: usize,
    /// How long a read waits for the views to reach the chain's head.
    pub sync_timeout: Duration,
    /// Lifetime of issued user tokens, in seconds.
    pub token_ttl: u64,
    /// Grants are treated as expired this long before their expiry, so that an access
    /// record written a moment after the check is still inside the grant.
    pub expiry_margin: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_json: 1 << 20,
            max_upload: 64 << 20,
            sync_timeout: Duration::from_secs(10),
            token_ttl: 30 * 24 * 3600,
            expiry_margin: Duration::from_secs(2),
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ApiStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Answers with a 4xx status.
    pub client_errors: AtomicU64,
    /// Answers with a 5xx status.
    pub server_errors: AtomicU64,
    /// Memories ingested.
    pub ingested: AtomicU64,
    /// Reads by grantees recorded in owners' chains.
    pub accesses: AtomicU64,
}

/// The API's shared state.
pub struct Api {
    /// The ledger.
    pub ledger: Ledger,
    /// The views.
    pub pool: sqlx::PgPool,
    /// JetStream (anchor records).
    pub js: async_nats::jetstream::Context,
    /// Token issuing and checking.
    pub auth: Auth,
    /// Limits.
    pub cfg: ApiConfig,
    /// Counters.
    pub stats: Arc<ApiStats>,
    /// NATS accounts (operator mode), when configured.
    pub accounts: Option<crate::natsauth::Accounts>,
}

type S = Arc<Api>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Connections a listener queues before they are accepted. tokio's `TcpListener::bind`
/// (like std's) asks for 128: a burst beyond that (devices reconnecting after a restart, a
/// load generator opening its connections) has SYNs dropped, which clients retry only a
/// second later. The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for the API with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The API's routes, as a `Router` (for tests and embedding; `/healthz`, `/readyz` and
/// `/metrics` are `health::router`'s).
pub fn router(api: Arc<Api>) -> Router {
    Router::new().fallback_service(app(api, Router::new()))
}

/// The API's routes and `extra` (the health endpoints), wrapped in the API's layers once,
/// as the one service `axum::serve` runs (`axum::ServiceExt::into_make_service`). Every
/// answer is counted in `ApiStats`, health checks and scrapes too.
pub fn app(
    api: Arc<Api>,
    extra: Router,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let json_limit = api.cfg.max_json;
    let stats = api.stats.clone();
    let routes = Router::new()
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .route("/v1/users", post(create_user))
        .route("/v1/users/{id}/devices", post(create_device))
        .route("/v1/users/{id}/devices/{device}", delete(revoke_device))
        .route("/v1/memories", post(ingest).get(list_memories))
        .route("/v1/memories/{id}", get(get_memory))
        .route("/v1/memories/{id}/content", get(get_content))
        .route("/v1/memories/{id}/proof", get(get_proof))
        .route("/v1/chain", get(get_chain))
        .route("/v1/chain/head", get(get_head))
        .route("/v1/export", get(export))
        .route("/v1/grants", post(create_grant).get(list_grants))
        .route("/v1/grants/{id}", delete(revoke_grant))
        .route("/v1/access-log", get(access_log))
        .route("/v1/erasure", post(erase))
        .route("/v1/anchors", get(list_anchors))
        .route("/v1/anchors/{epoch}", get(get_anchor))
        .route("/v1/users/{owner}/memories", get(shared_list))
        .route("/v1/users/{owner}/memories/{id}", get(shared_get))
        .route(
            "/v1/users/{owner}/memories/{id}/content",
            get(shared_content),
        )
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "method not allowed on this endpoint",
            )
        })
        .with_state(api)
        .merge(extra);
    // The layers wrap the routes once: `Router::layer` would wrap every route in them, and
    // each boxed layer is cloned (allocated) again for every request.
    tower::ServiceBuilder::new()
        // Counting answers with a plain (unboxed) response map.
        .map_response(move |r: Response| {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            if r.status().is_client_error() {
                stats.client_errors.fetch_add(1, Ordering::Relaxed);
            } else if r.status().is_server_error() {
                stats.server_errors.fetch_add(1, Ordering::Relaxed);
            }
            r
        })
        .layer(axum::extract::DefaultBodyLimit::max(json_limit))
        .service(routes)
}

// ---------------------------------------------------------------------------------------
// extractors

/// The authenticated caller.
pub struct Caller(pub Principal);

impl FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, api: &S) -> Result<Self, Problem> {
        let h = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = h
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Problem::unauthorized("Authorization must be `Bearer <token>`"))?;
        api.auth
            .check(token.trim())
            .map(Caller)
            .map_err(|e| Problem::unauthorized(e.0))
    }
}

impl Caller {
    fn user(&self) -> ApiResult<&UserId> {
        match &self.0 {
            Principal::User(u) => Ok(u),
            Principal::Admin => Err(Problem::forbidden(
                "an admin token does not act as a user; use the user's token",
            )),
        }
    }
}

/// JSON body whose rejections are problems.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, St: Send + Sync> FromRequest<St> for ApiJson<T> {
    type Rejection = Problem;

    /// `application/json` bodies are read and parsed directly; anything else, and any body
    /// that does not parse, goes through axum's `Json`, whose rejections name what is wrong
    /// and where (its path-tracking parser costs a dozen allocations per request, so it is
    /// kept off the hot path).
    async fn from_request(req: Request, state: &St) -> Result<Self, Problem> {
        Self::read(req, state, None).await
    }
}

impl<T: serde::de::DeserializeOwned> ApiJson<T> {
    /// Reads and parses the body, at most `limit` bytes of it if given, else as many as
    /// the router's `DefaultBodyLimit` allows.
    async fn read<St: Send + Sync>(
        req: Request,
        state: &St,
        limit: Option<usize>,
    ) -> Result<Self, Problem> {
        let plain_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| is_plain_json(v.as_bytes()));
        let rejected =
            |r: axum::extract::rejection::JsonRejection| body_problem(r.status(), r.body_text());
        if !plain_json {
            return Json::<T>::from_request(req, state)
                .await
                .map(|Json(v)| Self(v))
                .map_err(rejected);
        }
        let body = match limit {
            None => Bytes::from_request(req, state)
                .await
                .map_err(|r| body_problem(r.status(), r.body_text()))?,
            Some(limit) => axum::body::to_bytes(req.into_body(), limit)
                .await
                .map_err(|e| {
                    let e = e.into_inner();
                    let status = if e.is::<http_body_util::LengthLimitError>() {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    body_problem(status, format!("Failed to buffer the request body: {e}"))
                })?,
        };
        match serde_json::from_slice(&body) {
            Ok(v) => Ok(Self(v)),
            Err(_) => match Json::<T>::from_bytes(&body) {
                Ok(Json(v)) => Ok(Self(v)),
                Err(r) => Err(rejected(r)),
            },
        }
    }
}

/// A refused body as a problem, with the status and words of axum's rejection.
fn body_problem(status: StatusCode, detail: String) -> Problem {
    let slug = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        _ => "invalid-body",
    };
    Problem::new(status, slug, detail)
}

/// `application/json`, in any case, with or without parameters (`; charset=utf-8`).
fn is_plain_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
}

/// Query string whose rejections are problems.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

fn memory_id(s: &str) -> ApiResult<MemoryId> {
    MemoryId::from_hex(s).map_err(|_| Problem::bad_request("memory ids are 32 hex characters"))
}

fn user_id(s: &str) -> ApiResult<UserId> {
    UserId::new(s).map_err(|e| Problem::bad_request(format!("user id: {e}")))
}

// ---------------------------------------------------------------------------------------
// the view barrier

/// The owner's chain head as the views saw it.
struct Synced {
    /// Seq of the view's last event for the user.
    seq: i64,
    /// Its hash.
    head: Hash32,
}

impl Api {
    /// Waits until the views hold the user's chain at least up to its current head.
    async fn sync(&self, user: &UserId) -> ApiResult<Synced> {
        let Some(tip) = self.ledger.head(user).await? else {
            return Err(Problem::not_found(format!("no user {user}")));
        };
        let t = Instant::now();
        let mut wait = Duration::from_millis(5);
        loop {
            let row: Option<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT last_seq, head_hash FROM users WHERE user_id = $1")
                    .bind(user.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some((seq, head)) = row
                && seq as u64 >= tip.len
            {
                let head = Hash32(
                    head.try_into()
                        .map_err(|_| Problem::internal("head hash length"))?,
                );
                return Ok(Synced { seq, head });
            }
            if t.elapsed() > self.cfg.sync_timeout {
                return Err(Problem::unavailable(
                    "the views are behind the chain; retry shortly",
                ));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }

    async fn anchors(&self) -> ApiResult<Option<AnchorReader>> {
        AnchorReader::open(&self.js)
            .await
            .map_err(Problem::internal)
    }
}

// ---------------------------------------------------------------------------------------
// users

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    id: String,
}

async fn create_user(
    State(api): State<S>,
    caller: Caller,
    ApiJson(b): ApiJson<CreateUser>,
) -> ApiResult<impl IntoResponse> {
    if caller.0 != Principal::Admin {
        return Err(Problem::forbidden("creating users needs an admin token"));
    }
    let user = user_id(&b.id)?;
    // The chain, then the NATS account; a retry after a failure in between completes it.
    let chain = match api.ledger.create_user(&user).await {
        Ok(r) => Some(r),
        Err(LedgerError::UserExists(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut account = None;
    if let Some(accounts) = &api.accounts
        && !accounts.exists(&user).await.map_err(Problem::internal)?
    {
        account = Some(accounts.create(&user).await.map_err(Problem::internal)?);
    }
    if chain.is_none() && account.is_none() {
        return Err(LedgerError::UserExists(user).into());
    }
    let token = api.auth.issue(user.as_str(), false, api.cfg.token_ttl);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": user, "token": token, "nats_account": account })),
    ))
}

fn accounts(api: &Api) -> ApiResult<&crate::natsauth::Accounts> {
    api.accounts.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "no-nats-accounts",
            "NATS accounts are not configured on this server (mnemo nats init, MNEMO_NATS_DIR)",
        )
    })
}

/// The user a device endpoint acts on: oneself, or anyone for an admin.
fn device_owner(caller: &Caller, id: &str) -> ApiResult<UserId> {
    let user = user_id(id)?;
    match &caller.0 {
        Principal::Admin => Ok(user),
        Principal::User(u) if *u == user => Ok(user),
        Principal::User(_) => Err(Problem::forbidden("devices of another user")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    name: String,
    /// Lifetime of the credentials in seconds (default 90 days).
    #[serde(default)]
    ttl_secs: Option<i64>,
}

async fn create_device(
    State(api): State<S>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(d): ApiJson<NewDevice>,
) -> ApiResult<impl IntoResponse> {
    let user = device_owner(&caller, &id)?;
    let accounts = accounts(&api)?;
    if d.name.is_empty() || d.name.len() > 64 || d.name.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "device names are 1 to 64 printable characters",
        ));
    }
    let ttl = d.ttl_secs.unwrap_or(90 * 24 * 3600);
    if !(60..=400 * 24 * 3600).contains(&ttl) {
        return Err(Problem::bad_request("ttl_secs must be 60 s to 400 days"));
    }
    if !accounts.exists(&user).await.map_err(Problem::internal)? {
        return Err(Problem::not_found(format!("no NATS account for {user}")));
    }
    let (device, creds) = accounts
        .issue_device(&user, &d.name, ttl)
        .await
        .map_err(Problem::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "device": device, "expires_in": ttl, "creds": creds })),
    ))
}

async fn revoke_device(
    State(api): State<S>,
    caller: Caller,
    Path((id, device)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user = device_owner(&caller, &id)?;
    let accounts = accounts(&api)?;
    if nkeys::KeyPair::from_public_key(&device).is_err() || !device.starts_with('U') {
        return Err(Problem::bad_request(
            "device ids are NATS user public keys (U...)",
        ));
    }
    if !accounts.exists(&user).await.map_err(Problem::internal)? {
        return Err(Problem::not_found(format!("no NATS account for {user}")));
    }
    accounts
        .revoke_device(&user, &device)
        .await
        .map_err(Problem::internal)?;
    Ok(Json(json!({ "device": device, "revoked": true })))
}

// ---------------------------------------------------------------------------------------
// memories

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextMemory {
    #[serde(default = "default_kind")]
    kind: String,
    text: String,
    #[serde(default)]
    tags: Vec<String>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    captured_at: Option<i64>,
    #[serde(default)]
    source: Option<String>,
}

fn default_kind() -> String {
    "note".into()
}

/// Metadata of a binary upload, in the query string.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadMeta {
    kind: Option<String>,
    /// Comma-separated.
    tags: Option<String>,
    captured_at: Option<i64>,
    source: Option<String>,
}

async fn ingest(State(api): State<S>, caller: Caller, req: Request) -> ApiResult<Response> {
    let user = caller.user()?;
    let idem = req
        .headers()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| Problem::bad_request("Idempotency-Key must be visible ASCII"))
        })
        .transpose()?;
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let r = if is_json {
        // A text memory may be as large as an upload.
        let limit = api.cfg.max_upload.max(api.cfg.max_json);
        let ApiJson(t) = ApiJson::<TextMemory>::read(req, &api, Some(limit)).await?;
        let m = NewMemory {
            kind: t.kind,
            tags: t.tags,
            captured_at: t.captured_at.map(TimestampMs),
            source: t.source,
            content_type: "text/plain; charset=utf-8".into(),
            content: Bytes::from(t.text),
            idempotency_key: idem,
        };
        api.ledger.append(user, m).await?
    } else {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let limit = api.cfg.max_upload;
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("uploads are limited to {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        if declared == Some(0) {
            return Err(Problem::bad_request("empty upload"));
        }
        let (mut parts, body) = req.into_parts();
        let ApiQuery(meta) = ApiQuery::<UploadMeta>::from_request_parts(&mut parts, &api).await?;
        // The body streams into the ledger, which encrypts it chunk by chunk into the
        // object store: an upload is never held in memory whole.
        let mut body = body
            .into_data_stream()
            .map(|r| r.map_err(std::io::Error::other));
        let first = loop {
            match body.next().await {
                Some(Ok(b)) if b.is_empty() => continue,
                Some(Ok(b)) => break b,
                Some(Err(e)) => return Err(Problem::bad_request(format!("reading the body: {e}"))),
                None => return Err(Problem::bad_request("empty upload")),
            }
        };
        let m = NewMemory {
            kind: meta.kind.unwrap_or_else(|| "file".into()),
            tags: meta
                .tags
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            captured_at: meta.captured_at.map(TimestampMs),
            source: meta.source,
            content_type,
            content: Bytes::new(),
            idempotency_key: idem,
        };
        let content = futures::stream::iter([Ok(first)]).chain(body);
        // Boxed: the JSON path's future (allocated per request) stays small.
        match Box::pin(api.ledger.append_stream(user, m, content, limit)).await {
            Err(LedgerError::PayloadTooLarge { .. }) => return Err(too_large()),
            r => r?,
        }
    };
    let status = if r.duplicate {
        StatusCode::OK
    } else {
        api.stats.ingested.fetch_add(1, Ordering::Relaxed);
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(IngestReceipt {
            id: r.memory,
            seq: r.seq.0,
            event_hash: r.hash,
            duplicate: r.duplicate,
        }),
    )
        .into_response())
}

/// What `POST /v1/memories` answers.
#[derive(Serialize)]
struct IngestReceipt {
    id: Option<MemoryId>,
    seq: u64,
    event_hash: Hash32,
    duplicate: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    tag: Option<String>,
    kind: Option<String>,
    /// Captured at or after (ms).
    from: Option<i64>,
    /// Captured before (ms).
    until: Option<i64>,
    /// Full-text query (web search syntax).
    q: Option<String>,
    /// From a previous page's `next_cursor`.
    cursor: Option<i64>,
    limit: Option<i64>,
}

/// A memory's metadata as the API shows it.
#[derive(Serialize)]
struct MemoryView {
    id: MemoryId,
    seq: i64,
    kind: String,
    tags: Vec<String>,
    captured_at: Option<i64>,
    source: Option<String>,
    content_type: String,
    size: i64,
    storage: String,
    ingested_at: i64,
    erased: bool,
}

const MEMORY_COLUMNS: &str = "m.memory_id, m.seq, m.kind, m.tags,
    (extract(epoch from m.captured_at) * 1000)::bigint AS captured_ms, m.source, m.content_type,
    m.size, m.storage, (extract(epoch from m.ingested_at) * 1000)::bigint AS ingested_ms,
    m.erased_seq";

fn memory_view(r: &sqlx::postgres::PgRow) -> ApiResult<MemoryView> {
    let id: Vec<u8> = r.try_get("memory_id")?;
    Ok(MemoryView {
        id: MemoryId(
            id.try_into()
                .map_err(|_| Problem::internal("memory id length"))?,
        ),
        seq: r.try_get("seq")?,
        kind: r.try_get("kind")?,
        tags: r.try_get("tags")?,
        captured_at: r.try_get("captured_ms")?,
        source: r.try_get("source")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        storage: r.try_get("storage")?,
        ingested_at: r.try_get("ingested_ms")?,
        erased: r.try_get::<Option<i64>, _>("erased_seq")?.is_some(),
    })
}

fn page_limit(l: Option<i64>) -> ApiResult<i64> {
    match l {
        None => Ok(50),
        Some(n @ 1..=500) => Ok(n),
        Some(_) => Err(Problem::bad_request("limit must be 1..=500")),
    }
}

/// The filters shared by the owner's and a grantee's listings, as SQL over `m`, with
/// parameters from `$3` on (`$1` the owner, `$2` the page cursor).
const LIST_FILTERS: &str = "m.user_id = $1
    AND ($2::bigint IS NULL OR m.seq < $2)
    AND ($3::text IS NULL OR $3 = ANY(m.tags))
    AND ($4::text IS NULL OR m.kind = $4)
    AND ($5::bigint IS NULL OR coalesce(m.captured_at, m.ingested_at) >= to_timestamp($5 / 1000.0))
    AND ($6::bigint IS NULL OR coalesce(m.captured_at, m.ingested_at) < to_timestamp($6 / 1000.0))
    AND ($7::text IS NULL OR m.search @@ websearch_to_tsquery('simple', $7))";

async fn list_memories(
    State(api): State<S>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let limit = page_limit(q.limit)?;
    api.sync(user).await?;
    let sql = format!(
        "SELECT {MEMORY_COLUMNS} FROM memories m WHERE {LIST_FILTERS} ORDER BY m.seq DESC LIMIT $8"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user.as_str())
        .bind(q.cursor)
        .bind(&q.tag)
        .bind(&q.kind)
        .bind(q.from)
        .bind(q.until)
        .bind(&q.q)
        .bind(limit)
        .fetch_all(&api.pool)
        .await?;
    let items = rows
        .iter()
        .map(memory_view)
        .collect::<ApiResult<Vec<_>>>()?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|m| m.seq));
    Ok(Json(
        json!({ "items": items, "next_cursor": next.flatten() }),
    ))
}

async fn memory_row(api: &Api, user: &UserId, id: &MemoryId) -> ApiResult<MemoryView> {
    let sql = format!(
        "SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.user_id = $1 AND m.memory_id = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user.as_str())
        .bind(id.0.to_vec())
        .fetch_optional(&api.pool)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no memory {id}")))?;
    memory_view(&row)
}

async fn get_memory(
    State(api): State<S>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<MemoryView>> {
    let user = caller.user()?;
    let id = memory_id(&id)?;
    api.sync(user).await?;
    Ok(Json(memory_row(&api, user, &id).await?))
}

/// A memory's content, decrypted and checked by the ledger as it streams out: large content
/// is never held whole. The first piece is read before answering, so a missing object or a
/// bad first chunk is a problem response; a later failure cuts the body short of its
/// `Content-Length` (the ledger holds back the last piece until the whole matched the
/// chain's hash), which no client takes for a complete answer.
async fn content_response(api: &Api, user: &UserId, m: &MemoryView) -> ApiResult<Response> {
    if m.erased {
        return Err(LedgerError::Erased(m.id).into());
    }
    let events = api.ledger.events(user, Seq(m.seq as u64), 1).await?;
    let stored = events
        .first()
        .ok_or_else(|| Problem::internal("view names an event the chain lacks"))?;
    let opened = api.ledger.open_memory_stream(stored).await?;
    let mut content = opened.content;
    let first = match content.next().await {
        Some(Ok(piece)) => piece,
        Some(Err(e)) => return Err(mnemo_ledger::content_error(&opened.memory, e).into()),
        None => Bytes::new(),
    };
    let memory = opened.memory;
    let rest = content.inspect(move |r| {
        if let Err(e) = r {
            tracing::error!(%memory, error = %e, "content stream failed; response cut short");
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, opened.record.content_type.clone()),
            (header::CONTENT_LENGTH, opened.size.to_string()),
        ],
        Body::from_stream(futures::stream::iter([Ok(first)]).chain(rest)),
    )
        .into_response())
}

async fn get_content(
    State(api): State<S>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let id = memory_id(&id)?;
    api.sync(user).await?;
    let m = memory_row(&api, user, &id).await?;
    content_response(&api, user, &m).await
}

async fn get_proof(
    State(api): State<S>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let id = memory_id(&id)?;
    let synced = api.sync(user).await?;
    let m = memory_row(&api, user, &id).await?;
    let seq = m.seq as u64;
    let anchored = match api.anchors().await? {
        Some(r) => r
            .anchors_for(user)
            .await
            .map_err(Problem::internal)?
            .into_iter()
            .filter(|(p, _)| p.checkpoint.seq.0 >= seq)
            .min_by_key(|(p, _)| (p.checkpoint.seq, p.epoch)),
        None => None,
    };
    let upto = anchored
        .as_ref()
        .map_or(synced.seq as u64, |(p, _)| p.checkpoint.seq.0);
    let hashes: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT hash FROM events WHERE user_id = $1 AND seq <= $2 ORDER BY seq")
            .bind(user.as_str())
            .bind(upto as i64)
            .fetch_all(&api.pool)
            .await?;
    let leaves = hashes
        .iter()
        .map(|h| {
            <[u8; 32]>::try_from(h.as_slice())
                .map(|h| CHAIN_TREE.leaf(&h))
                .map_err(|_| Problem::internal("event hash length"))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let tree = MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves);
    let stored = api.ledger.events(user, Seq(seq), 1).await?;
    let stored = stored
        .first()
        .ok_or_else(|| Problem::internal("view names an event the chain lacks"))?;
    let key_of = async |id: &mnemo_core::KeyId| -> ApiResult<PublicKey> {
        let k: Vec<u8> = sqlx::query_scalar(
            "SELECT public_key FROM user_keys WHERE user_id = $1 AND key_id = $2",
        )
        .bind(user.as_str())
        .bind(id.0.to_vec())
        .fetch_one(&api.pool)
        .await?;
        <[u8; 32]>::try_from(k.as_slice())
            .ok()
            .and_then(|k| PublicKey::from_bytes(&k))
            .ok_or_else(|| Problem::internal("stored key"))
    };
    let signer_key = key_of(&stored.event.signer).await?;
    let origin_key = match &stored.event.origin {
        Some(o) => Some(key_of(&o.key).await?),
        None => None,
    };
    let (checkpoint, epoch, anchor) = match anchored {
        Some((p, r)) => (p.checkpoint.clone(), Some(p), Some(r)),
        None => (
            Checkpoint {
                user: user.clone(),
                seq: Seq(upto),
                head: synced.head,
                root: tree.root(),
            },
            None,
            None,
        ),
    };
    let bundle = ProofBundle {
        inclusion: tree
            .inclusion_proof(seq - 1)
            .ok_or_else(|| Problem::internal("event outside its checkpoint"))?,
        event: stored.event.clone(),
        signer_key,
        origin_key,
        checkpoint,
        epoch,
        anchor,
    };
    let level = bundle
        .verify()
        .map_err(|e| Problem::internal(format!("proof does not verify: {e}")))?;
    Ok(Json(json!({ "level": level, "bundle": bundle })))
}

// ---------------------------------------------------------------------------------------
// the chain

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

async fn get_chain(
    State(api): State<S>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ChainQuery>,
) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let from = q.from.unwrap_or(1).max(1);
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be 1..=1000"));
    }
    let events = api.ledger.events(user, Seq(from), limit).await?;
    let items: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "seq": e.event.seq.0,
                "hash": e.hash,
                "event": e.event,
                "wire": hex::encode(e.event.to_wire()),
            })
        })
        .collect();
    let next = (items.len() == limit).then(|| from + limit as u64);
    Ok(Json(json!({ "items": items, "next_from": next })))
}

async fn get_head(State(api): State<S>, caller: Caller) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let tip = api
        .ledger
        .head(user)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no user {user}")))?;
    Ok(Json(
        json!({ "user": user, "seq": tip.len, "hash": tip.hash }),
    ))
}

async fn export(State(api): State<S>, caller: Caller) -> ApiResult<Response> {
    let user = caller.user()?.clone();
    if api.ledger.head(&user).await?.is_none() {
        return Err(Problem::not_found(format!("no user {user}")));
    }
    let (mut w, r) = tokio::io::duplex(1 << 16);
    let anchors = api.anchors().await?;
    let api2 = api.clone();
    tokio::spawn(async move {
        let res = crate::export::write_bundle(
            &api2.ledger,
            anchors.as_ref(),
            &user,
            TimestampMs(now_ms()),
            &mut w,
        )
        .await;
        if let Err(e) = res {
            // The bundle ends without its end item: an auditor sees it cut short.
            tracing::warn!(%user, error = %e, "export stopped");
        }
    });
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(r));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"custody-bundle.jsonl\"",
            ),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// grants

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGrant {
    grantee: String,
    capabilities: Capabilities,
    #[serde(default)]
    conditions: GrantConditions,
    /// Milliseconds since the epoch.
    #[serde(default)]
    expires_at: Option<i64>,
}

async fn create_grant(
    State(api): State<S>,
    caller: Caller,
    ApiJson(g): ApiJson<NewGrant>,
) -> ApiResult<impl IntoResponse> {
    let user = caller.user()?;
    let grantee = user_id(&g.grantee)?;
    if grantee == *user {
        return Err(Problem::bad_request("a grant to oneself means nothing"));
    }
    if !g.capabilities.metadata && !g.capabilities.content {
        return Err(Problem::bad_request(
            "a grant needs at least one capability",
        ));
    }
    if g.expires_at.is_some_and(|t| t <= now_ms()) {
        return Err(Problem::bad_request("expires_at is in the past"));
    }
    if api.ledger.head(&grantee).await?.is_none() {
        return Err(Problem::not_found(format!("no user {grantee}")));
    }
    let grant = GrantId(rand::random());
    let r = api
        .ledger
        .append_event(
            user,
            EventBody::GrantCreated {
                grant,
                grantee: grantee.clone(),
                capabilities: g.capabilities,
                conditions: g.conditions,
                expires_at: g.expires_at.map(TimestampMs),
            },
            None,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": grant, "seq": r.seq.0, "event_hash": r.hash })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsQuery {
    /// `owner` (default: grants I gave) or `grantee` (grants given to me).
    role: Option<String>,
}

async fn list_grants(
    State(api): State<S>,
    caller: Caller,
    ApiQuery(q): ApiQuery<GrantsQuery>,
) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let column = match q.role.as_deref() {
        None | Some("owner") => {
            api.sync(user).await?;
            "user_id"
        }
        Some("grantee") => "grantee",
        Some(_) => return Err(Problem::bad_request("role is owner or grantee")),
    };
    let sql = format!(
        "SELECT user_id, grant_id, grantee, can_metadata, can_content, conditions,
           (extract(epoch from expires_at) * 1000)::bigint AS expires_ms, created_seq, revoked_seq
         FROM grants WHERE {column} = $1 ORDER BY user_id, created_seq"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user.as_str())
        .fetch_all(&api.pool)
        .await?;
    let now = now_ms();
    let items = rows
        .iter()
        .map(|r| {
            let id: Vec<u8> = r.try_get("grant_id")?;
            let expires: Option<i64> = r.try_get("expires_ms")?;
            let revoked: Option<i64> = r.try_get("revoked_seq")?;
            Ok(json!({
                "id": hex::encode(id),
                "owner": r.try_get::<String, _>("user_id")?,
                "grantee": r.try_get::<String, _>("grantee")?,
                "capabilities": {
                    "metadata": r.try_get::<bool, _>("can_metadata")?,
                    "content": r.try_get::<bool, _>("can_content")?,
                },
                "conditions": r.try_get::<Value, _>("conditions")?,
                "expires_at": expires,
                "created_seq": r.try_get::<i64, _>("created_seq")?,
                "revoked_seq": revoked,
                "live": revoked.is_none() && expires.is_none_or(|e| e > now),
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "items": items })))
}

async fn revoke_grant(
    State(api): State<S>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let grant = GrantId::from_hex(&id)
        .map_err(|_| Problem::bad_request("grant ids are 32 hex characters"))?;
    for _ in 0..8 {
        let synced = api.sync(user).await?;
        let revoked: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT revoked_seq FROM grants WHERE user_id = $1 AND grant_id = $2",
        )
        .bind(user.as_str())
        .bind(grant.0.to_vec())
        .fetch_optional(&api.pool)
        .await?;
        match revoked {
            None => return Err(Problem::not_found(format!("no grant {grant}"))),
            Some(Some(_)) => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "revoked",
                    format!("grant {grant} is already revoked"),
                ));
            }
            Some(None) => {}
        }
        // Only on top of the head the check saw: two revocations can not both land.
        match api
            .ledger
            .append_event_after(user, EventBody::GrantRevoked { grant }, synced.head)
            .await
        {
            Ok(r) => {
                return Ok(Json(
                    json!({ "id": grant, "seq": r.seq.0, "event_hash": r.hash }),
                ));
            }
            Err(LedgerError::HeadMoved(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::unavailable("the chain is busy; retry"))
}

async fn access_log(State(api): State<S>, caller: Caller) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    api.sync(user).await?;
    let rows = sqlx::query(
        "SELECT seq, accessor, grant_id, action, memories, (extract(epoch from ts) * 1000)::bigint AS ms
         FROM access_log WHERE user_id = $1 ORDER BY seq DESC LIMIT 1000",
    )
    .bind(user.as_str())
    .fetch_all(&api.pool)
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            let mems: Vec<Vec<u8>> = r.try_get("memories")?;
            Ok(json!({
                "seq": r.try_get::<i64, _>("seq")?,
                "accessor": r.try_get::<String, _>("accessor")?,
                "grant": hex::encode(r.try_get::<Vec<u8>, _>("grant_id")?),
                "action": r.try_get::<String, _>("action")?,
                "memories": mems.iter().map(hex::encode).collect::<Vec<_>>(),
                "at": r.try_get::<i64, _>("ms")?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Erasure {
    memory: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn erase(
    State(api): State<S>,
    caller: Caller,
    ApiJson(e): ApiJson<Erasure>,
) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let target = match (e.memory, e.all) {
        (Some(m), false) => {
            let id = memory_id(&m)?;
            api.sync(user).await?;
            let m = memory_row(&api, user, &id).await?;
            if m.erased {
                return Err(LedgerError::Erased(id).into());
            }
            ErasureTarget::Memory(id)
        }
        (None, true) => ErasureTarget::All,
        _ => {
            return Err(Problem::bad_request(
                "give either {\"memory\": \"<id>\"} or {\"all\": true}",
            ));
        }
    };
    let r = api.ledger.erase(user, target).await?;
    Ok(Json(json!({ "seq": r.seq.0, "event_hash": r.hash })))
}

// ---------------------------------------------------------------------------------------
// anchors

async fn list_anchors(State(api): State<S>, _caller: Caller) -> ApiResult<Json<Value>> {
    let epochs = match api.anchors().await? {
        Some(r) => r.epochs().await.map_err(Problem::internal)?,
        None => Vec::new(),
    };
    Ok(Json(json!({ "items": epochs })))
}

async fn get_anchor(
    State(api): State<S>,
    _caller: Caller,
    Path(epoch): Path<String>,
) -> ApiResult<Json<Value>> {
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| Problem::bad_request("epochs are positive integers"))?;
    let rec = match api.anchors().await? {
        Some(r) => r.epoch(epoch).await.map_err(Problem::internal)?,
        None => None,
    };
    rec.map(|r| Json(json!(r)))
        .ok_or_else(|| Problem::not_found(format!("no epoch {epoch}")))
}

// ---------------------------------------------------------------------------------------
// reading another user's memories under a grant

/// Memories of `owner` the caller may see under live grants with `cap`, each with the
/// grant that allows it. Must run in a snapshot together with the head it is valid at.
fn shared_sql(content: bool) -> String {
    let cap = if content {
        "g.can_content"
    } else {
        "g.can_metadata"
    };
    format!(
        "WITH g AS (
           SELECT grant_id, conditions FROM grants g
           WHERE g.user_id = $1 AND g.grantee = $9 AND g.revoked_seq IS NULL AND {cap}
             AND (g.expires_at IS NULL OR g.expires_at > to_timestamp($10 / 1000.0))
         ), v AS (
           SELECT {MEMORY_COLUMNS},
             (SELECT g.grant_id FROM g WHERE
                (jsonb_array_length(g.conditions->'tags') = 0
                   OR m.tags && ARRAY(SELECT jsonb_array_elements_text(g.conditions->'tags')))
                AND (jsonb_array_length(g.conditions->'kinds') = 0
                   OR m.kind IN (SELECT jsonb_array_elements_text(g.conditions->'kinds')))
                AND (jsonb_typeof(g.conditions->'from') IS DISTINCT FROM 'number'
                   OR coalesce(m.captured_at, m.ingested_at) >= to_timestamp((g.conditions->>'from')::bigint / 1000.0))
                AND (jsonb_typeof(g.conditions->'until') IS DISTINCT FROM 'number'
                   OR coalesce(m.captured_at, m.ingested_at) < to_timestamp((g.conditions->>'until')::bigint / 1000.0))
                AND (jsonb_array_length(g.conditions->'memories') = 0
                   OR encode(m.memory_id, 'hex') IN (SELECT jsonb_array_elements_text(g.conditions->'memories')))
              ORDER BY g.grant_id LIMIT 1) AS via
           FROM memories m
           WHERE {LIST_FILTERS} AND m.erased_seq IS NULL AND ($11::bytea IS NULL OR m.memory_id = $11)
         )
         SELECT v.*, (SELECT grant_id FROM g ORDER BY grant_id LIMIT 1) AS any_grant,
           (SELECT head_hash FROM users WHERE user_id = $1) AS head
         FROM (SELECT 1) one LEFT JOIN LATERAL (
           SELECT * FROM v WHERE via IS NOT NULL ORDER BY seq DESC LIMIT $8
         ) v ON true"
    )
}

struct SharedRows {
    items: Vec<(MemoryView, GrantId)>,
    /// A live grant of the caller, when there is any.
    any_grant: Option<GrantId>,
    head: Hash32,
}

async fn shared_rows(
    api: &Api,
    owner: &UserId,
    me: &UserId,
    q: &ListQuery,
    memory: Option<&MemoryId>,
    content: bool,
    limit: i64,
) -> ApiResult<SharedRows> {
    let margin = api.cfg.expiry_margin.as_millis() as i64;
    let rows = sqlx::query(sqlx::AssertSqlSafe(shared_sql(content)))
        .bind(owner.as_str())
        .bind(q.cursor)
        .bind(&q.tag)
        .bind(&q.kind)
        .bind(q.from)
        .bind(q.until)
        .bind(&q.q)
        .bind(limit)
        .bind(me.as_str())
        .bind(now_ms() + margin)
        .bind(memory.map(|m| m.0.to_vec()))
        .fetch_all(&api.pool)
        .await?;
    let to_grant = |v: Vec<u8>| {
        v.try_into()
            .map(GrantId)
            .map_err(|_| Problem::internal("grant id length"))
    };
    let mut out = SharedRows {
        items: Vec::new(),
        any_grant: None,
        head: Hash32::ZERO,
    };
    for r in &rows {
        if let Some(g) = r.try_get::<Option<Vec<u8>>, _>("any_grant")? {
            out.any_grant = Some(to_grant(g)?);
        }
        if let Some(h) = r.try_get::<Option<Vec<u8>>, _>("head")? {
            out.head = Hash32(h.try_into().map_err(|_| Problem::internal("head length"))?);
        }
        if let Some(via) = r.try_get::<Option<Vec<u8>>, _>("via")? {
            out.items.push((memory_view(r)?, to_grant(via)?));
        }
    }
    Ok(out)
}

/// Reads `owner`'s memories under the caller's grants, records the access in `owner`'s
/// chain, then returns what was read.
async fn shared_read(
    api: &Api,
    caller: &Caller,
    owner: &str,
    q: &ListQuery,
    memory: Option<&MemoryId>,
    action: AccessAction,
) -> ApiResult<Vec<MemoryView>> {
    let me = caller.user()?;
    let owner = user_id(owner)?;
    if owner == *me {
        return Err(Problem::bad_request(
            "these endpoints are for reading another user's memories; use /v1/memories",
        ));
    }
    let limit = if memory.is_some() {
        1
    } else {
        page_limit(q.limit)?
    };
    let content = action == AccessAction::ReadContent;
    for _ in 0..8 {
        // Unknown owner and no grant look the same: nothing about the owner leaks.
        match api.sync(&owner).await {
            Ok(_) => {}
            Err(p) if p.status == StatusCode::NOT_FOUND => {
                return Err(Problem::forbidden("no live grant allows this"));
            }
            Err(p) => return Err(p),
        }
        let rows = shared_rows(api, &owner, me, q, memory, content, limit).await?;
        let Some(any) = rows.any_grant else {
            return Err(Problem::forbidden("no live grant allows this"));
        };
        if memory.is_some() && rows.items.is_empty() {
            return Err(Problem::not_found("no such memory under your grants"));
        }
        // One access record per grant used (a list that matched nothing is still a read).
        let mut by_grant: Vec<(GrantId, Vec<MemoryId>)> = Vec::new();
        for (m, g) in &rows.items {
            match by_grant.iter_mut().find(|(x, _)| x == g) {
                Some((_, ms)) => ms.push(m.id),
                None => by_grant.push((*g, vec![m.id])),
            }
        }
        if by_grant.is_empty() {
            by_grant.push((any, Vec::new()));
        }
        let mut head = rows.head;
        let mut moved = false;
        for (grant, memories) in by_grant {
            let body = EventBody::AccessRecorded {
                accessor: me.clone(),
                grant,
                action,
                memories,
            };
            match api.ledger.append_event_after(&owner, body, head).await {
                Ok(r) => {
                    api.stats.accesses.fetch_add(1, Ordering::Relaxed);
                    head = r.hash;
                }
                Err(LedgerError::HeadMoved(_)) => {
                    moved = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if moved {
            continue;
        }
        return Ok(rows.items.into_iter().map(|(m, _)| m).collect());
    }
    Err(Problem::unavailable("the owner's chain is busy; retry"))
}

async fn shared_list(
    State(api): State<S>,
    caller: Caller,
    Path(owner): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let items = shared_read(&api, &caller, &owner, &q, None, AccessAction::List).await?;
    let limit = page_limit(q.limit)?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|m| m.seq))
        .flatten();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

/// One memory of `owner` read under the caller's grants (recorded as `action`).
async fn shared_one(
    api: &Api,
    caller: &Caller,
    owner: &str,
    id: &str,
    action: AccessAction,
) -> ApiResult<MemoryView> {
    let id = memory_id(id)?;
    shared_read(api, caller, owner, &ListQuery::default(), Some(&id), action)
        .await?
        .pop()
        .ok_or_else(|| Problem::not_found("no such memory under your grants"))
}

async fn shared_get(
    State(api): State<S>,
    caller: Caller,
    Path((owner, id)): Path<(String, String)>,
) -> ApiResult<Json<MemoryView>> {
    shared_one(&api, &caller, &owner, &id, AccessAction::ReadMetadata)
        .await
        .map(Json)
}

async fn shared_content(
    State(api): State<S>,
    caller: Caller,
    Path((owner, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let m = shared_one(&api, &caller, &owner, &id, AccessAction::ReadContent).await?;
    content_response(&api, &user_id(&owner)?, &m).await
}

/// Response headers helper for tests and clients: the problem content type.
pub fn is_problem(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/problem+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_json_content_types() {
        for ct in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            assert!(is_plain_json(ct.as_bytes()), "{ct}");
        }
        for ct in [
            "application/jsonx",
            "application/problem+json",
            "text/json",
            "application/json-seq",
            "",
        ] {
            assert!(!is_plain_json(ct.as_bytes()), "{ct}");
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        kind: String,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn post(ct: Option<&str>, body: &str) -> Request {
        let mut req = Request::builder().method("POST").uri("/");
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(Body::from(body.to_owned())).unwrap()
    }

    async fn extract(ct: Option<&str>, body: &str, limit: usize) -> Result<Probe, Problem> {
        let req = {
            // DefaultBodyLimit is a layer: run the request through it.
            use tower::{Layer, Service, ServiceExt};
            let mut svc = axum::extract::DefaultBodyLimit::max(limit).layer(tower::service_fn(
                |r: Request| async move { Ok::<_, std::convert::Infallible>(r) },
            ));
            svc.ready()
                .await
                .unwrap()
                .call(post(ct, body))
                .await
                .unwrap()
        };
        ApiJson::<Probe>::from_request(req, &())
            .await
            .map(|ApiJson(p)| p)
    }

    async fn axum_says(ct: Option<&str>, body: &str) -> String {
        match Json::<Probe>::from_request(post(ct, body), &()).await {
            Ok(_) => panic!("axum accepted {body}"),
            Err(r) => r.body_text(),
        }
    }

    /// The direct path accepts what axum's `Json` accepts, and refuses with axum's words.
    #[tokio::test]
    async fn json_bodies_parse_like_axum_json() {
        let ok = Probe {
            kind: "note".into(),
            tags: vec!["a".into()],
        };
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.mnemo+json",
        ] {
            let got = extract(Some(ct), r#"{"kind":"note","tags":["a"]}"#, 1 << 20).await;
            assert_eq!(got.unwrap(), ok, "{ct}");
        }
        for (ct, body, status) in [
            (
                Some("application/json"),
                r#"{"kind": 7}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Some("application/json"),
                r#"{"kind":"note","tags":[1]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Some("application/json"),
                r#"{"kind":"note","extra":1}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Some("application/json"),
                r#"{"kind":"#,
                StatusCode::BAD_REQUEST,
            ),
            (Some("application/json"), "", StatusCode::BAD_REQUEST),
            (
                Some("text/plain"),
                r#"{"kind":"note"}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                None,
                r#"{"kind":"note"}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
        ] {
            let p = extract(ct, body, 1 << 20).await.unwrap_err();
            assert_eq!(p.status, status, "{ct:?} {body}");
            assert_eq!(p.detail, axum_says(ct, body).await, "{ct:?} {body}");
        }
        let long = format!(r#"{{"kind":"{}"}}"#, "x".repeat(100));
        let p = extract(Some("application/json"), &long, 64)
            .await
            .unwrap_err();
        assert_eq!(
            (p.status, p.slug),
            (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
        );
        // an explicit limit (text memories may be as large as uploads) overrides the router's
        for (limit, fits) in [(64, false), (200, true)] {
            let req = post(Some("application/json"), &long);
            let got = ApiJson::<Probe>::read(req, &(), Some(limit)).await;
            match got {
                Ok(_) => assert!(fits),
                Err(p) => {
                    assert!(!fits);
                    assert_eq!(
                        (p.status, p.slug),
                        (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
                    );
                }
            }
        }
    }

    /// A burst of connections larger than the default backlog (128) is queued, not dropped:
    /// with nothing accepting, every handshake still completes at once (a dropped SYN
    /// would be retried only after a second).
    #[tokio::test]
    async fn a_burst_of_connections_is_queued_not_dropped() {
        // the kernel caps the backlog at somaxconn (4096 on current kernels)
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        let burst = cap.min(400);
        let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..burst).map(|_| {
            tokio::time::timeout(
                std::time::Duration::from_millis(900),
                tokio::net::TcpStream::connect(addr),
            )
        });
        let done = futures::future::join_all(connects).await;
        let queued = done.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(queued, burst, "connections whose handshake completed");
        drop(listener);
    }
}
