//! `mnemo edge init | forward`: what a device or edge box runs to capture offline
//! (docs/EDGE.md).

use anyhow::Context;
use mnemo_api::nats::edge;
use std::path::PathBuf;
use std::time::Duration;

/// Edge commands.
#[derive(clap::Subcommand)]
pub enum EdgeCmd {
    /// Writes a leaf node's configuration into DIR: `leaf.conf` (local listener, JetStream
    /// in its own domain with a store under DIR, the remote to the hub) and `device.creds`
    /// (mode 0600). Run it with `nats-server -c DIR/leaf.conf`, and `mnemo edge forward`.
    Init {
        /// The directory to write.
        #[arg(long)]
        dir: PathBuf,
        /// The hub's leafnode URL.
        #[arg(long)]
        hub: String,
        /// The device's credentials (`POST /v1/users/{id}/devices`).
        #[arg(long)]
        creds: PathBuf,
        /// The leaf's local port.
        #[arg(long, default_value_t = 4222)]
        port: u16,
        /// The leaf's JetStream domain.
        #[arg(long, default_value = "edge")]
        domain: String,
    },
    /// Forwards the leaf's outbox (`mnemo.outbox.>`) to the hub's `mnemo.capture`.
    Forward {
        /// The leaf's local URL.
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// The outbox's duplicate window, in ms.
        #[arg(long, default_value_t = 120_000)]
        duplicate_window_ms: u64,
    },
}

impl EdgeCmd {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self {
            EdgeCmd::Init {
                dir,
                hub,
                creds,
                port,
                domain,
            } => {
                std::fs::create_dir_all(dir.join("store"))?;
                let dir = dir.canonicalize()?;
                let c = std::fs::read_to_string(&creds)
                    .with_context(|| format!("reading {}", creds.display()))?;
                let creds_out = dir.join("device.creds");
                mnemo_api::nats::write_private(&creds_out, c.as_bytes())?;
                let conf = edge::leaf_config(&edge::LeafSettings {
                    port,
                    hub: &hub,
                    creds: &creds_out,
                    store: &dir.join("store"),
                    domain: &domain,
                });
                std::fs::write(dir.join("leaf.conf"), conf)?;
                println!("wrote {}/leaf.conf and device.creds", dir.display());
                Ok(())
            }
            EdgeCmd::Forward {
                nats,
                duplicate_window_ms,
            } => {
                let client = async_nats::ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connect(nats.as_str())
                    .await?;
                let (tx, rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    let _ = tx.send(true);
                });
                tracing::info!(%nats, "forwarding the outbox to the hub");
                edge::forward(
                    client,
                    edge::OutboxConfig {
                        duplicate_window: Duration::from_millis(duplicate_window_ms.max(1)),
                        ..Default::default()
                    },
                    rx,
                )
                .await?;
                Ok(())
            }
        }
    }
}
