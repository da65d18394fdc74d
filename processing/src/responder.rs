//! The processors' NATS endpoints: `mnemo.proc.<processor>.fetch`, `.submit`, `.model` and
//! `.stale`
//! (queue group `mnemo`). A request carries the processor's API token in the
//! `Authorization: Bearer <token>` header and the subject's processor must be the token's,
//! so one processor can never act as another, whatever the NATS permissions. Replies follow
//! the NATS services convention: the JSON answer, or the headers `Nats-Service-Error` and
//! `Nats-Service-Error-Code` with a problem body (docs/WORKERS.md §7).

use futures::StreamExt;
use mnemo_core::ProcessorId;
use mnemo_core::names::{PROC_PREFIX, SERVICE_QUEUE};
use mnemo_core::replies::{Requester, check_reply};
use std::sync::Arc;

use crate::error::{ProcessingError, Result};
use crate::protocol::{AUTHORIZATION, ERROR_CODE_HEADER, ERROR_HEADER};
use crate::service::Processing;

/// A refusal: status, problem slug, detail.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// HTTP-like status.
    pub status: u16,
    /// Problem slug (`https://mnemo.dev/problems/<slug>`).
    pub slug: &'static str,
    /// What went wrong.
    pub detail: String,
}

/// How a processing error is answered (REST and NATS alike).
pub fn refusal(e: &ProcessingError) -> Refusal {
    use mnemo_ledger::LedgerError as L;
    let (status, slug) = match e {
        ProcessingError::UnknownProcessor(_) => (403, "unknown-processor"),
        ProcessingError::Revoked(_) => (403, "processor-revoked"),
        ProcessingError::Exists(_) => (409, "exists"),
        ProcessingError::NotAllowed(_) => (403, "not-allowed"),
        ProcessingError::Invalid(_) => (400, "bad-request"),
        ProcessingError::NotFound(_) => (404, "not-found"),
        ProcessingError::Stale(_) => (410, "model-stale"),
        ProcessingError::Ledger(l) => match l {
            L::InvalidInput(_) | L::InvalidId(_) => (400, "bad-request"),
            L::UnknownUser(_) | L::MemoryNotFound(_) => (404, "not-found"),
            L::Erased(_) => (410, "erased"),
            L::PayloadTooLarge { .. } => (413, "too-large"),
            L::Refused(_) => (422, "refused-by-chain-rules"),
            L::Conflict(_) | L::HeadMoved(_) => (409, "conflict"),
            L::Nats { .. } => (503, "unavailable"),
            _ => (500, "internal"),
        },
        ProcessingError::Nats { .. } => (503, "unavailable"),
    };
    let detail = match e {
        ProcessingError::Ledger(mnemo_ledger::LedgerError::Refused(c)) => format!(
            "the chain's rules refuse this event ({}): {c}; nothing was written",
            c.code()
        ),
        _ if status == 500 => "internal error (logged)".into(),
        other => other.to_string(),
    };
    if status >= 500 {
        tracing::warn!(error = %e, "processing request failed");
    }
    Refusal {
        status,
        slug,
        detail,
    }
}

/// A refusal as a problem body (RFC 9457 fields).
pub fn problem_body(r: &Refusal) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": format!("https://mnemo.dev/problems/{}", r.slug),
        "title": r.slug,
        "status": r.status,
        "detail": r.detail,
    }))
    .expect("serialisable")
}

/// Checks a processor's bearer token: the processor it names, if valid.
pub type TokenCheck = Arc<dyn Fn(&str) -> Option<ProcessorId> + Send + Sync>;

/// Serves the processors' subjects until `stop`.
pub async fn serve(
    client: async_nats::Client,
    processing: Processing,
    check: TokenCheck,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut sub = client
        .queue_subscribe(format!("{PROC_PREFIX}.*.*"), SERVICE_QUEUE.into())
        .await
        .map_err(|e| ProcessingError::nats("subscribe to the processor subjects", e))?;
    loop {
        let msg = tokio::select! {
            m = sub.next() => match m { Some(m) => m, None => return Ok(()) },
            _ = crate::stopped(&mut stop) => return Ok(()),
        };
        let (client, processing, check) = (client.clone(), processing.clone(), check.clone());
        tokio::spawn(async move {
            let Some(reply) = msg.reply.clone() else {
                tracing::warn!(subject = %msg.subject, "processor message without a reply subject: not processed (use request/reply)");
                return;
            };
            // Answered only inside the processor's own inbox (core::replies), whatever the
            // token says: a reply elsewhere is refused before any work is done.
            let name = msg.subject.as_str().rsplit('.').nth(1).unwrap_or("");
            if let Err(e) = check_reply(Requester::Processor(name), &reply) {
                tracing::warn!(subject = %msg.subject, error = %e, "processor request refused: its reply subject is not the processor's inbox");
                return;
            }
            let (headers, body) = match answer(&processing, &check, &msg).await {
                Ok(v) => (async_nats::HeaderMap::new(), v),
                Err(r) => {
                    let mut h = async_nats::HeaderMap::new();
                    let detail: String = r
                        .detail
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect();
                    h.insert(ERROR_HEADER, detail.as_str());
                    h.insert(ERROR_CODE_HEADER, r.status.to_string().as_str());
                    (h, problem_body(&r))
                }
            };
            if let Err(e) = client
                .publish_with_headers(reply, headers, body.into())
                .await
            {
                tracing::warn!(error = %e, "processor reply not sent");
            }
        });
    }
}

async fn answer(
    processing: &Processing,
    check: &TokenCheck,
    msg: &async_nats::Message,
) -> std::result::Result<Vec<u8>, Refusal> {
    let refuse = |status, slug, detail: &str| Refusal {
        status,
        slug,
        detail: detail.into(),
    };
    let mut parts = msg.subject.as_str().rsplitn(3, '.');
    let (op, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let token = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(AUTHORIZATION))
        .and_then(|v| v.as_str().strip_prefix("Bearer "))
        .ok_or_else(|| refuse(401, "unauthorized", "missing Authorization: Bearer <token>"))?;
    let processor = check(token.trim()).ok_or_else(|| {
        refuse(
            401,
            "unauthorized",
            "the token is not a valid processor token",
        )
    })?;
    if processor.as_str() != name {
        return Err(refuse(
            403,
            "forbidden",
            "the token belongs to another processor than the subject's",
        ));
    }
    let bad = |e: serde_json::Error| refuse(400, "bad-request", &format!("bad request: {e}"));
    let out = match op {
        "fetch" => {
            let r = serde_json::from_slice(&msg.payload).map_err(bad)?;
            serde_json::to_vec(
                &processing
                    .fetch(&processor, &r)
                    .await
                    .map_err(|e| refusal(&e))?,
            )
        }
        "submit" => {
            let r = serde_json::from_slice(&msg.payload).map_err(bad)?;
            serde_json::to_vec(
                &processing
                    .submit(&processor, r)
                    .await
                    .map_err(|e| refusal(&e))?,
            )
        }
        "model" => {
            let r = serde_json::from_slice(&msg.payload).map_err(bad)?;
            serde_json::to_vec(
                &processing
                    .record_model(&processor, r)
                    .await
                    .map_err(|e| refusal(&e))?,
            )
        }
        "stale" => serde_json::to_vec(
            &processing
                .stale(&processor)
                .await
                .map_err(|e| refusal(&e))?,
        ),
        _ => {
            return Err(refuse(
                404,
                "not-found",
                "no such operation (fetch, submit, model, stale)",
            ));
        }
    };
    Ok(out.expect("serialisable"))
}
