//! `mnemo serve` and `mnemo dev`.

use anyhow::Context;
use mnemo_api::app::{Api, ApiConfig, ApiStats};
use mnemo_api::auth::{Auth, ExternalIssuer};
use mnemo_api::health;
use mnemo_core::{SigningKey, UserId};
use mnemo_ledger::{Ledger, LedgerConfig, NewMemory, SecretKey};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Config;

/// How API tokens are signed.
#[derive(clap::Args)]
pub struct JwtArgs {
    /// Seed (64 hex characters) of the Ed25519 key that signs API tokens. Secret.
    #[arg(long, env = "MNEMO_JWT_KEY", hide_env_values = true)]
    jwt_key: Option<String>,
    /// `iss` of the tokens mnemo issues.
    #[arg(long, env = "MNEMO_JWT_ISSUER", default_value = "mnemo")]
    jwt_issuer: String,
    /// `aud` every accepted token must carry.
    #[arg(long, env = "MNEMO_JWT_AUDIENCE", default_value = "mnemo-api")]
    jwt_audience: String,
}

impl JwtArgs {
    pub fn auth(&self) -> anyhow::Result<Auth> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            self.jwt_key
                .as_deref()
                .context("MNEMO_JWT_KEY (or --jwt-key) is required")?
                .trim(),
            &mut seed,
        )
        .map_err(|_| anyhow::anyhow!("MNEMO_JWT_KEY must be 64 hex characters"))?;
        Ok(Auth::new(
            &SigningKey::from_bytes(&seed),
            &self.jwt_issuer,
            &self.jwt_audience,
        ))
    }
}

/// Options of `mnemo serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address of the API (and `/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "MNEMO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Do not serve the API (run only the projector and/or anchorer).
    #[arg(long)]
    no_api: bool,
    /// Do not run the projector (another instance does).
    #[arg(long)]
    no_projector: bool,
    /// Do not run the anchorer.
    #[arg(long)]
    no_anchor: bool,
    #[command(flatten)]
    jwt: JwtArgs,
    /// Also accept tokens of an external issuer whose keys are in this JWKS file.
    #[arg(long, env = "MNEMO_JWKS_FILE", requires = "jwks_issuer")]
    jwks_file: Option<PathBuf>,
    /// The external issuer's `iss`.
    #[arg(long, env = "MNEMO_JWKS_ISSUER")]
    jwks_issuer: Option<String>,
    /// Largest binary upload, in bytes.
    #[arg(long, env = "MNEMO_MAX_UPLOAD", default_value_t = 64 << 20)]
    max_upload: usize,
    /// Ethereum JSON-RPC URL for anchoring.
    #[arg(long, env = "MNEMO_RPC_URL")]
    rpc_url: Option<String>,
    /// Private key (hex) of the anchoring account. Secret.
    #[arg(long, env = "MNEMO_ANCHOR_KEY", hide_env_values = true)]
    anchor_key: Option<String>,
    /// The anchor contract.
    #[arg(long, env = "MNEMO_ANCHOR_CONTRACT")]
    anchor_contract: Option<String>,
    /// Seconds between epochs.
    #[arg(long, env = "MNEMO_ANCHOR_INTERVAL", default_value_t = 3600)]
    anchor_interval: u64,
    /// `/readyz` answers 503 while the view is more events behind than this.
    #[arg(long, env = "MNEMO_READY_MAX_LAG", default_value_t = 1000)]
    max_lag: u64,
}

/// What a running stack is made of.
struct Parts {
    client: async_nats::Client,
    ledger_cfg: LedgerConfig,
    pool: sqlx::PgPool,
    auth: Auth,
    listen: Option<SocketAddr>,
    projector: bool,
    anchor: Option<(String, String, mnemo_core::Address, Duration)>,
    max_upload: usize,
    max_lag: u64,
    /// Operator mode: the setup (`mnemo nats init`) and the server URL.
    operator: Option<(mnemo_api::natsauth::OperatorSetup, String)>,
}

