//! A user's own memories: `POST /v1/memories` (JSON text or a streamed binary upload),
//! `GET /v1/memories` (listing and search), `GET /v1/memories/{id}` and its `/content`.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mnemo_core::{MemoryId, Seq, TimestampMs, UserId};
use mnemo_ledger::{LedgerError, NewMemory};
use mnemo_projections::{MemoryFilter, MemoryRow};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, in_range, memory_id};
use super::{Api, S};
use mnemo_wire::problem::{ApiResult, Problem};
use mnemo_wire::{IngestReceipt, MemoryMeta};
use utoipa_axum::{router::OpenApiRouter, routes};

/// A text memory.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TextMemory {
    /// `note` if absent.
    #[serde(default)]
    kind: Option<String>,
    text: String,
    #[serde(default)]
    tags: Vec<String>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    captured_at: Option<i64>,
    #[serde(default)]
    source: Option<String>,
}

#[cfg(feature = "fuzzing")]
impl TextMemory {
    /// The record the ledger would commit to (for the fuzz targets).
    pub(crate) fn record(&self) -> mnemo_core::MemoryRecord {
        let m = MemoryMeta {
            kind: self.kind.clone(),
            tags: self.tags.clone(),
            captured_at: self.captured_at,
            source: self.source.clone(),
        }
        .text(self.text.clone());
        mnemo_core::MemoryRecord {
            kind: m.kind,
            tags: m.tags,
            captured_at: m.captured_at,
            source: m.source,
            content_type: m.content_type,
            content: mnemo_core::Content::Inline {
                bytes: m.content.to_vec(),
            },
        }
    }
}

/// Metadata of a binary upload, in the query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadMeta {
    kind: Option<String>,
    /// Comma-separated.
    tags: Option<String>,
    captured_at: Option<i64>,
    source: Option<String>,
}

/// Ingests a memory: a JSON text memory, or a binary upload (any other content type, with
/// its metadata in the query string) streamed into the object store. `Idempotency-Key`
/// makes a retry safe; the same key with another request is refused (422).
#[utoipa::path(post, path = "/v1/memories", tag = "memories", security(("bearer" = [])),
    params(UploadMeta, ("Idempotency-Key" = Option<String>, Header, description = "makes a retry safe")),
    request_body(content((TextMemory = "application/json"), (Vec<u8> = "application/octet-stream")), description = "a text memory, or the bytes of an upload"),
    responses((status = 201, body = IngestReceipt, description = "written"), (status = 200, body = IngestReceipt, description = "a retry: the original receipt"), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn ingest(State(api): State<S>, caller: Caller, req: Request) -> ApiResult<Response> {
    let user = caller.user()?;
    let idem = req
        .headers()
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| Problem::bad_request("Idempotency-Key must be visible ASCII"))
        })
        .transpose()?;
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let r = if is_json {
        // A text memory may be as large as an upload.
        let limit = api.cfg.max_upload.max(api.cfg.max_json);
        let ApiJson(t) = ApiJson::<TextMemory>::read(req, &api, Some(limit)).await?;
        let meta = MemoryMeta {
            kind: t.kind,
            tags: t.tags,
            captured_at: t.captured_at,
            source: t.source,
        };
        let m = NewMemory {
            capture: idem.as_deref().map(|k| rest_capture(&api, user, k)),
            idempotency_key: idem,
            ..meta.text(t.text)
        };
        api.ledger.append(user, m).await.map_err(key_reused(user))?
    } else {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let limit = api.cfg.max_upload;
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("uploads are limited to {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        if declared == Some(0) {
            return Err(Problem::bad_request("empty upload"));
        }
        let (mut parts, body) = req.into_parts();
        let ApiQuery(meta) = ApiQuery::<UploadMeta>::from_request_parts(&mut parts, &api).await?;
        // The body streams into the ledger, which encrypts it chunk by chunk into the
        // object store: an upload is never held in memory whole.
        let mut body = body
            .into_data_stream()
            .map(|r| r.map_err(std::io::Error::other));
        let first = loop {
            match body.next().await {
                Some(Ok(b)) if b.is_empty() => continue,
                Some(Ok(b)) => break b,
                Some(Err(e)) => return Err(Problem::bad_request(format!("reading the body: {e}"))),
                None => return Err(Problem::bad_request("empty upload")),
            }
        };
        let meta = MemoryMeta {
            kind: meta.kind,
            tags: meta
                .tags
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            captured_at: meta.captured_at,
            source: meta.source,
        };
        let m = NewMemory {
            capture: idem.as_deref().map(|k| rest_capture(&api, user, k)),
            idempotency_key: idem,
            ..meta.upload("file", content_type)
        };
        let content = futures::stream::iter([Ok(first)]).chain(body);
        // Boxed: the JSON path's future (allocated per request) stays small.
        match Box::pin(api.ledger.append_stream(user, m, content, limit)).await {
            Err(LedgerError::PayloadTooLarge { .. }) => return Err(too_large()),
            r => r.map_err(key_reused(user))?,
        }
    };
    let status = if r.duplicate {
        StatusCode::OK
    } else {
        api.stats.ingested.fetch_add(1, Ordering::Relaxed);
        StatusCode::CREATED
    };
    Ok((status, Json(IngestReceipt::of(r))).into_response())
}

