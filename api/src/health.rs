//! `/healthz`, `/readyz` and `/metrics` (Prometheus text format) for the running services.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What the health endpoints look at.
#[derive(Clone)]
pub struct Health {
    /// JetStream, to measure lag.
    pub js: async_nats::jetstream::Context,
    /// The views' database.
    pub views: mnemo_projections::Views,
    /// The projector's view name.
    pub view: String,
    /// The projector's counters.
    pub stats: Arc<mnemo_projections::ProjectorStats>,
    /// Ready while the view is at most this many events behind.
    pub max_lag: u64,
    /// The API's counters, when it runs.
    pub api: Option<Arc<crate::http::ApiStats>>,
    /// The anchorer's counters, when it runs.
    pub anchor: Option<Arc<mnemo_anchor::AnchorStats>>,
    /// The dispatcher's counters per processor, when processing runs.
    pub tasks: Option<mnemo_processing::dispatcher::DispatchStats>,
    /// What this instance serves, which decides when it is ready.
    pub role: Role,
}

/// What an instance serves, and so what its readiness follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The API and the device services: ready while the ledger (JetStream) answers, so
    /// ingest goes on when the views fall behind; the views' lag is reported apart, and
    /// reads answer 503 with `Retry-After` until the caller's chain is in them.
    Api,
    /// A view process (`mnemo projections run`): ready while its view is at most
    /// `max_lag` events behind.
    Views,
}

