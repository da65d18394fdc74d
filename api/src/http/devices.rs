//! Device credentials: `POST /v1/users/{id}/devices` issues a NATS user (`.creds`) in the
//! user's account, `DELETE /v1/users/{id}/devices/{device}` revokes it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mnemo_core::UserId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ApiPath, Caller, user_id};
use super::{Api, S};
use crate::auth::Principal;
use crate::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

fn accounts(api: &Api) -> ApiResult<&crate::nats::Accounts> {
    api.accounts.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "no-nats-accounts",
            "NATS accounts are not configured on this server (mnemo nats init, MNEMO_NATS_DIR)",
        )
    })
}

/// The user a device endpoint acts on: oneself, or anyone for an admin.
fn device_owner(caller: &Caller, id: &str) -> ApiResult<UserId> {
    let user = user_id(id)?;
    match &caller.0 {
        Principal::Admin => Ok(user),
        Principal::User(u) if *u == user => Ok(user),
        Principal::User(_) | Principal::Processor(_) => {
            Err(Problem::forbidden("devices of another user"))
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDevice {
    name: String,
    /// Lifetime of the credentials in seconds (default 90 days).
    #[serde(default)]
    ttl_secs: Option<i64>,
}

/// Issues device credentials (`.creds`) in the user's NATS account.
#[utoipa::path(post, path = "/v1/users/{id}/devices", tag = "devices", request_body = NewDevice, security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses((status = 201, body = super::schema::DeviceIssued), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn create_device(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(d): ApiJson<NewDevice>,
) -> ApiResult<impl IntoResponse> {
    let user = device_owner(&caller, &id)?;
    let accounts = accounts(&api)?;
    if d.name.is_empty() || d.name.len() > 64 || d.name.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "device names are 1 to 64 printable characters",
        ));
    }
    let ttl = d.ttl_secs.unwrap_or(90 * 24 * 3600);
    if !(60..=400 * 24 * 3600).contains(&ttl) {
        return Err(Problem::bad_request("ttl_secs must be 60 s to 400 days"));
    }
    if !accounts.exists(&user).await.map_err(Problem::internal)? {
        return Err(Problem::not_found(format!("no NATS account for {user}")));
    }
    let (device, creds) = accounts
        .issue_device(&user, &d.name, ttl)
        .await
        .map_err(Problem::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "device": device, "expires_in": ttl, "creds": creds })),
    ))
}

/// Revokes a device's credentials.
#[utoipa::path(delete, path = "/v1/users/{id}/devices/{device}", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id"), ("device" = String, Path, description = "the device's NATS user key")),
    responses((status = 200, body = super::schema::DeviceRevoked), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn revoke_device(
    State(api): State<S>,
    caller: Caller,
    ApiPath((id, device)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let user = device_owner(&caller, &id)?;
    let accounts = accounts(&api)?;
    if nkeys::KeyPair::from_public_key(&device).is_err() || !device.starts_with('U') {
        return Err(Problem::bad_request(
            "device ids are NATS user public keys (U...)",
        ));
    }
    if !accounts.exists(&user).await.map_err(Problem::internal)? {
        return Err(Problem::not_found(format!("no NATS account for {user}")));
    }
    accounts
        .revoke_device(&user, &device)
        .await
        .map_err(Problem::internal)?;
    Ok(Json(json!({ "device": device, "revoked": true })))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(create_device))
        .routes(routes!(revoke_device))
}
