//! Every name mnemo gives a JetStream stream, subject, KV bucket, object store or consumer,
//! in one place. The ledger, the projections, the anchor service, the NATS account code
//! and the auditor all take their names from here, so a rename is one edit and an
//! operator can read off this file what a deployment holds.
//!
//! Where a user's chain lives is a [`Layout`]: both layouts keep a user's chain on its own
//! subject and do every read and write through subject-level operations (publish with
//! `Nats-Expected-Last-Subject-Sequence`, direct get of the last message on a subject,
//! consumers filtered to the subject). A layout is thus only a mapping
//! `user -> (stream, subject)`.

use crate::ids::UserId;

/// Prefix of every chain subject.
pub const CHAIN_SUBJECT_PREFIX: &str = "mnemo.chain";
/// Prefix of every chain stream name (both layouts).
pub const CHAIN_STREAM_PREFIX: &str = "MNEMO-CHAIN";
/// Prefix of the shared chain streams of the sharded layout.
pub const SHARD_STREAM_PREFIX: &str = "MNEMO-CHAINS-";
/// KV bucket of wrapped payload keys.
pub const KEYS_BUCKET: &str = "mnemo-keys";
/// The stream of seal records (format version 2): one per batch of two or more events,
/// across users (docs/FORMAT.md §11).
pub const SEALS_STREAM: &str = "MNEMO-SEALS";
/// The subject of seal records.
pub const SEALS_SUBJECT: &str = "mnemo.seals";
/// Object store bucket of large payloads.
pub const OBJECTS_BUCKET: &str = "mnemo-objects";
/// KV bucket of users' checkpoints (the projections' heads view, read by the anchorer).
pub const HEADS_BUCKET: &str = "mnemo-heads";
/// KV bucket of sealed NATS account seeds (operator mode).
pub const ACCOUNTS_BUCKET: &str = "mnemo-accounts";
/// KV bucket of users' chain-rules snapshots (`<user>` -> the rules state at some seq,
/// authenticated): a cache that loads a cold user without replaying its chain.
pub const SNAPSHOTS_BUCKET: &str = "mnemo-snapshots";
/// KV bucket of the console's live sessions (session id -> user), entries expiring with
/// the session; signing out deletes one.
pub const SESSIONS_BUCKET: &str = "mnemo-sessions";
/// KV bucket of the anchor service's state (lease, last epoch).
pub const ANCHOR_STATE_BUCKET: &str = "mnemo-anchor";
/// KV bucket of the epoch log (docs/FORMAT.md §7.1, tree 2): its complete nodes
/// (`n.<level>.<index>`) and each user's latest leaves (`u.<user>`).
pub const EPOCH_LOG_BUCKET: &str = "mnemo-epoch-log";
/// Object store of epoch records (every checkpoint of an epoch, with its proofs).
pub const EPOCHS_BUCKET: &str = "mnemo-epochs";
/// Stream of anchor records, one subject per epoch.
pub const ANCHORS_STREAM: &str = "MNEMO-ANCHORS";
/// Prefix of the anchor record subjects (`mnemo.anchors.<epoch>`).
pub const ANCHORS_SUBJECT_PREFIX: &str = "mnemo.anchors";
/// Dead letters of a view go to `mnemo.deadletter.<view>`.
pub const DEAD_LETTER_PREFIX: &str = "mnemo.deadletter";
/// The ingest service subject (devices publish on it; imported per account).
pub const INGEST_PREFIX: &str = "mnemo.ingest";
/// The durable capture subject: a JetStream publish on it is stored in [`INGEST_STREAM`]
/// (the publisher gets the stream's PubAck) and drained into the chain by mnemo.
pub const CAPTURE_PREFIX: &str = "mnemo.capture";
/// The durable ingest stream (service account; work queue of `mnemo.capture.<account>`).
pub const INGEST_STREAM: &str = "MNEMO-INGEST";
/// Refused device messages, per user (`mnemo.rejects.<user>`), readable over `mnemo.read`.
pub const REJECTS_STREAM: &str = "MNEMO-REJECTS";
/// Prefix of the refused-message subjects.
pub const REJECTS_PREFIX: &str = "mnemo.rejects";
/// The chain-read service subject.
pub const READ_PREFIX: &str = "mnemo.read";
/// The queue group the service subscribers share.
pub const SERVICE_QUEUE: &str = "mnemo";

