//! The caller's own chain: `GET /v1/chain` (signed events, in pages) and `/v1/chain/head`.

use axum::Json;
use axum::extract::State;
use mnemo_core::Seq;
use serde::Deserialize;

use super::S;
use super::extract::{ApiQuery, Caller, in_range};
use super::schema::{ChainHead, ChainItem, ChainPage};
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChainQuery {
    /// The first seq of the page (default 1).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    from: Option<u64>,
    /// Events per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The caller's signed events, in pages (a page past the end is empty).
#[utoipa::path(get, path = "/v1/chain", tag = "chain", security(("bearer" = [])), params(ChainQuery),
    responses((status = 200, body = super::schema::ChainPage), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn get_chain(
    State(api): State<S>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ChainQuery>,
) -> ApiResult<Json<ChainPage>> {
    let user = caller.user()?;
    let from = in_range("from", q.from.unwrap_or(1), 0..=i64::MAX as u64)?.max(1);
    let limit = in_range("limit", q.limit.unwrap_or(100), 1..=1000)?;
    let events = api.ledger.events(user, Seq(from), limit).await?;
    let items: Vec<ChainItem> = events
        .into_iter()
        .map(|e| ChainItem {
            seq: e.event.seq.0,
            hash: e.hash,
            wire: hex::encode(e.event.to_wire()),
            event: e.event,
        })
        .collect();
    let next = (items.len() == limit).then(|| from + limit as u64);
    Ok(Json(ChainPage {
        items,
        next_from: next,
    }))
}

/// The caller's chain head.
#[utoipa::path(get, path = "/v1/chain/head", tag = "chain", security(("bearer" = [])),
    responses((status = 200, body = super::schema::ChainHead), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn get_head(State(api): State<S>, caller: Caller) -> ApiResult<Json<ChainHead>> {
    let user = caller.user()?;
    let tip = api
        .ledger
        .head(user)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no user {user}")))?;
    Ok(Json(ChainHead {
        user: user.clone(),
        seq: tip.len,
        hash: tip.hash,
    }))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(get_chain))
        .routes(routes!(get_head))
}
