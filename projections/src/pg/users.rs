//! How far the view holds each user's chain, and which users are quarantined.

use mnemo_core::{Hash32, UserId};

use super::{Views, hash32};
use crate::error::Result;
use crate::state::Quarantine;

/// A user's chain as far as the view holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedHead {
    /// Seq of the view's last event for the user.
    pub seq: u64,
    /// Its hash.
    pub head: Hash32,
}

impl Views {
    /// How far the view holds `user`'s chain (`None`: nothing of it yet).
    pub async fn synced_head(&self, user: &UserId) -> Result<Option<SyncedHead>> {
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT last_seq, head_hash FROM users WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(self.pool())
                .await?;
        row.map(|(seq, head)| {
            Ok(SyncedHead {
                seq: seq as u64,
                head: Hash32(hash32(head, "head hash")?),
            })
        })
        .transpose()
    }

    /// Why `user`'s view stopped, if it did.
    pub async fn quarantine(&self, user: &UserId) -> Result<Option<Quarantine>> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT seq, check_code, reason FROM quarantine WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(seq, check, reason)| Quarantine {
            seq: seq as u64,
            check,
            reason,
        }))
    }

    /// How many users' views are quarantined.
    pub async fn quarantined_users(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine")
            .fetch_one(self.pool())
            .await?;
        Ok(n as u64)
    }
}
