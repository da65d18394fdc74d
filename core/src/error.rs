//! Error types. Every failure names what failed and where, with a stable machine-readable
//! `code()` that independent verifiers and the known-answer vectors use.

use crate::capture_marks::Recorded;
use crate::ids::{GrantId, Hash32, KeyId, MemoryId, Seq};

/// An identifier was malformed. Callers should reject the input (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// A user id must be 1 to 64 bytes long.
    #[error("user id must be 1 to 64 bytes, got {0}")]
    UserIdLength(usize),
    /// A user id may only hold ASCII letters, digits, `-` and `_`.
    #[error("user id may only hold ASCII letters, digits, '-' and '_', found {0:?}")]
    UserIdChar(char),
    /// Hex of the wrong length or with non-hex characters.
    #[error("{what} must be {expected_len} hex characters")]
    Hex {
        /// The type being parsed.
        what: &'static str,
        /// Number of hex characters expected.
        expected_len: usize,
    },
}

/// Bytes that are not a canonical encoding. Callers should treat the data as corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("truncated at byte {offset} reading {what}")]
    Truncated {
        /// Byte offset.
        offset: usize,
        /// The field being read.
        what: &'static str,
    },
    /// A value that has no meaning in this format version (unknown tag, bad flag, bad UTF-8,
    /// an invalid id or key).
    #[error("invalid {what} at byte {offset}")]
    Invalid {
        /// Byte offset.
        offset: usize,
        /// The field being read.
        what: &'static str,
    },
    /// A format version this build does not know.
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    /// Bytes left after a complete value.
    #[error("trailing bytes at {offset}")]
    TrailingBytes {
        /// Byte offset.
        offset: usize,
    },
}

