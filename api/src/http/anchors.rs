//! `GET /v1/anchors` and `/v1/anchors/{epoch}`: anchored epochs, from the anchor service's
//! records.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::S;
use super::extract::Caller;
use crate::problem::{ApiResult, Problem};
use axum::routing::get;

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

/// This resource's routes.
pub(crate) fn router() -> axum::Router<S> {
    axum::Router::new()
        .route("/v1/anchors", get(list_anchors))
        .route("/v1/anchors/{epoch}", get(get_anchor))
}
