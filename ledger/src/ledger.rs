//! The ledger: creates chains, appends to them, erases, and reads them back.

use async_nats::jetstream::{
    self, consumer, context::PublishErrorKind, kv, message::PublishMessage, object_store, stream,
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;

use crate::config::LedgerConfig;
use crate::crypto::SecretKey;
use crate::envelope;
use crate::error::{LedgerError, Result};
use crate::layout::{ChainLocation, KEYS_BUCKET, OBJECTS_BUCKET};

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
const MAX_TAGS: usize = 64;
const MAX_SHORT: usize = 256;
const KEK_CACHE_TTL: Duration = Duration::from_secs(30);

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
}

#[derive(Clone, Debug)]
struct HeadState {
    head: Head,
    stream_seq: u64,
    /// The custody key that must sign the next event.
    signer: KeyId,
}

enum Attempt {
    Written(HeadState, Receipt),
    Duplicate(u64),
    Conflict,
    Unknown(Hash32),
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
    keys: kv::Store,
    objects: object_store::ObjectStore,
    heads: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<Option<HeadState>>>>>,
    streams: Mutex<HashMap<String, stream::Stream>>,
    keks: Mutex<HashMap<UserId, (Instant, SecretKey)>>,
}

fn now_ms() -> TimestampMs {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    TimestampMs(d.as_millis() as i64)
}

