//! `GET /v1/memories/{id}/proof`: one memory's self-contained proof bundle, anchored once
//! its epoch is. The body is the proof bundle of docs/FORMAT.md §7.3 itself, what
//! `mnemo-audit verify --bundle` reads; the level it reaches is the `Mnemo-Proof-Level`
//! header.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use mnemo_core::{Hash32, ProofBundle, PublicKey, Seq};

use super::S;
use super::extract::{ApiPath, Caller, memory_id};
use super::memories::memory_row;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// A proof bundle for one memory (anchored once its epoch is).
#[utoipa::path(get, path = "/v1/memories/{id}/proof", tag = "memories", security(("bearer" = [])),
    params(("id" = String, Path, description = "memory id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses((status = 200, body = super::schema::ProofDoc, headers(("Mnemo-Proof-Level" = String, description = "`checkpointed`, `in_epoch` or `anchored`"))), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn get_proof(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let id = memory_id(&id)?;
    let _permit = api.cfg.heavy.start(user)?;
    let synced = api.sync(user).await?;
    let m = memory_row(&api, user, &id).await?;
    let seq = m.seq as u64;
    let anchors = match api.anchors().await? {
        Some(r) => r.anchors_for(user).await.map_err(Problem::internal)?,
        None => Vec::new(),
    };
    // The chain's hashes as far as the view holds it (the barrier saw at least the memory).
    let hashes: Vec<Hash32> = api
        .views
        .event_hashes(user, synced.seq)
        .await?
        .into_iter()
        .map(Hash32)
        .collect();
    let stored = api.ledger.events(user, Seq(seq), 1).await?;
    let stored = stored
        .first()
        .ok_or_else(|| Problem::internal("view names an event the chain lacks"))?;
    let key_of = async |id: &mnemo_core::KeyId| -> ApiResult<PublicKey> {
        api.views
            .user_key(user, id)
            .await?
            .ok_or_else(|| Problem::internal("the view lacks a key the chain names"))
    };
    let signer_key = key_of(&stored.event.signer).await?;
    let origin_key = match &stored.event.origin {
        Some(o) => Some(key_of(&o.key).await?),
        None => None,
    };
    let (bundle, level) = ProofBundle::assemble(
        stored.event.clone(),
        signer_key,
        origin_key,
        &hashes,
        anchors,
    )
    .map_err(|e| Problem::internal(format!("proof does not verify: {e}")))?;
    let mut r = Json(bundle).into_response();
    let level = serde_json::to_value(level).map_err(Problem::internal)?;
    if let Some(l) = level.as_str().and_then(|l| HeaderValue::from_str(l).ok()) {
        r.headers_mut().insert("mnemo-proof-level", l);
    }
    Ok(r)
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(get_proof))
}
