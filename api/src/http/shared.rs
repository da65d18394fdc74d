//! A grantee's reads of another user's memories: `GET /v1/users/{owner}/memories[/{id}
//! [/content]]`.
//!
//! The views give candidates (an SQL pre-filter, `Views::shared_candidates`); core's access
//! rule (`mnemo_core::Grant::allows`) decides each one, and picks the grant it is read
//! under (the lowest id that allows it). The read is recorded in the owner's chain
//! (`access_recorded`, one per grant used) on top of the head the decision was made at,
//! before anything is returned; if the chain moved meanwhile, the decision is made again.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use mnemo_core::{AccessAction, EventBody, Grant, GrantId, MemoryId, TimestampMs, grant};
use mnemo_ledger::LedgerError;
use std::sync::atomic::Ordering;

use super::extract::{ApiPath, ApiQuery, Caller, memory_id, user_id};
use super::memories::{ListQuery, MemoryView, content_response, page_limit};
use super::{Api, S};
use crate::clock::now_ms;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// What one decision allowed.
pub(crate) struct Allowed {
    items: Vec<(MemoryView, GrantId)>,
    /// A live grant of the caller for this action (the one a read that matched nothing is
    /// recorded under).
    any_grant: GrantId,
    /// Whether the candidates filled the page.
    full: bool,
}

