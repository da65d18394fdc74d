//! Grants: `POST /v1/grants` and `DELETE /v1/grants/{id}` append `grant_created` and
//! `grant_revoked` to the owner's chain; `GET /v1/grants` lists those given or received.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mnemo_core::grant::Refusal;
use mnemo_core::{Capabilities, EventBody, GrantConditions, GrantId, TimestampMs};
use mnemo_ledger::LedgerError;
use mnemo_projections::GrantRole;
use serde::Deserialize;

use super::S;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, user_id};
use super::schema::{EventReceipt, GrantView, GrantsPage, ProcessingGrantView};
use crate::clock::now_ms;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGrant {
    /// Who may read (a user grant); or give `processor` instead.
    #[serde(default)]
    grantee: Option<String>,
    /// What a grantee may do (a user grant).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    capabilities: Option<Capabilities>,
    /// Which registered processor may process the memories (a processing grant: a
    /// `processing_granted` event naming the processor's key).
    #[serde(default)]
    processor: Option<String>,
    /// Only this version of the processor (processing grants; default: any).
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    conditions: GrantConditions,
    /// Milliseconds since the epoch.
    #[serde(default)]
    expires_at: Option<i64>,
    /// When the grant opens (a time capsule, user grants only): nothing is served or
    /// answered under it before. Milliseconds since the epoch.
    #[serde(default)]
    not_before: Option<i64>,
}

/// Grants another user access (`grantee`, `capabilities`, conditions, expiry): a
/// `grant_created` event; or lets a registered processor process memories (`processor`,
/// optional `version`, conditions, expiry): a `processing_granted` event naming its key.
#[utoipa::path(post, path = "/v1/grants", tag = "grants", request_body = NewGrant, security(("bearer" = [])),
    responses((status = 201, body = super::schema::EventReceipt), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn create_grant(
    State(api): State<S>,
    caller: Caller,
    ApiJson(g): ApiJson<NewGrant>,
) -> ApiResult<impl IntoResponse> {
    let user = caller.user()?;
    if g.expires_at.is_some_and(|t| t <= now_ms()) {
        return Err(Problem::bad_request("expires_at is in the past"));
    }
    let (grantee, capabilities) = match (g.grantee, g.capabilities, g.processor) {
        (None, None, Some(_)) if g.not_before.is_some() => {
            return Err(Problem::bad_request(
                "not_before opens a user grant (a time capsule); a processing grant has none",
            ));
        }
        (None, None, Some(name)) => {
            return processing_grant(&api, user, &name, g.version, g.conditions, g.expires_at)
                .await;
        }
        (Some(u), Some(c), None) if g.version.is_none() => (user_id(&u)?, c),
        _ => {
            return Err(Problem::bad_request(
                "give either grantee and capabilities (a user grant) or processor (and optionally version: a processing grant)",
            ));
        }
    };
    let g = NewUserGrant {
        capabilities,
        conditions: g.conditions,
        expires_at: g.expires_at,
        not_before: g.not_before,
    };
    if grantee == *user {
        return Err(Problem::bad_request("a grant to oneself means nothing"));
    }
    if g.not_before
        .is_some_and(|o| g.expires_at.is_some_and(|x| x <= o))
    {
        return Err(Problem::bad_request(
            "expires_at is at or before not_before: the grant would never open",
        ));
    }
    if !g.capabilities.metadata && !g.capabilities.content && !g.capabilities.ask {
        return Err(Problem::bad_request(
            "a grant needs at least one capability",
        ));
    }
    // Decided (issue 17): an unknown grantee is a 404, which tells the caller that the id
    // is free. Accepting it instead would hand the memories to whoever registers that id
    // later; user ids are names people share, not secrets (README, "Grants").
    if !api.ledger.user_exists(&grantee).await? {
        return Err(Problem::not_found(format!("no user {grantee}")));
    }
    let grant = GrantId(rand::random());
    let r = api
        .ledger
        .append_event(
            user,
            EventBody::GrantCreated {
                grant,
                grantee: grantee.clone(),
                capabilities: g.capabilities,
                conditions: g.conditions,
                expires_at: g.expires_at.map(TimestampMs),
                not_before: g.not_before.map(TimestampMs),
            },
            None,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(EventReceipt::grant(grant, r))))
}

struct NewUserGrant {
    capabilities: Capabilities,
    conditions: GrantConditions,
    expires_at: Option<i64>,
    not_before: Option<i64>,
}

