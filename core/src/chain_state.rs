//! A chain's state between events, and the rules that move it: the one place that decides
//! whether an event may extend a chain (docs/FORMAT.md §8), signatures aside.
//!
//! [`ChainState::check`] checks an event against the state (user, gap-free seq, `prev`
//! link, genesis, signer and origin-key authority, payload presence, and the kind rules for
//! keys, memories, erasures, grants and access records) and, when it passes, applies it and
//! returns the signatures still to verify ([`SignatureCheck`]). Verifying them is the
//! caller's (in batches, on other threads). The auditor's [`ChainVerifier`] and the
//! projector both hold a `ChainState`: the verifier from genesis, the projector resumed from
//! the checkpoint its view holds ([`ChainState::resume`]), so both refuse exactly the same
//! events for the same reason.
//!
//! [`ChainVerifier`]: crate::verify::ChainVerifier

use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::{HashMap, HashSet};

mod consent;

use crate::capture_marks::CaptureMarks;
use crate::checkpoint::Checkpoint;
use crate::error::ChainError;
use crate::event::{AccessAction, Custody, ErasureTarget, Event, EventBody};
use crate::grant::Grant;
use crate::ids::{GrantId, Hash32, KeyId, MemoryId, ModelId, Seq, UserId};
use crate::keys::{self, KeyHistory, KeyRecord, KeyRole, KeyRuleError};
use crate::merkle::{Accumulator, CHAIN_TREE};
use crate::processing::{self, ModelClaim, ProcessingGrant};
use crate::seal::SealCheck;

/// Whose signature a [`SignatureCheck`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signed {
    /// The custody key's, over the event hash.
    Custody,
    /// The capturing device's, over the payload commitment.
    Origin,
    /// The processor's, over its result (`memory_derived`, `model_trained`).
    Processor,
}

/// A signature an accepted event still needs verified.
#[derive(Clone, Debug)]
pub struct SignatureCheck {
    /// The event's seq.
    pub seq: Seq,
    /// Whose signature it is.
    pub by: Signed,
    /// The signed message.
    pub msg: Vec<u8>,
    /// The signature.
    pub sig: Signature,
    /// The key it must verify under.
    pub key: VerifyingKey,
}

impl SignatureCheck {
    /// The error a failure of this signature is.
    pub fn error(&self) -> ChainError {
        match self.by {
            Signed::Custody => ChainError::BadSignature { seq: self.seq },
            Signed::Origin => ChainError::BadOriginSignature { seq: self.seq },
            Signed::Processor => ChainError::BadProcessorSignature { seq: self.seq },
        }
    }
}

/// The signatures of one event: its custody signature and, for a device capture, the
/// origin signature, or for a processor's result, the processor's.
#[derive(Clone, Debug)]
pub struct EventSignatures {
    /// The custody signature.
    pub custody: SignatureCheck,
    /// The origin or processor signature, if the event has one.
    pub origin: Option<SignatureCheck>,
}

impl IntoIterator for EventSignatures {
    type Item = SignatureCheck;
    type IntoIter =
        std::iter::Chain<std::iter::Once<SignatureCheck>, std::option::IntoIter<SignatureCheck>>;
    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self.custody).chain(self.origin)
    }
}

/// What a chain's rules need to remember: where it ends, its chain tree, its keys, its
/// memories and its grants. Bounded by the number of keys, memories and grants, not events.
#[derive(Clone, Debug)]
pub struct ChainState {
    pub(crate) user: UserId,
    pub(crate) next: Seq,
    pub(crate) prev: Hash32,
    pub(crate) acc: Accumulator,
    pub(crate) keys: KeyHistory,
    pub(crate) memories: HashSet<MemoryId>,
    /// The captures recorded, per capture stream (origin key or none, stream name), as
    /// compact marks: runs of counters and the latest captures.
    pub(crate) captures: HashMap<(Option<KeyId>, String), CaptureMarks>,
    /// The seq of each memory's event, for the memories this state applied itself (a
    /// resumed state knows only those after its resume point).
    pub(crate) memory_seq: HashMap<MemoryId, Seq>,
    /// `memory_seq` holds every memory whose event is at or after this seq (1 unless the
    /// state was resumed from a view).
    pub(crate) seqs_from: Seq,
    pub(crate) grants: HashMap<GrantId, Grant>,
    pub(crate) processing: Processing,
    /// The format version of the last event: a chain never goes back to a lower one.
    pub(crate) version: u8,
}

