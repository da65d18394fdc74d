//! Where a user's chain lives: the only place stream and subject names are made.
//!
//! Both layouts keep a user's chain on its own subject and do every read and write through
//! subject-level operations (publish with `Nats-Expected-Last-Subject-Sequence`, direct get
//! of the last message on a subject, consumers filtered to the subject). A layout is thus
//! only a mapping `user -> (stream, subject)`.

use mnemo_core::UserId;

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

/// Prefix of every chain subject.
pub const CHAIN_SUBJECT_PREFIX: &str = "mnemo.chain";
/// KV bucket of wrapped keys.
pub const KEYS_BUCKET: &str = "mnemo-keys";
/// Object store bucket of large payloads.
pub const OBJECTS_BUCKET: &str = "mnemo-objects";

impl Layout {
    /// The stream and subject of `user`'s chain.
    pub fn locate(&self, user: &UserId) -> ChainLocation {
        match self {
            Layout::PerUser => ChainLocation {
                stream: format!("MNEMO-CHAIN-{user}"),
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
            Layout::Sharded { .. } => {
                let (prefix, _) = loc.subject.rsplit_once('.').expect("subject has tokens");
                format!("{prefix}.*")
            }
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

fn shard_stream(k: u32) -> String {
    format!("MNEMO-CHAINS-{k}")
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
        assert_eq!(Layout::PerUser.stream_subjects(&p), p.subject);
        let s = Layout::Sharded { shards: 8 }.locate(&u);
        assert!(s.stream.starts_with("MNEMO-CHAINS-"));
        assert!(s.subject.ends_with(".alice_1"));
        let subj = Layout::Sharded { shards: 8 }.stream_subjects(&s);
        assert!(subj.ends_with(".*"));
        assert_eq!(Layout::Sharded { shards: 8 }.shared_streams().len(), 8);
    }
}
