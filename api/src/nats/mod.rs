//! Every user is a NATS account (decentralized JWT auth, operator mode).
//!
//! - [`claims`]: the JWT claims (operator, account, user) as typed structs, and signing.
//! - [`operator`]: [`OperatorSetup`], the operator (with a signing key), the system account
//!   and the mnemo service account, their credentials and the server configuration
//!   (`mnemo nats init`).
//! - [`accounts`]: [`Accounts`], one account per user with a scoped signing key, device
//!   credentials and their revocation.
//! - [`gateway`]: the device subjects `mnemo.ingest` and `mnemo.read` (request/reply, with
//!   the NATS services error shape).
//! - [`capture`]: durable capture on `mnemo.capture` (the relay that answers a JetStream
//!   publisher with the ingest stream's PubAck, and the drainer into the chains).
//! - [`processors`]: one account per processor, with imports both ways and its
//!   credentials and revocation.
//! - [`lanes`]: one account's messages handled in arrival order.
//! - [`upload`]: large media sent in chunks on `mnemo.ingest`, one memory at the end.
//! - [`rejects`]: refused messages that had no reply subject, kept per user.
//! - [`error`]: the error enum, [`NatsAuthError`].
//!
//! The claim facts this relies on are in `docs/nats.md`.

pub mod accounts;
pub mod capture;
pub mod claims;
pub mod error;
pub mod gateway;
pub mod lanes;
pub mod metrics;
pub mod operator;
pub mod processors;
pub mod rejects;
pub mod upload;

pub use accounts::{Accounts, UserAccount, device_creds, push_account, user_account_jwt};
pub use capture::CaptureConfig;
pub use error::NatsAuthError;
pub use gateway::serve_devices;
pub use operator::{OperatorSetup, write_private};
pub use rejects::Rejects;

/// Starts every device service: `mnemo.ingest` and `mnemo.read` (the gateway), the
/// `mnemo.capture` relay and the drainer of the ingest stream. Returns once their
/// subscriptions are in place at the server (a device's request from then on is served),
/// with the task that runs them until `stop`.
///
/// `client` is the ledger's connection (the ingest stream, the rejects); `responder`
/// receives the requests and answers them, with credentials that cannot publish on
/// mnemo's own subjects (`User::responder`; in a server without accounts, any client).
pub async fn start_device_services(
    client: async_nats::Client,
    responder: async_nats::Client,
    ledger: mnemo_ledger::Ledger,
    accounts: Accounts,
    cfg: CaptureConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Result<(), NatsAuthError>>, NatsAuthError> {
    use mnemo_core::names::{CAPTURE_PREFIX, INGEST_PREFIX, READ_PREFIX};
    let js = async_nats::jetstream::new(client.clone());
    let rejects = Rejects::open(js.clone()).await?;
    capture::open_stream(&js, cfg).await?;
    let ingest = gateway::subscribe(&responder, INGEST_PREFIX).await?;
    let read = gateway::subscribe(&responder, READ_PREFIX).await?;
    let captures = gateway::subscribe(&responder, CAPTURE_PREFIX).await?;
    responder
        .flush()
        .await
        .map_err(|e| NatsAuthError::nats("subscribing to the device subjects", e))?;
    Ok(tokio::spawn(async move {
        tokio::try_join!(
            serve_devices(
                responder.clone(),
                ledger.clone(),
                accounts.clone(),
                rejects.clone(),
                upload::Uploads::new(cfg.max_upload),
                (ingest, read),
                stop.clone()
            ),
            capture::serve_relay(
                responder,
                js.clone(),
                accounts,
                rejects.clone(),
                cfg,
                captures,
                stop.clone()
            ),
            capture::drain(js, ledger, rejects, cfg, stop),
        )?;
        Ok(())
    }))
}

/// [`start_device_services`], then runs them until `stop`.
pub async fn serve_device_services(
    client: async_nats::Client,
    responder: async_nats::Client,
    ledger: mnemo_ledger::Ledger,
    accounts: Accounts,
    cfg: CaptureConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), NatsAuthError> {
    start_device_services(client, responder, ledger, accounts, cfg, stop)
        .await?
        .await
        .map_err(|e| NatsAuthError::Corrupt(format!("the device services stopped: {e}")))?
}