/// What the processing rules remember (docs/FORMAT.md §15): processing grants, what each
/// fetched, derivations and lineage, erasures, models. A view keeps it whole (serialised)
/// to resume a chain with [`ChainState::restore_processing`].
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Processing {
    grants: HashMap<GrantId, ProcessingGrant>,
    /// Derived memory -> its inputs.
    parents: HashMap<MemoryId, Vec<MemoryId>>,
    fetched: HashMap<GrantId, HashSet<MemoryId>>,
    /// Derivation key -> the memory that result is.
    derivations: HashMap<Hash32, MemoryId>,
    /// Input -> memories derived from it directly.
    children: HashMap<MemoryId, Vec<MemoryId>>,
    erased: HashSet<MemoryId>,
    models: HashSet<ModelId>,
    /// The questions asked (their ids name payload keys, erasable like memories').
    #[serde(default)]
    questions: HashSet<MemoryId>,
}

impl Processing {
    /// Adds a processing grant (resuming a view).
    pub fn grant(&mut self, g: ProcessingGrant) {
        self.grants.insert(g.id, g);
    }
    /// Records that `memory` was fetched under `grant` (resuming a view).
    pub fn fetched(&mut self, grant: GrantId, memory: MemoryId) {
        self.fetched.entry(grant).or_default().insert(memory);
    }
    /// Records a derivation (resuming a view).
    pub fn derived(&mut self, key: Hash32, memory: MemoryId, inputs: &[MemoryId]) {
        self.derivations.insert(key, memory);
        self.parents.insert(memory, inputs.to_vec());
        for i in inputs {
            self.children.entry(*i).or_default().push(memory);
        }
    }
    /// Records an erased memory (resuming a view).
    pub fn erased(&mut self, memory: MemoryId) {
        self.erased.insert(memory);
    }
    /// Records a model (resuming a view).
    pub fn model(&mut self, model: ModelId) {
        self.models.insert(model);
    }

    /// Whether nothing of processing happened in the chain (no grant, no erasure).
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty() && self.erased.is_empty()
    }
}

impl ChainState {
    /// The state of `user`'s chain before its first event.
    pub fn new(user: UserId) -> Self {
        Self {
            user,
            next: Seq::FIRST,
            prev: Hash32::ZERO,
            acc: Accumulator::new(),
            keys: KeyHistory::default(),
            memories: HashSet::new(),
            captures: HashMap::new(),
            memory_seq: HashMap::new(),
            seqs_from: Seq::FIRST,
            grants: HashMap::new(),
            processing: Processing::default(),
            version: crate::event::FORMAT_V1,
        }
    }

    /// The state after `len` events ending in `head`, with the chain tree `acc`, the key
    /// history, the memories ingested and the grants created so far (as a view that applied
    /// those events keeps them). `None` when `acc` is not of `len` leaves.
    pub fn resume(
        user: UserId,
        len: u64,
        head: Hash32,
        acc: Accumulator,
        keys: impl IntoIterator<Item = KeyRecord>,
        memories: impl IntoIterator<Item = MemoryId>,
        grants: impl IntoIterator<Item = Grant>,
    ) -> Option<Self> {
        if acc.size() != len || (len == 0) != (head == Hash32::ZERO) {
            return None;
        }
        let mut history = KeyHistory::default();
        for k in keys {
            history.insert(k);
        }
        Some(Self {
            user,
            next: Seq(len + 1),
            prev: head,
            acc,
            keys: history,
            memories: memories.into_iter().collect(),
            memory_seq: HashMap::new(),
            seqs_from: Seq(len + 1),
            // Nor the capture ids before it: mnemo's capture index keeps those, and an
            // auditor from genesis refuses a capture recorded twice wherever it is.
            captures: HashMap::new(),
            grants: grants.into_iter().map(|g| (g.id, g)).collect(),
            processing: Processing::default(),
            // A view does not keep the version of the event it resumes at: the switch back
            // is refused from that event on (an auditor from genesis refuses it wherever).
            version: crate::event::FORMAT_V1,
        })
    }

