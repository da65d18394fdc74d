//! Processing under consent over REST: the processor registry (admin), what processors do
//! (`/v1/processing/*`, with a processor token: fetch, results, models, their dead
//! letters), and what owners see (`/v1/memories/{id}/lineage`, `/v1/models`, training-set
//! proofs). Processing grants go through `/v1/grants`; erasure through `/v1/erasure`. The
//! same operations over NATS are in `mnemo-processing`'s responder (docs/WORKERS.md).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use mnemo_core::{ModelId, ProcessorId};
use mnemo_processing::ProcessingError;
use mnemo_processing::protocol::{
    FetchRequest, Fetched, ModelRecorded, ModelRequest, Recorded, StaleModels, SubmitRequest,
};
use serde::Deserialize;

use super::S;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, in_range, memory_id};
use super::schema::{
    DeadLettersPage, LineageDoc, ModelView, ModelsPage, ProblemDoc, ProcessorRegistered,
    ProcessorRevoked, ProcessorsPage, QueryAnswer, QueryHit, TrainingProofDoc,
};
use crate::auth::Principal;
use mnemo_wire::problem::{ApiResult, Problem};
use utoipa_axum::{router::OpenApiRouter, routes};

/// How long a processor's token lasts.
pub const PROCESSOR_TOKEN_TTL: u64 = 365 * 24 * 3600;

/// A processing error as a problem (the statuses of docs/WORKERS.md §7).
pub(crate) fn problem(e: ProcessingError) -> Problem {
    let r = mnemo_processing::responder::refusal(&e);
    Problem::new(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        r.slug,
        r.detail,
    )
}

fn admin(caller: &Caller) -> ApiResult<()> {
    match caller.0 {
        Principal::Admin => Ok(()),
        _ => Err(Problem::forbidden("an admin token is required")),
    }
}

