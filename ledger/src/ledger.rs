//! The ledger: creates chains, appends to them, erases, and reads them back.

use async_nats::jetstream::{
    self, consumer,
    context::{PublishAckFuture, PublishError, PublishErrorKind},
    message::PublishMessage,
    object_store, stream,
};
use bytes::Bytes;
use futures::StreamExt;
use mnemo_core::{
    ChainSummary, ChainVerifier, Content, ErasureTarget, Event, EventBody, Hash32, Head, KeyId,
    KeyRole, MemoryId, MemoryRecord, PublicKey, Seq, SigningKey, TimestampMs, UserId, commitment,
    memory::object_hash,
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

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
const MAX_TAGS: usize = 64;
const MAX_SHORT: usize = 256;

/// A memory to append.
#[derive(Clone, Debug, Default)]
pub struct NewMemory {
    /// `conversation`, `transcript`, `note`, `web`, `audio`, ...
    pub kind: String,
    /// Tags (at most 64, each at most 256 bytes).
    pub tags: Vec<String>,
    /// When it was captured.
    pub captured_at: Option<TimestampMs>,
    /// Where it came from.
    pub source: Option<String>,
    /// MIME type.
    pub content_type: String,
    /// The content.
    pub content: Bytes,
    /// Client-chosen idempotency key: the same key within the duplicate window gives the
    /// same receipt and no second event.
    pub idempotency_key: Option<String>,
}

/// Proof that an append is in the chain: returned only after JetStream acknowledged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Whose chain.
    pub user: UserId,
    /// The event's sequence number.
    pub seq: Seq,
    /// The event's hash.
    pub hash: Hash32,
    /// The memory, for memory events.
    pub memory: Option<MemoryId>,
    /// The JetStream stream sequence of the message.
    pub stream_seq: u64,
    /// `true` when this was a repeat of an earlier append (same idempotency key): the
    /// receipt is the original's and nothing new was written.
    pub duplicate: bool,
}

/// An event as stored, with its hash, stream position and sealed payload.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// The event.
    pub event: Event,
    /// Its hash.
    pub hash: Hash32,
    /// JetStream stream sequence.
    pub stream_seq: u64,
    /// The encrypted payload (empty for events without one).
    pub sealed: Bytes,
}

/// The last event of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTip {
    /// Number of events.
    pub len: u64,
    /// Hash of the last event.
    pub hash: Hash32,
    /// Its stream sequence.
    pub stream_seq: u64,
}

/// A decrypted memory, checked against its commitment.
#[derive(Clone, Debug)]
pub struct OpenedMemory {
    /// The memory id.
    pub memory: MemoryId,
    /// Its event's sequence number.
    pub seq: Seq,
    /// The record (for objects, `content` names the object's hash and size).
    pub record: MemoryRecord,
    /// The content bytes (read from the object store for large content).
    pub content: Bytes,
    /// The commitment salt: with `record`, it opens the event's payload commitment (what
    /// a custody export hands the auditor).
    pub salt: [u8; 32],
}

/// Counters of a [`Ledger`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Events sent while an earlier event of the same user was still in flight.
    pub pipelined: u64,
    /// Appends that found the chain moved by someone else and were rebuilt.
    pub conflicts: u64,
}

/// What [`Ledger::sweep_orphan_chunks`] purged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweptChunks {
    /// Objects' chunk subjects purged.
    pub objects: usize,
    /// Chunk messages purged.
    pub chunks: u64,
}

/// What this process knows of a user's chain, including its own events still in flight.
#[derive(Clone, Debug)]
struct HeadState {
    /// The chain as this process built it: its last events may not be acknowledged yet.
    head: Head,
    /// The stream sequence of `head`'s last event; exact only when nothing is in flight.
    stream_seq: u64,
    /// The custody key that must sign the next event.
    signer: KeyId,
    /// The generation key this process encrypts this user's memories with; dropped with
    /// the state on any conflict, so it is only used on top of heads this process built.
    generation: Option<Generation>,
    /// Events sent on top of this state whose acks have not come back.
    in_flight: usize,
    /// The highest stream sequence acknowledged for this state's events.
    acked: u64,
    /// The `Nats-Msg-Id` of the last event while it is in flight, when the next one may be
    /// pipelined behind it with `Nats-Expected-Last-Msg-Id` (per-user layout only).
    tail_id: Option<String>,
    /// Tells this state from a reloaded one: an ack of an event sent on an older state
    /// never touches a newer one.
    epoch: u64,
}

impl HeadState {
    fn at(head: Head, stream_seq: u64, signer: KeyId, epoch: u64) -> Self {
        Self {
            head,
            stream_seq,
            signer,
            generation: None,
            in_flight: 0,
            acked: stream_seq,
            tail_id: None,
            epoch,
        }
    }
}

/// One user's write slot in this process.
#[derive(Default)]
struct Slot {
    state: tokio::sync::Mutex<Option<HeadState>>,
    /// Appends of this user inside `write` (waiting for the slot or for their ack).
    writers: AtomicUsize,
    /// Woken whenever one of this user's events in flight is settled.
    settled: tokio::sync::Notify,
}

/// Leaves a slot's writer count when dropped.
struct Writer<'a>(&'a Slot);

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.0.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Drops a user's state if an event in flight is never settled (the appending task was
/// cancelled while waiting for its ack): appends queued behind it would otherwise wait
/// for good.
struct Unsettled {
    slot: Arc<Slot>,
    epoch: u64,
    armed: bool,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (slot, epoch) = (self.slot.clone(), self.epoch);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut state = slot.state.lock().await;
                if state.as_ref().is_some_and(|s| s.epoch == epoch) {
                    *state = None;
                }
                drop(state);
                slot.settled.notify_waiters();
            });
        }
    }
}

/// An event handed to the client, its ack still to come.
struct Sent {
    /// Also names the state the event was sent on (its epoch).
    unsettled: Unsettled,
    user: UserId,
    seq: Seq,
    hash: Hash32,
    memory: Option<MemoryId>,
    sealed_len: usize,
    ack: std::result::Result<PublishAckFuture, PublishError>,
}

/// A memory ready to be sealed: everything but the generation key.
struct PreparedMemory {
    memory: MemoryId,
    commitment: Hash32,
    /// With a client's idempotency key: a keyed hash of the request's record, sent as the
    /// `Mnemo-Request-Hash` header, so a key reused with another request is told apart from
    /// a retry (keyed by the master key: it says nothing about the content to a reader of
    /// the stream).
    request: Option<Hash32>,
    /// `u8 flag || [32 object key, when flag = 1] || salt || record` (docs/FORMAT.md §11).
    plain: zeroize::Zeroizing<Vec<u8>>,
}

const SEALED_V1: u8 = 1;
/// First byte of a memory's sealed plaintext (docs/FORMAT.md §11): content inline.
const PLAIN_INLINE: u8 = 0;
/// Content in the object store as one XChaCha20-Poly1305 box (written before streaming).
const PLAIN_OBJECT_BOX: u8 = 1;
/// Content in the object store, sealed as a chunked stream (`objects`).
const PLAIN_OBJECT_STREAMED: u8 = 2;

