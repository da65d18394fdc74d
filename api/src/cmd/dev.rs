//! `mnemo dev`: a whole local stack in one command (nats-server, PostgreSQL, anvil, the
//! anchor contract, the server and a demo user), stopped cleanly on Ctrl-C or SIGTERM.

use anyhow::Context;
use mnemo_api::auth::Auth;
use mnemo_core::{SigningKey, UserId};
use mnemo_ledger::{NewMemory, SecretKey};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Config;

/// A line on stdout; a reader that went away (a closed pipe) is not an error of `mnemo dev`.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
use super::serve::*;

/// Options of `mnemo dev`.
#[derive(clap::Args)]
pub struct DevArgs {
    /// Address of the API (default: 127.0.0.1 on the port of the last start, or a free one
    /// the first time; the servers it starts keep their ports the same way).
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
    #[arg(long, env = "MNEMO_RPC_URL", hide_env_values = true)]
    rpc_url: Option<String>,
    /// Key that deploys and anchors on `--rpc-url` (default: anvil's first dev account).
    #[arg(long, env = "MNEMO_ANCHOR_KEY", hide_env_values = true)]
    anchor_key: Option<String>,
    /// An origin (`http://localhost:5173`, exactly) whose pages may call the dev API from
    /// a browser (CORS), as `mnemo serve --cors-origin`; repeatable, or comma-separated in
    /// the variable.
    #[arg(
        long = "cors-origin",
        env = "MNEMO_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
}

/// The dev stack's secrets, made once and kept in `<dir>/secrets.json` (mode 0600).
#[derive(serde::Serialize, serde::Deserialize)]
struct DevSecrets {
    master_key: String,
    signing_key: String,
    jwt_key: String,
    /// The PostgreSQL superuser's password (the dev cluster requires passwords).
    #[serde(default = "random_password")]
    pg_superuser_password: String,
    /// The password of role `mnemo`, which owns database `mnemo` and nothing else.
    #[serde(default = "random_password")]
    pg_password: String,
}

