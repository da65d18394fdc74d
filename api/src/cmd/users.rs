//! `mnemo users create`: a user's chain (and, in operator mode, their NATS account), and a
//! token for them.

use super::{Config, JwtArgs, server_addrs};
use clap::Subcommand;
use mnemo_ledger::Ledger;

#[derive(Subcommand)]
pub(crate) enum UsersCmd {
    /// Creates a user (their chain) and prints a token for them.
    Create {
        /// The user id ([A-Za-z0-9_-], at most 64).
        id: String,
        #[command(flatten)]
        jwt: JwtArgs,
    },
    /// Pushes every user's NATS account again as this version writes it (operator mode):
    /// accounts made by an earlier version gain what it added (`mnemo.capture`).
    RefreshNats,
}

impl UsersCmd {
    pub(crate) async fn run(self, c: &Config) -> anyhow::Result<()> {
        let (id, jwt) = match self {
            UsersCmd::Create { id, jwt } => (id, jwt),
            UsersCmd::RefreshNats => return refresh(c).await,
        };
        let user = mnemo_core::UserId::new(&id).map_err(|e| anyhow::anyhow!("user id: {e}"))?;
        let auth = jwt.auth()?;
        let client = c.connect().await?;
        let cfg = c.ledger_config()?;
        let master = cfg.master_key.clone();
        let ledger = Ledger::connect(client.clone(), cfg).await?;
        ledger.create_user(&user).await?;
        if let Some(dir) = &c.nats_dir {
            let setup = mnemo_accounts::OperatorSetup::load(dir)?;
            let accounts = mnemo_accounts::Accounts::for_setup(
                &setup,
                server_addrs(&c.nats_url)?,
                &async_nats::jetstream::new(client),
                master,
                c.replicas.max(1),
            )
            .await?;
            let account = accounts.create(&user).await?;
            eprintln!("NATS account {account}");
        }
        println!("{}", auth.issue(user.as_str(), false, 30 * 24 * 3600));
        Ok(())
    }
}

async fn refresh(c: &Config) -> anyhow::Result<()> {
    let dir = c
        .nats_dir
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("MNEMO_NATS_DIR (operator mode) is required"))?;
    let setup = mnemo_accounts::OperatorSetup::load(dir)?;
    let client = c.connect().await?;
    let cfg = c.ledger_config()?;
    let accounts = mnemo_accounts::Accounts::for_setup(
        &setup,
        server_addrs(&c.nats_url)?,
        &async_nats::jetstream::new(client),
        cfg.master_key.clone(),
        c.replicas.max(1),
    )
    .await?;
    let n = accounts.refresh_all().await?;
    println!("{n} accounts pushed");
    Ok(())
}
