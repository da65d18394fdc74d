//! `GET /v1/access-log`: who read the caller's memories, when, under which grant.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::S;
use super::extract::Caller;
use crate::problem::ApiResult;
use axum::routing::get;

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

/// This resource's routes.
pub(crate) fn router() -> axum::Router<S> {
    axum::Router::new().route("/v1/access-log", get(access_log))
}
