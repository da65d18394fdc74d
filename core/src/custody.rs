//! Custody bundles: a user's whole chain of custody as one stream of items, for offline
//! audit (docs/FORMAT.md §13), and the streaming verifier that checks one.
//!
//! A bundle is a sequence of [`BundleItem`]s (one JSON object per line on disk):
//! a `header`, then every `anchor` (an epoch proof of one of the user's checkpoints and
//! the receipt of that epoch's root), then the chain's `event`s in order, each
//! `memory_ingested` event optionally followed by the `payload` that opens its commitment
//! (absent once erased), then an `end` item. The anchors come first so the verifier knows
//! every anchored checkpoint before the events reach it: the chain must meet each one, and
//! a chain that ends before an anchored checkpoint is a truncated one.
//!
//! [`CustodyVerifier`] holds the chain verifier's state (bounded by the number of
//! memories, grants and anchors, not events), so a bundle of any size verifies in bounded
//! memory. Signatures can be handed out in batches for other threads
//! ([`CustodyVerifier::take_batch`]).

use serde::{Deserialize, Serialize};

use crate::bundle::AnchorReceipt;
use crate::checkpoint::EpochProof;
use crate::commitment::{self, SALT_LEN};
use crate::error::{ChainError, ProofError};
use crate::event::{ErasureTarget, Event, EventBody};
use crate::ids::{Address, Hash32, MemoryId, Seq, TimestampMs, UserId};
use crate::keys::{KeyHistory, PublicKey};
use crate::memory::MemoryRecord;
use crate::verify::{ChainSummary, ChainVerifier, SignatureBatch};

/// The `format` of a custody bundle's header.
pub const BUNDLE_FORMAT: &str = "mnemo-custody-bundle";
/// The bundle version this build writes and reads.
pub const BUNDLE_VERSION: u32 = 1;

/// Bytes, hex-encoded in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HexBytes(pub Vec<u8>);

impl Serialize for HexBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::ids::lower_hex(&s).map_err(serde::de::Error::custom)?;
        hex::decode(s.as_ref())
            .map(HexBytes)
            .map_err(serde::de::Error::custom)
    }
}

/// One item of a custody bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BundleItem {
    /// First item.
    Header {
        /// [`BUNDLE_FORMAT`].
        format: String,
        /// [`BUNDLE_VERSION`].
        version: u32,
        /// Whose chain.
        user: UserId,
        /// When it was exported (informational).
        exported_at: TimestampMs,
        /// The exporting ledger's custody key (informational: the chain's own key history
        /// is what counts; pin keys with `--trusted-key`).
        #[serde(default)]
        ledger_key: Option<PublicKey>,
    },
    /// One anchored checkpoint of the user's chain.
    Anchor {
        /// The checkpoint's inclusion in the epoch root.
        epoch_proof: EpochProof,
        /// Where the epoch root was committed.
        receipt: AnchorReceipt,
    },
    /// One event, in wire form (canonical bytes and signature).
    Event {
        /// The wire bytes.
        wire: HexBytes,
    },
    /// The opening of the commitment of the event just before.
    Payload {
        /// That event's seq.
        seq: Seq,
        /// The commitment salt.
        salt: Hash32,
        /// The memory record the commitment covers.
        record: MemoryRecord,
    },
    /// Last item.
    End {
        /// Number of events.
        events: u64,
        /// Hash of the last event (zero for an empty chain).
        head: Hash32,
    },
}

/// What an auditor pins before reading a bundle.
#[derive(Clone, Debug, Default)]
pub struct AuditPolicy {
    /// Accept only anchors on this contract.
    pub contract: Option<Address>,
    /// Accept only anchors on this chain id.
    pub chain_id: Option<u64>,
    /// Accept only chains whose genesis key is one of these.
    pub trusted_keys: Vec<PublicKey>,
}

