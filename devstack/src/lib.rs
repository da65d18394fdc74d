//! # mnemo-devstack
//!
//! The local server supervisor: starts real servers, each on a free loopback port with its
//! own directory, reports every failure as a [`DevstackError`] (it never panics), and stops
//! them cleanly. `mnemo dev` runs its stack through it; benchmarks and, through the thin
//! `mnemo-testkit` wrapper, tests do too.
//!
//! - [`NatsServer`]: a `nats-server` with JetStream; [`NatsCluster`]: routed nodes for R3.
//! - [`PgServer`]: a PostgreSQL cluster made by `initdb`.
//! - [`Anvil`]: an EVM node (anvil) with its state dumped to disk every second.
//! - [`Supervised`]: a worker process restarted whenever it exits (`mnemo dev`'s workers).
//!
//! Each can be [`stop`](NatsServer::stop)ped cleanly (nats-server and anvil with SIGTERM,
//! PostgreSQL with SIGINT, its "fast" shutdown, which writes a shutdown checkpoint so the
//! next start does no crash recovery), then waited for; `kill` (SIGKILL) is for crash
//! tests. Dropping a server in a kept directory (`start_in`) stops it cleanly; one in a
//! temporary directory is killed and its directory removed.
//!
//! Which `nats-server` runs: `$MNEMO_NATS_SERVER` if set, else the pinned 2.15.1 that
//! `scripts/setup.sh` installs (`$MNEMO_TOOLS/venv/bin/nats-server`, `MNEMO_TOOLS` defaulting
//! to `~/.local/share/mnemo`), else the first on `PATH`. Servers older than 2.10 are
//! refused, since the ledger relies on 2.10+ stream features.

mod anvil;
mod cluster;
mod error;
mod nats;
mod pg;
mod port;
mod process;
mod supervisor;
mod workers;

pub use anvil::{ANVIL_CHAIN_ID, Anvil, DEV_KEY, anvil_binary};
pub use cluster::NatsCluster;
pub use error::{DevstackError, Result};
pub use nats::{NatsOptions, NatsServer, nats_server_binary};
pub use pg::{PgServer, pg_bin};
pub use port::{free_port, stable_port};
pub use supervisor::Supervised;
pub use workers::{asr_dir, python, speech_data};
