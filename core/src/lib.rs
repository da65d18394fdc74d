//! # mnemo-core
//!
//! The custody core of mnemo: what a memory's chain of custody *is*, independent of where
//! it is stored. Everything else (ledger, projections, anchor, API, audit) builds on it.
//!
//! - [`event`]: the signed event envelope ([`Event`], [`UnsignedEvent`], [`EventBody`]), its
//!   canonical versioned encoding and the wire form stored in JetStream.
//! - [`hash`]: blake3 with one derive-key context per purpose (domain separation).
//! - [`keys`]: ed25519 keys, single and batch verification, key ids, key history.
//! - [`commitment`]: salted payload commitments that reveal nothing once erased.
//! - [`memory`]: the memory record a payload commitment covers.
//! - [`merkle`]: RFC 9162 trees, inclusion and consistency proofs, an append accumulator.
//! - [`seal`]: one custody signature over a batch of events (format version 2).
//! - [`receipt`]: a custody receipt, an acknowledged event with its seal, verifiable alone.
//! - [`checkpoint`]: per-user checkpoints and the epoch tree over all users.
//! - [`epoch_log`]: the epoch log (epoch tree version 2): checkpoints appended, never moved.
//! - [`bundle`]: self-contained proof bundles for one memory.
//! - [`chain_state`]: a chain's state between events ([`ChainState`]) and the rules that
//!   move it, resumable from a checkpoint; the one place that decides what may extend a chain.
//! - [`snapshot`]: a chain's rules state as kept between uses ([`snapshot::ChainSnapshot`]).
//! - [`processing`]: processing grants, processor signatures, derivation keys, training-set
//!   trees and their inclusion and exclusion proofs.
//! - [`grant`]: the access rule ([`Grant::allows`], [`GrantConditions::covers`]).
//! - [`verify`]: the whole-chain verifier ([`ChainVerifier`]): [`ChainState`] plus batched
//!   signatures, pinned genesis keys and checkpoints.
//! - [`values`]: what values a chain may hold (time range, no U+0000 in text).
//! - [`replies`]: where mnemo may answer a NATS request (the requester's own inbox space).
//! - [`names`]: every stream, subject, bucket and consumer name, and chain [`names::Layout`]s.
//! - [`custody`]: custody bundles (a user's whole chain for offline audit) and their
//!   streaming verifier.
//!
//! The byte-level format is specified in `docs/FORMAT.md`; `testdata/vectors.json` holds
//! known-answer vectors.
//!
//! What this crate does not do: any I/O, any clock, any randomness. Timestamps, salts and
//! keys come from the caller, which keeps every function here deterministic and testable.

pub mod backoff;
pub mod bundle;
pub mod capture_marks;
pub mod chain_state;
pub mod checkpoint;
pub mod commitment;
pub mod custody;
mod encoding;
pub mod epoch_log;
pub mod error;
pub mod event;
pub mod grant;
pub mod hash;
pub mod ids;
pub mod keys;
pub mod memory;
pub mod merkle;
pub mod names;
pub mod processing;
pub mod receipt;
pub mod replies;
pub mod seal;
pub mod search_index;
pub mod snapshot;
pub mod values;
pub mod verify;

pub use backoff::Backoff;
pub use bundle::{AnchorReceipt, ProofBundle, ProofLevel};
pub use chain_state::{ChainState, EventSignatures, SignatureCheck, Signed};
pub use checkpoint::{Checkpoint, EpochProof, EpochTree, HeadRecord};
pub use error::{ChainError, DecodeError, IdError, ProofError};
pub use event::{
    AccessAction, Capabilities, Capture, Custody, ErasureTarget, Event, EventBody, FORMAT_V1,
    FORMAT_V2, FORMAT_VERSION, GrantConditions, Head, Origin, UnsignedEvent,
};
pub use grant::{Grant, MemoryFacts, Refusal};
pub use ids::{
    Address, GrantId, Hash32, KeyId, MemoryId, ModelId, ProcessorId, Seq, TimestampMs, UserId,
};
pub use keys::{KeyRole, PublicKey, Sig};
pub use memory::{Content, MemoryRecord};
pub use merkle::{Accumulator, ConsistencyProof, InclusionProof, MerkleTree};
pub use processing::{ProcessingGrant, TrainingSet, TrainingSetProof};
pub use receipt::CustodyReceipt;
pub use seal::{Seal, SealCheck, SealLink, SealedBatch};
pub use verify::{ChainSummary, ChainVerifier, SignatureBatch};

/// Re-export so callers name the same ed25519 types.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
