//! The worker side of the protocol (docs/WORKERS.md): take tasks from the processor's
//! queue group, fetch inputs, sign and submit results, answer the task. A worker in another
//! language does the same with its own NATS client; this is the reference.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use mnemo_core::names::{PROC_PREFIX, WORK_PREFIX};
use mnemo_core::{Content, MemoryRecord, ProcessorId, SigningKey, TimestampMs, commitment};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::*;

/// Why a worker call failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// mnemo refused (status and detail of its problem reply).
    #[error("refused ({status}): {detail}")]
    Refused {
        /// The HTTP-like status.
        status: u16,
        /// What mnemo said.
        detail: String,
    },
    /// NATS failed.
    #[error("nats: {0}")]
    Nats(String),
    /// mnemo's answer was not what the protocol says.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

/// A connected worker of one processor.
#[derive(Clone)]
pub struct Worker {
    client: async_nats::Client,
    /// The processor's name.
    pub processor: ProcessorId,
    /// Its version.
    pub version: String,
    token: String,
    key: std::sync::Arc<SigningKey>,
}

/// What a handler makes of one fetched input: a derived record, or nothing.
pub type Output = Option<DerivedRecord>;

impl Worker {
    /// A worker on `client`, with the processor's token and signing key.
    pub fn new(
        client: async_nats::Client,
        processor: ProcessorId,
        version: String,
        token: String,
        key: SigningKey,
    ) -> Self {
        Self {
            client,
            processor,
            version,
            token,
            key: std::sync::Arc::new(key),
        }
    }

    async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        op: &str,
        q: &Q,
    ) -> Result<A, WorkerError> {
        let mut h = async_nats::HeaderMap::new();
        h.insert(AUTHORIZATION, format!("Bearer {}", self.token).as_str());
        let m = self
            .client
            .request_with_headers(
                format!("{PROC_PREFIX}.{}.{op}", self.processor),
                h,
                serde_json::to_vec(q).expect("serialisable").into(),
            )
            .await
            .map_err(|e| WorkerError::Nats(e.to_string()))?;
        if let Some(h) = &m.headers
            && let Some(detail) = h.get(ERROR_HEADER)
        {
            let status = h
                .get(ERROR_CODE_HEADER)
                .and_then(|c| c.as_str().parse().ok())
                .unwrap_or(500);
            return Err(WorkerError::Refused {
                status,
                detail: detail.to_string(),
            });
        }
        serde_json::from_slice(&m.payload).map_err(|e| WorkerError::BadAnswer(e.to_string()))
    }

    /// Fetches one input (mnemo records the fetch in the owner's chain first).
    pub async fn fetch(&self, task: &Task) -> Result<Fetched, WorkerError> {
        self.call(
            "fetch",
            &FetchRequest {
                user: task.user.clone(),
                grant: task.grant,
                memory: task.memory,
            },
        )
        .await
    }

    /// Signs and submits a result derived from `inputs` (ascending ids) of `task`'s user.
    pub async fn submit(
        &self,
        task: &Task,
        mut inputs: Vec<mnemo_core::MemoryId>,
        record: DerivedRecord,
    ) -> Result<Recorded, WorkerError> {
        inputs.sort();
        inputs.dedup();
        let content = B64
            .decode(&record.content)
            .map_err(|e| WorkerError::BadAnswer(e.to_string()))?;
        let full = MemoryRecord {
            kind: record.kind.clone(),
            tags: record.tags.clone(),
            captured_at: record.captured_at.map(TimestampMs),
            source: record.source.clone(),
            content_type: record.content_type.clone(),
            content: Content::Inline { bytes: content },
        };
        let salt: [u8; 32] = rand::random();
        let c = commitment::commit(&salt, &full.canonical_bytes());
        let msg = mnemo_core::processing::derived_signing_message(
            &task.user,
            &task.grant,
            &self.processor,
            &self.version,
            &inputs,
            &c,
        );
        let signature = mnemo_core::processing::sign(&self.key, &msg);
        self.call(
            "submit",
            &SubmitRequest {
                user: task.user.clone(),
                grant: task.grant,
                version: self.version.clone(),
                inputs,
                record,
                salt: hex::encode(salt),
                signature,
            },
        )
        .await
    }

    /// Takes tasks until the connection ends: fetch, `handle`, submit, answer. `handle`
    /// returning `Err` refuses the task (it is redelivered, and dead-lettered after the
    /// limit).
    pub async fn run<F, Fut>(&self, handle: F) -> Result<(), WorkerError>
    where
        F: Fn(Fetched) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Output, String>> + Send,
    {
        let subject = format!("{WORK_PREFIX}.{}", self.processor);
        let mut sub = self
            .client
            .queue_subscribe(subject, self.processor.to_string())
            .await
            .map_err(|e| WorkerError::Nats(e.to_string()))?;
        let handle = std::sync::Arc::new(handle);
        while let Some(msg) = sub.next().await {
            let (me, handle) = (self.clone(), handle.clone());
            tokio::spawn(async move {
                let Some(reply) = msg.reply.clone() else {
                    return;
                };
                let outcome = me.one(&msg.payload, handle.as_ref()).await;
                let (headers, body) = match outcome {
                    Ok(done) => (
                        async_nats::HeaderMap::new(),
                        serde_json::to_vec(&done).expect("serialisable"),
                    ),
                    Err(e) => {
                        let mut h = async_nats::HeaderMap::new();
                        h.insert(ERROR_HEADER, e.replace(['\r', '\n'], " ").as_str());
                        h.insert(ERROR_CODE_HEADER, "500");
                        (h, Vec::new())
                    }
                };
                let _ = me
                    .client
                    .publish_with_headers(reply, headers, body.into())
                    .await;
            });
        }
        Ok(())
    }

    async fn one<F, Fut>(&self, payload: &[u8], handle: &F) -> Result<Done, String>
    where
        F: Fn(Fetched) -> Fut,
        Fut: std::future::Future<Output = Result<Output, String>>,
    {
        let item: WorkItem = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let input = match self.fetch(&item.what).await {
            Ok(i) => i,
            // Final refusals (revoked, no grant, gone, erased): done, nothing to derive.
            Err(WorkerError::Refused {
                status: 403 | 404 | 410,
                ..
            }) => return Ok(Done { results: vec![] }),
            Err(e) => return Err(e.to_string()),
        };
        let Some(record) = handle(input).await? else {
            return Ok(Done { results: vec![] });
        };
        let r = self
            .submit(&item.what, vec![item.what.memory], record)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Done {
            results: vec![r.memory],
        })
    }
}