/// Reads `owner`'s memories under the caller's grants, records the access in `owner`'s
/// chain, then returns what was read.
async fn shared_read(
    api: &Api,
    caller: &Caller,
    owner: &str,
    q: &ListQuery,
    memory: Option<&MemoryId>,
    action: AccessAction,
) -> ApiResult<(Vec<MemoryView>, bool)> {
    let me = caller.user()?;
    let owner = user_id(owner)?;
    if owner == *me {
        return Err(Problem::bad_request(
            "these endpoints are for reading another user's memories; use /v1/memories",
        ));
    }
    let limit = if memory.is_some() {
        1
    } else {
        page_limit(q.limit)?
    };
    let content = action == AccessAction::ReadContent;
    let filter = q.filter()?;
    for _ in 0..8 {
        // Unknown owner and no grant look the same: nothing about the owner leaks.
        match api.sync(&owner).await {
            Ok(_) => {}
            Err(p) if p.status == StatusCode::NOT_FOUND => {
                return Err(Problem::forbidden("no live grant allows this"));
            }
            Err(p) => return Err(p),
        }
        // Grants are taken as lapsed this margin before their expiry, so that the access
        // record, written a moment after the decision, is still inside the grant. A time
        // capsule must be open now: the record's time is later still.
        let now = TimestampMs(now_ms());
        let at = TimestampMs(now.0 + api.cfg.expiry_margin.as_millis() as i64);
        let c = api
            .views
            .shared_candidates(&owner, me, &filter, memory, content, at.0, limit)
            .await?;
        let Some(allowed) = decide(&c.grants, me, action, (now, at), c.items, c.full) else {
            return Err(not_allowed(&c.grants, me, action, now));
        };
        if memory.is_some() && allowed.items.is_empty() {
            return Err(Problem::not_found("no such memory under your grants"));
        }
        // One access record per grant used (a list that matched nothing is still a read).
        let mut by_grant: Vec<(GrantId, Vec<MemoryId>)> = Vec::new();
        for (m, g) in &allowed.items {
            match by_grant.iter_mut().find(|(x, _)| x == g) {
                Some((_, ms)) => ms.push(m.id),
                None => by_grant.push((*g, vec![m.id])),
            }
        }
        if by_grant.is_empty() {
            by_grant.push((allowed.any_grant, Vec::new()));
        }
        let mut head = c.head;
        let mut moved = false;
        for (grant, memories) in by_grant {
            let body = EventBody::AccessRecorded {
                accessor: me.clone(),
                grant,
                action,
                memories,
            };
            match api.ledger.append_event_after(&owner, body, head).await {
                Ok(r) => {
                    api.stats.accesses.fetch_add(1, Ordering::Relaxed);
                    head = r.hash;
                }
                Err(LedgerError::HeadMoved(_)) => {
                    moved = true;
                    break;
                }
                // The chain's own grant state does not allow it (the view said otherwise):
                // nothing is served and nothing was recorded.
                Err(LedgerError::Refused(e)) => {
                    tracing::warn!(owner = %owner, error = %e, "the chain refused an access the view allowed");
                    return Err(Problem::forbidden(
                        "no live grant in the owner's chain allows this",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if moved {
            continue;
        }
        let full = allowed.full;
        return Ok((allowed.items.into_iter().map(|(m, _)| m).collect(), full));
    }
    Err(Problem::unavailable("the owner's chain is busy; retry"))
}

/// Why nothing is served: a 403 that says when a time capsule opens, if that is all that
/// stands in the way (the caller holds the grant: its terms are theirs to know).
pub(crate) fn not_allowed(
    grants: &[Grant],
    me: &mnemo_core::UserId,
    action: AccessAction,
    at: TimestampMs,
) -> Problem {
    let opens = grants
        .iter()
        .filter(|g| g.live_for(me, action, at) == Err(grant::Refusal::NotYetOpen))
        .filter_map(|g| g.not_before)
        .min();
    match opens {
        Some(t) => Problem::forbidden(format!(
            "your grant is a time capsule: it opens at {} ms since the Unix epoch, and nothing is served before",
            t.0
        )),
        None => Problem::forbidden("no live grant allows this"),
    }
}

/// Core's access rule over the candidates: `None` when no grant of the caller is live for
/// `action` at `at` (and open at `now`); otherwise each candidate some grant allows, with
/// that grant.
pub(crate) fn decide(
    grants: &[Grant],
    me: &mnemo_core::UserId,
    action: AccessAction,
    (now, at): (TimestampMs, TimestampMs),
    candidates: Vec<mnemo_projections::MemoryRow>,
    full: bool,
) -> Option<Allowed> {
    let live: Vec<&Grant> = grants
        .iter()
        .filter(|g| g.serves(me, action, now, at))
        .collect();
    let any_grant = live.iter().map(|g| g.id).min()?;
    let mut items = Vec::with_capacity(candidates.len());
    for m in candidates {
        match grant::first_allowing(live.iter().copied(), me, action, &m.facts(), at) {
            Some(g) => {
                let id = g.id;
                items.push((MemoryView::from(m), id));
            }
            None => tracing::debug!(memory = %m.id, "candidate refused by the access rule"),
        }
    }
    Some(Allowed {
        items,
        any_grant,
        full,
    })
}

/// Another user's memories under the caller's live grants (recorded in their chain first).
#[utoipa::path(get, path = "/v1/users/{owner}/memories", tag = "shared", security(("bearer" = [])),
    params(("owner" = String, Path, description = "the owner's user id", pattern = "^[A-Za-z0-9_-]{1,64}$"), ListQuery),
    responses((status = 200, body = super::schema::MemoryPage), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn shared_list(
    State(api): State<S>,
    caller: Caller,
    ApiPath(owner): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<super::schema::MemoryPage>> {
    let (items, full) = shared_read(&api, &caller, &owner, &q, None, AccessAction::List).await?;
    // The cursor follows the candidates' page, so a candidate the rule refused does not end
    // the listing early.
    let next = full.then(|| items.last().map(|m| m.seq)).flatten();
    Ok(Json(super::schema::MemoryPage {
        items,
        next_cursor: next,
    }))
}

/// One memory of `owner` read under the caller's grants (recorded as `action`).
async fn shared_one(
    api: &Api,
    caller: &Caller,
    owner: &str,
    id: &str,
    action: AccessAction,
) -> ApiResult<MemoryView> {
    let id = memory_id(id)?;
    shared_read(api, caller, owner, &ListQuery::default(), Some(&id), action)
        .await?
        .0
        .pop()
        .ok_or_else(|| Problem::not_found("no such memory under your grants"))
}

/// One of another user's memories under a grant (recorded first).
#[utoipa::path(get, path = "/v1/users/{owner}/memories/{id}", tag = "shared", security(("bearer" = [])),
    params(("owner" = String, Path, description = "the owner's user id", pattern = "^[A-Za-z0-9_-]{1,64}$"), ("id" = String, Path, description = "memory id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses((status = 200, body = MemoryView), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn shared_get(
    State(api): State<S>,
    caller: Caller,
    ApiPath((owner, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<MemoryView>> {
    shared_one(&api, &caller, &owner, &id, AccessAction::ReadMetadata)
        .await
        .map(Json)
}

/// The content of another user's memory under a grant with the content capability.
#[utoipa::path(get, path = "/v1/users/{owner}/memories/{id}/content", tag = "shared", security(("bearer" = [])),
    params(("owner" = String, Path, description = "the owner's user id", pattern = "^[A-Za-z0-9_-]{1,64}$"), ("id" = String, Path, description = "memory id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses((status = 200, description = "the content, in the memory's own content type (any)", content_type = "*/*", body = Vec<u8>), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn shared_content(
    State(api): State<S>,
    caller: Caller,
    ApiPath((owner, id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let m = shared_one(&api, &caller, &owner, &id, AccessAction::ReadContent).await?;
    content_response(&api, &user_id(&owner)?, &m).await
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(shared_list))
        .routes(routes!(shared_get))
        .routes(routes!(shared_content))
}
