//! Questions to another user's model under a grant with the ask capability:
//! `POST /v1/users/{owner}/ask`.
//!
//! Core's rule picks the grant (the lowest id live for the asker with `ask`, open now);
//! the owner's model answers; only the memories that grant covers are cited (the view's
//! rows decide with `Grant::allows`, so an erased memory is never cited, even by a model
//! trained before the erasure). The question is recorded in the owner's chain
//! (`question_asked`, its text sealed like a memory's) before the answer is returned; a
//! retry with the same `Idempotency-Key` gets the recorded answer, and nothing is recorded
//! twice.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use mnemo_core::{AccessAction, EventBody, Grant, GrantId, MemoryId, ModelId, TimestampMs};
use mnemo_ledger::{LedgerError, NewQuestion};
use mnemo_projections::GrantRole;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

use super::extract::{ApiJson, ApiPath, Caller, in_range, user_id};
use super::{Api, S};
use crate::clock::now_ms;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// How many characters of a cited memory's text an answer shows (with content).
const SNIPPET_CHARS: usize = 280;

/// A question.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Question {
    /// The question (1 to 4096 bytes).
    #[schema(min_length = 1, max_length = 4096)]
    q: String,
    /// How many memories the answer may cite (1 to 20; default 5).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 20)]
    k: Option<u32>,
}

/// One memory an answer cites.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Citation {
    /// The memory (hex).
    #[schema(value_type = String)]
    pub memory: MemoryId,
    /// Its event's seq in the owner's chain.
    pub seq: u64,
    /// The model's score (higher is better); absent in a retry's answer.
    pub score: Option<f64>,
    /// Where its training-set proof is served (to the owner).
    pub proof: String,
    /// The start of its text, when the grant includes content and the memory is text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

/// An answer, recorded in the owner's chain before it was returned.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Answer {
    /// The question's id in the owner's chain (hex).
    #[schema(value_type = String)]
    pub question: MemoryId,
    /// The seq of its `question_asked` event.
    pub seq: u64,
    /// The grant it was asked under (hex).
    #[schema(value_type = String)]
    pub grant: GrantId,
    /// The model that answered (hex).
    #[schema(value_type = String)]
    pub model: ModelId,
    /// The memories cited, best first (in a retry's answer: in id order).
    pub citations: Vec<Citation>,
    /// A retry: the first answer's record, nothing recorded now.
    pub duplicate: bool,
}

