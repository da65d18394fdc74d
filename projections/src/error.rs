//! The projections' error type.

/// What can stop a projector, a rebuild or a read of the views.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// PostgreSQL failed; a batch was not applied and will be retried (its messages are
    /// not acknowledged); a read should answer 503.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// NATS failed; retried (a read answers 503).
    #[error("nats: {0}")]
    Nats(String),
    /// Another instance took over the view: this one must stop writing.
    #[error("another projector instance leads view {0} now")]
    Fenced(String),
    /// The ledger's provisioning failed (the heads bucket, `ledger::provision`).
    #[error("ledger: {0}")]
    Ledger(#[from] mnemo_ledger::LedgerError),
    /// The migrations in `migrations/` could not be applied.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A rebuild could not finish (its projector stopped, it could not reach the live
    /// view, or its view name is not a plain name); the live view is untouched.
    #[error("rebuild: {0}")]
    Rebuild(String),
    /// A row of the views does not hold what the projector wrote (a hash of the wrong
    /// length, an unparsable grant): the view is damaged; rebuild it. Answers 500.
    #[error("the view is damaged: {0}")]
    Corrupt(String),
}

/// Shorthand.
pub type Result<T, E = ProjectionError> = std::result::Result<T, E>;