/// A chain failed verification at `seq`. Callers should report the chain as tampered with
/// or corrupt from that event on; nothing before `seq` is affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The event could not be decoded.
    #[error("seq {seq}: undecodable event: {source}")]
    Decode {
        /// Sequence number expected at this position.
        seq: Seq,
        /// Why decoding failed.
        source: DecodeError,
    },
    /// The event names another user than the chain's.
    #[error("seq {seq}: event belongs to another user")]
    WrongUser {
        /// The event's sequence number.
        seq: Seq,
    },
    /// Sequence numbers are not gap-free from 1 (a dropped, inserted, duplicated or
    /// reordered event).
    #[error("expected seq {expected}, found {found}")]
    SeqGap {
        /// The next sequence number the chain needs.
        expected: Seq,
        /// What the event says.
        found: Seq,
    },
    /// `prev` is not the hash of the previous event.
    #[error("seq {seq}: prev hash {found} does not match previous event {expected}")]
    BrokenLink {
        /// The event's sequence number.
        seq: Seq,
        /// Hash of the previous event.
        expected: Hash32,
        /// What the event says.
        found: Hash32,
    },
    /// A version 2 event's seal does not cover it: its index, path length or root
    /// (docs/FORMAT.md §5.4), or a stored seal that is not there.
    #[error("seq {seq}: {}", .check.describe())]
    Seal {
        /// The event's sequence number.
        seq: Seq,
        /// Which check failed.
        check: crate::seal::SealCheck,
    },
    /// The custody signature does not verify.
    #[error("seq {seq}: bad signature")]
    BadSignature {
        /// The event's sequence number.
        seq: Seq,
    },
    /// The device's origin signature does not verify.
    #[error("seq {seq}: bad origin signature")]
    BadOriginSignature {
        /// The event's sequence number.
        seq: Seq,
    },
    /// The signing key was never added to this chain.
    #[error("seq {seq}: unknown key {key}")]
    UnknownKey {
        /// The event's sequence number.
        seq: Seq,
        /// The key id.
        key: KeyId,
    },
    /// The key exists but may not sign this event (revoked, rotated away, or of the wrong
    /// role).
    #[error("seq {seq}: key {key} may not sign here: {reason}")]
    KeyNotAllowed {
        /// The event's sequence number.
        seq: Seq,
        /// The key id.
        key: KeyId,
        /// Why not.
        reason: &'static str,
    },
    /// The first event must add a custody key and be signed by it.
    #[error("seq 1: {0}")]
    BadGenesis(&'static str),
    /// The event is well-formed and signed but not allowed in this state of the chain.
    #[error("seq {seq}: {reason}")]
    InvalidTransition {
        /// The event's sequence number.
        seq: Seq,
        /// Why not.
        reason: &'static str,
    },
    /// A value the format does not allow (docs/FORMAT.md §4.5): a time outside the
    /// representable range, text with U+0000.
    #[error("seq {seq}: invalid value: {reason}")]
    InvalidValue {
        /// The event's sequence number.
        seq: Seq,
        /// Which value and why.
        reason: &'static str,
    },
    /// A memory id is referenced that the chain does not hold.
    #[error("seq {seq}: unknown memory {memory}")]
    UnknownMemory {
        /// The event's sequence number.
        seq: Seq,
        /// The memory id.
        memory: MemoryId,
    },
    /// A grant id is referenced that the chain does not hold or that is revoked.
    #[error("seq {seq}: grant {grant} {reason}")]
    BadGrant {
        /// The event's sequence number.
        seq: Seq,
        /// The grant id.
        grant: GrantId,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A processor's signature over its result does not verify under the key its
    /// processing grant names.
    #[error("seq {seq}: bad processor signature")]
    BadProcessorSignature {
        /// The event's sequence number.
        seq: Seq,
    },
    /// A processing event names a memory its grant does not cover: not fetched under the
    /// grant (a result's input) or outside the grant's memory list (a fetch).
    #[error("seq {seq}: memory {memory} is not covered by the processing grant")]
    InputNotCovered {
        /// The event's sequence number.
        seq: Seq,
        /// The memory.
        memory: MemoryId,
    },
    /// A question's answer cites a memory its grant does not cover (the grant's memory
    /// list, or, with the memory's record at hand, its tags, kinds or times).
    #[error("seq {seq}: the answer cites memory {memory}, which its grant does not cover")]
    CitationNotCovered {
        /// The event's sequence number.
        seq: Seq,
        /// The memory.
        memory: MemoryId,
    },
    /// A result repeats an earlier one (same processor, version and inputs).
    #[error("seq {seq}: the same result was recorded before as memory {original}")]
    AlreadyDerived {
        /// The event's sequence number.
        seq: Seq,
        /// The earlier result.
        original: MemoryId,
    },
    /// A capture id (origin key or none, stream, counter) appears a second time: one
    /// capture recorded twice.
    #[error("seq {seq}: capture {stream}/{counter} was recorded before, {recorded}")]
    DuplicateCapture {
        /// The event's sequence number.
        seq: Seq,
        /// Where the chain recorded it first.
        recorded: Recorded,
        /// The capture stream.
        stream: String,
        /// The capture counter.
        counter: u64,
    },
    /// An erasure leaves memories derived from the erased one readable: it must name the
    /// whole lineage closure (`lineage_erased`).
    #[error("seq {seq}: the erasure of {memory} does not cover its lineage closure")]
    ErasureIncomplete {
        /// The event's sequence number.
        seq: Seq,
        /// The erased memory.
        memory: MemoryId,
    },
    /// The chain ended before a checkpoint it is checked against.
    #[error("chain ends at seq {have} but a checkpoint covers seq {checkpoint}")]
    Truncated {
        /// Last sequence number present.
        have: u64,
        /// Sequence number of the checkpoint.
        checkpoint: Seq,
    },
    /// The chain's tree root at a checkpoint's seq differs from the checkpoint's.
    #[error("checkpoint at seq {seq} does not match the chain ({what})")]
    CheckpointMismatch {
        /// Sequence number of the checkpoint.
        seq: Seq,
        /// `head` or `root`.
        what: &'static str,
    },
}

impl ChainError {
    /// Stable machine-readable code (docs/FORMAT.md §9).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Decode { .. } => "decode",
            Self::WrongUser { .. } => "wrong_user",
            Self::SeqGap { .. } => "seq_gap",
            Self::BrokenLink { .. } => "broken_link",
            Self::BadSignature { .. } => "bad_signature",
            Self::Seal { check, .. } => check.code(),
            Self::BadOriginSignature { .. } => "bad_origin_signature",
            Self::UnknownKey { .. } => "unknown_key",
            Self::KeyNotAllowed { .. } => "key_not_allowed",
            Self::BadGenesis(_) => "bad_genesis",
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::InvalidValue { .. } => "invalid_value",
            Self::UnknownMemory { .. } => "unknown_memory",
            Self::BadGrant { .. } => "bad_grant",
            Self::BadProcessorSignature { .. } => "bad_processor_signature",
            Self::InputNotCovered { .. } => "input_not_covered",
            Self::CitationNotCovered { .. } => "citation_not_covered",
            Self::AlreadyDerived { .. } => "already_derived",
            Self::ErasureIncomplete { .. } => "erasure_incomplete",
            Self::DuplicateCapture { .. } => "duplicate_capture",
            Self::Truncated { .. } => "truncated",
            Self::CheckpointMismatch { .. } => "checkpoint_mismatch",
        }
    }

    /// The sequence number at which the chain stops being valid, when there is one.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            Self::Decode { seq, .. }
            | Self::WrongUser { seq }
            | Self::BrokenLink { seq, .. }
            | Self::BadSignature { seq }
            | Self::Seal { seq, .. }
            | Self::BadOriginSignature { seq }
            | Self::BadProcessorSignature { seq }
            | Self::UnknownKey { seq, .. }
            | Self::KeyNotAllowed { seq, .. }
            | Self::InvalidTransition { seq, .. }
            | Self::InvalidValue { seq, .. }
            | Self::UnknownMemory { seq, .. }
            | Self::BadGrant { seq, .. }
            | Self::InputNotCovered { seq, .. }
            | Self::CitationNotCovered { seq, .. }
            | Self::AlreadyDerived { seq, .. }
            | Self::ErasureIncomplete { seq, .. }
            | Self::DuplicateCapture { seq, .. }
            | Self::CheckpointMismatch { seq, .. } => Some(*seq),
            Self::SeqGap { expected, .. } => Some(*expected),
            Self::BadGenesis(_) => Some(Seq::FIRST),
            Self::Truncated { have, .. } => Some(Seq(have + 1)),
        }
    }
}

