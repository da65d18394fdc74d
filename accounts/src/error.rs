//! The NATS account code's error type, and how the API answers it ([`Problem`]).

use mnemo_wire::Problem;
use mnemo_wire::problem::StatusCode;

use mnemo_core::UserId;

/// What operator setup, accounts and the device gateway can fail with. Each variant says
/// what a caller should do with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsAuthError {
    /// Reading or writing the operator's files failed (`mnemo nats init`'s directory).
    #[error("{what}: {source}")]
    Io {
        /// Which file.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A seed or key is malformed, or a key could not sign. Fix the configuration.
    #[error("nkey: {0}")]
    Key(#[from] nkeys::error::Error),
    /// NATS did not answer or failed (connecting, the accounts bucket, a claims request).
    /// Nothing is known to be done; retry (HTTP 503).
    #[error("nats: {what}: {detail}")]
    Nats {
        /// The operation.
        what: &'static str,
        /// The error text (never contains secrets).
        detail: String,
    },
    /// The server refused an account JWT (`$SYS.REQ.CLAIMS.UPDATE` did not answer 200).
    /// Needs an operator: the signing key or the resolver is misconfigured (HTTP 500).
    #[error("the NATS server refused the account claims: {0}")]
    ClaimsRefused(String),
    /// The user has no NATS account (HTTP 404).
    #[error("user {0} has no NATS account")]
    NoAccount(UserId),
    /// The user already has a NATS account (HTTP 409).
    #[error("user {0} already has a NATS account")]
    Exists(UserId),
    /// A stored account record does not open or parse: the bucket was tampered with or the
    /// master key changed (HTTP 500).
    #[error("account record: {0}")]
    Corrupt(String),
    /// A claim could not be encoded (a bug).
    #[error("encoding claims: {0}")]
    Encode(String),
    /// The ledger refused or failed an ingest or read on behalf of a device.
    #[error(transparent)]
    Ledger(#[from] mnemo_ledger::LedgerError),
}

impl NatsAuthError {
    /// NATS failed at `what`.
    pub fn nats(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Nats {
            what,
            detail: e.to_string(),
        }
    }

    pub(crate) fn encode(e: impl std::fmt::Display) -> Self {
        Self::Encode(e.to_string())
    }
}

/// Shorthand.
pub type Result<T, E = NatsAuthError> = std::result::Result<T, E>;

impl From<NatsAuthError> for Problem {
    fn from(e: NatsAuthError) -> Self {
        use NatsAuthError as E;
        match e {
            E::Ledger(l) => l.into(),
            e @ E::NoAccount(_) => Problem::not_found(e.to_string()),
            e @ E::Exists(_) => Problem::new(StatusCode::CONFLICT, "exists", e.to_string()),
            e @ E::Nats { .. } => {
                tracing::warn!(error = %e, "NATS unavailable");
                Problem::unavailable("NATS did not answer; retry")
            }
            other => Problem::internal(other),
        }
    }
}
