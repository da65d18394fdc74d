//! `POST /v1/users` (admin): a user's chain, their NATS account when configured, a token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mnemo_ledger::LedgerError;
use serde::Deserialize;
use serde_json::json;

use super::S;
use super::extract::{ApiJson, Caller, user_id};
use crate::auth::Principal;
use crate::problem::{ApiResult, Problem};
use axum::routing::post;

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

/// This resource's routes.
pub(crate) fn router() -> axum::Router<S> {
    axum::Router::new().route("/v1/users", post(create_user))
}
