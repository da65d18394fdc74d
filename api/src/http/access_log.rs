//! `GET /v1/access-log`: who read the caller's memories, when, under which grant.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::S;
use super::extract::Caller;
use crate::problem::ApiResult;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Who read the caller's memories, when, under which grant.
#[utoipa::path(get, path = "/v1/access-log", tag = "grants", security(("bearer" = [])),
    responses((status = 200, body = super::schema::AccessLog), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn access_log(State(api): State<S>, caller: Caller) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    api.sync(user).await?;
    let items: Vec<Value> = api
        .views
        .access_log(user, 1000)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "accessor": r.accessor,
                "grant": r.grant,
                "action": r.action,
                "memories": r.memories,
                "at": r.at,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(access_log))
}
