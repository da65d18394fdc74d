//! The device gateway: serves `mnemo.ingest.*` and `mnemo.read.*` in the service account
//! (queue group `mnemo`, so several instances share the load).
//!
//! The service account exports both with `account_token_position: 3`; each user account
//! imports `mnemo.ingest.<its own account key>` as `mnemo.ingest`. A device publishes on
//! `mnemo.ingest`; the gateway receives it on `mnemo.ingest.<account key>`, so the user is
//! named by the server's account wiring and cannot be spoofed by the payload.
//!
//! Replies follow the NATS services convention: a success is the JSON answer; a refusal
//! carries the headers `Nats-Service-Error` (the detail) and `Nats-Service-Error-Code`
//! (the HTTP-like status), and the same problem body as the REST API (`type`, `title`,
//! `status`, `detail`).

use futures::StreamExt;
use mnemo_core::names::{INGEST_PREFIX, SERVICE_QUEUE};
use mnemo_core::replies::{Requester, check_reply};
use mnemo_core::{Capture, KeyId, Seq, Sig, UserId};
use mnemo_ledger::{DeviceSignature, Ledger, NewMemory};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

use crate::error::{GatewayError, Result};
use crate::rejects::Rejects;
use crate::upload::{UPLOAD_HEADER, Uploads};
use mnemo_accounts::Accounts;
use mnemo_wire::Problem;
use mnemo_wire::{IngestReceipt, MemoryMeta};

/// What a device sends on `mnemo.ingest` and `mnemo.capture` (a `user` field, if any, is
/// ignored: the user is the account the message came from).
#[derive(Deserialize)]
pub struct IngestRequest {
    /// Kind (default `note`).
    #[serde(default)]
    pub kind: Option<String>,
    /// The text.
    pub text: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Capture time (ms).
    #[serde(default)]
    pub captured_at: Option<i64>,
    /// Source.
    #[serde(default)]
    pub source: Option<String>,
    /// Idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The capture stream (`voice`, `web`, ...; default `default`).
    #[serde(default)]
    pub stream: Option<String>,
    /// The device's counter in its capture stream. Without it, mnemo names the capture
    /// from the idempotency key (`Nats-Msg-Id`).
    #[serde(default)]
    pub counter: Option<u64>,
    /// The signed form: the device key's id (hex), with `salt` and `signature`.
    #[serde(default)]
    pub device_key: Option<String>,
    /// The commitment salt the device drew (32 bytes, hex).
    #[serde(default)]
    pub salt: Option<String>,
    /// The device's capture signature (64 bytes, hex; FORMAT.md §5.2).
    #[serde(default)]
    pub signature: Option<String>,
}

/// The capture stream of a request that names none.
pub const DEFAULT_CAPTURE_STREAM: &str = "default";

/// What a device sends on `mnemo.read`.
#[derive(Deserialize)]
struct ReadRequest {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
    /// Long poll: when nothing is at `from` yet, wait up to this long for it.
    #[serde(default)]
    wait_ms: Option<u64>,
    /// Read the refused messages instead of the chain (from this rejects sequence).
    #[serde(default)]
    rejects: bool,
    /// Follow one capture stream: only the captures of this stream, from `from` on.
    #[serde(default)]
    stream: Option<String>,
}

/// Subscribes to `prefix.*` in the service queue group.
pub(super) async fn subscribe(
    client: &async_nats::Client,
    prefix: &str,
) -> Result<async_nats::Subscriber> {
    client
        .queue_subscribe(format!("{prefix}.*"), SERVICE_QUEUE.into())
        .await
        .map_err(|e| GatewayError::nats("subscribing to the device subjects", e))
}