/// Why a bundle is invalid (tampering or damage found).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The chain itself fails a check.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// An anchor item does not hold together or is not acceptable.
    #[error("anchor of epoch {epoch}: {reason}")]
    Anchor {
        /// The epoch.
        epoch: u64,
        /// The checkpoint seq it anchors.
        seq: Seq,
        /// What failed.
        reason: String,
    },
    /// A payload does not open its event's commitment.
    #[error("seq {seq}: payload: {reason}")]
    Payload {
        /// The event's seq.
        seq: Seq,
        /// What failed.
        reason: &'static str,
    },
    /// The bundle carries the opening (the content) of a memory its chain erases: the
    /// erasure did not reach whoever wrote the bundle.
    #[error("seq {seq}: memory {memory} is erased here, but the bundle carries its content")]
    ErasedOpening {
        /// The erasure's seq.
        seq: Seq,
        /// The memory.
        memory: MemoryId,
    },
    /// The bundle's structure is wrong (order of items, header, end).
    #[error("bundle: {0}")]
    Structure(String),
}

impl AuditError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Chain(e) => e.code(),
            Self::Anchor { .. } => "anchor",
            Self::Payload { .. } => "payload",
            Self::ErasedOpening { .. } => "erased_opening",
            Self::Structure(_) => "structure",
        }
    }

    /// The seq the failure is at, when it is at one.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            Self::Chain(e) => e.seq(),
            Self::Anchor { seq, .. }
            | Self::Payload { seq, .. }
            | Self::ErasedOpening { seq, .. } => Some(*seq),
            Self::Structure(_) => None,
        }
    }

    fn anchor(p: &EpochProof, reason: impl Into<String>) -> Self {
        Self::Anchor {
            epoch: p.epoch,
            seq: p.checkpoint.seq,
            reason: reason.into(),
        }
    }
}

impl From<(u64, Seq, ProofError)> for AuditError {
    fn from((epoch, seq, e): (u64, Seq, ProofError)) -> Self {
        Self::Anchor {
            epoch,
            seq,
            reason: e.to_string(),
        }
    }
}

/// What a valid bundle showed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodySummary {
    /// Whose chain.
    pub user: Option<UserId>,
    /// Events verified.
    pub events: u64,
    /// Signatures verified (or, with deferred signatures, handed out).
    pub signatures: u64,
    /// Memories ingested.
    pub memories: u64,
    /// Memories erased (by erase events).
    pub erasures: u64,
    /// Payloads whose commitment was opened and matched.
    pub payloads_opened: u64,
    /// Grants created, revoked; access records.
    pub grants: u64,
    /// Grant revocations.
    pub revocations: u64,
    /// Access records.
    pub accesses: u64,
    /// Questions asked under grants (`question_asked`).
    #[serde(default)]
    pub questions: u64,
    /// Keys in the chain's history.
    pub keys: u64,
    /// Anchors checked: (epoch, checkpoint seq, receipt).
    pub anchors: Vec<AnchorSeen>,
    /// The final checkpoint (seq, head, root).
    pub head: Option<crate::checkpoint::Checkpoint>,
}

/// One anchor met in a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorSeen {
    /// Epoch.
    pub epoch: u64,
    /// The anchored checkpoint's seq.
    pub seq: Seq,
    /// The receipt.
    pub receipt: AnchorReceipt,
}

/// What the access rule needs of an opened memory.
struct Facts {
    kind: String,
    tags: Vec<String>,
    captured_at: Option<TimestampMs>,
    ingested_at: TimestampMs,
}

impl Facts {
    fn of(&self, id: MemoryId) -> crate::grant::MemoryFacts<'_> {
        crate::grant::MemoryFacts {
            id,
            kind: &self.kind,
            tags: &self.tags,
            captured_at: self.captured_at,
            ingested_at: self.ingested_at,
            erased: false,
        }
    }
}

/// Verifies a custody bundle item by item. See the module docs.
pub struct CustodyVerifier {
    policy: AuditPolicy,
    chain: Option<ChainVerifier>,
    deferred: bool,
    /// Last event seen: seq, its payload commitment and memory, waiting for an opening.
    last: Option<(Seq, Option<Hash32>, Option<MemoryId>)>,
    /// Memories whose opening the bundle carries (refused if the chain erases them).
    opened: std::collections::HashSet<MemoryId>,
    /// The seq of the last payload opened (to name a repeated one).
    opened_last: Option<Seq>,
    /// What the access rule needs of each memory whose record the bundle opened, to hold
    /// a question's citations to its grant's conditions (FORMAT.md §4.3).
    facts: std::collections::HashMap<MemoryId, Facts>,
    /// The conditions of each user grant of the chain.
    conditions: std::collections::HashMap<crate::ids::GrantId, crate::event::GrantConditions>,
    /// The time of the last event (a memory's ingestion time, for its opening).
    last_time: TimestampMs,
    /// Whether the last event is a memory's (not a question's).
    last_is_memory: bool,
    events_started: bool,
    ended: Option<(u64, Hash32)>,
    summary: CustodySummary,
    failed: Option<AuditError>,
    seal_cache: Option<std::sync::Arc<crate::verify::SealCache>>,
}

