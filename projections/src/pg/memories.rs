//! The memories view: an owner's listing and one memory's row, and what a proof needs
//! (the chain's event hashes, the keys that signed).

use mnemo_core::{KeyId, MemoryFacts, MemoryId, PublicKey, TimestampMs, UserId};
use sqlx::Row;

use super::{Views, hash32, id16};
use crate::error::{ProjectionError, Result};

/// A memory's metadata as the view holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryRow {
    /// Its id.
    pub id: MemoryId,
    /// Its event's seq.
    pub seq: u64,
    /// Kind (empty once erased: only what the chain shows is kept).
    pub kind: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Capture time (ms), if known.
    pub captured_at: Option<i64>,
    /// Source, if known.
    pub source: Option<String>,
    /// MIME type.
    pub content_type: String,
    /// Content size in bytes.
    pub size: i64,
    /// `inline` or `object`.
    pub storage: String,
    /// Its event's timestamp (ms).
    pub ingested_at: i64,
    /// Whether an erasure reached it.
    pub erased: bool,
    /// Whether it is a processor's result (`memory_derived`), not the owner's own.
    pub derived: bool,
}

impl MemoryRow {
    /// What the access rule needs of it.
    pub fn facts(&self) -> MemoryFacts<'_> {
        MemoryFacts {
            id: self.id,
            kind: &self.kind,
            tags: &self.tags,
            captured_at: self.captured_at.map(TimestampMs),
            ingested_at: TimestampMs(self.ingested_at),
            erased: self.erased,
        }
    }

    pub(crate) fn from_row(r: &sqlx::postgres::PgRow) -> Result<Self> {
        Ok(Self {
            id: MemoryId(id16(r.try_get("memory_id")?, "memory id")?),
            seq: r.try_get::<i64, _>("seq")? as u64,
            // NULL once erased (the erasure takes the record's metadata).
            kind: r.try_get::<Option<String>, _>("kind")?.unwrap_or_default(),
            tags: r
                .try_get::<Option<Vec<String>>, _>("tags")?
                .unwrap_or_default(),
            captured_at: r.try_get("captured_ms")?,
            source: r.try_get("source")?,
            content_type: r
                .try_get::<Option<String>, _>("content_type")?
                .unwrap_or_default(),
            size: r.try_get::<Option<i64>, _>("size")?.unwrap_or_default(),
            storage: r
                .try_get::<Option<String>, _>("storage")?
                .unwrap_or_default(),
            ingested_at: r.try_get("ingested_ms")?,
            erased: r.try_get::<Option<i64>, _>("erased_seq")?.is_some(),
            derived: r.try_get("derived")?,
        })
    }
}

/// The filters of a listing (the owner's or a grantee's). Times in ms; a memory's time is
/// its capture time, else its ingestion time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryFilter {
    /// Carries this tag.
    pub tag: Option<String>,
    /// Is of this kind.
    pub kind: Option<String>,
    /// At or after.
    pub from: Option<i64>,
    /// Before.
    pub until: Option<i64>,
    /// Full-text query (web search syntax) over text content.
    pub q: Option<String>,
    /// Only seqs below this (a previous page's cursor).
    pub before_seq: Option<u64>,
}

pub(crate) const MEMORY_COLUMNS: &str = "m.memory_id, m.seq, m.kind, m.tags,
    (extract(epoch from m.captured_at) * 1000)::bigint AS captured_ms, m.source, m.content_type,
    m.size, m.storage, (extract(epoch from m.ingested_at) * 1000)::bigint AS ingested_ms,
    m.erased_seq, m.derived";

/// The filters shared by the owner's and a grantee's listings, as SQL over `m`, with
/// parameters `$1` (the owner) to `$7`.
pub(crate) const LIST_FILTERS: &str = "m.user_id = $1
    AND ($2::bigint IS NULL OR m.seq < $2)
    AND ($3::text IS NULL OR $3 = ANY(m.tags))
    AND ($4::text IS NULL OR m.kind = $4)
    AND ($5::bigint IS NULL OR coalesce(m.captured_at, m.ingested_at) >= to_timestamp($5 / 1000.0))
    AND ($6::bigint IS NULL OR coalesce(m.captured_at, m.ingested_at) < to_timestamp($6 / 1000.0))
    AND ($7::text IS NULL OR m.search @@ websearch_to_tsquery('simple', $7))";

/// Binds `$1` to `$7` of [`LIST_FILTERS`].
pub(crate) fn bind_filters<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    owner: &'q UserId,
    f: &'q MemoryFilter,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(owner.as_str())
        .bind(f.before_seq.map(|s| s as i64))
        .bind(&f.tag)
        .bind(&f.kind)
        .bind(f.from)
        .bind(f.until)
        .bind(&f.q)
}

impl Views {
    /// `owner`'s memories that match `filter`, newest first, at most `limit`.
    pub async fn memories(
        &self,
        owner: &UserId,
        filter: &MemoryFilter,
        limit: i64,
    ) -> Result<Vec<MemoryRow>> {
        let sql = format!(
            "SELECT {MEMORY_COLUMNS} FROM memories m WHERE {LIST_FILTERS} ORDER BY m.seq DESC LIMIT $8"
        );
        let rows = bind_filters(sqlx::query(sqlx::AssertSqlSafe(sql)), owner, filter)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(MemoryRow::from_row).collect()
    }

    /// One of `owner`'s memories.
    pub async fn memory(&self, owner: &UserId, id: &MemoryId) -> Result<Option<MemoryRow>> {
        let sql = format!(
            "SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.user_id = $1 AND m.memory_id = $2"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner.as_str())
            .bind(id.0.to_vec())
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(MemoryRow::from_row)
            .transpose()
    }

    /// Those of `ids` that are `owner`'s memories, in no particular order.
    pub async fn memories_by_id(&self, owner: &UserId, ids: &[MemoryId]) -> Result<Vec<MemoryRow>> {
        let sql = format!(
            "SELECT {MEMORY_COLUMNS} FROM memories m WHERE m.user_id = $1 AND m.memory_id = ANY($2)"
        );
        let ids: Vec<Vec<u8>> = ids.iter().map(|m| m.0.to_vec()).collect();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner.as_str())
            .bind(ids)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(MemoryRow::from_row)
            .collect()
    }

    /// The hashes of `user`'s events 1 to `upto`, in order (the chain tree's leaves).
    pub async fn event_hashes(&self, user: &UserId, upto: u64) -> Result<Vec<[u8; 32]>> {
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM events WHERE user_id = $1 AND seq <= $2 ORDER BY seq",
        )
        .bind(user.as_str())
        .bind(upto as i64)
        .fetch_all(self.pool())
        .await?;
        hashes
            .into_iter()
            .map(|h| hash32(h, "event hash"))
            .collect()
    }

    /// A key of `user`'s chain by id.
    pub async fn user_key(&self, user: &UserId, id: &KeyId) -> Result<Option<PublicKey>> {
        let k: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT public_key FROM user_keys WHERE user_id = $1 AND key_id = $2",
        )
        .bind(user.as_str())
        .bind(id.0.to_vec())
        .fetch_optional(self.pool())
        .await?;
        k.map(|k| {
            PublicKey::from_bytes(&hash32(k, "public key")?)
                .ok_or_else(|| ProjectionError::Corrupt("a stored key is not a curve point".into()))
        })
        .transpose()
    }
}