/// 32 random hex digits.
fn random_password() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl DevSecrets {
    fn load_or_create(path: &std::path::Path) -> anyhow::Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)?;
            let s: Self =
                serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
            // Secrets added since the file was written (defaults above) are kept from now on.
            mnemo_accounts::write_private(path, serde_json::to_string_pretty(&s)?.as_bytes())?;
            return Ok(s);
        }
        let s = Self {
            master_key: hex::encode(rand::random::<[u8; 32]>()),
            signing_key: hex::encode(rand::random::<[u8; 32]>()),
            jwt_key: hex::encode(rand::random::<[u8; 32]>()),
            pg_superuser_password: random_password(),
            pg_password: random_password(),
        };
        mnemo_accounts::write_private(path, serde_json::to_string_pretty(&s)?.as_bytes())?;
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
        Some(d) => (mnemo_accounts::OperatorSetup::load(d)?, d.clone(), true),
        None => {
            let d = dir.join("nats");
            let setup = if d.join("jwt").exists() {
                mnemo_accounts::OperatorSetup::load(&d)?
            } else {
                let s = mnemo_accounts::OperatorSetup::generate();
                s.write(&d)?;
                s
            };
            (setup, d, false)
        }
    };
    // Devices' leaf nodes connect here (docs/EDGE.md; plain on loopback, TLS in deploy).
    // Browsers connect over WebSocket (plain on loopback; TLS in docs/deploy).
    // The same ports from one start to the next (recorded in the state directory).
    let (leaf_port, ws_port) = (
        mnemo_devstack::stable_port(&dir.join("leaf.port"))?,
        mnemo_devstack::stable_port(&dir.join("websocket.port"))?,
    );
    let operator_config = format!(
        "{}\nleafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n\
         websocket {{ listen: \"127.0.0.1:{ws_port}\", no_tls: true }}\n",
        setup.server_config(&nats_dir.join("jwt"))?
    );
    let (start_pg, start_anvil) = (c.database_url.is_none(), a.rpc_url.is_none());
    let (nats_store, pg_dir, anvil_dir) =
        (dir.join("nats-server"), dir.join("pg"), dir.join("anvil"));
    eprintln!("mnemo dev: starting what is not configured (nats-server, PostgreSQL, anvil) ...");
    if !reuse_nats {
        eprintln!(
            "mnemo dev: device leaf nodes: nats-leaf://127.0.0.1:{leaf_port} (mnemo-edge init --hub ...; JetStream domain hub)"
        );
        eprintln!("mnemo dev: browsers: ws://127.0.0.1:{ws_port} (NATS over WebSocket)");
    }
    // Each server is stopped cleanly when dropped (its directory is kept), also when a
    // later step fails.
    let (pg_super, pg_password) = (
        secrets.pg_superuser_password.clone(),
        secrets.pg_password.clone(),
    );
    let (nats, pg, anvil) = tokio::task::spawn_blocking(move || {
        let nats = (!reuse_nats)
            .then(|| {
                mnemo_devstack::NatsServer::start_in(
                    &nats_store,
                    mnemo_devstack::NatsOptions {
                        sync_always: true,
                        extra_config: operator_config,
                        jetstream_domain: Some("hub".into()),
                    },
                )
            })
            .transpose()?;
        let pg = start_pg
            .then(|| -> mnemo_devstack::Result<_> {
                // Passwords for every connection; mnemo connects as role `mnemo`, which owns
                // its database and has no administrative rights.
                let pg = mnemo_devstack::PgServer::start_in_secured(&pg_dir, true, &pg_super)?;
                pg.ensure_owner_role("mnemo", "mnemo", &pg_password)?;
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
        (Some(pg), _) => pg.url_as("mnemo", "mnemo", &secrets.pg_password),
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
    // Every global option holds here as in `mnemo serve` (layout, shards, format version,
    // replicas), with the dev stack's own keys.
    let ledger_cfg = c.ledger_config_with(
        SecretKey::from_bytes(DevSecrets::seed(&secrets.master_key)?),
        SigningKey::from_bytes(&DevSecrets::seed(&secrets.signing_key)?),
    )?;
    eprintln!(
        "mnemo dev: layout {}, format version {}, {} replica(s)",
        match ledger_cfg.layout {
            mnemo_core::names::Layout::PerUser => "per-user".to_owned(),
            mnemo_core::names::Layout::Sharded { shards } => format!("sharded ({shards} shards)"),
        },
        ledger_cfg.format,
        ledger_cfg.replicas
    );
    // Every mnemo command's settings for this stack, in one file another shell sources
    // (`set -a; . .mnemo/env; set +a`) instead of copying keys out of secrets.json.
    let layout = match ledger_cfg.layout {
        mnemo_core::names::Layout::PerUser => "MNEMO_LAYOUT=per-user\n".to_owned(),
        mnemo_core::names::Layout::Sharded { shards } => {
            format!("MNEMO_LAYOUT=sharded\nMNEMO_SHARDS={shards}\n")
        }
    };
    let env = format!(
        "# mnemo dev's settings for the mnemo commands (secrets: keep this file private).\n\
         MNEMO_NATS_URL={nats_url}\nMNEMO_NATS_DIR={}\nDATABASE_URL={db}\n\
         MNEMO_MASTER_KEY={}\nMNEMO_SIGNING_KEY={}\nMNEMO_JWT_KEY={}\n\
         MNEMO_RPC_URL={rpc}\nMNEMO_ANCHOR_CONTRACT=0x{contract}\n{layout}",
        nats_dir.display(),
        secrets.master_key,
        secrets.signing_key,
        secrets.jwt_key,
    );
    mnemo_accounts::write_private(&dir.join("env"), env.as_bytes())?;
    let client = async_nats::ConnectOptions::with_credentials(&setup.service_creds()?)?
        .connect(super::server_addrs(&nats_url)?)
        .await?;
    let running = start(Parts {
        operator: Some((setup, nats_url.clone())),
        client,
        ledger_cfg: ledger_cfg.clone(),
        views: super::views(&db).await?,
        auth: auth.clone(),
        listen: Some(match a.listen {
            Some(l) => l,
            None => SocketAddr::from((
                [127, 0, 0, 1],
                mnemo_devstack::stable_port(&dir.join("api.port"))?,
            )),
        }),
        projector: true,
        processing: true,
        dispatch: Default::default(),
        anchor: Some((
            rpc.clone(),
            anchor_key,
            contract,
            Duration::from_secs(a.anchor_interval),
        )),
        max_upload: 64 << 20,
        max_lag: 1000,
        cors_origins: a.cors_origins.clone(),
        capture: mnemo_gateway::CaptureConfig::default(),
        console_dir: super::serve::built_console(),
        secure_cookies: false,
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
    mnemo_accounts::write_private(&creds_path, demo_creds.as_bytes())?;
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
    // The processing demo: a speech clip, its transcript (the Python ASR worker) and a
    // search model (the trainer), the workers supervised.
    let audio_file = dir.join("demo-audio.id");
    let audio = match std::fs::read_to_string(&audio_file) {
        Ok(id) => mnemo_core::MemoryId::from_hex(id.trim())?,
        Err(_) => {
            let r = running
                .ledger
                .append(
                    &demo,
                    NewMemory {
                        kind: "audio".into(),
                        tags: vec!["voice".into()],
                        content_type: "audio/wav".into(),
                        content: super::dev_workers::DEMO_AUDIO.to_vec().into(),
                        source: Some("mnemo dev (LibriVox, public domain)".into()),
                        idempotency_key: Some("mnemo-dev-demo-audio".into()),
                        ..Default::default()
                    },
                )
                .await?;
            let id = r.memory.context("an audio memory's receipt names it")?;
            std::fs::write(&audio_file, id.to_string())?;
            id
        }
    };
    let mut workers = super::dev_workers::start(&running, &auth, &dir, &demo, &nats_url).await?;
    let lineage =
        super::dev_workers::summary(&running, &demo, &audio, Duration::from_secs(90)).await?;
    let addr = running.addr.expect("API on");
    let url = format!("http://{addr}");
    let token = auth.issue("demo", false, 24 * 3600);
    let friend_token = auth.issue("friend", false, 24 * 3600);
    let admin = auth.issue("admin", true, 24 * 3600);
    say!(
        "mnemo dev is up (state kept in {}; delete it to start from nothing)",
        dir.display()
    );
    say!("  API          {url}   (OpenAPI: {url}/openapi.json, metrics: {url}/metrics)");
    say!(
        "  NATS         {} (operator mode; demo device creds: {})",
        nats_url,
        creds_path.display()
    );
    say!(
        "  PostgreSQL   {} (passwords in {})",
        redact_password(&db),
        dir.join("secrets.json").display()
    );
    say!("  EVM node     {rpc} (MnemoAnchor at 0x{contract})");
    say!(
        "  settings     {} (every mnemo command's variables: set -a; . {}; set +a)",
        dir.join("env").display(),
        dir.join("env").display()
    );
    say!("  users        demo (3 texts and a speech clip), friend");
    say!(
        "  workers      asr (Python, PocketSphinx) and trainer (BM25), restarted when they exit; logs in {}",
        dir.join("workers").display()
    );
    for l in &lineage {
        say!("  {l}");
    }
    if super::serve::built_console().is_some() {
        say!("console (sign in as demo): {url}/console/#/signin?token={token}");
    }
    say!("  demo token   {token}");
    say!("  friend token {friend_token}");
    say!("  admin token  {admin}");
    say!("try:");
    say!("curl -s -H 'Authorization: Bearer {token}' '{url}/v1/memories?tag=travel'");
    say!("curl -s -H 'Authorization: Bearer {token}' '{url}/v1/models/latest/query?q=young+man'");
    say!("curl -s -H 'Authorization: Bearer {token}' '{url}/v1/memories/{audio}/lineage'");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    wait_for_stop().await?;
    eprintln!("mnemo dev: stopping");
    tokio::task::spawn_blocking(move || workers.iter_mut().for_each(|w| w.stop())).await?;
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

/// `scheme://user:password@host/...` with the password replaced by `***`.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            super::redact_password("postgres://mnemo:s3cret@127.0.0.1:5/mnemo"),
            "postgres://mnemo:***@127.0.0.1:5/mnemo"
        );
        assert_eq!(
            super::redact_password("postgres://127.0.0.1/x"),
            "postgres://127.0.0.1/x"
        );
    }
}