/// Splits a sealed payload into its generation id and AEAD box.
fn parse_sealed(sealed: &[u8]) -> Result<(u64, &[u8])> {
    if sealed.len() < 9 || sealed[0] != SEALED_V1 {
        return Err(LedgerError::Tampered(
            "sealed payload: unknown format".into(),
        ));
    }
    let id = u64::from_be_bytes(sealed[1..9].try_into().expect("8 bytes"));
    Ok((id, &sealed[9..]))
}

enum Outcome {
    Written(Receipt),
    /// The client's idempotency key was seen before: the earlier message's stream seq.
    Duplicate(u64),
    Conflict,
    /// The ack was lost: the event (chain seq, hash) may or may not be in.
    Unknown(Seq, Hash32),
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
    streams: Mutex<HashMap<String, stream::Stream>>,
    /// Open chain readers per user, bounded by `max_readers_per_user`.
    readers: Mutex<HashMap<UserId, Arc<tokio::sync::Semaphore>>>,
    /// Keys the request hashes of idempotent appends (derived once from the master key).
    request_key: [u8; 32],
}

fn now_ms() -> TimestampMs {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    TimestampMs(d.as_millis() as i64)
}

fn object_name(user: &UserId, m: &MemoryId) -> String {
    format!("{user}.{m}")
}
fn aad(what: &str, user: &UserId, m: Option<&MemoryId>) -> Vec<u8> {
    let mut a = format!("mnemo {what} v1\0{user}\0").into_bytes();
    if let Some(m) = m {
        a.extend_from_slice(&m.0);
    }
    a
}

fn next_signer(e: &Event) -> KeyId {
    match &e.body {
        EventBody::KeyRotated { new, .. } => new.id(),
        _ => e.signer,
    }
}

fn check_short(what: &str, s: &str) -> Result<()> {
    if s.len() > MAX_SHORT || s.chars().any(char::is_control) {
        return Err(LedgerError::InvalidInput(format!(
            "{what} must be at most {MAX_SHORT} bytes without control characters"
        )));
    }
    Ok(())
}