/// Serves the device subjects (subscribed by [`subscribe`]) until `stop`.
pub async fn serve_devices(
    client: async_nats::Client,
    ledger: Ledger,
    accounts: Accounts,
    rejects: Rejects,
    uploads: Uploads,
    (mut ingest, mut read): (async_nats::Subscriber, async_nats::Subscriber),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    // One account's ingests in arrival order (reads, long polls included, in parallel).
    let lanes = crate::lanes::Lanes::default();
    loop {
        let (msg, is_read) = tokio::select! {
            Some(m) = ingest.next() => (m, false),
            Some(m) = read.next() => (m, true),
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let (client, ledger, accounts, rejects, uploads) = (
            client.clone(),
            ledger.clone(),
            accounts.clone(),
            rejects.clone(),
            uploads.clone(),
        );
        let lane = msg.subject.to_string();
        let arrived = std::time::Instant::now();
        let job = async move {
            let Some(reply) = msg.reply.clone() else {
                // Nothing is written, and the refusal is kept where the device reads it.
                let p = Problem::bad_request(
                    "a publish without a reply subject is not processed: use request/reply, or a JetStream publish to mnemo.capture",
                );
                refuse_unanswerable(&accounts, &rejects, &msg, p).await;
                return;
            };
            // Answered only inside the requester's inbox space (core::replies): a reply
            // subject elsewhere is refused before any work, and kept where the device reads it.
            if let Err(e) = check_reply(Requester::Device, &reply) {
                tracing::warn!(subject = %msg.subject, error = %e, "device request refused: its reply subject is not the requester's");
                let p = Problem::bad_request(format!("not processed: {e}"));
                refuse_unanswerable(&accounts, &rejects, &msg, p).await;
                return;
            }
            let request = match (is_read, &msg.headers) {
                (true, _) => "read",
                (false, Some(h)) if h.get(UPLOAD_HEADER).is_some() => "upload",
                _ => "ingest",
            };
            let (status, (headers, body)) =
                match handle(&ledger, &accounts, &rejects, &uploads, &msg, is_read).await {
                    Ok(v) => (
                        None,
                        (
                            async_nats::HeaderMap::new(),
                            serde_json::to_vec(&v).unwrap_or_default(),
                        ),
                    ),
                    Err(e) => (Some(e.status.as_u16()), error_reply(e)),
                };
            if let Err(e) = client
                .publish_with_headers(reply, headers, body.into())
                .await
            {
                tracing::warn!(error = %e, "device reply not sent");
            }
            crate::metrics::observe(request, status, arrived.elapsed());
        };
        if is_read {
            tokio::spawn(job);
        } else {
            lanes.run(&lane, job);
        }
    }
}

/// A refusal in the NATS services shape: the error headers and the problem body.
pub fn error_reply(p: Problem) -> (async_nats::HeaderMap, Vec<u8>) {
    let mut h = async_nats::HeaderMap::new();
    // Header values are one line of visible text.
    let detail: String = p
        .detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    h.insert("Nats-Service-Error", detail.as_str());
    h.insert(
        "Nats-Service-Error-Code",
        p.status.as_u16().to_string().as_str(),
    );
    (h, p.body())
}

/// Records the refusal of a message that has no reply subject to carry it.
pub(super) async fn refuse_unanswerable(
    accounts: &Accounts,
    rejects: &Rejects,
    msg: &async_nats::Message,
    p: Problem,
) {
    match sender(accounts, msg).await {
        Ok(user) => {
            let id = msg_id(msg);
            rejects
                .record(&user, INGEST_PREFIX, id.as_deref(), msg, &p)
                .await;
        }
        _ => {
            tracing::warn!(subject = %msg.subject, "message of an unknown account without a reply subject: refused")
        }
    }
}

/// NATS's idempotency header.
pub(super) const MSG_ID: &str = "Nats-Msg-Id";

/// The `Nats-Msg-Id` of `msg`, if it has one.
pub(super) fn msg_id(msg: &async_nats::Message) -> Option<String> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(MSG_ID))
        .map(|v| v.as_str().to_owned())
}

/// The user behind the account that sent `msg` (the last token of its subject).
pub(super) async fn sender(
    accounts: &Accounts,
    msg: &async_nats::Message,
) -> std::result::Result<UserId, Problem> {
    let account = msg.subject.rsplit('.').next().unwrap_or_default();
    accounts
        .user_of(account)
        .await?
        .ok_or_else(|| Problem::forbidden("this account is not a mnemo user"))
}

