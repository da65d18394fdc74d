//! `mnemo processors register|revoke|list|creds`: the processor registry from the command
//! line (the same as `POST/DELETE/GET /v1/processors`), for operators.

use super::{Config, JwtArgs, server_addrs};
use clap::Subcommand;
use mnemo_core::ProcessorId;
use mnemo_ledger::Ledger;

#[derive(Subcommand)]
pub(crate) enum ProcessorsCmd {
    /// Registers a processor; prints its registration, signing seed (shown once), API token
    /// and, in operator mode, its NATS credentials, as JSON.
    Register {
        /// Its name ([A-Za-z0-9_-], at most 64).
        name: String,
        /// Its version.
        #[arg(long)]
        version: String,
        /// Memory kinds it takes (repeatable; none: whatever a grant covers).
        #[arg(long = "consumes")]
        consumes: Vec<String>,
        /// Memory kinds it makes (repeatable).
        #[arg(long = "produces")]
        produces: Vec<String>,
        #[command(flatten)]
        jwt: JwtArgs,
    },
    /// Revokes a processor: no task, fetch, result or model of it is accepted from now on.
    Revoke {
        /// Its name.
        name: String,
    },
    /// Lists the registered processors.
    List,
    /// Prints fresh NATS credentials of a registered, live processor (operator mode): after
    /// an upgrade that moved processors into accounts of their own, or when a worker's
    /// credentials expire. Its API token and signing seed are not changed.
    Creds {
        /// Its name.
        name: String,
    },
}

impl ProcessorsCmd {
    pub(crate) async fn run(self, c: &Config) -> anyhow::Result<()> {
        let client = c.connect().await?;
        let cfg = c.ledger_config()?;
        let master = cfg.master_key.clone();
        let js = async_nats::jetstream::new(client.clone());
        let ledger = Ledger::connect(client.clone(), cfg).await?;
        let processing = mnemo_processing::Processing::open(ledger, js.clone()).await?;
        match self {
            ProcessorsCmd::Register {
                name,
                version,
                consumes,
                produces,
                jwt,
            } => {
                let auth = jwt.auth()?;
                let name = ProcessorId::new(&name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
                let (p, key) = processing
                    .registry
                    .register(name.clone(), version, consumes, produces)
                    .await?;
                let ttl = mnemo_api::http::processing::PROCESSOR_TOKEN_TTL;
                let creds = match operator_accounts(c, &js, master).await? {
                    Some(a) => {
                        mnemo_api::sync_processor_accounts(&a, &processing.registry).await?;
                        a.processor_creds(name.as_str(), ttl as i64)?
                    }
                    None => None,
                };
                println!(
                    "{}",
                    serde_json::json!({
                        "processor": p,
                        "signing_seed": hex::encode(key.to_bytes()),
                        "token": auth.issue_processor(&name, ttl),
                        "nats_creds": creds,
                    })
                );
            }
            ProcessorsCmd::Revoke { name } => {
                let name = ProcessorId::new(&name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
                processing.registry.revoke(&name).await?;
                // Operator mode: its NATS credentials are refused and its connections closed.
                if let Some(a) = operator_accounts(c, &js, master).await? {
                    mnemo_api::sync_processor_accounts(&a, &processing.registry).await?;
                }
                eprintln!("processor {name} revoked");
            }
            ProcessorsCmd::Creds { name } => {
                let name = ProcessorId::new(&name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
                let Some(p) = processing.registry.get(&name).await? else {
                    anyhow::bail!("no processor {name} is registered");
                };
                anyhow::ensure!(!p.revoked, "processor {name} is revoked");
                let Some(a) = operator_accounts(c, &js, master).await? else {
                    anyhow::bail!("NATS credentials exist in operator mode only (MNEMO_NATS_DIR)");
                };
                // Its account is pushed first: the credentials name a user of it.
                mnemo_api::sync_processor_accounts(&a, &processing.registry).await?;
                let ttl = mnemo_api::http::processing::PROCESSOR_TOKEN_TTL;
                let creds = a
                    .processor_creds(name.as_str(), ttl as i64)?
                    .ok_or_else(|| anyhow::anyhow!("no service key to sign credentials"))?;
                print!("{creds}");
            }
            ProcessorsCmd::List => {
                for p in processing.registry.list().await? {
                    println!("{}", serde_json::to_string(&p)?);
                }
            }
        }
        Ok(())
    }
}

/// The operator setup's accounts service, in operator mode (`MNEMO_NATS_DIR`).
async fn operator_accounts(
    c: &Config,
    js: &async_nats::jetstream::Context,
    master: mnemo_ledger::SecretKey,
) -> anyhow::Result<Option<mnemo_accounts::Accounts>> {
    let Some(dir) = &c.nats_dir else {
        return Ok(None);
    };
    let setup = mnemo_accounts::OperatorSetup::load(dir)?;
    Ok(Some(
        mnemo_accounts::Accounts::for_setup(
            &setup,
            server_addrs(&c.nats_url)?,
            js,
            master,
            c.replicas.max(1),
        )
        .await?,
    ))
}
