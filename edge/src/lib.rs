//! # mnemo-edge
//!
//! The edge: a device or home box runs a NATS leaf node with its own JetStream domain and a
//! local outbox stream, so capture goes on while the link to the hub is down, and the
//! forwarder shipped with mnemo moves the outbox to the hub's `mnemo.capture` once it is
//! back (docs/EDGE.md, docs/decisions/0014-edge-capture.md).
//!
//! - [`leaf_config`]: the leaf node's configuration (`mnemo-edge init`).
//! - [`forward`]: drains the outbox in order, a window of captures in flight, each with
//!   its own `Nats-Msg-Id`, and removes one from the outbox only on the hub's PubAck
//!   (`mnemo-edge forward`). A capture stored twice at the hub (a lost PubAck, a replay) is
//!   appended once: its capture id is kept in the chain for good. A capture the hub (or the
//!   leaf) refuses is reported to the device on the leaf's rejects stream
//!   ([`REJECTED_STREAM`]), never only logged.

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures::StreamExt;
use mnemo_core::Backoff;
use mnemo_core::names::CAPTURE_PREFIX;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// What the edge tools fail with: NATS or JetStream on the leaf did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A NATS or JetStream operation failed; retry once the leaf answers.
    #[error("nats: {what}: {detail}")]
    Nats {
        /// The operation.
        what: &'static str,
        /// The error text.
        detail: String,
    },
}

impl EdgeError {
    fn nats(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Nats {
            what,
            detail: e.to_string(),
        }
    }
}

/// Shorthand.
pub type Result<T, E = EdgeError> = std::result::Result<T, E>;

/// A client of the leaf node at `url` once it answers (it may be starting), trying for up
/// to `within`.
pub async fn connect_when_up(url: &str, within: Duration) -> Result<async_nats::Client> {
    let t = std::time::Instant::now();
    loop {
        match async_nats::connect(url).await {
            Ok(c) => return Ok(c),
            Err(_) if t.elapsed() < within => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(EdgeError::nats("connecting to the leaf", e)),
        }
    }
}

/// The `Nats-Msg-Id` of `msg`, if it has one.
fn msg_id(msg: &async_nats::Message) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_owned())
}

/// The local outbox stream on the leaf.
pub const OUTBOX_STREAM: &str = "MNEMO-OUTBOX";
/// Devices publish their captures on `mnemo.outbox.<capture stream>` (JetStream, local).
pub const OUTBOX_PREFIX: &str = "mnemo.outbox";
/// The forwarder's durable consumer.
const FORWARDER: &str = "mnemo-forwarder";
/// The leaf's stream of refused captures: what the device reads to learn that a capture
/// will never reach its chain, and why.
pub const REJECTED_STREAM: &str = "MNEMO-REJECTED";
/// A refused capture of stream `s` is reported on `mnemo.rejected.<s>` (its
/// `Nats-Msg-Id` in the header `Mnemo-Capture-Id`, the problem in the body).
pub const REJECTED_PREFIX: &str = "mnemo.rejected";
/// How long the leaf keeps a refusal.
const REJECTED_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// What `mnemo-edge init` writes into the leaf's configuration.
pub struct LeafSettings<'a> {
    /// Where the leaf listens for the device's own clients (loopback).
    pub port: u16,
    /// The hub's leafnode URL (`nats-leaf://hub:7422`, `tls://` in production).
    pub hub: &'a str,
    /// The device's `.creds` file.
    pub creds: &'a Path,
    /// The leaf's JetStream store (survives reboots).
    pub store: &'a Path,
    /// The leaf's JetStream domain (not the hub's).
    pub domain: &'a str,
}

/// The leaf node configuration: a local listener on loopback, JetStream in its own domain
/// with a file store, and one remote to the hub with the device's credentials (so the leaf
/// carries exactly that user's account, with the device's permissions). The remote
/// connects only to the URL given (`ignore_discovered_servers`): a hub advertises its own
/// addresses, and a leaf that learned them would reach the hub around whatever link the
/// device was meant to use, and would not be offline when that link is down.
pub fn leaf_config(s: &LeafSettings<'_>) -> String {
    format!(
        "# mnemo-edge: a leaf node that keeps captures while offline (docs/EDGE.md)\n\
         listen: \"127.0.0.1:{port}\"\n\
         jetstream {{\n  domain: \"{domain}\"\n  store_dir: \"{store}\"\n}}\n\
         leafnodes {{\n  reconnect: 1\n  remotes: [\n    {{ url: \"{hub}\", credentials: \"{creds}\", ignore_discovered_servers: true }}\n  ]\n}}\n",
        port = s.port,
        domain = s.domain,
        store = s.store.display(),
        hub = s.hub,
        creds = s.creds.display(),
    )
}

/// The outbox's settings.
#[derive(Clone, Copy, Debug)]
pub struct OutboxConfig {
    /// The outbox's duplicate window (a device's retry within it is stored once).
    pub duplicate_window: Duration,
    /// How long the forwarder waits for the hub's PubAck.
    pub ack_timeout: Duration,
    /// Captures in flight at once (at least 1). On a link with round trip `r` the
    /// forwarder moves up to `window / r` captures a second.
    pub window: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(120),
            ack_timeout: Duration::from_secs(5),
            window: 128,
        }
    }
}

