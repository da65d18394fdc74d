//! `GET /v1/access-log`: who read the caller's memories (other users and processors),
//! when, under which grant.

use axum::Json;
use axum::extract::State;

use super::S;
use super::extract::Caller;
use super::schema::{AccessEntry, AccessLog, AccessorKind, AskedQuestion};
use mnemo_projections::Accessor;
use mnemo_wire::problem::ApiResult;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Who read the caller's memories, when, under which grant: other users' reads and
/// processors' fetches.
#[utoipa::path(get, path = "/v1/access-log", tag = "grants", security(("bearer" = [])),
    responses((status = 200, body = super::schema::AccessLog), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn access_log(State(api): State<S>, caller: Caller) -> ApiResult<Json<AccessLog>> {
    let user = caller.user()?;
    api.sync(user).await?;
    let rows = api.views.access_log(user, 1000).await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let question = match r.question {
            Some(id) => Some(AskedQuestion {
                id,
                text: question_text(&api, user, r.seq).await?,
            }),
            None => None,
        };
        items.push(AccessEntry {
            seq: r.seq,
            accessor_kind: match r.accessor {
                Accessor::User(_) => AccessorKind::User,
                Accessor::Processor(_) => AccessorKind::Processor,
            },
            accessor: r.accessor.id().to_owned(),
            grant: r.grant,
            action: r.action,
            memories: r.memories,
            at: r.at,
            question,
        });
    }
    Ok(Json(AccessLog { items }))
}

/// The text of the question recorded at `seq` (sealed in the chain); `None` once erased.
async fn question_text(
    api: &super::Api,
    owner: &mnemo_core::UserId,
    seq: u64,
) -> ApiResult<Option<String>> {
    let events = api.ledger.events(owner, mnemo_core::Seq(seq), 1).await?;
    let Some(e) = events.first() else {
        return Ok(None);
    };
    match api.ledger.open_memory(e).await {
        Ok(m) => Ok(Some(String::from_utf8_lossy(&m.content).into_owned())),
        Err(mnemo_ledger::LedgerError::Erased(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(access_log))
}
