//! # mnemo-wire
//!
//! What mnemo answers and accepts at both of its doors, the REST API and the NATS device
//! gateway, defined once so that a device and a REST client read the same shapes:
//!
//! - [`problem`]: [`Problem`], the refusal (RFC 9457 `application/problem+json`; over NATS
//!   the same body with the services error headers), and how ledger errors map to it;
//! - [`receipt`]: [`IngestReceipt`], what an ingest answers;
//! - [`memory`]: [`MemoryMeta`], what a client says about a memory (its kind, tags,
//!   capture time, source), and the one conversion into the ledger's `NewMemory`.

pub mod memory;
pub mod problem;
pub mod receipt;

pub use memory::MemoryMeta;
pub use problem::{ApiResult, Problem};
pub use receipt::IngestReceipt;
