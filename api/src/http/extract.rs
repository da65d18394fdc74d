//! Request extractors whose rejections are problems: the authenticated [`Caller`], JSON
//! bodies ([`ApiJson`]) and query strings ([`ApiQuery`]), and path ids.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use mnemo_core::{MemoryId, UserId};

use super::S;
use crate::auth::Principal;
use mnemo_wire::problem::{ApiResult, Problem};

/// The authenticated caller.
pub struct Caller(pub Principal);

impl FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, api: &S) -> Result<Self, Problem> {
        let token = match parts.headers.get(header::AUTHORIZATION) {
            Some(h) => h
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| Problem::unauthorized("Authorization must be `Bearer <token>`"))?,
            // A console session (the cookie): its writes must carry the CSRF token.
            None => {
                let t = super::session::session_token(&parts.headers).ok_or_else(|| {
                    Problem::unauthorized("missing Authorization: Bearer <token> (or a session)")
                })?;
                if !parts.method.is_safe() {
                    let sent = parts
                        .headers
                        .get(super::session::CSRF_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let want = api.auth.csrf(t);
                    let same = sent.len() == want.len()
                        && sent
                            .bytes()
                            .zip(want.bytes())
                            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                            == 0;
                    if !same {
                        return Err(Problem::new(
                            StatusCode::FORBIDDEN,
                            "csrf",
                            "a write with the session cookie must carry X-CSRF-Token (from GET /v1/session)",
                        ));
                    }
                }
                t
            }
        };
        // Which check failed is logged, not told: a client learns only that the token was
        // refused.
        let refused = || {
            Problem::unauthorized("the token is not valid here (malformed, expired or not ours)")
        };
        let principal = api.auth.check(token.trim()).map_err(|e| {
            tracing::debug!(reason = %e.0, "token refused");
            refused()
        })?;
        // A session's token is valid only while its session is live (signing out ends it).
        if let Some(sid) = api.auth.session_id(token.trim()) {
            let live = match &principal {
                Principal::User(u) => api.sessions.live(api, &sid, u).await?,
                _ => false,
            };
            if !live {
                tracing::debug!("token refused: its session ended");
                return Err(refused());
            }
        }
        // A well-signed token for a user without a chain authenticates nobody: 401, as for
        // any other refused token (not 404, which would tell the user id is free).
        if let Principal::User(u) = &principal
            && !api.ledger.user_exists(u).await?
        {
            tracing::debug!(user = %u, "token refused: no such user");
            return Err(refused());
        }
        Ok(Caller(principal))
    }
}

impl Caller {
    /// The user the caller acts as (an admin token does not act as a user).
    pub fn user(&self) -> ApiResult<&UserId> {
        match &self.0 {
            Principal::User(u) => Ok(u),
            Principal::Admin => Err(Problem::forbidden(
                "an admin token does not act as a user; use the user's token",
            )),
            Principal::Processor(_) => Err(Problem::forbidden(
                "a processor token does not act as a user; processors use /v1/processing",
            )),
        }
    }
}

/// JSON body whose rejections are problems.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, St: Send + Sync> FromRequest<St> for ApiJson<T> {
    type Rejection = Problem;

    /// `application/json` bodies are read and parsed directly; anything else, and any body
    /// that does not parse, goes through axum's `Json`, whose rejections name what is wrong
    /// and where (its path-tracking parser costs a dozen allocations per request, so it is
    /// kept off the hot path).
    async fn from_request(req: Request, state: &St) -> Result<Self, Problem> {
        Self::read(req, state, None).await
    }
}

impl<T: serde::de::DeserializeOwned> ApiJson<T> {
    /// Reads and parses the body, at most `limit` bytes of it if given, else as many as
    /// the router's `DefaultBodyLimit` allows.
    pub(crate) async fn read<St: Send + Sync>(
        req: Request,
        state: &St,
        limit: Option<usize>,
    ) -> Result<Self, Problem> {
        let plain_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| is_plain_json(v.as_bytes()));
        let rejected =
            |r: axum::extract::rejection::JsonRejection| body_problem(r.status(), r.body_text());
        if !plain_json {
            return Json::<T>::from_request(req, state)
                .await
                .map(|Json(v)| Self(v))
                .map_err(rejected);
        }
        let body = match limit {
            None => Bytes::from_request(req, state)
                .await
                .map_err(|r| body_problem(r.status(), r.body_text()))?,
            Some(limit) => axum::body::to_bytes(req.into_body(), limit)
                .await
                .map_err(|e| {
                    let e = e.into_inner();
                    let status = if e.is::<http_body_util::LengthLimitError>() {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    body_problem(status, format!("Failed to buffer the request body: {e}"))
                })?,
        };
        match serde_json::from_slice(&body) {
            Ok(v) => Ok(Self(v)),
            Err(_) => match Json::<T>::from_bytes(&body) {
                Ok(Json(v)) => Ok(Self(v)),
                Err(r) => Err(rejected(r)),
            },
        }
    }
}

