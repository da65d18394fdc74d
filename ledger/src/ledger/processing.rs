//! Processing under consent on the write path (docs/FORMAT.md §15): fetches recorded before
//! data leaves, results appended as derived memories (idempotent per processor, version and
//! inputs), models, and erasure that follows lineage. Each event is checked with core's
//! chain rules against the chain itself before it is written, so nothing the auditor would
//! refuse is ever appended.

use super::*;
use mnemo_core::processing::{self, ModelClaim};
use mnemo_core::{GrantId, ModelId, Sig};

/// A processor's result, as it hands it in: the derived record, the salt it chose, and
/// its signature over [`processing::derived_signing_message`].
#[derive(Clone, Debug)]
pub struct DerivedResult {
    /// The processor handing it in, when known (its grant must be this processor's).
    pub processor: Option<mnemo_core::ProcessorId>,
    /// The processing grant it worked under.
    pub grant: GrantId,
    /// The processor's version.
    pub version: String,
    /// The inputs, in ascending id order.
    pub inputs: Vec<MemoryId>,
    /// The derived record (inline content).
    pub record: MemoryRecord,
    /// The commitment salt the processor chose.
    pub salt: [u8; commitment::SALT_LEN],
    /// The processor's signature.
    pub signature: Sig,
}

/// The reason of the refusal of a result whose grant is another processor's.
pub const NOT_THIS_PROCESSOR: &str = "is not given to this processor";

/// A memory handed to a processor: what the fetch returns after it was recorded.
#[derive(Clone, Debug)]
pub struct FetchedInput {
    /// The opened memory.
    pub opened: OpenedMemory,
    /// Its event's hash (a training-set member is `(seq, event hash)`).
    pub event_hash: Hash32,
    /// Its event's timestamp (a grant's time conditions fall back on it).
    pub ingested_at: TimestampMs,
}

impl Ledger {
    /// Runs `f` on the chain's rule state, brought up to the chain's settled head.
    pub async fn with_rules<R>(
        &self,
        user: &UserId,
        f: impl FnOnce(&ChainState) -> R,
    ) -> Result<R> {
        let slot = self.slot(user);
        loop {
            let mut guard = slot.state.lock().await;
            if guard.is_none() {
                *guard = Box::pin(self.load_head(user)).await?;
            }
            let Some(st) = guard.as_ref() else {
                return Err(LedgerError::UnknownUser(user.clone()));
            };
            if st.in_flight > 0 {
                let settled = slot.settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                drop(guard);
                settled.await;
                continue;
            }
            let head = st.head.clone();
            let mut rules = slot.rules.lock().await;
            Box::pin(self.rules_at(user, &mut rules, &head)).await?;
            let state = rules.as_ref().expect("rules_at leaves a state");
            return Ok(f(state));
        }
    }

    /// The event that added `memory`, found through the chain's rule state (its seq) and
    /// read directly, without scanning the chain.
    pub async fn memory_event(&self, user: &UserId, memory: &MemoryId) -> Result<StoredEvent> {
        let seq = self
            .with_rules(user, |s| s.seq_of(memory))
            .await?
            .ok_or(LedgerError::MemoryNotFound(*memory))?;
        self.memory_event_at(user, memory, seq).await
    }

    /// The event that added `memory`, which the caller knows to be at `seq` (from
    /// [`with_rules`](Self::with_rules)); checked to be that memory's.
    pub async fn memory_event_at(
        &self,
        user: &UserId,
        memory: &MemoryId,
        seq: Seq,
    ) -> Result<StoredEvent> {
        let e = if self.inner.cfg.layout.stream_seq_is_chain_seq() {
            let msg = self.message_at(user, seq.0).await?;
            let (wire, sealed) = envelope::decode(&msg.payload)?;
            let (event, hash) =
                Event::from_wire(&wire).map_err(|e| LedgerError::Tampered(e.to_string()))?;
            StoredEvent {
                event: self.inner.seals.resolve(event).await?,
                hash,
                stream_seq: seq.0,
                sealed,
            }
        } else {
            self.events(user, seq, 1)
                .await?
                .pop()
                .ok_or(LedgerError::MemoryNotFound(*memory))?
        };
        if e.event.seq != seq || e.event.body.payload_id() != Some(*memory) {
            return Err(LedgerError::Tampered(format!(
                "the event at seq {seq} of {user} is not memory {memory}'s"
            )));
        }
        Ok(e)
    }

