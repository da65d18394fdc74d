//! What the edge and console tests share: an operator-mode hub (nats-server 2.15.1 with
//! leafnode and WebSocket listeners, the device services) and the REST API on a real port.

#![allow(dead_code)]

pub mod devices;

use async_nats::{ConnectOptions, Event};
use mnemo_accounts::{Accounts, OperatorSetup};
use mnemo_core::SigningKey;
use mnemo_gateway::CaptureConfig;
use mnemo_ledger::{Ledger, LedgerConfig, SecretKey};
use mnemo_testkit::{NatsOptions, NatsServer, free_port};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The hub's duplicate window, short enough to be passed in the test.
pub const WINDOW: Duration = Duration::from_millis(1000);

pub struct Hub {
    pub server: NatsServer,
    pub service: async_nats::Client,
    pub setup: OperatorSetup,
    pub ws_port: u16,
    pub accounts: Accounts,
    pub ledger: Ledger,
    pub leaf_port: u16,
    /// The full resolver's directory (one JWT file per account).
    pub jwt_dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

pub async fn hub() -> Hub {
    let setup = OperatorSetup::generate();
    let jwt = tempfile::tempdir().unwrap();
    let (leaf_port, ws_port) = (free_port(), free_port());
    let server = NatsServer::start_with(NatsOptions {
        extra_config: format!(
            "{}\nleafnodes {{ listen: \"127.0.0.1:{leaf_port}\" }}\n\
             websocket {{ listen: \"127.0.0.1:{ws_port}\", no_tls: true }}\n",
            setup.server_config(jwt.path()).unwrap()
        ),
        jetstream_domain: Some("hub".into()),
        ..Default::default()
    });
    let sys = ConnectOptions::with_credentials(&setup.system_creds().unwrap())
        .unwrap()
        .connect(server.url())
        .await
        .unwrap();
    let service = ConnectOptions::with_credentials(&setup.service_creds().unwrap())
        .unwrap()
        .connect(server.url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(service.clone());
    let ledger = Ledger::connect(
        service.clone(),
        LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[6; 32])),
    )
    .await
    .unwrap();
    let accounts = Accounts::open(
        &js,
        sys,
        nkeys::KeyPair::from_seed(&setup.signing.seed().unwrap()).unwrap(),
        setup.service.public_key(),
        SecretKey::random(),
        1,
    )
    .await
    .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let responder = ConnectOptions::with_credentials(&setup.responder_creds().unwrap())
        .unwrap()
        .connect(server.url())
        .await
        .unwrap();
    mnemo_gateway::start_device_services(
        service.clone(),
        responder,
        ledger.clone(),
        accounts.clone(),
        CaptureConfig {
            duplicate_window: WINDOW,
            max_upload: 24 << 20,
            ..Default::default()
        },
        rx,
    )
    .await
    .unwrap();
    Hub {
        server,
        service,
        setup,
        ws_port,
        accounts,
        ledger,
        leaf_port,
        jwt_dir: jwt,
        _stop: stop,
    }
}

/// The REST API on a real port, with the views it reads and their projector.
pub struct Rest {
    pub url: String,
    pub auth: mnemo_api::auth::Auth,
    _views: mnemo_testkit::PgViews,
    _projector: mnemo_testkit::RunningProjector,
}

impl Rest {
    pub async fn start(h: &Hub, cors_origins: Vec<String>) -> Self {
        Self::with(
            h,
            mnemo_api::http::ApiConfig {
                cors_origins,
                ..Default::default()
            },
        )
        .await
    }

    /// With this API configuration.
    pub async fn with(h: &Hub, cfg: mnemo_api::http::ApiConfig) -> Self {
        let views = mnemo_testkit::PgViews::start().await;
        let js = async_nats::jetstream::new(h.service.clone());
        let projector = views.project(&js, &h.ledger);
        let auth =
            mnemo_api::auth::Auth::new(&SigningKey::from_bytes(&[7; 32]), "mnemo", "mnemo-api");
        let router = mnemo_api::http::router(Arc::new(mnemo_api::http::Api {
            ledger: h.ledger.clone(),
            views: mnemo_projections::Views::from_pool(views.pool.clone()),
            js: js.clone(),
            auth: auth.clone(),
            cfg,
            stats: Default::default(),
            accounts: Some(h.accounts.clone()),
            processing: mnemo_processing::Processing::open(h.ledger.clone(), js)
                .await
                .unwrap(),
            sessions: Default::default(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(mnemo_api::http::serve(
            listener,
            router,
            std::future::pending(),
        ));
        Self {
            url,
            auth,
            _views: views,
            _projector: projector,
        }
    }
}

/// A device connection whose server errors (permission violations) arrive on a channel.
pub async fn device(
    url: &str,
    creds: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let c = ConnectOptions::with_credentials(creds)
        .unwrap()
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(err) = e {
                    let _ = tx.send(err.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap();
    (c, rx)
}

/// Waits for the server's permission error naming `what`.
pub async fn denied(errors: &mut mpsc::UnboundedReceiver<String>, what: &str) {
    let e = tokio::time::timeout(Duration::from_secs(10), errors.recv())
        .await
        .unwrap_or_else(|_| panic!("no server error for {what}"))
        .unwrap();
    println!("server said: {e}");
    let e = e.to_lowercase();
    assert!(
        e.contains("permissions violation") && e.contains(&what.to_lowercase()),
        "{what}: {e}"
    );
}
