//! The configuration every command shares (flags or `MNEMO_*` / `DATABASE_URL`), and the
//! connections made from it: NATS, the ledger's configuration, the views.

use anyhow::Context;
use mnemo_core::SigningKey;
use mnemo_ledger::{Layout, LedgerConfig, SecretKey};

/// Shared configuration.
#[derive(clap::Args)]
pub(crate) struct Config {
    /// NATS server URL (a cluster: several, comma-separated).
    #[arg(
        long,
        env = "MNEMO_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true,
        global = true
    )]
    pub(crate) nats_url: String,
    /// PostgreSQL URL (its password is never printed).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub(crate) database_url: Option<String>,
    /// Master key (64 hex characters) that seals payload keys. Secret.
    #[arg(long, env = "MNEMO_MASTER_KEY", hide_env_values = true, global = true)]
    master_key: Option<String>,
    /// Seed (64 hex characters) of the custody signing key. Secret.
    #[arg(long, env = "MNEMO_SIGNING_KEY", hide_env_values = true, global = true)]
    signing_key: Option<String>,
    /// Chain layout: `per-user` or `sharded`.
    #[arg(long, env = "MNEMO_LAYOUT", default_value = "per-user", global = true)]
    layout: String,
    /// Shared streams of the sharded layout.
    #[arg(long, env = "MNEMO_SHARDS", default_value_t = 16, global = true)]
    shards: u32,
    /// Replicas of every stream, KV bucket and object store mnemo creates (3 on a 3-node
    /// JetStream cluster; see docs/decisions/0002-durability.md).
    #[arg(long, env = "MNEMO_REPLICAS", default_value_t = 1, global = true)]
    pub(crate) replicas: usize,
    /// Operator-mode NATS: the directory `mnemo nats init` wrote (mnemo connects with its
    /// service credentials and creates an account per user).
    #[arg(long, env = "MNEMO_NATS_DIR", global = true)]
    pub(crate) nats_dir: Option<std::path::PathBuf>,
    /// The custody format new events are written in: 2 (seals over batches of events,
    /// docs/FORMAT.md §5.4) or 1 (one signature per event; for comparison). A chain never
    /// goes back from 2 to 1.
    #[arg(long, env = "MNEMO_FORMAT_VERSION", default_value_t = 2, global = true,
          value_parser = clap::value_parser!(u8).range(1..=2))]
    format_version: u8,
    /// Most events one seal covers.
    #[arg(long, env = "MNEMO_MAX_SEAL", default_value_t = 256, global = true,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_seal: u32,
    /// Users whose state the ledger keeps in memory at once (idle ones past it are
    /// dropped and reloaded from their chain when next used; docs/SCALE.md).
    #[arg(long, env = "MNEMO_MAX_RESIDENT_USERS", default_value_t = 100_000, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_resident_users: u64,
    /// Crash tests only: stop before publishing the events of the first stored seal,
    /// after writing this file.
    #[arg(long, env = "MNEMO_TEST_PAUSE_AFTER_SEAL", hide = true, global = true)]
    pause_after_seal: Option<std::path::PathBuf>,
}

/// The servers of `MNEMO_NATS_URL`: one URL, or a cluster's as a comma-separated list.
pub(crate) fn server_addrs(urls: &str) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
    urls.split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("MNEMO_NATS_URL {urls:?}"))
}

impl Config {
    /// Connects to NATS, with the service credentials in operator mode.
    pub(crate) async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        let mut o = async_nats::ConnectOptions::new().name("mnemo");
        if let Some(dir) = &self.nats_dir {
            let creds = dir.join("service.creds");
            o = o
                .credentials_file(&creds)
                .await
                .with_context(|| format!("reading {}", creds.display()))?;
        }
        o.connect(server_addrs(&self.nats_url)?)
            .await
            .with_context(|| format!("connecting to NATS at {}", self.nats_url))
    }

    pub(crate) fn database_url(&self) -> anyhow::Result<&str> {
        self.database_url
            .as_deref()
            .context("DATABASE_URL (or --database-url) is required")
    }

    fn master(&self) -> anyhow::Result<SecretKey> {
        SecretKey::from_hex(
            self.master_key
                .as_deref()
                .context("MNEMO_MASTER_KEY (or --master-key) is required")?,
        )
        .context("MNEMO_MASTER_KEY must be 64 hex characters")
    }

    /// A read-only view of the chains (views, rebuilds): the master key opens the
    /// memories; the custody signing key is not read (`LedgerReader`).
    pub(crate) async fn ledger_reader(
        &self,
        client: async_nats::Client,
    ) -> anyhow::Result<mnemo_ledger::LedgerReader> {
        // The key given here is replaced by a fresh random one on connecting.
        let cfg = self.ledger_config_with(self.master()?, SigningKey::from_bytes(&[0; 32]))?;
        Ok(mnemo_ledger::LedgerReader::connect(client, cfg).await?)
    }

    pub(crate) fn ledger_config(&self) -> anyhow::Result<LedgerConfig> {
        let master = self.master()?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            self.signing_key
                .as_deref()
                .context("MNEMO_SIGNING_KEY (or --signing-key) is required")?
                .trim(),
            &mut seed,
        )
        .map_err(|_| anyhow::anyhow!("MNEMO_SIGNING_KEY must be 64 hex characters"))?;
        self.ledger_config_with(master, SigningKey::from_bytes(&seed))
    }

    /// The ledger's configuration from every global option (layout, shards, format
    /// version, replicas, seals), with these keys: `mnemo serve` reads them from the
    /// environment, `mnemo dev` from its own secrets.
    pub(crate) fn ledger_config_with(
        &self,
        master: SecretKey,
        signing: SigningKey,
    ) -> anyhow::Result<LedgerConfig> {
        let mut c = LedgerConfig::new(master, signing);
        c.replicas = self.replicas.max(1);
        c.format = self.format_version;
        c.max_seal = self.max_seal as usize;
        c.max_resident_users = self.max_resident_users as usize;
        c.pause_after_seal = self.pause_after_seal.clone();
        c.layout = match self.layout.as_str() {
            "per-user" => Layout::PerUser,
            "sharded" => Layout::Sharded {
                shards: self.shards,
            },
            other => anyhow::bail!("MNEMO_LAYOUT must be per-user or sharded, not {other:?}"),
        };
        Ok(c)
    }
}

pub(crate) async fn views(url: &str) -> anyhow::Result<mnemo_projections::Views> {
    mnemo_projections::Views::connect(url)
        .await
        .context("connecting to PostgreSQL")
}
