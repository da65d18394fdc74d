//! Where seal records live (format version 2, docs/FORMAT.md §11): the stream
//! `MNEMO-SEALS`, one message per batch of two or more events, across users. An event of
//! such a batch stores only a link to its record (`SealLink::Stored`: the record's stream
//! sequence and the event's index), so the bytes per event do not grow with the batch;
//! readers resolve the link into the event's full seal with one direct get per batch, kept
//! in a bounded cache ([`SealStore::resolve`]).

use async_nats::jetstream::{self, stream};
use lru::LruCache;
use mnemo_core::names::{SEALS_STREAM, SEALS_SUBJECT};
use mnemo_core::{Custody, Event, Hash32, SealLink, SealedBatch};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use crate::error::{LedgerError, Result};

/// Records a reader keeps by default.
pub const CACHED_SEALS: usize = 1024;

/// The seal stream, read and written, with a cache of the records read.
#[derive(Clone)]
pub struct SealStore {
    js: jetstream::Context,
    stream: Arc<tokio::sync::OnceCell<stream::Stream>>,
    /// Replicas of the stream when this store creates it; `None`: a reader, which never
    /// creates it.
    replicas: Option<usize>,
    cache: Arc<Mutex<LruCache<u64, Arc<SealedBatch>>>>,
}

impl std::fmt::Debug for SealStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealStore")
    }
}

/// The seal stream's configuration: file storage, nothing ever deleted.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: SEALS_STREAM.into(),
        description: Some("mnemo seal records: one signature per batch of events".into()),
        subjects: vec![SEALS_SUBJECT.into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        max_message_size: -1,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

impl SealStore {
    /// The seal stream of the server behind `js`, created with `replicas` when missing.
    pub fn new(js: jetstream::Context, replicas: usize) -> Self {
        Self::open(js, Some(replicas))
    }

    /// The seal stream for reading only (an auditor): never created.
    pub fn reader(js: jetstream::Context) -> Self {
        Self::open(js, None)
    }

    fn open(js: jetstream::Context, replicas: Option<usize>) -> Self {
        Self {
            js,
            stream: Arc::new(tokio::sync::OnceCell::new()),
            replicas,
            cache: Arc::new(Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHED_SEALS).expect("non-zero"),
            ))),
        }
    }

    async fn stream(&self) -> Result<&stream::Stream> {
        self.stream
            .get_or_try_init(|| async {
                match self.js.get_stream(SEALS_STREAM).await {
                    Ok(s) => Ok(s),
                    Err(e) if crate::provision::is_stream_not_found(&e) => match self.replicas {
                        Some(r) => {
                            crate::provision::ensure_stream(&self.js, stream_config(r)).await
                        }
                        None => Err(LedgerError::nats("seal stream", "there is no seal stream")),
                    },
                    Err(e) => Err(LedgerError::nats("seal stream", e)),
                }
            })
            .await
    }

    /// Makes sure the stream exists (the ledger does this when it connects).
    pub async fn ensure(&self) -> Result<()> {
        self.stream().await.map(|_| ())
    }

    /// Stores a batch's record and returns its number (stream sequence), once JetStream
    /// acknowledged it.
    pub async fn put(&self, batch: &SealedBatch, event_hashes: &[Hash32]) -> Result<u64> {
        self.stream().await?;
        let ack = self
            .js
            .publish(SEALS_SUBJECT, batch.to_record(event_hashes).into())
            .await
            .map_err(|e| LedgerError::nats("store seal", e))?
            .await
            .map_err(|e| LedgerError::nats("store seal", e))?;
        Ok(ack.sequence)
    }

    /// Record number `seal`; `None` when there is none (or it does not decode: the event
    /// naming it then fails `seal_missing`).
    pub async fn get(&self, seal: u64) -> Result<Option<Arc<SealedBatch>>> {
        if let Some(b) = self.cache.lock().expect("lock").get(&seal) {
            return Ok(Some(b.clone()));
        }
        let stream = match self.stream().await {
            Ok(s) => s,
            // A reader of a server that never stored a seal.
            Err(_) if self.replicas.is_none() => return Ok(None),
            Err(e) => return Err(e),
        };
        let msg = match stream.direct_get(seal).await {
            Ok(m) => m,
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LedgerError::nats("read seal", e)),
        };
        if msg.subject.as_str() != SEALS_SUBJECT {
            return Ok(None);
        }
        let Ok(batch) = SealedBatch::from_record(&msg.payload) else {
            return Ok(None);
        };
        let batch = Arc::new(batch);
        self.cache.lock().expect("lock").put(seal, batch.clone());
        Ok(Some(batch))
    }

    /// Reads every record into the cache, which grows to hold them all (an operator's audit
    /// of a whole server reads each record once); returns how many there are.
    pub async fn preload(&self) -> Result<usize> {
        use futures::StreamExt;
        let stream = match self.stream().await {
            Ok(s) => s.clone(),
            Err(_) if self.replicas.is_none() => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut s = stream.clone();
        let info = s
            .info()
            .await
            .map_err(|e| LedgerError::nats("seal stream info", e))?;
        let (count, last) = (info.state.messages as usize, info.state.last_sequence);
        if count == 0 {
            return Ok(0);
        }
        {
            let mut cache = self.cache.lock().expect("lock");
            let cap = count.max(CACHED_SEALS);
            cache.resize(NonZeroUsize::new(cap).expect("non-zero"));
        }
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .map_err(|e| LedgerError::nats("read seals", e))?;
        let mut msgs = consumer
            .messages()
            .await
            .map_err(|e| LedgerError::nats("read seals", e))?;
        let mut n = 0;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| LedgerError::nats("read seals", e))?;
            let seq = m
                .info()
                .map_err(|e| LedgerError::nats("read seals", e))?
                .stream_sequence;
            if let Ok(batch) = SealedBatch::from_record(&m.payload) {
                self.cache.lock().expect("lock").put(seq, Arc::new(batch));
                n += 1;
            }
            if seq >= last {
                break;
            }
        }
        Ok(n)
    }

    /// `event` with a stored seal link replaced by its full seal, read from the record it
    /// names; any other event as it is. A link whose record is missing stays as it is (a
    /// verifier refuses it: `seal_missing`).
    pub async fn resolve(&self, event: Event) -> Result<Event> {
        let Custody::Seal(SealLink::Stored { seal, index }) = event.custody else {
            return Ok(event);
        };
        Ok(match self.get(seal).await? {
            Some(batch) => event.with_seal(batch.resolve(index)),
            None => event,
        })
    }
}
