//! The access log view: everything that left the ledger of a user's memories: reads by
//! other users under grants, and fetches by processors under processing grants.

use mnemo_core::{GrantId, IdError, MemoryId, ProcessorId, UserId};
use sqlx::Row;

use super::{Views, id16};
use crate::error::{ProjectionError, Result};

/// One `access_recorded` or `inputs_fetched` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRow {
    /// Its seq in the owner's chain.
    pub seq: u64,
    /// Who read: a user, or a processor.
    pub accessor: Accessor,
    /// Under which grant.
    pub grant: GrantId,
    /// `list`, `read_metadata` or `read_content` (a user); `fetch` (a processor).
    pub action: String,
    /// The memories returned (a question's: the memories its answer cited).
    pub memories: Vec<MemoryId>,
    /// When (ms).
    pub at: i64,
    /// A question's id (action `ask`): its text is the payload of the event at `seq`.
    pub question: Option<MemoryId>,
}

/// Who read an owner's memories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accessor {
    /// Another user, under a grant (`access_recorded`).
    User(UserId),
    /// A processor, under a processing grant (`inputs_fetched`).
    Processor(ProcessorId),
}

impl Accessor {
    fn read(kind: String, id: String) -> Result<Self> {
        let bad = |e: IdError| ProjectionError::Corrupt(format!("stored accessor {id:?}: {e}"));
        match kind.as_str() {
            "user" => Ok(Self::User(UserId::new(&id).map_err(bad)?)),
            "processor" => Ok(Self::Processor(ProcessorId::new(&id).map_err(bad)?)),
            other => Err(ProjectionError::Corrupt(format!(
                "stored accessor kind {other:?}"
            ))),
        }
    }

    /// `user` or `processor`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Processor(_) => "processor",
        }
    }

    /// The user's id or the processor's name.
    pub fn id(&self) -> &str {
        match self {
            Self::User(u) => u.as_str(),
            Self::Processor(p) => p.as_str(),
        }
    }
}

impl Views {
    /// The newest `limit` reads of `owner`'s memories, newest first.
    pub async fn access_log(&self, owner: &UserId, limit: i64) -> Result<Vec<AccessRow>> {
        let rows = sqlx::query(
            "SELECT seq, accessor, accessor_kind, grant_id, action, memories, question, (extract(epoch from ts) * 1000)::bigint AS ms
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
                    accessor: Accessor::read(
                        r.try_get::<String, _>("accessor_kind")?,
                        r.try_get::<String, _>("accessor")?,
                    )?,
                    grant: GrantId(id16(r.try_get("grant_id")?, "grant id")?),
                    action: r.try_get("action")?,
                    memories: mems
                        .into_iter()
                        .map(|m| id16(m, "memory id").map(MemoryId))
                        .collect::<Result<_>>()?,
                    at: r.try_get("ms")?,
                    question: r
                        .try_get::<Option<Vec<u8>>, _>("question")?
                        .map(|q| id16(q, "question id").map(MemoryId))
                        .transpose()?,
                })
            })
            .collect()
    }
}