/// The capture stream an `Idempotency-Key` of `POST /v1/memories` names its memory in.
pub const REST_CAPTURE_STREAM: &str = "api";

/// The capture a REST `Idempotency-Key` names: kept in the chain for as long as the chain
/// lives (docs/FORMAT.md §8), so a retry after any delay answers the first receipt and
/// never appends twice.
fn rest_capture(api: &Api, user: &UserId, key: &str) -> mnemo_core::Capture {
    api.ledger
        .capture_for_key(user, REST_CAPTURE_STREAM.into(), key)
}

/// A capture id reused with other content is, over REST, the key reused.
fn key_reused(user: &UserId) -> impl Fn(LedgerError) -> LedgerError + '_ {
    move |e| match e {
        LedgerError::CaptureReused { .. } => LedgerError::IdempotencyKeyReused(user.clone()),
        other => other,
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    tag: Option<String>,
    kind: Option<String>,
    /// Captured at or after (ms since the epoch, years 1 to 9999).
    #[param(minimum = -62135596800000_i64, maximum = 253402300799999_i64)]
    from: Option<i64>,
    /// Captured before (ms since the epoch, years 1 to 9999).
    #[param(minimum = -62135596800000_i64, maximum = 253402300799999_i64)]
    until: Option<i64>,
    /// Full-text query (web search syntax).
    q: Option<String>,
    /// From a previous page's `next_cursor`.
    #[param(minimum = 0)]
    cursor: Option<i64>,
    /// Memories per page (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub(crate) limit: Option<i64>,
}

/// A memory's metadata as the API shows it. An erased memory shows only what its chain
/// shows (`id`, `seq`, `ingested_at`, `erased`): the other members belonged to the record
/// whose key was destroyed, and are absent.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MemoryView {
    #[schema(value_type = String)]
    pub(crate) id: MemoryId,
    pub(crate) seq: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    captured_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<String>,
    /// The event's time (ms).
    ingested_at: i64,
    pub(crate) erased: bool,
    /// A processor's result (`memory_derived`, with its lineage at
    /// `/v1/memories/{id}/lineage`), not a memory the owner gave.
    derived: bool,
}

impl From<MemoryRow> for MemoryView {
    fn from(m: MemoryRow) -> Self {
        let live = !m.erased;
        Self {
            id: m.id,
            seq: m.seq as i64,
            kind: live.then_some(m.kind),
            tags: live.then_some(m.tags),
            captured_at: m.captured_at.filter(|_| live),
            source: m.source.filter(|_| live),
            content_type: live.then_some(m.content_type),
            size: live.then_some(m.size),
            storage: live.then_some(m.storage),
            ingested_at: m.ingested_at,
            erased: m.erased,
            derived: m.derived,
        }
    }
}

impl ListQuery {
    /// The view's filter for this query; refuses times outside the format's range and text
    /// with U+0000 (docs/FORMAT.md §4.5), which no memory can match.
    pub(crate) fn filter(&self) -> ApiResult<MemoryFilter> {
        for (name, t) in [("from", self.from), ("until", self.until)] {
            if t.is_some_and(|t| !TimestampMs(t).is_valid()) {
                return Err(Problem::bad_request(format!(
                    "{name} must be a time from {} to {} (ms since the epoch)",
                    TimestampMs::MIN_VALID.0,
                    TimestampMs::MAX_VALID.0
                )));
            }
        }
        for (name, v) in [("tag", &self.tag), ("kind", &self.kind), ("q", &self.q)] {
            if v.as_deref()
                .is_some_and(|v| !mnemo_core::values::text_ok(v))
            {
                return Err(Problem::bad_request(format!(
                    "{name} must not contain U+0000"
                )));
            }
        }
        if self.cursor.is_some_and(|c| c < 0) {
            return Err(Problem::bad_request("cursor must not be negative"));
        }
        Ok(MemoryFilter {
            tag: self.tag.clone(),
            kind: self.kind.clone(),
            from: self.from,
            until: self.until,
            q: self.q.clone(),
            before_seq: self.cursor.map(|c| c as u64),
        })
    }
}

pub(crate) fn page_limit(l: Option<i64>) -> ApiResult<i64> {
    in_range("limit", l.unwrap_or(50), 1..=500)
}

