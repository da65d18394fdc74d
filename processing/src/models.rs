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

/// One user's models in brief (key `<user>.index`): what a query and a listing need
/// without scanning the bucket (which opens a consumer and reads every user's keys).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelIndex {
    /// The user's models, by seq.
    pub models: Vec<ModelBrief>,
}

/// A model in brief.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelBrief {
    /// Its id.
    pub id: ModelId,
    /// The seq of its `model_trained` event.
    pub seq: u64,
    /// The kept artifact's format, while kept.
    pub kept: Option<String>,
    /// Whether an erasure made it stale.
    pub stale: bool,
}

impl ModelBrief {
    fn of(m: &Model) -> Self {
        Self {
            id: m.id,
            seq: m.seq,
            kept: m.kept.clone(),
            stale: m.stale.is_some(),
        }
    }
}

fn key(user: &UserId, model: &ModelId) -> String {
    format!("{user}.{model}")
}

fn index_key(user: &UserId) -> String {
    format!("{user}.index")
}

/// Set once every user's index was built from the bucket (models stored before indexes).
const INDEXED_MARKER: &str = "indexes.v1";

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
        let models = Self { kv };
        models.backfill_indexes().await?;
        Ok(models)
    }

    /// Builds every user's index from the bucket, once (a scan at start, never on a
    /// request): models stored before the indexes existed.
    async fn backfill_indexes(&self) -> Result<()> {
        let done = self
            .kv
            .get(INDEXED_MARKER)
            .await
            .map_err(|e| ProcessingError::nats("read the models' index marker", e))?;
        if done.is_some() {
            return Ok(());
        }
        for m in self.matching(None).await? {
            self.index_upsert(&m).await?;
        }
        self.kv
            .put(INDEXED_MARKER, bytes::Bytes::from_static(b"1"))
            .await
            .map_err(|e| ProcessingError::nats("mark the models indexed", e))?;
        Ok(())
    }

    /// Stores a model, and its brief in its user's index.
    pub async fn put(&self, m: &Model) -> Result<()> {
        self.kv
            .put(
                key(&m.user, &m.id),
                serde_json::to_vec(m).expect("serialisable").into(),
            )
            .await
            .map_err(|e| ProcessingError::nats("store a model", e))?;
        self.index_upsert(m).await
    }

    /// Puts `m`'s brief in its user's index (compare-and-set: concurrent writers retry).
    async fn index_upsert(&self, m: &Model) -> Result<()> {
        let k = index_key(&m.user);
        for _ in 0..32 {
            let entry = self
                .kv
                .entry(k.clone())
                .await
                .map_err(|e| ProcessingError::nats("read a models index", e))?;
            let (mut index, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => (
                    serde_json::from_slice::<ModelIndex>(&e.value).map_err(|e| {
                        ProcessingError::Invalid(format!("stored models index: {e}"))
                    })?,
                    Some(e.revision),
                ),
                _ => (ModelIndex::default(), None),
            };
            let brief = ModelBrief::of(m);
            match index.models.iter_mut().find(|b| b.id == m.id) {
                Some(b) if *b == brief => return Ok(()),
                Some(b) => *b = brief,
                None => index.models.push(brief),
            }
            index.models.sort_by_key(|b| b.seq);
            let bytes: bytes::Bytes = serde_json::to_vec(&index).expect("serialisable").into();
            let written = match revision {
                Some(r) => self.kv.update(&k, bytes, r).await.is_ok(),
                None => self.kv.create(&k, bytes).await.is_ok(),
            };
            if written {
                return Ok(());
            }
        }
        Err(ProcessingError::nats(
            "update a models index",
            "too many concurrent writers; retry",
        ))
    }

    /// `user`'s models in brief, by seq (one read).
    pub async fn index(&self, user: &UserId) -> Result<ModelIndex> {
        let v = self
            .kv
            .get(index_key(user))
            .await
            .map_err(|e| ProcessingError::nats("read a models index", e))?;
        v.map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| ProcessingError::Invalid(format!("stored models index: {e}")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
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

    /// Every model of `user`, oldest first: its index, then each model (no scan).
    pub async fn of_user(&self, user: &UserId) -> Result<Vec<Model>> {
        let mut out = Vec::new();
        for b in self.index(user).await?.models {
            if let Some(m) = self.get(user, &b.id).await? {
                out.push(m);
            }
        }
        Ok(out)
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
