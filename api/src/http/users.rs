//! `POST /v1/users` (admin): a user's chain, their NATS account when configured, a token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mnemo_ledger::LedgerError;
use serde::Deserialize;

use super::S;
use super::extract::{ApiJson, Caller, user_id};
use crate::auth::Principal;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    id: String,
}

/// Creates a user's chain (and NATS account, in operator mode); returns their token.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = [])),
    responses((status = 201, body = super::schema::CreatedUser), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn create_user(
    State(api): State<S>,
    caller: Caller,
    ApiJson(b): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<super::schema::CreatedUser>)> {
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
        Json(super::schema::CreatedUser {
            id: user,
            token,
            nats_account: account,
        }),
    ))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(create_user))
}