    /// Runs `f` on the chain's rule state as this process holds it, without waiting for
    /// the events in flight to settle: it may include some of them, or miss events another
    /// process wrote. For checks the write path repeats (a fetch before its record, a
    /// result before its append): the write decides. Falls back to
    /// [`with_rules`](Self::with_rules) when this process holds no state for the chain.
    pub async fn peek_rules<R>(
        &self,
        user: &UserId,
        f: impl FnOnce(&ChainState) -> R,
    ) -> Result<R> {
        let slot = self.slot(user);
        {
            let rules = slot.rules.lock().await;
            if let Some(state) = rules.as_ref() {
                return Ok(f(state));
            }
        }
        self.with_rules(user, f).await
    }

    /// Records that the processor of `grant` is handed `memories` (an `inputs_fetched`
    /// event), and only then opens them. The chain's rules refuse the record when the
    /// grant is not live, a memory is unknown or erased, or outside the grant's list; the
    /// caller checks the rest of the grant's conditions on the opened records first
    /// ([`open_for_processing`](Self::open_for_processing)).
    ///
    /// Fetches of the same user and grant that arrive while one is being written are
    /// recorded together, in one event (`fetch_batches`); each caller gets its receipt.
    pub async fn record_fetch(
        &self,
        user: &UserId,
        grant: GrantId,
        memories: Vec<MemoryId>,
    ) -> Result<Receipt> {
        self.record_fetch_batched(user, grant, memories).await
    }

    /// Writes one `inputs_fetched` naming `memories`.
    pub(super) async fn record_fetch_now(
        &self,
        user: &UserId,
        grant: GrantId,
        mut memories: Vec<MemoryId>,
    ) -> Result<Receipt> {
        memories.sort();
        memories.dedup();
        self.write(
            user,
            EventBody::InputsFetched { grant, memories },
            None,
            None,
            false,
            None,
        )
        .await
    }

    /// Opens a memory for a processor's fetch (without recording: see
    /// [`record_fetch`](Self::record_fetch)), with its event's hash.
    pub async fn open_for_processing(
        &self,
        user: &UserId,
        memory: &MemoryId,
        seq: Option<Seq>,
    ) -> Result<FetchedInput> {
        let stored = match seq {
            Some(seq) => self.memory_event_at(user, memory, seq).await?,
            None => self.memory_event(user, memory).await?,
        };
        let opened = self.open_memory(&stored).await?;
        Ok(FetchedInput {
            opened,
            event_hash: stored.hash,
            ingested_at: stored.event.timestamp,
        })
    }

