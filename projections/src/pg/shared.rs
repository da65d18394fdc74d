//! The candidates of a grantee's read: a pre-filter in SQL, never the decision. The
//! decision is `mnemo_core::Grant::allows`, which the API applies to every candidate; the
//! pre-filter only has to keep everything that rule allows (tested with random grants and
//! memories in `projections/tests/access_rule.rs`) while dropping most of what it refuses.

use mnemo_core::{Grant, Hash32, MemoryId, UserId};

use super::memories::{LIST_FILTERS, MEMORY_COLUMNS, MemoryRow, bind_filters};
use super::{MemoryFilter, Views, hash32};
use crate::error::Result;

/// What a grantee's read starts from, read in one snapshot.
#[derive(Clone, Debug)]
pub struct SharedCandidates {
    /// The owner's unrevoked grants to the grantee (by id; expired ones included).
    pub grants: Vec<Grant>,
    /// Memories that some of those grants may cover, newest first, at most the limit.
    pub items: Vec<MemoryRow>,
    /// Whether the page was full (there may be more).
    pub full: bool,
    /// The owner's head as the view held it in that snapshot (zero if none): an access
    /// record goes on top of exactly this head.
    pub head: Hash32,
}

/// The pre-filter: unerased memories of `$1` matching the listing filters that some grant
/// of `g` may cover. Looser than the rule is allowed, stricter is not.
const CANDIDATES: &str = "WITH g AS (
       SELECT conditions FROM grants g
       WHERE g.user_id = $1 AND g.grantee = $9 AND g.revoked_seq IS NULL AND {cap}
         AND (g.expires_at IS NULL OR g.expires_at > to_timestamp($10 / 1000.0))
         AND (g.not_before IS NULL OR g.not_before <= to_timestamp($10 / 1000.0))
     )
     SELECT {MEMORY_COLUMNS} FROM memories m
     WHERE {LIST_FILTERS} AND m.erased_seq IS NULL AND ($11::bytea IS NULL OR m.memory_id = $11)
       AND EXISTS (SELECT 1 FROM g WHERE
            (jsonb_array_length(g.conditions->'tags') = 0
               OR m.tags && ARRAY(SELECT jsonb_array_elements_text(g.conditions->'tags')))
            AND (jsonb_array_length(g.conditions->'kinds') = 0
               OR m.kind IN (SELECT jsonb_array_elements_text(g.conditions->'kinds')))
            AND (jsonb_typeof(g.conditions->'from') IS DISTINCT FROM 'number'
               OR coalesce(m.captured_at, m.ingested_at) >= to_timestamp((g.conditions->>'from')::bigint / 1000.0))
            AND (jsonb_typeof(g.conditions->'until') IS DISTINCT FROM 'number'
               OR coalesce(m.captured_at, m.ingested_at) < to_timestamp((g.conditions->>'until')::bigint / 1000.0))
            AND (jsonb_array_length(g.conditions->'memories') = 0
               OR encode(m.memory_id, 'hex') IN (SELECT jsonb_array_elements_text(g.conditions->'memories'))))
     ORDER BY m.seq DESC LIMIT $8";

impl Views {
    /// The candidates of `grantee`'s read of `owner`'s memories at `at_ms`, for content
    /// (`content`) or metadata, matching `filter` (and only `memory`, if given).
    #[allow(
        clippy::too_many_arguments,
        reason = "one read's parameters, each named"
    )]
    pub async fn shared_candidates(
        &self,
        owner: &UserId,
        grantee: &UserId,
        filter: &MemoryFilter,
        memory: Option<&MemoryId>,
        content: bool,
        at_ms: i64,
        limit: i64,
    ) -> Result<SharedCandidates> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let head: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT head_hash FROM users WHERE user_id = $1")
                .bind(owner.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let head = match head {
            Some(h) => Hash32(hash32(h, "head hash")?),
            None => Hash32::ZERO,
        };
        let grants = super::grants::unrevoked(&mut tx, owner, grantee).await?;
        let cap = if content {
            "g.can_content"
        } else {
            "g.can_metadata"
        };
        let sql = CANDIDATES
            .replace("{cap}", cap)
            .replace("{MEMORY_COLUMNS}", MEMORY_COLUMNS)
            .replace("{LIST_FILTERS}", LIST_FILTERS);
        let rows = bind_filters(sqlx::query(sqlx::AssertSqlSafe(sql)), owner, filter)
            .bind(limit)
            .bind(grantee.as_str())
            .bind(at_ms)
            .bind(memory.map(|m| m.0.to_vec()))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(MemoryRow::from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(SharedCandidates {
            grants,
            full: items.len() as i64 == limit,
            items,
            head,
        })
    }
}
