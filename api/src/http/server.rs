//! The HTTP server loop of `mnemo serve`: the API's service on hyper's HTTP/1 connections,
//! with graceful shutdown.
//!
//! Why not `axum::serve`: it does not let hyper be configured, and hyper by default answers
//! a header line it cannot parse (a DEL or other control byte in a value) itself, with an
//! empty 400 and no problem body. Here such a line is dropped before the request reaches
//! the router (`ignore_invalid_headers`), so the router answers: a mangled `Authorization`
//! is a missing one, 401 as problem+json like every other refusal.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::time::Duration;
use tower::ServiceExt;

/// How long open connections may finish their requests after the stop.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` completes, then lets open connections finish
/// (up to 10 s).
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    app: S,
    stop: impl std::future::Future<Output = ()>,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new();
    builder.ignore_invalid_headers(true);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment, go on.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Small JSON answers: do not let Nagle hold them back waiting for an ACK.
                let _ = tcp.set_nodelay(true);
                let svc = app
                    .clone()
                    .map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(Body::new));
                let conn = builder.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open {DRAIN:?} after the stop"),
    }
}
