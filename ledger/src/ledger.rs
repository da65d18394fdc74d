//! The ledger: creates chains, appends to them, erases, and reads them back. [`Ledger`]
//! and its connection live here; each path has its own file:
//!
//! - `head`: what this process knows of each user's chain (head, events in flight, slot);
//! - `writer`: building, publishing and settling events, conflicts, idempotency;
//! - `sealer`: group commit of signatures, one seal per batch of events (format 2);
//! - `memory`: [`NewMemory`], the input a client hands in;
//! - `sealed`: the sealed payload format, sealing memories in and opening them again;
//! - `uploads`: content streamed into the object store, and the orphan-chunk sweeper;
//! - `erasure`: crypto-shredding;
//! - `rules`: core's chain rules on the write path, from the chain's own state;
//! - `reader`: reading and following chains, bounded per user.

use async_nats::jetstream::{
    self, consumer,
    context::{PublishAckFuture, PublishError, PublishErrorKind},
    message::PublishMessage,
    object_store, stream,
};
use bytes::Bytes;
use futures::StreamExt;
use mnemo_core::{
    Capture, ChainError, ChainState, ChainSummary, ChainVerifier, Content, ErasureTarget, Event,
    EventBody, Hash32, Head, KeyId, KeyRole, MemoryId, MemoryRecord, Origin, PublicKey, Seq, Sig,
    SigningKey, TimestampMs, UserId, commitment, memory::object_hash,
};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;

use crate::config::LedgerConfig;
use crate::crypto::SecretKey;
use crate::envelope;
use crate::error::{LedgerError, Result};
use crate::keystore::{self, GENERATION_SIZE, Generation, KeyCache, KeyStore, MemoryKey};
use crate::objects;
use mnemo_core::names::{ChainLocation, KEYS_BUCKET, OBJECTS_BUCKET};

mod erasure;
mod fetch_batches;
mod head;
mod memory;
mod processing;
mod questions;
mod reader;
mod rules;
mod sealed;
mod sealer;
mod uploads;
mod writer;

pub use head::ChainTip;
use head::*;
pub use memory::{DeviceSignature, MAX_IDEMPOTENCY_KEY, NewMemory, is_idempotency_key};
pub use processing::{DerivedResult, FetchedInput, NOT_THIS_PROCESSOR};
pub use questions::{MAX_QUESTION_BYTES, NewQuestion, QUESTION_KIND};
pub use reader::{ChainReader, StoredEvent};
use sealed::*;
pub use sealed::{ContentStream, OpenedMemory, OpenedStream, content_error};
pub use uploads::SweptChunks;
pub use writer::Receipt;
use writer::*;

/// Counters of a [`Ledger`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Events sent while an earlier event of the same user was still in flight.
    pub pipelined: u64,
    /// Appends that found the chain moved by someone else and were rebuilt.
    pub conflicts: u64,
    /// Seals signed (format version 2).
    pub seals: u64,
    /// Events they cover.
    pub sealed_events: u64,
    /// Seals of two or more events (stored as a record).
    pub stored_seals: u64,
    /// Seals by number of events, in power-of-two buckets: `[1], [2, 3], [4, 7], ...,
    /// [256, ...]`.
    pub seal_sizes: [u64; sealer::SIZE_BUCKETS],
    /// Users dropped from memory over the budget (`max_resident_users`).
    pub evicted_users: u64,
    /// Cold users loaded from a rules snapshot (then caught up from the chain).
    pub snapshots_loaded: u64,
    /// Stored snapshots dropped as not holding (forged, another user's, not the chain's).
    pub snapshots_dropped: u64,
}

/// The ledger. Cheap to clone; all clones share connections and caches.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    cfg: LedgerConfig,
    current_key: KeyId,
    keys: KeyStore,
    objects: object_store::ObjectStore,
    slots: Mutex<HashMap<UserId, Arc<Slot>>>,
    epochs: AtomicU64,
    pipelined: AtomicU64,
    conflicts: AtomicU64,
    /// Users dropped from memory over `max_resident_users`.
    evicted: AtomicU64,
    /// Users' chain-rules snapshots.
    snapshots: crate::snapshots::SnapshotStore,
    snapshot_loads: AtomicU64,
    snapshot_drops: AtomicU64,
    /// Snapshots taken in the background as chains grow (see `Ledger::snapshot_soon`): a
    /// permit each, so a burst of users crossing the interval is not a burst of replays.
    snapshot_jobs: Arc<tokio::sync::Semaphore>,
    streams: Mutex<HashMap<String, stream::Stream>>,
    /// Open chain readers per user, bounded by `max_readers_per_user`.
    readers: Mutex<HashMap<UserId, Arc<tokio::sync::Semaphore>>>,
    /// Keys the request hashes of idempotent appends (derived once from the master key).
    request_key: [u8; 32],
    /// Users whose chain this process has seen (chains are never deleted, so a user once
    /// seen exists for good).
    known: Mutex<std::collections::HashSet<UserId>>,
    /// The seal stream (format version 2).
    seals: crate::seals::SealStore,
    /// Signs batches with the current key.
    sealer: sealer::Sealer,
    seal_counters: Arc<sealer::SealCounters>,
    /// Fetches waiting to be recorded together, per user and grant.
    fetches: fetch_batches::FetchBatches,
}

