//! # mnemo-testkit
//!
//! Spawns real servers for tests, each on a free loopback port with its own temporary
//! directory, and kills and removes it on drop (the model is async-nats' own test crate).
//!
//! - [`NatsServer`]: a `nats-server` with JetStream. It can be killed with SIGKILL and
//!   restarted on the same port and store directory, to test crash recovery.
//! - [`NatsCluster`]: three (or n) routed `nats-server` nodes for R3 streams; each node can
//!   be killed and restarted.
//! - [`Anvil`]: an EVM node (anvil) with its state dumped to disk every second.
//! - [`PgServer`]: a PostgreSQL cluster made by `initdb` in a temp dir, likewise killable.
//!
//! Which `nats-server` runs: `$MNEMO_NATS_SERVER` if set, else the pinned 2.15.1 that
//! `scripts/setup.sh` installs (`$MNEMO_TOOLS/venv/bin/nats-server`, `MNEMO_TOOLS` defaulting
//! to `~/.local/share/mnemo`), else the first on `PATH`. Servers older than 2.10 are
//! refused, since the ledger relies on 2.10+ stream features.

mod anvil;
mod cluster;
mod nats;
mod pg;
mod port;

pub use anvil::{ANVIL_CHAIN_ID, Anvil, DEV_KEY, anvil_binary};
pub use cluster::NatsCluster;
pub use nats::{NatsOptions, NatsServer, nats_server_binary};
pub use pg::{PgServer, pg_bin};
pub use port::free_port;
