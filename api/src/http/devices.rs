//! Device credentials: `POST /v1/users/{id}/devices` issues a NATS user (`.creds`) in the
//! user's account, `DELETE /v1/users/{id}/devices/{device}` revokes it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mnemo_core::UserId;
use serde::Deserialize;

use super::extract::{ApiJson, ApiPath, Caller, user_id};
use super::schema::{DeviceIssued, DeviceRevoked};
use super::{Api, S};
use crate::auth::Principal;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

fn accounts(api: &Api) -> ApiResult<&mnemo_accounts::Accounts> {
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
    /// A NATS user key the device made itself (`U...`, a browser's): the answer carries a
    /// JWT for it and no seed (short-lived: `ttl_secs` default 15 minutes).
    #[serde(default)]
    nats_public_key: Option<String>,
    /// The device's Ed25519 signing key (32 bytes, hex), added to the user's chain with
    /// role device: its capture signatures prove where a memory came from.
    #[serde(default)]
    signing_key: Option<String>,
}

/// Issues device credentials (`.creds`) in the user's NATS account.
#[utoipa::path(post, path = "/v1/users/{id}/devices", tag = "devices", request_body = NewDevice, security(("bearer" = [])),
    params(("id" = String, Path, description = "user id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 201, body = super::schema::DeviceIssued), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn create_device(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(d): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<DeviceIssued>)> {
    let user = device_owner(&caller, &id)?;
    let accounts = accounts(&api)?;
    if d.name.is_empty() || d.name.len() > 64 || d.name.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "device names are 1 to 64 printable characters",
        ));
    }
    let default_ttl = if d.nats_public_key.is_some() {
        15 * 60
    } else {
        90 * 24 * 3600
    };
    let ttl = d.ttl_secs.unwrap_or(default_ttl);
    if !(60..=400 * 24 * 3600).contains(&ttl) {
        return Err(Problem::bad_request("ttl_secs must be 60 s to 400 days"));
    }
    let signing_key =
        match &d.signing_key {
            None => None,
            Some(h) => {
                let mut b = [0u8; 32];
                hex::decode_to_slice(h, &mut b)
                    .map_err(|_| Problem::bad_request("signing_key must be 32 bytes in hex"))?;
                Some(mnemo_core::PublicKey::from_bytes(&b).ok_or_else(|| {
                    Problem::bad_request("signing_key is not an Ed25519 public key")
                })?)
            }
        };
    if !accounts.exists(&user).await.map_err(Problem::internal)? {
        return Err(Problem::not_found(format!("no NATS account for {user}")));
    }
    let key_id = match signing_key {
        None => None,
        Some(key) => {
            let id = key.id();
            api.ledger
                .append_event(
                    &user,
                    mnemo_core::EventBody::KeyAdded {
                        key,
                        role: mnemo_core::KeyRole::Device,
                    },
                    None,
                )
                .await?;
            Some(id)
        }
    };
    let answer = match &d.nats_public_key {
        Some(k) => {
            if !k.starts_with('U') || nkeys::KeyPair::from_public_key(k).is_err() {
                return Err(Problem::bad_request(
                    "nats_public_key must be a NATS user public key (U...)",
                ));
            }
            let jwt = accounts
                .issue_device_jwt(&user, k, &d.name, ttl)
                .await
                .map_err(Problem::internal)?;
            DeviceIssued {
                device: k.clone(),
                expires_in: ttl,
                creds: None,
                jwt: Some(jwt),
                signing_key_id: key_id,
            }
        }
        None => {
            let (device, creds) = accounts
                .issue_device(&user, &d.name, ttl)
                .await
                .map_err(Problem::internal)?;
            DeviceIssued {
                device,
                expires_in: ttl,
                creds: Some(creds),
                jwt: None,
                signing_key_id: key_id,
            }
        }
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Revokes a device's credentials.
#[utoipa::path(delete, path = "/v1/users/{id}/devices/{device}", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id", pattern = "^[A-Za-z0-9_-]{1,64}$"), ("device" = String, Path, description = "the device's NATS user key (U and 55 base32 characters, with a checksum)", pattern = "^U[A-Z2-7]{55}$")),
    responses((status = 200, body = super::schema::DeviceRevoked), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn revoke_device(
    State(api): State<S>,
    caller: Caller,
    ApiPath((id, device)): ApiPath<(String, String)>,
) -> ApiResult<Json<DeviceRevoked>> {
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
    Ok(Json(DeviceRevoked {
        device,
        revoked: true,
    }))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(create_device))
        .routes(routes!(revoke_device))
}
