//! Refused device messages that had no reply subject to carry the refusal: a publish on
//! `mnemo.ingest` without one, and a drained `mnemo.capture` whose content is refused. Each
//! is kept, with its problem, on `mnemo.rejects.<user>` (stream `MNEMO-REJECTS`, 30 days),
//! and a device reads its own with `mnemo.read` `{"rejects": true}`. Nothing is dropped
//! without a word.

use async_nats::jetstream::{self, stream};
use mnemo_core::UserId;
use mnemo_core::names::{REJECTS_PREFIX, REJECTS_STREAM};
use serde_json::{Value, json};
use std::time::Duration;

use crate::error::{GatewayError, Result};
use mnemo_wire::Problem;

/// How long refusals are kept.
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// The refusals store.
#[derive(Clone)]
pub struct Rejects {
    js: jetstream::Context,
    stream: stream::Stream,
}

impl Rejects {
    /// Opens (creating if needed) the rejects stream.
    pub async fn open(js: jetstream::Context) -> Result<Self> {
        let stream = mnemo_ledger::provision::ensure_stream(
            &js,
            stream::Config {
                name: REJECTS_STREAM.into(),
                subjects: vec![format!("{REJECTS_PREFIX}.>")],
                max_age: KEEP,
                storage: stream::StorageType::File,
                allow_direct: true,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self { js, stream })
    }

    /// Keeps the refusal of `msg`, which the device sent on `subject` (as the device names
    /// it) with the message id `msg_id`. Logs (without content) when even that fails.
    pub async fn record(
        &self,
        user: &UserId,
        subject: &str,
        msg_id: Option<&str>,
        msg: &async_nats::Message,
        p: &Problem,
    ) {
        let body = json!({
            "subject": subject,
            "msg_id": msg_id,
            "bytes": msg.payload.len(),
            "problem": serde_json::from_slice::<Value>(&p.body()).unwrap_or(Value::Null),
        });
        let r = self
            .js
            .publish(format!("{REJECTS_PREFIX}.{user}"), body.to_string().into())
            .await;
        let acked = match r {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if acked {
            tracing::info!(%user, status = p.status.as_u16(), "device message refused and recorded");
        } else {
            tracing::error!(%user, status = p.status.as_u16(), "device message refused; the refusal could not be recorded");
        }
    }

    /// The user's refusals from rejects sequence `from` (1-based, per user), oldest first.
    pub async fn list(&self, user: &UserId, from: u64, limit: usize) -> Result<Vec<Value>> {
        let subject = format!("{REJECTS_PREFIX}.{user}");
        let mut out = Vec::new();
        let mut at = 0u64;
        let mut seq = 1u64;
        while out.len() < limit {
            let m = match self
                .stream
                .direct_get_next_for_subject(&subject, Some(seq))
                .await
            {
                Ok(m) => m,
                Err(e)
                    if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                {
                    break;
                }
                Err(e) => return Err(GatewayError::nats("reading the rejects", e)),
            };
            at += 1;
            seq = m.sequence + 1;
            if at >= from {
                let mut v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                v["n"] = json!(at);
                out.push(v);
            }
        }
        Ok(out)
    }
}
