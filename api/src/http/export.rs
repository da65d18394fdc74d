//! `GET /v1/export`: the caller's whole custody bundle, streamed (docs/FORMAT.md §13).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mnemo_core::TimestampMs;

use super::S;
use super::extract::Caller;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The caller's whole custody bundle, streamed (`mnemo-audit verify --bundle`).
#[utoipa::path(get, path = "/v1/export", tag = "chain", security(("bearer" = [])),
    responses((status = 200, description = "one JSON item per line (docs/FORMAT.md §13)", content_type = "application/x-ndjson", body = String), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn export(State(api): State<S>, caller: Caller) -> ApiResult<Response> {
    let user = caller.user()?.clone();
    let permit = api.cfg.heavy.start(&user)?;
    if api.ledger.head(&user).await?.is_none() {
        return Err(Problem::not_found(format!("no user {user}")));
    }
    // The chain's reader is opened before the answer starts: no reader to be had (the
    // user's reads are all taken) is a 429 now, not a cut-short 200.
    let reader = api.ledger.read(&user, mnemo_core::Seq::FIRST).await?;
    let (mut w, r) = tokio::io::duplex(1 << 16);
    let anchors = api.anchors().await?;
    let api2 = api.clone();
    let writer = tokio::spawn(async move {
        let res = crate::export::write_bundle_from(
            &api2.ledger,
            reader,
            anchors.as_ref(),
            &user,
            TimestampMs(crate::clock::now_ms()),
            &mut w,
        )
        .await;
        drop(permit);
        if let Err(e) = &res {
            tracing::warn!(%user, error = %e, "export stopped");
        }
        res
    });
    // A bundle that could not be completed ends the response in an error, never in a
    // clean end of body: hyper then breaks the chunked stream off without its last chunk,
    // so the client sees the download fail (and the bundle lacks its end item, which
    // mnemo-audit requires).
    let outcome = futures::stream::once(async move {
        match writer.await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(format!("export stopped: {e}")))),
            Err(e) => Some(Err(std::io::Error::other(format!("export failed: {e}")))),
        }
    })
    .filter_map(std::future::ready);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(r).chain(outcome));
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

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(export))
}
