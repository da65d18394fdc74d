//! Device request metrics: every request the device gateway answers (`mnemo.ingest`,
//! `mnemo.read`, chunked uploads) is timed, from its arrival to its answer's publish, into
//! `mnemo_nats_request_duration_seconds`, labelled by what was asked and the outcome's
//! class (`ok`, `4xx`, `5xx`: a refusal carries its HTTP status in `Nats-Service-Error-Code`).
//! Both label sets are bounded. One set of series per process, as the requests are.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Bucket bounds, in seconds: 0.5 ms to 10 s (as the HTTP histogram's).
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of one series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `ingest`, `read` or `upload`.
    pub request: &'static str,
    /// `ok`, `4xx` or `5xx`.
    pub outcome: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The histogram family `/metrics` registers.
pub type Durations = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// This process's device request durations.
pub fn durations() -> &'static Durations {
    static D: OnceLock<Durations> = OnceLock::new();
    D.get_or_init(|| Family::new_with_constructor(histogram))
}

/// Records one answered request.
pub(super) fn observe(request: &'static str, status: Option<u16>, took: Duration) {
    let outcome = match status {
        None => "ok",
        Some(s) if s < 500 => "4xx",
        Some(_) => "5xx",
    };
    durations()
        .get_or_create(&RequestLabels { request, outcome })
        .observe(took.as_secs_f64());
}
