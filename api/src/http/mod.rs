//! The REST API (axum): the state, the router and one module per resource.
//!
//! Writes go to the ledger (the chains are the truth); reads come from the PostgreSQL
//! views (except the chain's own events, `GET /v1/chain` and a memory's proof, which
//! the ledger's reader serves as stored), after a barrier ([`barrier`]) that waits until the view has caught up with the
//! chain's head as it was when the request came in, so a client reads its own writes and a
//! revoked grant is refused from the moment the revocation was acknowledged. A read by
//! someone other than the owner is decided by core's access rule (`mnemo_core::Grant::allows`)
//! and recorded in the owner's chain (`access_recorded`) *before* any data is returned,
//! and only if the owner's chain has not moved since the grant was checked
//! (`Ledger::append_event_after`): an access record can never follow a revocation
//! ([`shared`]).
//!
//! Resources: [`users`], [`devices`], [`memories`], [`proofs`], [`chain`], [`export`],
//! [`grants`], [`access_log`], [`erasure`], [`anchors`], [`shared`] (a grantee's reads).
//! Request extractors whose rejections are problems are in [`extract`].

pub mod access_log;
pub mod anchors;
pub mod barrier;
pub mod chain;
pub mod console;
pub mod devices;
pub mod erasure;
pub mod export;
pub mod extract;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod grants;
pub mod heavy;
pub mod memories;
pub mod processing;
pub mod proofs;
pub mod red;
pub mod schema;
mod server;
pub mod session;
mod trace;
pub use server::{ServerLimits, serve, serve_with};
pub mod ask;
pub mod shared;
pub mod users;

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use mnemo_ledger::Ledger;
use mnemo_projections::Views;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::Auth;
use mnemo_wire::problem::Problem;
use utoipa_axum::router::OpenApiRouter;

pub use extract::{ApiJson, ApiQuery, Caller};

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
    /// Origins (`scheme://host[:port]`, exactly) whose pages may call the API from a
    /// browser (CORS); none by default, and then no CORS header is ever sent.
    pub cors_origins: Vec<String>,
    /// The built console (`console/dist`), served at `/console`; none: not served.
    pub console_dir: Option<std::path::PathBuf>,
    /// Session cookies are `Secure` (the API is behind TLS).
    pub secure_cookies: bool,
    /// Each user's concurrent proofs and exports (shared by the config's clones).
    pub heavy: heavy::HeavyWork,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_json: 1 << 20,
            max_upload: 64 << 20,
            sync_timeout: Duration::from_secs(10),
            token_ttl: 30 * 24 * 3600,
            expiry_margin: Duration::from_secs(2),
            cors_origins: Vec::new(),
            console_dir: None,
            secure_cookies: false,
            heavy: heavy::HeavyWork::default(),
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
    /// Request durations by route, method and status class.
    pub red: red::RequestMetrics,
}

/// The API's shared state.
pub struct Api {
    /// The ledger.
    pub ledger: Ledger,
    /// The PostgreSQL views.
    pub views: Views,
    /// JetStream (anchor records).
    pub js: async_nats::jetstream::Context,
    /// Token issuing and checking.
    pub auth: Auth,
    /// Limits.
    pub cfg: ApiConfig,
    /// Counters.
    pub stats: Arc<ApiStats>,
    /// NATS accounts (operator mode), when configured.
    pub accounts: Option<mnemo_accounts::Accounts>,
    /// Processing under consent: registry, fetches, results, models.
    pub processing: mnemo_processing::Processing,
    /// The console's live sessions (opened on first use).
    pub sessions: session::SessionStore,
}

/// The state handlers get.
pub(crate) type S = Arc<Api>;

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
    let cors = cors(&api.cfg.cors_origins);
    let (routes, doc) = routes().split_for_parts();
    let doc = Arc::new(doc);
    let routes = routes
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc) }
            }),
        )
        .route("/console", get(console::root))
        .route("/console/", get(console::index))
        .route("/console/{*path}", get(console::asset))
        // Timed by route template (the fallbacks below are not routes, and not timed).
        .route_layer(axum::middleware::from_fn_with_state(
            api.stats.clone(),
            red::record,
        ))
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
        // Every request in a span with its trace id (docs/OPERATIONS.md, "Request ids").
        .layer(axum::middleware::from_fn(trace::layer))
        // A preflight is answered here, before the routes (which know no OPTIONS).
        .option_layer(cors)
        .layer(axum::extract::DefaultBodyLimit::max(json_limit))
        .service(routes)
}

/// The CORS layer for `origins`, or none when there are none: the methods and headers the
/// API uses, its own response headers exposed, preflights cached 10 minutes. Bearer tokens
/// travel in `Authorization`, so no credentials mode is needed.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                HeaderName::from_static("mnemo-proof-level"),
                header::LOCATION,
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Every resource's routes with the OpenAPI document built from their handlers (the health
/// endpoints' description included; they are served by `health::router`).
pub fn routes() -> OpenApiRouter<S> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .merge(users::router())
        .merge(devices::router())
        .merge(memories::router())
        .merge(proofs::router())
        .merge(chain::router())
        .merge(export::router())
        .merge(grants::router())
        .merge(access_log::router())
        .merge(erasure::router())
        .merge(anchors::router())
        .merge(shared::router())
        .merge(ask::router())
        .merge(processing::router())
        .merge(session::router())
}

/// The OpenAPI document `/openapi.json` serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// Response headers helper for tests and clients: the problem content type.
pub fn is_problem(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/problem+json")
}

#[cfg(test)]
mod tests {
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
