//! The messages of the worker protocol (docs/WORKERS.md): what a worker receives and sends,
//! as JSON. Binary values are lowercase hex (ids, hashes, salts, signatures) or standard
//! base64 with padding (content).

use mnemo_core::{GrantId, Hash32, MemoryId, ModelId, Sig, UserId};
use serde::{Deserialize, Serialize};

/// Header carrying a processor's API token on NATS requests: `Bearer <token>`.
pub const AUTHORIZATION: &str = "Authorization";
/// Error reply headers (the NATS services convention).
pub const ERROR_HEADER: &str = "Nats-Service-Error";
/// The HTTP-like status of an error reply.
pub const ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";
/// A task reply with this header (its value says why) hands the task back untouched: the
/// worker is at capacity or shutting down. mnemo offers it again soon, to any worker, and
/// it does not count as a failure.
pub const RELEASE_HEADER: &str = "Mnemo-Task-Released";

/// A task as it waits in the work queue (`mnemo.task.<processor>.<user>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Whose memory.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user: UserId,
    /// The memory to process.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub memory: MemoryId,
    /// The processing grant that covers it.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub grant: GrantId,
}

/// A task as a worker receives it on `mnemo.work.<processor>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The task's id (its work-queue sequence): the same on every redelivery.
    pub task: u64,
    /// Which delivery this is, from 1.
    pub attempt: u64,
    /// What to do.
    #[serde(flatten)]
    pub what: Task,
}

/// What a worker replies to a work item when it is done (after its result was recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Done {
    /// The derived memories it recorded (empty: nothing to derive from this input).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub results: Vec<MemoryId>,
}

/// A fetch: `mnemo.proc.<processor>.fetch` or `POST /v1/processing/fetch`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// Whose memory.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user: UserId,
    /// Under which processing grant.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub grant: GrantId,
    /// Which memory.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub memory: MemoryId,
}

/// A fetched memory, recorded in the owner's chain before it was sent.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fetched {
    /// Whose memory.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user: UserId,
    /// The memory.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub memory: MemoryId,
    /// Its event's seq (a training-set member).
    pub seq: u64,
    /// Its event's hash (a training-set member).
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub event_hash: Hash32,
    /// Kind.
    pub kind: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Content type.
    pub content_type: String,
    /// Capture time (ms), if known.
    pub captured_at: Option<i64>,
    /// The content, base64.
    pub content: String,
    /// The seq of the `inputs_fetched` event that recorded this fetch.
    pub recorded_seq: u64,
}

/// A derived record as a processor hands it in.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DerivedRecord {
    /// Kind (e.g. `transcript`).
    pub kind: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Capture time of what it was derived from (ms), if it has one.
    #[serde(default)]
    pub captured_at: Option<i64>,
    /// Where it came from (free text).
    #[serde(default)]
    pub source: Option<String>,
    /// Content type.
    pub content_type: String,
    /// The content, base64.
    pub content: String,
}

/// A result: `mnemo.proc.<processor>.submit` or `POST /v1/processing/results`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Whose chain.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user: UserId,
    /// Under which processing grant.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub grant: GrantId,
    /// The processor version that made it.
    pub version: String,
    /// The inputs, ascending ids.
    #[schema(value_type = Vec<String>)]
    pub inputs: Vec<MemoryId>,
    /// The derived record.
    pub record: DerivedRecord,
    /// The commitment salt (32 bytes, hex), the processor's choice.
    pub salt: String,
    /// The processor's signature over the derived signing message (FORMAT.md §15.2).
    #[schema(value_type = String, pattern = "^[0-9a-f]{128}$")]
    pub signature: Sig,
}

/// The receipt of a recorded result (or of the original, for a repeat).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recorded {
    /// The derived memory.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub memory: MemoryId,
    /// Its event's seq.
    pub seq: u64,
    /// Its event's hash.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub event_hash: Hash32,
    /// Whether this repeated an earlier result (nothing new was written).
    pub duplicate: bool,
}

/// A trained model: `mnemo.proc.<processor>.model` or `POST /v1/processing/models`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRequest {
    /// Whose chain.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user: UserId,
    /// Under which processing grant.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub grant: GrantId,
    /// The model version.
    pub version: String,
    /// Hash of the artifact (32 bytes).
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub artifact: Hash32,
    /// The training set: memories the processor fetched under the grant.
    #[schema(value_type = Vec<String>)]
    pub inputs: Vec<MemoryId>,
    /// The processor's signature over the model signing message (FORMAT.md §15.4).
    #[schema(value_type = String, pattern = "^[0-9a-f]{128}$")]
    pub signature: Sig,
    /// The artifact itself, base64, when mnemo should keep it and answer queries from it
    /// (`GET /v1/models/{id}/query`); its BLAKE3 hash must be `artifact`. Erasing a member
    /// of its training set deletes it.
    #[serde(default)]
    pub object: Option<String>,
    /// The artifact's format, when `object` is given: `mnemo-bm25-v1` (FORMAT.md §15.7)
    /// is the one mnemo queries.
    #[serde(default)]
    pub format: Option<String>,
}

/// The receipt of a recorded model.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelRecorded {
    /// The model's id.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub model: ModelId,
    /// Its event's seq.
    pub seq: u64,
    /// Its event's hash.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub event_hash: Hash32,
    /// The training-set root.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub set_root: Hash32,
    /// The training-set size.
    pub set_count: u64,
}

/// A processor's stale models: `mnemo.proc.<processor>.stale` (any body) or
/// `GET /v1/processing/stale`. Each is the newest model of its user by this processor, and
/// an erasure reached its training set: retrain without `erased`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StaleModels {
    /// The models to retrain.
    pub stale: Vec<StaleModel>,
}

/// One model to retrain.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StaleModel {
    /// Whose.
    #[schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user: UserId,
    /// The stale model.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub model: ModelId,
    /// The grant it was trained under.
    #[schema(value_type = String, pattern = "^[0-9a-f]{32}$")]
    pub grant: GrantId,
    /// The members that were erased (leave them out).
    #[schema(value_type = Vec<String>)]
    pub erased: Vec<MemoryId>,
    /// Why it is stale.
    pub reason: String,
}
