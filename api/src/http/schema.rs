//! The shapes of the API's answers, as OpenAPI schemas (utoipa): what `/openapi.json`
//! documents for each response. Handlers return these types, so the document and the bytes
//! cannot drift apart (and the API tests validate every response they receive against the
//! document as well).

use mnemo_core::{
    Capabilities, CustodyReceipt, Event, GrantConditions, GrantId, Hash32, KeyId, MemoryId,
    ModelId, ProcessorId, PublicKey, TimestampMs, UserId,
};
use serde::Serialize;
use utoipa::ToSchema;

pub use mnemo_wire::problem::ProblemDoc;
pub use mnemo_wire::receipt::{CustodyReceiptDoc, IngestReceipt, SealDoc};

/// A created user.
#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    /// The user id.
    #[schema(value_type = String)]
    pub id: UserId,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds: Option<String>,
    /// The user JWT for the device's own key (with `nats_public_key`; no seed is sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    /// The id of the device signing key added to the chain (with `signing_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub signing_key_id: Option<KeyId>,
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
    /// The checkpoint in an epoch root, once an epoch covered it (null before).
    #[schema(value_type = Option<Object>)]
    pub epoch: Option<serde_json::Value>,
    /// The epoch root's anchor receipt, once anchored (null before).
    #[schema(value_type = Option<Object>)]
    pub anchor: Option<serde_json::Value>,
}

/// One signed event of a chain.
#[derive(Serialize, ToSchema)]
pub struct ChainItem {
    /// Its seq.
    pub seq: u64,
    /// Its hash (hex).
    #[schema(value_type = String)]
    pub hash: Hash32,
    /// The event, decoded.
    #[schema(value_type = Object)]
    pub event: Event,
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
    #[schema(value_type = String)]
    pub user: UserId,
    /// Events in it.
    pub seq: u64,
    /// The last event's hash (hex).
    #[schema(value_type = String)]
    pub hash: Hash32,
}

/// An erasure: its event, the derived memories erased with it (its lineage closure), and
/// the models marked stale.
#[derive(Serialize, ToSchema)]
pub struct ErasureReceipt {
    /// The erasure event's seq.
    pub seq: u64,
    /// Its hash (hex).
    #[schema(value_type = String)]
    pub event_hash: Hash32,
    /// The derived memories erased with it (hex ids; empty for `all` or no lineage).
    #[schema(value_type = Vec<String>)]
    pub closure: Vec<MemoryId>,
    /// The models whose training set it reached (hex ids).
    #[schema(value_type = Vec<String>)]
    pub stale_models: Vec<ModelId>,
}

/// An event appended to the caller's chain.
#[derive(Serialize, ToSchema)]
pub struct EventReceipt {
    /// The grant's id (grant events).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub id: Option<GrantId>,
    /// The processor (processing grants).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub processor: Option<ProcessorId>,
    /// The processor version a processing grant is limited to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The event's seq.
    pub seq: u64,
    /// The event's hash (hex).
    #[schema(value_type = String)]
    pub event_hash: Hash32,
    /// The event with its seal (format version 2; absent for version 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<CustodyReceiptDoc>)]
    pub custody: Option<CustodyReceipt>,
}

impl EventReceipt {
    /// The receipt of a grant event.
    pub fn grant(id: GrantId, r: mnemo_ledger::Receipt) -> Self {
        Self {
            id: Some(id),
            processor: None,
            version: None,
            seq: r.seq.0,
            event_hash: r.hash,
            custody: r.custody,
        }
    }
}

