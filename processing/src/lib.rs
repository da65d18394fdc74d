//! # mnemo-processing
//!
//! Processing under consent: processors are registered services with their own identity
//! ([`registry`]); a user lets one process some memories with a processing grant (an event
//! in their chain, `mnemo-core`'s rules); the [`planner`] turns each memory a processor may
//! see into a task on a durable JetStream work queue ([`queue`]), the backfill included;
//! the [`dispatcher`] hands tasks to the processor's workers (a NATS queue group) with an
//! ack wait, a bound on tasks in flight, redelivery with backoff and dead letters; workers
//! fetch inputs and record results through the [`service`] (over NATS: [`responder`];
//! over REST: `mnemo-api`), every fetch recorded in the owner's chain first, every result a
//! `memory_derived` event with its provenance; [`models`] keeps training sets for proofs
//! and staleness, and keeps their artifacts for queries. The worker side of the protocol
//! is `mnemo-worker` (docs/WORKERS.md).

pub mod dispatcher;
pub mod error;
pub mod models;
pub mod planner;
pub mod queue;
pub mod registry;
pub mod responder;
pub mod service;

/// The protocol's messages (shared with the workers' library).
pub use mnemo_protocol as protocol;

pub use dispatcher::{DispatchConfig, Dispatcher};
pub use error::{ProcessingError, Result};
pub use planner::Planner;
pub use registry::{Processor, Registry};
pub use service::{Processing, QUERY_CACHE_MODELS, SearchModel};

/// Now, in ms since the Unix epoch (the crate's one clock).
pub(crate) fn now_ms() -> mnemo_core::TimestampMs {
    mnemo_ledger::clock::now()
}

/// Resolves once `stop` says so (or its sender is gone).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
