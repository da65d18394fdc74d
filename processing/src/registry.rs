//! The processor registry: registered services with their own identity, in the KV bucket
//! `mnemo-processors` (name -> [`Processor`]). Registering makes the processor's Ed25519
//! key pair (it signs results; the seed is handed out once and never stored); revoking
//! marks it revoked, and every fetch, result and task of it is refused from then on. Each
//! instance keeps the registry in memory, kept current by a watch on the bucket: a
//! revocation takes effect at once on the instance that made it and within the watch's
//! delivery (milliseconds) on the others; while the watch is down, every look-up reads
//! the bucket.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use mnemo_core::names::PROCESSORS_BUCKET;
use mnemo_core::{ProcessorId, PublicKey, SigningKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{ProcessingError, Result};

/// A registered processor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processor {
    /// Its name (a NATS subject token).
    pub name: ProcessorId,
    /// Its version (results name it; a grant may pin it).
    pub version: String,
    /// Memory kinds it takes (empty: any the grant covers).
    pub consumes: Vec<String>,
    /// Memory kinds it makes (empty: undeclared, any; declared, every result is held to
    /// them).
    pub produces: Vec<String>,
    /// The public half of the key it signs results with.
    pub public_key: PublicKey,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it was registered (ms).
    pub registered_at: i64,
}

impl Processor {
    /// Whether it takes memories of `kind`.
    pub fn consumes_kind(&self, kind: &str) -> bool {
        self.consumes.is_empty() || self.consumes.iter().any(|k| k == kind)
    }

    /// Whether it may record results of `kind`.
    pub fn produces_kind(&self, kind: &str) -> bool {
        self.produces.is_empty() || self.produces.iter().any(|k| k == kind)
    }
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    kv: kv::Store,
    cache: Arc<Cache>,
}

#[derive(Default)]
struct Cache {
    /// Whether the watch is up (else the map is empty and look-ups read the bucket).
    live: AtomicBool,
    map: RwLock<HashMap<ProcessorId, Processor>>,
}

impl Cache {
    fn put(&self, p: &Processor) {
        self.map
            .write()
            .expect("not poisoned")
            .insert(p.name.clone(), p.clone());
    }
}

/// Keeps `cache` current from the bucket; on a broken watch, empties it and watches again.
async fn watch(kv: kv::Store, cache: std::sync::Weak<Cache>) {
    loop {
        let Some(c) = cache.upgrade() else { return };
        match kv.watch_with_history(">").await {
            Ok(mut w) => {
                c.live.store(true, Ordering::SeqCst);
                drop(c);
                while let Some(e) = w.next().await {
                    let Some(c) = cache.upgrade() else { return };
                    let Ok(e) = e else { break };
                    let Ok(name) = ProcessorId::new(e.key.clone()) else {
                        continue;
                    };
                    let mut map = c.map.write().expect("not poisoned");
                    match (e.operation, serde_json::from_slice::<Processor>(&e.value)) {
                        (kv::Operation::Put, Ok(p)) => {
                            map.insert(name, p);
                        }
                        _ => {
                            map.remove(&name);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "watching the processor registry"),
        }
        let Some(c) = cache.upgrade() else { return };
        c.live.store(false, Ordering::SeqCst);
        c.map.write().expect("not poisoned").clear();
        drop(c);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

impl Registry {
    /// Opens (creating when missing) the registry bucket.
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self> {
        let kv = mnemo_ledger::provision::ensure_kv(
            js,
            kv::Config {
                bucket: PROCESSORS_BUCKET.into(),
                description: "mnemo registered processors".into(),
                history: 5,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let cache = Arc::new(Cache::default());
        tokio::spawn(watch(kv.clone(), Arc::downgrade(&cache)));
        Ok(Self { kv, cache })
    }

    /// Registers a processor; returns it and its signing key (shown once, never stored).
    pub async fn register(
        &self,
        name: ProcessorId,
        version: String,
        consumes: Vec<String>,
        produces: Vec<String>,
    ) -> Result<(Processor, SigningKey)> {
        // The value rules of core, for every text that reaches the registry, the chains'
        // grants and the messages to workers.
        mnemo_core::values::check_version(&version)
            .map_err(|e| ProcessingError::Invalid(e.into()))?;
        for k in consumes.iter().chain(&produces) {
            mnemo_core::values::check_kind(k)
                .map_err(|e| ProcessingError::Invalid(format!("{e}: {k:?}")))?;
        }
        let key = SigningKey::from_bytes(&rand::random());
        let p = Processor {
            name: name.clone(),
            version,
            consumes,
            produces,
            public_key: PublicKey(key.verifying_key()),
            revoked: false,
            registered_at: crate::now_ms().0,
        };
        let bytes = serde_json::to_vec(&p).expect("serialisable");
        match self.kv.create(name.as_str(), bytes.into()).await {
            Ok(_) => {
                self.cache.put(&p);
                Ok((p, key))
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(ProcessingError::Exists(name.to_string()))
            }
            Err(e) => Err(ProcessingError::nats("register a processor", e)),
        }
    }

    /// The processor, if registered (revoked ones included).
    pub async fn get(&self, name: &ProcessorId) -> Result<Option<Processor>> {
        if self.cache.live.load(Ordering::SeqCst)
            && let Some(p) = self.cache.map.read().expect("not poisoned").get(name)
        {
            return Ok(Some(p.clone()));
        }
        let v = self
            .kv
            .get(name.as_str())
            .await
            .map_err(|e| ProcessingError::nats("read the processor registry", e))?;
        v.map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| ProcessingError::Invalid(format!("stored processor {name}: {e}")))
        })
        .transpose()
    }

    /// The processor, registered and not revoked.
    pub async fn require(&self, name: &ProcessorId) -> Result<Processor> {
        match self.get(name).await? {
            None => Err(ProcessingError::UnknownProcessor(name.to_string())),
            Some(p) if p.revoked => Err(ProcessingError::Revoked(name.to_string())),
            Some(p) => Ok(p),
        }
    }

    /// Revokes a processor (for good: a new registration needs a new name).
    pub async fn revoke(&self, name: &ProcessorId) -> Result<Processor> {
        let mut p = self
            .get(name)
            .await?
            .ok_or_else(|| ProcessingError::UnknownProcessor(name.to_string()))?;
        p.revoked = true;
        self.kv
            .put(
                name.as_str(),
                serde_json::to_vec(&p).expect("serialisable").into(),
            )
            .await
            .map_err(|e| ProcessingError::nats("revoke a processor", e))?;
        self.cache.put(&p);
        Ok(p)
    }

    /// Every registered processor.
    pub async fn list(&self) -> Result<Vec<Processor>> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| ProcessingError::nats("list processors", e))?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(|e| ProcessingError::nats("list processors", e))?;
            if let Ok(name) = ProcessorId::new(k)
                && let Some(p) = self.get(&name).await?
            {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