/// A grant as listed.
#[derive(Serialize, ToSchema)]
pub struct GrantView {
    /// Its id (hex).
    #[schema(value_type = String)]
    pub id: GrantId,
    /// Whose memories it opens.
    #[schema(value_type = String)]
    pub owner: UserId,
    /// Who may read.
    #[schema(value_type = String)]
    pub grantee: UserId,
    /// `{metadata, content, ask}`.
    #[schema(value_type = Object)]
    pub capabilities: Capabilities,
    /// `{tags, kinds, from, until, memories}`.
    #[schema(value_type = Object)]
    pub conditions: GrantConditions,
    /// When it lapses (ms), if it does.
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<TimestampMs>,
    /// When it opens (ms), if it is a time capsule.
    #[schema(value_type = Option<i64>)]
    pub not_before: Option<TimestampMs>,
    /// The seq of its `grant_created`.
    pub created_seq: u64,
    /// The seq of its `grant_revoked`, once revoked.
    pub revoked_seq: Option<u64>,
    /// Open, neither revoked nor lapsed: what it serves now.
    pub live: bool,
    /// `live`, `not_yet_open` (a time capsule), `expired` or `revoked`.
    #[schema(pattern = "^(live|not_yet_open|expired|revoked)$")]
    pub state: &'static str,
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
    #[schema(value_type = String)]
    pub id: GrantId,
    /// Whose memories it opens.
    #[schema(value_type = String)]
    pub owner: UserId,
    /// Which processor.
    #[schema(value_type = String)]
    pub processor: ProcessorId,
    /// Only this version, when set.
    pub version: Option<String>,
    /// The processor's public key (hex).
    #[schema(value_type = String)]
    pub processor_key: PublicKey,
    /// `{tags, kinds, from, until, memories}`.
    #[schema(value_type = Object)]
    pub conditions: GrantConditions,
    /// When it lapses (ms), if it does.
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<TimestampMs>,
    /// Neither revoked nor lapsed.
    pub live: bool,
}

/// Who read.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessorKind {
    /// Another user, under a grant.
    User,
    /// A processor (ASR, a model's trainer, ...), under a processing grant.
    Processor,
}

/// One read by someone else: a user under a grant, or a processor's fetch.
#[derive(Serialize, ToSchema)]
pub struct AccessEntry {
    /// The `access_recorded` or `inputs_fetched` event's seq.
    pub seq: u64,
    /// Who read: a user's id, or a processor's name.
    pub accessor: String,
    /// Whether `accessor` is a user or a processor.
    pub accessor_kind: AccessorKind,
    /// Under which grant (hex).
    #[schema(value_type = String)]
    pub grant: GrantId,
    /// `list`, `read_metadata`, `read_content` or `ask` (a user); `fetch` (a processor).
    pub action: String,
    /// The memories returned (hex ids); for `ask`, the memories the answer cited.
    #[schema(value_type = Vec<String>)]
    pub memories: Vec<MemoryId>,
    /// When (ms).
    pub at: i64,
    /// The question asked (`ask` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub question: Option<AskedQuestion>,
}

/// A question in the owner's access log.
#[derive(Serialize, ToSchema)]
pub struct AskedQuestion {
    /// Its id (hex): `POST /v1/erasure {"memory": id}` erases its text.
    #[schema(value_type = String)]
    pub id: MemoryId,
    /// Its text; `null` once erased.
    pub text: Option<String>,
}

/// The access log, newest first: everything that left the ledger.
#[derive(Serialize, ToSchema)]
pub struct AccessLog {
    /// The reads and fetches.
    pub items: Vec<AccessEntry>,
}

/// Anchored epochs.
#[derive(Serialize, ToSchema)]
pub struct AnchorsPage {
    /// The epoch records.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<mnemo_anchor::EpochRecord>,
}

/// A console session.
#[derive(Serialize, ToSchema)]
pub struct Session {
    /// Who is signed in.
    #[schema(value_type = String)]
    pub user: UserId,
    /// The token every write made with the session cookie carries in `X-CSRF-Token`.
    pub csrf: String,
    /// Seconds until the session ends.
    pub expires_in: u64,
}

/// A processor registered: its signing seed is shown here once and stored nowhere.
#[derive(Serialize, ToSchema)]
pub struct ProcessorRegistered {
    /// The registry's record of it.
    #[schema(value_type = Object)]
    pub processor: mnemo_processing::Processor,
    /// Its Ed25519 signing seed (hex): it signs results and models with it.
    pub signing_seed: String,
    /// Its API token.
    pub token: String,
    /// Its NATS credentials, in operator mode (a user of its own account).
    pub nats_creds: Option<String>,
    /// The inbox prefix its NATS requests use.
    pub nats_inbox_prefix: String,
}

/// The registered processors.
#[derive(Serialize, ToSchema)]
pub struct ProcessorsPage {
    /// Each processor's record.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<mnemo_processing::Processor>,
}

