//! The anchor's error type.

/// What anchoring can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The RPC node failed or is unreachable; retried with backoff, the epoch waits.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The signer cannot pay for the transaction. Loud: fund the anchor account.
    #[error("the anchor account has insufficient funds: {0}")]
    InsufficientFunds(String),
    /// The contract refused the call (not the owner, epoch or previous root wrong).
    #[error("the anchor contract reverted: {0}")]
    Reverted(String),
    /// The chain holds something other than what mnemo recorded (a different root for an
    /// epoch). Needs a human.
    #[error("chain disagrees with the records: {0}")]
    Inconsistent(String),
    /// NATS failed; retried.
    #[error("nats: {0}")]
    Nats(String),
    /// Bad configuration (key, URL, address).
    #[error("config: {0}")]
    Config(String),
    /// Creating or opening a stream or bucket failed (NATS); retried.
    #[error(transparent)]
    Provision(#[from] mnemo_ledger::LedgerError),
    /// A record in the anchor's bucket does not parse. Needs a human.
    #[error("corrupt anchor record: {0}")]
    Corrupt(String),
    /// Another instance holds the anchoring lease.
    #[error("another instance holds the anchor lease")]
    NotLeader,
}

impl AnchorError {
    pub(crate) fn rpc(e: impl std::fmt::Display) -> Self {
        let s = e.to_string();
        let lower = s.to_ascii_lowercase();
        if lower.contains("insufficient funds") {
            Self::InsufficientFunds(s)
        } else if lower.contains("revert") {
            Self::Reverted(s)
        } else {
            Self::Rpc(s)
        }
    }
    pub(crate) fn nats(e: impl std::fmt::Display) -> Self {
        Self::Nats(e.to_string())
    }
}

/// Shorthand.
pub type Result<T, E = AnchorError> = std::result::Result<T, E>;