impl CustodyVerifier {
    /// A verifier under `policy`.
    pub fn new(policy: AuditPolicy) -> Self {
        Self {
            policy,
            chain: None,
            deferred: false,
            last: None,
            opened: Default::default(),
            opened_last: None,
            facts: Default::default(),
            conditions: Default::default(),
            last_time: TimestampMs(0),
            last_is_memory: false,
            events_started: false,
            ended: None,
            summary: CustodySummary::default(),
            failed: None,
            seal_cache: None,
        }
    }

    /// Shares verified seals with other verifiers (every chain of a server): see
    /// [`ChainVerifier::with_seal_cache`].
    pub fn with_seal_cache(mut self, cache: std::sync::Arc<crate::verify::SealCache>) -> Self {
        self.seal_cache = Some(cache);
        self
    }

    /// Hands signature batches out ([`take_batch`](Self::take_batch)) instead of verifying
    /// them; see [`ChainVerifier::with_deferred_signatures`].
    pub fn with_deferred_signatures(mut self) -> Self {
        self.deferred = true;
        self
    }

    /// The next signature batch to verify (deferred mode); `all` also takes a partial one.
    pub fn take_batch(&mut self, all: bool) -> Option<SignatureBatch> {
        self.chain.as_mut()?.take_batch(all)
    }

    /// The chain's key history so far.
    pub fn keys(&self) -> Option<&KeyHistory> {
        self.chain.as_ref().map(|c| c.keys())
    }

    /// The summary so far.
    pub fn summary(&self) -> &CustodySummary {
        &self.summary
    }