fn processor(caller: &Caller) -> ApiResult<&ProcessorId> {
    match &caller.0 {
        Principal::Processor(p) => Ok(p),
        _ => Err(Problem::forbidden("a processor token is required")),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProcessor {
    /// Its name ([A-Za-z0-9_-], at most 64): a NATS subject token.
    name: String,
    /// Its version.
    version: String,
    /// Memory kinds it takes (empty: any a grant covers).
    #[serde(default)]
    consumes: Vec<String>,
    /// Memory kinds it makes.
    #[serde(default)]
    produces: Vec<String>,
}

/// Registers a processor (admin): its signing key pair (the seed is shown here once and
/// stored nowhere) and its API token.
#[utoipa::path(post, path = "/v1/processors", tag = "processing", request_body = NewProcessor, security(("bearer" = [])),
    responses((status = 201, body = ProcessorRegistered), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn register(
    State(api): State<S>,
    caller: Caller,
    ApiJson(p): ApiJson<NewProcessor>,
) -> ApiResult<(StatusCode, Json<ProcessorRegistered>)> {
    admin(&caller)?;
    let name = ProcessorId::new(&p.name).map_err(|e| Problem::bad_request(format!("name: {e}")))?;
    let (proc_, key) = api
        .processing
        .registry
        .register(name.clone(), p.version, p.consumes, p.produces)
        .await
        .map_err(problem)?;
    let token = api.auth.issue_processor(&name, PROCESSOR_TOKEN_TTL);
    // Operator mode: the processor's own NATS account, and credentials that reach only
    // its own subjects.
    let creds = match &api.accounts {
        Some(a) => {
            crate::sync_processor_accounts(a, &api.processing.registry).await?;
            a.processor_creds(name.as_str(), PROCESSOR_TOKEN_TTL as i64)?
        }
        None => None,
    };
    Ok((
        StatusCode::CREATED,
        Json(ProcessorRegistered {
            processor: proc_,
            signing_seed: hex::encode(key.to_bytes()),
            token,
            nats_creds: creds,
            nats_inbox_prefix: mnemo_accounts::claims::processor_inbox(name.as_str()),
        }),
    ))
}

/// The registered processors (admin).
#[utoipa::path(get, path = "/v1/processors", tag = "processing", security(("bearer" = [])),
    responses((status = 200, body = ProcessorsPage), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list(State(api): State<S>, caller: Caller) -> ApiResult<Json<ProcessorsPage>> {
    admin(&caller)?;
    let items = api.processing.registry.list().await.map_err(problem)?;
    Ok(Json(ProcessorsPage { items }))
}

/// Revokes a processor (admin): from now on it is given no task, and every fetch, result
/// and model of it is refused.
#[utoipa::path(delete, path = "/v1/processors/{name}", tag = "processing", security(("bearer" = [])),
    params(("name" = String, Path, description = "processor name", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 200, body = ProcessorRevoked), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn revoke(
    State(api): State<S>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ProcessorRevoked>> {
    admin(&caller)?;
    let name = ProcessorId::new(&name).map_err(|e| Problem::bad_request(format!("name: {e}")))?;
    let p = api
        .processing
        .registry
        .revoke(&name)
        .await
        .map_err(|e| match e {
            ProcessingError::UnknownProcessor(n) => Problem::not_found(format!("no processor {n}")),
            other => problem(other),
        })?;
    // Operator mode: the revocation reaches NATS, so its credentials are refused and its
    // connections closed at once.
    if let Some(a) = &api.accounts {
        crate::sync_processor_accounts(a, &api.processing.registry).await?;
    }
    Ok(Json(ProcessorRevoked { processor: p }))
}

/// A processor fetches an input it was given a task for: checked against the owner's
/// live processing grant and recorded in the owner's chain (`inputs_fetched`) before it
/// is returned.
#[utoipa::path(post, path = "/v1/processing/fetch", tag = "processing", request_body = FetchRequest, security(("bearer" = [])),
    responses((status = 200, body = Fetched), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn fetch(
    State(api): State<S>,
    caller: Caller,
    ApiJson(r): ApiJson<FetchRequest>,
) -> ApiResult<Json<Fetched>> {
    let p = processor(&caller)?;
    Ok(Json(api.processing.fetch(p, &r).await.map_err(problem)?))
}

/// A processor records a result: a `memory_derived` event (idempotent per processor,
/// version and inputs: a repeat answers the original receipt with `duplicate: true`).
#[utoipa::path(post, path = "/v1/processing/results", tag = "processing", request_body = SubmitRequest, security(("bearer" = [])),
    responses((status = 200, body = Recorded), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn submit(
    State(api): State<S>,
    caller: Caller,
    ApiJson(r): ApiJson<SubmitRequest>,
) -> ApiResult<Json<Recorded>> {
    let p = processor(&caller)?;
    Ok(Json(api.processing.submit(p, r).await.map_err(problem)?))
}

/// A processor records a trained model: a `model_trained` event committing to its
/// training set.
#[utoipa::path(post, path = "/v1/processing/models", tag = "processing", request_body = ModelRequest, security(("bearer" = [])),
    responses((status = 200, body = ModelRecorded), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn model(
    State(api): State<S>,
    caller: Caller,
    ApiJson(r): ApiJson<ModelRequest>,
) -> ApiResult<Json<ModelRecorded>> {
    let p = processor(&caller)?;
    Ok(Json(
        api.processing.record_model(p, r).await.map_err(problem)?,
    ))
}

/// A processor's models to retrain: its newest model of each user that an erasure reached,
/// with the erased members to leave out.
#[utoipa::path(get, path = "/v1/processing/stale", tag = "processing", security(("bearer" = [])),
    responses((status = 200, body = StaleModels), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn stale(State(api): State<S>, caller: Caller) -> ApiResult<Json<StaleModels>> {
    let p = processor(&caller)?;
    Ok(Json(api.processing.stale(p).await.map_err(problem)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadQuery {
    /// Only this processor's (admin; a processor sees its own).
    processor: Option<String>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Tasks that failed too often (admin: all or one processor's; a processor: its own).
#[utoipa::path(get, path = "/v1/processing/dead-letters", tag = "processing", params(DeadQuery), security(("bearer" = [])),
    responses((status = 200, body = DeadLettersPage), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn dead_letters(
    State(api): State<S>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DeadQuery>,
) -> ApiResult<Json<DeadLettersPage>> {
    let only = match &caller.0 {
        Principal::Admin => q.processor,
        Principal::Processor(p) => Some(p.to_string()),
        Principal::User(_) => {
            return Err(Problem::forbidden(
                "an admin or processor token is required",
            ));
        }
    };
    let items = mnemo_processing::queue::dead_letters(
        &api.js,
        only.as_deref(),
        in_range("limit", q.limit.unwrap_or(100), 1..=1000)?,
    )
    .await
    .map_err(problem)?;
    Ok(Json(DeadLettersPage { items }))
}

/// A memory's lineage: what it was derived from, what was derived from it, and the
/// closure an erasure of it would reach.
#[utoipa::path(get, path = "/v1/memories/{id}/lineage", tag = "processing", security(("bearer" = [])),
    params(("id" = String, Path, description = "memory id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses((status = 200, body = LineageDoc), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn lineage(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<LineageDoc>> {
    let user = caller.user()?;
    let l = api
        .processing
        .lineage(user, &memory_id(&id)?)
        .await
        .map_err(problem)?;
    Ok(Json(LineageDoc(l)))
}

/// The caller's models, with their staleness.
#[utoipa::path(get, path = "/v1/models", tag = "processing", security(("bearer" = [])),
    responses((status = 200, body = ModelsPage), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn models(State(api): State<S>, caller: Caller) -> ApiResult<Json<ModelsPage>> {
    let user = caller.user()?;
    let items = api
        .processing
        .models
        .of_user(user)
        .await
        .map_err(problem)?
        .into_iter()
        .map(ModelView::from)
        .collect();
    Ok(Json(ModelsPage { items }))
}

/// The proof that a memory is, or is not, in a model's training set (FORMAT.md §15.4):
/// check it offline with `mnemo-audit training-proof`.
#[utoipa::path(get, path = "/v1/models/{id}/training-set/{memory}", tag = "processing", security(("bearer" = [])),
    params(("id" = String, Path, description = "model id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$"), ("memory" = String, Path, description = "memory id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses((status = 200, body = TrainingProofDoc), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn training_proof(
    State(api): State<S>,
    caller: Caller,
    ApiPath((id, memory)): ApiPath<(String, String)>,
) -> ApiResult<Json<TrainingProofDoc>> {
    let user = caller.user()?;
    let model = ModelId::from_hex(&id)
        .map_err(|_| Problem::bad_request("model ids are 32 hex characters"))?;
    let p = api
        .processing
        .training_proof(user, &model, &memory_id(&memory)?)
        .await
        .map_err(problem)?;
    Ok(Json(TrainingProofDoc {
        user: user.clone(),
        model,
        proof: p,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelQuery {
    /// The query text.
    q: String,
    /// At most this many answers (default 10).
    #[param(minimum = 1, maximum = 100)]
    k: Option<usize>,
}

/// Answers a query from one of the caller's models (`latest`: their newest search model):
/// the memories it drew on, best first, each with its training-set proof's address.
/// A stale model (an erasure reached it) answers 410 `model-stale`: its artifact is gone.
#[utoipa::path(get, path = "/v1/models/{id}/query", tag = "processing", params(("id" = String, Path, description = "model id (32 hex characters), or `latest`", pattern = "^([0-9a-fA-F]{32}|latest)$"), ModelQuery), security(("bearer" = [])),
    responses((status = 200, body = QueryAnswer), (status = "4XX", description = "refused", body = ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = ProblemDoc, content_type = "application/problem+json")))]
async fn query(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ModelQuery>,
) -> ApiResult<Json<QueryAnswer>> {
    let user = caller.user()?;
    let model = match id.as_str() {
        "latest" => None,
        id => Some(
            ModelId::from_hex(id)
                .map_err(|_| Problem::bad_request("model ids are 32 hex characters or latest"))?,
        ),
    };
    let (searched, hits) = api
        .processing
        .query(
            user,
            model.as_ref(),
            &q.q,
            in_range("k", q.k.unwrap_or(10), 1..=100)?,
        )
        .await
        .map_err(problem)?;
    let m = &searched.model;
    let hits = hits
        .into_iter()
        .map(|h| QueryHit {
            proof: format!("/v1/models/{}/training-set/{}", m.id, h.memory),
            memory: h.memory,
            seq: h.seq,
            event_hash: h.event_hash,
            score: h.score,
            matched: h.matched,
        })
        .collect();
    Ok(Json(QueryAnswer {
        model: m.id,
        seq: m.seq,
        set_root: m.set_root,
        set_count: m.set_count,
        processor: m.processor.clone(),
        version: m.version.clone(),
        query: q.q,
        hits,
    }))
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(revoke))
        .routes(routes!(fetch))
        .routes(routes!(submit))
        .routes(routes!(model))
        .routes(routes!(stale))
        .routes(routes!(dead_letters))
        .routes(routes!(lineage))
        .routes(routes!(models))
        .routes(routes!(training_proof))
        .routes(routes!(query))
}