/// A refused body as a problem, with the status and words of axum's rejection.
pub(crate) fn body_problem(status: StatusCode, detail: String) -> Problem {
    let slug = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        _ => "invalid-body",
    };
    Problem::new(status, slug, detail)
}

/// `application/json`, in any case, with or without parameters (`; charset=utf-8`).
fn is_plain_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
}

/// Path parameters whose rejections (e.g. `%FF` that does not decode to UTF-8) are problems.
pub struct ApiPath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, St: Send + Sync> FromRequestParts<St> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// Query string whose rejections are problems.
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// A memory id from a path.
pub(crate) fn memory_id(s: &str) -> ApiResult<MemoryId> {
    MemoryId::from_hex(s).map_err(|_| Problem::bad_request("memory ids are 32 hex characters"))
}

/// A user id from a path or body.
/// `v` when it is in `range` (the range `/openapi.json` states for the parameter), else a
/// 400 naming `what`.
pub(crate) fn in_range<T: PartialOrd + std::fmt::Display>(
    what: &str,
    v: T,
    range: std::ops::RangeInclusive<T>,
) -> ApiResult<T> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(Problem::bad_request(format!(
            "{what} must be {}..={}",
            range.start(),
            range.end()
        )))
    }
}

pub(crate) fn user_id(s: &str) -> ApiResult<UserId> {
    UserId::new(s).map_err(|e| Problem::bad_request(format!("user id: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use serde::Deserialize;

    #[test]
    fn plain_json_content_types() {
        for ct in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
        ] {
            assert!(is_plain_json(ct.as_bytes()), "{ct}");
        }
        for ct in [
            "application/jsonx",
            "application/problem+json",
            "text/json",
            "application/json-seq",
            "",
        ] {
            assert!(!is_plain_json(ct.as_bytes()), "{ct}");
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        kind: String,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn post(ct: Option<&str>, body: &str) -> Request {
        let mut req = Request::builder().method("POST").uri("/");
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(Body::from(body.to_owned())).unwrap()
    }

    async fn extract(ct: Option<&str>, body: &str, limit: usize) -> Result<Probe, Problem> {
        let req = {
            // DefaultBodyLimit is a layer: run the request through it.
            use tower::{Layer, Service, ServiceExt};
            let mut svc = axum::extract::DefaultBodyLimit::max(limit).layer(tower::service_fn(
                |r: Request| async move { Ok::<_, std::convert::Infallible>(r) },
            ));
            svc.ready()
                .await
                .unwrap()
                .call(post(ct, body))
                .await
                .unwrap()
        };
        ApiJson::<Probe>::from_request(req, &())
            .await
            .map(|ApiJson(p)| p)
    }

    async fn axum_says(ct: Option<&str>, body: &str) -> String {
        match Json::<Probe>::from_request(post(ct, body), &()).await {
            Ok(_) => panic!("axum accepted {body}"),
            Err(r) => r.body_text(),
        }
    }

    /// The direct path accepts what axum's `Json` accepts, and refuses with axum's words.
    #[tokio::test]
    async fn json_bodies_parse_like_axum_json() {
        let ok = Probe {
            kind: "note".into(),
            tags: vec!["a".into()],
        };
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.mnemo+json",
        ] {
            let got = extract(Some(ct), r#"{"kind":"note","tags":["a"]}"#, 1 << 20).await;
            assert_eq!(got.unwrap(), ok, "{ct}");
        }
        for (ct, body, status) in [
            (
                Some("application/json"),
                r#"{"kind": 7}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Some("application/json"),
                r#"{"kind":"note","tags":[1]}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Some("application/json"),
                r#"{"kind":"note","extra":1}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Some("application/json"),
                r#"{"kind":"#,
                StatusCode::BAD_REQUEST,
            ),
            (Some("application/json"), "", StatusCode::BAD_REQUEST),
            (
                Some("text/plain"),
                r#"{"kind":"note"}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                None,
                r#"{"kind":"note"}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
        ] {
            let p = extract(ct, body, 1 << 20).await.unwrap_err();
            assert_eq!(p.status, status, "{ct:?} {body}");
            assert_eq!(p.detail, axum_says(ct, body).await, "{ct:?} {body}");
        }
        let long = format!(r#"{{"kind":"{}"}}"#, "x".repeat(100));
        let p = extract(Some("application/json"), &long, 64)
            .await
            .unwrap_err();
        assert_eq!(
            (p.status, p.slug),
            (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
        );
        // an explicit limit (text memories may be as large as uploads) overrides the router's
        for (limit, fits) in [(64, false), (200, true)] {
            let req = post(Some("application/json"), &long);
            let got = ApiJson::<Probe>::read(req, &(), Some(limit)).await;
            match got {
                Ok(_) => assert!(fits),
                Err(p) => {
                    assert!(!fits);
                    assert_eq!(
                        (p.status, p.slug),
                        (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
                    );
                }
            }
        }
    }
}
