//! `GET /v1/anchors` and `/v1/anchors/{epoch}`: anchored epochs, from the anchor service's
//! records.

use axum::Json;
use axum::extract::State;
use mnemo_anchor::EpochRecord;

use super::S;
use super::extract::{ApiPath, Caller};
use super::schema::AnchorsPage;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Anchored epochs.
#[utoipa::path(get, path = "/v1/anchors", tag = "anchors", security(("bearer" = [])),
    responses((status = 200, body = super::schema::AnchorsPage), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn list_anchors(State(api): State<S>, _caller: Caller) -> ApiResult<Json<AnchorsPage>> {
    let epochs = match api.anchors().await? {
        Some(r) => r.epochs().await.map_err(Problem::internal)?,
        None => Vec::new(),
    };
    Ok(Json(AnchorsPage { items: epochs }))
}

/// One epoch's record: root, receipt, checkpoints.
#[utoipa::path(get, path = "/v1/anchors/{epoch}", tag = "anchors", security(("bearer" = [])),
    params(("epoch" = u64, Path, description = "epoch number")),
    responses((status = 200, body = Object), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn get_anchor(
    State(api): State<S>,
    _caller: Caller,
    ApiPath(epoch): ApiPath<String>,
) -> ApiResult<Json<EpochRecord>> {
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| Problem::bad_request("epochs are positive integers"))?;
    let rec = match api.anchors().await? {
        Some(r) => r.epoch(epoch).await.map_err(Problem::internal)?,
        None => None,
    };
    rec.map(Json)
        .ok_or_else(|| Problem::not_found(format!("no epoch {epoch}")))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(list_anchors))
        .routes(routes!(get_anchor))
}
