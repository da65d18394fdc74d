//! `mnemo`: the mnemo server binary.
//!
//! `serve` (REST API + projector + anchorer, each can be switched off), `dev` (a whole
//! local stack with a demo), `migrate`, `users create`, `tokens issue`, `projections run |
//! rebuild | lag`, `anchor deploy | run`. Configuration comes from flags or the environment
//! (`MNEMO_*`, `DATABASE_URL`; see `.env.example`). Secrets are never logged.

mod cmd;

/// mimalloc: glibc malloc took a fifth of the projector's CPU time in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use cmd::Config;
use cmd::anchor::AnchorCmd;
use cmd::nats::NatsCmd;
use cmd::processors::ProcessorsCmd;
use cmd::projections::Projections;
use cmd::tokens::TokensCmd;
use cmd::users::UsersCmd;

#[derive(Parser)]
#[command(
    name = "mnemo",
    about = "mnemo: a provable custody ledger for memories",
    version
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the REST API, runs the projector and the anchorer (each can be switched off).
    Serve(cmd::serve::ServeArgs),
    /// A local stack from nothing: nats-server, PostgreSQL, anvil, the anchor contract, the
    /// server, a demo user with memories; prints the URL, a token and a curl line.
    Dev(cmd::dev::DevArgs),
    /// Users.
    #[command(subcommand)]
    Users(UsersCmd),
    /// API tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Processors: registered services that process memories under consent.
    #[command(subcommand)]
    Processors(ProcessorsCmd),
    /// Runs the PostgreSQL migrations.
    Migrate,
    /// Operator-mode NATS (decentralized JWT auth).
    #[command(subcommand)]
    Nats(NatsCmd),
    /// Projections.
    #[command(subcommand)]
    Projections(Projections),
    /// Anchoring on an EVM chain (Oasis Sapphire, Emerald, any EVM chain).
    #[command(subcommand)]
    Anchor(AnchorCmd),
    /// After restoring the key bucket from a backup: applies again every erasure the chains
    /// record, so no key an erasure destroyed comes back (docs/OPERATIONS.md). Run it before
    /// `mnemo serve` takes traffic.
    ReapplyErasures {
        /// Only this user (default: every user with a chain).
        #[arg(long)]
        user: Option<String>,
    },
}

/// Logs to stderr, filtered by `MNEMO_LOG`: plain text (colours only on a terminal), or
/// one JSON object per line with `MNEMO_LOG_FORMAT=json` (for log collectors).
fn init_logs() {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MNEMO_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("MNEMO_LOG_FORMAT").is_ok_and(|f| f == "json") {
        // The current span's fields on every line: a request's `trace.id` among them.
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .with_ansi(false)
            .init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logs();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mnemo: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let c = &cli.config;
    match cli.command {
        Command::Serve(a) => cmd::serve::serve(c, a).await,
        Command::Dev(a) => cmd::dev::dev(c, a).await,
        Command::Users(u) => u.run(c).await,
        Command::Tokens(t) => t.run(),
        Command::Processors(p) => p.run(c).await,
        Command::Nats(n) => n.run(),
        Command::Migrate => {
            cmd::views(c.database_url()?).await?.migrate().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Anchor(a) => a.run(c).await,
        Command::Projections(p) => p.run(c).await,
        Command::ReapplyErasures { user } => {
            let ledger =
                mnemo_ledger::Ledger::connect(c.connect().await?, c.ledger_config()?).await?;
            let users = match user {
                Some(u) => {
                    vec![mnemo_core::UserId::new(&u).map_err(|e| anyhow::anyhow!("--user: {e}"))?]
                }
                None => ledger.chain_users().await?,
            };
            let mut keys = 0;
            for u in &users {
                keys += ledger.reapply_erasures(u).await?;
            }
            println!(
                "{} chains checked, {keys} keys destroyed again",
                users.len()
            );
            Ok(())
        }
    }
}