/// A proof (inclusion, consistency, or a whole proof bundle) failed to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("{tree}: index {index} outside tree of size {size}")]
    IndexOutOfRange {
        /// Which proof.
        tree: &'static str,
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for its tree size.
    #[error("{tree}: proof has the wrong length")]
    WrongLength {
        /// Which proof.
        tree: &'static str,
    },
    /// The recomputed root differs from the expected root.
    #[error("{tree}: recomputed root does not match")]
    RootMismatch {
        /// Which proof.
        tree: &'static str,
    },
    /// The bundle's event signature or key does not verify.
    #[error("seq {seq}: {what}")]
    Event {
        /// The event's sequence number.
        seq: Seq,
        /// What failed.
        what: &'static str,
    },
    /// The pieces of a bundle do not refer to each other (user, seq, epoch, leaf count).
    #[error("bundle pieces disagree: {0}")]
    Mismatch(&'static str),
}

impl ProofError {
    /// Stable machine-readable code (docs/FORMAT.md §9).
    pub fn code(&self) -> &'static str {
        match self {
            Self::IndexOutOfRange { .. } => "index_out_of_range",
            Self::WrongLength { .. } => "proof_length",
            Self::RootMismatch { .. } => "root_mismatch",
            Self::Event { .. } => "event",
            Self::Mismatch(_) => "mismatch",
        }
    }
}
