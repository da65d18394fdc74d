//! `POST /v1/erasure`: crypto-shredding of one memory or of everything.

use axum::Json;
use axum::extract::State;
use mnemo_ledger::LedgerError;
use serde::Deserialize;

use super::S;
use super::extract::{ApiJson, Caller, memory_id};
use super::memories::memory_row;
use super::schema::ErasureReceipt;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Erasure {
    memory: Option<String>,
    /// Why (recorded in the erasure event when derived memories go with it).
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    all: bool,
}

/// Crypto-shreds one memory (`{"memory": id, "reason"?: text}`), with every memory derived
/// from it (its lineage closure), or all (`{"all": true}`); models trained on any of them
/// are marked stale.
#[utoipa::path(post, path = "/v1/erasure", tag = "memories", request_body = Erasure, security(("bearer" = [])),
    responses((status = 200, body = super::schema::ErasureReceipt), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn erase(
    State(api): State<S>,
    caller: Caller,
    ApiJson(e): ApiJson<Erasure>,
) -> ApiResult<Json<ErasureReceipt>> {
    let user = caller.user()?;
    let erased = match (e.memory, e.all) {
        (Some(m), false) => {
            let id = memory_id(&m)?;
            api.sync(user).await?;
            // A question asked under a grant: its text is shredded like a memory's.
            if api.ledger.with_rules(user, |s| s.is_question(&id)).await? {
                let r = api
                    .ledger
                    .erase(user, mnemo_core::ErasureTarget::Memory(id))
                    .await?;
                return Ok(Json(ErasureReceipt {
                    seq: r.seq.0,
                    event_hash: r.hash,
                    closure: Vec::new(),
                    stale_models: Vec::new(),
                }));
            }
            let m = memory_row(&api, user, &id).await?;
            if m.erased {
                return Err(LedgerError::Erased(id).into());
            }
            let reason = e.reason.unwrap_or_default();
            api.processing
                .erase(user, &id, &reason)
                .await
                .map_err(super::processing::problem)?
        }
        (None, true) => api
            .processing
            .erase_all(user)
            .await
            .map_err(super::processing::problem)?,
        _ => {
            return Err(Problem::bad_request(
                "give either {\"memory\": \"<id>\"} or {\"all\": true}",
            ));
        }
    };
    Ok(Json(ErasureReceipt {
        seq: erased.seq,
        event_hash: erased.event_hash,
        closure: erased.closure,
        stale_models: erased.stale_models,
    }))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(erase))
}
