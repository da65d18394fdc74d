//! The processing error: every refusal a processor or an owner can meet, with the status
//! and problem slug it is answered with over REST and NATS (docs/WORKERS.md §7).

use mnemo_ledger::LedgerError;

/// Why a processing request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessingError {
    /// No processor of that name is registered.
    #[error("no processor {0}")]
    UnknownProcessor(String),
    /// The processor was revoked: it gets nothing and may record nothing.
    #[error("processor {0} is revoked")]
    Revoked(String),
    /// A processor of that name exists.
    #[error("processor {0} is already registered")]
    Exists(String),
    /// No live processing grant allows this (none, another processor's, revoked, expired,
    /// another version, or the memory is outside its conditions).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The request is malformed.
    #[error("bad request: {0}")]
    Invalid(String),
    /// A model an erasure reached: its artifact is gone.
    #[error("{0}")]
    Stale(String),
    /// Something asked about does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The ledger refused or failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// NATS did not answer.
    #[error("nats: {what}: {detail}")]
    Nats {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        detail: String,
    },
}

impl ProcessingError {
    /// A NATS failure while doing `what`.
    pub fn nats(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Nats {
            what,
            detail: e.to_string(),
        }
    }
}

/// Results of this crate.
pub type Result<T, E = ProcessingError> = std::result::Result<T, E>;