fn now_ms() -> TimestampMs {
    crate::clock::now()
}

impl Ledger {
    /// Connects to JetStream and makes sure the KV bucket, the object store and (sharded
    /// layout) the shared streams exist.
    pub async fn connect(client: async_nats::Client, cfg: LedgerConfig) -> Result<Self> {
        let js = jetstream::new(client);
        // The key bucket is a KV bucket whose stream is created here rather than by
        // `create_key_value`: KV streams deny message deletes by default, and that can not
        // be lifted later. The ledger needs deletes for secure erasure of keys (a delete
        // overwrites the stored bytes on disk; a purge only unlinks them).
        let kv_stream = mnemo_core::names::kv_stream(KEYS_BUCKET);
        match js.get_stream(&kv_stream).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .map_err(|e| LedgerError::nats("key bucket info", e))?;
                if info.config.deny_delete {
                    return Err(LedgerError::InvalidInput(format!(
                        "stream {kv_stream} denies deletes: keys could not be securely erased"
                    )));
                }
            }
            Err(_) => {
                js.create_stream(keystore::bucket_stream_config(cfg.replicas))
                    .await
                    .map_err(|e| LedgerError::nats("create key bucket", e))?;
            }
        }
        let keys = js
            .get_key_value(KEYS_BUCKET)
            .await
            .map_err(|e| LedgerError::nats("open key bucket", e))?;
        let objects = crate::provision::ensure_object_store(
            &js,
            object_store::Config {
                bucket: OBJECTS_BUCKET.into(),
                description: Some("mnemo encrypted large payloads".into()),
                storage: stream::StorageType::File,
                num_replicas: cfg.replicas,
                ..Default::default()
            },
        )
        .await?;
        let snapshots = crate::snapshots::SnapshotStore::open(&js, &cfg).await?;
        let current_key = PublicKey(cfg.keys.current.verifying_key()).id();
        let seals = crate::seals::SealStore::new(js.clone(), cfg.replicas);
        seals.ensure().await?;
        let seal_counters = Arc::new(sealer::SealCounters::default());
        let sealer = sealer::Sealer::start(
            cfg.keys.current.clone(),
            seals.clone(),
            js.clone(),
            cfg.max_seal,
            seal_counters.clone(),
            cfg.pause_after_seal.clone(),
        );
        let ledger = Self {
            inner: Arc::new(Inner {
                keys: KeyStore::new(keys, js.clone(), cfg.master_key.clone(), cfg.replicas > 1),
                js,
                current_key,
                objects,
                slots: Mutex::new(HashMap::new()),
                epochs: AtomicU64::new(1),
                pipelined: AtomicU64::new(0),
                conflicts: AtomicU64::new(0),
                streams: Mutex::new(HashMap::new()),
                readers: Mutex::new(HashMap::new()),
                evicted: AtomicU64::new(0),
                snapshots,
                snapshot_loads: AtomicU64::new(0),
                snapshot_drops: AtomicU64::new(0),
                snapshot_jobs: Arc::new(tokio::sync::Semaphore::new(2)),
                request_key: request_key(&cfg.master_key),
                known: Mutex::new(std::collections::HashSet::new()),
                seals,
                sealer,
                seal_counters,
                fetches: Default::default(),
                cfg,
            }),
        };
        for (name, subjects) in ledger.inner.cfg.layout.shared_streams() {
            ledger.ensure_stream(&name, &subjects).await?;
        }
        Ok(ledger)
    }

    /// Counters since this ledger was connected.
    pub fn stats(&self) -> LedgerStats {
        let c = &self.inner.seal_counters;
        LedgerStats {
            pipelined: self.inner.pipelined.load(Ordering::Relaxed),
            conflicts: self.inner.conflicts.load(Ordering::Relaxed),
            seals: c.seals.load(Ordering::Relaxed),
            sealed_events: c.events.load(Ordering::Relaxed),
            stored_seals: c.stored.load(Ordering::Relaxed),
            seal_sizes: std::array::from_fn(|i| c.sizes[i].load(Ordering::Relaxed)),
            evicted_users: self.inner.evicted.load(Ordering::Relaxed),
            snapshots_loaded: self.inner.snapshot_loads.load(Ordering::Relaxed),
            snapshots_dropped: self.inner.snapshot_drops.load(Ordering::Relaxed),
        }
    }

    /// The seal stream, for readers that resolve stored seals.
    pub fn seals(&self) -> &crate::seals::SealStore {
        &self.inner.seals
    }

    /// The configuration.
    pub fn config(&self) -> &LedgerConfig {
        &self.inner.cfg
    }

    /// The custody public key that signs new events.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.inner.cfg.keys.current.verifying_key())
    }

    /// Where `user`'s chain lives.
    pub fn locate(&self, user: &UserId) -> ChainLocation {
        self.inner.cfg.layout.locate(user)
    }

    fn stream_config(&self, name: &str, subjects: &str) -> stream::Config {
        let c = &self.inner.cfg;
        let per_subject = c.max_events_per_user.unwrap_or(-1);
        stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            storage: stream::StorageType::File,
            num_replicas: c.replicas,
            allow_direct: true,
            duplicate_window: c.duplicate_window,
            // Never drop old chain events: a full chain refuses new writes instead.
            discard: stream::DiscardPolicy::New,
            discard_new_per_subject: per_subject > 0,
            max_messages_per_subject: per_subject,
            max_bytes: match c.layout {
                crate::Layout::PerUser => c.max_bytes_per_user.unwrap_or(-1),
                crate::Layout::Sharded { .. } => -1,
            },
            max_message_size: -1,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        }
    }

    async fn ensure_stream(&self, name: &str, subjects: &str) -> Result<stream::Stream> {
        if let Some(s) = self.inner.streams.lock().expect("lock").get(name) {
            return Ok(s.clone());
        }
        let s = crate::provision::ensure_stream(&self.inner.js, self.stream_config(name, subjects))
            .await?;
        self.inner
            .streams
            .lock()
            .expect("lock")
            .insert(name.into(), s.clone());
        Ok(s)
    }

    /// The stream handle, or `None` when the stream does not exist.
    async fn stream(&self, name: &str) -> Result<Option<stream::Stream>> {
        if let Some(s) = self.inner.streams.lock().expect("lock").get(name) {
            return Ok(Some(s.clone()));
        }
        match self.inner.js.get_stream(name).await {
            Ok(s) => {
                self.inner
                    .streams
                    .lock()
                    .expect("lock")
                    .insert(name.into(), s.clone());
                Ok(Some(s))
            }
            Err(e) if crate::provision::is_stream_not_found(&e) => Ok(None),
            Err(e) => Err(LedgerError::nats("get stream", e)),
        }
    }

    fn slot(&self, user: &UserId) -> Arc<Slot> {
        let mut slots = self.inner.slots.lock().expect("lock");
        // The user id is cloned only for a user seen the first time.
        if let Some(s) = slots.get(user) {
            return s.clone();
        }
        let budget = self.inner.cfg.max_resident_users.max(1);
        if slots.len() >= budget {
            // Over budget: drop idle users (no task holds their slot) down to 90%. Their
            // state is reloaded from the chain when next used. Amortised: one pass frees a
            // tenth of the budget.
            let mut excess = slots.len() + 1 - (budget - budget / 10).max(1);
            let before = slots.len();
            slots.retain(|_, s| {
                if excess > 0 && Arc::strong_count(s) == 1 {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
            self.inner
                .evicted
                .fetch_add((before - slots.len()) as u64, Ordering::Relaxed);
            let mut readers = self.inner.readers.lock().expect("lock");
            if readers.len() >= budget {
                let max = self.inner.cfg.max_readers_per_user.max(1);
                readers.retain(|_, r| r.available_permits() < max);
            }
            let mut known = self.inner.known.lock().expect("lock");
            if known.len() >= budget {
                known.clear();
            }
        }
        slots.entry(user.clone()).or_default().clone()
    }

    /// Users whose state this process holds now.
    pub fn resident_users(&self) -> usize {
        self.inner.slots.lock().expect("lock").len()
    }

    fn next_epoch(&self) -> u64 {
        self.inner.epochs.fetch_add(1, Ordering::Relaxed)
    }
}
