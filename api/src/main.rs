//! `mnemo`: the mnemo server binary.
//!
//! `serve` (REST API + projector + anchorer, each can be switched off), `dev` (a whole
//! local stack with a demo), `migrate`, `users create`, `tokens issue`, `projections run |
//! rebuild | lag`, `anchor deploy | run`. Configuration comes from flags or the environment
//! (`MNEMO_*`, `DATABASE_URL`; see `.env.example`). Secrets are never logged.

mod serve;

use mnemo_api::health;

/// mimalloc: glibc malloc took a fifth of the projector's CPU time in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mnemo_core::SigningKey;
use mnemo_ledger::{Layout, Ledger, LedgerConfig, SecretKey};
use std::time::Duration;

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

/// Shared configuration.
#[derive(clap::Args)]
pub(crate) struct Config {
    /// NATS server URL (a cluster: several, comma-separated).
    #[arg(
        long,
        env = "MNEMO_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub(crate) nats_url: String,
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", global = true)]
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
}

#[derive(Subcommand)]
enum Command {
    /// Serves the REST API, runs the projector and the anchorer (each can be switched off).
    Serve(serve::ServeArgs),
    /// A local stack from nothing: nats-server, PostgreSQL, anvil, the anchor contract, the
    /// server, a demo user with memories; prints the URL, a token and a curl line.
    Dev(serve::DevArgs),
    /// Users.
    #[command(subcommand)]
    Users(UsersCmd),
    /// API tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
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
}

/// Where and as whom to anchor.
#[derive(clap::Args)]
struct AnchorArgs {
    /// Ethereum JSON-RPC URL (e.g. https://sapphire.oasis.io, or a local node).
    #[arg(long, env = "MNEMO_RPC_URL")]
    rpc_url: String,
    /// Private key (hex) of the account that deploys and anchors. Secret.
    #[arg(long, env = "MNEMO_ANCHOR_KEY", hide_env_values = true)]
    key: String,
}

#[derive(Subcommand)]
enum AnchorCmd {
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

#[derive(Subcommand)]
enum NatsCmd {
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

#[derive(Subcommand)]
enum UsersCmd {
    /// Creates a user (their chain) and prints a token for them.
    Create {
        /// The user id ([A-Za-z0-9_-], at most 64).
        id: String,
        #[command(flatten)]
        jwt: serve::JwtArgs,
    },
}

#[derive(Subcommand)]
enum TokensCmd {
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
        jwt: serve::JwtArgs,
    },
}

#[derive(Subcommand)]
enum Projections {
    /// Runs the projector until Ctrl-C, with `/healthz`, `/readyz` (lag) and `/metrics`.
    Run {
        /// Address of the health and metrics endpoints.
        #[arg(long, env = "MNEMO_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
        /// `/readyz` answers 503 while the view is more events behind than this.
        #[arg(long, env = "MNEMO_READY_MAX_LAG", default_value_t = 1000)]
        max_lag: u64,
    },
    /// Replays the chains into fresh tables beside the live view, then switches over.
    Rebuild {
        /// The view to rebuild.
        #[arg(long, default_value = "pg")]
        view: String,
    },
    /// Prints how many events the view is behind the chains.
    Lag {
        /// The view.
        #[arg(long, default_value = "pg")]
        view: String,
    },
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