/// Registered processors (name -> registration), a KV bucket.
pub const PROCESSORS_BUCKET: &str = "mnemo-processors";
/// Models and their training sets (`<user>.<model>`), a KV bucket.
pub const MODELS_BUCKET: &str = "mnemo-models";
/// The object store of the model artifacts mnemo keeps for queries (`<user>.<artifact>`).
pub const MODEL_OBJECTS_BUCKET: &str = "mnemo-model-objects";
/// The planner's progress per chain (`<user>` -> last seq planned), a KV bucket.
pub const PLANNER_BUCKET: &str = "mnemo-planner";
/// The durable work queue of processing tasks (work-queue retention).
pub const WORK_STREAM: &str = "MNEMO-WORK";
/// Tasks wait on `mnemo.task.<processor>.<user>` in [`WORK_STREAM`].
pub const TASK_PREFIX: &str = "mnemo.task";
/// Tasks that failed too often, on `mnemo.dead.<processor>.<user>`.
pub const DEAD_TASK_STREAM: &str = "MNEMO-DEAD-TASKS";
/// The prefix of [`DEAD_TASK_STREAM`]'s subjects.
pub const DEAD_TASK_PREFIX: &str = "mnemo.dead";
/// Notices to processors (stale models), on `mnemo.notice.<processor>`, kept in a stream.
pub const NOTICE_STREAM: &str = "MNEMO-NOTICES";
/// The prefix of [`NOTICE_STREAM`]'s subjects.
pub const NOTICE_PREFIX: &str = "mnemo.notice";
/// Workers of a processor take tasks on `mnemo.work.<processor>` (queue group: the
/// processor's name).
pub const WORK_PREFIX: &str = "mnemo.work";
/// Processors call mnemo on `mnemo.proc.<processor>.<fetch|submit|model>`.
pub const PROC_PREFIX: &str = "mnemo.proc";

/// The subject a processor's task for `user` waits on.
pub fn task_subject(processor: &str, user: &str) -> String {
    format!("{TASK_PREFIX}.{processor}.{user}")
}

/// The durable consumer of a processor's tasks.
pub fn task_consumer(processor: &str) -> String {
    format!("tasks-{processor}")
}

/// The stream behind a KV bucket.
pub fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The stream behind an object store.
pub fn object_stream(bucket: &str) -> String {
    format!("OBJ_{bucket}")
}

/// The subjects of an object store's chunks (`$O.<bucket>.C.`), as a prefix.
pub fn object_chunk_prefix(bucket: &str) -> String {
    format!("$O.{bucket}.C.")
}

/// The subject of an anchor record.
pub fn anchor_subject(epoch: u64) -> String {
    format!("{ANCHORS_SUBJECT_PREFIX}.{epoch}")
}

/// The subject a view's dead letters go to.
pub fn dead_letter_subject(view: &str) -> String {
    format!("{DEAD_LETTER_PREFIX}.{view}")
}

/// Prefix of the projector's consumers of a view (`mnemo-proj-<view>-<epoch>`).
pub fn projector_consumer_prefix(view: &str) -> String {
    format!("mnemo-proj-{view}-")
}

/// The PostgreSQL advisory-lock key of a view's leader.
pub fn projector_lock(view: &str) -> String {
    format!("mnemo-projector:{view}")
}

/// Whether a stream name is a chain stream (either layout).
pub fn is_chain_stream(name: &str) -> bool {
    name.starts_with(CHAIN_STREAM_PREFIX)
}

