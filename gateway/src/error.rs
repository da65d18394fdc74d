//! The device gateway's error type.

use mnemo_wire::Problem;

/// What starting or running the device services can fail with. A refused request is not
/// one of these: it is answered to the device as a [`Problem`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// NATS did not answer or failed (subscribing, the ingest stream, the rejects).
    /// Nothing is known to be done; retry.
    #[error("nats: {what}: {detail}")]
    Nats {
        /// The operation.
        what: &'static str,
        /// The error text (never contains secrets).
        detail: String,
    },
    /// The ledger failed on behalf of the drainer.
    #[error(transparent)]
    Ledger(#[from] mnemo_ledger::LedgerError),
    /// A task of the device services ended abnormally (a panic).
    #[error("the device services stopped: {0}")]
    Stopped(String),
}

impl GatewayError {
    pub(crate) fn nats(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Nats {
            what,
            detail: e.to_string(),
        }
    }
}

/// A device service's failure, answered to the device that was waiting on it.
impl From<GatewayError> for Problem {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Ledger(l) => l.into(),
            e @ GatewayError::Nats { .. } => {
                tracing::warn!(error = %e, "NATS unavailable");
                Problem::unavailable("NATS did not answer; retry")
            }
            other => Problem::internal(other),
        }
    }
}

/// Shorthand.
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;
