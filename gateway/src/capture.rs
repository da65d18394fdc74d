//! Durable capture: `mnemo.capture` answers a JetStream publisher with a real PubAck from
//! the ingest stream, and the drainer appends what the stream holds to the chains
//! (docs/decisions/0014-edge-capture.md).
//!
//! - The **relay** (queue group `mnemo`, in the gateway) receives a device's publish on
//!   `mnemo.capture.<account key>`, refuses what it can tell is bad at once (a JetStream
//!   error reply, which clients raise), and stores the rest in `MNEMO-INGEST` under
//!   `mnemo.queue.<user>` with the message id `<user>:<Nats-Msg-Id>:<content hash>`:
//!   JetStream's deduplication is per stream, so the user in the id keeps one user's id
//!   from ever suppressing another's, and the content hash keeps a reused id with other
//!   content from being dropped as a duplicate. The stream's own PubAck goes back.
//! - The **drainer** takes the stream in order (a work queue, one durable consumer) and
//!   appends each capture through [`requests::ingest`]. Its capture id is kept in the chain
//!   for good, so a message stored twice (a retry after the stream's duplicate window, a
//!   redelivery after a crash) is appended once. A capture the chain refuses is recorded
//!   in the user's rejects (`mnemo.read {"rejects": true}`) and taken off the queue;
//!   anything retryable stays in the queue.

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures::StreamExt;
use mnemo_core::UserId;
use mnemo_core::names::{CAPTURE_PREFIX, INGEST_STREAM};
use mnemo_core::replies::{Requester, check_reply};
use mnemo_ledger::Ledger;
use serde_json::json;
use std::time::Duration;

use crate::error::{GatewayError, Result};
use crate::rejects::Rejects;
use crate::requests::{self, IngestRequest};
use mnemo_accounts::Accounts;
use mnemo_wire::Problem;

/// Subjects of the stored captures: `mnemo.queue.<user>`.
pub const QUEUE_PREFIX: &str = "mnemo.queue";

/// The drainer's durable consumer.
const DRAINER: &str = "mnemo-drainer";

/// The header that carries the device's own message id through the stream.
pub const DEVICE_MSG_ID: &str = "Mnemo-Msg-Id";

/// The ingest stream's settings.
#[derive(Clone, Copy, Debug)]
pub struct CaptureConfig {
    /// The stream's duplicate window (a retry within it gets a PubAck with `duplicate`).
    pub duplicate_window: Duration,
    /// Largest capture message accepted, in bytes.
    pub max_message: usize,
    /// Largest chunked upload (`mnemo.ingest` with `Mnemo-Upload`), in bytes.
    pub max_upload: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(120),
            max_message: 1024 * 1024,
            max_upload: 64 << 20,
        }
    }
}

