//! # mnemo-projections
//!
//! Views built from the custody chains, which stay the only source of truth: every view can
//! be dropped and rebuilt by replaying them.
//!
//! - [`Projector`]: durable JetStream consumers (explicit ack, bounded in flight) on every
//!   chain stream feed one applier. It checks each event with `mnemo-core`'s chain rules
//!   ([`mnemo_core::ChainState`], resumed from what the view holds for the user: the same
//!   rules `mnemo-audit` applies) and its signatures, then applies a batch to PostgreSQL in one
//!   transaction together with the per-stream checkpoints, then acknowledges. A crash
//!   anywhere therefore neither loses nor doubles an event: unacknowledged messages come
//!   back and anything at or below a checkpoint is skipped. An event the rules refuse
//!   quarantines its user's view alone ([`Quarantine`], table `quarantine`: the check
//!   named as `mnemo-audit` names it), goes to the dead-letter subject with the reason and
//!   is counted; the other users' views go on.
//! - PostgreSQL views (`migrations/`): users (tip and chain-tree frontier), events, memories
//!   (metadata, tags, times, erasure state, full-text search over the text of memories
//!   whose key still exists), grants, access log, keys, checkpoints (anchors are the
//!   anchorer's: its KV bucket and the EVM chain).
//! - KV view: `mnemo-heads`, each user's checkpoint (seq, head hash, chain-tree root),
//!   read by the anchorer. Updates use compare-and-set on the entry's revision and are
//!   idempotent.
//! - [`rebuild`]: replays the chains into fresh tables beside the live ones and swaps them in.
//! - [`lag`]: events behind the chains, per view.
//!
//! Not here: HTTP (the API exposes `lag` and the counters), anchoring.

mod error;
pub mod pg;
mod projector;
mod rebuild;
mod state;

pub use error::{ProjectionError, Result};
pub use pg::{
    AccessRow, Accessor, GrantRole, GrantRow, MemoryFilter, MemoryRow, SharedCandidates,
    SyncedHead, Views,
};
pub use projector::kv_head;
pub use projector::{Head, Projector, ProjectorConfig, ProjectorStats, lag};
pub use rebuild::{RebuildReport, rebuild};
pub use state::Quarantine;

/// Runs the migrations in `migrations/` (idempotent).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .map_err(ProjectionError::from)
}
