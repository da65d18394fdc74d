//! # mnemo-testkit
//!
//! Test support: `mnemo-devstack`'s servers with constructors that panic instead of
//! returning errors, so a test reads as what it checks. Each server runs on a free loopback
//! port with its own temporary directory and is killed and removed on drop (the model is
//! async-nats' own test crate). Everything else (URLs, logs, `kill`, `stop`) is devstack's,
//! through `Deref`. A dev-dependency only: nothing a user runs depends on it.
//!
//! - [`NatsServer`], [`NatsCluster`]: `nats-server` with JetStream, one node or routed R3.
//! - [`PgServer`]: PostgreSQL from `initdb`.
//! - [`Anvil`]: an EVM node.
//! - [`Stack`]: the custody stack on those servers (ledger, migrated views, projector, and
//!   the anchor contract when asked for), built by [`Stack::builder`]; [`PgViews`] is its
//!   PostgreSQL side alone, for tests whose ledger runs elsewhere.
//! - [`openapi`]: checks a response against `/openapi.json`.

mod consumers;
pub mod openapi;
mod stack;

pub use consumers::ConsumerPeak;
pub use stack::{CATCH_UP, PgViews, RunningProjector, Stack, StackBuilder, note};

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

pub use mnemo_devstack::{ANVIL_CHAIN_ID, DEV_KEY, NatsOptions, anvil_binary, nats_server_binary};

#[track_caller]
fn ok<T>(r: mnemo_devstack::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("test server: {e}"))
}

macro_rules! wrapper {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name(pub mnemo_devstack::$name);

        impl Deref for $name {
            type Target = mnemo_devstack::$name;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }
    };
}

wrapper!(
    /// A `nats-server` with JetStream.
    NatsServer
);
wrapper!(
    /// A PostgreSQL server.
    PgServer
);
wrapper!(
    /// An anvil node.
    Anvil
);

impl NatsServer {
    /// Starts a JetStream server with default options.
    pub fn start() -> Self {
        Self(ok(mnemo_devstack::NatsServer::start()))
    }

    /// Starts a JetStream server.
    pub fn start_with(opts: NatsOptions) -> Self {
        Self(ok(mnemo_devstack::NatsServer::start_with(opts)))
    }

    /// Starts a JetStream server in `dir`, which stays.
    pub fn start_in(dir: &Path, opts: NatsOptions) -> Self {
        Self(ok(mnemo_devstack::NatsServer::start_in(dir, opts)))
    }

    /// Starts the server again on the same port and store directory.
    pub fn restart(&mut self) {
        ok(self.0.restart())
    }

    /// SIGKILL, then start again on the same port and store.
    pub fn kill_and_restart(&mut self) {
        self.restart()
    }
}

impl PgServer {
    /// Initialises a cluster and starts it with `fsync=off`.
    pub fn start() -> Self {
        Self(ok(mnemo_devstack::PgServer::start()))
    }

    /// Like [`start`](Self::start), with fsync on when `durable`.
    pub fn start_with(durable: bool) -> Self {
        Self(ok(mnemo_devstack::PgServer::start_with(durable)))
    }

    /// Starts PostgreSQL on the cluster in `dir`, which stays.
    pub fn start_in(dir: &Path, durable: bool) -> Self {
        Self(ok(mnemo_devstack::PgServer::start_in(dir, durable)))
    }

    /// Starts it again on the same port and data directory (crash recovery runs).
    pub fn restart(&mut self) {
        ok(self.0.restart())
    }

    /// Creates a database.
    pub fn create_database(&self, db: &str) {
        ok(self.0.create_database(db))
    }

    /// Creates a database unless it exists.
    pub fn ensure_database(&self, db: &str) {
        ok(self.0.ensure_database(db))
    }
}

impl Anvil {
    /// Starts anvil with chain id 23293, automining.
    pub fn start() -> Self {
        Self(ok(mnemo_devstack::Anvil::start()))
    }

    /// Starts anvil with its state in `dir`.
    pub fn start_in(dir: &Path) -> Self {
        Self(ok(mnemo_devstack::Anvil::start_in(dir)))
    }

    /// Starts again on the same port from the last state dump.
    pub fn restart(&mut self) {
        ok(self.0.restart())
    }
}

/// Routed `nats-server` nodes; each can be killed and restarted.
pub struct NatsCluster {
    /// The nodes, in start order.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes in cluster `mnemo`.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, NatsOptions::default())
    }

    /// Starts `n` nodes with `opts` on every node.
    pub fn start_with(n: usize, opts: NatsOptions) -> Self {
        let c = ok(mnemo_devstack::NatsCluster::start_with(n, opts));
        Self {
            nodes: c.nodes.into_iter().map(NatsServer).collect(),
        }
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    ok(mnemo_devstack::free_port())
}

/// The PostgreSQL binaries' directory.
pub fn pg_bin() -> PathBuf {
    ok(mnemo_devstack::pg_bin())
}