/// Asks `owner`'s model a question under the caller's grant with `ask`. Recorded in the
/// owner's chain first; only memories the grant covers are cited; snippets only with the
/// content capability.
#[utoipa::path(post, path = "/v1/users/{owner}/ask", tag = "shared", security(("bearer" = [])),
    params(("owner" = String, Path, description = "the owner's user id", pattern = "^[A-Za-z0-9_-]{1,64}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "makes a retry safe: the recorded answer, nothing recorded twice")),
    request_body = Question,
    responses((status = 200, body = Answer), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn ask(
    State(api): State<S>,
    caller: Caller,
    ApiPath(owner): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(question): ApiJson<Question>,
) -> ApiResult<Json<Answer>> {
    let me = caller.user()?.clone();
    let owner = user_id(&owner)?;
    if owner == me {
        return Err(Problem::bad_request(
            "ask another user's model; your own is GET /v1/models/latest/query",
        ));
    }
    let k = in_range("k", question.k.unwrap_or(5), 1..=20)? as usize;
    if question.q.is_empty() || question.q.len() > mnemo_ledger::MAX_QUESTION_BYTES {
        return Err(Problem::bad_request("q is 1 to 4096 bytes"));
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| mnemo_ledger::is_idempotency_key(k))
                .map(str::to_owned)
                .ok_or_else(|| {
                    Problem::bad_request(
                        "Idempotency-Key must be 1 to 128 visible ASCII characters",
                    )
                })
        })
        .transpose()?;
    // No wait for the views to reach the owner's head on the way to an answer: the grants
    // and rows they give only pre-decide, and the chain's own rules decide again as the
    // question is recorded (a revocation or an erasure that landed is refused there). Only
    // a refusal waits for them (a grant given a moment ago is then found). An unknown
    // owner has no grants: it looks like no grant, and nothing about it leaks.
    let now = TimestampMs(now_ms());
    let at = TimestampMs(now.0 + api.cfg.expiry_margin.as_millis() as i64);
    let mut synced = false;
    let grant = loop {
        let grants: Vec<Grant> = api
            .views
            .grants(&me, GrantRole::Grantee)
            .await?
            .into_iter()
            .filter(|r| r.owner == owner)
            .map(|r| r.grant)
            .collect();
        if let Some(g) = grants
            .iter()
            .filter(|g| g.serves(&me, AccessAction::Ask, now, at))
            .min_by_key(|g| g.id)
        {
            break g.clone();
        }
        if synced {
            return Err(super::shared::not_allowed(
                &grants,
                &me,
                AccessAction::Ask,
                now,
            ));
        }
        match api.sync(&owner).await {
            Ok(_) => synced = true,
            Err(p) if p.status == axum::http::StatusCode::NOT_FOUND => {
                return Err(Problem::forbidden("no live grant allows this"));
            }
            Err(p) => return Err(p),
        }
    };
    // The model sees the question and the owner, never the asker.
    let (searched, hits) = api
        .processing
        .query(&owner, None, &question.q, (4 * k).min(100))
        .await
        .map_err(super::processing::problem)?;
    let model = &searched.model;
    let ids: Vec<MemoryId> = hits.iter().map(|h| h.memory).collect();
    let rows = api.views.memories_by_id(&owner, &ids).await?;
    let covered = |m: &MemoryId| {
        rows.iter()
            .find(|r| r.id == *m)
            .is_some_and(|r| grant.allows(&me, AccessAction::Ask, &r.facts(), at).is_ok())
    };
    let cited: Vec<_> = hits
        .into_iter()
        .filter(|h| covered(&h.memory))
        .take(k)
        .collect();
    let receipt = api
        .ledger
        .append_question(
            &owner,
            NewQuestion {
                asker: me.clone(),
                grant: grant.id,
                model: model.id,
                cited: cited.iter().map(|h| h.memory).collect(),
                text: question.q,
                idempotency_key,
            },
        )
        .await
        .map_err(|e| match e {
            // The chain's own state refused (a revocation or an erasure landed meanwhile):
            // nothing was recorded and nothing is answered.
            LedgerError::Refused(e) => {
                tracing::warn!(%owner, error = %e, "the chain refused a question the view allowed");
                Problem::forbidden(format!(
                    "the owner's chain refuses this question ({}): nothing was recorded",
                    e.code()
                ))
            }
            other => other.into(),
        })?;
    api.stats.accesses.fetch_add(1, Ordering::Relaxed);
    let proof = |m: &MemoryId, model: &ModelId| format!("/v1/models/{model}/training-set/{m}");
    if receipt.duplicate {
        // A retry: the answer the record holds.
        let e = api.ledger.events(&owner, receipt.seq, 1).await?;
        let Some(EventBody::QuestionAsked {
            question,
            grant,
            model,
            cited,
            ..
        }) = e.first().map(|e| e.event.body.clone())
        else {
            return Err(Problem::internal(
                "a question's receipt names another event",
            ));
        };
        let rows = api.views.memories_by_id(&owner, &cited).await?;
        let mut citations = Vec::with_capacity(cited.len());
        for m in &cited {
            let seq = rows.iter().find(|r| r.id == *m).map_or(0, |r| r.seq);
            citations.push(Citation {
                memory: *m,
                seq,
                score: None,
                proof: proof(m, &model),
                snippet: None,
            });
        }
        return Ok(Json(Answer {
            question,
            seq: receipt.seq.0,
            grant,
            model,
            citations,
            duplicate: true,
        }));
    }
    let EventBody::QuestionAsked { question: qid, .. } = api
        .ledger
        .events(&owner, receipt.seq, 1)
        .await?
        .first()
        .map(|e| e.event.body.clone())
        .ok_or_else(|| Problem::internal("a question's receipt names no event"))?
    else {
        return Err(Problem::internal(
            "a question's receipt names another event",
        ));
    };
    let mut citations = Vec::with_capacity(cited.len());
    for h in cited {
        let snippet = if grant.capabilities.content {
            snippet(&api, &owner, h.seq).await
        } else {
            None
        };
        citations.push(Citation {
            proof: proof(&h.memory, &model.id),
            memory: h.memory,
            seq: h.seq,
            score: Some(h.score),
            snippet,
        });
    }
    Ok(Json(Answer {
        question: qid,
        seq: receipt.seq.0,
        grant: grant.id,
        model: model.id,
        citations,
        duplicate: false,
    }))
}

/// The start of a text memory's content (none for other media, or if it does not open).
async fn snippet(api: &Api, owner: &mnemo_core::UserId, seq: u64) -> Option<String> {
    let events = api
        .ledger
        .events(owner, mnemo_core::Seq(seq), 1)
        .await
        .ok()?;
    let opened = api.ledger.open_memory(events.first()?).await.ok()?;
    if !opened.record.content_type.starts_with("text/") {
        return None;
    }
    Some(
        String::from_utf8_lossy(&opened.content)
            .chars()
            .take(SNIPPET_CHARS)
            .collect(),
    )
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(ask))
}
