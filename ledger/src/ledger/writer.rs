//! The write path: builds and signs the next event on the head this process knows, publishes
//! it with JetStream's expected-sequence headers (pipelined per user where the layout
//! allows), settles acks, reloads the head on conflicts, and recognises repeats by
//! idempotency key ([`Receipt`], `create_user`, `append_event`).

use super::*;
use mnemo_core::{Backoff, Custody, CustodyReceipt, SealedBatch, Sig};

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
    /// The event with its seal, verifiable alone (format version 2; `None` for a version 1
    /// event).
    pub custody: Option<CustodyReceipt>,
}

/// An event handed to the client, its ack still to come.
pub(super) struct Sent {
    /// Also names the state the event was sent on (its epoch).
    pub(super) unsettled: Unsettled,
    pub(super) user: UserId,
    pub(super) seq: Seq,
    pub(super) hash: Hash32,
    pub(super) memory: Option<MemoryId>,
    pub(super) sealed_len: usize,
    pub(super) ack: Ack,
}

/// Where a sent event's ack comes from.
pub(super) enum Ack {
    /// Published (format version 1).
    Now(std::result::Result<PublishAckFuture, PublishError>),
    /// Sealed alone and published, with its receipt (a rotation, format version 2).
    Signed(
        CustodyReceipt,
        std::result::Result<PublishAckFuture, PublishError>,
    ),
    /// With the sealer, which publishes it once its batch is sealed (format version 2).
    Sealing(tokio::sync::oneshot::Receiver<Result<sealer::Sealed>>),
}

pub(super) enum Outcome {
    Written(Box<Receipt>),
    /// The client's idempotency key was seen before: the earlier message's stream seq.
    Duplicate(u64),
    Conflict,
    /// The ack was lost: the event (chain seq, hash) may or may not be in.
    Unknown(Seq, Hash32),
}

/// The header carrying a request's keyed hash (see `PreparedMemory::request`).
pub(super) const REQUEST_HASH_HEADER: &str = "Mnemo-Request-Hash";

/// The key of [`request_hash`], derived from the master key.
pub(super) fn request_key(master: &SecretKey) -> [u8; 32] {
    blake3::derive_key("mnemo 2026-12-01 idempotency request v1", master.expose())
}

/// A keyed hash of a memory request's canonical record, for telling a retry from a reused
/// idempotency key.
pub(super) fn request_hash(key: &[u8; 32], user: &UserId, record: &[u8]) -> Hash32 {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(user.as_str().as_bytes());
    h.update(&[0]);
    h.update(record);
    Hash32(*h.finalize().as_bytes())
}

