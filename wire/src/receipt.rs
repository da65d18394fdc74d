//! What an ingest answers ([`IngestReceipt`]), over REST (`POST /v1/memories`) and over
//! NATS (`mnemo.ingest`, `mnemo.capture`, uploads): one type, so a device and a REST
//! client read the same fields (docs/asyncapi.yaml, `/openapi.json`).

use mnemo_core::{CustodyReceipt, Hash32, MemoryId, UserId};
use mnemo_ledger::Receipt;
use serde::Serialize;
use utoipa::ToSchema;

/// A memory written (or, with `duplicate`, found written by an earlier try).
#[derive(Serialize, ToSchema)]
pub struct IngestReceipt {
    /// Whose chain (over NATS, where the subject does not say it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub user: Option<UserId>,
    /// The memory's id (hex).
    #[schema(value_type = Option<String>)]
    pub id: Option<MemoryId>,
    /// Its event's seq.
    pub seq: u64,
    /// Its event's hash (hex).
    #[schema(value_type = String)]
    pub event_hash: Hash32,
    /// A retry: this is the first try's receipt, and nothing was written now.
    pub duplicate: bool,
    /// The event with its seal, verifiable alone against the custody key (docs/FORMAT.md
    /// §5.5; `mnemo-audit verify-receipt`). Absent for an event written in format version 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<CustodyReceiptDoc>)]
    pub custody: Option<CustodyReceipt>,
    /// The content's size in bytes (uploads in chunks over NATS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `blake3:<hex>` of the content (uploads in chunks over NATS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}

impl IngestReceipt {
    /// The receipt of the ledger's `r`, as REST answers it.
    pub fn of(r: Receipt) -> Self {
        Self {
            user: None,
            id: r.memory,
            seq: r.seq.0,
            event_hash: r.hash,
            duplicate: r.duplicate,
            custody: r.custody,
            bytes: None,
            content_hash: None,
        }
    }

    /// The receipt of the ledger's `r`, naming whose chain, as NATS answers it.
    pub fn over_nats(r: Receipt) -> Self {
        let user = r.user.clone();
        Self {
            user: Some(user),
            ..Self::of(r)
        }
    }
}

/// A custody receipt (docs/FORMAT.md §5.5): the event's canonical bytes and its seal,
/// verifiable alone, offline, against the custody key.
#[derive(Serialize, ToSchema)]
pub struct CustodyReceiptDoc {
    /// The event's canonical bytes (FORMAT.md §3, hex).
    pub event: String,
    /// The seal of the batch the event was signed in.
    pub seal: SealDoc,
}

/// A seal (docs/FORMAT.md §5.4).
#[derive(Serialize, ToSchema)]
pub struct SealDoc {
    /// Events in the batch.
    pub size: u32,
    /// The event's leaf index, from 0.
    pub index: u32,
    /// Sibling hashes from the leaf up (hex).
    pub path: Vec<String>,
    /// The batch tree's root (hex).
    pub root: String,
    /// The custody key's signature over `SIG_SEAL || u64 size || root` (hex).
    pub signature: String,
}
