//! The event envelope, its kinds, the canonical encoding of what is hashed and signed, and
//! the wire form stored in JetStream (docs/FORMAT.md §3 to §5).

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::encoding::{Reader, Writer};
use crate::error::DecodeError;
use crate::hash;
use crate::ids::{
    GrantId, Hash32, KeyId, MemoryId, ModelId, ProcessorId, Seq, TimestampMs, UserId,
};
use crate::keys::{self, KeyRole, PublicKey, Sig};
use crate::seal::SealLink;

mod body_codec;
use body_codec::user_id;

/// The format version this build writes by default (docs/FORMAT.md §14): version 2, events
/// sealed in batches. Decoding reads versions 1 and 2 and rejects others.
pub const FORMAT_VERSION: u8 = 2;

/// Format version 1: every event signed on its own.
pub const FORMAT_V1: u8 = 1;

/// Format version 2: events sealed in batches (docs/FORMAT.md §5.4).
pub const FORMAT_V2: u8 = 2;

/// What an erasure destroys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope", content = "memory")]
pub enum ErasureTarget {
    /// One memory's payload key.
    Memory(MemoryId),
    /// The user's data key: every memory ingested before this event.
    All,
}

/// What a grant allows, as bit flags (docs/FORMAT.md §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Capabilities {
    /// May list and read memory metadata (kind, tags, times).
    pub metadata: bool,
    /// May read memory content.
    pub content: bool,
    /// May ask the owner's model questions, answered with the memories the grant covers
    /// (docs/FORMAT.md §4.1, bit 2).
    #[serde(default)]
    pub ask: bool,
}

impl Capabilities {
    fn bits(self) -> u32 {
        u32::from(self.metadata) | (u32::from(self.content) << 1) | (u32::from(self.ask) << 2)
    }
    fn from_bits(b: u32) -> Option<Self> {
        (b & !7 == 0).then_some(Self {
            metadata: b & 1 != 0,
            content: b & 2 != 0,
            ask: b & 4 != 0,
        })
    }
}

/// Which memories a grant covers. Every non-empty condition must hold (empty lists and
/// absent bounds do not restrict).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantConditions {
    /// The memory carries at least one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The memory is of one of these kinds.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Captured at or after.
    #[serde(default)]
    pub from: Option<TimestampMs>,
    /// Captured before.
    #[serde(default)]
    pub until: Option<TimestampMs>,
    /// Only these memories.
    #[serde(default)]
    pub memories: Vec<MemoryId>,
}

/// What a reader did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessAction {
    /// Listed or searched memories.
    List,
    /// Read metadata.
    ReadMetadata,
    /// Read content.
    ReadContent,
    /// Asked the owner's model a question (needs the `ask` capability). Never the action
    /// of an `access_recorded` event: a question is recorded as a `question_asked`.
    Ask,
}

impl AccessAction {
    fn tag(self) -> u8 {
        match self {
            Self::List => 1,
            Self::ReadMetadata => 2,
            Self::ReadContent => 3,
            Self::Ask => 4,
        }
    }
    fn from_tag(t: u8) -> Option<Self> {
        match t {
            1 => Some(Self::List),
            2 => Some(Self::ReadMetadata),
            3 => Some(Self::ReadContent),
            _ => None,
        }
    }
}

