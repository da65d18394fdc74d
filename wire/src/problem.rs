//! Errors as RFC 9457 problem details (`application/problem+json`).

use axum_core::response::{IntoResponse, Response};
pub use http::StatusCode;
use http::{HeaderValue, header};
use mnemo_ledger::LedgerError;
use serde::Serialize;

/// An API error: status, a stable type slug, a human detail.
#[derive(Debug)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable slug; the `type` is `https://mnemo.dev/problems/<slug>`.
    pub slug: &'static str,
    /// What went wrong, for humans.
    pub detail: String,
}

/// An RFC 9457 problem (`application/problem+json`), as every refusal carries it: the
/// body of [`Problem::body`], and its schema in `/openapi.json`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemDoc {
    /// `https://mnemo.dev/problems/<slug>`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong.
    pub detail: String,
}

impl Problem {
    /// A problem.
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            detail: detail.into(),
        }
    }
    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }
    /// 503.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
    /// 429: too much of one caller's work at once (answered with `Retry-After`).
    pub fn too_many(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail)
    }
    /// 500 (the detail is logged, not sent).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (logged)",
        )
    }
}

impl Problem {
    /// The problem+json body (REST answers and NATS error replies carry the same).
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&ProblemDoc {
            kind: format!("https://mnemo.dev/problems/{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        })
        .unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // Retryable answers say when to retry.
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::InvalidInput(d) => Problem::bad_request(d),
            LedgerError::UnknownUser(u) => Problem::not_found(format!("no user {u}")),
            LedgerError::Erased(m) => Problem::new(
                StatusCode::GONE,
                "erased",
                format!("memory {m} was erased: its key no longer exists"),
            ),
            other @ LedgerError::InvalidId(_) => Problem::bad_request(other.to_string()),
            LedgerError::MemoryNotFound(m) => Problem::not_found(format!("no memory {m}")),
            other @ LedgerError::PayloadTooLarge { .. } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                other.to_string(),
            ),
            other @ LedgerError::UserExists(_) => {
                Problem::new(StatusCode::CONFLICT, "exists", other.to_string())
            }
            other @ (LedgerError::Conflict(_) | LedgerError::HeadMoved(_)) => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{other}; nothing was written, retry"),
            ),
            LedgerError::Refused(e) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused-by-chain-rules",
                format!(
                    "the chain's rules refuse this event ({}): {e}; nothing was written",
                    e.code()
                ),
            ),
            other @ LedgerError::IdempotencyKeyReused(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                other.to_string(),
            ),
            other @ LedgerError::CaptureReused { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "capture-id-reused",
                format!("{other}; nothing was written"),
            ),
            other @ LedgerError::TooManyReads(_) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-reads",
                format!("{other}; retry when one has finished"),
            ),
            other @ LedgerError::ChainFull(_) => Problem::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "chain-full",
                format!("{other}: nothing was written"),
            ),
            // Retryable: the message store did not answer (nothing is known to be written
            // unless a later read shows it; an `Idempotency-Key` makes the retry safe).
            other @ LedgerError::Nats { .. } => {
                tracing::warn!(error = %other, "NATS unavailable");
                Problem::unavailable("the message store did not answer; retry")
            }
            other => Problem::internal(other),
        }
    }
}

#[cfg(feature = "views")]
impl From<mnemo_projections::ProjectionError> for Problem {
    fn from(e: mnemo_projections::ProjectionError) -> Self {
        match e {
            // Retryable: the views' database did not answer.
            e @ (mnemo_projections::ProjectionError::Db(_)
            | mnemo_projections::ProjectionError::Nats(_)) => {
                tracing::warn!(error = %e, "views unavailable");
                Problem::unavailable("the views did not answer; retry")
            }
            other => Problem::internal(other),
        }
    }
}

#[cfg(feature = "views")]
impl Problem {
    /// A user whose view is quarantined: an event of their chain was refused by the chain
    /// rules, so the view stops before it (503: the other users are served).
    pub fn quarantined(user: &mnemo_core::UserId, q: &mnemo_projections::Quarantine) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "quarantined",
            format!(
                "the views of {user} are quarantined: event {} of the chain fails check {} ({}); the operator must repair or rebuild",
                q.seq, q.check, q.reason
            ),
        )
    }
}

/// A result whose error is a problem.
pub type ApiResult<T> = Result<T, Problem>;
