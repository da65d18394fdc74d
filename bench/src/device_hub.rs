//! The hub the device benchmarks (`upload`, `forward`) run against: one operator-mode
//! nats-server, a ledger and the NATS accounts on the service identity, and the device
//! services (`mnemo.ingest`, `mnemo.read`, `mnemo.capture`) on the responder identity, in
//! this process.

use mnemo_accounts::{Accounts, OperatorSetup};
use mnemo_core::SigningKey;
use mnemo_gateway::CaptureConfig;
use mnemo_ledger::{Ledger, LedgerConfig, SecretKey};
use mnemo_testkit::{NatsOptions, NatsServer};

/// A running hub; its servers and services stop when it is dropped.
pub struct DeviceHub {
    pub server: NatsServer,
    pub js: async_nats::jetstream::Context,
    pub ledger: Ledger,
    pub accounts: Accounts,
    _jwt: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl DeviceHub {
    /// Starts the hub with `extra` lines of server configuration (a leafnode listener) and
    /// JetStream domain `domain`.
    pub async fn start(extra: &str, domain: Option<&str>) -> anyhow::Result<Self> {
        let setup = OperatorSetup::generate();
        let jwt = tempfile::tempdir()?;
        let server = NatsServer::start_with(NatsOptions {
            extra_config: format!("{}\n{extra}", setup.server_config(jwt.path())?),
            jetstream_domain: domain.map(str::to_owned),
            ..Default::default()
        });
        let connect = async |creds: String| -> anyhow::Result<async_nats::Client> {
            Ok(async_nats::ConnectOptions::with_credentials(&creds)?
                .connect(server.url())
                .await?)
        };
        let sys = connect(setup.system_creds()?).await?;
        let service = connect(setup.service_creds()?).await?;
        let responder = connect(setup.responder_creds()?).await?;
        let js = async_nats::jetstream::new(service.clone());
        let ledger = Ledger::connect(
            service.clone(),
            LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[3; 32])),
        )
        .await?;
        let accounts = Accounts::open(
            &js,
            sys,
            nkeys::KeyPair::from_seed(&setup.signing.seed()?)?,
            setup.service.public_key(),
            SecretKey::random(),
            1,
        )
        .await?;
        let (stop, rx) = tokio::sync::watch::channel(false);
        mnemo_gateway::start_device_services(
            service.clone(),
            responder,
            ledger.clone(),
            accounts.clone(),
            CaptureConfig::default(),
            rx,
        )
        .await?;
        Ok(Self {
            server,
            js,
            ledger,
            accounts,
            _jwt: jwt,
            _stop: stop,
        })
    }

    /// A client with `creds` (a device's).
    pub async fn connect(&self, creds: &str) -> anyhow::Result<async_nats::Client> {
        Ok(async_nats::ConnectOptions::with_credentials(creds)?
            .connect(self.server.url())
            .await?)
    }
}