    pub(crate) fn ledger_config(&self) -> anyhow::Result<LedgerConfig> {
        let master = SecretKey::from_hex(
            self.master_key
                .as_deref()
                .context("MNEMO_MASTER_KEY (or --master-key) is required")?,
        )
        .context("MNEMO_MASTER_KEY must be 64 hex characters")?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            self.signing_key
                .as_deref()
                .context("MNEMO_SIGNING_KEY (or --signing-key) is required")?
                .trim(),
            &mut seed,
        )
        .map_err(|_| anyhow::anyhow!("MNEMO_SIGNING_KEY must be 64 hex characters"))?;
        let mut c = LedgerConfig::new(master, SigningKey::from_bytes(&seed));
        c.replicas = self.replicas.max(1);
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
        logs.json().with_ansi(false).init();
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
        Command::Serve(a) => serve::serve(c, a).await?,
        Command::Dev(a) => serve::dev(c, a).await?,
        Command::Users(UsersCmd::Create { id, jwt }) => {
            let user = mnemo_core::UserId::new(&id).map_err(|e| anyhow::anyhow!("user id: {e}"))?;
            let auth = jwt.auth()?;
            let client = c.connect().await?;
            let cfg = c.ledger_config()?;
            let master = cfg.master_key.clone();
            let ledger = Ledger::connect(client.clone(), cfg).await?;
            ledger.create_user(&user).await?;
            if let Some(dir) = &c.nats_dir {
                let setup = mnemo_api::nats::OperatorSetup::load(dir)?;
                let accounts = mnemo_api::nats::Accounts::for_setup(
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
        }
        Command::Tokens(TokensCmd::Issue {
            user,
            admin,
            ttl,
            jwt,
        }) => {
            let auth = jwt.auth()?;
            let sub = match (user, admin) {
                (_, true) => "admin".to_owned(),
                (Some(u), false) => mnemo_core::UserId::new(&u)
                    .map_err(|e| anyhow::anyhow!("user id: {e}"))?
                    .to_string(),
                (None, false) => anyhow::bail!("--user or --admin"),
            };
            println!("{}", auth.issue(&sub, admin, ttl));
        }
        Command::Nats(NatsCmd::Init { dir, force }) => {
            if dir.join("operator.nk").exists() && !force {
                anyhow::bail!(
                    "{} already holds an operator; --force replaces it (and invalidates every account)",
                    dir.display()
                );
            }
            let setup = mnemo_api::nats::OperatorSetup::generate();
            setup
                .write(&dir)
                .with_context(|| format!("writing {}", dir.display()))?;
            println!("operator {}", setup.operator.public_key());
            println!("system account {}", setup.system.public_key());
            println!("service account {}", setup.service.public_key());
            println!(
                "wrote {}/server.conf (add listen and jetstream {{ store_dir }}), service.creds, system.creds and seeds (0600)",
                dir.display()
            );
        }
        Command::Migrate => {
            views(c.database_url()?).await?.migrate().await?;
            println!("migrations applied");
        }
        Command::Anchor(AnchorCmd::Deploy { chain }) => {
            let addr = mnemo_anchor::Chain::deploy(&chain.rpc_url, &chain.key).await?;
            println!("0x{addr}");
        }
        Command::Anchor(AnchorCmd::Run {
            chain,
            contract,
            interval,
            confirmations,
            listen,
        }) => {
            let contract = mnemo_core::Address::from_hex(contract.trim_start_matches("0x"))
                .context("MNEMO_ANCHOR_CONTRACT must be a 20-byte hex address")?;
            let ch =
                mnemo_anchor::Chain::connect(&chain.rpc_url, &chain.key, contract, confirmations)
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
            let listener =
                mnemo_api::http::bind(listen).with_context(|| format!("listening on {listen}"))?;
            let router = health::anchor_router(a.stats());
            let server = tokio::spawn(async move { axum::serve(listener, router).await });
            let (tx, rx) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(a.run(rx));
            tokio::signal::ctrl_c().await?;
            server.abort();
            tx.send(true)?;
            task.await??;
        }
        Command::Projections(p) => {
            let client = c.connect().await?;
            let js = async_nats::jetstream::new(client.clone());
            let url = c.database_url()?;
            let views = views(url).await?;
            let pool = views.pool().clone();
            match p {
                Projections::Lag { view } => {
                    println!("{}", mnemo_projections::lag(&js, &pool, &view).await?);
                }
                Projections::Run { listen, max_lag } => {
                    mnemo_projections::migrate(&pool).await?;
                    let ledger = Ledger::connect(client, c.ledger_config()?).await?;
                    let (tx, rx) = tokio::sync::watch::channel(false);
                    let projector = mnemo_projections::Projector::new(
                        js.clone(),
                        ledger,
                        pool.clone(),
                        mnemo_projections::ProjectorConfig {
                            replicas: c.replicas.max(1),
                            ..Default::default()
                        },
                    );
                    let h = health::Health {
                        js,
                        views,
                        view: "pg".into(),
                        stats: projector.stats(),
                        max_lag,
                        api: None,
                        anchor: None,
                    };
                    let listener = mnemo_api::http::bind(listen)
                        .with_context(|| format!("listening on {listen}"))?;
                    tracing::info!(%listen, "health and metrics endpoints up");
                    println!("listening on {}", listener.local_addr()?);
                    let server =
                        tokio::spawn(async move { axum::serve(listener, health::router(h)).await });
                    let task = tokio::spawn(projector.run(rx));
                    tokio::signal::ctrl_c().await?;
                    server.abort();
                    tx.send(true)?;
                    task.await??;
                }
                Projections::Rebuild { view } => {
                    let ledger = Ledger::connect(client, c.ledger_config()?).await?;
                    let bar = indicatif::ProgressBar::new(0);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "rebuilding {msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
                        )
                        .context("progress template")?,
                    );
                    bar.set_message(view.clone());
                    let report =
                        mnemo_projections::rebuild(&js, &ledger, url, &view, |done, total| {
                            bar.set_length(total);
                            bar.set_position(done);
                        })
                        .await?;
                    bar.finish();
                    println!(
                        "rebuilt view {view}: {} events in {:.1} s, switched over",
                        report.events, report.seconds
                    );
                }
            }
        }
    }
    Ok(())
}