async fn handle(
    ledger: &Ledger,
    accounts: &Accounts,
    rejects: &Rejects,
    uploads: &Uploads,
    msg: &async_nats::Message,
    is_read: bool,
) -> std::result::Result<Value, Problem> {
    let user = sender(accounts, msg).await?;
    let bad = |e: serde_json::Error| Problem::bad_request(format!("bad request: {e}"));
    if is_read {
        let r: ReadRequest = serde_json::from_slice(&msg.payload).map_err(bad)?;
        if r.rejects {
            let items = rejects
                .list(
                    &user,
                    r.from.unwrap_or(1),
                    r.limit.unwrap_or(100).clamp(1, 1000),
                )
                .await?;
            return Ok(json!({ "user": user, "rejects": items }));
        }
        let from = Seq(r.from.unwrap_or(1).max(1));
        let mut events = ledger
            .events(&user, from, r.limit.unwrap_or(100).clamp(1, 1000))
            .await?;
        if events.is_empty()
            && let Some(wait) = r.wait_ms.filter(|w| *w > 0)
        {
            let mut follow = ledger.follow(&user, from).await?;
            let wait = Duration::from_millis(wait.min(30_000));
            if let Ok(next) = tokio::time::timeout(wait, follow.next()).await {
                events.extend(next?);
            }
        }
        let next = events.last().map(|e| e.event.seq.0 + 1);
        let items: Vec<Value> = events
            .iter()
            .filter(|e| {
                r.stream.as_deref().is_none_or(|s| {
                    e.event.body.capture().is_some_and(|c| c.stream == s)
                })
            })
            .map(|e| {
                let mut v = json!({ "seq": e.event.seq.0, "hash": e.hash, "wire": hex::encode(e.event.to_wire()) });
                if let Some(c) = e.event.body.capture() {
                    v["capture"] = json!({ "stream": c.stream, "counter": c.counter });
                }
                v
            })
            .collect();
        let mut answer = json!({ "user": user, "events": items });
        if r.stream.is_some() {
            // Filtered: where the next page starts, since the page may hold fewer events.
            answer["next"] = json!(next.unwrap_or(from.0));
        }
        return Ok(answer);
    }
    if let Some(h) = msg
        .headers
        .as_ref()
        .filter(|h| h.get(UPLOAD_HEADER).is_some())
    {
        return uploads.chunk(ledger, &user, h, &msg.payload).await;
    }
    let r: IngestRequest = serde_json::from_slice(&msg.payload).map_err(bad)?;
    ingest(ledger, &user, r, msg.headers.as_ref()).await
}

fn hex_array<const N: usize>(what: &str, s: &str) -> std::result::Result<[u8; N], Problem> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| Problem::bad_request(format!("{what} must be {N} bytes in hex")))?;
    Ok(out)
}

/// Appends what a device sent (`mnemo.ingest`, or a drained `mnemo.capture`): its answer
/// is the receipt.
pub(super) async fn ingest(
    ledger: &Ledger,
    user: &UserId,
    r: IngestRequest,
    headers: Option<&async_nats::HeaderMap>,
) -> std::result::Result<Value, Problem> {
    // NATS's own idempotency header means what the body's `idempotency_key` means: scoped
    // to the user, so one user's id never suppresses another user's message.
    let header_key = headers
        .and_then(|h| h.get(MSG_ID))
        .map(|v| v.as_str().to_owned());
    let idempotency_key = match (r.idempotency_key, header_key) {
        (Some(b), Some(h)) if b != h => {
            return Err(Problem::bad_request(
                "Nats-Msg-Id and idempotency_key differ: give one key (or the same in both)",
            ));
        }
        (b, h) => b.or(h),
    };
    let stream = r
        .stream
        .unwrap_or_else(|| DEFAULT_CAPTURE_STREAM.to_owned());
    // A capture id, kept in the chain for good: the device's counter, or one mnemo derives
    // from the idempotency key.
    let capture = match (r.counter, &idempotency_key) {
        (Some(counter), _) => Some(Capture { stream, counter }),
        (None, Some(k)) => Some(ledger.capture_for_key(user, stream, k)),
        (None, None) => None,
    };
    let signed = match (r.device_key, r.salt, r.signature) {
        (None, None, None) => None,
        (Some(k), Some(salt), Some(sig)) => {
            if r.counter.is_none() {
                return Err(Problem::bad_request(
                    "a signed capture names its counter: the signature covers it",
                ));
            }
            Some(DeviceSignature {
                key: KeyId(hex_array("device_key", &k)?),
                salt: hex_array("salt", &salt)?,
                signature: Sig::from_bytes(&hex_array::<64>("signature", &sig)?),
            })
        }
        _ => {
            return Err(Problem::bad_request(
                "the signed form needs device_key, salt and signature together",
            ));
        }
    };
    let receipt = ledger
        .append(
            user,
            NewMemory {
                idempotency_key,
                capture,
                signed,
                ..MemoryMeta {
                    kind: r.kind,
                    tags: r.tags,
                    captured_at: r.captured_at,
                    source: r.source,
                }
                .text(r.text)
            },
        )
        .await?;
    Ok(serde_json::to_value(IngestReceipt::over_nats(receipt)).expect("serialisable"))
}