    /// The processing state (what a view stores to resume the chain).
    pub fn processing(&self) -> &Processing {
        &self.processing
    }

    /// Puts back the processing state a view stored, after [`resume`](Self::resume): the
    /// derived memories join the chain's memories.
    pub fn restore_processing(&mut self, p: Processing) {
        self.memories.extend(p.parents.keys().copied());
        self.processing = p;
    }

    /// The seq of a memory's event, when this state applied it (see `memory_seq`).
    pub fn seq_of(&self, memory: &MemoryId) -> Option<Seq> {
        self.memory_seq.get(memory).copied()
    }

    /// Whether `id` names a question asked under a grant (`question_asked`).
    pub fn is_question(&self, id: &MemoryId) -> bool {
        self.processing.questions.contains(id)
    }

    /// The inputs of a derived memory.
    pub fn inputs_of(&self, memory: &MemoryId) -> Option<&[MemoryId]> {
        self.processing.parents.get(memory).map(Vec::as_slice)
    }

    /// The memories derived from `memory` directly.
    pub fn outputs_of(&self, memory: &MemoryId) -> &[MemoryId] {
        self.processing
            .children
            .get(memory)
            .map_or(&[], Vec::as_slice)
    }

    /// A processing grant the chain created.
    pub fn processing_grant(&self, id: &GrantId) -> Option<&ProcessingGrant> {
        self.processing.grants.get(id)
    }

    /// The processing grants the chain created (revoked ones included).
    pub fn processing_grants(&self) -> impl Iterator<Item = &ProcessingGrant> {
        self.processing.grants.values()
    }

    /// The memory an earlier result with this derivation key is, if any.
    pub fn derivation(&self, key: &Hash32) -> Option<MemoryId> {
        self.processing.derivations.get(key).copied()
    }

    /// Whether an erasure has reached this memory.
    pub fn is_erased(&self, id: &MemoryId) -> bool {
        self.processing.erased.contains(id)
    }

    /// Whether `memory` was fetched under `grant`.
    pub fn was_fetched(&self, grant: &GrantId, memory: &MemoryId) -> bool {
        self.processing
            .fetched
            .get(grant)
            .is_some_and(|s| s.contains(memory))
    }

    /// The lineage closure of `memory`: every memory derived from it, transitively, that no
    /// erasure has reached yet, in ascending id order.
    pub fn closure(&self, memory: &MemoryId) -> Vec<MemoryId> {
        let mut seen = HashSet::new();
        let mut todo = vec![*memory];
        while let Some(m) = todo.pop() {
            for c in self.processing.children.get(&m).into_iter().flatten() {
                if seen.insert(*c) {
                    todo.push(*c);
                }
            }
        }
        let mut out: Vec<_> = seen
            .into_iter()
            .filter(|m| !self.processing.erased.contains(m))
            .collect();
        out.sort();
        out
    }

    /// Whose chain.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// Events so far.
    pub fn len(&self) -> u64 {
        self.next.0 - 1
    }

    /// Whether no event was applied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The seq the next event must have.
    pub fn next_seq(&self) -> Seq {
        self.next
    }

    /// Hash of the last event (zero before the first).
    pub fn head(&self) -> Hash32 {
        self.prev
    }

    /// The chain tree over the events so far.
    pub fn tree(&self) -> &Accumulator {
        &self.acc
    }

