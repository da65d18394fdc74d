//! The requests a worker sends (docs/WORKERS.md §4 to §6): fetch an input, submit a signed
//! result, record a signed model, list stale models. Each carries the processor's token;
//! a refusal comes back as [`WorkerError::Refused`] with mnemo's status and detail.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mnemo_core::names::PROC_PREFIX;
use mnemo_core::processing::{ModelClaim, SetMember, TrainingSet};
use mnemo_core::{
    Content, Hash32, MemoryId, MemoryRecord, ProcessorId, SigningKey, TimestampMs, commitment,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

use crate::error::WorkerError;
use crate::protocol::*;

/// A connected processor: its NATS connection, name, version, token and signing key.
/// Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    pub(crate) client: async_nats::Client,
    /// The processor's name.
    pub processor: ProcessorId,
    /// Its version.
    pub version: String,
    token: Arc<str>,
    key: Arc<SigningKey>,
}

/// A model to record: its artifact and the training set's members as fetched.
pub struct ModelArtifact {
    /// The model version.
    pub version: String,
    /// The artifact's bytes (mnemo keeps them when `keep` is set).
    pub bytes: Vec<u8>,
    /// Its format name (`mnemo-bm25-v1` for the trainer's).
    pub format: String,
    /// Whether mnemo should keep the bytes and answer queries from them.
    pub keep: bool,
    /// The training set: memory, and the seq and event hash its fetch returned.
    pub members: Vec<(MemoryId, SetMember)>,
}

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
            token: token.into(),
            key: Arc::new(key),
        }
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.client
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

    /// Signs and submits a result derived from `inputs` of `task`'s user.
    pub async fn submit(
        &self,
        task: &Task,
        mut inputs: Vec<MemoryId>,
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

    /// Signs and records a model of `task`'s user (its grant) trained on `model.members`.
    pub async fn record_model(
        &self,
        user: &mnemo_core::UserId,
        grant: &mnemo_core::GrantId,
        mut model: ModelArtifact,
    ) -> Result<ModelRecorded, WorkerError> {
        model.members.sort_by_key(|(_, m)| m.seq);
        let set = TrainingSet::new(model.members.iter().map(|(_, m)| *m).collect())
            .ok_or_else(|| WorkerError::Config("a model needs a training set".into()))?;
        let artifact = Hash32(*blake3::hash(&model.bytes).as_bytes());
        let msg = mnemo_core::processing::model_signing_message(&ModelClaim {
            user,
            grant,
            processor: &self.processor,
            version: &model.version,
            artifact: &artifact,
            set_root: &set.root(),
            set_count: set.count(),
        });
        let signature = mnemo_core::processing::sign(&self.key, &msg);
        let recorded: ModelRecorded = self
            .call(
                "model",
                &ModelRequest {
                    user: user.clone(),
                    grant: *grant,
                    version: model.version,
                    artifact,
                    inputs: model.members.iter().map(|(m, _)| *m).collect(),
                    signature,
                    object: model.keep.then(|| B64.encode(&model.bytes)),
                    format: model.keep.then_some(model.format),
                },
            )
            .await?;
        if recorded.set_root != set.root() {
            return Err(WorkerError::BadAnswer(
                "mnemo recorded another training-set root than the one signed".into(),
            ));
        }
        Ok(recorded)
    }

    /// The processor's models an erasure made stale (the newest of each user).
    pub async fn stale_models(&self) -> Result<StaleModels, WorkerError> {
        self.call("stale", &serde_json::json!({})).await
    }
}
