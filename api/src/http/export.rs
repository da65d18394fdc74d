//! `GET /v1/export`: the caller's whole custody bundle, streamed (docs/FORMAT.md §13).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use mnemo_core::TimestampMs;

use super::S;
use super::extract::Caller;
use crate::problem::{ApiResult, Problem};
use axum::routing::get;

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
            TimestampMs(crate::clock::now_ms()),
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

/// This resource's routes.
pub(crate) fn router() -> axum::Router<S> {
    axum::Router::new().route("/v1/export", get(export))
}