/// Lists and searches one's memories, newest first.
#[utoipa::path(get, path = "/v1/memories", tag = "memories", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = super::schema::MemoryPage), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn list_memories(
    State(api): State<S>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<super::schema::MemoryPage>> {
    let user = caller.user()?;
    let limit = page_limit(q.limit)?;
    api.sync(user).await?;
    let items: Vec<MemoryView> = api
        .views
        .memories(user, &q.filter()?, limit)
        .await?
        .into_iter()
        .map(MemoryView::from)
        .collect();
    let next = (items.len() as i64 == limit).then(|| items.last().map(|m| m.seq));
    Ok(Json(super::schema::MemoryPage {
        items,
        next_cursor: next.flatten(),
    }))
}

/// One of `user`'s memories from the view (after the barrier).
pub(crate) async fn memory_row(api: &Api, user: &UserId, id: &MemoryId) -> ApiResult<MemoryView> {
    api.views
        .memory(user, id)
        .await?
        .map(MemoryView::from)
        .ok_or_else(|| Problem::not_found(format!("no memory {id}")))
}

/// A memory's metadata.
#[utoipa::path(get, path = "/v1/memories/{id}", tag = "memories", security(("bearer" = [])),
    params(("id" = String, Path, description = "memory id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses((status = 200, body = MemoryView), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn get_memory(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<MemoryView>> {
    let user = caller.user()?;
    let id = memory_id(&id)?;
    api.sync(user).await?;
    Ok(Json(memory_row(&api, user, &id).await?))
}

/// A memory's content, decrypted and checked by the ledger as it streams out: large content
/// is never held whole. The first piece is read before answering, so a missing object or a
/// bad first chunk is a problem response; a later failure cuts the body short of its
/// `Content-Length` (the ledger holds back the last piece until the whole matched the
/// chain's hash), which no client takes for a complete answer.
pub(crate) async fn content_response(
    api: &Api,
    user: &UserId,
    m: &MemoryView,
) -> ApiResult<Response> {
    if m.erased {
        return Err(LedgerError::Erased(m.id).into());
    }
    let events = api.ledger.events(user, Seq(m.seq as u64), 1).await?;
    let stored = events
        .first()
        .ok_or_else(|| Problem::internal("view names an event the chain lacks"))?;
    let opened = api.ledger.open_memory_stream(stored).await?;
    let mut content = opened.content;
    let first = match content.next().await {
        Some(Ok(piece)) => piece,
        Some(Err(e)) => return Err(mnemo_ledger::content_error(&opened.memory, e).into()),
        None => Bytes::new(),
    };
    let memory = opened.memory;
    let rest = content.inspect(move |r| {
        if let Err(e) = r {
            tracing::error!(%memory, error = %e, "content stream failed; response cut short");
        }
    });
    let mut r = Body::from_stream(futures::stream::iter([Ok(first)]).chain(rest)).into_response();
    let h = r.headers_mut();
    h.extend(served_headers(&opened.record.content_type, &m.id));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(opened.size));
    Ok(r)
}

/// How user content is served, so that it can never run as part of the API's (or a
/// console's) origin: `nosniff` and a sandboxing CSP always; inline only for plain text
/// (as `text/plain; charset=utf-8`), PNG, JPEG, WebP, audio and video; anything else as a
/// download (`Content-Disposition: attachment`).
pub(crate) fn served_headers(content_type: &str, id: &MemoryId) -> HeaderMap {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let inline = match essence.as_str() {
        "text/plain" => Some("text/plain; charset=utf-8".to_owned()),
        "image/png" | "image/jpeg" | "image/webp" => Some(essence.clone()),
        e if (e.starts_with("audio/") || e.starts_with("video/"))
            && e.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/.+-".contains(&b)) =>
        {
            Some(essence.clone())
        }
        _ => None,
    };
    let mut h = HeaderMap::new();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    match inline {
        Some(ct) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&ct)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline"),
            );
        }
        None => {
            // The stored type is kept (a client may want it), but never rendered here.
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{id}\""))
                    .unwrap_or(HeaderValue::from_static("attachment")),
            );
        }
    }
    h
}

/// A memory's content, checked against its commitment as it streams out.
#[utoipa::path(get, path = "/v1/memories/{id}/content", tag = "memories", security(("bearer" = [])),
    params(("id" = String, Path, description = "memory id (32 hex characters)", pattern = "^[0-9a-fA-F]{32}$")),
    responses((status = 200, description = "the content, in the memory's own content type (any: text, audio, images, ...)", content_type = "*/*", body = Vec<u8>), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json"), (status = "5XX", description = "unavailable (retry) or failed", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn get_content(
    State(api): State<S>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let id = memory_id(&id)?;
    api.sync(user).await?;
    let m = memory_row(&api, user, &id).await?;
    content_response(&api, user, &m).await
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(ingest, list_memories))
        .routes(routes!(get_memory))
        .routes(routes!(get_content))
}
