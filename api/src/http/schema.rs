//! The shapes of the API's answers, as OpenAPI schemas (utoipa): what `/openapi.json`
//! documents for each response. Handlers build their answers from these types or, where
//! an answer is assembled as JSON, the API tests validate every response they receive
//! against the documented schema, so the two cannot drift apart.

use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem (`application/problem+json`), for every refusal.
#[derive(Serialize, ToSchema)]
pub struct ProblemDoc {
    /// `https://mnemo.dev/problems/<slug>`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong.
    pub detail: String,
}

/// A created user.
#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    /// The user id.
    pub id: String,
    /// The user's API token.
    pub token: String,
    /// The user's NATS account key, when operator mode created one.
    pub nats_account: Option<String>,
}

/// Issued device credentials.
#[derive(Serialize, ToSchema)]
pub struct DeviceIssued {
    /// The device's NATS user key (`U...`).
    pub device: String,
    /// Seconds until the credentials expire.
    pub expires_in: i64,
    /// The `.creds` file (absent when the device sent its own `nats_public_key`).
    pub creds: Option<String>,
    /// The user JWT for the device's own key (with `nats_public_key`; no seed is sent).
    pub jwt: Option<String>,
    /// The id of the device signing key added to the chain (with `signing_key`).
    pub signing_key_id: Option<String>,
}

/// A revoked device.
#[derive(Serialize, ToSchema)]
pub struct DeviceRevoked {
    /// The device's key.
    pub device: String,
    /// Always true.
    pub revoked: bool,
}

/// A page of memories, newest first.
#[derive(Serialize, ToSchema)]
pub struct MemoryPage {
    /// The memories.
    pub items: Vec<super::memories::MemoryView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<i64>,
}

/// A memory's proof bundle (docs/FORMAT.md §12).
#[derive(Serialize, ToSchema)]
pub struct ProofDoc {
    /// The event (docs/FORMAT.md §10).
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    /// The custody key that signed it (hex).
    pub signer_key: String,
    /// The device key of its origin signature, if any (hex).
    pub origin_key: Option<String>,
    /// The event's inclusion proof in the checkpoint's chain tree.
    #[schema(value_type = Object)]
    pub inclusion: serde_json::Value,
    /// The checkpoint.
    #[schema(value_type = Object)]
    pub checkpoint: serde_json::Value,
    /// The checkpoint in an epoch root, once an epoch covered it.
    #[schema(value_type = Object)]
    pub epoch: Option<serde_json::Value>,
    /// The epoch root's anchor receipt, once anchored.
    #[schema(value_type = Object)]
    pub anchor: Option<serde_json::Value>,
}

/// One signed event of a chain.
#[derive(Serialize, ToSchema)]
pub struct ChainItem {
    /// Its seq.
    pub seq: u64,
    /// Its hash (hex).
    pub hash: String,
    /// The event, decoded.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    /// Its wire bytes (hex): what is hashed and signed.
    pub wire: String,
}

/// A page of a chain.
#[derive(Serialize, ToSchema)]
pub struct ChainPage {
    /// The events.
    pub items: Vec<ChainItem>,
    /// Pass as `from` for the next page; null at the end.
    pub next_from: Option<u64>,
}

/// A chain's head.
#[derive(Serialize, ToSchema)]
pub struct ChainHead {
    /// Whose chain.
    pub user: String,
    /// Events in it.
    pub seq: u64,
    /// The last event's hash (hex).
    pub hash: String,
}

/// An erasure: its event, the derived memories erased with it (its lineage closure), and
/// the models marked stale.
#[derive(Serialize, ToSchema)]
pub struct ErasureReceipt {
    /// The erasure event's seq.
    pub seq: u64,
    /// Its hash (hex).
    pub event_hash: String,
    /// The derived memories erased with it (hex ids; empty for `all` or no lineage).
    pub closure: Vec<String>,
    /// The models whose training set it reached (hex ids).
    pub stale_models: Vec<String>,
}

/// An event appended to the caller's chain.
#[derive(Serialize, ToSchema)]
pub struct EventReceipt {
    /// The grant's id (grant events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The event's seq.
    pub seq: u64,
    /// The event's hash (hex).
    pub event_hash: String,
    /// The event with its seal (format version 2; absent for version 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custody: Option<CustodyReceiptDoc>,
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

/// A grant as listed.
#[derive(Serialize, ToSchema)]
pub struct GrantView {
    /// Its id (hex).
    pub id: String,
    /// Whose memories it opens.
    pub owner: String,
    /// Who may read.
    pub grantee: String,
    /// `{metadata, content}`.
    #[schema(value_type = Object)]
    pub capabilities: serde_json::Value,
    /// `{tags, kinds, from, until, memories}`.
    #[schema(value_type = Object)]
    pub conditions: serde_json::Value,
    /// When it lapses (ms), if it does.
    pub expires_at: Option<i64>,
    /// The seq of its `grant_created`.
    pub created_seq: u64,
    /// The seq of its `grant_revoked`, once revoked.
    pub revoked_seq: Option<u64>,
    /// Neither revoked nor lapsed.
    pub live: bool,
}

/// Grants given or received.
#[derive(Serialize, ToSchema)]
pub struct GrantsPage {
    /// The grants.
    pub items: Vec<GrantView>,
    /// The processing grants the caller gave (`role=owner`; empty otherwise).
    pub processing: Vec<ProcessingGrantView>,
}

/// A processing grant.
#[derive(Serialize, ToSchema)]
pub struct ProcessingGrantView {
    /// Its id (hex).
    pub id: String,
    /// Whose memories it opens.
    pub owner: String,
    /// Which processor.
    pub processor: String,
    /// Only this version, when set.
    pub version: Option<String>,
    /// The processor's public key (hex).
    pub processor_key: String,
    /// `{tags, kinds, from, until, memories}`.
    #[schema(value_type = Object)]
    pub conditions: serde_json::Value,
    /// When it lapses (ms), if it does.
    pub expires_at: Option<i64>,
    /// Neither revoked nor lapsed.
    pub live: bool,
}

/// One read by someone else.
#[derive(Serialize, ToSchema)]
pub struct AccessEntry {
    /// The `access_recorded` event's seq.
    pub seq: u64,
    /// Who read.
    pub accessor: String,
    /// Under which grant (hex).
    pub grant: String,
    /// `list`, `read_metadata` or `read_content`.
    pub action: String,
    /// The memories returned (hex ids).
    pub memories: Vec<String>,
    /// When (ms).
    pub at: i64,
}

/// The access log, newest first.
#[derive(Serialize, ToSchema)]
pub struct AccessLog {
    /// The reads.
    pub items: Vec<AccessEntry>,
}

/// Anchored epochs.
#[derive(Serialize, ToSchema)]
pub struct AnchorsPage {
    /// The epoch records.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
}

/// A JSON document whose fields the endpoint's description and docs/WORKERS.md give.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct JsonDoc(pub serde_json::Value);

/// A console session.
#[derive(Serialize, ToSchema)]
pub struct Session {
    /// Who is signed in.
    pub user: String,
    /// The token every write made with the session cookie carries in `X-CSRF-Token`.
    pub csrf: String,
    /// Seconds until the session ends.
    pub expires_in: u64,
}
