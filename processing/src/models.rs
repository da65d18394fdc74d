//! Models and their training sets, in the KV bucket `mnemo-models` (`<user>.<model>`): the
//! chain holds each model's commitment (`model_trained`: root and count), this bucket the
//! members, so that a user can be given an inclusion or exclusion proof and a model is
//! marked stale when an erasure reaches one of its members; and the artifacts a processor
//! asked mnemo to keep, in the object store `mnemo-model-objects`, deleted when stale.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use mnemo_core::names::{MODEL_OBJECTS_BUCKET, MODELS_BUCKET};
use mnemo_core::processing::{SetMember, TrainingSet};
use mnemo_core::{GrantId, Hash32, MemoryId, ModelId, ProcessorId, Seq, UserId};
use serde::{Deserialize, Serialize};

use crate::error::{ProcessingError, Result};

/// A model as mnemo keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Model {
    /// Its id.
    pub id: ModelId,
    /// Whose.
    pub user: UserId,
    /// The processor that trained it.
    pub processor: ProcessorId,
    /// Under which processing grant.
    pub grant: GrantId,
    /// The model version.
    pub version: String,
    /// Hash of the artifact.
    pub artifact: Hash32,
    /// The training-set root (as in the chain).
    pub set_root: Hash32,
    /// The training-set size.
    pub set_count: u64,
    /// The seq of its `model_trained` event.
    pub seq: u64,
    /// The members: memory, seq and event hash, ascending seq.
    pub members: Vec<(MemoryId, SetMember)>,
    /// Why it is stale, once an erasure reached a member.
    pub stale: Option<String>,
    /// The members an erasure reached (what a retraining leaves out).
    #[serde(default)]
    pub erased: Vec<MemoryId>,
    /// The artifact's format, when mnemo keeps the artifact (deleted once stale).
    #[serde(default)]
    pub kept: Option<String>,
}

impl Model {
    /// The training set's tree.
    pub fn set(&self) -> Option<TrainingSet> {
        TrainingSet::new(self.members.iter().map(|(_, m)| *m).collect())
    }

    /// Whether `memory` is a member.
    pub fn has(&self, memory: &MemoryId) -> bool {
        self.members.iter().any(|(m, _)| m == memory)
    }

    /// The member of seq `seq`.
    pub fn member_at(&self, seq: Seq) -> Option<&SetMember> {
        self.members.iter().map(|(_, m)| m).find(|m| m.seq == seq)
    }
}

/// The models bucket. Cheap to clone.
#[derive(Clone)]
pub struct Models {
    kv: kv::Store,
}

fn key(user: &UserId, model: &ModelId) -> String {
    format!("{user}.{model}")
}

impl Models {
    /// Opens (creating when missing) the bucket.
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self> {
        let kv = mnemo_ledger::provision::ensure_kv(
            js,
            kv::Config {
                bucket: MODELS_BUCKET.into(),
                description: "mnemo models and their training sets".into(),
                history: 1,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                max_value_size: -1,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self { kv })
    }

    /// Stores a model.
    pub async fn put(&self, m: &Model) -> Result<()> {
        self.kv
            .put(
                key(&m.user, &m.id),
                serde_json::to_vec(m).expect("serialisable").into(),
            )
            .await
            .map_err(|e| ProcessingError::nats("store a model", e))?;
        Ok(())
    }

    /// One model of `user`.
    pub async fn get(&self, user: &UserId, id: &ModelId) -> Result<Option<Model>> {
        let v = self
            .kv
            .get(key(user, id))
            .await
            .map_err(|e| ProcessingError::nats("read a model", e))?;
        v.map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| ProcessingError::Invalid(format!("stored model {id}: {e}")))
        })
        .transpose()
    }

    /// Every model of `user`, oldest first.
    pub async fn of_user(&self, user: &UserId) -> Result<Vec<Model>> {
        self.matching(Some(user)).await
    }

    /// Every model, by user then oldest first.
    pub async fn all(&self) -> Result<Vec<Model>> {
        self.matching(None).await
    }

    async fn matching(&self, user: Option<&UserId>) -> Result<Vec<Model>> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| ProcessingError::nats("list models", e))?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(|e| ProcessingError::nats("list models", e))?;
            let Some((u, id)) = k.split_once('.') else {
                continue;
            };
            if user.is_some_and(|user| user.as_str() != u) {
                continue;
            }
            if let (Ok(u), Ok(id)) = (UserId::new(u), ModelId::from_hex(id))
                && let Some(m) = self.get(&u, &id).await?
            {
                out.push(m);
            }
        }
        out.sort_by(|a, b| a.user.cmp(&b.user).then(a.seq.cmp(&b.seq)));
        Ok(out)
    }
}

/// The artifacts mnemo keeps (object store `mnemo-model-objects`, one object per
/// `<user>.<artifact hex>`), for queries. Cheap to clone.
#[derive(Clone)]
pub struct Artifacts {
    store: jetstream::object_store::ObjectStore,
}

fn object_name(user: &UserId, artifact: &Hash32) -> String {
    format!("{user}.{}", hex::encode(artifact.0))
}

impl Artifacts {
    /// Opens (creating when missing) the object store.
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self> {
        let store = mnemo_ledger::provision::ensure_object_store(
            js,
            jetstream::object_store::Config {
                bucket: MODEL_OBJECTS_BUCKET.into(),
                description: Some("mnemo model artifacts, for queries".into()),
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self { store })
    }

    /// Keeps `bytes` as `user`'s artifact `artifact`.
    pub async fn put(&self, user: &UserId, artifact: &Hash32, bytes: &[u8]) -> Result<()> {
        let mut r = bytes;
        self.store
            .put(object_name(user, artifact).as_str(), &mut r)
            .await
            .map_err(|e| ProcessingError::nats("store a model artifact", e))?;
        Ok(())
    }

    /// The artifact's bytes, if kept; checked against its hash.
    pub async fn get(&self, user: &UserId, artifact: &Hash32) -> Result<Option<Vec<u8>>> {
        use tokio::io::AsyncReadExt;
        let mut o = match self.store.get(object_name(user, artifact)).await {
            Ok(o) => o,
            Err(e) if e.kind() == jetstream::object_store::GetErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(ProcessingError::nats("read a model artifact", e)),
        };
        let mut out = Vec::new();
        o.read_to_end(&mut out)
            .await
            .map_err(|e| ProcessingError::nats("read a model artifact", e))?;
        if blake3::hash(&out).as_bytes() != &artifact.0 {
            return Err(ProcessingError::Invalid(format!(
                "the stored artifact of {user} does not hash to {}",
                hex::encode(artifact.0)
            )));
        }
        Ok(Some(out))
    }

    /// Deletes the artifact (an erasure reached its training set).
    pub async fn delete(&self, user: &UserId, artifact: &Hash32) -> Result<()> {
        match self.store.delete(object_name(user, artifact)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == jetstream::object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(ProcessingError::nats("delete a model artifact", e)),
        }
    }
}
