//! The ledger's error type.

use mnemo_core::{ChainError, IdError, MemoryId, UserId};

/// Everything a ledger operation can fail with. Each variant says what the caller should
/// do with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A malformed id (user id with `.`, `*`, `>` or whitespace, bad hex). Reject the input
    /// (HTTP 400); nothing was written.
    #[error("invalid id: {0}")]
    InvalidId(#[from] IdError),
    /// Input that breaks a documented limit or rule. Reject it (HTTP 400 or 413); nothing was
    /// written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The payload is larger than the configured maximum. Reject it (HTTP 413); nothing was
    /// written.
    #[error("payload of {size} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Bytes given.
        size: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// No chain exists for this user: create the user first (HTTP 404).
    #[error("unknown user {0}")]
    UnknownUser(UserId),
    /// The user already has a chain (HTTP 409).
    #[error("user {0} already exists")]
    UserExists(UserId),
    /// The memory does not exist in this chain (HTTP 404).
    #[error("memory {0} not found")]
    MemoryNotFound(MemoryId),
    /// The memory was erased: its key is destroyed and nobody can read it (HTTP 410).
    #[error("memory {0} was erased")]
    Erased(MemoryId),
    /// Other writers kept winning the race for this user's next sequence number, more times
    /// than the configured retries. Nothing of this call was written; retry later (HTTP 409
    /// or 503).
    #[error("concurrency conflict on user {0}'s chain after retries")]
    Conflict(UserId),
    /// A conditional append found the chain's head moved past the one it was made against
    /// (see `Ledger::append_event_after`). Nothing was written; check again and retry.
    #[error("the head of user {0}'s chain moved")]
    HeadMoved(UserId),
    /// The user already holds the configured number of open chain readers. Nothing was
    /// read; retry when one finishes (HTTP 429).
    #[error("user {0} has too many reads in progress")]
    TooManyReads(UserId),
    /// An idempotency key was used again, while it is kept, with another request (other
    /// content or metadata). Nothing was written; use a new key (HTTP 422).
    #[error("the idempotency key was already used by user {0} for another request")]
    IdempotencyKeyReused(UserId),
    /// A capture id the chain holds already came again with other content (or another
    /// commitment salt). Nothing was written; a device never reuses a capture id (HTTP 422).
    #[error("capture id of user {user} was recorded at seq {seq} with other content")]
    CaptureReused {
        /// Whose chain.
        user: UserId,
        /// Where the capture is recorded.
        seq: mnemo_core::Seq,
    },
    /// The chain limit for this user is reached (per-user limits): the server refused the
    /// write rather than drop old events. Nothing was written (HTTP 507).
    #[error("chain of user {0} is full")]
    ChainFull(UserId),
    /// Data read back failed verification: the stored chain or payload was tampered with or
    /// is corrupt. Report it; do not serve the data.
    #[error("verification failed: {0}")]
    Tampered(String),
    /// The event would break a kind rule of the chain it extends (FORMAT.md §8, checked
    /// with `mnemo-core`'s `ChainState` against the chain itself): an access record under a
    /// grant that is not live, a revocation of an unknown grant, an erasure of an unknown
    /// memory. Nothing was written (HTTP 422; 403 for an access record).
    #[error("refused by the chain's rules: {0}")]
    Refused(ChainError),
    /// A chain failed whole-chain verification.
    #[error("chain verification failed: {0}")]
    Chain(#[from] ChainError),
    /// NATS or JetStream failed (connection, timeout, server error). Nothing is known to be
    /// written unless a later read shows it; retry (HTTP 503).
    #[error("nats: {what}: {detail}")]
    Nats {
        /// The operation.
        what: &'static str,
        /// The error text (never contains secrets).
        detail: String,
    },
}

impl LedgerError {
    /// Refused before anything was published: nothing of the append is in the chain.
    pub(crate) fn refused_before_sending(&self) -> bool {
        matches!(
            self,
            Self::InvalidId(_)
                | Self::InvalidInput(_)
                | Self::PayloadTooLarge { .. }
                | Self::UnknownUser(_)
                | Self::Refused(_)
        )
    }

    pub(crate) fn nats(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Nats {
            what,
            detail: e.to_string(),
        }
    }
}

/// Shorthand.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