/// A processing grant: the processor must be registered and not revoked; the event names
/// its public key, so its results can be checked from the owner's chain alone.
async fn processing_grant(
    api: &S,
    user: &mnemo_core::UserId,
    name: &str,
    version: Option<String>,
    conditions: GrantConditions,
    expires_at: Option<i64>,
) -> ApiResult<(StatusCode, Json<EventReceipt>)> {
    let name = mnemo_core::ProcessorId::new(name)
        .map_err(|e| Problem::bad_request(format!("processor: {e}")))?;
    let (grant, r) = api
        .processing
        .grant(
            user,
            &name,
            version.clone(),
            conditions,
            expires_at.map(TimestampMs),
        )
        .await
        .map_err(|e| match e {
            mnemo_processing::ProcessingError::UnknownProcessor(_) => {
                Problem::not_found(format!("no processor {name}"))
            }
            mnemo_processing::ProcessingError::Ledger(l) => l.into(),
            other => super::processing::problem(other),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(EventReceipt {
            processor: Some(name),
            version,
            ..EventReceipt::grant(grant, r)
        }),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantsQuery {
    /// `owner` (default: grants I gave) or `grantee` (grants given to me).
    #[param(pattern = "^(owner|grantee)$")]
    role: Option<String>,
}

/// Grants the caller gave (`role=owner`, default) or was given (`role=grantee`).
#[utoipa::path(get, path = "/v1/grants", tag = "grants", security(("bearer" = [])), params(GrantsQuery),
    responses((status = 200, body = super::schema::GrantsPage), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn list_grants(
    State(api): State<S>,
    caller: Caller,
    ApiQuery(q): ApiQuery<GrantsQuery>,
) -> ApiResult<Json<GrantsPage>> {
    let user = caller.user()?;
    let role = match q.role.as_deref() {
        None | Some("owner") => {
            api.sync(user).await?;
            GrantRole::Owner
        }
        Some("grantee") => GrantRole::Grantee,
        Some(_) => return Err(Problem::bad_request("role is owner or grantee")),
    };
    let now = TimestampMs(now_ms());
    let processing: Vec<ProcessingGrantView> = if role == GrantRole::Owner {
        let mut gs = api
            .ledger
            .with_rules(user, |s| s.processing_grants().cloned().collect::<Vec<_>>())
            .await?;
        gs.sort_by_key(|g| g.id);
        gs.into_iter()
            .map(|g| ProcessingGrantView {
                live: g.live(now).is_ok(),
                id: g.id,
                owner: user.clone(),
                processor: g.processor,
                version: g.version,
                processor_key: g.key,
                conditions: g.conditions,
                expires_at: g.expires_at,
            })
            .collect()
    } else {
        vec![]
    };
    let items: Vec<GrantView> = api
        .views
        .grants(user, role)
        .await?
        .into_iter()
        .map(|r| GrantView {
            live: r.grant.in_force(now).is_ok(),
            state: match r.grant.in_force(now) {
                Ok(()) => "live",
                Err(Refusal::NotYetOpen) => "not_yet_open",
                Err(Refusal::Expired) => "expired",
                Err(_) => "revoked",
            },
            not_before: r.grant.not_before,
            id: r.grant.id,
            owner: r.owner,
            grantee: r.grant.grantee,
            capabilities: r.grant.capabilities,
            conditions: r.grant.conditions,
            expires_at: r.grant.expires_at,
            created_seq: r.created_seq,
            revoked_seq: r.revoked_seq,
        })
        .collect();
    Ok(Json(GrantsPage { items, processing }))
}

/// Revokes a grant: a `grant_revoked` event; no access is recorded under it after.
#[utoipa::path(delete, path = "/v1/grants/{id}", tag = "grants", security(("bearer" = [])),
    params(("id" = String, Path, description = "grant id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses((status = 200, body = super::schema::EventReceipt), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn revoke_grant(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<EventReceipt>> {
    let user = caller.user()?;
    let grant = GrantId::from_hex(&id)
        .map_err(|_| Problem::bad_request("grant ids are 32 hex characters"))?;
    for _ in 0..8 {
        let synced = api.sync(user).await?;
        let revoked = api.views.grant(user, &grant).await?.map(|r| r.revoked_seq);
        match revoked {
            None => {
                // A processing grant (core's rules check it on the write path).
                let live = api
                    .ledger
                    .with_rules(user, |s| s.processing_grant(&grant).map(|g| !g.revoked))
                    .await?;
                return match live {
                    None => Err(Problem::not_found(format!("no grant {grant}"))),
                    Some(false) => Err(Problem::new(
                        StatusCode::CONFLICT,
                        "revoked",
                        format!("grant {grant} is already revoked"),
                    )),
                    Some(true) => {
                        let r = api
                            .ledger
                            .append_event(user, EventBody::GrantRevoked { grant }, None)
                            .await?;
                        Ok(Json(EventReceipt::grant(grant, r)))
                    }
                };
            }
            Some(Some(_)) => {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    "revoked",
                    format!("grant {grant} is already revoked"),
                ));
            }
            Some(None) => {}
        }
        // Only on top of the head the check saw: two revocations can not both land.
        match api
            .ledger
            .append_event_after(user, EventBody::GrantRevoked { grant }, synced.head)
            .await
        {
            Ok(r) => {
                return Ok(Json(EventReceipt::grant(grant, r)));
            }
            Err(LedgerError::HeadMoved(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::unavailable("the chain is busy; retry"))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(create_grant, list_grants))
        .routes(routes!(revoke_grant))
}
