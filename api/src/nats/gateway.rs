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
use mnemo_core::names::{INGEST_PREFIX, READ_PREFIX, SERVICE_QUEUE};
use mnemo_core::{Seq, TimestampMs, UserId};
use mnemo_ledger::{Ledger, NewMemory};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

use super::accounts::Accounts;
use super::error::{NatsAuthError, Result};
use crate::problem::Problem;

/// What a device sends on `mnemo.ingest` (a `user` field, if any, is ignored: the user is
/// the account the message came from).
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
}

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
}

/// Serves the device subjects until `stop`.
pub async fn serve_devices(
    client: async_nats::Client,
    ledger: Ledger,
    accounts: Accounts,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let subscribe = async |prefix: &str| {
        client
            .queue_subscribe(format!("{prefix}.*"), SERVICE_QUEUE.into())
            .await
            .map_err(|e| NatsAuthError::nats("subscribing to the device subjects", e))
    };
    let mut ingest = subscribe(INGEST_PREFIX).await?;
    let mut read = subscribe(READ_PREFIX).await?;
    loop {
        let (msg, is_read) = tokio::select! {
            Some(m) = ingest.next() => (m, false),
            Some(m) = read.next() => (m, true),
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let (client, ledger, accounts) = (client.clone(), ledger.clone(), accounts.clone());
        tokio::spawn(async move {
            let Some(reply) = msg.reply.clone() else {
                tracing::warn!(subject = %msg.subject, "device message without a reply subject: not processed (use request/reply)");
                return;
            };
            let (headers, body) = match handle(&ledger, &accounts, &msg, is_read).await {
                Ok(v) => (
                    async_nats::HeaderMap::new(),
                    serde_json::to_vec(&v).unwrap_or_default(),
                ),
                Err(e) => error_reply(e),
            };
            if let Err(e) = client
                .publish_with_headers(reply, headers, body.into())
                .await
            {
                tracing::warn!(error = %e, "device reply not sent");
            }
        });
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

async fn handle(
    ledger: &Ledger,
    accounts: &Accounts,
    msg: &async_nats::Message,
    is_read: bool,
) -> std::result::Result<Value, Problem> {
    let account = msg.subject.rsplit('.').next().unwrap_or_default();
    let user: UserId = accounts
        .user_of(account)
        .await?
        .ok_or_else(|| Problem::forbidden("this account is not a mnemo user"))?;
    let bad = |e: serde_json::Error| Problem::bad_request(format!("bad request: {e}"));
    if is_read {
        let r: ReadRequest = serde_json::from_slice(&msg.payload).map_err(bad)?;
        let from = Seq(r.from.unwrap_or(1).max(1));
        let mut events = ledger
            .events(&user, from, r.limit.unwrap_or(100).clamp(1, 1000))
            .await
            .map_err(NatsAuthError::from)?;
        if events.is_empty()
            && let Some(wait) = r.wait_ms.filter(|w| *w > 0)
        {
            let mut follow = ledger
                .follow(&user, from)
                .await
                .map_err(NatsAuthError::from)?;
            let wait = Duration::from_millis(wait.min(30_000));
            if let Ok(next) = tokio::time::timeout(wait, follow.next()).await {
                events.extend(next.map_err(NatsAuthError::from)?);
            }
        }
        let items: Vec<Value> = events
            .iter()
            .map(|e| json!({ "seq": e.event.seq.0, "hash": e.hash, "wire": hex::encode(e.event.to_wire()) }))
            .collect();
        return Ok(json!({ "user": user, "events": items }));
    }
    let r: IngestRequest = serde_json::from_slice(&msg.payload).map_err(bad)?;
    // NATS's own idempotency header means what the body's `idempotency_key` means: scoped
    // to the user, so one user's id never suppresses another user's message.
    let header_key = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned());
    let idempotency_key = match (r.idempotency_key, header_key) {
        (Some(b), Some(h)) if b != h => {
            return Err(Problem::bad_request(
                "Nats-Msg-Id and idempotency_key differ: give one key (or the same in both)",
            ));
        }
        (b, h) => b.or(h),
    };
    let receipt = ledger
        .append(
            &user,
            NewMemory {
                kind: r.kind.unwrap_or_else(|| "note".into()),
                tags: r.tags,
                captured_at: r.captured_at.map(TimestampMs),
                source: r.source,
                content_type: "text/plain; charset=utf-8".into(),
                content: r.text.into_bytes().into(),
                idempotency_key,
            },
        )
        .await
        .map_err(NatsAuthError::from)?;
    Ok(json!({
        "user": user,
        "id": receipt.memory,
        "seq": receipt.seq.0,
        "event_hash": receipt.hash,
        "duplicate": receipt.duplicate,
        "custody": receipt.custody,
    }))
}