impl NewMemory {
    fn validate(&self, max_content: usize) -> Result<()> {
        if self.content.len() > max_content {
            return Err(LedgerError::PayloadTooLarge {
                size: self.content.len(),
                max: max_content,
            });
        }
        if self.kind.is_empty() {
            return Err(LedgerError::InvalidInput("kind must not be empty".into()));
        }
        check_short("kind", &self.kind)?;
        if self.content_type.is_empty() {
            return Err(LedgerError::InvalidInput(
                "content_type must not be empty".into(),
            ));
        }
        check_short("content_type", &self.content_type)?;
        if let Some(s) = &self.source {
            check_short("source", s)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(LedgerError::InvalidInput(format!(
                "at most {MAX_TAGS} tags"
            )));
        }
        for t in &self.tags {
            if t.is_empty() {
                return Err(LedgerError::InvalidInput("tags must not be empty".into()));
            }
            check_short("tag", t)?;
        }
        if self.captured_at.is_some_and(|t| !t.is_valid()) {
            return Err(LedgerError::InvalidInput(format!(
                "captured_at must be a time from {} to {} (ms since the epoch)",
                TimestampMs::MIN_VALID.0,
                TimestampMs::MAX_VALID.0
            )));
        }
        if mnemo_core::values::is_text(&self.content_type) && self.content.contains(&0) {
            return Err(LedgerError::InvalidInput(
                "text content must not contain U+0000".into(),
            ));
        }
        if let Some(k) = &self.idempotency_key
            && (k.is_empty()
                || k.len() > MAX_IDEMPOTENCY_KEY
                || !k.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(LedgerError::InvalidInput(format!(
                "idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            )));
        }
        Ok(())
    }
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
        let current_key = PublicKey(cfg.keys.current.verifying_key()).id();
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
                request_key: request_key(&cfg.master_key),
                cfg,
            }),
        };
        for (name, subjects) in ledger.inner.cfg.layout.shared_streams() {
            ledger.ensure_stream(&name, &subjects).await?;
        }
        Ok(ledger)
    }

    /// Purges object chunks that no object names, once their newest chunk is older than
    /// `older_than`: what an upload that failed half-way (client gone, too large without a
    /// `Content-Length`) left in the object store's stream. Such chunks are sealed under a
    /// key that was never stored, so nobody can read them; they only take space. Chunks of
    /// an upload still in progress have no object entry yet either: `older_than` must be
    /// longer than an upload may stall (`mnemo serve` sweeps hourly, with an hour's grace);
    /// an upload that stalled longer and then finished is refused, never committed to.
    pub async fn sweep_orphan_chunks(&self, older_than: Duration) -> Result<SweptChunks> {
        let named = || async {
            let mut list = self
                .inner
                .objects
                .list()
                .await
                .map_err(|e| LedgerError::nats("list objects", e))?;
            let mut nuids = std::collections::HashSet::new();
            while let Some(info) = list.next().await {
                nuids.insert(info.map_err(|e| LedgerError::nats("list objects", e))?.nuid);
            }
            Ok::<_, LedgerError>(nuids)
        };
        let before = named().await?;
        let (stream, chunks) = self.object_chunks(">").await?;
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let mut old = Vec::new();
        for (nuid, subject, count) in chunks {
            if before.contains(&nuid) {
                continue;
            }
            // the newest chunk: an upload still going on keeps adding them
            let last = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => m,
                // purged meanwhile (another sweeper, a failed upload's own clean-up)
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => continue,
                Err(e) => return Err(LedgerError::nats("last chunk", e)),
            };
            if last.time.unix_timestamp() <= cutoff {
                old.push((nuid, subject, count));
            }
        }
        // An upload that finished meanwhile has its object entry now: keep its chunks.
        let after = named().await?;
        let mut swept = SweptChunks::default();
        for (nuid, subject, count) in old {
            if after.contains(&nuid) {
                continue;
            }
            stream
                .purge()
                .filter(&subject)
                .await
                .map_err(|e| LedgerError::nats("purge chunks", e))?;
            swept.objects += 1;
            swept.chunks += count;
        }
        Ok(swept)
    }

    /// The object store's stream and its chunk subjects matching `nuid` (a nuid or `>`):
    /// `(nuid, subject, chunk messages)` for each.
    async fn object_chunks(
        &self,
        nuid: &str,
    ) -> Result<(stream::Stream, Vec<(String, String, u64)>)> {
        let stream = self
            .stream(&mnemo_core::names::object_stream(OBJECTS_BUCKET))
            .await?
            .ok_or_else(|| LedgerError::nats("object stream", "missing"))?;
        let prefix = mnemo_core::names::object_chunk_prefix(OBJECTS_BUCKET);
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}{nuid}"))
            .await
            .map_err(|e| LedgerError::nats("object chunks", e))?;
        let mut out = Vec::new();
        while let Some(s) = subjects.next().await {
            let (subject, count) = s.map_err(|e| LedgerError::nats("object chunks", e))?;
            let nuid = subject.strip_prefix(&prefix).unwrap_or_default().to_owned();
            out.push((nuid, subject, count as u64));
        }
        Ok((stream, out))
    }

    /// Counters since this ledger was connected.
    pub fn stats(&self) -> LedgerStats {
        LedgerStats {
            pipelined: self.inner.pipelined.load(Ordering::Relaxed),
            conflicts: self.inner.conflicts.load(Ordering::Relaxed),
        }
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
        self.inner
            .slots
            .lock()
            .expect("lock")
            .entry(user.clone())
            .or_default()
            .clone()
    }

    fn next_epoch(&self) -> u64 {
        self.inner.epochs.fetch_add(1, Ordering::Relaxed)
    }

    async fn load_head(&self, user: &UserId) -> Result<Option<HeadState>> {
        self.load_head_from(user, false).await
    }

    /// The chain's last message. A direct get, which on a cluster any replica answers, a
    /// lagging one with an older head or none yet: where that would do harm (a lost ack
    /// taken for a missing event, a new user taken for unknown) it is read from the stream
    /// leader, which holds every acknowledged write (`leader`, or when a replica knows no
    /// head at all).
    async fn load_head_from(&self, user: &UserId, leader: bool) -> Result<Option<HeadState>> {
        let loc = self.locate(user);
        let Some(stream) = self.stream(&loc.stream).await? else {
            return Ok(None);
        };
        let cluster = self.inner.cfg.replicas > 1;
        let direct = if leader && cluster {
            None
        } else {
            match stream
                .direct_get_last_for_subject(loc.subject.clone())
                .await
            {
                Ok(msg) => Some(msg),
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound && cluster => None,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(LedgerError::nats("direct get head", e)),
            }
        };
        let msg = match direct {
            Some(msg) => msg,
            None => match stream.get_last_raw_message_by_subject(&loc.subject).await {
                Ok(msg) => msg,
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(None);
                }
                Err(e) => return Err(LedgerError::nats("get head", e)),
            },
        };
        let (wire, _) = envelope::decode(&msg.payload)?;
        let (event, hash) = Event::from_wire(&wire)
            .map_err(|e| LedgerError::Tampered(format!("head of {user}: {e}")))?;
        if event.user != *user {
            return Err(LedgerError::Tampered(format!(
                "head of {user} names another user"
            )));
        }
        Ok(Some(HeadState::at(
            Head {
                user: user.clone(),
                len: event.seq.0,
                hash,
            },
            msg.sequence,
            next_signer(&event),
            self.next_epoch(),
        )))
    }

    /// The last event of `user`'s chain, read from the server (a direct get: on a cluster a
    /// lagging replica may answer with an older one).
    pub async fn head(&self, user: &UserId) -> Result<Option<ChainTip>> {
        Ok(self.load_head(user).await?.map(|s| ChainTip {
            len: s.head.len,
            hash: s.head.hash,
            stream_seq: s.stream_seq,
        }))
    }

    /// Builds the next event on `st`, hands it to the client for publishing and moves `st`
    /// on as if it were written, so that the next event can be pipelined behind it. Does
    /// not wait for the ack (see [`settle`](Self::settle)); never retries by itself. A
    /// memory is sealed here, under the state's generation key (started when there is none
    /// or it is used up). `st` is left as it was when this fails before publishing.
    ///
    /// The event is guarded by `Nats-Expected-Last-Subject-Sequence` when nothing is in
    /// flight, else by `Nats-Expected-Last-Msg-Id` naming the event in flight before it (a
    /// per-user stream holds nothing but the chain, so the stream's last message id is the
    /// chain's). With `pipeline`, the event gets a message id derived from its hash, which
    /// the next event can name.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        slot: &Arc<Slot>,
        st: &mut HeadState,
        key: &SigningKey,
        body: EventBody,
        memory: Option<&PreparedMemory>,
        client_key: Option<&str>,
        pipeline: bool,
        drop_generation: bool,
    ) -> Result<Sent> {
        let user = st.head.user.clone();
        let mut generation = st.generation.clone();
        let (payload, sealed) = match memory {
            None => (None, Vec::new()),
            Some(m) => {
                let mut g = match generation.take() {
                    Some(g) if g.used < GENERATION_SIZE => g,
                    _ => Box::pin(self.inner.keys.new_generation(&user, st.head.len + 1)).await?,
                };
                let mk = keystore::derive(&g.key, &m.memory);
                let mut sealed = Vec::with_capacity(9 + 40 + m.plain.len());
                sealed.push(SEALED_V1);
                sealed.extend_from_slice(&g.id.to_be_bytes());
                sealed
                    .extend_from_slice(&mk.seal(&aad("payload", &user, Some(&m.memory)), &m.plain));
                g.used += 1;
                generation = Some(g);
                (Some(m.commitment), sealed)
            }
        };
        let (event, hash) = st.head.next_event(key, now_ms(), body, payload, None);
        // Only a client's idempotency key is worth a dedup entry on the server: a lost ack
        // without one is resolved by looking for the event in the chain.
        let msg_id = match client_key {
            Some(k) => Some(format!("{user}:{k}")),
            // A space: no client key can produce it (keys are printable, without spaces).
            None if pipeline => Some(format!("{user} {}", hex::encode(&hash.0[..16]))),
            None => None,
        };
        let mut publish =
            PublishMessage::build().payload(envelope::encode(&event.to_wire(), &sealed));
        publish = match (st.in_flight, st.tail_id.as_deref()) {
            (0, _) => publish.expected_last_subject_sequence(st.stream_seq),
            (_, Some(tail)) => {
                self.inner.pipelined.fetch_add(1, Ordering::Relaxed);
                publish.expected_last_message_id(tail)
            }
            (_, None) => {
                return Err(LedgerError::nats(
                    "publish",
                    "internal: an event may only be pipelined behind a message id",
                ));
            }
        };
        if let Some(id) = &msg_id {
            publish = publish.message_id(id.clone());
        }
        if let (Some(_), Some(r)) = (client_key, memory.and_then(|m| m.request)) {
            publish = publish.header(REQUEST_HASH_HEADER, r.to_string().as_str());
        }
        let subject = self.locate(&user).subject;
        let ack = self.inner.js.send_publish(subject, publish).await;
        st.head.advance(&event, hash);
        st.signer = next_signer(&event);
        st.generation = if drop_generation { None } else { generation };
        st.in_flight += 1;
        // A client key's message id may already name an older message (a duplicate), so
        // nothing is pipelined behind it.
        st.tail_id = if client_key.is_none() { msg_id } else { None };
        Ok(Sent {
            unsettled: Unsettled {
                slot: slot.clone(),
                epoch: st.epoch,
                armed: true,
            },
            user,
            seq: event.seq,
            hash,
            memory: memory.map(|m| m.memory),
            sealed_len: sealed.len(),
            ack,
        })
    }

    /// Waits for a sent event's ack and brings the user's state up to date: on success it
    /// counts the event as written; on any failure it drops the state, so that the next
    /// append reloads the head from the server (events pipelined behind a failed one fail
    /// their guard and retry the same way).
    async fn settle<'s>(
        &self,
        slot: &'s Slot,
        mut sent: Sent,
        held: Option<tokio::sync::MutexGuard<'s, Option<HeadState>>>,
    ) -> Result<Outcome> {
        let res = match sent.ack {
            Ok(fut) => fut.await,
            Err(e) => Err(e),
        };
        let mut guard = match held {
            Some(g) => g,
            None => slot.state.lock().await,
        };
        let current = guard
            .as_ref()
            .is_some_and(|s| s.epoch == sent.unsettled.epoch);
        let outcome = match res {
            Ok(ack) if !ack.duplicate => {
                if let Some(st) = guard.as_mut().filter(|_| current) {
                    st.in_flight -= 1;
                    st.acked = st.acked.max(ack.sequence);
                    if st.in_flight == 0 {
                        st.stream_seq = st.acked;
                        st.tail_id = None;
                    }
                }
                Ok(Outcome::Written(Receipt {
                    user: sent.user,
                    seq: sent.seq,
                    hash: sent.hash,
                    memory: sent.memory,
                    stream_seq: ack.sequence,
                    duplicate: false,
                }))
            }
            other => {
                if current {
                    *guard = None;
                }
                match other {
                    Ok(ack) => Ok(Outcome::Duplicate(ack.sequence)),
                    Err(e) => match e.kind() {
                        PublishErrorKind::WrongLastSequence
                        | PublishErrorKind::WrongLastMessageId => Ok(Outcome::Conflict),
                        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                            Ok(Outcome::Unknown(sent.seq, sent.hash))
                        }
                        PublishErrorKind::MaxPayloadExceeded => Err(LedgerError::PayloadTooLarge {
                            size: sent.sealed_len,
                            max: self.inner.cfg.max_inline,
                        }),
                        _ if refused_by_limits(&e) => {
                            Err(LedgerError::ChainFull(sent.user.clone()))
                        }
                        _ => Err(LedgerError::nats("publish", e)),
                    },
                }
            }
        };
        drop(guard);
        sent.unsettled.armed = false;
        slot.settled.notify_waiters();
        outcome
    }

    /// The receipt of `user`'s event `seq` if it is `hash` (after a lost ack).
    async fn written_at(&self, user: &UserId, seq: Seq, hash: Hash32) -> Result<Option<Receipt>> {
        // From the leader: a lagging replica's older head would make a written event look
        // missing, and the memory would be written twice.
        let Some(tip) = self.load_head_from(user, true).await? else {
            return Ok(None);
        };
        let (len, tip_hash, tip_seq) = (tip.head.len, tip.head.hash, tip.stream_seq);
        if len < seq.0 || (len == seq.0 && tip_hash != hash) {
            return Ok(None);
        }
        let stream_seq = if len == seq.0 {
            tip_seq
        } else {
            let mut r = self.reader(user, seq, Some(tip_seq)).await?;
            match r.next().await? {
                Some(e) if e.event.seq == seq && e.hash == hash => e.stream_seq,
                _ => return Ok(None),
            }
        };
        let mut r = self.receipt_at(user, stream_seq, None).await?;
        r.duplicate = false;
        Ok(Some(r))
    }

    /// Appends `body` to `user`'s chain: builds on the cached head, publishes with a guard
    /// on the chain's last message, and on a conflict reloads the head and rebuilds.
    ///
    /// Appends to one user are pipelined in the per-user layout: an append sent while
    /// another is in flight names it with `Nats-Expected-Last-Msg-Id`, so the server stores
    /// it only right behind that very event. In the sharded layout the stream's last
    /// message id belongs to every user of the shard and the next stream sequence can not
    /// be predicted, so one event per user is in flight there (see docs/decisions/0008).
    /// Other processes are kept out by the server's checks. `new_generation_after` drops
    /// the generation key in use once the event is written (erasures); `after` makes the
    /// append conditional on the chain's head.
    async fn write(
        &self,
        user: &UserId,
        body: EventBody,
        memory: Option<&PreparedMemory>,
        msg_id: Option<&str>,
        new_generation_after: bool,
        after: Option<Hash32>,
    ) -> Result<Receipt> {
        let slot = self.slot(user);
        slot.writers.fetch_add(1, Ordering::SeqCst);
        let _writer = Writer(&slot);
        // The head the caller expects; moved along by a key rotation this call writes, so
        // that only someone else's write fails the condition.
        let mut expected = after;
        let keys = &self.inner.cfg.keys;
        let pipelines = self.inner.cfg.layout.stream_seq_is_chain_seq();
        let mut backoff = Duration::from_micros(200);
        let mut failures = 0;
        loop {
            if failures > self.inner.cfg.conflict_retries {
                return Err(LedgerError::Conflict(user.clone()));
            }
            let mut guard = slot.state.lock().await;
            if guard.is_none() {
                // Boxed, as are the other rare paths below: the common path's future
                // (allocated per request by the API) stays small.
                *guard = Box::pin(self.load_head(user)).await?;
            }
            let Some(st) = guard.as_mut() else {
                return Err(LedgerError::UnknownUser(user.clone()));
            };
            if st.in_flight > 0 && st.tail_id.is_none() {
                // Nothing to pipeline behind: wait until the events in flight are settled.
                let settled = slot.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                drop(guard);
                settled.await;
                continue;
            }
            if let Some(e) = expected
                && st.head.hash != e
            {
                return Err(LedgerError::HeadMoved(user.clone()));
            }
            let rotation = st.signer != self.inner.current_key;
            let (key, body_now) = if !rotation {
                (&keys.current, body.clone())
            } else {
                // The chain is still signed by an older key: hand over with a rotation
                // signed by that key, then write the event with the current one.
                let old = keys
                    .previous
                    .iter()
                    .find(|k| PublicKey(k.verifying_key()).id() == st.signer)
                    .ok_or_else(|| {
                        LedgerError::Tampered(format!(
                            "chain of {user} is signed by key {} which is not in the keyring",
                            st.signer
                        ))
                    })?;
                let rotation = EventBody::KeyRotated {
                    old: st.signer,
                    new: PublicKey(keys.current.verifying_key()),
                };
                (old, rotation)
            };
            let (m, id) = if rotation {
                (None, None)
            } else {
                (memory, msg_id)
            };
            let pipeline = pipelines && !rotation && slot.writers.load(Ordering::SeqCst) > 1;
            let drop_generation = !rotation && new_generation_after;
            let sent = self
                .send(&slot, st, key, body_now, m, id, pipeline, drop_generation)
                .await?;
            // Without pipelining, the next append of this user waits for the slot (a fair
            // queue) rather than for a wake-up after every ack.
            let held = if pipelines {
                drop(guard);
                None
            } else {
                Some(guard)
            };
            let written = match self.settle(&slot, sent, held).await? {
                Outcome::Written(r) => Some(r),
                Outcome::Duplicate(stream_seq) => {
                    let request = memory.and_then(|m| m.request);
                    return Box::pin(self.receipt_at(user, stream_seq, request)).await;
                }
                Outcome::Conflict => {
                    self.inner.conflicts.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                    None
                }
                Outcome::Unknown(seq, hash) => {
                    failures += 1;
                    Box::pin(self.written_at(user, seq, hash)).await?
                }
            };
            if let Some(r) = written {
                if !rotation {
                    return Ok(r);
                }
                if expected.is_some() {
                    expected = Some(r.hash);
                }
            }
        }
    }

    /// The receipt of the event at `stream_seq`, which a repeated idempotency key named; with
    /// `request`, the original must have been the same request.
    async fn receipt_at(
        &self,
        user: &UserId,
        stream_seq: u64,
        request: Option<Hash32>,
    ) -> Result<Receipt> {
        let loc = self.locate(user);
        let stream = self
            .stream(&loc.stream)
            .await?
            .ok_or_else(|| LedgerError::UnknownUser(user.clone()))?;
        let msg = match stream.direct_get(stream_seq).await {
            Ok(msg) => msg,
            // a lagging replica may not hold it yet: ask the leader (see `load_head_from`)
            Err(e)
                if e.kind() == stream::DirectGetErrorKind::NotFound
                    && self.inner.cfg.replicas > 1 =>
            {
                stream
                    .get_raw_message(stream_seq)
                    .await
                    .map_err(|e| LedgerError::nats("get", e))?
            }
            Err(e) => return Err(LedgerError::nats("direct get", e)),
        };
        if let (Some(want), Some(had)) = (request, msg.headers.get(REQUEST_HASH_HEADER))
            && had.as_str() != want.to_string()
        {
            return Err(LedgerError::IdempotencyKeyReused(user.clone()));
        }
        let (wire, _) = envelope::decode(&msg.payload)?;
        let (event, hash) =
            Event::from_wire(&wire).map_err(|e| LedgerError::Tampered(e.to_string()))?;
        if event.user != *user {
            return Err(LedgerError::Tampered("duplicate names another user".into()));
        }
        let memory = match event.body {
            EventBody::MemoryIngested { memory } => Some(memory),
            _ => None,
        };
        Ok(Receipt {
            user: user.clone(),
            seq: event.seq,
            hash,
            memory,
            stream_seq,
            duplicate: true,
        })
    }

    /// Creates `user`'s chain: its stream (per-user layout) and the genesis event that adds
    /// the ledger's custody key.
    pub async fn create_user(&self, user: &UserId) -> Result<Receipt> {
        let loc = self.locate(user);
        let subjects = self.inner.cfg.layout.stream_subjects(&loc);
        self.ensure_stream(&loc.stream, &subjects).await?;
        let slot = self.slot(user);
        let mut guard = slot.state.lock().await;
        if self.load_head(user).await?.is_some() {
            return Err(LedgerError::UserExists(user.clone()));
        }
        let mut st = HeadState::at(
            Head::empty(user.clone()),
            0,
            self.inner.current_key,
            self.next_epoch(),
        );
        let body = EventBody::KeyAdded {
            key: self.public_key(),
            role: KeyRole::Custody,
        };
        let keys = &self.inner.cfg.keys;
        let sent = self
            .send(
                &slot,
                &mut st,
                &keys.current,
                body,
                None,
                Some("genesis"),
                false,
                false,
            )
            .await?;
        *guard = Some(st);
        match self.settle(&slot, sent, Some(guard)).await? {
            Outcome::Written(r) => Ok(r),
            Outcome::Duplicate(_) | Outcome::Conflict => Err(LedgerError::UserExists(user.clone())),
            Outcome::Unknown(seq, hash) => self
                .written_at(user, seq, hash)
                .await?
                .ok_or_else(|| LedgerError::nats("create user", "ack lost")),
        }
    }

    /// Appends a memory: seals it under a key of its own and appends a `memory_ingested`
    /// event committing to it, in one JetStream message. Returns after JetStream
    /// acknowledged it. Content larger than `max_inline` goes to the object store.
    pub async fn append(&self, user: &UserId, mut m: NewMemory) -> Result<Receipt> {
        m.validate(self.inner.cfg.max_content)?;
        if m.content.len() <= self.inner.cfg.max_inline {
            let content = Content::Inline {
                bytes: m.content.to_vec(),
            };
            return self.append_record(user, m, content, None).await;
        }
        let content = std::mem::take(&mut m.content);
        let max = self.inner.cfg.max_content;
        // Boxed: the inline path's future stays small (it is allocated per API request).
        Box::pin(self.append_object(user, m, futures::stream::iter([Ok(content)]), max)).await
    }

    /// Appends a memory whose content arrives as a stream (uploads), at most `max` bytes
    /// (and at most the configured `max_content`). Content that fits inline is appended
    /// like [`append`](Self::append); larger content is encrypted chunk by chunk into the
    /// object store as it arrives, so it is never held in memory whole. `m.content` is
    /// ignored. Too much content gives [`LedgerError::PayloadTooLarge`] and writes nothing.
    pub async fn append_stream<S>(
        &self,
        user: &UserId,
        mut m: NewMemory,
        mut content: S,
        max: usize,
    ) -> Result<Receipt>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let max = max.min(self.inner.cfg.max_content);
        m.content = Bytes::new();
        m.validate(max)?;
        let mut first = bytes::BytesMut::new();
        loop {
            match content.next().await {
                Some(Ok(piece)) => {
                    first.extend_from_slice(&piece);
                    if first.len() > max {
                        return Err(LedgerError::PayloadTooLarge {
                            size: first.len(),
                            max,
                        });
                    }
                    if first.len() > self.inner.cfg.max_inline {
                        break;
                    }
                }
                Some(Err(e)) => {
                    return Err(LedgerError::InvalidInput(format!(
                        "reading the content: {e}"
                    )));
                }
                None => {
                    m.content = first.freeze();
                    return self.append(user, m).await;
                }
            }
        }
        let rest = futures::stream::iter([Ok(first.freeze())]).chain(content);
        self.append_object(user, m, rest, max).await
    }

    /// Streams content into the object store under a key of its own (which travels inside
    /// the sealed payload and is erased with it), then appends the memory committing to
    /// the content's hash and size.
    async fn append_object<S>(
        &self,
        user: &UserId,
        m: NewMemory,
        content: S,
        max: usize,
    ) -> Result<Receipt>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        // An unknown user is refused before the content is stored.
        if self.head(user).await?.is_none() {
            return Err(LedgerError::UnknownUser(user.clone()));
        }
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let memory = MemoryId(id);
        let object_key = SecretKey::random();
        let sealing = Arc::new(Mutex::new(objects::Sealing::default()));
        let sealed = objects::seal_stream(
            &object_key,
            aad("object", user, Some(&memory)),
            content,
            max as u64,
            sealing.clone(),
        );
        let mut reader = tokio_util::io::StreamReader::new(sealed);
        let name = object_name(user, &memory);
        let put = self.inner.objects.put(name.as_str(), &mut reader).await;
        let st = std::mem::take(&mut *sealing.lock().expect("lock"));
        let hash = match (put, st.hash) {
            (Ok(info), Some(hash)) if !st.too_large => {
                // A sweeper takes the chunks of an upload that stalled past its grace; never
                // commit to an object that is not whole.
                let (_, stored) = self.object_chunks(&info.nuid).await?;
                if stored.iter().map(|c| c.2).sum::<u64>() != info.chunks as u64 {
                    let _ = self.inner.objects.delete(name.as_str()).await;
                    return Err(LedgerError::nats(
                        "put object",
                        "chunks missing after the upload (it stalled past the sweeper's grace)",
                    ));
                }
                hash
            }
            (put, _) => {
                // Whatever was stored of it is of no use.
                let _ = self.inner.objects.delete(name.as_str()).await;
                return Err(if st.too_large {
                    LedgerError::PayloadTooLarge {
                        size: st.size as usize,
                        max,
                    }
                } else {
                    match put {
                        Err(e) => LedgerError::nats("put object", e),
                        Ok(_) => LedgerError::nats("put object", "content stream ended early"),
                    }
                });
            }
        };
        let content = Content::Object {
            hash,
            size: st.size,
        };
        self.append_record(user, m, content, Some((memory, object_key)))
            .await
    }

    /// Seals the record (and, for objects, the object key) and appends the event.
    async fn append_record(
        &self,
        user: &UserId,
        m: NewMemory,
        content: Content,
        object: Option<(MemoryId, SecretKey)>,
    ) -> Result<Receipt> {
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(
            80 + m.content.len() + m.kind.len() + m.content_type.len(),
        ));
        let memory = match &object {
            Some((memory, key)) => {
                plain.push(PLAIN_OBJECT_STREAMED);
                plain.extend_from_slice(key.expose());
                *memory
            }
            None => {
                plain.push(PLAIN_INLINE);
                let mut id = [0u8; 16];
                rand::thread_rng().fill_bytes(&mut id);
                MemoryId(id)
            }
        };
        let record = MemoryRecord {
            kind: m.kind,
            tags: m.tags,
            captured_at: m.captured_at,
            source: m.source,
            content_type: m.content_type,
            content,
        };
        // The format's value rules (mnemo-core) decide; the checks above only word it.
        record
            .check_values()
            .map_err(|r| LedgerError::InvalidInput(r.into()))?;
        let mut salt = [0u8; commitment::SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        let record_bytes = record.canonical_bytes();
        plain.extend_from_slice(&salt);
        plain.extend_from_slice(&record_bytes);
        let request = m
            .idempotency_key
            .as_ref()
            .map(|_| request_hash(&self.inner.request_key, user, &record_bytes));
        let prepared = PreparedMemory {
            memory,
            request,
            commitment: commitment::commit(&salt, &record_bytes),
            plain,
        };
        let receipt = self
            .write(
                user,
                EventBody::MemoryIngested { memory },
                Some(&prepared),
                m.idempotency_key.as_deref(),
                false,
                None,
            )
            .await;
        let unused = match &receipt {
            // A duplicate names an earlier event: ours was dropped, unless it is that very
            // event (its ack was lost and a retry with the client's key found it).
            Ok(r) => r.duplicate && r.memory != Some(memory),
            // Only a refusal before anything was sent is sure to have written nothing; after
            // an unanswered publish the event may be in the chain, and its object with it.
            Err(e) => e.refused_before_sending(),
        };
        if object.is_some() && unused {
            let _ = Box::pin(self.inner.objects.delete(object_name(user, &memory))).await;
        }
        receipt
    }

    /// Appends an event that is not a memory (grants, access records, key events) and
    /// carries no payload.
    pub async fn append_event(
        &self,
        user: &UserId,
        body: EventBody,
        idempotency_key: Option<&str>,
    ) -> Result<Receipt> {
        plain_event(&body)?;
        self.write(user, body, None, idempotency_key, false, None)
            .await
    }

    /// [`append_event`](Self::append_event) only if the chain's head is still `head`
    /// (its last event's hash): for events whose validity depends on the chain's state,
    /// such as an access record under a grant that must not have been revoked in between.
    /// Fails with [`LedgerError::HeadMoved`], writing nothing, when another event came first.
    pub async fn append_event_after(
        &self,
        user: &UserId,
        body: EventBody,
        head: Hash32,
    ) -> Result<Receipt> {
        plain_event(&body)?;
        self.write(user, body, None, None, false, Some(head)).await
    }

    /// Crypto-shredding. Appends a `memory_erased` event, then destroys the keys: for one
    /// memory, its generation key (after saving its siblings' keys); for `All`, every
    /// generation key that covers memories before the event. The ciphertext stays in the
    /// chain, which keeps verifying; nobody, mnemo included, can decrypt it again.
    ///
    /// The event comes first so that no concurrent append can still use a generation key
    /// being destroyed (see `keystore`). A crash between the event and the destruction
    /// leaves the memory readable until `erase` is called again, which then completes the
    /// destruction (and appends a second, harmless erasure event).
    pub async fn erase(&self, user: &UserId, target: ErasureTarget) -> Result<Receipt> {
        match &target {
            ErasureTarget::Memory(m) => {
                let m = &m.clone();
                let stored = self
                    .find_memory(user, m)
                    .await?
                    .ok_or(LedgerError::MemoryNotFound(*m))?;
                let (generation, _) = parse_sealed(&stored.sealed)?;
                if matches!(
                    self.inner.keys.memory_key(user, generation, m).await?,
                    MemoryKey::Erased
                ) {
                    return Err(LedgerError::Erased(*m));
                }
                let start = self
                    .inner
                    .keys
                    .generation_start(user, generation)
                    .await?
                    .unwrap_or(stored.event.seq.0);
                let receipt = self.write_erasure(user, &target).await?;
                // The generation's other memories, all between its start and the erasure.
                let mut survivors = Vec::new();
                let mut r = self.read(user, Seq(start)).await?;
                while let Some(e) = r.next().await? {
                    if e.event.seq >= receipt.seq {
                        break;
                    }
                    if let EventBody::MemoryIngested { memory } = e.event.body
                        && memory != *m
                        && parse_sealed(&e.sealed).is_ok_and(|(g, _)| g == generation)
                    {
                        survivors.push(memory);
                    }
                }
                self.inner
                    .keys
                    .shred_memory(user, generation, m, &survivors)
                    .await?;
                let _ = self.inner.objects.delete(object_name(user, m)).await;
                Ok(receipt)
            }
            ErasureTarget::All => {
                let receipt = self.write_erasure(user, &target).await?;
                let n = self.inner.keys.shred_user(user, receipt.seq.0).await?;
                tracing::info!(%user, keys = n, "erased every memory of a user");
                Ok(receipt)
            }
        }
    }

    /// Appends the erasure event; the generation key in use is dropped after it.
    async fn write_erasure(&self, user: &UserId, target: &ErasureTarget) -> Result<Receipt> {
        let body = EventBody::MemoryErased {
            target: target.clone(),
        };
        self.write(user, body, None, None, true, None).await
    }

    /// Reads `user`'s chain from `from` on, in order, up to its current end (nothing at
    /// all when `from` is past it: a read never waits for events not yet written).
    pub async fn read(&self, user: &UserId, from: Seq) -> Result<ChainReader> {
        let Some(tip) = self.head(user).await? else {
            return Err(LedgerError::UnknownUser(user.clone()));
        };
        let end = if from.0 > tip.len { 0 } else { tip.stream_seq };
        self.reader(user, from, Some(end)).await
    }

    /// Follows `user`'s chain from `from` on, including events appended later.
    pub async fn follow(&self, user: &UserId, from: Seq) -> Result<ChainReader> {
        self.reader(user, from, None).await
    }

    async fn reader(&self, user: &UserId, from: Seq, end: Option<u64>) -> Result<ChainReader> {
        let permit = {
            let mut readers = self.inner.readers.lock().expect("lock");
            let slots = readers.entry(user.clone()).or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    self.inner.cfg.max_readers_per_user.max(1),
                ))
            });
            slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| LedgerError::TooManyReads(user.clone()))?
        };
        let loc = self.locate(user);
        let stream = self
            .stream(&loc.stream)
            .await?
            .ok_or_else(|| LedgerError::UnknownUser(user.clone()))?;
        let deliver_policy = if self.inner.cfg.layout.stream_seq_is_chain_seq() {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.0.max(1),
            }
        } else {
            consumer::DeliverPolicy::All
        };
        let messages = if end == Some(0) {
            None
        } else {
            let c = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: loc.subject.clone(),
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| LedgerError::nats("create reader", e))?;
            Some(
                c.messages()
                    .await
                    .map_err(|e| LedgerError::nats("read chain", e))?,
            )
        };
        Ok(ChainReader {
            user: user.clone(),
            messages,
            from,
            end,
            done: false,
            _permit: permit,
        })
    }

    /// Reads up to `limit` events from `from` on.
    pub async fn events(&self, user: &UserId, from: Seq, limit: usize) -> Result<Vec<StoredEvent>> {
        let mut r = self.read(user, from).await?;
        let mut out = Vec::new();
        while out.len() < limit {
            match r.next().await? {
                Some(e) => out.push(e),
                None => break,
            }
        }
        Ok(out)
    }

    /// Replays and verifies `user`'s whole chain.
    pub async fn verify_chain(&self, user: &UserId) -> Result<ChainSummary> {
        let mut r = self.read(user, Seq::FIRST).await?;
        let mut v = ChainVerifier::new(user.clone());
        while let Some(e) = r.next().await? {
            v.push(&e.event, e.hash)?;
        }
        Ok(v.finish()?)
    }

    /// Finds a memory's event by scanning the chain (the projections index this; the
    /// ledger itself keeps no index).
    pub async fn find_memory(
        &self,
        user: &UserId,
        memory: &MemoryId,
    ) -> Result<Option<StoredEvent>> {
        let mut r = self.read(user, Seq::FIRST).await?;
        while let Some(e) = r.next().await? {
            if matches!(&e.event.body, EventBody::MemoryIngested { memory: m } if m == memory) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Decrypts a memory event's payload and checks it against the event's commitment (and,
    /// for large content, the object against the record's hash).
    pub async fn open_memory(&self, stored: &StoredEvent) -> Result<OpenedMemory> {
        self.open_memory_cached(stored, &mut KeyCache::default())
            .await
    }

    /// Fetches, concurrently, the keys that opening `events` will need into `cache`.
    pub async fn warm_keys(&self, events: &[&StoredEvent], cache: &mut KeyCache) -> Result<()> {
        let wanted = events
            .iter()
            .filter_map(|e| {
                parse_sealed(&e.sealed)
                    .ok()
                    .map(|(g, _)| (e.event.user.clone(), g))
            })
            .collect();
        self.inner.keys.warm(wanted, cache).await
    }

    /// [`open_memory`](Self::open_memory) for a batch: generation keys are looked up once
    /// per `cache` (drop the cache after the batch).
    pub async fn open_memory_cached(
        &self,
        stored: &StoredEvent,
        cache: &mut KeyCache,
    ) -> Result<OpenedMemory> {
        let OpenedStream {
            memory,
            seq,
            record,
            salt,
            size,
            mut content,
        } = self.open_memory_stream_cached(stored, cache).await?;
        let mut pieces = Vec::new();
        while let Some(piece) = content.next().await {
            pieces.push(piece.map_err(|e| content_error(&memory, e))?);
        }
        let content = match pieces.len() {
            1 => pieces.pop().expect("one"),
            _ => {
                let mut all = Vec::with_capacity(size as usize);
                pieces.iter().for_each(|p| all.extend_from_slice(p));
                Bytes::from(all)
            }
        };
        Ok(OpenedMemory {
            memory,
            seq,
            record,
            content,
            salt,
        })
    }

    /// Opens a memory event's payload (checked against the event's commitment) and its
    /// content as a stream: large content is read from the object store and decrypted chunk
    /// by chunk as the stream is polled, never held whole; the stream ends with an
    /// `InvalidData` error, before its last piece, if the object does not match the record's
    /// hash and size (FORMAT.md §11).
    pub async fn open_memory_stream(&self, stored: &StoredEvent) -> Result<OpenedStream> {
        self.open_memory_stream_cached(stored, &mut KeyCache::default())
            .await
    }

    /// [`open_memory_stream`](Self::open_memory_stream) with generation keys looked up once
    /// per `cache`.
    pub async fn open_memory_stream_cached(
        &self,
        stored: &StoredEvent,
        cache: &mut KeyCache,
    ) -> Result<OpenedStream> {
        let e = &stored.event;
        let user = &e.user;
        let EventBody::MemoryIngested { memory } = e.body else {
            return Err(LedgerError::InvalidInput("not a memory event".into()));
        };
        let Some(commit) = e.payload else {
            return Err(LedgerError::Tampered(
                "memory event without commitment".into(),
            ));
        };
        let (generation, sealed) = parse_sealed(&stored.sealed)?;
        let MemoryKey::Key(mk) = self
            .inner
            .keys
            .memory_key_cached(user, generation, &memory, cache)
            .await?
        else {
            return Err(LedgerError::Erased(memory));
        };
        let plain = mk
            .open(&aad("payload", user, Some(&memory)), sealed)
            .map_err(|_| {
                LedgerError::Tampered(format!("payload of memory {memory} does not decrypt"))
            })?;
        let (object_key, rest) = match plain.first() {
            Some(&PLAIN_INLINE) => (None, &plain[1..]),
            Some(&flag @ (PLAIN_OBJECT_BOX | PLAIN_OBJECT_STREAMED)) if plain.len() >= 33 => (
                Some((
                    flag,
                    SecretKey::from_bytes(plain[1..33].try_into().expect("32 bytes")),
                )),
                &plain[33..],
            ),
            _ => return Err(LedgerError::Tampered("payload: bad object flag".into())),
        };
        if rest.len() < 32 {
            return Err(LedgerError::Tampered("payload too short".into()));
        }
        let (salt, record_bytes) = rest.split_at(32);
        let salt: [u8; 32] = salt.try_into().expect("split at 32");
        if !commitment::opens(&commit, &salt, record_bytes) {
            return Err(LedgerError::Tampered(format!(
                "payload of memory {memory} does not match its commitment"
            )));
        }
        let record = MemoryRecord::decode(record_bytes)
            .map_err(|e| LedgerError::Tampered(format!("memory record: {e}")))?;
        let (size, content): (u64, ContentStream) = match (&record.content, object_key) {
            (Content::Inline { bytes }, None) => {
                let piece = Bytes::copy_from_slice(bytes);
                (
                    piece.len() as u64,
                    Box::pin(futures::stream::iter([Ok(piece)])),
                )
            }
            (&Content::Object { hash, size }, Some((flag, ok))) => {
                // Fetched when the stream is first polled: a caller after the record alone
                // (a projection) drops the stream and reads nothing from the object store.
                let objects = self.inner.objects.clone();
                let name = object_name(user, &memory);
                let object_aad = aad("object", user, Some(&memory));
                let opened = async move {
                    let mut obj = objects
                        .get(name)
                        .await
                        .map_err(|e| std::io::Error::other(format!("get object: {e}")))?;
                    if flag == PLAIN_OBJECT_STREAMED {
                        return Ok(objects::open_stream_reader(
                            &ok, object_aad, obj, hash, size,
                        ));
                    }
                    // one box (objects written before streaming): read whole
                    let mut sealed = Vec::new();
                    obj.read_to_end(&mut sealed).await?;
                    let content = ok
                        .open(&object_aad, &sealed)
                        .map_err(|_| objects::tampered("object does not decrypt"))?;
                    if object_hash(&content) != hash || content.len() as u64 != size {
                        return Err(objects::tampered("object does not match its hash"));
                    }
                    let piece = Bytes::copy_from_slice(&content);
                    Ok::<ContentStream, std::io::Error>(Box::pin(futures::stream::iter([Ok(
                        piece,
                    )])))
                };
                let content = futures::stream::once(opened)
                    .map(|r| match r {
                        Ok(s) => s,
                        Err(e) => Box::pin(futures::stream::iter([Err(e)])),
                    })
                    .flatten();
                (size, Box::pin(content))
            }
            _ => {
                return Err(LedgerError::Tampered(
                    "payload: object key and record disagree".into(),
                ));
            }
        };
        Ok(OpenedStream {
            memory,
            seq: e.seq,
            record,
            salt,
            size,
            content,
        })
    }
}

/// A memory's content as it is read and checked: pieces of plaintext, or an error that
/// ends it (`InvalidData` when the content does not match what the chain commits to).
pub type ContentStream = futures::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// A memory opened for streaming: the checked record and its content as a stream.
pub struct OpenedStream {
    /// The memory id.
    pub memory: MemoryId,
    /// Its event's sequence number.
    pub seq: Seq,
    /// The record (for objects, `content` names the object's hash and size).
    pub record: MemoryRecord,
    /// The commitment salt.
    pub salt: [u8; 32],
    /// Content bytes the stream yields in all.
    pub size: u64,
    /// The content.
    pub content: ContentStream,
}

/// A content stream's error as a ledger error.
pub fn content_error(memory: &MemoryId, e: std::io::Error) -> LedgerError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        LedgerError::Tampered(format!("content of memory {memory}: {e}"))
    } else {
        LedgerError::nats("read object", e)
    }
}

