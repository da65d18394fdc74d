//! The access log view: every read of a user's memories by someone else.

use mnemo_core::{GrantId, MemoryId, UserId};
use sqlx::Row;

use super::{Views, id16};
use crate::error::{ProjectionError, Result};

/// One `access_recorded` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRow {
    /// Its seq in the owner's chain.
    pub seq: u64,
    /// Who read.
    pub accessor: UserId,
    /// Under which grant.
    pub grant: GrantId,
    /// `list`, `read_metadata` or `read_content`.
    pub action: String,
    /// The memories returned.
    pub memories: Vec<MemoryId>,
    /// When (ms).
    pub at: i64,
}

impl Views {
    /// The newest `limit` reads of `owner`'s memories, newest first.
    pub async fn access_log(&self, owner: &UserId, limit: i64) -> Result<Vec<AccessRow>> {
        let rows = sqlx::query(
            "SELECT seq, accessor, grant_id, action, memories, (extract(epoch from ts) * 1000)::bigint AS ms
             FROM access_log WHERE user_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(owner.as_str())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let mems: Vec<Vec<u8>> = r.try_get("memories")?;
                Ok(AccessRow {
                    seq: r.try_get::<i64, _>("seq")? as u64,
                    accessor: UserId::new(r.try_get::<String, _>("accessor")?).map_err(|e| {
                        ProjectionError::Corrupt(format!("stored accessor id: {e}"))
                    })?,
                    grant: GrantId(id16(r.try_get("grant_id")?, "grant id")?),
                    action: r.try_get("action")?,
                    memories: mems
                        .into_iter()
                        .map(|m| id16(m, "memory id").map(MemoryId))
                        .collect::<Result<_>>()?,
                    at: r.try_get("ms")?,
                })
            })
            .collect()
    }
}
