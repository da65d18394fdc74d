//! The processing service: what mnemo does for a processor (fetch, result, model) and for
//! an owner (lineage, models, training-set proofs, erasure that follows lineage), whatever
//! the transport (REST in `mnemo-api`, NATS request/reply in [`crate::responder`]).
//!
//! Every fetch is checked against a live processing grant (processor, version, conditions,
//! erasure) and recorded in the owner's chain (`inputs_fetched`) before any byte is
//! returned, the rule grantee reads follow. A revocation refuses every fetch not yet made
//! at once: the chain's rules refuse the record, so no access record ever follows one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mnemo_core::grant::MemoryFacts;
use mnemo_core::processing::SetMember;
use mnemo_core::search_index::{BM25_FORMAT, Hit, SearchIndex};
use mnemo_core::{
    Content, ErasureTarget, EventBody, MemoryId, MemoryRecord, ModelId, ProcessingGrant,
    ProcessorId, TimestampMs, TrainingSetProof, UserId,
};
use mnemo_ledger::{DerivedResult, Ledger, LedgerError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{ProcessingError, Result};
use crate::models::{Artifacts, Model, Models};
use crate::protocol::*;
use crate::registry::{Processor, Registry};

/// One side of a memory's lineage.
#[derive(Clone, Debug, Serialize)]
pub struct LineageLink {
    /// The memory.
    pub memory: MemoryId,
    /// The processor that made the derived side.
    pub processor: Option<ProcessorId>,
}

/// A memory's lineage, both ways.
#[derive(Clone, Debug, Serialize)]
pub struct Lineage {
    /// The memory.
    pub memory: MemoryId,
    /// What it was derived from (empty for an ingested memory).
    pub inputs: Vec<MemoryId>,
    /// Which processor derived it, under which version (derived memories).
    pub derived_by: Option<(ProcessorId, String)>,
    /// What was derived from it, directly.
    pub outputs: Vec<MemoryId>,
    /// Everything derived from it, transitively, not erased (what erasing it also erases).
    pub closure: Vec<MemoryId>,
    /// Whether it was erased.
    pub erased: bool,
}

/// What erasing a memory did.
#[derive(Clone, Debug, Serialize)]
pub struct Erased {
    /// The erasure event's seq.
    pub seq: u64,
    /// Its hash.
    pub event_hash: mnemo_core::Hash32,
    /// The derived memories erased with it.
    pub closure: Vec<MemoryId>,
    /// The models marked stale.
    pub stale_models: Vec<ModelId>,
}

/// The service. Cheap to clone.
#[derive(Clone)]
pub struct Processing {
    /// The ledger.
    pub ledger: Ledger,
    /// The processor registry.
    pub registry: Registry,
    /// Models and training sets.
    pub models: Models,
    /// The model artifacts kept for queries.
    pub artifacts: Artifacts,
    js: async_nats::jetstream::Context,
    cursors: async_nats::jetstream::kv::Store,
    /// Search models parsed for queries, the most recently used [`QUERY_CACHE_MODELS`]
    /// (each checked against its user's index on every query, so a stale one is never
    /// served).
    query_cache: Arc<std::sync::Mutex<QueryCache>>,
}

/// Parsed search models by user and model id (a budget of [`QUERY_CACHE_MODELS`]).
type QueryCache = lru::LruCache<(UserId, ModelId), Arc<SearchModel>>;

/// A search model ready for queries: the model as kept, and its index parsed.
#[derive(Debug)]
pub struct SearchModel {
    /// The model.
    pub model: Model,
    /// Its search index.
    pub index: SearchIndex,
}

/// How many parsed search models queries keep (an index over 10,000 memories is about
/// 3 MB of JSON and more once parsed).
pub const QUERY_CACHE_MODELS: usize = 16;

impl Processing {
    /// Opens the registry and models buckets and the notice stream.
    pub async fn open(ledger: Ledger, js: async_nats::jetstream::Context) -> Result<Self> {
        let replicas = ledger.config().replicas;
        let registry = Registry::open(&js, replicas).await?;
        let models = Models::open(&js, replicas).await?;
        let artifacts = Artifacts::open(&js, replicas).await?;
        crate::queue::ensure_streams(&js, replicas).await?;
        let cursors = crate::planner::open_cursors(&js, replicas).await?;
        Ok(Self {
            query_cache: Arc::new(std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(QUERY_CACHE_MODELS).expect("non-zero"),
            ))),
            ledger,
            registry,
            models,
            artifacts,
            js,
            cursors,
        })
    }

    /// Enrolls `user`'s chain with the planner: call it before appending a processing
    /// grant, so that a planner that misses the append still plans the chain.
    pub async fn enroll(&self, user: &UserId) -> Result<()> {
        crate::planner::Planner::enroll(&self.cursors, user).await
    }

    /// `user` lets registered, unrevoked processor `name` process memories: enrolls the
    /// chain with the planner, then appends `processing_granted` naming the processor's
    /// key. Returns the grant id and the event's receipt.
    pub async fn grant(
        &self,
        user: &UserId,
        name: &ProcessorId,
        version: Option<String>,
        conditions: mnemo_core::GrantConditions,
        expires_at: Option<TimestampMs>,
    ) -> Result<(mnemo_core::GrantId, mnemo_ledger::Receipt)> {
        let p = self.registry.require(name).await?;
        self.enroll(user).await?;
        let grant = mnemo_core::GrantId(rand::random());
        let receipt = self
            .ledger
            .append_event(
                user,
                EventBody::ProcessingGranted {
                    grant,
                    processor: p.name,
                    version,
                    key: p.public_key,
                    conditions,
                    expires_at,
                },
                None,
            )
            .await?;
        Ok((grant, receipt))
    }

    /// The processing grant `grant` of `user`'s chain, if it is `processor`'s.
    async fn grant_of(
        &self,
        user: &UserId,
        grant: &mnemo_core::GrantId,
        p: &Processor,
    ) -> Result<ProcessingGrant> {
        let g = self
            .ledger
            .with_rules(user, |s| s.processing_grant(grant).cloned())
            .await
            .map_err(not_found_user)?;
        check_grant(g, user, grant, p)
    }

    /// A processor fetches a memory: checked, recorded in the owner's chain, then returned.
    pub async fn fetch(&self, processor: &ProcessorId, r: &FetchRequest) -> Result<Fetched> {
        let p = self.registry.require(processor).await?;
        // A look-up the record repeats: the record decides (a grant revoked meanwhile, by
        // this instance or another, makes it fail and nothing is returned). The state this
        // process holds may miss memories ingested since its last ruled write: then the
        // settled chain is asked.
        let look = |s: &mnemo_core::ChainState| {
            (
                s.processing_grant(&r.grant).cloned(),
                s.has_memory(&r.memory),
                s.is_erased(&r.memory),
                s.seq_of(&r.memory),
            )
        };
        let mut found = self
            .ledger
            .peek_rules(&r.user, look)
            .await
            .map_err(not_found_user)?;
        if found.0.is_none() || !found.1 || found.3.is_none() {
            found = self
                .ledger
                .with_rules(&r.user, look)
                .await
                .map_err(not_found_user)?;
        }
        let (g, known, erased, seq) = found;
        let g = check_grant(g, &r.user, &r.grant, &p)?;
        match (known, erased) {
            (false, _) => return Err(ProcessingError::NotFound(format!("no memory {}", r.memory))),
            (true, true) => return Err(LedgerError::Erased(r.memory).into()),
            _ => {}
        }
        let input = self
            .ledger
            .open_for_processing(&r.user, &r.memory, seq)
            .await?;
        let rec = &input.opened.record;
        let facts = MemoryFacts {
            id: r.memory,
            kind: &rec.kind,
            tags: &rec.tags,
            captured_at: rec.captured_at,
            ingested_at: input.ingested_at,
            erased: false,
        };
        if !p.consumes_kind(&rec.kind) {
            return Err(ProcessingError::NotAllowed(format!(
                "processor {} does not take memories of kind {}",
                p.name, rec.kind
            )));
        }
        g.allows(&facts, crate::now_ms())
            .map_err(|e| ProcessingError::NotAllowed(format!("grant {} {}", g.id, e.reason())))?;
        // Recorded first; the chain's rules refuse the record if the grant was revoked in
        // the meantime, and then nothing is returned.
        let receipt = self
            .ledger
            .record_fetch(&r.user, r.grant, vec![r.memory])
            .await
            .map_err(|e| match e {
                LedgerError::Refused(c) => {
                    ProcessingError::NotAllowed(format!("the chain refuses the fetch: {c}"))
                }
                other => other.into(),
            })?;
        Ok(Fetched {
            user: r.user.clone(),
            memory: r.memory,
            seq: input.opened.seq.0,
            event_hash: input.event_hash,
            kind: rec.kind.clone(),
            tags: rec.tags.clone(),
            content_type: rec.content_type.clone(),
            captured_at: rec.captured_at.map(|t| t.0),
            content: B64.encode(&input.opened.content),
            recorded_seq: receipt.seq.0,
        })
    }

    /// A processor records a result (a derived memory). Idempotent per processor, version
    /// and inputs: a repeat returns the original receipt.
    pub async fn submit(&self, processor: &ProcessorId, r: SubmitRequest) -> Result<Recorded> {
        let p = self.registry.require(processor).await?;
        // Held to the registration: the version it is registered with (the chain's rule
        // then allows one result per version and inputs), and a kind it declares.
        if r.version != p.version {
            return Err(ProcessingError::NotAllowed(format!(
                "processor {} is registered with version {:?}, not {:?}",
                p.name, p.version, r.version
            )));
        }
        if !p.produces_kind(&r.record.kind) {
            return Err(ProcessingError::NotAllowed(format!(
                "processor {} declares it produces {:?}, not {:?}",
                p.name, p.produces, r.record.kind
            )));
        }
        let mut salt = [0u8; 32];
        hex::decode_to_slice(&r.salt, &mut salt)
            .map_err(|_| ProcessingError::Invalid("salt must be 64 hex characters".into()))?;
        let content = B64
            .decode(&r.record.content)
            .map_err(|e| ProcessingError::Invalid(format!("record.content: {e}")))?;
        let receipt = self
            .ledger
            .append_derived(
                &r.user,
                DerivedResult {
                    processor: Some(p.name.clone()),
                    grant: r.grant,
                    version: r.version,
                    inputs: r.inputs,
                    record: MemoryRecord {
                        kind: r.record.kind,
                        tags: r.record.tags,
                        captured_at: r.record.captured_at.map(TimestampMs),
                        source: r.record.source,
                        content_type: r.record.content_type,
                        content: Content::Inline { bytes: content },
                    },
                    salt,
                    signature: r.signature,
                },
            )
            .await
            .map_err(|e| match e {
                LedgerError::Refused(mnemo_core::ChainError::BadGrant {
                    grant, reason, ..
                }) if reason == mnemo_ledger::NOT_THIS_PROCESSOR => {
                    ProcessingError::NotAllowed(format!("grant {grant} {reason}"))
                }
                LedgerError::UnknownUser(u) => ProcessingError::NotFound(format!("no user {u}")),
                other => other.into(),
            })?;
        Ok(Recorded {
            memory: receipt.memory.expect("a derived memory's receipt names it"),
            seq: receipt.seq.0,
            event_hash: receipt.hash,
            duplicate: receipt.duplicate,
        })
    }

    /// A processor records a trained model: its training set is the memories named, each
    /// fetched under the grant; the commitment is computed here from the chain and must be
    /// what the processor signed.
    pub async fn record_model(
        &self,
        processor: &ProcessorId,
        r: ModelRequest,
    ) -> Result<ModelRecorded> {
        let p = self.registry.require(processor).await?;
        let g = self.grant_of(&r.user, &r.grant, &p).await?;
        let wanted: std::collections::HashSet<MemoryId> = r.inputs.iter().copied().collect();
        if wanted.len() != r.inputs.len() || wanted.is_empty() {
            return Err(ProcessingError::Invalid(
                "inputs must name 1 or more memories, once each".into(),
            ));
        }
        let (unfetched, erased, seqs) = self
            .ledger
            .with_rules(&r.user, |s| {
                (
                    r.inputs.iter().find(|m| !s.was_fetched(&g.id, m)).copied(),
                    r.inputs.iter().find(|m| s.is_erased(m)).copied(),
                    r.inputs
                        .iter()
                        .map(|m| s.seq_of(m).map(|seq| (*m, seq)))
                        .collect::<Option<Vec<_>>>(),
                )
            })
            .await?;
        if let Some(m) = unfetched {
            return Err(ProcessingError::NotAllowed(format!(
                "memory {m} was not fetched under grant {}",
                g.id
            )));
        }
        // A model of erased memories is never recorded (410 names the first one).
        if let Some(m) = erased {
            return Err(LedgerError::Erased(m).into());
        }
        // Each member's event, read directly at its seq (the chain's rule state knows it).
        let seqs = seqs.ok_or_else(|| {
            ProcessingError::NotFound("a training-set member is not a memory of the chain".into())
        })?;
        let mut members = Vec::with_capacity(seqs.len());
        for (m, seq) in seqs {
            let e = self.ledger.memory_event_at(&r.user, &m, seq).await?;
            members.push((
                m,
                SetMember {
                    seq: e.event.seq,
                    event_hash: e.hash,
                },
            ));
        }
        members.sort_by_key(|(_, m)| m.seq);
        let set = mnemo_core::TrainingSet::new(members.iter().map(|(_, m)| *m).collect())
            .ok_or_else(|| ProcessingError::Invalid("an empty training set".into()))?;
        // The artifact to keep, checked before anything is written.
        let kept = match (&r.object, &r.format) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ProcessingError::Invalid(
                    "an object needs its format".into(),
                ));
            }
            (Some(o), Some(format)) => {
                let bytes = B64
                    .decode(o)
                    .map_err(|e| ProcessingError::Invalid(format!("object: {e}")))?;
                if blake3::hash(&bytes).as_bytes() != &r.artifact.0 {
                    return Err(ProcessingError::Invalid(
                        "the object's BLAKE3 hash is not the artifact hash".into(),
                    ));
                }
                if format == BM25_FORMAT {
                    check_index(&bytes, &members)?;
                }
                self.artifacts.put(&r.user, &r.artifact, &bytes).await?;
                Some(format.clone())
            }
        };
        let (model, receipt) = self
            .ledger
            .append_model(
                &r.user,
                r.grant,
                r.version.clone(),
                r.artifact,
                &set,
                r.signature,
            )
            .await?;
        self.models
            .put(&Model {
                id: model,
                user: r.user.clone(),
                processor: p.name.clone(),
                grant: r.grant,
                version: r.version,
                artifact: r.artifact,
                set_root: set.root(),
                set_count: set.count(),
                seq: receipt.seq.0,
                members,
                stale: None,
                erased: Vec::new(),
                kept,
            })
            .await?;
        Ok(ModelRecorded {
            model,
            seq: receipt.seq.0,
            event_hash: receipt.hash,
            set_root: set.root(),
            set_count: set.count(),
        })
    }

    /// A memory's lineage, both ways.
    pub async fn lineage(&self, user: &UserId, memory: &MemoryId) -> Result<Lineage> {
        let l = self
            .ledger
            .with_rules(user, |s| {
                s.has_memory(memory).then(|| {
                    let inputs = s.inputs_of(memory).map(<[_]>::to_vec).unwrap_or_default();
                    (
                        inputs,
                        s.outputs_of(memory).to_vec(),
                        s.closure(memory),
                        s.is_erased(memory),
                    )
                })
            })
            .await?
            .ok_or_else(|| ProcessingError::NotFound(format!("no memory {memory}")))?;
        let derived_by = if l.0.is_empty() {
            None
        } else {
            let e = self.ledger.memory_event(user, memory).await?;
            match &e.event.body {
                EventBody::MemoryDerived { grant, version, .. } => self
                    .ledger
                    .with_rules(user, |s| {
                        s.processing_grant(grant).map(|g| g.processor.clone())
                    })
                    .await?
                    .map(|p| (p, version.clone())),
                _ => None,
            }
        };
        let mut outputs = l.1;
        outputs.sort();
        Ok(Lineage {
            memory: *memory,
            inputs: l.0,
            derived_by,
            outputs,
            closure: l.2,
            erased: l.3,
        })
    }

    /// The proof that `memory` is, or is not, in model `model`'s training set.
    pub async fn training_proof(
        &self,
        user: &UserId,
        model: &ModelId,
        memory: &MemoryId,
    ) -> Result<TrainingSetProof> {
        let m = self
            .models
            .get(user, model)
            .await?
            .ok_or_else(|| ProcessingError::NotFound(format!("no model {model}")))?;
        let e = self.ledger.memory_event(user, memory).await?;
        let set = m
            .set()
            .ok_or_else(|| ProcessingError::Invalid(format!("model {model}: empty set")))?;
        Ok(set.prove(e.event.seq, e.hash))
    }

    /// Erases a memory and everything derived from it; marks the models trained on any of
    /// them stale and tells their processors (`mnemo.notice.<processor>`).
    pub async fn erase(&self, user: &UserId, memory: &MemoryId, reason: &str) -> Result<Erased> {
        mnemo_core::values::check_reason(reason).map_err(|e| ProcessingError::Invalid(e.into()))?;
        let (receipt, closure) = self.ledger.erase_lineage(user, memory, reason).await?;
        let mut all = closure.clone();
        all.push(*memory);
        let why = format!(
            "memory {memory} was erased at seq {} ({} derived with it){}",
            receipt.seq,
            closure.len(),
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        );
        let stale = self.mark_stale(user, |id| all.contains(id), &why).await?;
        Ok(Erased {
            seq: receipt.seq.0,
            event_hash: receipt.hash,
            closure,
            stale_models: stale,
        })
    }

    /// Erases every memory of `user`: every model of theirs goes stale.
    pub async fn erase_all(&self, user: &UserId) -> Result<Erased> {
        let receipt = self.ledger.erase(user, ErasureTarget::All).await?;
        let why = format!("every memory was erased at seq {}", receipt.seq);
        let stale = self.mark_stale(user, |_| true, &why).await?;
        Ok(Erased {
            seq: receipt.seq.0,
            event_hash: receipt.hash,
            closure: Vec::new(),
            stale_models: stale,
        })
    }

    async fn mark_stale(
        &self,
        user: &UserId,
        erased: impl Fn(&MemoryId) -> bool,
        why: &str,
    ) -> Result<Vec<ModelId>> {
        let hit = |m: &Model| m.members.iter().any(|(id, _)| erased(id));
        let mut out = Vec::new();
        let mut by_processor: HashMap<ProcessorId, Vec<ModelId>> = HashMap::new();
        for mut m in self.models.of_user(user).await? {
            if m.stale.is_some() || !hit(&m) {
                continue;
            }
            m.stale = Some(why.to_owned());
            m.erased = m
                .members
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| erased(id))
                .collect();
            // What the artifact holds came from erased memories: it goes first.
            if m.kept.take().is_some() {
                self.artifacts.delete(user, &m.artifact).await?;
            }
            self.models.put(&m).await?;
            by_processor
                .entry(m.processor.clone())
                .or_default()
                .push(m.id);
            out.push(m.id);
        }
        for (p, models) in by_processor {
            let notice = serde_json::json!({
                "notice": "models_stale", "user": user, "models": models, "reason": why,
            });
            // The notice is a wake-up; `stale` (below) is the durable answer.
            self.js
                .publish(
                    format!("{}.{p}", mnemo_core::names::NOTICE_PREFIX),
                    serde_json::to_vec(&notice).expect("serialisable").into(),
                )
                .await
                .map_err(|e| ProcessingError::nats("publish a stale-model notice", e))?
                .await
                .map_err(|e| ProcessingError::nats("publish a stale-model notice", e))?;
        }
        Ok(out)
    }
}