/// Running services; `stop` ends them.
struct Running {
    addr: Option<SocketAddr>,
    accounts: Option<mnemo_api::natsauth::Accounts>,
    ledger: Ledger,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            match tokio::time::timeout(Duration::from_secs(10), t).await {
                Ok(Ok(r)) => r?,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => tracing::warn!("a service did not stop within 10 s"),
            }
        }
        Ok(())
    }
}

/// Starts the services; on any failure the ones already started are stopped again.
async fn start(p: Parts) -> anyhow::Result<Running> {
    let (stop, rx) = watch::channel(false);
    let mut tasks: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
    match start_services(p, rx, &mut tasks).await {
        Ok((addr, accounts, ledger)) => Ok(Running {
            accounts,
            addr,
            ledger,
            stop,
            tasks,
        }),
        Err(e) => {
            let _ = stop.send(true);
            for t in tasks {
                t.abort();
            }
            Err(e)
        }
    }
}

type Started = (
    Option<SocketAddr>,
    Option<mnemo_api::natsauth::Accounts>,
    Ledger,
);

async fn start_services(
    p: Parts,
    rx: watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<Started> {
    let js = async_nats::jetstream::new(p.client.clone());
    mnemo_projections::migrate(&p.pool).await?;
    let ledger_master = p.ledger_cfg.master_key.clone();
    let replicas = p.ledger_cfg.replicas;
    let ledger = Ledger::connect(p.client.clone(), p.ledger_cfg).await?;
    let projector = mnemo_projections::Projector::new(
        js.clone(),
        ledger.clone(),
        p.pool.clone(),
        mnemo_projections::ProjectorConfig {
            replicas,
            ..Default::default()
        },
    );
    let proj_stats = projector.stats();
    if p.projector {
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move { Ok(projector.run(rx).await?) }));
        tracing::info!("projector running");
    }
    let mut anchor_stats = None;
    if let Some((rpc, key, contract, interval)) = p.anchor {
        let chain = mnemo_anchor::Chain::connect(&rpc, &key, contract, 1).await?;
        let a = mnemo_anchor::Anchorer::new(
            js.clone(),
            chain,
            mnemo_anchor::AnchorerConfig {
                interval,
                replicas,
                ..Default::default()
            },
        )
        .await?
        .with_pool(p.pool.clone());
        anchor_stats = Some(a.stats());
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move { Ok(a.run(rx).await?) }));
        tracing::info!(%contract, "anchorer running");
    }
    let mut accounts = None;
    if let Some((setup, url)) = p.operator {
        let a = mnemo_api::natsauth::Accounts::for_setup(
            &setup,
            crate::server_addrs(&url)?,
            &js,
            ledger_master.clone(),
        )
        .await?;
        let rx = rx.clone();
        tasks.push(tokio::spawn(mnemo_api::natsauth::serve_devices(
            p.client.clone(),
            ledger.clone(),
            a.clone(),
            rx,
        )));
        tracing::info!("device ingest and read over NATS running");
        accounts = Some(a);
    }
    let accounts_out = accounts.clone();
    let mut addr = None;
    if let Some(listen) = p.listen {
        let api_stats = Arc::new(ApiStats::default());
        let api = Arc::new(Api {
            ledger: ledger.clone(),
            pool: p.pool.clone(),
            js: js.clone(),
            auth: p.auth,
            cfg: ApiConfig {
                max_upload: p.max_upload,
                ..Default::default()
            },
            stats: api_stats.clone(),
            accounts: accounts.clone(),
        });
        let h = health::Health {
            js,
            pool: p.pool.clone(),
            view: "pg".into(),
            stats: proj_stats,
            max_lag: p.max_lag,
            api: Some(api_stats),
            anchor: anchor_stats,
        };
        let router = mnemo_api::app::router(api).merge(health::router(h));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        addr = Some(listener.local_addr()?);
        tracing::info!(listen = %listener.local_addr()?, "API up");
        // Small JSON answers: do not let Nagle hold them back waiting for an ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await?;
            Ok(())
        }));
    }
    Ok((addr, accounts_out, ledger))
}

