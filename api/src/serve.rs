//! `mnemo serve` and `mnemo dev`.

use anyhow::Context;
use mnemo_api::auth::{Auth, ExternalIssuer};
use mnemo_api::health;
use mnemo_api::http::{Api, ApiConfig, ApiStats};
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
    views: mnemo_projections::Views,
    auth: Auth,
    listen: Option<SocketAddr>,
    projector: bool,
    anchor: Option<(String, String, mnemo_core::Address, Duration)>,
    max_upload: usize,
    max_lag: u64,
    /// Operator mode: the setup (`mnemo nats init`) and the server URL.
    operator: Option<(mnemo_api::nats::OperatorSetup, String)>,
}

/// Running services; `stop` ends them.
struct Running {
    addr: Option<SocketAddr>,
    accounts: Option<mnemo_api::nats::Accounts>,
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
    Option<mnemo_api::nats::Accounts>,
    Ledger,
);

async fn start_services(
    p: Parts,
    rx: watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<Started> {
    let js = async_nats::jetstream::new(p.client.clone());
    p.views.migrate().await?;
    let ledger_master = p.ledger_cfg.master_key.clone();
    let replicas = p.ledger_cfg.replicas;
    let ledger = Ledger::connect(p.client.clone(), p.ledger_cfg).await?;
    let projector = mnemo_projections::Projector::new(
        js.clone(),
        ledger.clone(),
        p.views.pool().clone(),
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
        .await?;
        anchor_stats = Some(a.stats());
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move { Ok(a.run(rx).await?) }));
        tracing::info!(%contract, "anchorer running");
    }
    let mut accounts = None;
    if let Some((setup, url)) = p.operator {
        let a = mnemo_api::nats::Accounts::for_setup(
            &setup,
            crate::server_addrs(&url)?,
            &js,
            ledger_master.clone(),
            replicas,
        )
        .await?;
        let rx = rx.clone();
        let (client, ledger) = (p.client.clone(), ledger.clone());
        let gateway = a.clone();
        tasks.push(tokio::spawn(async move {
            Ok(mnemo_api::nats::serve_devices(client, ledger, gateway, rx).await?)
        }));
        tracing::info!("device ingest and read over NATS running");
        accounts = Some(a);
    }
    let accounts_out = accounts.clone();
    let mut addr = None;
    if let Some(listen) = p.listen {
        let api_stats = Arc::new(ApiStats::default());
        let api = Arc::new(Api {
            ledger: ledger.clone(),
            views: p.views.clone(),
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
            views: p.views.clone(),
            view: "pg".into(),
            stats: proj_stats,
            max_lag: p.max_lag,
            api: Some(api_stats),
            anchor: anchor_stats,
        };
        let app = mnemo_api::http::app(api, health::router(h));
        let listener =
            mnemo_api::http::bind(listen).with_context(|| format!("listening on {listen}"))?;
        addr = Some(listener.local_addr()?);
        tracing::info!(listen = %listener.local_addr()?, "API up");
        // Small JSON answers: do not let Nagle hold them back waiting for an ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (sweeper, mut stop) = (ledger.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            sweep_failed_uploads(sweeper, &mut stop).await;
            Ok(())
        }));
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(
                listener,
                axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await?;
            Ok(())
        }));
    }
    Ok((addr, accounts_out, ledger))
}

/// How often the API's process sweeps chunks of failed uploads, and how old they must be.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
const SWEEP_GRACE: Duration = Duration::from_secs(3600);

