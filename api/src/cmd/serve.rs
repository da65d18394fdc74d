//! `mnemo serve`: the REST API, the projector, the anchorer and the device gateway in one
//! process (each can be switched off), and the parts `mnemo dev` starts the same way.

use anyhow::Context;
use mnemo_api::auth::{Auth, ExternalIssuer};
use mnemo_api::health;
use mnemo_api::http::{Api, ApiConfig, ApiStats};
use mnemo_core::SigningKey;
use mnemo_ledger::{Ledger, LedgerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Config;

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
    /// Do not run processing (the planner, the dispatcher, the processors' NATS endpoints).
    #[arg(long)]
    no_processing: bool,
    /// Seconds a worker has for one task before it is redelivered.
    #[arg(long, env = "MNEMO_TASK_TIMEOUT", default_value_t = 60)]
    task_timeout: u64,
    /// Deliveries before a task goes to the dead letters.
    #[arg(long, env = "MNEMO_MAX_TASK_FAILURES", default_value_t = 5)]
    max_task_failures: u64,
    /// Tasks of one processor out to its workers at once.
    #[arg(long, env = "MNEMO_MAX_TASKS_IN_FLIGHT", default_value_t = 64)]
    max_tasks_in_flight: usize,
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
    #[arg(long, env = "MNEMO_RPC_URL", hide_env_values = true)]
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
    /// An origin (`https://app.example`, exactly) whose pages may call the API from a
    /// browser (CORS); repeatable, or comma-separated in the variable. None by default.
    #[arg(
        long = "cors-origin",
        env = "MNEMO_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
    /// The ingest stream's duplicate window, in ms: a JetStream retry within it gets a
    /// PubAck marked `duplicate`. Captures are deduplicated for good by their capture id
    /// whatever this is (docs/decisions/0014-edge-capture.md).
    #[arg(
        long,
        env = "MNEMO_CAPTURE_DUPLICATE_WINDOW_MS",
        default_value_t = 120_000
    )]
    capture_duplicate_window_ms: u64,
    /// The built console (`console/dist`, `scripts/setup.sh` builds it), served at
    /// `/console`. Default: the source tree's, when it is built.
    #[arg(long, env = "MNEMO_CONSOLE_DIR")]
    console_dir: Option<PathBuf>,
    /// Mark the console's session cookie `Secure` (the API is served behind TLS).
    #[arg(long, env = "MNEMO_SECURE_COOKIES")]
    secure_cookies: bool,
}

/// The console the source tree built, when there is one.
pub(super) fn built_console() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../console/dist"));
    dir.join("index.html").exists().then_some(dir)
}

/// What a running stack is made of.
pub(super) struct Parts {
    pub(super) client: async_nats::Client,
    pub(super) ledger_cfg: LedgerConfig,
    pub(super) views: mnemo_projections::Views,
    pub(super) auth: Auth,
    pub(super) listen: Option<SocketAddr>,
    pub(super) projector: bool,
    pub(super) anchor: Option<(String, String, mnemo_core::Address, Duration)>,
    pub(super) max_upload: usize,
    pub(super) max_lag: u64,
    /// Origins allowed by CORS.
    pub(super) cors_origins: Vec<String>,
    /// The durable capture path's settings.
    pub(super) capture: mnemo_gateway::CaptureConfig,
    /// The built console, served at `/console`.
    pub(super) console_dir: Option<PathBuf>,
    /// Session cookies are `Secure`.
    pub(super) secure_cookies: bool,
    /// Operator mode: the setup (`mnemo nats init`) and the server URL.
    pub(super) operator: Option<(mnemo_accounts::OperatorSetup, String)>,
    /// Whether to run the planner, the dispatcher and the processors' NATS endpoints.
    pub(super) processing: bool,
    /// How tasks are handed to workers.
    pub(super) dispatch: mnemo_processing::DispatchConfig,
}

