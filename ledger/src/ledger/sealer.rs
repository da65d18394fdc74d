//! Group commit of signatures (format version 2): one task signs every event waiting to be
//! published, across users, as one batch ([`mnemo_core::SealedBatch`]). It never waits to
//! fill a batch: when it is idle, a batch of one goes out at once; while it signs and stores
//! a batch, the next one gathers, up to `max_seal` events. A batch of two or more is stored
//! once in the seal stream before any of its events is published, so no event is ever
//! stored with a seal that is not there (docs/decisions/0013-seals.md).

use mnemo_core::{Hash32, Seal, SealLink, SealedBatch, SigningKey};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

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

struct Job {
    hash: Hash32,
    done: oneshot::Sender<Result<(SealLink, Seal)>>,
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
        max_seal: usize,
        counters: Arc<SealCounters>,
        pause_after_store: Option<std::path::PathBuf>,
    ) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(
            rx,
            key,
            store,
            max_seal.clamp(1, mnemo_core::seal::MAX_SEAL_SIZE as usize),
            counters,
            pause_after_store,
        ));
        Self { jobs }
    }

    /// Seals `hash` in the next batch and returns how its event carries the seal (stored)
    /// and the full seal (for the receipt).
    pub(crate) async fn seal(&self, hash: Hash32) -> Result<(SealLink, Seal)> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job { hash, done })
            .map_err(|_| LedgerError::nats("seal", "the sealer stopped"))?;
        wait.await
            .map_err(|_| LedgerError::nats("seal", "the sealer stopped"))?
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Job>,
    key: SigningKey,
    store: SealStore,
    max: usize,
    counters: Arc<SealCounters>,
    pause_after_store: Option<std::path::PathBuf>,
) {
    let mut jobs = Vec::with_capacity(max);
    let mut hashes = Vec::with_capacity(max);
    while rx.recv_many(&mut jobs, max).await > 0 {
        hashes.clear();
        hashes.extend(jobs.iter().map(|j| j.hash));
        let batch = SealedBatch::sign(&key, &hashes);
        let stored = if hashes.len() > 1 {
            match store.put(&batch, &hashes).await {
                Ok(n) => Some(n),
                Err(e) => {
                    let why = e.to_string();
                    for j in jobs.drain(..) {
                        let _ = j.done.send(Err(LedgerError::nats("store seal", &why)));
                    }
                    continue;
                }
            }
        } else {
            None
        };
        if let (Some(path), Some(_)) = (&pause_after_store, stored) {
            // The crash tests kill the process here: the seal is stored, no event is.
            let _ = std::fs::write(path, b"sealed");
            std::future::pending::<()>().await;
        }
        let n = hashes.len() as u64;
        counters.seals.fetch_add(1, Ordering::Relaxed);
        counters.events.fetch_add(n, Ordering::Relaxed);
        counters
            .stored
            .fetch_add(u64::from(stored.is_some()), Ordering::Relaxed);
        let bucket = (63 - n.leading_zeros() as usize).min(SIZE_BUCKETS - 1);
        counters.sizes[bucket].fetch_add(1, Ordering::Relaxed);
        for (i, j) in jobs.drain(..).enumerate() {
            let i = i as u32;
            let _ = j.done.send(Ok((batch.link(i, stored), batch.resolve(i))));
        }
    }
}
