//! The grants view: grants an owner gave, and grants a user was given.

use mnemo_core::{Capabilities, Grant, GrantConditions, GrantId, TimestampMs, UserId};
use sqlx::Row;

use super::{Views, id16};
use crate::error::{ProjectionError, Result};

/// A grant as the view holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    /// Whose memories it opens.
    pub owner: UserId,
    /// Its terms (`revoked` set once revoked).
    pub grant: Grant,
    /// The seq of its `grant_created` event.
    pub created_seq: u64,
    /// The seq of its `grant_revoked` event, once revoked.
    pub revoked_seq: Option<u64>,
}

/// Which side of grants to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantRole {
    /// Grants the user gave.
    Owner,
    /// Grants given to the user.
    Grantee,
}

pub(crate) const GRANT_COLUMNS: &str =
    "user_id, grant_id, grantee, can_metadata, can_content, can_ask, conditions,
    (extract(epoch from expires_at) * 1000)::bigint AS expires_ms,
    (extract(epoch from not_before) * 1000)::bigint AS not_before_ms, created_seq, revoked_seq";

fn user(s: String) -> Result<UserId> {
    UserId::new(s).map_err(|e| ProjectionError::Corrupt(format!("stored user id: {e}")))
}

impl GrantRow {
    pub(crate) fn from_row(r: &sqlx::postgres::PgRow) -> Result<Self> {
        let conditions: serde_json::Value = r.try_get("conditions")?;
        let revoked_seq = r
            .try_get::<Option<i64>, _>("revoked_seq")?
            .map(|s| s as u64);
        Ok(Self {
            owner: user(r.try_get("user_id")?)?,
            grant: Grant {
                id: GrantId(id16(r.try_get("grant_id")?, "grant id")?),
                grantee: user(r.try_get("grantee")?)?,
                capabilities: Capabilities {
                    metadata: r.try_get("can_metadata")?,
                    content: r.try_get("can_content")?,
                    ask: r.try_get("can_ask")?,
                },
                conditions: serde_json::from_value::<GrantConditions>(conditions).map_err(|e| {
                    ProjectionError::Corrupt(format!("stored grant conditions: {e}"))
                })?,
                expires_at: r.try_get::<Option<i64>, _>("expires_ms")?.map(TimestampMs),
                not_before: r
                    .try_get::<Option<i64>, _>("not_before_ms")?
                    .map(TimestampMs),
                revoked: revoked_seq.is_some(),
            },
            created_seq: r.try_get::<i64, _>("created_seq")? as u64,
            revoked_seq,
        })
    }
}

impl Views {
    /// The grants `user` gave (`Owner`) or was given (`Grantee`), by owner and creation.
    pub async fn grants(&self, user: &UserId, role: GrantRole) -> Result<Vec<GrantRow>> {
        let column = match role {
            GrantRole::Owner => "user_id",
            GrantRole::Grantee => "grantee",
        };
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE {column} = $1 ORDER BY user_id, created_seq"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.as_str())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(GrantRow::from_row).collect()
    }

    /// One grant `owner` gave.
    pub async fn grant(&self, owner: &UserId, id: &GrantId) -> Result<Option<GrantRow>> {
        let sql =
            format!("SELECT {GRANT_COLUMNS} FROM grants WHERE user_id = $1 AND grant_id = $2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner.as_str())
            .bind(id.0.to_vec())
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(GrantRow::from_row)
            .transpose()
    }
}

/// The unrevoked grants `owner` gave `grantee` (expired ones included: the access rule
/// decides), by id.
pub(crate) async fn unrevoked(
    conn: &mut sqlx::PgConnection,
    owner: &UserId,
    grantee: &UserId,
) -> Result<Vec<Grant>> {
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM grants
         WHERE user_id = $1 AND grantee = $2 AND revoked_seq IS NULL ORDER BY grant_id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(owner.as_str())
        .bind(grantee.as_str())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| GrantRow::from_row(r).map(|g| g.grant))
        .collect()
}