fn kek_key(user: &UserId) -> String {
    format!("u.{user}")
}
fn dek_key(user: &UserId, m: &MemoryId) -> String {
    format!("m.{user}.{m}")
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
        let kv_stream = format!("KV_{KEYS_BUCKET}");
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
                js.create_stream(stream::Config {
                    name: kv_stream.clone(),
                    description: Some("mnemo wrapped keys (user KEKs, memory DEKs)".into()),
                    subjects: vec![format!("$KV.{KEYS_BUCKET}.>")],
                    max_messages_per_subject: 1,
                    storage: stream::StorageType::File,
                    num_replicas: cfg.replicas,
                    discard: stream::DiscardPolicy::New,
                    allow_rollup: true,
                    allow_direct: true,
                    deny_delete: false,
                    deny_purge: false,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|e| LedgerError::nats("create key bucket", e))?;
            }
        }
        let keys = js
            .get_key_value(KEYS_BUCKET)
            .await
            .map_err(|e| LedgerError::nats("open key bucket", e))?;
        let objects = match js.get_object_store(OBJECTS_BUCKET).await {
            Ok(o) => o,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: OBJECTS_BUCKET.into(),
                    description: Some("mnemo encrypted large payloads".into()),
                    storage: stream::StorageType::File,
                    num_replicas: cfg.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| LedgerError::nats("create object store", e))?,
        };
        let current_key = PublicKey(cfg.keys.current.verifying_key()).id();
        let ledger = Self {
            inner: Arc::new(Inner {
                js,
                current_key,
                keys,
                objects,
                heads: Mutex::new(HashMap::new()),
                streams: Mutex::new(HashMap::new()),
                keks: Mutex::new(HashMap::new()),
                cfg,
            }),
        };
        for (name, subjects) in ledger.inner.cfg.layout.shared_streams() {
            ledger.ensure_stream(&name, &subjects).await?;
        }
        Ok(ledger)
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
        let s = self
            .inner
            .js
            .get_or_create_stream(self.stream_config(name, subjects))
            .await
            .map_err(|e| LedgerError::nats("create stream", e))?;
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
            Err(e) if e.to_string().contains("stream not found") => Ok(None),
            Err(e) => Err(LedgerError::nats("get stream", e)),
        }
    }

    fn head_lock(&self, user: &UserId) -> Arc<tokio::sync::Mutex<Option<HeadState>>> {
        self.inner
            .heads
            .lock()
            .expect("lock")
            .entry(user.clone())
            .or_default()
            .clone()
    }

    async fn load_head(&self, user: &UserId) -> Result<Option<HeadState>> {
        let loc = self.locate(user);
        let Some(stream) = self.stream(&loc.stream).await? else {
            return Ok(None);
        };
        match stream
            .direct_get_last_for_subject(loc.subject.clone())
            .await
        {
            Ok(msg) => {
                let (wire, _) = envelope::decode(&msg.payload)?;
                let (event, hash) = Event::from_wire(&wire)
                    .map_err(|e| LedgerError::Tampered(format!("head of {user}: {e}")))?;
                if event.user != *user {
                    return Err(LedgerError::Tampered(format!(
                        "head of {user} names another user"
                    )));
                }
                Ok(Some(HeadState {
                    signer: next_signer(&event),
                    head: Head {
                        user: user.clone(),
                        len: event.seq.0,
                        hash,
                    },
                    stream_seq: msg.sequence,
                }))
            }
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(LedgerError::nats("direct get head", e)),
        }
    }

    /// The last event of `user`'s chain, read from the server (direct get).
    pub async fn head(&self, user: &UserId) -> Result<Option<ChainTip>> {
        Ok(self.load_head(user).await?.map(|s| ChainTip {
            len: s.head.len,
            hash: s.head.hash,
            stream_seq: s.stream_seq,
        }))
    }

    /// Publishes one event built on `st`. Never retries by itself.
    async fn attempt(
        &self,
        st: &HeadState,
        key: &SigningKey,
        body: EventBody,
        payload: Option<Hash32>,
        sealed: &[u8],
        msg_id: Option<&str>,
    ) -> Result<Attempt> {
        let user = &st.head.user;
        let memory = match &body {
            EventBody::MemoryIngested { memory } => Some(*memory),
            _ => None,
        };
        let (event, hash) = st.head.next_event(key, now_ms(), body, payload, None);
        let id = match msg_id {
            Some(k) => format!("{user}:{k}"),
            None => hash.to_hex(),
        };
        let publish = PublishMessage::build()
            .payload(envelope::encode(&event.to_wire(), sealed))
            .message_id(id)
            .expected_last_subject_sequence(st.stream_seq);
        let subject = self.locate(user).subject;
        let ack = match self.inner.js.send_publish(subject, publish).await {
            Ok(fut) => fut.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) if ack.duplicate => Ok(Attempt::Duplicate(ack.sequence)),
            Ok(ack) => {
                let mut head = st.head.clone();
                head.advance(&event, hash);
                let receipt = Receipt {
                    user: user.clone(),
                    seq: event.seq,
                    hash,
                    memory,
                    stream_seq: ack.sequence,
                    duplicate: false,
                };
                let next = HeadState {
                    signer: next_signer(&event),
                    head,
                    stream_seq: ack.sequence,
                };
                Ok(Attempt::Written(next, receipt))
            }
            Err(e) => match e.kind() {
                PublishErrorKind::WrongLastSequence => Ok(Attempt::Conflict),
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                    Ok(Attempt::Unknown(hash))
                }
                PublishErrorKind::MaxPayloadExceeded => Err(LedgerError::PayloadTooLarge {
                    size: sealed.len(),
                    max: self.inner.cfg.max_inline,
                }),
                _ => {
                    let text = e.to_string();
                    if text.contains("maximum messages") || text.contains("maximum bytes") {
                        Err(LedgerError::ChainFull(user.clone()))
                    } else {
                        Err(LedgerError::nats("publish", e))
                    }
                }
            },
        }
    }

    /// Appends `body` to `user`'s chain: builds on the cached head, publishes with the
    /// expected last subject sequence, and on a conflict reloads the head and rebuilds.
    /// Appends to one user are serialised in this process; other processes are kept out
    /// by the server's sequence check.
    async fn write(
        &self,
        user: &UserId,
        body: EventBody,
        payload: Option<Hash32>,
        sealed: &[u8],
        msg_id: Option<&str>,
    ) -> Result<Receipt> {
        let lock = self.head_lock(user);
        let mut guard = lock.lock().await;
        let keys = &self.inner.cfg.keys;
        let mut backoff = Duration::from_micros(200);
        for _ in 0..=self.inner.cfg.conflict_retries {
            if guard.is_none() {
                *guard = self.load_head(user).await?;
            }
            let Some(st) = guard.clone() else {
                return Err(LedgerError::UnknownUser(user.clone()));
            };
            let (key, body_now, is_rotation) = if st.signer == self.inner.current_key {
                (&keys.current, body.clone(), false)
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
                (old, rotation, true)
            };
            let (p, s, id) = if is_rotation {
                (None, &[][..], None)
            } else {
                (payload, sealed, msg_id)
            };
            match self.attempt(&st, key, body_now, p, s, id).await? {
                Attempt::Written(next, receipt) => {
                    *guard = Some(next);
                    if !is_rotation {
                        return Ok(receipt);
                    }
                }
                Attempt::Duplicate(stream_seq) => {
                    *guard = None;
                    return self.receipt_at(user, stream_seq).await;
                }
                Attempt::Conflict => {
                    *guard = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Attempt::Unknown(hash) => {
                    // The ack was lost: the event may or may not be in. Look.
                    *guard = self.load_head(user).await?;
                    if let Some(st) = guard.as_ref()
                        && st.head.hash == hash
                    {
                        return self.receipt_at(user, st.stream_seq).await.map(|mut r| {
                            r.duplicate = false;
                            r
                        });
                    }
                }
            }
        }
        Err(LedgerError::Conflict(user.clone()))
    }

    async fn receipt_at(&self, user: &UserId, stream_seq: u64) -> Result<Receipt> {
        let loc = self.locate(user);
        let stream = self
            .stream(&loc.stream)
            .await?
            .ok_or_else(|| LedgerError::UnknownUser(user.clone()))?;
        let msg = stream
            .direct_get(stream_seq)
            .await
            .map_err(|e| LedgerError::nats("direct get", e))?;
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

    /// Creates `user`'s chain: its stream (per-user layout), its key-encryption key, and
    /// the genesis event that adds the ledger's custody key.
    pub async fn create_user(&self, user: &UserId) -> Result<Receipt> {
        let loc = self.locate(user);
        let subjects = self.inner.cfg.layout.stream_subjects(&loc);
        self.ensure_stream(&loc.stream, &subjects).await?;
        let kek = SecretKey::random();
        let wrapped = self
            .inner
            .cfg
            .master_key
            .wrap(&aad("kek", user, None), &kek);
        match self.inner.keys.create(kek_key(user), wrapped.into()).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(LedgerError::nats("store key", e)),
        }
        let lock = self.head_lock(user);
        let mut guard = lock.lock().await;
        if self.load_head(user).await?.is_some() {
            return Err(LedgerError::UserExists(user.clone()));
        }
        let st = HeadState {
            head: Head::empty(user.clone()),
            stream_seq: 0,
            signer: self.inner.current_key,
        };
        let body = EventBody::KeyAdded {
            key: self.public_key(),
            role: KeyRole::Custody,
        };
        let keys = &self.inner.cfg.keys;
        match self
            .attempt(&st, &keys.current, body, None, &[], Some("genesis"))
            .await?
        {
            Attempt::Written(next, receipt) => {
                *guard = Some(next);
                Ok(receipt)
            }
            Attempt::Duplicate(_) | Attempt::Conflict => {
                *guard = None;
                Err(LedgerError::UserExists(user.clone()))
            }
            Attempt::Unknown(hash) => {
                *guard = self.load_head(user).await?;
                match guard.as_ref() {
                    Some(s) if s.head.hash == hash => {
                        let seq = s.stream_seq;
                        drop(guard);
                        let mut r = self.receipt_at(user, seq).await?;
                        r.duplicate = false;
                        Ok(r)
                    }
                    _ => Err(LedgerError::nats("create user", "ack lost")),
                }
            }
        }
    }

    async fn kek(&self, user: &UserId) -> Result<Option<SecretKey>> {
        if let Some((t, k)) = self.inner.keks.lock().expect("lock").get(user)
            && t.elapsed() < KEK_CACHE_TTL
        {
            return Ok(Some(k.clone()));
        }
        let Some(wrapped) = self
            .inner
            .keys
            .get(kek_key(user))
            .await
            .map_err(|e| LedgerError::nats("get key", e))?
        else {
            return Ok(None);
        };
        let k = self
            .inner
            .cfg
            .master_key
            .unwrap_key(&aad("kek", user, None), &wrapped)
            .map_err(|_| LedgerError::Tampered(format!("key of {user} does not unwrap")))?;
        self.inner
            .keks
            .lock()
            .expect("lock")
            .insert(user.clone(), (Instant::now(), k.clone()));
        Ok(Some(k))
    }

    /// Appends a memory: encrypts it under a fresh data key, stores the wrapped data key,
    /// and appends a `memory_ingested` event committing to it. Returns after both are
    /// acknowledged by JetStream.
    pub async fn append(&self, user: &UserId, m: NewMemory) -> Result<Receipt> {
        m.validate(self.inner.cfg.max_content)?;
        let kek = self
            .kek(user)
            .await?
            .ok_or_else(|| LedgerError::UnknownUser(user.clone()))?;
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let memory = MemoryId(id);
        let dek = SecretKey::random();
        let content = if m.content.len() > self.inner.cfg.max_inline {
            let sealed = dek.seal(&aad("object", user, Some(&memory)), &m.content);
            self.inner
                .objects
                .put(object_name(user, &memory).as_str(), &mut sealed.as_slice())
                .await
                .map_err(|e| LedgerError::nats("put object", e))?;
            Content::Object {
                hash: object_hash(&m.content),
                size: m.content.len() as u64,
            }
        } else {
            Content::Inline {
                bytes: m.content.to_vec(),
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
        let mut salt = [0u8; commitment::SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let record_bytes = record.canonical_bytes();
        let commit = commitment::commit(&salt, &record_bytes);
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(32 + record_bytes.len()));
        plain.extend_from_slice(&salt);
        plain.extend_from_slice(&record_bytes);
        let sealed = dek.seal(&aad("payload", user, Some(&memory)), &plain);
        let wrapped = kek.wrap(&aad("dek", user, Some(&memory)), &dek);
        // The data key must be stored before the event exists: an acknowledged memory whose
        // key was lost would be silently erased.
        self.inner
            .keys
            .put(dek_key(user, &memory), wrapped.into())
            .await
            .map_err(|e| LedgerError::nats("store data key", e))?;
        let receipt = self
            .write(
                user,
                EventBody::MemoryIngested { memory },
                Some(commit),
                &sealed,
                m.idempotency_key.as_deref(),
            )
            .await;
        if !matches!(&receipt, Ok(r) if !r.duplicate) {
            // Nothing of ours was written (error or duplicate): drop the unused key/object.
            let _ = self.inner.keys.purge(dek_key(user, &memory)).await;
            if m.content.len() > self.inner.cfg.max_inline {
                let _ = self.inner.objects.delete(object_name(user, &memory)).await;
            }
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
        if matches!(
            body,
            EventBody::MemoryIngested { .. } | EventBody::MemoryErased { .. }
        ) {
            return Err(LedgerError::InvalidInput(
                "use append for memories and erase for erasures".into(),
            ));
        }
        self.write(user, body, None, &[], idempotency_key).await
    }

    /// Crypto-shredding. Destroys the memory's data key (or the user's key-encryption key
    /// and every data key) and then appends a `memory_erased` event. The ciphertext stays in
    /// the chain, which keeps verifying; nobody, mnemo included, can decrypt it again.
    pub async fn erase(&self, user: &UserId, target: ErasureTarget) -> Result<Receipt> {
        if self.kek(user).await?.is_none() {
            return Err(LedgerError::UnknownUser(user.clone()));
        }
        match &target {
            ErasureTarget::Memory(m) => {
                let entry = self
                    .inner
                    .keys
                    .entry(dek_key(user, m))
                    .await
                    .map_err(|e| LedgerError::nats("get data key", e))?;
                match entry {
                    Some(e) if e.operation == kv::Operation::Put => {
                        self.destroy_key_revision(e.revision).await?;
                    }
                    _ => {
                        return Err(match self.find_memory(user, m).await? {
                            Some(_) => LedgerError::Erased(*m),
                            None => LedgerError::MemoryNotFound(*m),
                        });
                    }
                }
                let _ = self.inner.objects.delete(object_name(user, m)).await;
            }
            ErasureTarget::All => {
                if let Some(e) = self
                    .inner
                    .keys
                    .entry(kek_key(user))
                    .await
                    .map_err(|e| LedgerError::nats("get key", e))?
                    && e.operation == kv::Operation::Put
                {
                    self.destroy_key_revision(e.revision).await?;
                }
                self.inner.keks.lock().expect("lock").remove(user);
                let kv_stream = self.keys_stream().await?;
                kv_stream
                    .purge()
                    .filter(format!("$KV.{KEYS_BUCKET}.m.{user}.>"))
                    .await
                    .map_err(|e| LedgerError::nats("purge data keys", e))?;
                // New memories after the erasure get a new key-encryption key.
                let kek = SecretKey::random();
                let wrapped = self
                    .inner
                    .cfg
                    .master_key
                    .wrap(&aad("kek", user, None), &kek);
                self.inner
                    .keys
                    .put(kek_key(user), wrapped.into())
                    .await
                    .map_err(|e| LedgerError::nats("store key", e))?;
            }
        }
        self.write(user, EventBody::MemoryErased { target }, None, &[], None)
            .await
    }

    async fn keys_stream(&self) -> Result<stream::Stream> {
        let name = format!("KV_{KEYS_BUCKET}");
        self.stream(&name)
            .await?
            .ok_or_else(|| LedgerError::nats("key bucket", "missing"))
    }

    /// Deletes one stored key message with the server's secure erase (the bytes are
    /// overwritten on disk, not only unlinked).
    async fn destroy_key_revision(&self, revision: u64) -> Result<()> {
        let s = self.keys_stream().await?;
        s.delete_message(revision)
            .await
            .map_err(|e| LedgerError::nats("erase key", e))?;
        Ok(())
    }

    /// Reads `user`'s chain from `from` on, in order, up to its current end.
    pub async fn read(&self, user: &UserId, from: Seq) -> Result<ChainReader> {
        let Some(tip) = self.head(user).await? else {
            return Err(LedgerError::UnknownUser(user.clone()));
        };
        self.reader(user, from, Some(tip.stream_seq)).await
    }

    /// Follows `user`'s chain from `from` on, including events appended later.
    pub async fn follow(&self, user: &UserId, from: Seq) -> Result<ChainReader> {
        self.reader(user, from, None).await
    }

    async fn reader(&self, user: &UserId, from: Seq, end: Option<u64>) -> Result<ChainReader> {
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
        let wrapped = self
            .inner
            .keys
            .get(dek_key(user, &memory))
            .await
            .map_err(|e| LedgerError::nats("get data key", e))?
            .ok_or(LedgerError::Erased(memory))?;
        let kek = self.kek(user).await?.ok_or(LedgerError::Erased(memory))?;
        let dek = kek
            .unwrap_key(&aad("dek", user, Some(&memory)), &wrapped)
            .map_err(|_| LedgerError::Erased(memory))?;
        let plain = dek
            .open(&aad("payload", user, Some(&memory)), &stored.sealed)
            .map_err(|_| {
                LedgerError::Tampered(format!("payload of memory {memory} does not decrypt"))
            })?;
        if plain.len() < 32 {
            return Err(LedgerError::Tampered("payload too short".into()));
        }
        let (salt, record_bytes) = plain.split_at(32);
        let salt: &[u8; 32] = salt.try_into().expect("split at 32");
        if !commitment::opens(&commit, salt, record_bytes) {
            return Err(LedgerError::Tampered(format!(
                "payload of memory {memory} does not match its commitment"
            )));
        }
        let record = MemoryRecord::decode(record_bytes)
            .map_err(|e| LedgerError::Tampered(format!("memory record: {e}")))?;
        let content = match &record.content {
            Content::Inline { bytes } => Bytes::copy_from_slice(bytes),
            Content::Object { hash, size } => {
                let mut obj = self
                    .inner
                    .objects
                    .get(object_name(user, &memory))
                    .await
                    .map_err(|e| LedgerError::nats("get object", e))?;
                let mut sealed = Vec::new();
                obj.read_to_end(&mut sealed)
                    .await
                    .map_err(|e| LedgerError::nats("read object", e))?;
                let content = dek
                    .open(&aad("object", user, Some(&memory)), &sealed)
                    .map_err(|_| LedgerError::Tampered("object does not decrypt".into()))?;
                if object_hash(&content) != *hash || content.len() as u64 != *size {
                    return Err(LedgerError::Tampered(
                        "object does not match its hash".into(),
                    ));
                }
                Bytes::copy_from_slice(&content)
            }
        };
        Ok(OpenedMemory {
            memory,
            seq: e.seq,
            record,
            content,
        })
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