    /// Appends a processor's result as a `memory_derived` event, sealed like any memory.
    /// A result for the same processor, version and inputs as an earlier one returns the
    /// earlier receipt (`duplicate: true`), whatever its bytes: a redelivered task adds
    /// nothing. A forged signature, inputs the grant's fetches do not cover, a grant that
    /// is not live: refused with nothing written.
    pub async fn append_derived(&self, user: &UserId, r: DerivedResult) -> Result<Receipt> {
        r.record
            .check_values()
            .map_err(|e| LedgerError::InvalidInput(e.into()))?;
        let Content::Inline { bytes } = &r.record.content else {
            return Err(LedgerError::InvalidInput(
                "a derived record carries its content inline".into(),
            ));
        };
        if bytes.len() > self.inner.cfg.max_inline {
            return Err(LedgerError::PayloadTooLarge {
                size: bytes.len(),
                max: self.inner.cfg.max_inline,
            });
        }
        if !processing::strictly_ascending(&r.inputs) {
            return Err(LedgerError::InvalidInput(
                "inputs must be listed in ascending id order, once each".into(),
            ));
        }
        let record_bytes = r.record.canonical_bytes();
        let commitment = commitment::commit(&r.salt, &record_bytes);
        let look = |s: &ChainState| {
            let g = s.processing_grant(&r.grant).cloned();
            let earlier = g.as_ref().and_then(|g| {
                s.derivation(&processing::derivation_key(
                    &g.processor,
                    &r.version,
                    &r.inputs,
                ))
            });
            (g, earlier)
        };
        // The state this process holds (the write checks again); the settled chain when it
        // does not know the grant.
        let mut found = self.peek_rules(user, look).await?;
        // An earlier result seen there may still be in flight: a repeat is answered from
        // the settled chain only.
        if found.0.is_none() || found.1.is_some() {
            found = self.with_rules(user, look).await?;
        }
        let (grant, earlier) = found;
        let grant = grant.ok_or(LedgerError::Refused(ChainError::BadGrant {
            seq: Seq(0),
            grant: r.grant,
            reason: "is not a processing grant of this chain",
        }))?;
        let msg = processing::derived_signing_message(
            user,
            &r.grant,
            &grant.processor,
            &r.version,
            &r.inputs,
            &commitment,
        );
        if !processing::verify(&grant.key, &msg, &r.signature) {
            return Err(LedgerError::Refused(ChainError::BadProcessorSignature {
                seq: Seq(0),
            }));
        }
        if r.processor.as_ref().is_some_and(|p| *p != grant.processor) {
            return Err(LedgerError::Refused(ChainError::BadGrant {
                seq: Seq(0),
                grant: r.grant,
                reason: NOT_THIS_PROCESSOR,
            }));
        }
        if let Some(original) = earlier {
            return self.receipt_of_memory(user, &original).await;
        }
        let key = processing::derivation_key(&grant.processor, &r.version, &r.inputs);
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let memory = MemoryId(id);
        let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(40 + record_bytes.len()));
        plain.push(PLAIN_INLINE);
        plain.extend_from_slice(&r.salt);
        plain.extend_from_slice(&record_bytes);
        let prepared = PreparedMemory {
            memory,
            request: None,
            commitment,
            origin: None,
            plain,
        };
        let body = EventBody::MemoryDerived {
            memory,
            grant: r.grant,
            version: r.version,
            inputs: r.inputs,
            signature: r.signature,
        };
        let msg_id = format!("derived-{}", hex::encode(&key.0[..16]));
        match self
            .write(user, body, Some(&prepared), Some(&msg_id), false, None)
            .await
        {
            // Written by another instance between the look-up and the write.
            Err(LedgerError::Refused(ChainError::AlreadyDerived { original, .. })) => {
                self.receipt_of_memory(user, &original).await
            }
            other => other,
        }
    }

    /// The receipt of the event that added `memory` (`duplicate: true`).
    async fn receipt_of_memory(&self, user: &UserId, memory: &MemoryId) -> Result<Receipt> {
        let e = self.memory_event(user, memory).await?;
        Ok(Receipt {
            user: user.clone(),
            seq: e.event.seq,
            hash: e.hash,
            memory: Some(*memory),
            stream_seq: e.stream_seq,
            duplicate: true,
            custody: e.event.receipt(&e.hash),
        })
    }

    /// Appends a `model_trained` event after checking the processor's signature.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_model(
        &self,
        user: &UserId,
        grant: GrantId,
        version: String,
        artifact: Hash32,
        set: &processing::TrainingSet,
        signature: Sig,
    ) -> Result<(ModelId, Receipt)> {
        let g = self
            .with_rules(user, |s| s.processing_grant(&grant).cloned())
            .await?
            .ok_or(LedgerError::Refused(ChainError::BadGrant {
                seq: Seq(0),
                grant,
                reason: "is not a processing grant of this chain",
            }))?;
        let (set_root, set_count) = (set.root(), set.count());
        let msg = processing::model_signing_message(&ModelClaim {
            user,
            grant: &grant,
            processor: &g.processor,
            version: &version,
            artifact: &artifact,
            set_root: &set_root,
            set_count,
        });
        if !processing::verify(&g.key, &msg, &signature) {
            return Err(LedgerError::Refused(ChainError::BadProcessorSignature {
                seq: Seq(0),
            }));
        }
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let model = ModelId(id);
        let body = EventBody::ModelTrained {
            model,
            grant,
            version,
            artifact,
            set_root,
            set_count,
            // Published (tag 0x41): the chain alone shows what the model was trained on.
            set: Some(set.members().iter().map(|m| m.seq).collect()),
            signature,
        };
        let receipt = self.write(user, body, None, None, false, None).await?;
        Ok((model, receipt))
    }

    /// Erases `memory` and its lineage closure: a `lineage_erased` event naming every
    /// memory derived from it that is not erased yet (or a plain `memory_erased` when
    /// there is none), then each one's key is destroyed. Returns the receipt and the
    /// closure.
    pub async fn erase_lineage(
        &self,
        user: &UserId,
        memory: &MemoryId,
        reason: &str,
    ) -> Result<(Receipt, Vec<MemoryId>)> {
        let (known, erased, closure) = self
            .with_rules(user, |s| {
                (s.has_memory(memory), s.is_erased(memory), s.closure(memory))
            })
            .await?;
        if !known {
            return Err(LedgerError::MemoryNotFound(*memory));
        }
        if closure.is_empty() || erased {
            let receipt = self.erase(user, ErasureTarget::Memory(*memory)).await?;
            return Ok((receipt, Vec::new()));
        }
        let body = EventBody::LineageErased {
            memory: *memory,
            reason: reason.into(),
            closure: closure.clone(),
        };
        let receipt = self.write(user, body, None, None, true, None).await?;
        for m in std::iter::once(memory).chain(&closure) {
            self.shred_one(user, m, receipt.seq).await?;
        }
        Ok((receipt, closure))
    }
}