/// How chains are spread over streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One stream per user (the design default; fine up to a few thousand users per server,
    /// see docs/decisions/0001-chain-layout.md).
    PerUser,
    /// Every user's chain is a subject in one of `shards` shared streams, picked by a hash of
    /// the user id. The shard count is fixed for the life of a deployment.
    Sharded {
        /// Number of shared streams.
        shards: u32,
    },
}

/// A chain's stream and subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLocation {
    /// JetStream stream name.
    pub stream: String,
    /// The chain's subject.
    pub subject: String,
}

impl Layout {
    /// The stream and subject of `user`'s chain.
    pub fn locate(&self, user: &UserId) -> ChainLocation {
        match self {
            Layout::PerUser => ChainLocation {
                stream: format!("{CHAIN_STREAM_PREFIX}-{user}"),
                subject: format!("{CHAIN_SUBJECT_PREFIX}.u.{user}"),
            },
            Layout::Sharded { shards } => {
                let k = shard_of(user, *shards);
                ChainLocation {
                    stream: shard_stream(k),
                    subject: format!("{CHAIN_SUBJECT_PREFIX}.s{k}.{user}"),
                }
            }
        }
    }

    /// The subjects a stream of this layout holds, given one chain location in it.
    pub fn stream_subjects(&self, loc: &ChainLocation) -> String {
        match self {
            Layout::PerUser => loc.subject.clone(),
            Layout::Sharded { .. } => match loc.subject.rsplit_once('.') {
                Some((prefix, _)) => format!("{prefix}.*"),
                None => loc.subject.clone(),
            },
        }
    }

    /// The shared streams to create at start (sharded layout), as `(stream, subjects)`.
    pub fn shared_streams(&self) -> Vec<(String, String)> {
        match self {
            Layout::PerUser => vec![],
            Layout::Sharded { shards } => (0..*shards)
                .map(|k| (shard_stream(k), format!("{CHAIN_SUBJECT_PREFIX}.s{k}.*")))
                .collect(),
        }
    }

    /// Whether a chain's stream holds nothing but that chain, so that stream sequence `n`
    /// is chain sequence `n` (lets range reads start at the right place).
    pub fn stream_seq_is_chain_seq(&self) -> bool {
        matches!(self, Layout::PerUser)
    }
}

/// The user whose chain a chain subject carries (its last token), in either layout.
pub fn chain_subject_user(subject: &str) -> Option<UserId> {
    let rest = subject
        .strip_prefix(CHAIN_SUBJECT_PREFIX)?
        .strip_prefix('.')?;
    let (_, user) = rest.rsplit_once('.')?;
    UserId::new(user).ok()
}

fn shard_stream(k: u32) -> String {
    format!("{SHARD_STREAM_PREFIX}{k}")
}

fn shard_of(user: &UserId, shards: u32) -> u32 {
    let h = blake3::hash(user.as_str().as_bytes());
    let b = h.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_layouts_differ_only_in_mapping() {
        let u = UserId::new("alice_1").unwrap();
        let p = Layout::PerUser.locate(&u);
        assert_eq!(p.subject, "mnemo.chain.u.alice_1");
        assert_eq!(p.stream, "MNEMO-CHAIN-alice_1");
        assert_eq!(Layout::PerUser.stream_subjects(&p), p.subject);
        let s = Layout::Sharded { shards: 8 }.locate(&u);
        assert!(s.stream.starts_with(SHARD_STREAM_PREFIX));
        assert!(is_chain_stream(&s.stream) && is_chain_stream(&p.stream));
        assert!(s.subject.ends_with(".alice_1"));
        let subj = Layout::Sharded { shards: 8 }.stream_subjects(&s);
        assert!(subj.ends_with(".*"));
        assert_eq!(Layout::Sharded { shards: 8 }.shared_streams().len(), 8);
        assert_eq!(chain_subject_user(&p.subject), Some(u.clone()));
        assert_eq!(chain_subject_user(&s.subject), Some(u));
        assert_eq!(chain_subject_user("mnemo.ingest.x"), None);
    }
}