impl Processing {
    /// `processor`'s models to retrain: for each user, its newest model, if an erasure
    /// reached it.
    pub async fn stale(&self, processor: &ProcessorId) -> Result<StaleModels> {
        self.registry.require(processor).await?;
        let mut newest: std::collections::BTreeMap<UserId, Model> = Default::default();
        for m in self.models.all().await? {
            if &m.processor == processor {
                newest.insert(m.user.clone(), m);
            }
        }
        Ok(StaleModels {
            stale: newest
                .into_values()
                .filter_map(|m| {
                    Some(StaleModel {
                        reason: m.stale?,
                        user: m.user,
                        model: m.id,
                        grant: m.grant,
                        erased: m.erased,
                    })
                })
                .collect(),
        })
    }

    /// The model a query is put to: `model`, or with none the user's newest model whose
    /// artifact mnemo keeps as a search index. One read of the user's index, then the
    /// model from the query cache or the bucket.
    pub async fn model_for_query(&self, user: &UserId, model: Option<&ModelId>) -> Result<Model> {
        Ok(self.searchable(user, model).await?.model.clone())
    }

    async fn searchable(&self, user: &UserId, model: Option<&ModelId>) -> Result<Arc<SearchModel>> {
        let index = self.models.index(user).await?;
        let brief = match model {
            Some(id) => index
                .models
                .iter()
                .find(|b| b.id == *id)
                .ok_or_else(|| ProcessingError::NotFound(format!("no model {id}")))?,
            None => index
                .models
                .iter()
                .rev()
                .find(|b| b.kept.as_deref() == Some(BM25_FORMAT))
                .ok_or_else(|| {
                    ProcessingError::NotFound(format!("{user} has no search model yet"))
                })?,
        };
        if brief.stale {
            return Err(ProcessingError::Stale(format!(
                "model {} is stale and its artifact deleted; ask the newest model",
                brief.id
            )));
        }
        if brief.kept.as_deref() != Some(BM25_FORMAT) {
            return Err(ProcessingError::NotFound(format!(
                "model {} has no search index mnemo keeps",
                brief.id
            )));
        }
        let k = (user.clone(), brief.id);
        if let Some(hit) = self.query_cache.lock().expect("not poisoned").get(&k) {
            return Ok(hit.clone());
        }
        let m = self
            .models
            .get(user, &brief.id)
            .await?
            .ok_or_else(|| ProcessingError::NotFound(format!("no model {}", brief.id)))?;
        if let Some(why) = &m.stale {
            return Err(ProcessingError::Stale(format!(
                "model {} is stale and its artifact deleted ({why}); ask the newest model",
                m.id
            )));
        }
        let bytes = self
            .artifacts
            .get(user, &m.artifact)
            .await?
            .ok_or_else(|| ProcessingError::NotFound(format!("model {}: no artifact", m.id)))?;
        let index: SearchIndex = serde_json::from_slice(&bytes)
            .map_err(|e| ProcessingError::Invalid(format!("model {}: {e}", m.id)))?;
        let entry = Arc::new(SearchModel { model: m, index });
        self.query_cache
            .lock()
            .expect("not poisoned")
            .put(k, entry.clone());
        Ok(entry)
    }

