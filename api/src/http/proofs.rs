//! `GET /v1/memories/{id}/proof`: one memory's self-contained proof bundle, anchored once
//! its epoch is (docs/FORMAT.md §12).

use axum::Json;
use axum::extract::State;
use mnemo_core::merkle::CHAIN_TREE;
use mnemo_core::{Checkpoint, Hash32, MerkleTree, ProofBundle, PublicKey, Seq};
use serde_json::{Value, json};

use super::S;
use super::extract::{ApiPath, Caller, memory_id};
use super::memories::memory_row;
use crate::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// A proof bundle for one memory (anchored once its epoch is).
#[utoipa::path(get, path = "/v1/memories/{id}/proof", tag = "memories", security(("bearer" = [])),
    params(("id" = String, Path, description = "memory id")),
    responses((status = 200, body = super::schema::ProofDoc), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn get_proof(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let user = caller.user()?;
    let id = memory_id(&id)?;
    let synced = api.sync(user).await?;
    let m = memory_row(&api, user, &id).await?;
    let seq = m.seq as u64;
    let anchored = match api.anchors().await? {
        Some(r) => r
            .anchors_for(user)
            .await
            .map_err(Problem::internal)?
            .into_iter()
            .filter(|(p, _)| p.checkpoint.seq.0 >= seq)
            .min_by_key(|(p, _)| (p.checkpoint.seq, p.epoch)),
        None => None,
    };
    let upto = anchored
        .as_ref()
        .map_or(synced.seq, |(p, _)| p.checkpoint.seq.0);
    let leaves: Vec<Hash32> = api
        .views
        .event_hashes(user, upto)
        .await?
        .iter()
        .map(|h| CHAIN_TREE.leaf(h))
        .collect();
    let tree = MerkleTree::from_leaf_hashes(CHAIN_TREE, leaves);
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
    let (checkpoint, epoch, anchor) = match anchored {
        Some((p, r)) => (p.checkpoint.clone(), Some(p), Some(r)),
        None => (
            Checkpoint {
                user: user.clone(),
                seq: Seq(upto),
                head: synced.head,
                root: tree.root(),
            },
            None,
            None,
        ),
    };
    let bundle = ProofBundle {
        inclusion: tree
            .inclusion_proof(seq - 1)
            .ok_or_else(|| Problem::internal("event outside its checkpoint"))?,
        event: stored.event.clone(),
        signer_key,
        origin_key,
        checkpoint,
        epoch,
        anchor,
    };
    let level = bundle
        .verify()
        .map_err(|e| Problem::internal(format!("proof does not verify: {e}")))?;
    Ok(Json(json!({ "level": level, "bundle": bundle })))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(get_proof))
}
