//! The privacy console's files (`console/dist`, built with Vite), served at `/console` with
//! a strict Content-Security-Policy: scripts and styles from this origin only, no inline
//! scripts, no framing, media from this origin (the streamed content endpoint) and from
//! `blob:` (a recording before it is sent). Unknown paths under `/console/` get the app's
//! `index.html` (its router shows the page).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::S;
use mnemo_wire::problem::Problem;

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// `/console` itself: to the app.
pub(crate) async fn root() -> Redirect {
    Redirect::permanent("/console/")
}

/// The app's index page.
pub(crate) async fn index(State(api): State<S>) -> Response {
    file(&api, "index.html").await
}

/// One of the app's files.
pub(crate) async fn asset(State(api): State<S>, Path(path): Path<String>) -> Response {
    file(&api, &path).await
}

async fn file(api: &S, path: &str) -> Response {
    let Some(dir) = &api.cfg.console_dir else {
        return Problem::not_found("the console is not built on this server (console/dist)")
            .into_response();
    };
    // Only plain relative names: no `..`, no absolute paths, no hidden files.
    let clean = path
        .split('/')
        .all(|p| !p.is_empty() && !p.starts_with('.') && !p.contains('\\'));
    let mut name = if clean { path } else { "index.html" };
    let mut bytes = tokio::fs::read(dir.join(name)).await;
    if bytes.is_err() && !name.starts_with("assets/") {
        name = "index.html";
        bytes = tokio::fs::read(dir.join(name)).await;
    }
    let Ok(bytes) = bytes else {
        return Problem::not_found("no such console file").into_response();
    };
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Hashed asset names never change; the index must be fetched again.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}
