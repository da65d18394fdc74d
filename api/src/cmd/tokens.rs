//! `mnemo tokens issue`: an API token for a user, or an admin token.

use super::JwtArgs;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum TokensCmd {
    /// Issues a token for a user, or an admin token.
    Issue {
        /// The user.
        #[arg(long, required_unless_present = "admin")]
        user: Option<String>,
        /// An admin token instead.
        #[arg(long)]
        admin: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        ttl: u64,
        #[command(flatten)]
        jwt: JwtArgs,
    },
}

impl TokensCmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let TokensCmd::Issue {
            user,
            admin,
            ttl,
            jwt,
        } = self;
        let auth = jwt.auth()?;
        let sub = match (user, admin) {
            (_, true) => "admin".to_owned(),
            (Some(u), false) => mnemo_core::UserId::new(&u)
                .map_err(|e| anyhow::anyhow!("user id: {e}"))?
                .to_string(),
            (None, false) => anyhow::bail!("--user or --admin"),
        };
        println!("{}", auth.issue(&sub, admin, ttl));
        Ok(())
    }
}
