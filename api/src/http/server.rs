//! The HTTP server loop of `mnemo serve`: the API's service on hyper's HTTP/1 connections,
//! with graceful shutdown.
//!
//! Why not `axum::serve`: it does not let hyper be configured, and hyper by default answers
//! a header line it cannot parse (a DEL or other control byte in a value) itself, with an
//! empty 400 and no problem body. Here such a line is dropped before the request reaches
//! the router (`ignore_invalid_headers`), so the router answers: a mangled `Authorization`
//! is a missing one, 401 as problem+json like every other refusal.
//!
//! A client cannot hold the server either: headers must arrive within a timeout (also the
//! idle timeout of a kept-alive connection), and connections are capped
//! ([`ServerLimits`]).

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How long open connections may finish their requests after the stop.
const DRAIN: Duration = Duration::from_secs(10);

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A request's headers must arrive within this long from when the connection waits
    /// for them, and a kept-alive connection idle this long is closed (hyper's header
    /// read timeout runs whenever the connection waits for a request head).
    pub header_timeout: Duration,
    /// Connections open at once; the next one waits in the listen backlog until one
    /// closes.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// Serves `app` on `listener` until `stop` completes, then lets open connections finish
/// (up to 10 s), with the default [`ServerLimits`].
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
    serve_with(listener, app, stop, ServerLimits::default()).await
}

/// [`serve`] with these limits.
pub async fn serve_with<S>(
    listener: tokio::net::TcpListener,
    app: S,
    stop: impl std::future::Future<Output = ()>,
    limits: ServerLimits,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new();
    builder
        .ignore_invalid_headers(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("never closed"),
            () = &mut stop => break,
        };
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
                    drop(slot);
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
