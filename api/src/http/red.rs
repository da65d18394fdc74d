//! Request metrics (RED: rate, errors, duration): every request a route answers is timed
//! into `mnemo_http_request_duration_seconds`, a histogram labelled by the route's template
//! (`/v1/memories/{id}`, never the path itself, so the label set stays bounded), the method
//! and the status class (`2xx`, `4xx`, ...). Its `_count` series are the rate and the errors.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;
use std::time::Instant;

/// Bucket bounds, in seconds: 0.5 ms to 10 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of one series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The route's template.
    pub route: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Request durations by route, method and status class.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    /// The histogram family `/metrics` registers.
    pub durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            durations: Family::new_with_constructor(histogram),
        }
    }
}

fn class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Times the request (a route layer: the route's template is known).
pub(crate) async fn record(
    State(m): State<Arc<super::ApiStats>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    m.red
        .durations
        .get_or_create(&RouteLabels {
            method,
            route,
            status: class(response.status().as_u16()),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_classes() {
        assert_eq!(super::class(201), "2xx");
        assert_eq!(super::class(404), "4xx");
        assert_eq!(super::class(503), "5xx");
    }
}