/// The kind of an event and its kind-specific, public fields. Private content is never
/// here: it is committed to by the envelope's `payload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventBody {
    /// A signing key joins the chain. The first event of every chain adds a custody key
    /// and is signed by it.
    KeyAdded {
        /// The new key.
        key: PublicKey,
        /// What it may sign.
        role: KeyRole,
    },
    /// A custody key hands over to a new one. Signed by the old key, which signs nothing
    /// after this event.
    KeyRotated {
        /// The retiring key.
        old: KeyId,
        /// Its successor (a custody key).
        new: PublicKey,
    },
    /// A key is revoked: it signs nothing after this event.
    KeyRevoked {
        /// The revoked key.
        key: KeyId,
    },
    /// A memory was ingested; the envelope's `payload` commits to it. With a capture id
    /// (kind tag 0x14, docs/FORMAT.md §4.2) it names the device's capture it came from.
    MemoryIngested {
        /// The memory's id.
        memory: MemoryId,
        /// The capture it records, named by its capture stream and counter; no two
        /// memories of a chain share one (with the same origin key, or none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capture: Option<Capture>,
    },
    /// Payload keys were destroyed (crypto-shredding).
    MemoryErased {
        /// What was erased.
        target: ErasureTarget,
    },
    /// A processor derived a memory from earlier memories of the chain, under a processing
    /// grant; the envelope's `payload` commits to the derived record (docs/FORMAT.md §15.2).
    MemoryDerived {
        /// The derived memory's id.
        memory: MemoryId,
        /// The processing grant it was made under (it names the processor and its key).
        grant: GrantId,
        /// The processor's version that made it.
        version: String,
        /// The input memories, in ascending id order, without repeats.
        inputs: Vec<MemoryId>,
        /// The processor's signature over [`crate::processing::derived_signing_message`].
        signature: Sig,
    },
    /// A memory was erased together with everything derived from it (docs/FORMAT.md §15.3).
    LineageErased {
        /// The memory the owner erased.
        memory: MemoryId,
        /// Why, in the owner's words (may be empty).
        reason: String,
        /// Every memory derived from it, transitively, not erased before: ascending ids.
        closure: Vec<MemoryId>,
    },
    /// The owner let `grantee` read some memories.
    GrantCreated {
        /// The grant's id.
        grant: GrantId,
        /// Who may read.
        grantee: UserId,
        /// What they may do.
        capabilities: Capabilities,
        /// Which memories.
        conditions: GrantConditions,
        /// When the grant lapses by itself.
        expires_at: Option<TimestampMs>,
        /// When the grant opens (a time capsule): nothing is served under it before. Kind
        /// tag 0x23 carries it; 0x20 has none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<TimestampMs>,
    },
    /// The owner withdrew a grant.
    GrantRevoked {
        /// The grant's id.
        grant: GrantId,
    },
    /// The owner let a processor process some memories (docs/FORMAT.md §15.1). Ended by
    /// `grant_revoked` or by its expiry, like any grant.
    ProcessingGranted {
        /// The grant's id (grant ids are one namespace with `grant_created`'s).
        grant: GrantId,
        /// Which processor.
        processor: ProcessorId,
        /// Only this version of it, when set.
        version: Option<String>,
        /// The processor's public key: its results must be signed by it.
        key: PublicKey,
        /// Which memories.
        conditions: GrantConditions,
        /// When the grant lapses by itself.
        expires_at: Option<TimestampMs>,
    },
    /// A grantee asked the owner's model a question under a grant with the ask capability
    /// (docs/FORMAT.md §4.3), recorded before the answer is returned. The question's text
    /// is the event's payload (a record of kind `question`), sealed under the question id's
    /// own key like a memory's content, so the owner reads it and can erase it.
    QuestionAsked {
        /// The question's id: names its payload key (`memory_erased` erases it).
        question: MemoryId,
        /// Who asked: the grant's grantee.
        asker: UserId,
        /// The grant it was asked under.
        grant: GrantId,
        /// The model that answered (a `model_trained` of this chain).
        model: ModelId,
        /// The memories the answer cites, in ascending id order, each once (the grant
        /// covers each).
        cited: Vec<MemoryId>,
    },
    /// A processor fetched memories under a processing grant (recorded before they were
    /// handed over).
    InputsFetched {
        /// The processing grant.
        grant: GrantId,
        /// Which memories were handed over.
        memories: Vec<MemoryId>,
    },
    /// A processor recorded a model trained on memories it fetched (docs/FORMAT.md §15.4).
    ModelTrained {
        /// The model's id.
        model: ModelId,
        /// The processing grant.
        grant: GrantId,
        /// The model's version (the processor's name for it).
        version: String,
        /// Hash of the model artifact (the processor's choice of hash, 32 bytes).
        artifact: Hash32,
        /// Root of the training-set tree.
        set_root: Hash32,
        /// Number of memories in the training set.
        set_count: u64,
        /// The training set published (kind tag 0x41, docs/FORMAT.md §15.4): the members'
        /// seqs, strictly ascending, `set_count` of them. A verifier holding the chain
        /// recomputes `set_root` from it, so an exclusion is sound against the chain alone.
        /// `None` is the earlier tag 0x40, whose set the chain does not show.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        set: Option<Vec<Seq>>,
        /// The processor's signature over [`crate::processing::model_signing_message`].
        signature: Sig,
    },
    /// Someone other than the owner read something, under a grant.
    AccessRecorded {
        /// Who read.
        accessor: UserId,
        /// Under which grant.
        grant: GrantId,
        /// What was done.
        action: AccessAction,
        /// Which memories were returned.
        memories: Vec<MemoryId>,
    },
}

