//! The view barrier: a read waits until the PostgreSQL views hold the caller's chain up to
//! the head it had when the request came in (read-your-writes; a revocation is in force
//! from its acknowledgement). A user whose view is quarantined (an event of their chain was
//! refused by the chain rules) gets a 503 that says so at once, instead of a wait.

use mnemo_anchor::AnchorReader;
use mnemo_core::{Backoff, Hash32, UserId};
use std::time::{Duration, Instant};

use super::Api;
use mnemo_wire::problem::{ApiResult, Problem};

/// The owner's chain head as the views saw it.
pub(crate) struct Synced {
    /// Seq of the view's last event for the user.
    pub seq: u64,
    /// Its hash.
    pub head: Hash32,
}

impl Api {
    /// Waits until the views hold the user's chain at least up to its current head.
    pub(crate) async fn sync(&self, user: &UserId) -> ApiResult<Synced> {
        let Some(tip) = self.ledger.head(user).await? else {
            return Err(Problem::not_found(format!("no user {user}")));
        };
        let t = Instant::now();
        let mut wait = Backoff::new(Duration::from_millis(5), Duration::from_millis(50));
        loop {
            if let Some(s) = self.views.synced_head(user).await?
                && s.seq >= tip.len
            {
                return Ok(Synced {
                    seq: s.seq,
                    head: s.head,
                });
            }
            if let Some(q) = self.views.quarantine(user).await? {
                return Err(Problem::quarantined(user, &q));
            }
            if t.elapsed() > self.cfg.sync_timeout {
                return Err(Problem::unavailable(
                    "the views are behind the chain; retry shortly",
                ));
            }
            tokio::time::sleep(wait.next_wait()).await;
        }
    }

    /// The anchor service's records (`None` while nothing was ever anchored).
    pub(crate) async fn anchors(&self) -> ApiResult<Option<AnchorReader>> {
        AnchorReader::open(&self.js)
            .await
            .map_err(Problem::internal)
    }
}
