//! Console sessions: a browser trades its sign-in token for a session cookie (`HttpOnly`,
//! `SameSite=Strict`, `Secure` under TLS), so no token is ever readable by page scripts or
//! kept in storage, and an `<audio>` element can stream content with the cookie. Every
//! write made with the cookie carries `X-CSRF-Token`, which only a page that read
//! `GET /v1/session` (same origin) knows.
//!
//! `POST /v1/session` (the sign-in token in the body) sets the cookie; `GET /v1/session`
//! says who is signed in and the CSRF token; `DELETE /v1/session` signs out.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ApiJson, Caller};
use super::{Api, S};
use crate::auth::Principal;
use crate::problem::{ApiResult, Problem};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mnemo_session";

/// The header a cookie session's writes carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

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
#[utoipa::path(post, path = "/v1/session", tag = "session", request_body = SignIn,
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
    let max_age = api.auth.expires_in(token).unwrap_or(0);
    let body = Json(json!({ "user": user, "csrf": api.auth.csrf(token), "expires_in": max_age }));
    let mut r = (StatusCode::CREATED, body).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&api, token, max_age));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Who is signed in, and the CSRF token for writes.
#[utoipa::path(get, path = "/v1/session", tag = "session",
    responses((status = 200, body = super::schema::Session), (status = "4XX", description = "not signed in", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn current(State(api): State<S>, headers: HeaderMap, caller: Caller) -> ApiResult<Response> {
    let user = caller.user()?.clone();
    let token = session_token(&headers)
        .ok_or_else(|| Problem::unauthorized("no session: sign in first"))?;
    let mut r = Json(json!({ "user": user, "csrf": api.auth.csrf(token), "expires_in": api.auth.expires_in(token).unwrap_or(0) }))
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Signs out: clears the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "session",
    responses((status = 204, description = "signed out"), (status = "4XX", description = "refused", body = super::schema::ProblemDoc, content_type = "application/problem+json")))]
async fn sign_out(State(api): State<S>, _caller: Caller) -> ApiResult<Response> {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, cookie(&api, "", 0));
    Ok(r)
}

/// This resource's routes, with their OpenAPI description.
pub(crate) fn router() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(sign_in, current, sign_out))
}