impl EventBody {
    /// The one-byte kind tag (docs/FORMAT.md §4).
    pub fn tag(&self) -> u8 {
        match self {
            Self::KeyAdded { .. } => 0x01,
            Self::KeyRotated { .. } => 0x02,
            Self::KeyRevoked { .. } => 0x03,
            Self::MemoryIngested { capture: None, .. } => 0x10,
            Self::MemoryIngested {
                capture: Some(_), ..
            } => 0x14,
            Self::MemoryErased { .. } => 0x11,
            Self::MemoryDerived { .. } => 0x12,
            Self::LineageErased { .. } => 0x13,
            Self::GrantCreated {
                not_before: None, ..
            } => 0x20,
            Self::GrantCreated { .. } => 0x23,
            Self::GrantRevoked { .. } => 0x21,
            Self::ProcessingGranted { .. } => 0x22,
            Self::AccessRecorded { .. } => 0x30,
            Self::InputsFetched { .. } => 0x31,
            Self::QuestionAsked { .. } => 0x32,
            Self::ModelTrained { set: None, .. } => 0x40,
            Self::ModelTrained { set: Some(_), .. } => 0x41,
        }
    }

    /// The kind's name as in JSON.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::KeyAdded { .. } => "key_added",
            Self::KeyRotated { .. } => "key_rotated",
            Self::KeyRevoked { .. } => "key_revoked",
            Self::MemoryIngested { .. } => "memory_ingested",
            Self::MemoryErased { .. } => "memory_erased",
            Self::MemoryDerived { .. } => "memory_derived",
            Self::LineageErased { .. } => "lineage_erased",
            Self::GrantCreated { .. } => "grant_created",
            Self::GrantRevoked { .. } => "grant_revoked",
            Self::ProcessingGranted { .. } => "processing_granted",
            Self::AccessRecorded { .. } => "access_recorded",
            Self::InputsFetched { .. } => "inputs_fetched",
            Self::QuestionAsked { .. } => "question_asked",
            Self::ModelTrained { .. } => "model_trained",
        }
    }

    /// The capture id of a `memory_ingested` that has one.
    pub fn capture(&self) -> Option<&Capture> {
        match self {
            Self::MemoryIngested { capture, .. } => capture.as_ref(),
            _ => None,
        }
    }

    /// The memory a payload-carrying event (`memory_ingested`, `memory_derived`) adds.
    pub fn new_memory(&self) -> Option<MemoryId> {
        match self {
            Self::MemoryIngested { memory, .. } | Self::MemoryDerived { memory, .. } => {
                Some(*memory)
            }
            _ => None,
        }
    }

    /// The id whose key seals this event's payload, on the kinds that carry one: a new
    /// memory's, or a question's (docs/FORMAT.md §8 rule 5).
    pub fn payload_id(&self) -> Option<MemoryId> {
        match self {
            Self::QuestionAsked { question, .. } => Some(*question),
            other => other.new_memory(),
        }
    }
}

/// A capture id: a device's capture stream (`voice`, `web`, ...) and its counter in it.
/// Each stream keeps its own order; with the origin key (or none), it names one capture
/// for good (docs/FORMAT.md §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capture {
    /// The capture stream: 1 to 64 bytes of text without U+0000.
    pub stream: String,
    /// The capture's number in its stream.
    pub counter: u64,
}

/// Longest capture stream name, in bytes.
pub const MAX_CAPTURE_STREAM: usize = 64;

/// A device's signature over a payload commitment: proves where a memory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The device key (added to the chain with role `device`).
    pub key: KeyId,
    /// Signature over [`keys::origin_signing_message`].
    pub signature: Sig,
}

/// Everything of an event but its custody signature: what the event hash covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedEvent {
    /// The format version (the first byte of its canonical bytes): 1 or 2.
    #[serde(default = "v1")]
    pub version: u8,
    /// Whose chain.
    pub user: UserId,
    /// Position in the chain, from 1.
    pub seq: Seq,
    /// Hash of the previous event; zero for seq 1.
    pub prev: Hash32,
    /// When the ledger accepted it (caller's clock).
    pub timestamp: TimestampMs,
    /// Kind and kind-specific fields.
    #[serde(flatten)]
    pub body: EventBody,
    /// Commitment to the private payload (docs/FORMAT.md §6); only `memory_ingested` has one.
    pub payload: Option<Hash32>,
    /// The capturing device's signature over the payload commitment, when it signed one.
    pub origin: Option<Origin>,
    /// Id of the custody key that signs this event.
    pub signer: KeyId,
}

