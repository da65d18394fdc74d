//! Users' chain-rules snapshots (`mnemo-snapshots`, one KV entry per user): the state of
//! core's `ChainState` at some seq, so that a cold user is loaded, not replayed
//! (docs/SCALE.md, docs/decisions/0015-bounded-state.md).
//!
//! An entry is `[32] tag || JSON snapshot`, the tag a keyed BLAKE3 hash (a key derived
//! from the master key) over the user id and the JSON: bytes this ledger did not write,
//! or wrote for another user, are refused. A snapshot is a cache, never a source of
//! truth: the loader also checks it against the chain (`Ledger::rules_at`), and anything
//! that does not hold is dropped and the state rebuilt from genesis.

use async_nats::jetstream::{self, kv};
use mnemo_core::snapshot::ChainSnapshot;
use mnemo_core::{ChainState, UserId};

use crate::config::LedgerConfig;
use crate::error::{LedgerError, Result};

/// The snapshot store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SnapshotStore {
    kv: kv::Store,
    key: [u8; 32],
}

/// Why a stored snapshot was not used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Not written by this ledger for this user (tag, encoding or user).
    Forged,
}

impl SnapshotStore {
    /// Opens (or creates) the bucket.
    pub(crate) async fn open(js: &jetstream::Context, cfg: &LedgerConfig) -> Result<Self> {
        let kv = crate::provision::ensure_kv(
            js,
            kv::Config {
                bucket: mnemo_core::names::SNAPSHOTS_BUCKET.into(),
                description: "mnemo: users' chain-rules snapshots (a cache)".into(),
                history: 1,
                num_replicas: cfg.replicas.max(1),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            kv,
            key: blake3::derive_key(
                "mnemo 2026-12-07 rules snapshot tag v1",
                cfg.master_key.expose(),
            ),
        })
    }

    fn tag(&self, user: &UserId, json: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&(user.as_str().len() as u32).to_be_bytes());
        h.update(user.as_str().as_bytes());
        h.update(json);
        *h.finalize().as_bytes()
    }

    /// The stored snapshot of `user`: `Ok(None)` when there is none, `Err(Unusable)` when
    /// the bytes are not this ledger's for this user (the caller drops them).
    pub(crate) async fn load(
        &self,
        user: &UserId,
    ) -> Result<std::result::Result<Option<ChainState>, Unusable>> {
        let Some(bytes) = self
            .kv
            .get(user.as_str())
            .await
            .map_err(|e| LedgerError::nats("read a rules snapshot", e))?
        else {
            return Ok(Ok(None));
        };
        if bytes.len() < 32 {
            return Ok(Err(Unusable::Forged));
        }
        let (tag, json) = bytes.split_at(32);
        let want = self.tag(user, json);
        if !subtle_eq(tag, &want) {
            return Ok(Err(Unusable::Forged));
        }
        let Ok(s) = serde_json::from_slice::<ChainSnapshot>(json) else {
            return Ok(Err(Unusable::Forged));
        };
        if s.user != *user {
            return Ok(Err(Unusable::Forged));
        }
        Ok(ChainState::from_snapshot(s)
            .map(Some)
            .ok_or(Unusable::Forged))
    }

    /// Stores `state` as `user`'s snapshot.
    pub(crate) async fn store(&self, user: &UserId, state: &ChainState) -> Result<()> {
        let json = serde_json::to_vec(&state.snapshot()).expect("a snapshot serialises");
        let mut bytes = Vec::with_capacity(32 + json.len());
        bytes.extend_from_slice(&self.tag(user, &json));
        bytes.extend_from_slice(&json);
        self.kv
            .put(user.as_str(), bytes.into())
            .await
            .map_err(|e| LedgerError::nats("store a rules snapshot", e))?;
        Ok(())
    }

    /// Drops `user`'s snapshot (it did not hold).
    pub(crate) async fn drop_snapshot(&self, user: &UserId) -> Result<()> {
        self.kv
            .purge(user.as_str())
            .await
            .map_err(|e| LedgerError::nats("drop a rules snapshot", e))?;
        Ok(())
    }
}

/// Constant-time equality of two tags.
fn subtle_eq(a: &[u8], b: &[u8; 32]) -> bool {
    a.len() == 32 && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