/// The router of the health endpoints.
pub fn router(h: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(h)
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness, by the instance's [`Role`]: an API instance is ready while the ledger
/// answers (the views' lag is in the body, `roles.reads`); a view process while its view is
/// at most `max_lag` events behind. Quarantined users are reported, never counted against
/// it: one user's refused event must not take the instance down for everyone.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses((status = 200, body = Object, description = "ready"), (status = 503, body = Object, description = "not ready")))]
pub(crate) async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    let lag = mnemo_projections::lag(&h.js, h.views.pool(), &h.view).await;
    if let Err(e) = &lag {
        tracing::warn!(error = %e, "readyz: lag unknown");
    }
    let views_ready = lag.as_ref().is_ok_and(|l| *l <= h.max_lag);
    let quarantined = h.views.quarantined_users().await.ok();
    let (ready, roles) = match h.role {
        Role::Views => (views_ready, serde_json::json!({ "views": views_ready })),
        Role::Api => {
            // Ingest needs the ledger only: JetStream answering for the service account.
            let ledger =
                tokio::time::timeout(std::time::Duration::from_secs(2), h.js.query_account())
                    .await
                    .is_ok_and(|r| r.is_ok());
            (
                ledger,
                serde_json::json!({ "ingest": ledger, "reads": ledger && views_ready }),
            )
        }
    };
    let body = serde_json::json!({
        "ready": ready,
        "roles": roles,
        "lag": { h.view.clone(): lag.as_ref().ok() },
        "quarantined_users": quarantined,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "health", security(()),
    responses((status = 200, body = String, content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    let mut reg = Registry::with_prefix("mnemo");
    reg.sub_registry_with_label(("version".into(), env!("CARGO_PKG_VERSION").into()))
        .register(
            "build_info",
            "The running mnemo's version (always 1)",
            ConstGauge::new(1),
        );
    let view = h.view.clone();
    let sub = reg.sub_registry_with_label(("view".into(), view.into()));
    let s = &h.stats;
    sub.register(
        "projection_applied",
        "Events applied to the view",
        ConstCounter::new(s.applied.load(Ordering::Relaxed)),
    );
    sub.register(
        "projection_dead_letters",
        "Events that failed verification and went to the dead-letter subject",
        ConstCounter::new(s.dead_letters.load(Ordering::Relaxed)),
    );
    sub.register(
        "projection_batches",
        "Transactions committed",
        ConstCounter::new(s.batches.load(Ordering::Relaxed)),
    );
    sub.register(
        "projection_retries",
        "Batches that failed and were retried",
        ConstCounter::new(s.retries.load(Ordering::Relaxed)),
    );
    if let Ok(lag) = mnemo_projections::lag(&h.js, h.views.pool(), &h.view).await {
        sub.register(
            "projection_lag_events",
            "Events the view is behind the chains",
            ConstGauge::new(lag as i64),
        );
    }
    if let Ok(n) = h.views.quarantined_users().await {
        sub.register(
            "projection_quarantined_users",
            "Users whose view stopped at an event the chain rules refused",
            ConstGauge::new(n as i64),
        );
    }
    if let Some(a) = &h.api {
        let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 5] = [
            ("http_requests", "HTTP requests answered", &a.requests),
            (
                "http_client_errors",
                "Answers with a 4xx status",
                &a.client_errors,
            ),
            (
                "http_server_errors",
                "Answers with a 5xx status",
                &a.server_errors,
            ),
            (
                "memories_ingested",
                "Memories ingested over HTTP",
                &a.ingested,
            ),
            (
                "accesses_recorded",
                "Reads by grantees recorded in owners' chains",
                &a.accesses,
            ),
        ];
        for (name, help, v) in counters {
            reg.register(name, help, ConstCounter::new(v.load(Ordering::Relaxed)));
        }
        reg.register(
            "http_request_duration_seconds",
            "HTTP requests answered by a route, by its template, the method and the status class",
            a.red.durations.clone(),
        );
        reg.register(
            "nats_request_duration_seconds",
            "Device requests the NATS gateway answered (ingest, read, upload), by outcome class",
            mnemo_gateway::metrics::durations().clone(),
        );
    }
    if let Some(s) = &h.anchor {
        register_anchor(reg.sub_registry_with_prefix("anchor"), s);
    }
    if let Some(t) = &h.tasks {
        register_tasks(&mut reg, t);
        if let Ok(mut s) = h.js.get_stream(mnemo_core::names::DEAD_TASK_STREAM).await
            && let Ok(info) = s.info().await
        {
            reg.register(
                "tasks_dead_letters",
                "Tasks in the dead-letter stream (GET /v1/processing/dead-letters)",
                ConstGauge::new(info.state.messages as i64),
            );
        }
        if let Ok(mut s) = h.js.get_stream(mnemo_core::names::WORK_STREAM).await
            && let Ok(info) = s.info().await
        {
            reg.register(
                "tasks_queued",
                "Tasks waiting in the work queue",
                ConstGauge::new(info.state.messages as i64),
            );
        }
    }
    openmetrics(&reg)
}

/// `/healthz` and `/metrics` of the anchorer.
pub fn anchor_router(stats: Arc<mnemo_anchor::AnchorStats>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(anchor_metrics))
        .with_state(stats)
}

async fn anchor_metrics(State(s): State<Arc<mnemo_anchor::AnchorStats>>) -> impl IntoResponse {
    let mut reg = Registry::with_prefix("mnemo_anchor");
    register_anchor(&mut reg, &s);
    openmetrics(&reg)
}

fn register_anchor(reg: &mut Registry, s: &mnemo_anchor::AnchorStats) {
    let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 5] = [
        ("epochs", "Epochs anchored", &s.epochs),
        (
            "rpc_errors",
            "Failed anchoring attempts (retried with backoff)",
            &s.rpc_errors,
        ),
        (
            "insufficient_funds",
            "Submissions refused for lack of funds",
            &s.insufficient_funds,
        ),
        ("reorgs", "Anchors found reorganised away", &s.reorgs),
        (
            "resubmissions",
            "Anchors submitted again after a reorg",
            &s.resubmissions,
        ),
    ];
    for (name, help, v) in counters {
        reg.register(name, help, ConstCounter::new(v.load(Ordering::Relaxed)));
    }
    reg.register(
        "last_epoch_changed_users",
        "Users the last epoch appended to the epoch log",
        ConstGauge::new(s.last_changed_users.load(Ordering::Relaxed) as i64),
    );
    reg.register(
        "last_epoch_compute_seconds",
        "Seconds the last epoch took to read the changed heads and store the log",
        ConstGauge::new(s.last_compute_us.load(Ordering::Relaxed) as f64 / 1e6),
    );
}

fn register_tasks(reg: &mut Registry, t: &mnemo_processing::dispatcher::DispatchStats) {
    use mnemo_processing::dispatcher::TaskCounters;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use std::sync::atomic::AtomicU64;
    type Fam = Family<Vec<(String, String)>, Counter>;
    type Field = fn(&TaskCounters) -> &AtomicU64;
    let counters: [(&str, &str, Field); 5] = [
        ("tasks_done", "Tasks a worker finished", |c| &c.done),
        (
            "tasks_failed",
            "Task deliveries refused or timed out (redelivered)",
            |c| &c.failed,
        ),
        (
            "tasks_dead",
            "Tasks set aside as dead letters since start",
            |c| &c.dead,
        ),
        (
            "tasks_skipped",
            "Tasks whose result was already recorded",
            |c| &c.skipped,
        ),
        (
            "tasks_released",
            "Task offers a worker handed back (at capacity or shutting down), offered again",
            |c| &c.released,
        ),
    ];
    let stats = t.lock().expect("not poisoned");
    for (name, help, field) in counters {
        let fam = Fam::default();
        for (p, c) in stats.iter() {
            let l = vec![("processor".to_owned(), p.to_string())];
            fam.get_or_create(&l)
                .inc_by(field(c).load(Ordering::Relaxed));
        }
        reg.register(name, help, fam);
    }
}

/// A registry in the OpenMetrics text format.
fn openmetrics(reg: &Registry) -> axum::response::Response {
    let mut out = String::new();
    if encode(&mut out, reg).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], out).into_response()
}