    /// Pushes the next item. The first error is sticky.
    pub fn push(&mut self, item: BundleItem) -> Result<Option<(Event, Hash32)>, AuditError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.apply(item) {
            Ok(x) => Ok(x),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Pushes the next event, already decoded (a reader that holds the event, such as a
    /// monitor reading every chain of a server from its streams): the same checks as an
    /// `event` item with its wire form.
    pub fn push_event(&mut self, event: &Event, hash: Hash32) -> Result<(), AuditError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = (|| {
            if self.ended.is_some() {
                return Err(AuditError::Structure("items after the end".into()));
            }
            self.events_started = true;
            self.chain()?.push(event, hash)?;
            self.event_pushed(event)
        })();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn event_pushed(&mut self, event: &Event) -> Result<(), AuditError> {
        self.summary.events += 1;
        let mut memory = None;
        match &event.body {
            EventBody::MemoryIngested { memory: m, .. }
            | EventBody::MemoryDerived { memory: m, .. } => {
                self.summary.memories += 1;
                memory = Some(*m);
            }
            EventBody::LineageErased {
                memory: m, closure, ..
            } => {
                self.summary.erasures += 1;
                if let Some(kept) = std::iter::once(m)
                    .chain(closure)
                    .find(|x| self.opened.contains(x))
                {
                    return Err(AuditError::ErasedOpening {
                        seq: event.seq,
                        memory: *kept,
                    });
                }
            }
            EventBody::MemoryErased { target } => {
                self.summary.erasures += 1;
                let kept = match target {
                    ErasureTarget::Memory(m) => self.opened.get(m).copied(),
                    ErasureTarget::All => self.opened.iter().next().copied(),
                };
                if let Some(memory) = kept {
                    return Err(AuditError::ErasedOpening {
                        seq: event.seq,
                        memory,
                    });
                }
            }
            EventBody::GrantCreated {
                grant, conditions, ..
            } => {
                self.summary.grants += 1;
                self.conditions.insert(*grant, conditions.clone());
            }
            EventBody::QuestionAsked {
                question,
                grant,
                cited,
                ..
            } => {
                self.summary.questions += 1;
                memory = Some(*question);
                // Records the bundle opened: the conditions decide each citation. (The
                // chain rules, run first, checked the grant's memory list and liveness.)
                if let Some(c) = self.conditions.get(grant)
                    && let Some(m) = cited
                        .iter()
                        .find(|m| self.facts.get(m).is_some_and(|f| !c.covers(&f.of(**m))))
                {
                    return Err(ChainError::CitationNotCovered {
                        seq: event.seq,
                        memory: *m,
                    }
                    .into());
                }
            }
            EventBody::GrantRevoked { .. } => self.summary.revocations += 1,
            EventBody::AccessRecorded { .. } => self.summary.accesses += 1,
            _ => {}
        }
        self.last_time = event.timestamp;
        self.last_is_memory = event.body.new_memory().is_some();
        self.last = Some((event.seq, event.payload, memory));
        Ok(())
    }

    fn chain(&mut self) -> Result<&mut ChainVerifier, AuditError> {
        self.chain
            .as_mut()
            .ok_or_else(|| AuditError::Structure("the first item must be the header".into()))
    }

    fn apply(&mut self, item: BundleItem) -> Result<Option<(Event, Hash32)>, AuditError> {
        if self.ended.is_some() {
            return Err(AuditError::Structure("items after the end".into()));
        }
        match item {
            BundleItem::Header {
                format,
                version,
                user,
                ..
            } => {
                if self.chain.is_some() {
                    return Err(AuditError::Structure("a second header".into()));
                }
                if format != BUNDLE_FORMAT || version != BUNDLE_VERSION {
                    return Err(AuditError::Structure(format!(
                        "unsupported format {format:?} version {version}"
                    )));
                }
                let mut v = ChainVerifier::new(user.clone());
                if let Some(c) = &self.seal_cache {
                    v = v.with_seal_cache(c.clone());
                }
                if !self.policy.trusted_keys.is_empty() {
                    v = v.with_trusted_roots(self.policy.trusted_keys.iter().map(|k| k.id()));
                }
                if self.deferred {
                    v = v.with_deferred_signatures();
                }
                self.chain = Some(v);
                self.summary.user = Some(user);
                Ok(None)
            }
            BundleItem::Anchor {
                epoch_proof,
                receipt,
            } => {
                let user = self.summary.user.clone();
                if self.events_started {
                    return Err(AuditError::Structure(
                        "anchors must come before the events".into(),
                    ));
                }
                self.chain()?;
                let p = &epoch_proof;
                if Some(&p.checkpoint.user) != user.as_ref() {
                    return Err(AuditError::anchor(p, "checkpoint of another user"));
                }
                p.verify()
                    .map_err(|e| AuditError::from((p.epoch, p.checkpoint.seq, e)))?;
                if receipt.root != p.root {
                    return Err(AuditError::anchor(
                        p,
                        "the receipt commits another root than the epoch proof's",
                    ));
                }
                if receipt.epoch != p.epoch {
                    return Err(AuditError::anchor(p, "the receipt is for another epoch"));
                }
                if receipt.leaf_count != p.inclusion.size {
                    return Err(AuditError::anchor(
                        p,
                        "the receipt's leaf count is not the epoch tree's size",
                    ));
                }
                if let Some(c) = self.policy.contract
                    && receipt.contract != c
                {
                    return Err(AuditError::anchor(
                        p,
                        format!(
                            "anchored on contract {} instead of the pinned {}",
                            receipt.contract, c
                        ),
                    ));
                }
                if let Some(id) = self.policy.chain_id
                    && receipt.chain_id != id
                {
                    return Err(AuditError::anchor(
                        p,
                        format!(
                            "anchored on chain {} instead of the pinned {id}",
                            receipt.chain_id
                        ),
                    ));
                }
                // The anchors against each other: one contract on one chain, epochs in
                // order, checkpoints that never go back, and consecutive epochs linked by
                // their receipts' `prev_root` (§13).
                if let Some(first) = self.summary.anchors.first()
                    && (first.receipt.contract != receipt.contract
                        || first.receipt.chain_id != receipt.chain_id)
                {
                    return Err(AuditError::anchor(
                        p,
                        "anchored on another contract or chain than the bundle's first anchor",
                    ));
                }
                if let Some(last) = self.summary.anchors.last() {
                    if p.epoch <= last.epoch {
                        return Err(AuditError::anchor(
                            p,
                            format!(
                                "out of order: it follows the anchor of epoch {}",
                                last.epoch
                            ),
                        ));
                    }
                    if p.checkpoint.seq < last.seq {
                        return Err(AuditError::anchor(
                            p,
                            "its checkpoint is older than an earlier epoch's",
                        ));
                    }
                    if p.epoch == last.epoch + 1 && receipt.prev_root != last.receipt.root {
                        return Err(AuditError::anchor(
                            p,
                            "its prev_root is not the root of the epoch before",
                        ));
                    }
                }
                let seen = AnchorSeen {
                    epoch: p.epoch,
                    seq: p.checkpoint.seq,
                    receipt,
                };
                self.chain()?
                    .expect_checkpoint(epoch_proof.checkpoint.clone())
                    .map_err(|reason| AuditError::anchor(&epoch_proof, reason))?;
                self.summary.anchors.push(seen);
                Ok(None)
            }
            BundleItem::Event { wire } => {
                self.events_started = true;
                let (event, hash) = self.chain()?.push_wire(&wire.0)?;
                self.event_pushed(&event)?;
                Ok(Some((event, hash)))
            }
            BundleItem::Payload { seq, salt, record } => {
                let Some((last, commitment, memory)) = self.last.take() else {
                    // A payload item that is not right after its event is `payload` at
                    // its seq, wherever it stands (FORMAT.md §13.1, "Order").
                    return Err(if !self.events_started {
                        AuditError::Payload {
                            seq,
                            reason: "comes before any event",
                        }
                    } else if self.opened_last == Some(seq) {
                        AuditError::Payload {
                            seq,
                            reason: "a second opening of the same event",
                        }
                    } else {
                        AuditError::Payload {
                            seq,
                            reason: "does not follow its event",
                        }
                    });
                };
                if last != seq {
                    return Err(AuditError::Payload {
                        seq,
                        reason: "does not follow its event",
                    });
                }
                let Some(commitment) = commitment else {
                    return Err(AuditError::Payload {
                        seq,
                        reason: "its event commits to no payload",
                    });
                };
                let salt: [u8; SALT_LEN] = salt.0;
                if !commitment::opens(&commitment, &salt, &record.canonical_bytes()) {
                    return Err(AuditError::Payload {
                        seq,
                        reason: "does not open the event's commitment",
                    });
                }
                record
                    .check_values()
                    .map_err(|reason| AuditError::Payload { seq, reason })?;
                self.summary.payloads_opened += 1;
                if let Some(m) = memory.filter(|_| self.last_is_memory) {
                    self.facts.insert(
                        m,
                        Facts {
                            kind: record.kind.clone(),
                            tags: record.tags.clone(),
                            captured_at: record.captured_at,
                            ingested_at: self.last_time,
                        },
                    );
                }
                self.opened.extend(memory);
                self.opened_last = Some(seq);
                Ok(None)
            }
            BundleItem::End { events, head } => {
                self.chain()?;
                self.ended = Some((events, head));
                Ok(None)
            }
        }
    }

    /// Checks the end of the bundle and returns what it showed. In deferred mode, take the
    /// last batch first (`take_batch(true)`): the chain is valid only if every batch
    /// verifies too.
    pub fn finish(mut self) -> Result<CustodySummary, AuditError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let Some(chain) = self.chain.take() else {
            return Err(AuditError::Structure("empty bundle".into()));
        };
        let ChainSummary {
            checkpoint,
            signatures,
            keys,
        } = chain.finish()?;
        let Some((events, head)) = self.ended else {
            return Err(AuditError::Structure(
                "no end item: the bundle is cut short".into(),
            ));
        };
        let (have, have_head) = checkpoint
            .as_ref()
            .map_or((0, Hash32::ZERO), |c| (c.seq.0, c.head));
        if events != have || head != have_head {
            return Err(AuditError::Structure(format!(
                "the end item names {events} events, the bundle holds {have} (or another head)"
            )));
        }
        self.summary.signatures = signatures;
        self.summary.keys = keys as u64;
        self.summary.head = checkpoint;
        Ok(self.summary)
    }
}