/// Creates the outbox stream on the leaf, or brings an existing one to `cfg` (its
/// captures are kept).
pub async fn open_outbox(js: &jetstream::Context, cfg: OutboxConfig) -> Result<stream::Stream> {
    js.create_or_update_stream(stream::Config {
        name: OUTBOX_STREAM.into(),
        subjects: vec![format!("{OUTBOX_PREFIX}.>")],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: cfg.duplicate_window,
        ..Default::default()
    })
    .await
    .map_err(|e| EdgeError::nats("creating the outbox", e))?;
    js.create_or_update_stream(stream::Config {
        name: REJECTED_STREAM.into(),
        subjects: vec![format!("{REJECTED_PREFIX}.>")],
        storage: stream::StorageType::File,
        max_age: REJECTED_KEEP,
        ..Default::default()
    })
    .await
    .map_err(|e| EdgeError::nats("creating the rejects stream", e))?;
    js.get_stream(OUTBOX_STREAM)
        .await
        .map_err(|e| EdgeError::nats("opening the outbox", e))
}

/// Forwards the outbox to the hub until `stop`, a window of `cfg.window` captures in
/// flight. They are published one after another in outbox order on one connection (each
/// with its own reply subject), and the hub stores one
/// account's captures in the order they arrive (docs/EDGE.md), so each capture stream keeps
/// its order. Replies are taken in order too: a capture the hub did not answer (offline, a
/// timeout) is sent again with every one after it, after a backoff; those the hub had
/// stored come back as duplicates and are appended once. A capture the hub refuses is
/// reported on the leaf's rejects stream and taken off the outbox (a retry would be refused
/// again).
pub async fn forward(
    client: async_nats::Client,
    cfg: OutboxConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let js = jetstream::new(client.clone());
    let outbox = open_outbox(&js, cfg).await?;
    let window = cfg.window.max(1);
    let config = consumer::pull::Config {
        durable_name: Some(FORWARDER.into()),
        ack_policy: consumer::AckPolicy::Explicit,
        // This forwarder sends again itself what the hub did not answer; a redelivery is
        // only for a forwarder that died, and a new one starts from the oldest capture.
        ack_wait: Duration::from_secs(3600),
        max_ack_pending: window as i64,
        max_deliver: -1,
        ..Default::default()
    };
    // A forwarder that stopped (or was killed) with captures in flight left them pending
    // on its consumer: kept as it is, the server would hand out the captures after them
    // first and those only when their ack wait ends, out of order. The outbox is a work
    // queue (a capture leaves it only when acknowledged), so a new consumer starts at the
    // oldest capture still there, in order.
    match outbox.delete_consumer(FORWARDER).await {
        Ok(_) => {}
        Err(e)
            if matches!(e.kind(), jetstream::stream::ConsumerErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {}
        Err(e) => return Err(EdgeError::nats("resetting the forwarder", e)),
    }
    let consumer = outbox
        .create_consumer(config)
        .await
        .map_err(|e| EdgeError::nats("creating the forwarder", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| EdgeError::nats("reading the outbox", e))?
        .ready_chunks(window);
    loop {
        let batch = tokio::select! {
            b = messages.next() => b,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let Some(batch) = batch else { return Ok(()) };
        let mut pending = Vec::with_capacity(batch.len());
        for msg in batch.into_iter().flatten() {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(id) = msg_id(&msg) {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            // The capture stream is the subject's last token (`mnemo.outbox.<stream>`): it
            // names the capture's stream unless the body does, and a body that names
            // another is refused on the leaf, never forwarded under the wrong stream.
            match with_stream(&msg.subject, &msg.payload) {
                Ok(payload) => pending.push(Outgoing {
                    msg,
                    headers,
                    payload,
                }),
                Err(why) => refused(&js, &msg, &serde_json::json!({ "detail": why })).await,
            }
        }
        if !send_in_order(&client, &js, &pending, cfg, &mut stop).await {
            return Ok(());
        }
    }
}

/// A capture of the outbox on its way to the hub.
struct Outgoing {
    msg: jetstream::Message,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
}

/// What the hub said to one capture.
#[derive(Clone)]
enum Answer {
    Stored,
    Refused(Value),
    /// No answer, or not a PubAck yet (the hub is not serving captures): send again.
    Again,
}

impl Answer {
    fn of(reply: &async_nats::Message) -> Self {
        let v: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
        if let Some(problem) = v.get("error") {
            Answer::Refused(problem.clone())
        } else if v.get("seq").is_some() {
            Answer::Stored
        } else {
            // No responders, or an answer that is not a PubAck.
            Answer::Again
        }
    }
}

/// Sends `pending` in order until every capture is stored or refused; `false` when `stop`
/// came first (what is not acknowledged stays in the outbox).
async fn send_in_order(
    client: &async_nats::Client,
    js: &jetstream::Context,
    pending: &[Outgoing],
    cfg: OutboxConfig,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut from = 0;
    let mut wait = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    while from < pending.len() {
        let answers = send_window(client, &pending[from..], cfg.ack_timeout).await;
        for answer in answers {
            let msg = &pending[from].msg;
            match answer {
                Answer::Stored => {
                    if let Err(e) = msg.ack().await {
                        tracing::warn!(error = %e, "acknowledging a forwarded capture (it may be sent again; the hub appends it once)");
                    }
                }
                Answer::Refused(problem) => refused(js, msg, &problem).await,
                // This one and every later one go again, in order.
                Answer::Again => break,
            }
            from += 1;
        }
        if from < pending.len() {
            tokio::select! {
                _ = tokio::time::sleep(wait.next_wait()) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
    }
    true
}

/// Publishes `window` one after another (so in this order on the connection), each with
/// its own reply subject under one inbox, and gathers the answers until `timeout`: one per
/// capture, in the window's order (`Again` where none came).
async fn send_window(
    client: &async_nats::Client,
    window: &[Outgoing],
    timeout: Duration,
) -> Vec<Answer> {
    let mut answers = vec![Answer::Again; window.len()];
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(format!("{inbox}.*")).await else {
        return answers;
    };
    let mut sent = 0;
    for (i, o) in window.iter().enumerate() {
        if client
            .publish_with_reply_and_headers(
                CAPTURE_PREFIX,
                format!("{inbox}.{i}"),
                o.headers.clone(),
                o.payload.clone(),
            )
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    let _ = client.flush().await;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut answered = vec![false; window.len()];
    let mut got = 0;
    while got < sent {
        let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await else {
            break;
        };
        let Some(i) = reply
            .subject
            .rsplit('.')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < sent && !answered[*i])
        else {
            continue;
        };
        answered[i] = true;
        answers[i] = Answer::of(&reply);
        got += 1;
    }
    let _ = replies.unsubscribe().await;
    answers
}

/// Reports a refused capture on the leaf's rejects stream (`mnemo.rejected.<stream>`, its
/// `Nats-Msg-Id`, the problem) and takes it off the outbox.
async fn refused(js: &jetstream::Context, msg: &jetstream::Message, problem: &Value) {
    let stream = msg
        .subject
        .strip_prefix(OUTBOX_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .filter(|s| !s.is_empty() && !s.contains('.'))
        .unwrap_or("_");
    let id = msg_id(msg);
    tracing::warn!(subject = %msg.subject, id = id.as_deref().unwrap_or("-"), %problem, "a capture was refused: reported on {REJECTED_PREFIX}.{stream} and taken off the outbox");
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = &id {
        headers.insert("Mnemo-Capture-Id", id.as_str());
    }
    let body = serde_json::json!({ "subject": msg.subject.as_str(), "id": id, "problem": problem });
    let reported = match js
        .publish_with_headers(
            format!("{REJECTED_PREFIX}.{stream}"),
            headers,
            body.to_string().into(),
        )
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if reported {
        let _ = msg.ack_with(AckKind::Term).await;
    } else {
        // Kept in the outbox, to be reported on a later delivery rather than lost.
        tracing::warn!(
            "the refusal could not be stored on the leaf; the capture stays in the outbox"
        );
    }
}

/// The capture `payload` published on `subject` (`mnemo.outbox.<stream>`), with its
/// stream named: the subject's stream is added to a body that names none; a body that
/// names another stream is an error.
pub fn with_stream(
    subject: &str,
    payload: &bytes::Bytes,
) -> std::result::Result<bytes::Bytes, String> {
    let Some(stream) = subject
        .strip_prefix(OUTBOX_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .filter(|s| !s.is_empty() && !s.contains('.'))
    else {
        return Err(format!("publish captures on {OUTBOX_PREFIX}.<stream>"));
    };
    let mut v: serde_json::Map<String, Value> =
        serde_json::from_slice(payload).map_err(|e| format!("a capture is a JSON object: {e}"))?;
    match v.get("stream") {
        None | Some(Value::Null) => {
            v.insert("stream".into(), Value::String(stream.into()));
            Ok(serde_json::to_vec(&v).expect("serialisable").into())
        }
        Some(Value::String(s)) if s == stream => Ok(payload.clone()),
        Some(other) => Err(format!(
            "the body names stream {other} but it was published on {subject}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_names_the_stream() {
        let b = |s: &str| bytes::Bytes::from(s.to_owned());
        let v: Value = serde_json::from_slice(
            &with_stream("mnemo.outbox.voice", &b(r#"{"text":"x"}"#)).unwrap(),
        )
        .unwrap();
        assert_eq!(v["stream"], "voice");
        assert_eq!(
            with_stream("mnemo.outbox.voice", &b(r#"{"text":"x","stream":"voice"}"#)).unwrap(),
            b(r#"{"text":"x","stream":"voice"}"#)
        );
        assert!(with_stream("mnemo.outbox.voice", &b(r#"{"stream":"web"}"#)).is_err());
        assert!(with_stream("mnemo.outbox", &b("{}")).is_err());
        assert!(with_stream("mnemo.outbox.a.b", &b("{}")).is_err());
        assert!(with_stream("mnemo.outbox.voice", &b("[1]")).is_err());
    }
}
