//! # mnemo-worker
//!
//! The worker side of mnemo's processing protocol (docs/WORKERS.md), for workers written in
//! Rust: [`Config`] reads a processor's credentials from the environment and connects;
//! [`Worker`] sends the protocol's requests (fetch an input, submit a signed result,
//! record a signed model, list stale models); [`run`] takes tasks from the processor's
//! queue group with backpressure and shuts down on SIGTERM without losing one.
//! [`protocol`] holds the messages, shared with the server (`mnemo-processing`).
//!
//! The [`trainer`] is a real worker built on it: a BM25 search model per user over their
//! texts and transcripts, retrained when an erasure reaches it.

pub mod client;
pub mod config;
pub mod error;
pub use mnemo_protocol as protocol;
mod resident;
pub mod run;
pub mod trainer;

pub use client::{ModelArtifact, Worker};
pub use config::Config;
pub use error::WorkerError;
pub use run::{Job, RunOptions, RunReport, Shutdown, derive_each, run};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), coloured only on a terminal:
/// for worker binaries.
pub fn init_logging() {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}
