//! The projections' error type.

/// What can stop a projector or a rebuild.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// PostgreSQL failed; the batch was not applied and will be retried (its messages are
    /// not acknowledged).
    #[error("database: {0}")]
    Db(String),
    /// NATS failed; retried.
    #[error("nats: {0}")]
    Nats(String),
    /// Another instance took over the view: this one must stop writing.
    #[error("another projector instance leads view {0} now")]
    Fenced(String),
    /// The ledger failed (opening a payload).
    #[error("ledger: {0}")]
    Ledger(#[from] mnemo_ledger::LedgerError),
}

impl From<sqlx::Error> for ProjectionError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.to_string())
    }
}

/// Shorthand.
pub type Result<T, E = ProjectionError> = std::result::Result<T, E>;
