//! Console sessions: a browser trades its sign-in token for a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` under TLS), so no token is ever readable by page scripts or
//! kept in storage, and an `<audio>` element can stream content with the cookie. Every
//! write made with the cookie carries `X-CSRF-Token`, which only a page that read
//! `GET /v1/session` (same origin) knows.
//!
//! `POST /v1/session` (the sign-in token in the body) sets the cookie; `GET /v1/session`
//! says who is signed in and the CSRF token; `DELETE /v1/session` signs out.
//!
//! The cookie never holds the sign-in token itself: it holds a **session token**, issued
//! at sign-in for [`SESSION_TTL`] and bound to a session id kept in the `mnemo-sessions`
//! bucket ([`SessionStore`]). A session token is accepted (as the cookie or as a bearer
//! token) only while its session is live; signing out deletes the session, so the old
//! cookie value is refused everywhere at once, by every instance.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use async_nats::jetstream::{self, kv};
use mnemo_core::UserId;
use mnemo_core::names::SESSIONS_BUCKET;
use std::sync::Arc;

use super::extract::{ApiJson, Caller};
use super::{Api, S};
use crate::auth::Principal;
use mnemo_wire::problem::{ApiResult, Problem};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mnemo_session";

/// The header a cookie session's writes carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a console session lasts.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The live sessions (`mnemo-sessions`: session id -> user, expiring after
/// [`SESSION_TTL`]); opened on first use. Cheap to clone.
#[derive(Clone, Default)]
pub struct SessionStore {
    kv: Arc<tokio::sync::OnceCell<kv::Store>>,
}

impl SessionStore {
    async fn kv(&self, js: &jetstream::Context, replicas: usize) -> ApiResult<&kv::Store> {
        self.kv
            .get_or_try_init(|| async {
                mnemo_ledger::provision::ensure_kv(
                    js,
                    kv::Config {
                        bucket: SESSIONS_BUCKET.into(),
                        description: "mnemo: the console's live sessions".into(),
                        history: 1,
                        max_age: SESSION_TTL + std::time::Duration::from_secs(60),
                        num_replicas: replicas.max(1),
                        storage: jetstream::stream::StorageType::File,
                        ..Default::default()
                    },
                )
                .await
                .map_err(Problem::from)
            })
            .await
    }

    /// Starts a session of `user`; its id.
    async fn start(&self, api: &Api, user: &UserId) -> ApiResult<String> {
        let sid = hex::encode(rand::random::<[u8; 16]>());
        self.kv(&api.js, api.ledger.config().replicas)
            .await?
            .put(&sid, user.as_str().to_owned().into())
            .await
            .map_err(|e| unavailable("start a session", e))?;
        Ok(sid)
    }

    /// Whether the session `sid` of `user` is live (a store that does not answer is a
    /// 503, never a refusal).
    pub async fn live(&self, api: &Api, sid: &str, user: &UserId) -> ApiResult<bool> {
        if sid.len() != 32 || !sid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let v = self
            .kv(&api.js, api.ledger.config().replicas)
            .await?
            .get(sid)
            .await
            .map_err(|e| unavailable("read a session", e))?;
        Ok(v.is_some_and(|v| &v[..] == user.as_str().as_bytes()))
    }

    /// Ends the session `sid`.
    async fn end(&self, api: &Api, sid: &str) -> ApiResult<()> {
        self.kv(&api.js, api.ledger.config().replicas)
            .await?
            .purge(sid)
            .await
            .map_err(|e| unavailable("end a session", e))?;
        Ok(())
    }
}

/// The sessions' store did not answer: retryable, never a refusal.
fn unavailable(what: &str, e: impl std::fmt::Display) -> Problem {
    tracing::warn!(error = %e, "sessions: {what}");
    Problem::unavailable(format!("the session store did not answer ({what}); retry"))
}

/// The session token in `headers`' cookie, if any.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
}

fn cookie(api: &Api, value: &str, max_age: u64) -> HeaderValue {
    let secure = if api.cfg.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .expect("a token is header-safe")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    /// The user's sign-in token (`mnemo dev` prints a link with one; `mnemo tokens issue`).
    token: String,
}

/// Signs in: sets the session cookie for a user's token.
#[utoipa::path(post, path = "/v1/session", tag = "session", security(()), request_body = SignIn,
    responses((status = 201, description = "signed in; the cookie is set", body = super::schema::Session), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn sign_in(State(api): State<S>, ApiJson(s): ApiJson<SignIn>) -> ApiResult<Response> {
    let token = s.token.trim();
    let refused = || Problem::unauthorized("the sign-in token is not valid here");
    let user = match api.auth.check(token).map_err(|_| refused())? {
        Principal::User(u) if api.ledger.user_exists(&u).await? => u,
        Principal::User(_) => return Err(refused()),
        _ => {
            return Err(Problem::forbidden(
                "the console signs in users only (not admin or processor tokens)",
            ));
        }
    };
    // The cookie holds a session token of its own, never the sign-in token.
    let sid = api.sessions.start(&api, &user).await?;
    let max_age = api
        .auth
        .expires_in(token)
        .unwrap_or(0)
        .min(SESSION_TTL.as_secs());
    let session = api.auth.issue_session(&user, &sid, max_age);
    let body = Json(super::schema::Session {
        csrf: api.auth.csrf(&session),
        user,
        expires_in: max_age,
    });
    let mut r = (StatusCode::CREATED, body).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&api, &session, max_age));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Who is signed in, and the CSRF token for writes.
#[utoipa::path(get, path = "/v1/session", tag = "session", security(()),
    responses((status = 200, body = super::schema::Session), (status = "4XX", description = "not signed in", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn current(State(api): State<S>, headers: HeaderMap, caller: Caller) -> ApiResult<Response> {
    let user = caller.user()?.clone();
    let token = session_token(&headers)
        .ok_or_else(|| Problem::unauthorized("no session: sign in first"))?;
    let mut r = Json(super::schema::Session {
        user,
        csrf: api.auth.csrf(token),
        expires_in: api.auth.expires_in(token).unwrap_or(0),
    })
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Signs out: ends the session (its token is refused from now on, as the cookie and as a
/// bearer token) and clears the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "session", security(()),
    responses((status = 204, description = "signed out"), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn sign_out(
    State(api): State<S>,
    headers: HeaderMap,
    _caller: Caller,
) -> ApiResult<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| session_token(&headers));
    if let Some(sid) = token.and_then(|t| api.auth.session_id(t.trim())) {
        api.sessions.end(&api, &sid).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&api, "", 0));
    Ok(r)
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(sign_in, current, sign_out))
}
