//! `mnemo nats init`: the operator, system and service accounts of operator-mode NATS.

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum NatsCmd {
    /// Creates the operator (with a signing key), the system account and the mnemo service
    /// account; writes their seeds and credentials (mode 0600) and `server.conf` (operator
    /// mode, full resolver) into DIR.
    Init {
        /// Where to write.
        #[arg(long, env = "MNEMO_NATS_DIR")]
        dir: std::path::PathBuf,
        /// Overwrite an existing setup (every account and device credential dies with it).
        #[arg(long)]
        force: bool,
    },
}

impl NatsCmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let NatsCmd::Init { dir, force } = self;
        if dir.join("operator.nk").exists() && !force {
            anyhow::bail!(
                "{} already holds an operator; --force replaces it (and invalidates every account)",
                dir.display()
            );
        }
        let setup = mnemo_accounts::OperatorSetup::generate();
        setup
            .write(&dir)
            .with_context(|| format!("writing {}", dir.display()))?;
        println!("operator {}", setup.operator.public_key());
        println!("system account {}", setup.system.public_key());
        println!("service account {}", setup.service.public_key());
        println!(
            "wrote {}/server.conf (add listen and jetstream {{ store_dir }}), edge.conf (the device listeners), service.creds, system.creds and seeds (0600)",
            dir.display()
        );
        Ok(())
    }
}