/// Running services; `stop` ends them.
pub(super) struct Running {
    pub(super) addr: Option<SocketAddr>,
    pub(super) accounts: Option<mnemo_accounts::Accounts>,
    pub(super) ledger: Ledger,
    pub(super) processing: mnemo_processing::Processing,
    pub(super) stop: watch::Sender<bool>,
    pub(super) tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    pub(super) async fn stop(self) -> anyhow::Result<()> {
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
pub(super) async fn start(p: Parts) -> anyhow::Result<Running> {
    let (stop, rx) = watch::channel(false);
    let mut tasks: Vec<JoinHandle<anyhow::Result<()>>> = Vec::new();
    match start_services(p, rx, &mut tasks).await {
        Ok((addr, accounts, ledger, processing)) => Ok(Running {
            accounts,
            addr,
            ledger,
            processing,
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
    Option<mnemo_accounts::Accounts>,
    Ledger,
    mnemo_processing::Processing,
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
    let mut dispatch_stats = None;
    // Requests are received and answered on a connection of their own, which cannot
    // publish on mnemo's subjects (operator mode: `User::responder`).
    let mut responder = p.client.clone();
    if let Some((setup, url)) = &p.operator {
        responder = async_nats::ConnectOptions::with_credentials(&setup.responder_creds()?)?
            .name("mnemo-responder")
            .retry_on_initial_connect()
            .connect(super::server_addrs(url)?)
            .await
            .context("connecting the responder")?;
    }
    if let Some((setup, url)) = p.operator {
        let a = mnemo_accounts::Accounts::for_setup(
            &setup,
            super::server_addrs(&url)?,
            &js,
            ledger_master.clone(),
            replicas,
        )
        .await?;
        let (client, resp, ledger, gateway, r, cfg) = (
            p.client.clone(),
            responder.clone(),
            ledger.clone(),
            a.clone(),
            rx.clone(),
            p.capture,
        );
        tasks.push(tokio::spawn(async move {
            Ok(mnemo_gateway::serve_device_services(client, resp, ledger, gateway, cfg, r).await?)
        }));
        tracing::info!("device ingest, capture and read over NATS running");
        accounts = Some(a);
    }
    let processing = mnemo_processing::Processing::open(ledger.clone(), js.clone()).await?;
    if let Some(a) = &accounts {
        // Every processor's NATS account is pushed again, so revoked processors'
        // credentials stay refused across restarts.
        mnemo_api::sync_processor_accounts(a, &processing.registry).await?;
    }
    if p.processing {
        let planner = mnemo_processing::Planner::new(
            ledger.clone(),
            js.clone(),
            processing.registry.clone(),
            Duration::from_secs(30),
        )
        .await?;
        let (client, r) = (p.client.clone(), rx.clone());
        tasks.push(tokio::spawn(
            async move { Ok(planner.run(client, r).await?) },
        ));
        let d = mnemo_processing::Dispatcher::new(
            p.client.clone(),
            ledger.clone(),
            processing.registry.clone(),
            p.dispatch.clone(),
        );
        dispatch_stats = Some(d.stats.clone());
        let r = rx.clone();
        tasks.push(tokio::spawn(async move { Ok(d.run(r).await?) }));
        let auth = p.auth.clone();
        let check: mnemo_processing::responder::TokenCheck =
            Arc::new(move |t: &str| match auth.check(t) {
                Ok(mnemo_api::auth::Principal::Processor(name)) => Some(name),
                _ => None,
            });
        let (client, pr, r) = (responder.clone(), processing.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            Ok(mnemo_processing::responder::serve(client, pr, check, r).await?)
        }));
        tracing::info!("processing (planner, dispatcher, processor endpoints) running");
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
                cors_origins: p.cors_origins.clone(),
                console_dir: p.console_dir.clone(),
                secure_cookies: p.secure_cookies,
                ..Default::default()
            },
            stats: api_stats.clone(),
            accounts: accounts.clone(),
            processing: processing.clone(),
            sessions: Default::default(),
        });
        let h = health::Health {
            js,
            views: p.views.clone(),
            view: "pg".into(),
            stats: proj_stats,
            max_lag: p.max_lag,
            api: Some(api_stats),
            anchor: anchor_stats,
            tasks: dispatch_stats,
            role: health::Role::Api,
        };
        let app = mnemo_api::http::app(api, health::router(h));
        let listener =
            mnemo_api::http::bind(listen).with_context(|| format!("listening on {listen}"))?;
        addr = Some(listener.local_addr()?);
        tracing::info!(listen = %listener.local_addr()?, "API up");
        let (sweeper, mut stop) = (ledger.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            sweep_failed_uploads(sweeper, &mut stop).await;
            Ok(())
        }));
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            mnemo_api::http::serve(listener, app, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
            Ok(())
        }));
    }
    Ok((addr, accounts_out, ledger, processing))
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
                    mnemo_accounts::OperatorSetup::load(dir)?,
                    c.nats_url.clone(),
                )),
                None => None,
            };
            start(Parts {
                operator,
                client: c.connect().await?,
                ledger_cfg: ledger_cfg.clone(),
                views: super::views(&database_url).await?,
                auth: auth.clone(),
                listen: (!a.no_api).then_some(a.listen),
                projector: !a.no_projector,
                processing: !a.no_processing,
                dispatch: mnemo_processing::DispatchConfig {
                    task_timeout: Duration::from_secs(a.task_timeout),
                    max_failures: a.max_task_failures,
                    max_in_flight: a.max_tasks_in_flight.max(1),
                    ..Default::default()
                },
                anchor: anchor.clone(),
                max_upload: a.max_upload,
                max_lag: a.max_lag,
                cors_origins: a.cors_origins.clone(),
                capture: mnemo_gateway::CaptureConfig {
                    duplicate_window: Duration::from_millis(a.capture_duplicate_window_ms.max(1)),
                    max_upload: a.max_upload,
                    ..Default::default()
                },
                console_dir: a.console_dir.clone().or_else(built_console),
                secure_cookies: a.secure_cookies,
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
