//! A cap on each user's concurrent heavy work (proofs and exports): one user's burst of
//! proof requests cannot take the server's reads from everyone else.
//!
//! The cap is kept in a fixed array of semaphores, one stripe per hash of the user id, so
//! its memory does not grow with users: two users whose ids fall in one stripe share its
//! permits (with 4,096 stripes, a user shares with 1 in 4,096 others).

use mnemo_core::UserId;
use std::hash::BuildHasher;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use mnemo_wire::problem::Problem;

/// Per-user permits for heavy work. Cheap to clone (shared).
#[derive(Clone)]
pub struct HeavyWork {
    stripes: Arc<[Arc<Semaphore>]>,
    hasher: std::collections::hash_map::RandomState,
    per_user: usize,
}

impl HeavyWork {
    /// `per_user` concurrent heavy requests per user, over `stripes` stripes.
    pub fn new(stripes: usize, per_user: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1))
                .map(|_| Arc::new(Semaphore::new(per_user.max(1))))
                .collect(),
            hasher: Default::default(),
            per_user: per_user.max(1),
        }
    }

    /// A permit for one heavy request of `user`, held until dropped; 429 with
    /// `Retry-After` when the user has `per_user` already running.
    pub fn start(&self, user: &UserId) -> Result<OwnedSemaphorePermit, Problem> {
        let k = (self.hasher.hash_one(user.as_str()) % self.stripes.len() as u64) as usize;
        self.stripes[k].clone().try_acquire_owned().map_err(|_| {
            Problem::too_many(format!(
                "at most {} proofs or exports of one user run at once; retry when one has finished",
                self.per_user
            ))
        })
    }
}

impl Default for HeavyWork {
    fn default() -> Self {
        Self::new(4096, 4)
    }
}

impl std::fmt::Debug for HeavyWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeavyWork")
            .field("stripes", &self.stripes.len())
            .field("per_user", &self.per_user)
            .finish()
    }
}