/// Reads a chain in order. [`next`](Self::next) returns `None` at the end of a bounded read;
/// a follow never ends.
pub struct ChainReader {
    user: UserId,
    messages: Option<consumer::pull::Ordered>,
    from: Seq,
    end: Option<u64>,
    done: bool,
    /// One of the user's reader slots, given back on drop. (The ordered consumer behind
    /// `messages` is ephemeral: the server removes it 30 s after its last pull.)
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ChainReader {
    /// The next event, decoded (not yet verified: feed it to a `ChainVerifier`).
    pub async fn next(&mut self) -> Result<Option<StoredEvent>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(messages) = self.messages.as_mut() else {
                return Ok(None);
            };
            let Some(msg) = messages.next().await else {
                return Ok(None);
            };
            let msg = msg.map_err(|e| LedgerError::nats("read chain", e))?;
            let stream_seq = msg
                .info()
                .map_err(|e| LedgerError::nats("message info", e))?
                .stream_sequence;
            if self.end.is_some_and(|end| stream_seq >= end) {
                self.done = true;
            }
            let (wire, sealed) = envelope::decode(&msg.payload)?;
            let (event, hash) = Event::from_wire(&wire).map_err(|e| {
                LedgerError::Tampered(format!("{} at stream seq {stream_seq}: {e}", self.user))
            })?;
            if event.seq < self.from {
                continue;
            }
            return Ok(Some(StoredEvent {
                event,
                hash,
                stream_seq,
                sealed,
            }));
        }
    }
}

