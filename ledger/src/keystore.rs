//! Payload keys and crypto-shredding.
//!
//! Each memory is encrypted with its own key `mk = H(generation key, memory id)`
//! (blake3 derive-key). A **generation key** is a random key of one user, stored in the
//! `mnemo-keys` KV bucket sealed under the master key, and used by one ledger process for at
//! most [`GENERATION_SIZE`] consecutive memories of that user (a new one is started after a
//! conflict with another writer, after an erasure, after a restart). Appends thus write one
//! message, the chain message, and a key record only once per generation.
//!
//! **Erasing one memory** destroys its generation key (secure delete: the server overwrites
//! the stored bytes) after saving the keys of the generation's *other* memories in a
//! rewrap table (sealed under the master key). **Erasing a user** destroys every generation
//! key and rewrap table that covers memories before the erasure event. Either way the
//! erased ciphertext stays in the chain, which keeps verifying, and nobody, mnemo
//! included, can derive its key again.
//!
//! Why a memory can not be encrypted under a generation key that is being destroyed: a
//! generation is only used on top of a head state its writer built itself; every other
//! writer's event (an erasure included) makes the writer's next publish fail its expected
//! subject sequence, and the writer then starts a new generation. So all memories of a
//! generation lie between its `start_seq` and the erasure event, where the erasure looks
//! for them.