/// Purges, hourly, the object chunks uploads that failed half-way left behind (see
/// `Ledger::sweep_orphan_chunks`), until `stop`.
async fn sweep_failed_uploads(ledger: Ledger, stop: &mut watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match ledger.sweep_orphan_chunks(SWEEP_GRACE).await {
            Ok(s) if s.objects > 0 => {
                tracing::info!(
                    objects = s.objects,
                    chunks = s.chunks,
                    "swept chunks of failed uploads"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping chunks of failed uploads"),
        }
    }
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
                    mnemo_api::nats::OperatorSetup::load(dir)?,
                    c.nats_url.clone(),
                )),
                None => None,
            };
            start(Parts {
                operator,
                client: c.connect().await?,
                ledger_cfg: ledger_cfg.clone(),
                views: crate::views(&database_url).await?,
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
    /// Where the stack keeps its state between runs: keys, the NATS store, the PostgreSQL
    /// cluster, anvil's chain. Delete it to start from nothing.
    #[arg(long, env = "MNEMO_DEV_DIR", default_value = ".mnemo")]
    dir: PathBuf,
    /// An EVM node to anchor on instead of starting anvil (deploys with `--anchor-key`).
    #[arg(long, env = "MNEMO_RPC_URL")]
    rpc_url: Option<String>,
    /// Key that deploys and anchors on `--rpc-url` (default: anvil's first dev account).
    #[arg(long, env = "MNEMO_ANCHOR_KEY", hide_env_values = true)]
    anchor_key: Option<String>,
}

/// The dev stack's secrets, made once and kept in `<dir>/secrets.json` (mode 0600).
#[derive(serde::Serialize, serde::Deserialize)]
struct DevSecrets {
    master_key: String,
    signing_key: String,
    jwt_key: String,
}

impl DevSecrets {
    fn load_or_create(path: &std::path::Path) -> anyhow::Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)?;
            return serde_json::from_str(&text).with_context(|| format!("{}", path.display()));
        }
        let s = Self {
            master_key: hex::encode(rand::random::<[u8; 32]>()),
            signing_key: hex::encode(rand::random::<[u8; 32]>()),
            jwt_key: hex::encode(rand::random::<[u8; 32]>()),
        };
        mnemo_api::nats::write_private(path, serde_json::to_string_pretty(&s)?.as_bytes())?;
        Ok(s)
    }

    fn seed(hex_text: &str) -> anyhow::Result<[u8; 32]> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut b).context("secrets.json: a key is not 64 hex")?;
        Ok(b)
    }
}

