//! The sealed payload (docs/FORMAT.md §11): a memory's record and content sealed under its
//! user's generation key, committed to by the event (`append`), and opened again with the
//! commitment checked ([`OpenedMemory`], [`OpenedStream`]).

use super::*;
use mnemo_core::capture_marks::Recorded;

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

/// A memory ready to be sealed: everything but the generation key.
pub(super) struct PreparedMemory {
    pub(super) memory: MemoryId,
    pub(super) commitment: Hash32,
    /// With a client's idempotency key: a keyed hash of the request's record, sent as the
    /// `Mnemo-Request-Hash` header, so a key reused with another request is told apart from
    /// a retry (keyed by the master key: it says nothing about the content to a reader of
    /// the stream).
    pub(super) request: Option<Hash32>,
    /// The device's origin signature (the signed form of a capture).
    pub(super) origin: Option<Origin>,
    /// `u8 flag || [32 object key, when flag = 1] || salt || record` (docs/FORMAT.md §11).
    pub(super) plain: zeroize::Zeroizing<Vec<u8>>,
}

pub(super) const SEALED_V1: u8 = 1;

/// First byte of a memory's sealed plaintext (docs/FORMAT.md §11): content inline.
pub(super) const PLAIN_INLINE: u8 = 0;

/// Content in the object store as one XChaCha20-Poly1305 box (written before streaming).
pub(super) const PLAIN_OBJECT_BOX: u8 = 1;

/// Content in the object store, sealed as a chunked stream (`objects`).
pub(super) const PLAIN_OBJECT_STREAMED: u8 = 2;

/// Splits a sealed payload into its generation id and AEAD box.
pub(super) fn parse_sealed(sealed: &[u8]) -> Result<(u64, &[u8])> {
    if sealed.len() < 9 || sealed[0] != SEALED_V1 {
        return Err(LedgerError::Tampered(
            "sealed payload: unknown format".into(),
        ));
    }
    let id = u64::from_be_bytes(sealed[1..9].try_into().expect("8 bytes"));
    Ok((id, &sealed[9..]))
}

/// The commitment salt of an unsigned capture: keyed by a key derived from the master key,
/// so it is as unguessable as a random one, and fixed by the capture and its record.
fn capture_salt(key: &[u8; 32], user: &UserId, c: &Capture, record: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(b"capture salt\0");
    h.update(user.as_str().as_bytes());
    h.update(&[0]);
    h.update(c.stream.as_bytes());
    h.update(&[0]);
    h.update(&c.counter.to_be_bytes());
    h.update(record);
    *h.finalize().as_bytes()
}

pub(super) fn object_name(user: &UserId, m: &MemoryId) -> String {
    format!("{user}.{m}")
}

pub(super) fn aad(what: &str, user: &UserId, m: Option<&MemoryId>) -> Vec<u8> {
    let mut a = format!("mnemo {what} v1\0{user}\0").into_bytes();
    if let Some(m) = m {
        a.extend_from_slice(&m.0);
    }
    a
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

impl Ledger {
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

    /// Seals the record (and, for objects, the object key) and appends the event.
    pub(super) async fn append_record(
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
        let record_bytes = record.canonical_bytes();
        let salt = match (&m.signed, &m.capture) {
            (Some(s), _) => s.salt,
            // An unsigned capture's salt is a keyed hash of what it captured: a retry of it
            // commits to the same payload, a reuse of its id with other content does not.
            (None, Some(c)) => capture_salt(&self.inner.request_key, user, c, &record_bytes),
            (None, None) => {
                let mut salt = [0u8; commitment::SALT_LEN];
                rand::thread_rng().fill_bytes(&mut salt);
                salt
            }
        };
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
            origin: m.signed.map(|s| Origin {
                key: s.key,
                signature: s.signature,
            }),
            plain,
        };
        // Boxed: the write's state (the event, its seal job, the rules for a capture) is
        // several KiB, and the API allocates and moves an append's future per request.
        let receipt = Box::pin(self.write(
            user,
            EventBody::MemoryIngested {
                memory,
                capture: m.capture.clone(),
            },
            Some(&prepared),
            m.idempotency_key.as_deref(),
            false,
            None,
        ))
        .await;
        let receipt = match receipt {
            // The chain holds this capture already (the rules of FORMAT.md §8, replayed from
            // genesis): the same content is a retry, other content a reused id.
            Err(LedgerError::Refused(ChainError::DuplicateCapture { recorded, .. })) => {
                let (capture, origin) = (m.capture.as_ref(), prepared.origin.map(|o| o.key));
                Box::pin(self.capture_repeat(user, recorded, capture, origin, &prepared.commitment))
                    .await
            }
            other => other,
        };
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

    /// The capture id mnemo gives a device that names its capture by an idempotency key
    /// only (`Nats-Msg-Id`): its stream, and a counter from a keyed hash of the key, so the
    /// same key names the same capture for good.
    pub fn capture_for_key(&self, user: &UserId, stream: String, key: &str) -> Capture {
        let mut h = blake3::Hasher::new_keyed(&self.inner.request_key);
        h.update(b"capture counter\0");
        h.update(user.as_str().as_bytes());
        h.update(&[0]);
        h.update(stream.as_bytes());
        h.update(&[0]);
        h.update(key.as_bytes());
        let counter = u64::from_be_bytes(h.finalize().as_bytes()[..8].try_into().expect("8"));
        Capture { stream, counter }
    }

    /// The receipt of the capture first recorded at `first`, when it committed to the same
    /// payload; else the capture id was reused with other content.
    async fn capture_repeat(
        &self,
        user: &UserId,
        recorded: Recorded,
        capture: Option<&Capture>,
        origin: Option<KeyId>,
        commitment: &Hash32,
    ) -> Result<Receipt> {
        let (from, to) = match recorded {
            Recorded::At(s) => (s, s),
            Recorded::Within(a, b) => (a, b),
        };
        let Some(e) = self.find_capture(user, from, to, capture, origin).await? else {
            return Err(LedgerError::Tampered(format!(
                "the rules placed a capture of {user}'s chain {recorded}, which does not hold it"
            )));
        };
        let first = e.event.seq;
        if e.event.payload.as_ref() != Some(commitment) {
            return Err(LedgerError::CaptureReused {
                user: user.clone(),
                seq: first,
            });
        }
        let mut r = self.receipt_at(user, e.stream_seq, None).await?;
        r.duplicate = true;
        Ok(r)
    }

    /// The event in `from..=to` that recorded `capture` with `origin`: the rules keep the
    /// exact seq of a stream's latest captures only (mnemo-core's `capture_marks`), so a
    /// retry of an older one reads the range its run of counters spans, in batches.
    async fn find_capture(
        &self,
        user: &UserId,
        from: Seq,
        to: Seq,
        capture: Option<&Capture>,
        origin: Option<KeyId>,
    ) -> Result<Option<StoredEvent>> {
        const BATCH: u64 = 256;
        let mut at = from;
        while at <= to {
            let n = (to.0 - at.0 + 1).min(BATCH);
            let events = self.events(user, at, n as usize).await?;
            if events.is_empty() {
                break;
            }
            for e in events {
                let recorded = match &e.event.body {
                    EventBody::MemoryIngested { capture: c, .. } => c.as_ref(),
                    _ => None,
                };
                if recorded.is_some()
                    && recorded == capture
                    && e.event.origin.map(|o| o.key) == origin
                {
                    return Ok(Some(e));
                }
            }
            at = Seq(at.0 + n);
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
        // A memory's, or a question's (its text, sealed the same way).
        let Some(memory) = e.body.payload_id() else {
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