    /// Answers `query` from `user`'s model (see [`Processing::model_for_query`]): the `k`
    /// best memories it drew on, each a member of its training set.
    pub async fn query(
        &self,
        user: &UserId,
        model: Option<&ModelId>,
        query: &str,
        k: usize,
    ) -> Result<(Arc<SearchModel>, Vec<Hit>)> {
        let entry = self.searchable(user, model).await?;
        let hits = entry.index.search(query, k);
        Ok((entry, hits))
    }
}

/// Checks a search index against the training set it claims: the same memories, seqs
/// and event hashes.
fn check_index(bytes: &[u8], members: &[(MemoryId, SetMember)]) -> Result<()> {
    let index: SearchIndex = serde_json::from_slice(bytes)
        .map_err(|e| ProcessingError::Invalid(format!("object: not a {BM25_FORMAT} index: {e}")))?;
    index
        .check()
        .map_err(|e| ProcessingError::Invalid(format!("object: {e}")))?;
    let docs: Vec<_> = index.docs.iter().map(|d| (d.memory, d.member)).collect();
    if docs != members {
        return Err(ProcessingError::Invalid(
            "object: the index's documents are not the training set".into(),
        ));
    }
    Ok(())
}

/// The processing grant `grant` (as the chain holds it) if it is `p`'s, for its version,
/// and live now.
fn check_grant(
    g: Option<ProcessingGrant>,
    user: &UserId,
    grant: &mnemo_core::GrantId,
    p: &Processor,
) -> Result<ProcessingGrant> {
    let g = g.ok_or_else(|| {
        ProcessingError::NotAllowed(format!("{user} has no processing grant {grant}"))
    })?;
    if g.processor != p.name {
        return Err(ProcessingError::NotAllowed(format!(
            "grant {grant} is not given to processor {}",
            p.name
        )));
    }
    if !g.allows_version(&p.version) {
        return Err(ProcessingError::NotAllowed(format!(
            "grant {grant} does not allow version {} of {}",
            p.version, p.name
        )));
    }
    g.live(crate::now_ms())
        .map_err(|r| ProcessingError::NotAllowed(format!("grant {grant} {}", r.reason())))?;
    Ok(g)
}

fn not_found_user(e: LedgerError) -> ProcessingError {
    match e {
        LedgerError::UnknownUser(u) => ProcessingError::NotFound(format!("no user {u}")),
        other => other.into(),
    }
}
