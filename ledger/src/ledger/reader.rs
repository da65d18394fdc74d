//! Reading chains back: bounded reads and follows through ordered consumers, with a cap on
//! open readers per user ([`ChainReader`], [`StoredEvent`]), and `verify_chain`.

use super::*;

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

/// Reads a chain in order. [`next`](Self::next) returns `None` at the end of a bounded read;
/// a follow never ends.
pub struct ChainReader {
    user: UserId,
    messages: Option<consumer::pull::Ordered>,
    from: Seq,
    end: Option<u64>,
    done: bool,
    /// Resolves stored seals (format version 2).
    seals: crate::seals::SealStore,
    /// One of the user's reader slots, given back on drop. (The ordered consumer behind
    /// `messages` is ephemeral: the server removes it 30 s after its last pull.)
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ChainReader {
    /// The next event, decoded, its stored seal resolved into the full seal (not yet
    /// verified: feed it to a `ChainVerifier`).
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
            let event = self.seals.resolve(event).await?;
            return Ok(Some(StoredEvent {
                event,
                hash,
                stream_seq,
                sealed,
            }));
        }
    }
}

impl Ledger {
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

    pub(super) async fn reader(
        &self,
        user: &UserId,
        from: Seq,
        end: Option<u64>,
    ) -> Result<ChainReader> {
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
            seals: self.inner.seals.clone(),
            _permit: permit,
        })
    }

    /// Reads up to `limit` events from `from` on, up to the chain's current end, with
    /// direct gets (no consumer, no reader slot): a page of known seqs costs `limit` gets
    /// (per-user layout: by stream seq, 16 at a time; sharded layout: a binary search for
    /// the first, then the next on the subject each). A replica that lacks an event it
    /// should hold (it lags) sends the read to an ordered consumer instead.
    pub async fn events(&self, user: &UserId, from: Seq, limit: usize) -> Result<Vec<StoredEvent>> {
        let Some(tip) = self.head(user).await? else {
            return Err(LedgerError::UnknownUser(user.clone()));
        };
        let from = Seq(from.0.max(1));
        if from.0 > tip.len || limit == 0 {
            return Ok(Vec::new());
        }
        let last = tip.len.min(from.0.saturating_add(limit as u64 - 1));
        match self.events_direct(user, from, last, tip.stream_seq).await? {
            Some(events) => Ok(events),
            None => self.events_by_consumer(user, from, limit).await,
        }
    }

    /// Events `from..=last` by direct gets; `None` when one is missing (a lagging
    /// replica answered).
    async fn events_direct(
        &self,
        user: &UserId,
        from: Seq,
        last: u64,
        tip_stream_seq: u64,
    ) -> Result<Option<Vec<StoredEvent>>> {
        use futures::StreamExt as _;
        let loc = self.locate(user);
        let Some(stream) = self.stream(&loc.stream).await? else {
            return Err(LedgerError::UnknownUser(user.clone()));
        };
        let missing = |e: &stream::DirectGetError| e.kind() == stream::DirectGetErrorKind::NotFound;
        let mut out = Vec::with_capacity((last - from.0 + 1) as usize);
        if self.inner.cfg.layout.stream_seq_is_chain_seq() {
            let gets = (from.0..=last).map(|s| {
                let stream = stream.clone();
                async move { stream.direct_get(s).await }
            });
            let got: Vec<_> = futures::stream::iter(gets).buffered(16).collect().await;
            for m in got {
                match m {
                    Ok(m) => out.push(self.stored(user, m.sequence, &m.payload).await?),
                    Err(e) if missing(&e) => return Ok(None),
                    Err(e) => return Err(LedgerError::nats("direct get event", e)),
                }
            }
        } else {
            // The first user event at stream seq >= s (its stream seq and chain seq).
            let next = async |s: u64| -> Result<
                Option<(u64, async_nats::jetstream::message::StreamMessage)>,
            > {
                match stream
                    .direct_get_next_for_subject(loc.subject.clone(), Some(s.max(1)))
                    .await
                {
                    Ok(m) => Ok(Some((m.sequence, m))),
                    Err(e) if missing(&e) => Ok(None),
                    Err(e) => Err(LedgerError::nats("direct get event", e)),
                }
            };
            let chain_seq = |m: &async_nats::jetstream::message::StreamMessage| -> Result<u64> {
                let (wire, _) = envelope::decode(&m.payload)?;
                let (event, _) = Event::from_wire(&wire)
                    .map_err(|e| LedgerError::Tampered(format!("{user}: {e}")))?;
                Ok(event.seq.0)
            };
            // Binary search for chain seq `from` among the user's messages (stream seqs
            // 1..=tip): a chain's seqs grow with its stream seqs.
            let (mut lo, mut hi) = (1u64, tip_stream_seq);
            let mut at = None;
            while lo <= hi {
                let mid = lo + (hi - lo) / 2;
                let Some((q, m)) = next(mid).await? else {
                    return Ok(None);
                };
                let seq = chain_seq(&m)?;
                if seq == from.0 {
                    at = Some(m);
                    break;
                } else if seq < from.0 {
                    lo = q + 1;
                } else if mid == 0 {
                    break;
                } else {
                    hi = mid - 1;
                }
            }
            let Some(mut m) = at else { return Ok(None) };
            loop {
                let e = self.stored(user, m.sequence, &m.payload).await?;
                let done = e.event.seq.0 >= last;
                let stream_seq = e.stream_seq;
                out.push(e);
                if done {
                    break;
                }
                match next(stream_seq + 1).await? {
                    Some((_, n)) => m = n,
                    None => return Ok(None),
                }
            }
        }
        // Each event where it belongs, or the consumer's read decides.
        let in_order = out
            .iter()
            .zip(from.0..)
            .all(|(e, want)| e.event.seq.0 == want && e.event.user == *user);
        Ok(in_order.then_some(out))
    }

    /// A stored chain message, decoded, its seal resolved.
    async fn stored(&self, user: &UserId, stream_seq: u64, payload: &Bytes) -> Result<StoredEvent> {
        let (wire, sealed) = envelope::decode(payload)?;
        let (event, hash) = Event::from_wire(&wire).map_err(|e| {
            LedgerError::Tampered(format!("{user} at stream seq {stream_seq}: {e}"))
        })?;
        let event = self.inner.seals.resolve(event).await?;
        Ok(StoredEvent {
            event,
            hash,
            stream_seq,
            sealed,
        })
    }

    /// [`events`](Self::events) through an ordered consumer.
    async fn events_by_consumer(
        &self,
        user: &UserId,
        from: Seq,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
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
            if e.event.body.new_memory() == Some(*memory) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}