impl UnsignedEvent {
    /// The canonical bytes (docs/FORMAT.md §3).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.u8(self.version);
        w.str(self.user.as_str());
        w.u64(self.seq.0);
        w.fixed(&self.prev.0);
        w.i64(self.timestamp.0);
        self.body.encode(&mut w);
        w.bool(self.payload.is_some());
        if let Some(p) = &self.payload {
            w.fixed(&p.0);
        }
        w.bool(self.origin.is_some());
        if let Some(o) = &self.origin {
            w.fixed(&o.key.0);
            w.fixed(&o.signature.to_bytes());
        }
        w.fixed(&self.signer.0);
        w.buf
    }

    /// The event hash.
    pub fn hash(&self) -> Hash32 {
        hash::event_hash(&self.canonical_bytes())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("version")?;
        if version != FORMAT_V1 && version != FORMAT_V2 {
            return Err(DecodeError::UnknownVersion(version));
        }
        let user = user_id(r, "user")?;
        let seq = Seq(r.u64("seq")?);
        let prev = Hash32(r.array("prev")?);
        let timestamp = TimestampMs(r.i64("timestamp")?);
        let body = EventBody::decode(r)?;
        let payload = if r.bool("payload flag")? {
            Some(Hash32(r.array("payload")?))
        } else {
            None
        };
        let origin = if r.bool("origin flag")? {
            Some(Origin {
                key: KeyId(r.array("origin key")?),
                signature: Sig::from_bytes(&r.array("origin signature")?),
            })
        } else {
            None
        };
        let signer = KeyId(r.array("signer")?);
        Ok(Self {
            version,
            user,
            seq,
            prev,
            timestamp,
            body,
            payload,
            origin,
            signer,
        })
    }

    /// Signs the event on its own with `key`, whose id must be `self.signer`: a version 1
    /// signature, or a version 2 seal of a batch of one.
    pub fn sign(self, key: &SigningKey) -> Event {
        debug_assert_eq!(hash::key_id(key.verifying_key().as_bytes()), self.signer);
        let h = self.hash();
        let custody = if self.version == FORMAT_V1 {
            Custody::Signature(keys::sign_event_hash(key, &h))
        } else {
            Custody::Seal(crate::seal::SealedBatch::sign(key, &[h]).link(0, None))
        };
        Event {
            unsigned: self,
            custody,
        }
    }

    /// A version 2 event with its seal.
    pub fn sealed(self, link: SealLink) -> Event {
        debug_assert_eq!(self.version, FORMAT_V2);
        Event {
            unsigned: self,
            custody: Custody::Seal(link),
        }
    }
}

fn v1() -> u8 {
    FORMAT_V1
}

/// What makes an event the custody key's (docs/FORMAT.md §5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Custody {
    /// Version 1: the custody key's signature over the event hash.
    Signature(Sig),
    /// Version 2: the seal of the batch the event was signed in.
    Seal(SealLink),
}

/// A signed event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The signed part.
    #[serde(flatten)]
    pub unsigned: UnsignedEvent,
    /// The custody signature (version 1) or seal (version 2).
    #[serde(flatten)]
    pub custody: Custody,
}

impl std::ops::Deref for Event {
    type Target = UnsignedEvent;
    fn deref(&self) -> &UnsignedEvent {
        &self.unsigned
    }
}