/// The anchor contract of the dev chain: the address kept in `<dir>/anchor-contract` when
/// the node still has code there, else a new deployment.
async fn dev_contract(
    dir: &std::path::Path,
    rpc: &str,
    key: &str,
) -> anyhow::Result<mnemo_core::Address> {
    let kept = dir.join("anchor-contract");
    let saved = std::fs::read_to_string(&kept).ok().and_then(|text| {
        let (id, addr) = text.trim().split_once(' ')?;
        Some((
            id.parse::<u64>().ok()?,
            addr.parse::<mnemo_core::Address>().ok()?,
        ))
    });
    let (chain_id, has_code) = mnemo_anchor::probe_contract(rpc, saved.map(|s| s.1)).await?;
    if let Some((id, addr)) = saved
        && id == chain_id
        && has_code
    {
        return Ok(addr);
    }
    let addr = mnemo_anchor::Chain::deploy(rpc, key).await?;
    std::fs::write(&kept, format!("{chain_id} {addr}\n"))?;
    Ok(addr)
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// `mnemo dev`: a whole local stack in one command. What it starts keeps its state in
/// `--dir` (`.mnemo/`), so a second run finds the same users, memories, chains and
/// anchors; a configured `DATABASE_URL`, `--rpc-url` or operator-mode NATS
/// (`MNEMO_NATS_DIR` with `MNEMO_NATS_URL`) is used instead of starting one.
pub async fn dev(c: &Config, a: DevArgs) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    // Traversable by the `postgres` user that runs PostgreSQL when mnemo runs as root;
    // the secrets inside are 0600.
    std::fs::set_permissions(&a.dir, std::fs::Permissions::from_mode(0o711))?;
    let dir = a.dir.canonicalize()?;
    let secrets = DevSecrets::load_or_create(&dir.join("secrets.json"))?;
    eprintln!("mnemo dev: state in {}", dir.display());
    let (setup, nats_dir, reuse_nats) = match &c.nats_dir {
        Some(d) => (mnemo_api::nats::OperatorSetup::load(d)?, d.clone(), true),
        None => {
            let d = dir.join("nats");
            let setup = if d.join("jwt").exists() {
                mnemo_api::nats::OperatorSetup::load(&d)?
            } else {
                let s = mnemo_api::nats::OperatorSetup::generate();
                s.write(&d)?;
                s
            };
            (setup, d, false)
        }
    };
    let operator_config = setup.server_config(&nats_dir.join("jwt"))?;
    let (start_pg, start_anvil) = (c.database_url.is_none(), a.rpc_url.is_none());
    let (nats_store, pg_dir, anvil_dir) =
        (dir.join("nats-server"), dir.join("pg"), dir.join("anvil"));
    eprintln!("mnemo dev: starting what is not configured (nats-server, PostgreSQL, anvil) ...");
    // Each server is stopped cleanly when dropped (its directory is kept), also when a
    // later step fails.
    let (nats, pg, anvil) = tokio::task::spawn_blocking(move || {
        let nats = (!reuse_nats)
            .then(|| {
                mnemo_devstack::NatsServer::start_in(
                    &nats_store,
                    mnemo_devstack::NatsOptions {
                        sync_always: true,
                        extra_config: operator_config,
                        ..Default::default()
                    },
                )
            })
            .transpose()?;
        let pg = start_pg
            .then(|| -> mnemo_devstack::Result<_> {
                let pg = mnemo_devstack::PgServer::start_in(&pg_dir, true)?;
                pg.ensure_database("mnemo")?;
                Ok(pg)
            })
            .transpose()?;
        let anvil = start_anvil
            .then(|| mnemo_devstack::Anvil::start_in(&anvil_dir))
            .transpose()?;
        Ok::<_, mnemo_devstack::DevstackError>((nats, pg, anvil))
    })
    .await??;
    let nats_url = match &nats {
        Some(n) => n.url(),
        None => c.nats_url.clone(),
    };
    let db = match (&pg, &c.database_url) {
        (Some(pg), _) => pg.url("mnemo"),
        (None, Some(url)) => url.clone(),
        (None, None) => anyhow::bail!("no PostgreSQL: none configured and none started"),
    };
    let rpc = match (&anvil, &a.rpc_url) {
        (Some(anvil), _) => anvil.url(),
        (None, Some(url)) => url.clone(),
        (None, None) => anyhow::bail!("no EVM node: none configured and none started"),
    };
    let anchor_key = a
        .anchor_key
        .clone()
        .unwrap_or_else(|| mnemo_devstack::DEV_KEY.into());
    let contract = dev_contract(&dir, &rpc, &anchor_key).await?;
    let jwt_seed = DevSecrets::seed(&secrets.jwt_key)?;
    let auth = Auth::new(&SigningKey::from_bytes(&jwt_seed), "mnemo", "mnemo-api");
    let client = async_nats::ConnectOptions::with_credentials(&setup.service_creds()?)?
        .connect(crate::server_addrs(&nats_url)?)
        .await?;
    let running = start(Parts {
        operator: Some((setup, nats_url.clone())),
        client,
        ledger_cfg: LedgerConfig::new(
            SecretKey::from_bytes(DevSecrets::seed(&secrets.master_key)?),
            SigningKey::from_bytes(&DevSecrets::seed(&secrets.signing_key)?),
        ),
        views: crate::views(&db).await?,
        auth: auth.clone(),
        listen: Some(
            a.listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        ),
        projector: true,
        anchor: Some((
            rpc.clone(),
            anchor_key,
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
    let first_run = running.ledger.head(&demo).await?.is_none();
    for u in [&demo, &friend] {
        if running.ledger.head(u).await?.is_none() {
            running.ledger.create_user(u).await?;
        }
        let accounts = running.accounts.as_ref().expect("operator mode");
        if !accounts.exists(u).await? {
            accounts.create(u).await?;
        }
    }
    let (_, demo_creds) = running
        .accounts
        .as_ref()
        .expect("operator mode")
        .issue_device(&demo, "demo-device", 24 * 3600)
        .await?;
    let creds_path = dir.join("demo-device.creds");
    mnemo_api::nats::write_private(&creds_path, demo_creds.as_bytes())?;
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
    for (kind, tag, text) in memories.into_iter().filter(|_| first_run) {
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
    println!(
        "mnemo dev is up (state kept in {}; delete it to start from nothing)",
        dir.display()
    );
    println!("  API          {url}   (OpenAPI: {url}/openapi.json, metrics: {url}/metrics)");
    println!(
        "  NATS         {} (operator mode; demo device creds: {})",
        nats_url,
        creds_path.display()
    );
    println!("  PostgreSQL   {db}");
    println!("  EVM node     {rpc} (MnemoAnchor at 0x{contract})");
    println!("  users        demo (3 memories), friend");
    println!("  demo token   {token}");
    println!("  friend token {friend_token}");
    println!("  admin token  {admin}");
    println!("try:");
    println!("curl -s -H 'Authorization: Bearer {token}' '{url}/v1/memories?tag=travel'");
    use std::io::Write;
    std::io::stdout().flush()?;
    wait_for_stop().await?;
    eprintln!("mnemo dev: stopping");
    running.stop().await?;
    // mnemo first, then the servers: PostgreSQL with a shutdown checkpoint, JetStream
    // flushed, anvil's state dumped.
    let (nats, pg, anvil) = (nats, pg, anvil);
    tokio::task::spawn_blocking(move || {
        let stopped = [
            pg.map(|mut p| ("PostgreSQL", p.stop())),
            nats.map(|mut n| ("nats-server", n.stop())),
            anvil.map(|mut a| ("anvil", a.stop())),
        ];
        for (what, clean) in stopped.into_iter().flatten() {
            if !clean {
                eprintln!("mnemo dev: {what} did not stop in time and was killed");
            }
        }
    })
    .await?;
    eprintln!("mnemo dev: stopped");
    Ok(())
}