/// A processor revoked.
#[derive(Serialize, ToSchema)]
pub struct ProcessorRevoked {
    /// Its record, now revoked.
    #[schema(value_type = Object)]
    pub processor: mnemo_processing::Processor,
}

/// Tasks that failed too often.
#[derive(Serialize, ToSchema)]
pub struct DeadLettersPage {
    /// The dead tasks, with why each failed.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<mnemo_processing::queue::DeadTask>,
}

/// A memory's lineage (docs/FORMAT.md §15).
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct LineageDoc(pub mnemo_processing::service::Lineage);

/// One of the caller's models.
#[derive(Serialize, ToSchema)]
pub struct ModelView {
    /// Its id (hex).
    #[schema(value_type = String)]
    pub id: ModelId,
    /// The processor that trained it.
    #[schema(value_type = String)]
    pub processor: ProcessorId,
    /// The processing grant it was trained under (hex).
    #[schema(value_type = String)]
    pub grant: GrantId,
    /// The processor's version.
    pub version: String,
    /// The artifact's hash (hex).
    #[schema(value_type = String)]
    pub artifact: Hash32,
    /// The training set's root (hex).
    #[schema(value_type = String)]
    pub set_root: Hash32,
    /// Members of the training set.
    pub set_count: u64,
    /// The seq of its `model_trained`.
    pub seq: u64,
    /// An erasure reached its training set.
    pub stale: bool,
    /// Why it is stale, when it is.
    pub stale_reason: Option<String>,
    /// Its members erased since (hex ids).
    #[schema(value_type = Vec<String>)]
    pub erased_members: Vec<MemoryId>,
    /// mnemo keeps its artifact, so it answers queries.
    pub queryable: bool,
}

impl From<mnemo_processing::models::Model> for ModelView {
    fn from(m: mnemo_processing::models::Model) -> Self {
        Self {
            id: m.id,
            processor: m.processor,
            grant: m.grant,
            version: m.version,
            artifact: m.artifact,
            set_root: m.set_root,
            set_count: m.set_count,
            seq: m.seq,
            stale: m.stale.is_some(),
            stale_reason: m.stale,
            erased_members: m.erased,
            queryable: m.kept.is_some(),
        }
    }
}

/// The caller's models.
#[derive(Serialize, ToSchema)]
pub struct ModelsPage {
    /// Oldest first.
    pub items: Vec<ModelView>,
}

/// A memory's membership, or not, in a model's training set (docs/FORMAT.md §15.4).
#[derive(Serialize, ToSchema)]
pub struct TrainingProofDoc {
    /// Whose model.
    #[schema(value_type = String)]
    pub user: UserId,
    /// The model (hex).
    #[schema(value_type = String)]
    pub model: ModelId,
    /// The proof: an inclusion or an exclusion (`mnemo-audit training-proof` checks it).
    #[schema(value_type = Object)]
    pub proof: mnemo_core::TrainingSetProof,
}

/// One memory a model answered with.
#[derive(Serialize, ToSchema)]
pub struct QueryHit {
    /// The memory (hex).
    #[schema(value_type = String)]
    pub memory: MemoryId,
    /// Its event's seq.
    pub seq: u64,
    /// Its event's hash (hex).
    #[schema(value_type = String)]
    pub event_hash: Hash32,
    /// Its score (higher is better).
    pub score: f64,
    /// The query's terms it matched.
    pub matched: Vec<String>,
    /// Where its training-set proof is served.
    pub proof: String,
}

/// A model's answer to a query.
#[derive(Serialize, ToSchema)]
pub struct QueryAnswer {
    /// The model that answered (hex).
    #[schema(value_type = String)]
    pub model: ModelId,
    /// The seq of its `model_trained`.
    pub seq: u64,
    /// Its training set's root (hex).
    #[schema(value_type = String)]
    pub set_root: Hash32,
    /// Members of its training set.
    pub set_count: u64,
    /// The processor that trained it.
    #[schema(value_type = String)]
    pub processor: ProcessorId,
    /// The processor's version.
    pub version: String,
    /// The query, as asked.
    pub query: String,
    /// The memories it drew on, best first.
    pub hits: Vec<QueryHit>,
}
