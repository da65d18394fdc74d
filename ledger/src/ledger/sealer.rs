//! Group commit of signatures (format version 2): one task signs every event waiting to be
//! published, across users, as one batch ([`mnemo_core::SealedBatch`]), then publishes the
//! batch's events in the order they were handed over. It never waits to fill a batch: when
//! it is idle, a batch of one goes out at once; while it signs and stores a batch, the next
//! one gathers, up to `max_seal` events. A batch of two or more is stored once in the seal
//! stream before any of its events is published, so no event is ever stored with a seal
//! that is not there (docs/decisions/0013-seals.md).
//!
//! Publishing here, in hand-over order, is what lets one user's pipelined events share a
//! batch: each is built on the one before (under the user's slot) and handed over without
//! waiting for its seal, and they still reach JetStream in chain order, as their
//! `Nats-Expected-Last-Msg-Id` guards need.

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::message::PublishMessage;
use mnemo_core::{Hash32, Seal, SealedBatch, SigningKey};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

use crate::envelope;
use crate::error::{LedgerError, Result};
use crate::seals::SealStore;

/// Batch sizes seen, in power-of-two buckets: `[1], [2, 3], [4, 7], ... [256, ...]`.
pub const SIZE_BUCKETS: usize = 9;

/// What the sealer did.
#[derive(Debug, Default)]
pub(crate) struct SealCounters {
    pub(crate) seals: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) sizes: [AtomicU64; SIZE_BUCKETS],
}

/// An event to seal and publish.
pub(crate) struct Job {
    hash: Hash32,
    /// Its canonical bytes (the wire form is these and the seal link).
    canonical: Vec<u8>,
    /// The sealed payload that follows the wire form in the message.
    sealed: Vec<u8>,
    subject: String,
    /// The headers (guards, message id), the payload still to come.
    publish: PublishMessage,
    done: Option<oneshot::Sender<Result<Sealed>>>,
}

impl Job {
    pub(crate) fn new(
        hash: Hash32,
        canonical: Vec<u8>,
        sealed: Vec<u8>,
        subject: String,
        publish: PublishMessage,
    ) -> Self {
        Self {
            hash,
            canonical,
            sealed,
            subject,
            publish,
            done: None,
        }
    }
}

/// A sealed and published event.
pub(crate) struct Sealed {
    /// Its full seal (for the receipt).
    pub(crate) seal: Seal,
    /// Its canonical bytes, handed back.
    pub(crate) canonical: Vec<u8>,
    /// The publish, its ack to come.
    pub(crate) ack: std::result::Result<PublishAckFuture, PublishError>,
}

/// The handle callers seal through.
pub(crate) struct Sealer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Sealer {
    /// Starts the sealing task for `key`; `pause_after_store` is the crash tests' point
    /// between storing a batch and publishing its events.
    pub(crate) fn start(
        key: SigningKey,
        store: SealStore,
        js: async_nats::jetstream::Context,
        max_seal: usize,
        counters: Arc<SealCounters>,
        pause_after_store: Option<std::path::PathBuf>,
    ) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(
            rx,
            Context {
                key,
                store,
                js,
                max: max_seal.clamp(1, mnemo_core::seal::MAX_SEAL_SIZE as usize),
                counters,
                pause_after_store,
            },
        ));
        Self { jobs }
    }

    /// Hands `job` over: it is sealed in the next batch and published after the events
    /// handed over before it. The answer comes once it is published.
    pub(crate) fn submit(&self, mut job: Job) -> Result<oneshot::Receiver<Result<Sealed>>> {
        let (done, wait) = oneshot::channel();
        job.done = Some(done);
        self.jobs
            .send(job)
            .map_err(|_| LedgerError::nats("seal", "the sealer stopped"))?;
        Ok(wait)
    }
}

struct Context {
    key: SigningKey,
    store: SealStore,
    js: async_nats::jetstream::Context,
    max: usize,
    counters: Arc<SealCounters>,
    pause_after_store: Option<std::path::PathBuf>,
}

async fn run(mut rx: mpsc::UnboundedReceiver<Job>, cx: Context) {
    let mut jobs = Vec::with_capacity(cx.max);
    let mut hashes = Vec::with_capacity(cx.max);
    while rx.recv_many(&mut jobs, cx.max).await > 0 {
        hashes.clear();
        hashes.extend(jobs.iter().map(|j| j.hash));
        let batch = SealedBatch::sign(&cx.key, &hashes);
        let stored = if hashes.len() > 1 {
            match cx.store.put(&batch, &hashes).await {
                Ok(n) => Some(n),
                Err(e) => {
                    let why = e.to_string();
                    for j in jobs.drain(..) {
                        if let Some(d) = j.done {
                            let _ = d.send(Err(LedgerError::nats("store seal", &why)));
                        }
                    }
                    continue;
                }
            }
        } else {
            None
        };
        if let (Some(path), Some(_)) = (&cx.pause_after_store, stored) {
            // The crash tests kill the process here: the seal is stored, no event is.
            let _ = std::fs::write(path, b"sealed");
            std::future::pending::<()>().await;
        }
        let n = hashes.len() as u64;
        let c = &cx.counters;
        c.seals.fetch_add(1, Ordering::Relaxed);
        c.events.fetch_add(n, Ordering::Relaxed);
        c.stored
            .fetch_add(u64::from(stored.is_some()), Ordering::Relaxed);
        let bucket = (63 - n.leading_zeros() as usize).min(SIZE_BUCKETS - 1);
        c.sizes[bucket].fetch_add(1, Ordering::Relaxed);
        for (i, j) in jobs.drain(..).enumerate() {
            let i = i as u32;
            let mut w = j.canonical.clone();
            batch.link(i, stored).encode_into(&mut w);
            let body = envelope::encode(&w, &j.sealed);
            let ack = cx.js.send_publish(j.subject, j.publish.payload(body)).await;
            if let Some(d) = j.done {
                let _ = d.send(Ok(Sealed {
                    seal: batch.resolve(i),
                    canonical: j.canonical,
                    ack,
                }));
            }
        }
    }
}