/// `mnemo serve`.
pub async fn serve(c: &Config, a: ServeArgs) -> anyhow::Result<()> {
    let mut auth = a.jwt.auth()?;
    if let (Some(file), Some(issuer)) = (&a.jwks_file, &a.jwks_issuer) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading JWKS {}", file.display()))?;
        let jwks = serde_json::from_str(&text).context("parsing the JWKS")?;
        auth = auth.with_external(ExternalIssuer {
            issuer: issuer.clone(),
            jwks,
        });
    }
    let anchor = if a.no_anchor {
        None
    } else {
        match (&a.rpc_url, &a.anchor_key, &a.anchor_contract) {
            (Some(rpc), Some(key), Some(contract)) => Some((
                rpc.clone(),
                key.clone(),
                mnemo_core::Address::from_hex(contract.trim_start_matches("0x"))
                    .context("MNEMO_ANCHOR_CONTRACT must be a 20-byte hex address")?,
                Duration::from_secs(a.anchor_interval),
            )),
            _ => {
                tracing::warn!(
                    "anchoring off: set MNEMO_RPC_URL, MNEMO_ANCHOR_KEY and MNEMO_ANCHOR_CONTRACT (or pass --no-anchor)"
                );
                None
            }
        }
    };
    let ledger_cfg = c.ledger_config()?;
    let database_url = c.database_url()?.to_owned();
    // Dependencies that are down at start (a NATS node restarting, JetStream electing
    // leaders, PostgreSQL restarting) are waited for, not fatal: retried every second
    // until Ctrl-C. Configuration errors above fail at once.
    let mut attempt = 0u32;
    let running = loop {
        let result = async {
            let operator = match &c.nats_dir {
                Some(dir) => Some((
                    mnemo_api::natsauth::OperatorSetup::load(dir)?,
                    c.nats_url.clone(),
                )),
                None => None,
            };
            start(Parts {
                operator,
                client: c.connect().await?,
                ledger_cfg: ledger_cfg.clone(),
                pool: crate::pool(&database_url).await?,
                auth: auth.clone(),
                listen: (!a.no_api).then_some(a.listen),
                projector: !a.no_projector,
                anchor: anchor.clone(),
                max_upload: a.max_upload,
                max_lag: a.max_lag,
            })
            .await
        }
        .await;
        match result {
            Ok(r) => break r,
            Err(e) => {
                attempt += 1;
                tracing::warn!(attempt, error = %format!("{e:#}"), "starting: a dependency is not ready, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
        }
    };
    if let Some(addr) = running.addr {
        println!("listening on http://{addr}");
    }
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    running.stop().await
}

/// Options of `mnemo dev`.
#[derive(clap::Args)]
pub struct DevArgs {
    /// Address of the API (default: a free port on 127.0.0.1).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Seconds between anchor epochs.
    #[arg(long, default_value_t = 10)]
    anchor_interval: u64,
}

/// `mnemo dev`: everything from nothing, on free ports, in temporary directories that go
/// away with it.
pub async fn dev(a: DevArgs) -> anyhow::Result<()> {
    eprintln!("mnemo dev: starting nats-server, PostgreSQL and anvil ...");
    let setup = mnemo_api::natsauth::OperatorSetup::generate();
    let nats_dir = tempfile::Builder::new()
        .prefix("mnemo-dev-nats-")
        .tempdir()?;
    setup.write(nats_dir.path())?;
    let operator_config = setup.server_config(&nats_dir.path().join("jwt"));
    let (nats, pg, anvil) = tokio::task::spawn_blocking(move || {
        let nats = mnemo_testkit::NatsServer::start_with(mnemo_testkit::NatsOptions {
            sync_always: true,
            extra_config: operator_config,
            ..Default::default()
        });
        let pg = mnemo_testkit::PgServer::start_with(true);
        pg.create_database("mnemo");
        let anvil = mnemo_testkit::Anvil::start();
        (nats, pg, anvil)
    })
    .await?;
    let contract = mnemo_anchor::Chain::deploy(&anvil.url(), mnemo_testkit::DEV_KEY).await?;
    let jwt_seed = rand::random::<[u8; 32]>();
    let auth = Auth::new(&SigningKey::from_bytes(&jwt_seed), "mnemo", "mnemo-api");
    let client = async_nats::ConnectOptions::with_credentials(&setup.service_creds())?
        .connect(nats.url())
        .await?;
    let db = pg.url("mnemo");
    let nats_url = nats.url();
    let running = start(Parts {
        operator: Some((setup, nats_url)),
        client,
        ledger_cfg: LedgerConfig::new(
            SecretKey::random(),
            SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        ),
        pool: crate::pool(&db).await?,
        auth: auth.clone(),
        listen: Some(
            a.listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        ),
        projector: true,
        anchor: Some((
            anvil.url(),
            mnemo_testkit::DEV_KEY.into(),
            contract,
            Duration::from_secs(a.anchor_interval),
        )),
        max_upload: 64 << 20,
        max_lag: 1000,
    })
    .await?;
    // the demo
    let demo = UserId::new("demo").expect("valid");
    let friend = UserId::new("friend").expect("valid");
    for u in [&demo, &friend] {
        running.ledger.create_user(u).await?;
        running
            .accounts
            .as_ref()
            .expect("operator mode")
            .create(u)
            .await?;
    }
    let (_, demo_creds) = running
        .accounts
        .as_ref()
        .expect("operator mode")
        .issue_device(&demo, "demo-device", 24 * 3600)
        .await?;
    let creds_path = nats_dir.path().join("demo-device.creds");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&creds_path)?
            .write_all(demo_creds.as_bytes())?;
    }
    let memories = [
        (
            "conversation",
            "travel",
            "Planned the Lisbon trip with Ana: flights on the 12th.",
        ),
        ("note", "health", "Blood pressure 120/80 this morning."),
        (
            "web",
            "travel",
            "Read about tram 28 and the Alfama viewpoints.",
        ),
    ];
    for (kind, tag, text) in memories {
        running
            .ledger
            .append(
                &demo,
                NewMemory {
                    kind: kind.into(),
                    tags: vec![tag.into()],
                    content_type: "text/plain; charset=utf-8".into(),
                    content: text.as_bytes().to_vec().into(),
                    source: Some("mnemo dev".into()),
                    ..Default::default()
                },
            )
            .await?;
    }
    let addr = running.addr.expect("API on");
    let url = format!("http://{addr}");
    let token = auth.issue("demo", false, 24 * 3600);
    let friend_token = auth.issue("friend", false, 24 * 3600);
    let admin = auth.issue("admin", true, 24 * 3600);
    println!("mnemo dev is up (everything below lives until Ctrl-C)");
    println!("  API          {url}   (OpenAPI: {url}/openapi.json, metrics: {url}/metrics)");
    println!(
        "  NATS         {} (operator mode; demo device creds: {})",
        nats.url(),
        creds_path.display()
    );
    println!("  PostgreSQL   {db}");
    println!(
        "  anvil        {} (MnemoAnchor at 0x{contract})",
        anvil.url()
    );
    println!("  users        demo (3 memories), friend");
    println!("  demo token   {token}");
    println!("  friend token {friend_token}");
    println!("  admin token  {admin}");
    println!("try:");
    println!("curl -s -H 'Authorization: Bearer {token}' '{url}/v1/memories?tag=travel'");
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    eprintln!("mnemo dev: stopping");
    running.stop().await?;
    drop((nats, pg, anvil, nats_dir));
    Ok(())
}