/// Whether JetStream refused a publish because a stream limit is reached (per-subject
/// message count, stream bytes: error code 10077, "stream store failed", which a
/// `DiscardPolicy::New` stream answers at its limits), or the account's storage is full.
pub(super) fn refused_by_limits(e: &async_nats::jetstream::context::PublishError) -> bool {
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
pub(super) fn plain_event(body: &EventBody) -> Result<()> {
    if matches!(
        body,
        EventBody::MemoryIngested { .. }
            | EventBody::MemoryErased { .. }
            | EventBody::MemoryDerived { .. }
            | EventBody::LineageErased { .. }
    ) {
        return Err(LedgerError::InvalidInput(
            "use append for memories, append_derived for results and erase for erasures".into(),
        ));
    }
    body.check_values()
        .map_err(|r| LedgerError::InvalidInput(r.into()))
}

impl Ledger {
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
    pub(super) async fn send(
        &self,
        slot: &Arc<Slot>,
        st: &mut HeadState,
        key: &SigningKey,
        body: EventBody,
        memory: Option<&PreparedMemory>,
        client_key: Option<&str>,
        pipeline: bool,
        drop_generation: bool,
        rules: Option<&mut ChainState>,
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
        let version = self.inner.cfg.format.max(st.version);
        let signer = if std::ptr::eq(key, &self.inner.cfg.keys.current) {
            self.inner.current_key
        } else {
            PublicKey(key.verifying_key()).id()
        };
        let (unsigned, hash) = st.head.next_unsigned(
            version,
            signer,
            now_ms(),
            body,
            payload,
            memory.and_then(|m| m.origin),
        );
        if let Some(rules) = rules {
            // Applied on success: a write that then does not land leaves the state ahead of
            // the chain, which `rules_at` notices and rebuilds. The rules do not read the
            // signature, which is made after them.
            let probe = Event {
                unsigned: unsigned.clone(),
                custody: Custody::Signature(Sig::from_bytes(&[0; 64])),
            };
            let sigs = rules.check(&probe, hash).map_err(LedgerError::Refused)?;
            // A device's signature is verified before the event is written: a bad one
            // would make the chain invalid at this event.
            if let Some(o) = sigs.origin
                && !mnemo_core::keys::verify_signature(o.key.as_bytes(), &o.msg, &o.sig.to_bytes())
            {
                return Err(LedgerError::InvalidInput(
                    "the device's capture signature does not verify (FORMAT.md §5.2)".into(),
                ));
            }
        }
        // Only a client's idempotency key is worth a dedup entry on the server: a lost ack
        // without one is resolved by looking for the event in the chain.
        let msg_id = match client_key {
            Some(k) => Some(format!("{user}:{k}")),
            // A space: no client key can produce it (keys are printable, without spaces).
            None if pipeline => Some(format!("{user} {}", hex::encode(&hash.0[..16]))),
            None => None,
        };
        let mut publish = PublishMessage::build();
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
        let seq = unsigned.seq;
        let next = match &unsigned.body {
            EventBody::KeyRotated { new, .. } => new.id(),
            _ => signer,
        };
        let sealed_len = sealed.len();
        let ack = if version == mnemo_core::FORMAT_V1 {
            let sig = mnemo_core::keys::sign_event_hash(key, &hash);
            let event = Event {
                unsigned,
                custody: Custody::Signature(sig),
            };
            let body = envelope::encode(&event.to_wire(), &sealed);
            Ack::Now(
                self.inner
                    .js
                    .send_publish(subject, publish.payload(body))
                    .await,
            )
        } else if signer == self.inner.current_key {
            // The sealer signs it with the events waiting beside it, and publishes the
            // batch's events in the order they came: this user's next event can be built
            // and handed over before this one is sealed.
            Ack::Sealing(self.inner.sealer.submit(sealer::Job::new(
                hash,
                unsigned.canonical_bytes(),
                sealed,
                subject,
                publish,
            ))?)
        } else {
            // A rotation, signed by the chain's old key: a batch of its own.
            let b = SealedBatch::sign(key, &[hash]);
            let receipt = CustodyReceipt::new(&unsigned, b.resolve(0));
            let event = Event {
                unsigned,
                custody: Custody::Seal(b.link(0, None)),
            };
            let body = envelope::encode(&event.to_wire(), &sealed);
            let ack = self
                .inner
                .js
                .send_publish(subject, publish.payload(body))
                .await;
            Ack::Signed(receipt, ack)
        };
        st.head.len = seq.0;
        st.head.hash = hash;
        st.signer = next;
        st.version = version;
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
            seq,
            hash,
            memory: memory.map(|m| m.memory),
            sealed_len,
            ack,
        })
    }

    /// Waits for a sent event's ack and brings the user's state up to date: on success it
    /// counts the event as written; on any failure it drops the state, so that the next
    /// append reloads the head from the server (events pipelined behind a failed one fail
    /// their guard and retry the same way).
    pub(super) async fn settle<'s>(
        &self,
        slot: &'s Slot,
        mut sent: Sent,
        held: Option<tokio::sync::MutexGuard<'s, Option<HeadState>>>,
    ) -> Result<Outcome> {
        let (res, receipt) = match sent.ack {
            Ack::Now(ack) => (ack, None),
            Ack::Signed(r, ack) => (ack, Some(r)),
            Ack::Sealing(rx) => match rx.await {
                Ok(Ok(sealed)) => (
                    sealed.ack,
                    Some(CustodyReceipt {
                        event: mnemo_core::custody::HexBytes(sealed.canonical),
                        seal: sealed.seal,
                    }),
                ),
                // Nothing of it was published (its batch's record was not stored): the
                // state is dropped, and events pipelined behind it fail their guard.
                other => {
                    let mut guard = match held {
                        Some(g) => g,
                        None => slot.state.lock().await,
                    };
                    if guard
                        .as_ref()
                        .is_some_and(|s| s.epoch == sent.unsettled.epoch)
                    {
                        *guard = None;
                    }
                    drop(guard);
                    sent.unsettled.armed = false;
                    slot.settled.notify_waiters();
                    return Err(match other {
                        Ok(Err(e)) => e,
                        _ => LedgerError::nats("seal", "the sealer stopped"),
                    });
                }
            },
        };
        let res = match res {
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
                Ok(Outcome::Written(Box::new(Receipt {
                    user: sent.user,
                    seq: sent.seq,
                    hash: sent.hash,
                    memory: sent.memory,
                    stream_seq: ack.sequence,
                    duplicate: false,
                    custody: receipt,
                })))
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
    pub(super) async fn written_at(
        &self,
        user: &UserId,
        seq: Seq,
        hash: Hash32,
    ) -> Result<Option<Receipt>> {
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
    pub(super) async fn write(
        &self,
        user: &UserId,
        body: EventBody,
        memory: Option<&PreparedMemory>,
        msg_id: Option<&str>,
        new_generation_after: bool,
        after: Option<Hash32>,
    ) -> Result<Receipt> {
        let kind = body.kind_name();
        let r = self
            .write_once(user, body, memory, msg_id, new_generation_after, after)
            .await?;
        // In the caller's span: a request's id (its trace id) joins this line to it.
        tracing::debug!(%user, seq = r.seq.0, kind, duplicate = r.duplicate, "ledger: event appended");
        Ok(r)
    }

    async fn write_once(
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
        let mut backoff = Backoff::new(Duration::from_micros(200), Duration::from_millis(50));
        let mut failures = 0;
        let mut reloaded = false;
        // Events whose validity depends on the chain's state are checked with core's rules
        // against the chain up to the head this append is tied to (the expected sequence
        // makes the server refuse it if that head moved). A new memory's only such rule is a
        // fresh id, which the ledger draws itself.
        // A capture is checked too: its id must be new in the chain, and its device's
        // signature must verify.
        let ruled = !matches!(body, EventBody::MemoryIngested { capture: None, .. });
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
            if st.in_flight > 0 && (st.tail_id.is_none() || ruled) {
                // Nothing to pipeline behind, or an event checked against the settled chain:
                // wait until the events in flight are settled.
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
            let mut rules = if ruled {
                let mut r = slot.rules.lock().await;
                Box::pin(self.rules_at(user, &mut r, &st.head)).await?;
                Some(r)
            } else {
                None
            };
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
                .send(
                    &slot,
                    st,
                    key,
                    body_now,
                    m,
                    id,
                    pipeline,
                    drop_generation,
                    rules.as_deref_mut().and_then(Option::as_mut),
                )
                .await;
            drop(rules);
            let sent = match sent {
                // The head this process knew may be behind the chain (another process
                // wrote): a refusal counts only against the head read from the stream.
                Err(LedgerError::Refused(_)) if !reloaded => {
                    reloaded = true;
                    *guard = None;
                    continue;
                }
                other => other?,
            };
            // Without pipelining, the next append of this user waits for the slot (a fair
            // queue) rather than for a wake-up after every ack.
            let held = if pipelines {
                drop(guard);
                None
            } else {
                Some(guard)
            };
            let written = match self.settle(&slot, sent, held).await? {
                Outcome::Written(r) => Some(*r),
                Outcome::Duplicate(stream_seq) => {
                    let request = memory.and_then(|m| m.request);
                    return Box::pin(self.receipt_at(user, stream_seq, request)).await;
                }
                Outcome::Conflict => {
                    self.inner.conflicts.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    tokio::time::sleep(backoff.next_wait()).await;
                    None
                }
                Outcome::Unknown(seq, hash) => {
                    failures += 1;
                    Box::pin(self.written_at(user, seq, hash)).await?
                }
            };
            if let Some(r) = written {
                if !rotation {
                    // A chain that grows by plain memories is never replayed by the rules
                    // (they check nothing of them): its snapshot is taken as it grows, so
                    // that a cold load after a restart replays at most about one interval.
                    if !ruled && r.seq.0 % self.inner.cfg.snapshot_every.max(1) == 0 {
                        self.snapshot_soon(user);
                    }
                    return Ok(r);
                }
                if expected.is_some() {
                    expected = Some(r.hash);
                }
            }
        }
    }

    /// The message at `stream_seq` of `user`'s chain stream (a direct get; from the leader
    /// when a lagging replica does not hold it yet, see `load_head_from`).
    pub(super) async fn message_at(
        &self,
        user: &UserId,
        stream_seq: u64,
    ) -> Result<async_nats::jetstream::message::StreamMessage> {
        let loc = self.locate(user);
        let stream = self
            .stream(&loc.stream)
            .await?
            .ok_or_else(|| LedgerError::UnknownUser(user.clone()))?;
        match stream.direct_get(stream_seq).await {
            Ok(msg) => Ok(msg),
            Err(e)
                if e.kind() == stream::DirectGetErrorKind::NotFound
                    && self.inner.cfg.replicas > 1 =>
            {
                stream
                    .get_raw_message(stream_seq)
                    .await
                    .map_err(|e| LedgerError::nats("get", e))
            }
            Err(e) => Err(LedgerError::nats("direct get", e)),
        }
    }

    /// The receipt of the event at `stream_seq`, which a repeated idempotency key named; with
    /// `request`, the original must have been the same request.
    pub(super) async fn receipt_at(
        &self,
        user: &UserId,
        stream_seq: u64,
        request: Option<Hash32>,
    ) -> Result<Receipt> {
        let msg = self.message_at(user, stream_seq).await?;
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
        let event = self.inner.seals.resolve(event).await?;
        let memory = event.body.new_memory();
        let custody = event.receipt(&hash);
        Ok(Receipt {
            user: user.clone(),
            seq: event.seq,
            hash,
            memory,
            stream_seq,
            duplicate: true,
            custody,
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
                None,
            )
            .await?;
        *guard = Some(st);
        match self.settle(&slot, sent, Some(guard)).await? {
            Outcome::Written(r) => Ok(*r),
            Outcome::Duplicate(_) | Outcome::Conflict => Err(LedgerError::UserExists(user.clone())),
            Outcome::Unknown(seq, hash) => self
                .written_at(user, seq, hash)
                .await?
                .ok_or_else(|| LedgerError::nats("create user", "ack lost")),
        }
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
}
