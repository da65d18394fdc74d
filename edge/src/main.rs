//! `mnemo-edge init | forward`: what a device or edge box runs to capture offline
//! (docs/EDGE.md). It links neither the server nor its database or HTTP stack.

use anyhow::Context;
use clap::Parser;
use mnemo_edge as edge;
use std::path::PathBuf;
use std::time::Duration;

/// mnemo's edge tools: a leaf node that keeps captures while offline, and its forwarder.
#[derive(Parser)]
#[command(name = "mnemo-edge", version)]
struct Cli {
    #[command(subcommand)]
    cmd: EdgeCmd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MNEMO_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Cli::parse().cmd.run().await
}

/// Edge commands.
#[derive(clap::Subcommand)]
enum EdgeCmd {
    /// Writes a leaf node's configuration into DIR: `leaf.conf` (local listener, JetStream
    /// in its own domain with a store under DIR, the remote to the hub) and `device.creds`
    /// (mode 0600). Run it with `nats-server -c DIR/leaf.conf`, and `mnemo-edge forward`.
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
        /// The nats-server the leaf runs: `init` boots the leaf once with it to create the
        /// outbox, so captures are kept from the first one, before the forwarder ever ran.
        #[arg(long, env = "MNEMO_NATS_SERVER", default_value = "nats-server")]
        nats_server: PathBuf,
    },
    /// Forwards the leaf's outbox (`mnemo.outbox.>`) to the hub's `mnemo.capture`.
    Forward {
        /// The leaf's local URL.
        #[arg(long, default_value = "nats://127.0.0.1:4222")]
        nats: String,
        /// The outbox's duplicate window, in ms.
        #[arg(long, default_value_t = 120_000)]
        duplicate_window_ms: u64,
        /// Captures in flight at once (a link with round trip r moves up to window / r a
        /// second).
        #[arg(long, default_value_t = 128)]
        window: usize,
    },
}

impl EdgeCmd {
    async fn run(self) -> anyhow::Result<()> {
        match self {
            EdgeCmd::Init {
                dir,
                hub,
                creds,
                port,
                domain,
                nats_server,
            } => {
                std::fs::create_dir_all(dir.join("store"))?;
                let dir = dir.canonicalize()?;
                let c = std::fs::read_to_string(&creds)
                    .with_context(|| format!("reading {}", creds.display()))?;
                let creds_out = dir.join("device.creds");
                write_private(&creds_out, c.as_bytes())?;
                let conf = edge::leaf_config(&edge::LeafSettings {
                    port,
                    hub: &hub,
                    creds: &creds_out,
                    store: &dir.join("store"),
                    domain: &domain,
                });
                std::fs::write(dir.join("leaf.conf"), conf)?;
                create_outbox(&nats_server, &dir, port).await?;
                println!(
                    "wrote {}/leaf.conf and device.creds, and created the outbox",
                    dir.display()
                );
                Ok(())
            }
            EdgeCmd::Forward {
                nats,
                duplicate_window_ms,
                window,
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
                        window: window.max(1),
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

/// Boots the leaf written in `dir` once, creates its outbox and stops it (SIGTERM, so its
/// store is closed cleanly).
async fn create_outbox(
    nats_server: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
) -> anyhow::Result<()> {
    let log = std::fs::File::create(dir.join("init.log"))?;
    let mut leaf = std::process::Command::new(nats_server)
        .arg("-c")
        .arg(dir.join("leaf.conf"))
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} to create the outbox", nats_server.display()))?;
    let created = async {
        let url = format!("nats://127.0.0.1:{port}");
        let client = edge::connect_when_up(&url, Duration::from_secs(20))
            .await
            .context("the leaf did not start (see init.log)")?;
        edge::open_outbox(
            &async_nats::jetstream::new(client),
            edge::OutboxConfig::default(),
        )
        .await?;
        Ok(())
    }
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &leaf.id().to_string()])
        .status();
    let _ = leaf.wait();
    created
}

/// Writes `bytes` to `path`, readable by its owner only (mode 0600).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}
