//! Ledger options.
//!
//! What an acknowledged append means, and how to get more.
//!
//! An append returns its receipt only after JetStream acknowledged the message on **file
//! storage**. What that ack guarantees depends on the server and stream configuration:
//!
//! - **One server, default `sync_interval` (2 min)**: the write reached the OS page cache.
//!   It survives a crash or `kill -9` of nats-server, but a power loss or kernel crash of
//!   the machine can lose acknowledged appends of the last interval.
//! - **One server, `jetstream { sync_interval: always }`**: every write is fsynced before
//!   the ack. Survives machine crashes; costs throughput (measured by `mnemo-bench ingest`).
//!   The test support crate and `mnemo dev` can write this setting.
//! - **Replicated streams (`replicas: 3` on a 3-node cluster)**: the ack comes after a
//!   quorum of servers stored the write; a single machine's crash loses nothing.

use mnemo_core::SigningKey;
use std::time::Duration;

use crate::crypto::SecretKey;
use mnemo_core::names::Layout;

/// The custody signing keys: the current one signs new events; previous ones are kept so a
/// chain still signed by an old key can be rotated to the current one with a
/// `key_rotated` event signed by its old key.
#[derive(Clone)]
pub struct Keyring {
    /// Signs every new event.
    pub current: SigningKey,
    /// Keys used before, newest first.
    pub previous: Vec<SigningKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(<redacted>)")
    }
}

/// Options of a [`crate::Ledger`].
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Stream layout.
    pub layout: Layout,
    /// Stream, KV and object store replicas (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// Window in which an idempotency key (`Nats-Msg-Id`) dedupes a repeated append.
    pub duplicate_window: Duration,
    /// Largest content kept inline in the chain message; larger content goes to the object
    /// store.
    pub max_inline: usize,
    /// Largest content accepted at all.
    pub max_content: usize,
    /// Most events one user's chain may hold (`None`: no limit). When reached, appends fail
    /// with [`crate::LedgerError::ChainFull`]; nothing old is ever dropped.
    pub max_events_per_user: Option<i64>,
    /// Most bytes one user's stream may hold (per-user layout only).
    pub max_bytes_per_user: Option<i64>,
    /// How often a conflicting append is rebuilt on the new head before giving up.
    pub conflict_retries: usize,
    /// Most chain readers (`read`, `follow`, `events`) one user may hold open at once;
    /// one more fails with [`crate::LedgerError::TooManyReads`].
    pub max_readers_per_user: usize,
    /// Users whose state (head, chain rules, reader slots) this process keeps in memory at
    /// once: past it, idle users are dropped (down to 90%) and reloaded from the chain with
    /// direct gets when next used, so memory is bounded by this, not by the user count
    /// (docs/SCALE.md).
    pub max_resident_users: usize,
    /// A user's chain-rules state is stored as a snapshot once a load replayed this many
    /// events, so the next cold load replays fewer than this (see `snapshots`).
    pub snapshot_every: u64,
    /// Wraps the users' key-encryption keys.
    pub master_key: SecretKey,
    /// Custody signing keys.
    pub keys: Keyring,
    /// The format version new events are written in: 2 (sealed in batches, the default)
    /// or 1 (each event signed on its own; kept for comparison and for chains that must
    /// stay readable by older verifiers). A chain never goes back from 2 to 1: events after
    /// a version 2 event are written in version 2 whatever this says.
    pub format: u8,
    /// Most events one seal covers (version 2).
    pub max_seal: usize,
    /// Crash tests only: after storing a seal record of two or more events, write this
    /// file and stop before publishing any of them.
    pub pause_after_seal: Option<std::path::PathBuf>,
}

impl LedgerConfig {
    /// Defaults with the given secrets: per-user layout, 1 replica, 10 min dedup window,
    /// 256 KiB inline, 64 MiB content, no per-user limit, 32 retries, format version 2
    /// with seals of up to 256 events.
    pub fn new(master_key: SecretKey, signing_key: SigningKey) -> Self {
        Self {
            layout: Layout::PerUser,
            replicas: 1,
            duplicate_window: Duration::from_secs(600),
            max_inline: 256 * 1024,
            max_content: 64 * 1024 * 1024,
            max_events_per_user: None,
            max_bytes_per_user: None,
            conflict_retries: 32,
            max_readers_per_user: 16,
            max_resident_users: 100_000,
            snapshot_every: 1024,
            master_key,
            keys: Keyring {
                current: signing_key,
                previous: vec![],
            },
            format: mnemo_core::FORMAT_VERSION,
            max_seal: 256,
            pause_after_seal: None,
        }
    }
}