    /// The chain tree's root.
    pub fn root(&self) -> Hash32 {
        self.acc.root(CHAIN_TREE)
    }

    /// The key history.
    pub fn keys(&self) -> &KeyHistory {
        &self.keys
    }

    /// A grant the chain created.
    pub fn grant(&self, id: &GrantId) -> Option<&Grant> {
        self.grants.get(id)
    }

    /// The grants the chain created (revoked ones included).
    pub fn grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants.values()
    }

    /// Whether the chain ingested this memory.
    pub fn has_memory(&self, id: &MemoryId) -> bool {
        self.memories.contains(id)
    }

    /// The checkpoint after the events so far (`None` for an empty chain).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        (!self.is_empty()).then(|| Checkpoint {
            user: self.user.clone(),
            seq: Seq(self.len()),
            head: self.prev,
            root: self.root(),
        })
    }

    /// Checks `event` (whose hash is `hash`) as the chain's next event and, if it may extend
    /// the chain, applies it. Returns the signatures to verify: the event is valid only if
    /// they verify too. On an error the state is unchanged.
    pub fn check(&mut self, event: &Event, hash: Hash32) -> Result<EventSignatures, ChainError> {
        let seq = event.seq;
        if event.user != self.user {
            return Err(ChainError::WrongUser { seq });
        }
        if seq != self.next {
            return Err(ChainError::SeqGap {
                expected: self.next,
                found: seq,
            });
        }
        if event.prev != self.prev {
            return Err(ChainError::BrokenLink {
                seq,
                expected: self.prev,
                found: event.prev,
            });
        }
        if event.version < self.version {
            return Err(ChainError::InvalidTransition {
                seq,
                reason: "the format version went back (a chain never returns to a lower version)",
            });
        }
        let signer = self.signer(event)?;
        let (custody_msg, custody_sig) = match &event.custody {
            Custody::Signature(sig) => (keys::event_signing_message(&hash).to_vec(), sig.0),
            Custody::Seal(link) => {
                let seal = link.seal(&hash).ok_or(ChainError::Seal {
                    seq,
                    check: SealCheck::Missing,
                })?;
                seal.check(&hash)
                    .map_err(|check| ChainError::Seal { seq, check })?;
                (seal.signing_message().to_vec(), seal.signature.0)
            }
        };
        if !event.timestamp.is_valid() {
            return Err(ChainError::InvalidValue {
                seq,
                reason: "the timestamp is outside the time range",
            });
        }
        event
            .body
            .check_values()
            .map_err(|reason| ChainError::InvalidValue { seq, reason })?;
        let has_payload = event.body.payload_id().is_some();
        if has_payload != event.payload.is_some() {
            return Err(ChainError::InvalidTransition {
                seq,
                reason: "a payload commitment belongs to memory_ingested, memory_derived and question_asked events only",
            });
        }
        let origin = match (&event.origin, &event.payload) {
            (None, _) => self.processor_signature(event)?,
            (Some(_), _) if !matches!(event.body, EventBody::MemoryIngested { .. }) => {
                return Err(ChainError::InvalidTransition {
                    seq,
                    reason: "an origin signature belongs to memory_ingested events only",
                });
            }
            (Some(_), None) => {
                return Err(ChainError::InvalidTransition {
                    seq,
                    reason: "origin signature without payload",
                });
            }
            (Some(o), Some(commitment)) => {
                let rec = self
                    .keys
                    .get(&o.key)
                    .ok_or(ChainError::UnknownKey { seq, key: o.key })?;
                allowed(rec, KeyRole::Device, seq, o.key)?;
                Some(SignatureCheck {
                    seq,
                    by: Signed::Origin,
                    msg: keys::origin_message_for(&event.user, event.body.capture(), commitment),
                    sig: o.signature.0,
                    key: rec.key.0,
                })
            }
        };
        self.apply(event)?;
        self.prev = hash;
        self.next = seq.next();
        self.version = event.version;
        self.acc.push(CHAIN_TREE, CHAIN_TREE.leaf(&hash.0));
        Ok(EventSignatures {
            custody: SignatureCheck {
                seq,
                by: Signed::Custody,
                msg: custody_msg,
                sig: custody_sig,
                key: signer,
            },
            origin,
        })
    }

    fn signer(&self, event: &Event) -> Result<VerifyingKey, ChainError> {
        let seq = event.seq;
        if seq == Seq::FIRST {
            let EventBody::KeyAdded {
                key,
                role: KeyRole::Custody,
            } = &event.body
            else {
                return Err(ChainError::BadGenesis("first event must add a custody key"));
            };
            if key.id() != event.signer {
                return Err(ChainError::BadGenesis(
                    "first event must be signed by the key it adds",
                ));
            }
            return Ok(key.0);
        }
        let rec = self.keys.get(&event.signer).ok_or(ChainError::UnknownKey {
            seq,
            key: event.signer,
        })?;
        allowed(rec, KeyRole::Custody, seq, event.signer)?;
        Ok(rec.key.0)
    }

    /// The processor signature a result carries, to verify under the key its grant names
    /// (the grant is checked by the kind rules).
    fn processor_signature(&self, event: &Event) -> Result<Option<SignatureCheck>, ChainError> {
        let seq = event.seq;
        let (grant, msg, sig) = match &event.body {
            EventBody::MemoryDerived {
                grant,
                version,
                inputs,
                signature,
                ..
            } => {
                let Some(g) = self.processing.grants.get(grant) else {
                    return Ok(None);
                };
                let commitment = event.payload.unwrap_or(Hash32::ZERO);
                let msg = processing::derived_signing_message(
                    &event.user,
                    grant,
                    &g.processor,
                    version,
                    inputs,
                    &commitment,
                );
                (g, msg, signature)
            }
            EventBody::ModelTrained {
                grant,
                version,
                artifact,
                set_root,
                set_count,
                signature,
                ..
            } => {
                let Some(g) = self.processing.grants.get(grant) else {
                    return Ok(None);
                };
                let msg = processing::model_signing_message(&ModelClaim {
                    user: &event.user,
                    grant,
                    processor: &g.processor,
                    version,
                    artifact,
                    set_root,
                    set_count: *set_count,
                });
                (g, msg, signature)
            }
            _ => return Ok(None),
        };
        Ok(Some(SignatureCheck {
            seq,
            by: Signed::Processor,
            msg,
            sig: sig.0,
            key: grant.key.0,
        }))
    }

    /// The processing grant `grant`, live at the event's time for `version` (when given).
    fn live_processing(
        &self,
        event: &Event,
        grant: &GrantId,
        version: Option<&str>,
    ) -> Result<&ProcessingGrant, ChainError> {
        let seq = event.seq;
        let bad = |reason| ChainError::BadGrant {
            seq,
            grant: *grant,
            reason,
        };
        let g = self
            .processing
            .grants
            .get(grant)
            .ok_or_else(|| bad("is not a processing grant of this chain"))?;
        g.live(event.timestamp).map_err(|r| bad(r.reason()))?;
        if version.is_some_and(|v| !g.allows_version(v)) {
            return Err(bad("does not allow this processor version"));
        }
        Ok(g)
    }

    /// Checks the memories a processing event names: known, not erased, listed once in
    /// ascending order.
    /// A published training set (tag 0x41, docs/FORMAT.md §15.4): its seqs strictly
    /// ascending, each the event of a memory fetched under `grant` before. (Its root is
    /// checked by a verifier that holds the members' event hashes, [`crate::verify`].)
    fn published_set(&self, seq: Seq, grant: &GrantId, seqs: &[Seq]) -> Result<(), ChainError> {
        let bad = |reason| ChainError::InvalidTransition { seq, reason };
        if !seqs.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad(
                "a training set lists its members' seqs in ascending order, once each",
            ));
        }
        let fetched: HashSet<Seq> = self
            .processing
            .fetched
            .get(grant)
            .into_iter()
            .flatten()
            .filter_map(|m| self.memory_seq.get(m).copied())
            .collect();
        // A state resumed from a view knows memory seqs only from its resume point on; an
        // auditor from genesis checks the earlier members.
        if seqs
            .iter()
            .any(|s| *s >= self.seqs_from && !fetched.contains(s))
        {
            return Err(bad(
                "a training-set member is not the event of a memory fetched under the grant",
            ));
        }
        Ok(())
    }

    fn named_memories(
        &self,
        seq: Seq,
        ids: &[MemoryId],
        what: &'static str,
    ) -> Result<(), ChainError> {
        if ids.is_empty() || ids.len() > processing::MAX_INPUTS {
            return Err(ChainError::InvalidTransition { seq, reason: what });
        }
        if !processing::strictly_ascending(ids) {
            return Err(ChainError::InvalidTransition {
                seq,
                reason: "memory ids must be listed in ascending order, once each",
            });
        }
        for m in ids {
            if !self.memories.contains(m) {
                return Err(ChainError::UnknownMemory { seq, memory: *m });
            }
            if self.processing.erased.contains(m) {
                return Err(ChainError::InvalidTransition {
                    seq,
                    reason: "names an erased memory",
                });
            }
        }
        Ok(())
    }

    /// Kind-specific rules and state changes. Checks everything before changing anything.
    fn apply(&mut self, event: &Event) -> Result<(), ChainError> {
        let seq = event.seq;
        let bad = |reason| ChainError::InvalidTransition { seq, reason };
        match &event.body {
            EventBody::KeyAdded { .. }
            | EventBody::KeyRotated { .. }
            | EventBody::KeyRevoked { .. } => {
                self.keys
                    .apply(seq, event.signer, &event.body)
                    .map_err(|e| match e {
                        KeyRuleError::Unknown(key) => ChainError::UnknownKey { seq, key },
                        other => bad(other.reason()),
                    })?;
            }
            EventBody::MemoryIngested { memory, capture } => {
                // Nothing is changed before every rule of the event held.
                if self.memories.contains(memory) {
                    return Err(bad("memory id used twice"));
                }
                if let Some(c) = capture {
                    let marks = self
                        .captures
                        .entry((event.origin.map(|o| o.key), c.stream.clone()))
                        .or_default();
                    if let Err(recorded) = marks.insert(c.counter, seq) {
                        return Err(ChainError::DuplicateCapture {
                            seq,
                            recorded,
                            stream: c.stream.clone(),
                            counter: c.counter,
                        });
                    }
                }
                self.memories.insert(*memory);
                self.memory_seq.insert(*memory, seq);
            }
            EventBody::MemoryErased { target } => match target {
                ErasureTarget::Memory(m) if self.processing.questions.contains(m) => {
                    if self.processing.erased.contains(m) {
                        return Err(bad("the question was erased before"));
                    }
                    self.processing.erased.insert(*m);
                }
                ErasureTarget::Memory(m) => {
                    if !self.memories.contains(m) {
                        return Err(ChainError::UnknownMemory { seq, memory: *m });
                    }
                    if !self.closure(m).is_empty() {
                        return Err(ChainError::ErasureIncomplete { seq, memory: *m });
                    }
                    self.processing.erased.insert(*m);
                }
                ErasureTarget::All => {
                    self.processing.erased.extend(self.memories.iter().copied());
                    let questions = self.processing.questions.iter().copied();
                    self.processing.erased.extend(questions);
                }
            },
            EventBody::LineageErased {
                memory, closure, ..
            } => {
                if !self.memories.contains(memory) {
                    return Err(ChainError::UnknownMemory {
                        seq,
                        memory: *memory,
                    });
                }
                if self.processing.erased.contains(memory) {
                    return Err(bad("the memory was erased before"));
                }
                if *closure != self.closure(memory) {
                    return Err(ChainError::ErasureIncomplete {
                        seq,
                        memory: *memory,
                    });
                }
                self.processing.erased.insert(*memory);
                self.processing.erased.extend(closure.iter().copied());
            }
            EventBody::MemoryDerived {
                memory,
                grant,
                version,
                inputs,
                ..
            } => {
                let g = self.live_processing(event, grant, Some(version))?;
                self.named_memories(seq, inputs, "a derived memory names 1 to 1024 inputs")?;
                if let Some(m) = inputs.iter().find(|m| !self.was_fetched(grant, m)) {
                    return Err(ChainError::InputNotCovered { seq, memory: *m });
                }
                let key = processing::derivation_key(&g.processor, version, inputs);
                if let Some(original) = self.processing.derivations.get(&key) {
                    return Err(ChainError::AlreadyDerived {
                        seq,
                        original: *original,
                    });
                }
                if !self.memories.insert(*memory) {
                    return Err(bad("memory id used twice"));
                }
                self.memory_seq.insert(*memory, seq);
                self.processing.derived(key, *memory, inputs);
            }
            EventBody::ProcessingGranted {
                grant,
                key,
                processor,
                version,
                conditions,
                expires_at,
            } => {
                if self.grants.contains_key(grant) || self.processing.grants.contains_key(grant) {
                    return Err(ChainError::BadGrant {
                        seq,
                        grant: *grant,
                        reason: "created twice",
                    });
                }
                key.fit_for_chain().map_err(|e| bad(e.reason()))?;
                self.processing.grants.insert(
                    *grant,
                    ProcessingGrant {
                        id: *grant,
                        processor: processor.clone(),
                        version: version.clone(),
                        key: *key,
                        conditions: conditions.clone(),
                        expires_at: *expires_at,
                        revoked: false,
                    },
                );
            }
            EventBody::InputsFetched { grant, memories } => {
                let g = self.live_processing(event, grant, None)?;
                self.named_memories(seq, memories, "a fetch names 1 to 1024 memories")?;
                if let Some(m) = memories.iter().find(|m| {
                    !g.conditions.memories.is_empty() && !g.conditions.memories.contains(m)
                }) {
                    return Err(ChainError::InputNotCovered { seq, memory: *m });
                }
                let set = self.processing.fetched.entry(*grant).or_default();
                set.extend(memories.iter().copied());
            }
            EventBody::ModelTrained {
                model,
                grant,
                version,
                set_count,
                set,
                ..
            } => {
                self.live_processing(event, grant, Some(version))?;
                let fetched = self.processing.fetched.get(grant).map_or(0, HashSet::len);
                if *set_count == 0 || *set_count > fetched as u64 {
                    return Err(bad(
                        "a training set holds 1 to as many memories as the grant fetched",
                    ));
                }
                if let Some(seqs) = set {
                    if seqs.len() as u64 != *set_count {
                        return Err(bad("a published training set has set_count members"));
                    }
                    self.published_set(seq, grant, seqs)?;
                }
                if !self.processing.models.insert(*model) {
                    return Err(bad("model id used twice"));
                }
            }
            EventBody::GrantCreated { .. }
            | EventBody::GrantRevoked { .. }
            | EventBody::QuestionAsked { .. }
            | EventBody::AccessRecorded { .. } => self.apply_consent(event)?,
        }
        Ok(())
    }
}

fn allowed(rec: &KeyRecord, role: KeyRole, seq: Seq, key: KeyId) -> Result<(), ChainError> {
    if rec.role != role {
        return Err(ChainError::KeyNotAllowed {
            seq,
            key,
            reason: match role {
                KeyRole::Custody => "not a custody key",
                KeyRole::Device => "not a device key",
            },
        });
    }
    if rec.retired.is_some() {
        return Err(ChainError::KeyNotAllowed {
            seq,
            key,
            reason: "retired (rotated or revoked) before this event",
        });
    }
    Ok(())
}
