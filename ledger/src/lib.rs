//! # mnemo-ledger
//!
//! The only writer of custody chains. Each user's chain is a subject on NATS JetStream
//! (one stream per user, or a subject in one of N shared streams: see [`Layout`]); every
//! event is built and signed with `mnemo-core` and published with
//! `Nats-Expected-Last-Subject-Sequence`, so concurrent writers (several ledger processes)
//! can never fork a chain: a conflict reloads the head and retries.
//!
//! - [`Ledger`]: `create_user`, `append` (a memory), `append_stream` (a memory whose
//!   content arrives as a stream: uploads, sealed chunk by chunk into the object store),
//!   `append_event` (grants, access records), `erase` (crypto-shredding), `head`,
//!   `read`/`follow`/`events`, `verify_chain`, `open_memory` (decrypt and check against the
//!   commitment), `open_memory_stream` (the same, large content streamed out of the object
//!   store chunk by chunk, fetched only when polled), `stats`. Appends to one user are pipelined in the per-user layout
//!   (docs/decisions/0008).
//! - [`LedgerConfig`]: layout, replicas, keys, limits (what an acknowledged append means
//!   on each server setup: docs/decisions/0002-durability.md).
//! - [`crypto`]: XChaCha20-Poly1305 sealing; `keystore`: generation keys, memory keys,
//!   crypto-shredding.
//! - [`envelope`]: the chain message body (event + sealed payload).
//! - [`seals`]: the seal records of format version 2 (one signature per batch of events,
//!   signed by the ledger's sealer) and their resolution into each event's seal.
//! - [`provision`]: get-or-create for every stream, KV bucket and object store, with the
//!   deployment's replica count.
//!
//! What it does not do: projections (views), anchoring, authentication. Receipts are only
//! returned after JetStream acknowledged the write on file storage.

pub mod clock;
mod config;
pub mod crypto;
pub mod envelope;
mod error;
mod keystore;
mod ledger;
mod objects;
pub mod provision;
mod read_only;
pub mod seals;
mod snapshots;

pub use config::{Keyring, LedgerConfig};
pub use crypto::SecretKey;
pub use error::{LedgerError, Result};
pub use keystore::{GENERATION_SIZE, KeyCache};
pub use ledger::{
    ChainReader, ChainTip, ContentStream, DerivedResult, DeviceSignature, FetchedInput, Ledger,
    LedgerStats, MAX_IDEMPOTENCY_KEY, MAX_QUESTION_BYTES, NOT_THIS_PROCESSOR, NewMemory,
    NewQuestion, OpenedMemory, OpenedStream, QUESTION_KIND, Receipt, StoredEvent, SweptChunks,
    content_error, is_idempotency_key,
};
pub use mnemo_core::names::{
    CHAIN_SUBJECT_PREFIX, ChainLocation, KEYS_BUCKET, Layout, OBJECTS_BUCKET,
};
pub use read_only::LedgerReader;
pub use seals::SealStore;
