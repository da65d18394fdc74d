//! # mnemo-gateway
//!
//! The device gateway: what a device's NATS requests reach, served with credentials that
//! cannot publish on mnemo's own subjects. Each device is a user of its owner's NATS
//! account ([`mnemo_accounts`]), so the sender of every message is known from the account
//! the server stamps on it, never from what the message says.
//!
//! - [`requests`]: the device subjects `mnemo.ingest` and `mnemo.read` (request/reply, with
//!   the NATS services error shape).
//! - [`capture`]: durable capture on `mnemo.capture` (the relay that answers a JetStream
//!   publisher with the ingest stream's PubAck, and the drainer into the chains).
//! - [`upload`]: large media sent in chunks on `mnemo.ingest`, one memory at the end.
//! - [`lanes`]: one account's messages handled in arrival order.
//! - [`rejects`]: refused messages that had no reply subject, kept per user.
//! - [`metrics`]: the requests' duration histogram.
//! - [`error`]: the error enum, [`GatewayError`].

pub mod capture;
pub mod error;
pub mod lanes;
pub mod metrics;
pub mod rejects;
pub mod requests;
pub mod upload;

pub use capture::CaptureConfig;
pub use error::GatewayError;
pub use rejects::Rejects;
pub use requests::serve_devices;

use mnemo_accounts::Accounts;

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
) -> Result<tokio::task::JoinHandle<Result<(), GatewayError>>, GatewayError> {
    use mnemo_core::names::{CAPTURE_PREFIX, INGEST_PREFIX, READ_PREFIX};
    let js = async_nats::jetstream::new(client.clone());
    let rejects = Rejects::open(js.clone()).await?;
    capture::open_stream(&js, cfg).await?;
    let ingest = requests::subscribe(&responder, INGEST_PREFIX).await?;
    let read = requests::subscribe(&responder, READ_PREFIX).await?;
    let captures = requests::subscribe(&responder, CAPTURE_PREFIX).await?;
    responder
        .flush()
        .await
        .map_err(|e| GatewayError::nats("subscribing to the device subjects", e))?;
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
) -> Result<(), GatewayError> {
    start_device_services(client, responder, ledger, accounts, cfg, stop)
        .await?
        .await
        .map_err(|e| GatewayError::Stopped(e.to_string()))?
}
