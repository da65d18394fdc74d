//! Request ids: every request runs in a tracing span carrying a W3C trace id, the caller's
//! (`traceparent`) when it sends a valid one, else a fresh one. Every log line the request
//! causes, the ledger's appends included, carries it (`trace.id`, `span.id`, the names
//! Elastic's common schema uses; JSON logs put them under `span`), and the answer names it
//! in `traceparent` and `x-request-id`, so one request can be followed across the API and
//! the ledger.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

/// The trace id of a valid `traceparent` (version 00: `00-<32 hex>-<16 hex>-<2 hex>`, ids
/// not all zero), lowercase.
pub(crate) fn trace_id(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match parts[..] {
        ["00", t, p, f]
            if hex(t, 32)
                && hex(p, 16)
                && hex(f, 2)
                && t.bytes().any(|b| b != b'0')
                && p.bytes().any(|b| b != b'0') =>
        {
            Some(t)
        }
        _ => None,
    }
}

/// Runs the request in its span, logs its outcome there, and names the trace in the answer.
pub(crate) async fn layer(req: Request, next: Next) -> Response {
    let trace = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id)
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let span_id = hex::encode(rand::random::<[u8; 8]>());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!(
        "request",
        "trace.id" = %trace,
        "span.id" = %span_id,
        "http.request.method" = %method,
        "url.path" = %path,
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            "http.response.status_code" = response.status().as_u16(),
            "event.duration" = started.elapsed().as_nanos() as u64,
            "request answered"
        )
    });
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("00-{trace}-{span_id}-01")) {
        h.insert("traceparent", v);
    }
    if let Ok(v) = HeaderValue::from_str(&trace) {
        h.insert("x-request-id", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn only_a_valid_traceparent_names_the_trace() {
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(&format!("00-{t}-00f067aa0ba902b7-01")), Some(t));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
    }
}
