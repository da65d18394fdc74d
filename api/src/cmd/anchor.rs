//! `mnemo anchor deploy | run`: the anchor contract, and the epoch loop with its health and
//! metrics endpoints.

use super::Config;
use anyhow::Context;
use clap::Subcommand;
use mnemo_api::health;
use std::time::Duration;

/// Where and as whom to anchor.
#[derive(clap::Args)]
pub(crate) struct AnchorArgs {
    /// Ethereum JSON-RPC URL (e.g. https://sapphire.oasis.io, or a local node).
    #[arg(long, env = "MNEMO_RPC_URL", hide_env_values = true)]
    rpc_url: String,
    /// Private key (hex) of the account that deploys and anchors. Secret.
    #[arg(long, env = "MNEMO_ANCHOR_KEY", hide_env_values = true)]
    key: String,
}

#[derive(Subcommand)]
pub(crate) enum AnchorCmd {
    /// Deploys the MnemoAnchor contract and prints its address.
    Deploy {
        #[command(flatten)]
        chain: AnchorArgs,
    },
    /// Runs the epoch loop until Ctrl-C (one instance anchors at a time, by lease).
    Run {
        #[command(flatten)]
        chain: AnchorArgs,
        /// The deployed contract's address.
        #[arg(long, env = "MNEMO_ANCHOR_CONTRACT")]
        contract: String,
        /// Seconds between epochs.
        #[arg(long, env = "MNEMO_ANCHOR_INTERVAL", default_value_t = 3600)]
        interval: u64,
        /// Confirmations to wait for (1 is final on Sapphire).
        #[arg(long, env = "MNEMO_ANCHOR_CONFIRMATIONS", default_value_t = 1)]
        confirmations: u64,
        /// Address of the `/healthz` and `/metrics` endpoints.
        #[arg(
            long,
            env = "MNEMO_ANCHOR_METRICS_LISTEN",
            default_value = "127.0.0.1:9465"
        )]
        listen: std::net::SocketAddr,
    },
}

impl AnchorCmd {
    pub(crate) async fn run(self, c: &Config) -> anyhow::Result<()> {
        match self {
            AnchorCmd::Deploy { chain } => {
                let addr = mnemo_anchor::Chain::deploy(&chain.rpc_url, &chain.key).await?;
                println!("0x{addr}");
            }
            AnchorCmd::Run {
                chain,
                contract,
                interval,
                confirmations,
                listen,
            } => {
                let contract = mnemo_core::Address::from_hex(contract.trim_start_matches("0x"))
                    .context("MNEMO_ANCHOR_CONTRACT must be a 20-byte hex address")?;
                let ch = mnemo_anchor::Chain::connect(
                    &chain.rpc_url,
                    &chain.key,
                    contract,
                    confirmations,
                )
                .await?;
                let client = c.connect().await?;
                let js = async_nats::jetstream::new(client);
                let a = mnemo_anchor::Anchorer::new(
                    js,
                    ch,
                    mnemo_anchor::AnchorerConfig {
                        interval: Duration::from_secs(interval),
                        replicas: c.replicas.max(1),
                        ..Default::default()
                    },
                )
                .await?;
                let listener = mnemo_api::http::bind(listen)
                    .with_context(|| format!("listening on {listen}"))?;
                let router = health::anchor_router(a.stats());
                let server = tokio::spawn(async move { axum::serve(listener, router).await });
                let (tx, rx) = tokio::sync::watch::channel(false);
                let task = tokio::spawn(a.run(rx));
                tokio::signal::ctrl_c().await?;
                server.abort();
                tx.send(true)?;
                task.await??;
            }
        }
        Ok(())
    }
}