use async_nats::jetstream::{consumer, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use mnemo_core::{MemoryId, UserId};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::crypto::SecretKey;
use crate::error::{LedgerError, Result};
use mnemo_core::names::KEYS_BUCKET;

/// Memories per generation key at most.
pub const GENERATION_SIZE: u32 = 1024;

const CTX_MEMORY_KEY: &str = "mnemo 2026-11-26 memory key v1";

/// A generation key in use by this process.
#[derive(Clone, Debug)]
pub(crate) struct Generation {
    pub id: u64,
    pub key: SecretKey,
    pub used: u32,
}

/// Where a memory key comes from when reading.
pub(crate) enum MemoryKey {
    Key(SecretKey),
    Erased,
}

#[derive(Clone)]
enum Source {
    Generation(SecretKey),
    Table(Vec<(MemoryId, SecretKey)>),
    Gone,
}

/// Generation keys looked up while opening memories in chain order (a projector). Safe to
/// keep across batches only because every memory of a generation precedes, in its chain,
/// any erasure that destroys the generation: evict the user's entries on every erasure
/// event, and nothing erased is opened from the cache afterwards.
#[derive(Default)]
pub struct KeyCache(std::collections::HashMap<(UserId, u64), Source>);

impl KeyCache {
    /// Forgets every key of `user` (call it when an erasure of the user is seen).
    pub fn evict_user(&mut self, user: &UserId) {
        self.0.retain(|(u, _), _| u != user);
    }

    /// Number of generations held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

fn gen_key(user: &UserId, id: u64) -> String {
    format!("g.{user}.{id:016x}")
}
fn table_key(user: &UserId, id: u64) -> String {
    format!("r.{user}.{id:016x}")
}
fn aad(what: &str, user: &UserId, id: u64) -> Vec<u8> {
    format!("mnemo {what} v1\0{user}\0{id:016x}").into_bytes()
}

/// The memory key of `memory` under generation key `g`.
pub(crate) fn derive(g: &SecretKey, memory: &MemoryId) -> SecretKey {
    let mut h = blake3::Hasher::new_derive_key(CTX_MEMORY_KEY);
    h.update(g.expose());
    h.update(&memory.0);
    SecretKey::from_bytes(*h.finalize().as_bytes())
}

pub(crate) struct KeyStore {
    kv: kv::Store,
    js: async_nats::jetstream::Context,
    /// Replicated streams: absent keys are confirmed with the stream leader.
    cluster: bool,
    master: SecretKey,
}

impl KeyStore {
    pub fn new(
        kv: kv::Store,
        js: async_nats::jetstream::Context,
        master: SecretKey,
        cluster: bool,
    ) -> Self {
        Self {
            kv,
            js,
            master,
            cluster,
        }
    }

    /// Starts a generation whose first memory will be chain seq `start_seq`.
    pub async fn new_generation(&self, user: &UserId, start_seq: u64) -> Result<Generation> {
        let mut idb = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut idb);
        let id = u64::from_be_bytes(idb);
        let key = SecretKey::random();
        let mut value = start_seq.to_be_bytes().to_vec();
        value.extend_from_slice(&self.master.wrap(&aad("generation", user, id), &key));
        self.kv
            .create(gen_key(user, id), value.into())
            .await
            .map_err(|e| LedgerError::nats("store generation key", e))?;
        Ok(Generation { id, key, used: 0 })
    }

    /// The generation key and its start seq, if it still exists.
    async fn generation(&self, user: &UserId, id: u64) -> Result<Option<(u64, SecretKey, u64)>> {
        let Some((value, revision)) = self.entry(&gen_key(user, id), "generation key").await?
        else {
            return Ok(None);
        };
        if value.len() < 8 {
            return Ok(None);
        }
        let start = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
        let key = self
            .master
            .unwrap_key(&aad("generation", user, id), &value[8..])
            .map_err(|_| {
                LedgerError::Tampered(format!("generation key of {user} does not unwrap"))
            })?;
        Ok(Some((start, key, revision)))
    }

    /// A key's value and revision while it holds one. On a cluster any replica answers a
    /// direct get, a lagging one without a key just made (the memory would look erased):
    /// an absent key is confirmed with the stream leader there.
    async fn entry(&self, key: &str, what: &'static str) -> Result<Option<(Bytes, u64)>> {
        match self
            .kv
            .entry(key)
            .await
            .map_err(|e| LedgerError::nats(what, e))?
        {
            Some(e) if e.operation == kv::Operation::Put => return Ok(Some((e.value, e.revision))),
            _ if !self.cluster => return Ok(None),
            _ => {}
        }
        let subject = format!("{}{key}", self.kv.prefix);
        match self
            .kv
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(m) if m.headers.get("KV-Operation").is_none() => Ok(Some((m.payload, m.sequence))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(LedgerError::nats(what, e)),
        }
    }

    /// The rewrap table of a destroyed generation: `(memory, key)` pairs, and its revision.
    async fn table(
        &self,
        user: &UserId,
        id: u64,
    ) -> Result<Option<(Vec<(MemoryId, SecretKey)>, u64)>> {
        let Some((value, revision)) = self.entry(&table_key(user, id), "rewrap table").await?
        else {
            return Ok(None);
        };
        let plain = self
            .master
            .open(&aad("rewrap", user, id), &value)
            .map_err(|_| {
                LedgerError::Tampered(format!("rewrap table of {user} does not decrypt"))
            })?;
        let entries = plain
            .chunks_exact(48)
            .map(|c| {
                let m = MemoryId(c[..16].try_into().expect("16 bytes"));
                let k = SecretKey::from_bytes(c[16..].try_into().expect("32 bytes"));
                (m, k)
            })
            .collect();
        Ok(Some((entries, revision)))
    }

    /// The key of `memory`, encrypted under generation `id`; `cache` (when given) keeps
    /// what was looked up for the caller's lifetime of it.
    pub async fn memory_key_cached(
        &self,
        user: &UserId,
        id: u64,
        memory: &MemoryId,
        cache: &mut KeyCache,
    ) -> Result<MemoryKey> {
        let src = match cache.0.get(&(user.clone(), id)) {
            Some(s) => s.clone(),
            None => {
                let s = if let Some((_, g, _)) = self.generation(user, id).await? {
                    Source::Generation(g)
                } else if let Some((t, _)) = self.table(user, id).await? {
                    Source::Table(t)
                } else {
                    Source::Gone
                };
                cache.0.insert((user.clone(), id), s.clone());
                s
            }
        };
        Ok(match src {
            Source::Generation(g) => MemoryKey::Key(derive(&g, memory)),
            Source::Table(t) => t
                .into_iter()
                .find(|(m, _)| m == memory)
                .map_or(MemoryKey::Erased, |(_, k)| MemoryKey::Key(k)),
            Source::Gone => MemoryKey::Erased,
        })
    }

    /// Looks up many generations concurrently into `cache`.
    pub async fn warm(&self, wanted: Vec<(UserId, u64)>, cache: &mut KeyCache) -> Result<()> {
        let todo: Vec<(UserId, u64)> = wanted
            .into_iter()
            .filter(|k| !cache.0.contains_key(k))
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        let found = futures::future::try_join_all(todo.into_iter().map(|(u, id)| async move {
            let s = if let Some((_, g, _)) = self.generation(&u, id).await? {
                Source::Generation(g)
            } else if let Some((t, _)) = self.table(&u, id).await? {
                Source::Table(t)
            } else {
                Source::Gone
            };
            Ok::<_, LedgerError>(((u, id), s))
        }))
        .await?;
        cache.0.extend(found);
        Ok(())
    }

    /// The key of `memory`, encrypted under generation `id`.
    pub async fn memory_key(&self, user: &UserId, id: u64, memory: &MemoryId) -> Result<MemoryKey> {
        if let Some((_, g, _)) = self.generation(user, id).await? {
            return Ok(MemoryKey::Key(derive(&g, memory)));
        }
        Ok(match self.table(user, id).await? {
            Some((entries, _)) => entries
                .into_iter()
                .find(|(m, _)| m == memory)
                .map_or(MemoryKey::Erased, |(_, k)| MemoryKey::Key(k)),
            None => MemoryKey::Erased,
        })
    }

    /// The chain seq from which generation `id` was used, while its key exists.
    pub async fn generation_start(&self, user: &UserId, id: u64) -> Result<Option<u64>> {
        Ok(self.generation(user, id).await?.map(|(s, _, _)| s))
    }

    async fn secure_delete(&self, revision: u64) -> Result<()> {
        let s = self
            .js
            .get_stream(mnemo_core::names::kv_stream(KEYS_BUCKET))
            .await
            .map_err(|e| LedgerError::nats("key bucket", e))?;
        match s.delete_message(revision).await {
            Ok(_) => Ok(()),
            // already gone (a concurrent or repeated erasure)
            Err(e) if e.to_string().contains("no message found") => Ok(()),
            Err(e) => Err(LedgerError::nats("erase key", e)),
        }
    }

    /// Makes `memory` (of generation `id`) undecryptable, keeping `survivors` readable.
    pub async fn shred_memory(
        &self,
        user: &UserId,
        id: u64,
        memory: &MemoryId,
        survivors: &[MemoryId],
    ) -> Result<()> {
        let (entries, old_table, gen_rev): (Vec<(MemoryId, SecretKey)>, Option<u64>, Option<u64>) =
            if let Some((_, g, rev)) = self.generation(user, id).await? {
                let e = survivors
                    .iter()
                    .filter(|m| *m != memory)
                    .map(|m| (*m, derive(&g, m)))
                    .collect();
                (e, None, Some(rev))
            } else if let Some((entries, rev)) = self.table(user, id).await? {
                let e = entries.into_iter().filter(|(m, _)| m != memory).collect();
                (e, Some(rev), None)
            } else {
                return Ok(());
            };
        let mut plain = Zeroizing::new(Vec::with_capacity(entries.len() * 48));
        for (m, k) in &entries {
            plain.extend_from_slice(&m.0);
            plain.extend_from_slice(k.expose());
        }
        // The new table is stored before anything is destroyed, so a crash in between
        // loses no survivor; the key bucket keeps two revisions per key for this.
        self.kv
            .put(
                table_key(user, id),
                self.master.seal(&aad("rewrap", user, id), &plain).into(),
            )
            .await
            .map_err(|e| LedgerError::nats("store rewrap table", e))?;
        if let Some(r) = old_table {
            self.secure_delete(r).await?;
        }
        if let Some(r) = gen_rev {
            self.secure_delete(r).await?;
        }
        Ok(())
    }

    /// Destroys every generation key and rewrap table of `user` that covers chain seqs
    /// before `before_seq`. Returns how many were destroyed.
    pub async fn shred_user(&self, user: &UserId, before_seq: u64) -> Result<usize> {
        let s = self
            .js
            .get_stream(mnemo_core::names::kv_stream(KEYS_BUCKET))
            .await
            .map_err(|e| LedgerError::nats("key bucket", e))?;
        let c = s
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: format!("$KV.{KEYS_BUCKET}.*.{user}.*"),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| LedgerError::nats("read keys", e))?;
        let pending = c.cached_info().num_pending;
        let mut msgs = c
            .messages()
            .await
            .map_err(|e| LedgerError::nats("read keys", e))?;
        let mut doomed = Vec::new();
        for _ in 0..pending {
            let Some(m) = msgs.next().await else { break };
            let m = m.map_err(|e| LedgerError::nats("read keys", e))?;
            let seq = m
                .info()
                .map_err(|e| LedgerError::nats("key info", e))?
                .stream_sequence;
            let is_table = m.subject.starts_with(&format!("$KV.{KEYS_BUCKET}.r."));
            let covered = is_table
                || (m.payload.len() >= 8
                    && u64::from_be_bytes(m.payload[..8].try_into().expect("8 bytes"))
                        < before_seq);
            if covered && !m.payload.is_empty() {
                doomed.push(seq);
            }
        }
        for seq in &doomed {
            self.secure_delete(*seq).await?;
        }
        Ok(doomed.len())
    }
}

/// The stream config of the key bucket (see `Ledger::connect`).
pub(crate) fn bucket_stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: mnemo_core::names::kv_stream(KEYS_BUCKET),
        description: Some("mnemo generation keys and rewrap tables".into()),
        subjects: vec![format!("$KV.{KEYS_BUCKET}.>")],
        max_messages_per_subject: 2,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::Old,
        allow_rollup: true,
        allow_direct: true,
        deny_delete: false,
        deny_purge: false,
        duplicate_window: std::time::Duration::from_secs(120),
        ..Default::default()
    }
}
