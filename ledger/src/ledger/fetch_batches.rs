//! Fetches recorded together ([`FetchBatches`]): a processor's fetches of one user's
//! memories under one grant that arrive while that user's last `inputs_fetched` is being
//! written wait for it, then go into the chain as one event naming all their memories
//! (docs/FORMAT.md §15.2 lets an event name several). Each ruled event waits for the user's
//! settled chain, so one event per fetch made a user's fetches one at a time; now they are
//! one per round trip, however many tasks of the user run at once.
//!
//! The rules are the same: a batch the chain refuses is split and written again, down to
//! single fetches, so each fetch gets its own answer, as if it had come alone. A batch holds at most
//! [`MAX_BATCH`] memories. Only users with fetches in flight have an entry.

use std::collections::HashMap;
use std::sync::Mutex;

use mnemo_core::{GrantId, MemoryId, UserId};
use tokio::sync::oneshot;

use super::{Ledger, Receipt, Result};
use crate::error::LedgerError;

/// Most memories one `inputs_fetched` of a batch names.
pub const MAX_BATCH: usize = 256;

type Waiter = (Vec<MemoryId>, oneshot::Sender<Result<Receipt>>);

/// The fetches waiting, per user and grant (present while a writer runs for it).
#[derive(Default)]
pub(super) struct FetchBatches {
    waiting: Mutex<HashMap<(UserId, GrantId), Vec<Waiter>>>,
}

impl Ledger {
    /// Records `memories` fetched under `grant` with the fetches of the same user and grant
    /// that are waiting (see the module's text); the receipt of the event that names them.
    pub(super) async fn record_fetch_batched(
        &self,
        user: &UserId,
        grant: GrantId,
        memories: Vec<MemoryId>,
    ) -> Result<Receipt> {
        let (tx, rx) = oneshot::channel();
        let key = (user.clone(), grant);
        let start = {
            let mut waiting = self.inner.fetches.waiting.lock().expect("not poisoned");
            match waiting.get_mut(&key) {
                Some(queue) => {
                    queue.push((memories, tx));
                    false
                }
                None => {
                    waiting.insert(key.clone(), vec![(memories, tx)]);
                    true
                }
            }
        };
        if start {
            // The writer outlives a caller that gives up: the fetches it took are answered.
            let ledger = self.clone();
            tokio::spawn(async move { ledger.write_fetch_batches(key).await });
        }
        rx.await.unwrap_or_else(|_| {
            Err(LedgerError::nats(
                "recording a fetch",
                "its writer stopped before answering; retry",
            ))
        })
    }

    /// Writes the waiting fetches of `key` in batches until none is left.
    async fn write_fetch_batches(&self, key: (UserId, GrantId)) {
        loop {
            let batch: Vec<Waiter> = {
                let mut waiting = self.inner.fetches.waiting.lock().expect("not poisoned");
                let Some(queue) = waiting.get_mut(&key) else {
                    return;
                };
                if queue.is_empty() {
                    waiting.remove(&key);
                    return;
                }
                let mut n = 0;
                let mut take = 0;
                for (m, _) in queue.iter() {
                    if take > 0 && n + m.len() > MAX_BATCH {
                        break;
                    }
                    n += m.len();
                    take += 1;
                }
                queue.drain(..take).collect()
            };
            Box::pin(self.write_waiters(&key.0, key.1, batch)).await;
        }
    }

    /// Writes one event naming the memories of `batch` and answers each waiter. A batch
    /// the chain refuses (or that fails) is split in halves, each written again, down to
    /// single fetches: a fetch that is not allowed is refused alone, at the cost of about
    /// two writes per halving, not one per fetch. A fetch recorded twice after a lost
    /// acknowledgement is one more record of a hand-over, which the rules allow.
    async fn write_waiters(&self, user: &UserId, grant: GrantId, batch: Vec<Waiter>) {
        let mut all: Vec<MemoryId> = batch.iter().flat_map(|(m, _)| m.iter().copied()).collect();
        all.sort();
        all.dedup();
        match self.record_fetch_now(user, grant, all).await {
            Ok(receipt) => {
                for (_, tx) in batch {
                    let _ = tx.send(Ok(receipt.clone()));
                }
            }
            Err(e) if batch.len() == 1 => {
                let (_, tx) = batch.into_iter().next().expect("one");
                let _ = tx.send(Err(e));
            }
            Err(_) => {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                Box::pin(self.write_waiters(user, grant, first)).await;
                Box::pin(self.write_waiters(user, grant, second)).await;
            }
        }
    }
}
