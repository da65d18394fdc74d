//! What the projector knows of each user's chain: core's [`ChainState`] (links, keys,
//! memories, grants, chain tree), resumed from what the view holds, so the projector
//! refuses exactly the events the auditor refuses, without replaying the chain. A user
//! whose chain had an event refused is quarantined: the view holds their chain up to the
//! event before, and nothing after it is applied.

use mnemo_core::keys::KeyRecord;
use mnemo_core::{
    Accumulator, ChainState, Grant, Hash32, KeyRole, MemoryId, PublicKey, Seq, UserId,
};
use sqlx::Row;
use std::collections::HashMap;

use crate::error::{ProjectionError, Result};

/// Why a user's view stopped: the first event the chain rules refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantine {
    /// The refused event's seq.
    pub seq: u64,
    /// The check it failed, as `mnemo-audit` names it (`bad_grant`, `bad_signature`, ...).
    pub check: String,
    /// The failure in words.
    pub reason: String,
}

#[derive(Clone, Debug)]
pub(crate) struct UserState {
    pub chain: ChainState,
    pub quarantine: Option<Quarantine>,
}

impl UserState {
    pub fn empty(user: UserId) -> Self {
        Self {
            chain: ChainState::new(user),
            quarantine: None,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.chain.len()
    }

    pub fn head(&self) -> Hash32 {
        self.chain.head()
    }

    pub fn next_seq(&self) -> Seq {
        self.chain.next_seq()
    }

    pub fn root(&self) -> Hash32 {
        self.chain.root()
    }
}

fn hash(b: &[u8]) -> Result<Hash32> {
    crate::pg::hash32(b.to_vec(), "hash").map(Hash32)
}

fn user(s: String) -> Result<UserId> {
    UserId::new(s).map_err(|e| ProjectionError::Corrupt(format!("stored user id: {e}")))
}

struct Parts {
    len: u64,
    head: Hash32,
    acc: Accumulator,
    keys: Vec<KeyRecord>,
    memories: Vec<MemoryId>,
    grants: Vec<Grant>,
    quarantine: Option<Quarantine>,
}

/// Loads the states of `users` from PostgreSQL (users not there get an empty state).
pub(crate) async fn load(
    conn: &mut sqlx::PgConnection,
    users: &[UserId],
) -> Result<HashMap<UserId, UserState>> {
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let mut parts: HashMap<UserId, Parts> = HashMap::new();
    let rows = sqlx::query(
        "SELECT user_id, last_seq, head_hash, frontier FROM users WHERE user_id = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let u = user(r.try_get(0)?)?;
        let frontier: Vec<u8> = r.try_get(3)?;
        let len = r.try_get::<i64, _>(1)? as u64;
        let peaks = frontier.chunks_exact(32).map(hash).collect::<Result<_>>()?;
        let acc = Accumulator::from_peaks(len, peaks).ok_or_else(|| {
            ProjectionError::Corrupt(format!("{u}: stored frontier does not match its size"))
        })?;
        parts.insert(
            u,
            Parts {
                len,
                head: hash(&r.try_get::<Vec<u8>, _>(2)?)?,
                acc,
                keys: Vec::new(),
                memories: Vec::new(),
                grants: Vec::new(),
                quarantine: None,
            },
        );
    }
    let rows = sqlx::query(
        "SELECT user_id, public_key, role, added_seq, retired_seq FROM user_keys WHERE user_id = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let u = user(r.try_get(0)?)?;
        let pk: Vec<u8> = r.try_get(1)?;
        let key = <[u8; 32]>::try_from(pk.as_slice())
            .ok()
            .and_then(|k| PublicKey::from_bytes(&k))
            .ok_or_else(|| ProjectionError::Corrupt(format!("{u}: stored key")))?;
        let role = if r.try_get::<String, _>(2)? == "device" {
            KeyRole::Device
        } else {
            KeyRole::Custody
        };
        if let Some(p) = parts.get_mut(&u) {
            p.keys.push(KeyRecord {
                key,
                role,
                added: Seq(r.try_get::<i64, _>(3)? as u64),
                retired: r.try_get::<Option<i64>, _>(4)?.map(|s| Seq(s as u64)),
            });
        }
    }
    let rows = sqlx::query("SELECT user_id, memory_id FROM memories WHERE user_id = ANY($1)")
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        let u = user(r.try_get(0)?)?;
        let id = MemoryId(crate::pg::id16(r.try_get(1)?, "memory id")?);
        if let Some(p) = parts.get_mut(&u) {
            p.memories.push(id);
        }
    }
    let sql = format!(
        "SELECT {} FROM grants WHERE user_id = ANY($1)",
        crate::pg::grants::GRANT_COLUMNS
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        let g = crate::pg::GrantRow::from_row(&r)?;
        if let Some(p) = parts.get_mut(&g.owner) {
            p.grants.push(g.grant);
        }
    }
    let rows = sqlx::query(
        "SELECT user_id, seq, check_code, reason FROM quarantine WHERE user_id = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let u = user(r.try_get(0)?)?;
        let q = Quarantine {
            seq: r.try_get::<i64, _>(1)? as u64,
            check: r.try_get(2)?,
            reason: r.try_get(3)?,
        };
        match parts.get_mut(&u) {
            Some(p) => p.quarantine = Some(q),
            // Refused at its first event: nothing of the chain is in the view.
            None => {
                parts.insert(
                    u,
                    Parts {
                        len: 0,
                        head: Hash32::ZERO,
                        acc: Accumulator::new(),
                        keys: Vec::new(),
                        memories: Vec::new(),
                        grants: Vec::new(),
                        quarantine: Some(q),
                    },
                );
            }
        }
    }
    let rows = sqlx::query("SELECT user_id, state FROM processing_state WHERE user_id = ANY($1)")
        .bind(&names)
        .fetch_all(&mut *conn)
        .await?;
    let mut processing: HashMap<UserId, mnemo_core::chain_state::Processing> = HashMap::new();
    for r in rows {
        let u = user(r.try_get(0)?)?;
        let v: serde_json::Value = r.try_get(1)?;
        let p = serde_json::from_value(v)
            .map_err(|e| ProjectionError::Corrupt(format!("{u}: stored processing state: {e}")))?;
        processing.insert(u, p);
    }
    let mut out = HashMap::with_capacity(users.len());
    for u in users {
        let st = match parts.remove(u) {
            None => UserState::empty(u.clone()),
            Some(p) => {
                let chain = ChainState::resume(
                    u.clone(),
                    p.len,
                    p.head,
                    p.acc,
                    p.keys,
                    p.memories,
                    p.grants,
                )
                .ok_or_else(|| {
                    ProjectionError::Corrupt(format!("{u}: stored tip and tree disagree"))
                })?;
                let mut chain = chain;
                if let Some(p) = processing.remove(u) {
                    chain.restore_processing(p);
                }
                UserState {
                    chain,
                    quarantine: p.quarantine,
                }
            }
        };
        out.insert(u.clone(), st);
    }
    Ok(out)
}
