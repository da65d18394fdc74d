//! The PostgreSQL side of the views: the one place that holds SQL. The projector writes
//! through [`write`]; everyone else reads through [`Views`] and the typed functions of
//! its submodules, which return named row structs:
//!
//! - [`users`]: how far the view holds a user's chain ([`Views::synced_head`]) and whether
//!   it is quarantined ([`Views::quarantine`]);
//! - [`memories`]: the owner's listing and one memory ([`MemoryRow`], [`MemoryFilter`]),
//!   event hashes and keys for proofs;
//! - [`grants`]: grants given and received ([`GrantRow`]);
//! - [`shared`]: the candidates of a grantee's read, a pre-filter only (the access rule is
//!   `mnemo_core::Grant::allows`, which decides);
//! - [`access_log`]: who read what ([`AccessRow`]).

pub mod access_log;
pub mod grants;
pub mod memories;
pub mod shared;
pub mod users;
pub(crate) mod write;

use std::time::Duration;

use crate::error::{ProjectionError, Result};

pub use access_log::{AccessRow, Accessor};
pub use grants::{GrantRole, GrantRow};
pub use memories::{MemoryFilter, MemoryRow};
pub use shared::SharedCandidates;
pub use users::SyncedHead;

/// A handle on the PostgreSQL views (a connection pool). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Views {
    pool: sqlx::PgPool,
}

impl Views {
    /// Connects to the database at `url` (8 connections, 5 s to get one).
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// The views behind an existing pool.
    pub fn from_pool(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }

    /// The pool (for the projector and tests).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    /// Runs the migrations in `migrations/` (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate(&self.pool).await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

pub(crate) fn hash32(b: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    b.try_into()
        .map_err(|_| ProjectionError::Corrupt(format!("a stored {what} is not 32 bytes")))
}

pub(crate) fn id16(b: Vec<u8>, what: &str) -> Result<[u8; 16]> {
    b.try_into()
        .map_err(|_| ProjectionError::Corrupt(format!("a stored {what} is not 16 bytes")))
}