impl Event {
    /// The wire form (docs/FORMAT.md §5.3): canonical bytes followed by the 64-byte
    /// signature (version 1) or by the seal link (version 2). This is what a JetStream
    /// message body holds.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut w = Writer {
            buf: self.unsigned.canonical_bytes(),
        };
        match &self.custody {
            Custody::Signature(sig) => w.fixed(&sig.to_bytes()),
            Custody::Seal(link) => link.encode(&mut w),
        }
        w.buf
    }

    /// The wire form with a stored seal link replaced by `seal` (a full seal): what a bundle
    /// or receipt carries, readable without the seal stream.
    pub fn with_seal(mut self, seal: crate::seal::Seal) -> Event {
        if let Custody::Seal(link @ SealLink::Stored { .. }) = &mut self.custody {
            *link = SealLink::Full(seal);
        }
        self
    }

    /// The custody signature as carried: version 1's, or the seal's (`None` for a stored
    /// link, whose signature is in the record).
    pub fn signature_mut(&mut self) -> Option<&mut Sig> {
        match &mut self.custody {
            Custody::Signature(s) | Custody::Seal(SealLink::Single { signature: s }) => Some(s),
            Custody::Seal(SealLink::Full(seal)) => Some(&mut seal.signature),
            Custody::Seal(SealLink::Stored { .. }) => None,
        }
    }

    /// Its custody receipt (docs/FORMAT.md §5.5): version 2 with a `single` or `full`
    /// seal; `None` for version 1 or a stored link.
    pub fn receipt(&self, hash: &Hash32) -> Option<crate::receipt::CustodyReceipt> {
        self.seal(hash)
            .map(|s| crate::receipt::CustodyReceipt::new(&self.unsigned, s))
    }

    /// The event's signature (version 1) or seal (version 2, `None` for a stored link).
    pub fn seal(&self, hash: &Hash32) -> Option<crate::seal::Seal> {
        match &self.custody {
            Custody::Signature(_) => None,
            Custody::Seal(link) => link.seal(hash),
        }
    }

    /// Decodes the wire form strictly and returns the event with its hash (computed over
    /// the received bytes, so no re-encoding is needed).
    pub fn from_wire(bytes: &[u8]) -> Result<(Event, Hash32), DecodeError> {
        let Some(&version) = bytes.first() else {
            return Err(DecodeError::Truncated {
                offset: 0,
                what: "event",
            });
        };
        match version {
            FORMAT_V1 => {
                if bytes.len() < 64 + 1 {
                    return Err(DecodeError::Truncated {
                        offset: bytes.len(),
                        what: "event",
                    });
                }
                let (content, sig) = bytes.split_at(bytes.len() - 64);
                let mut r = Reader::new(content);
                let unsigned = UnsignedEvent::decode(&mut r)?;
                r.finish()?;
                let sig: [u8; 64] = sig.try_into().expect("split_at left 64 bytes");
                let event = Event {
                    unsigned,
                    custody: Custody::Signature(Sig::from_bytes(&sig)),
                };
                Ok((event, hash::event_hash(content)))
            }
            FORMAT_V2 => {
                let mut r = Reader::new(bytes);
                let unsigned = UnsignedEvent::decode(&mut r)?;
                let end = r.pos();
                let link = SealLink::decode(&mut r)?;
                r.finish()?;
                let event = Event {
                    unsigned,
                    custody: Custody::Seal(link),
                };
                Ok((event, hash::event_hash(&bytes[..end])))
            }
            v => Err(DecodeError::UnknownVersion(v)),
        }
    }

    /// The event hash (recomputed).
    pub fn hash(&self) -> Hash32 {
        self.unsigned.hash()
    }
}

/// The tip of a chain: enough to build the next event. `len` is 0 for an empty chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Whose chain.
    pub user: UserId,
    /// Number of events (the last event's seq).
    pub len: u64,
    /// The last event's hash (zero for an empty chain).
    pub hash: Hash32,
}

impl Head {
    /// The head of an empty chain.
    pub fn empty(user: UserId) -> Self {
        Self {
            user,
            len: 0,
            hash: Hash32::ZERO,
        }
    }

    /// The sequence number the next event gets.
    pub fn next_seq(&self) -> Seq {
        Seq(self.len + 1)
    }

    /// The unsigned event of format `version` that follows this head, signed by the key
    /// `signer`, with its hash (to be sealed, format version 2).
    pub fn next_unsigned(
        &self,
        version: u8,
        signer: KeyId,
        timestamp: TimestampMs,
        body: EventBody,
        payload: Option<Hash32>,
        origin: Option<Origin>,
    ) -> (UnsignedEvent, Hash32) {
        let unsigned = UnsignedEvent {
            version,
            user: self.user.clone(),
            seq: self.next_seq(),
            prev: self.hash,
            timestamp,
            body,
            payload,
            origin,
            signer,
        };
        let h = unsigned.hash();
        (unsigned, h)
    }

    /// Builds and signs (format version 1) the event that follows this head, without
    /// moving the head.
    pub fn next_event(
        &self,
        key: &SigningKey,
        timestamp: TimestampMs,
        body: EventBody,
        payload: Option<Hash32>,
        origin: Option<Origin>,
    ) -> (Event, Hash32) {
        let (unsigned, h) = self.next_unsigned(
            FORMAT_V1,
            hash::key_id(key.verifying_key().as_bytes()),
            timestamp,
            body,
            payload,
            origin,
        );
        let signature = keys::sign_event_hash(key, &h);
        (
            Event {
                unsigned,
                custody: Custody::Signature(signature),
            },
            h,
        )
    }

    /// Moves the head past `event` (whose hash is `hash`).
    pub fn advance(&mut self, event: &Event, hash: Hash32) {
        self.len = event.seq.0;
        self.hash = hash;
    }
}