/// The header carrying a request's keyed hash (see `PreparedMemory::request`).
const REQUEST_HASH_HEADER: &str = "Mnemo-Request-Hash";

/// The key of [`request_hash`], derived from the master key.
fn request_key(master: &SecretKey) -> [u8; 32] {
    blake3::derive_key("mnemo 2026-12-01 idempotency request v1", master.expose())
}

/// A keyed hash of a memory request's canonical record, for telling a retry from a reused
/// idempotency key.
fn request_hash(key: &[u8; 32], user: &UserId, record: &[u8]) -> Hash32 {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(user.as_str().as_bytes());
    h.update(&[0]);
    h.update(record);
    Hash32(*h.finalize().as_bytes())
}

/// Whether JetStream refused a publish because a stream limit is reached (per-subject
/// message count, stream bytes: error code 10077, "stream store failed", which a
/// `DiscardPolicy::New` stream answers at its limits), or the account's storage is full.
fn refused_by_limits(e: &async_nats::jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::ErrorCode;
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .is_some_and(|j| {
            let code = j.error_code();
            code == ErrorCode::STREAM_STORE_FAILED || code == ErrorCode::STORAGE_RESOURCES_EXCEEDED
        })
}

/// Refuses what `append_event` must not write: memories and erasures (they have their own
/// paths), and values outside FORMAT.md's ranges.
fn plain_event(body: &EventBody) -> Result<()> {
    if matches!(
        body,
        EventBody::MemoryIngested { .. } | EventBody::MemoryErased { .. }
    ) {
        return Err(LedgerError::InvalidInput(
            "use append for memories and erase for erasures".into(),
        ));
    }
    body.check_values()
        .map_err(|r| LedgerError::InvalidInput(r.into()))
}