/// Opens (creating if needed) the ingest stream.
pub async fn open_stream(js: &jetstream::Context, cfg: CaptureConfig) -> Result<stream::Stream> {
    Ok(mnemo_ledger::provision::ensure_stream(
        js,
        stream::Config {
            name: INGEST_STREAM.into(),
            subjects: vec![format!("{QUEUE_PREFIX}.*")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: cfg.duplicate_window,
            max_message_size: cfg.max_message as i32 + 4096,
            ..Default::default()
        },
    )
    .await?)
}

/// A JetStream API error reply (what a JetStream client raises as an API error).
fn js_error(p: &Problem) -> bytes::Bytes {
    json!({
        "type": "io.nats.jetstream.api.v1.pub_ack_response",
        "error": { "code": p.status.as_u16(), "err_code": 10000 + p.status.as_u16(), "description": p.detail },
    })
    .to_string()
    .into()
}

/// Serves `mnemo.capture.*` (subscribed beforehand) until `stop`: stores each capture in the ingest stream and
/// answers with the stream's PubAck.
pub async fn serve_relay(
    client: async_nats::Client,
    js: jetstream::Context,
    accounts: Accounts,
    rejects: Rejects,
    cfg: CaptureConfig,
    mut sub: async_nats::Subscriber,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let lanes = crate::lanes::Lanes::default();
    loop {
        let msg = tokio::select! {
            Some(m) = sub.next() => m,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let (client, js, accounts, rejects) = (
            client.clone(),
            js.clone(),
            accounts.clone(),
            rejects.clone(),
        );
        // One account's captures are stored in the order they arrived, so the drainer
        // (which appends in stream order) keeps a pipelining device's order.
        let lane = msg.subject.to_string();
        lanes.run(&lane, async move {
            let Some(reply) = msg.reply.clone() else {
                let p = Problem::bad_request(
                    "a capture without a reply subject is not stored: publish it with JetStream (js.publish), which waits for the PubAck",
                );
                if let Ok(user) = requests::sender(&accounts, &msg).await {
                    let id = requests::msg_id(&msg);
                    rejects
                        .record(&user, CAPTURE_PREFIX, id.as_deref(), &msg, &p)
                        .await;
                }
                return;
            };
            if let Err(e) = check_reply(Requester::Device, &reply) {
                tracing::warn!(subject = %msg.subject, error = %e, "capture refused: its reply subject is not the requester's");
                let p = Problem::bad_request(format!("not stored: {e}"));
                requests::refuse_unanswerable(&accounts, &rejects, &msg, p).await;
                return;
            }
            let answer = match relay(&js, &accounts, &msg, cfg).await {
                Ok(ack) => ack,
                Err(p) => js_error(&p),
            };
            if let Err(e) = client.publish(reply, answer).await {
                tracing::warn!(error = %e, "capture reply not sent");
            }
        });
    }
}

/// Checks a capture and stores it; the stream's PubAck, as JSON.
async fn relay(
    js: &jetstream::Context,
    accounts: &Accounts,
    msg: &async_nats::Message,
    cfg: CaptureConfig,
) -> std::result::Result<bytes::Bytes, Problem> {
    let user = requests::sender(accounts, msg).await?;
    if msg.payload.len() > cfg.max_message {
        return Err(Problem::new(
            mnemo_wire::problem::StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!(
                "a capture message is at most {} bytes; send large media in chunks on mnemo.ingest",
                cfg.max_message
            ),
        ));
    }
    let r: IngestRequest = serde_json::from_slice(&msg.payload)
        .map_err(|e| Problem::bad_request(format!("bad request: {e}")))?;
    let id = requests::msg_id(msg).or(r.idempotency_key.clone());
    let Some(id) = id else {
        return Err(Problem::bad_request(
            "a capture needs a Nats-Msg-Id (its id, kept for good): without one a retry could not be told from a new capture",
        ));
    };
    if !mnemo_ledger::is_idempotency_key(&id) {
        return Err(Problem::bad_request(format!(
            "Nats-Msg-Id must be 1 to {} printable ASCII characters",
            mnemo_ledger::MAX_IDEMPOTENCY_KEY
        )));
    }
    let mut headers = async_nats::HeaderMap::new();
    // The content's hash in the id too: the same id with other content is stored, so that
    // the drainer refuses it in words (capture id reused) instead of the stream dropping it.
    let content = blake3::hash(&msg.payload);
    let stored_id = format!("{user}:{id}:{}", &content.to_hex()[..32]);
    headers.insert("Nats-Msg-Id", stored_id.as_str());
    headers.insert(DEVICE_MSG_ID, id.as_str());
    let ack = js
        .publish_with_headers(
            format!("{QUEUE_PREFIX}.{user}"),
            headers,
            msg.payload.clone(),
        )
        .await
        .map_err(|e| GatewayError::nats("storing a capture", e))?
        .await
        .map_err(|e| GatewayError::nats("storing a capture", e))?;
    Ok(
        json!({ "stream": ack.stream, "seq": ack.sequence, "duplicate": ack.duplicate })
            .to_string()
            .into(),
    )
}

/// Drains the ingest stream into the chains until `stop`.
pub async fn drain(
    js: jetstream::Context,
    ledger: Ledger,
    rejects: Rejects,
    cfg: CaptureConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let stream = open_stream(&js, cfg).await?;
    let consumer = stream
        .get_or_create_consumer(
            DRAINER,
            consumer::pull::Config {
                durable_name: Some(DRAINER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| GatewayError::nats("creating the drainer", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| GatewayError::nats("reading the ingest stream", e))?;
    loop {
        let msg = tokio::select! {
            m = messages.next() => m,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let Some(msg) = msg else { return Ok(()) };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "reading the ingest stream");
                continue;
            }
        };
        let done = drain_one(&ledger, &rejects, &msg).await;
        let kind = if done {
            AckKind::Ack
        } else {
            AckKind::Nak(Some(Duration::from_millis(500)))
        };
        if let Err(e) = msg.ack_with(kind).await {
            tracing::warn!(error = %e, "acknowledging a drained capture");
        }
    }
}

/// Appends one stored capture; `false` when it must stay in the queue (retryable).
async fn drain_one(ledger: &Ledger, rejects: &Rejects, msg: &jetstream::Message) -> bool {
    let Some(user) = msg
        .subject
        .strip_prefix(QUEUE_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .and_then(|u| UserId::new(u).ok())
    else {
        tracing::error!(subject = %msg.subject, "a stored capture under a subject that names no user: left in the queue");
        return false;
    };
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = msg.headers.as_ref().and_then(|h| h.get(DEVICE_MSG_ID)) {
        headers.insert("Nats-Msg-Id", id.as_str());
    }
    let result = match serde_json::from_slice::<IngestRequest>(&msg.payload) {
        Ok(r) => requests::ingest(ledger, &user, r, Some(&headers)).await,
        Err(e) => Err(Problem::bad_request(format!("bad request: {e}"))),
    };
    match result {
        Ok(_) => true,
        Err(p) if p.status.is_client_error() => {
            let id = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(DEVICE_MSG_ID))
                .map(|v| v.as_str().to_owned());
            rejects
                .record(&user, CAPTURE_PREFIX, id.as_deref(), &msg.message, &p)
                .await;
            true
        }
        Err(p) => {
            tracing::warn!(%user, status = p.status.as_u16(), "a capture could not be appended yet: retried");
            false
        }
    }
}
