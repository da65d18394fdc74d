//! The epoch loop.

use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use futures::StreamExt;
use mnemo_core::epoch_log::LogAppender;
use mnemo_core::{AnchorReceipt, Backoff, Checkpoint, EpochProof, Hash32, UserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

use crate::chain::Chain;
use crate::error::{AnchorError, Result};
use crate::reader::AnchorReader;

use mnemo_core::names;
pub(crate) use mnemo_core::names::{
    ANCHOR_STATE_BUCKET as STATE_BUCKET, ANCHORS_STREAM, EPOCHS_BUCKET, HEADS_BUCKET,
};
use mnemo_ledger::provision::{ensure_kv, ensure_object_store, ensure_stream};

/// Anchorer options.
#[derive(Clone, Debug)]
pub struct AnchorerConfig {
    /// Time between epochs.
    pub interval: Duration,
    /// Anchor early once this many head updates arrived since the last epoch.
    pub early_after: u64,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// This instance's name in the lease.
    pub holder: String,
    /// How often the loop wakes up (lease, reorgs, early trigger).
    pub poll: Duration,
    /// Recent epochs checked for reorgs on every wake-up.
    pub reorg_window: u64,
    /// Replicas of the anchor's KV bucket, object store and stream (3 on a cluster).
    pub replicas: usize,
}

impl Default for AnchorerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            early_after: 100_000,
            lease_ttl: Duration::from_secs(30),
            holder: format!("anchorer-{}", std::process::id()),
            poll: Duration::from_secs(1),
            reorg_window: 16,
            replicas: 1,
        }
    }
}

/// Counters, for metrics.
#[derive(Debug, Default)]
pub struct AnchorStats {
    /// Epochs anchored.
    pub epochs: AtomicU64,
    /// RPC failures (retried).
    pub rpc_errors: AtomicU64,
    /// Failures for lack of funds (loud).
    pub insufficient_funds: AtomicU64,
    /// Anchors found reorganised away.
    pub reorgs: AtomicU64,
    /// Anchors submitted again after a reorg.
    pub resubmissions: AtomicU64,
    /// The last epoch computed: users appended to the epoch log.
    pub last_changed_users: AtomicU64,
    /// The last epoch computed: microseconds from reading the changed heads to the log
    /// stored (the chain submission not included).
    pub last_compute_us: AtomicU64,
}

/// One epoch: its root, what it covers, and once anchored, the receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: u64,
    /// The epoch tree's root.
    pub root: Hash32,
    /// Number of users (leaves).
    pub leaf_count: u64,
    /// The previous epoch's root (zero for epoch 1).
    pub prev_root: Hash32,
    /// The anchor, once on chain.
    pub receipt: Option<AnchorReceipt>,
    /// The order of its leaves (docs/FORMAT.md §7.1): 1, one leaf per user sorted by user
    /// id (older epochs); 2, the epoch log.
    #[serde(default = "tree_one")]
    pub tree: u8,
}

fn tree_one() -> u8 {
    1
}

#[derive(Serialize, Deserialize)]
struct Lease {
    holder: String,
    until_ms: u64,
}

fn now_ms() -> u64 {
    mnemo_ledger::clock::now_ms().max(0) as u64
}

/// Every user's latest checkpoint, from the `mnemo-heads` KV view (last value per key).
pub async fn read_checkpoints(js: &jetstream::Context) -> Result<Vec<Checkpoint>> {
    let s = match js.get_stream(names::kv_stream(HEADS_BUCKET)).await {
        Ok(s) => s,
        Err(_) => return Ok(Vec::new()),
    };
    let c = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("$KV.{HEADS_BUCKET}.>"),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(AnchorError::nats)?;
    let pending = c.cached_info().num_pending;
    let mut msgs = c.messages().await.map_err(AnchorError::nats)?;
    let mut out = Vec::with_capacity(pending as usize);
    for _ in 0..pending {
        let Some(m) = msgs.next().await else { break };
        let m = m.map_err(AnchorError::nats)?;
        let Some(user) = m
            .subject
            .strip_prefix("$KV.mnemo-heads.")
            .and_then(|u| UserId::new(u).ok())
        else {
            continue;
        };
        if let Ok(h) = serde_json::from_slice::<mnemo_core::HeadRecord>(&m.payload) {
            out.push(h.checkpoint(user));
        }
    }
    Ok(out)
}

/// The anchor service. See the crate docs.
pub struct Anchorer {
    js: jetstream::Context,
    chain: Chain,
    cfg: AnchorerConfig,
    state: kv::Store,
    /// The epoch log's nodes and users' leaves.
    log: kv::Store,
    reader: AnchorReader,
    stats: Arc<AnchorStats>,
}

impl Anchorer {
    /// Opens (or creates) the anchor's KV bucket, object store and stream.
    pub async fn new(js: jetstream::Context, chain: Chain, cfg: AnchorerConfig) -> Result<Self> {
        let replicas = cfg.replicas.max(1);
        let state = ensure_kv(
            &js,
            kv::Config {
                bucket: STATE_BUCKET.into(),
                description: "mnemo anchorer state and lease".into(),
                history: 1,
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let epochs = ensure_object_store(
            &js,
            object_store::Config {
                bucket: EPOCHS_BUCKET.into(),
                description: Some("mnemo epoch leaves (checkpoints)".into()),
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        ensure_stream(
            &js,
            stream::Config {
                name: ANCHORS_STREAM.into(),
                subjects: vec![format!("{}.*", names::ANCHORS_SUBJECT_PREFIX)],
                storage: stream::StorageType::File,
                max_messages_per_subject: 8,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        let log = crate::log::bucket(&js, replicas).await?;
        Ok(Self {
            js,
            chain,
            cfg,
            reader: AnchorReader::new(state.clone(), epochs.clone(), Some(log.clone())),
            state,
            log,
            stats: Arc::new(AnchorStats::default()),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<AnchorStats> {
        self.stats.clone()
    }

    /// The chain.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    async fn put<T: Serialize>(&self, key: &str, v: &T) -> Result<()> {
        self.state
            .put(key, serde_json::to_vec(v).expect("serialisable").into())
            .await
            .map_err(AnchorError::nats)?;
        Ok(())
    }

    /// The last anchored epoch, if any.
    pub async fn last(&self) -> Result<Option<EpochRecord>> {
        self.reader.last().await
    }

    /// An anchored epoch's record.
    pub async fn epoch(&self, epoch: u64) -> Result<Option<EpochRecord>> {
        self.reader.epoch(epoch).await
    }

    /// Takes or renews the lease; `false` when another live instance holds it.
    pub async fn lease(&self) -> Result<bool> {
        let mine = Lease {
            holder: self.cfg.holder.clone(),
            until_ms: now_ms() + self.cfg.lease_ttl.as_millis() as u64,
        };
        let value: bytes::Bytes = serde_json::to_vec(&mine).expect("serialisable").into();
        match self.state.entry("lease").await.map_err(AnchorError::nats)? {
            Some(e) if e.operation == kv::Operation::Put => {
                let cur: Option<Lease> = serde_json::from_slice(&e.value).ok();
                let free = cur.is_none_or(|l| l.holder == self.cfg.holder || l.until_ms < now_ms());
                if !free {
                    return Ok(false);
                }
                // compare-and-set: of two instances taking an expired lease, one wins
                Ok(self.state.update("lease", value, e.revision).await.is_ok())
            }
            _ => Ok(self.state.create("lease", value).await.is_ok()),
        }
    }

    /// Builds and anchors the next epoch, or resumes a pending one. Returns `None` when no
    /// chain changed since the last epoch (nothing is submitted).
    pub async fn run_epoch(&self) -> Result<Option<EpochRecord>> {
        let last: Option<EpochRecord> = self.last().await?;
        let next = last.as_ref().map_or(1, |l| l.epoch + 1);
        let prev_root = last.as_ref().map_or(Hash32::ZERO, |l| l.root);
        let pending: Option<EpochRecord> = self.reader.get("pending").await?;
        let rec = match pending {
            Some(p) if p.epoch == next => p,
            _ => match self.append_epoch(next, prev_root).await? {
                Some(rec) => {
                    // Stored before submitting: after a crash the same epoch is resumed.
                    self.put("pending", &rec).await?;
                    rec
                }
                None => return Ok(None),
            },
        };
        let receipt = self.anchor_on_chain(&rec).await?;
        let done = EpochRecord {
            receipt: Some(receipt),
            ..rec
        };
        self.record(&done).await?;
        self.state
            .delete("pending")
            .await
            .map_err(AnchorError::nats)?;
        self.stats.epochs.fetch_add(1, Ordering::Relaxed);
        tracing::info!(epoch = done.epoch, root = %done.root, users = done.leaf_count, "epoch anchored");
        Ok(Some(done))
    }

    /// Appends to the epoch log the checkpoint of every user whose chain moved since it
    /// was last appended (docs/FORMAT.md §7.1, tree 2): O(changed users) read, computed and
    /// stored. `None` when nothing moved. What is stored, in this order, keeps a crash at
    /// any point harmless: the new nodes (at indexes past the recorded size; a tile begun
    /// earlier keeps its recorded nodes), the log's new edge, then the users' leaves (a
    /// leaf already recorded is not recorded again). A log stored by an earlier version is
    /// rewritten first (`log::upgrade_v1`).
    async fn append_epoch(&self, next: u64, prev_root: Hash32) -> Result<Option<EpochRecord>> {
        use crate::log::{LogState, STORE_VERSION, UserLeaf};
        let mut state: Option<LogState> = self.reader.get("log").await?;
        if let Some(s) = state.as_mut()
            && s.store < STORE_VERSION
        {
            let removed = crate::log::upgrade_v1(&self.log, s.size).await?;
            s.store = STORE_VERSION;
            self.put("log", &*s).await?;
            tracing::info!(removed, "epoch log storage upgraded to version 2");
        }
        let (mut log, after, first_epoch) = match &state {
            Some(s) => (
                LogAppender::resume(s.size, s.peaks.clone()).ok_or_else(|| {
                    AnchorError::Inconsistent("the epoch log's edge does not match its size".into())
                })?,
                s.heads_seq,
                s.first_epoch,
            ),
            None => (LogAppender::new(), 0, next),
        };
        let started = std::time::Instant::now();
        let (changes, heads_seq) = crate::log::changes_since(&self.js, after).await?;
        if changes.is_empty() {
            return Ok(None);
        }
        let mut nodes = Vec::new();
        let mut leaves = Vec::with_capacity(changes.len());
        for (_, cp) in changes {
            let leaf = log.size();
            nodes.extend(log.push(cp.epoch_leaf()));
            leaves.push(UserLeaf {
                leaf,
                epoch: next,
                checkpoint: cp,
            });
        }
        crate::log::put_nodes(&self.log, nodes).await?;
        self.put(
            "log",
            &LogState {
                size: log.size(),
                peaks: log.peaks().to_vec(),
                heads_seq,
                first_epoch,
                store: STORE_VERSION,
            },
        )
        .await?;
        let appended_count = leaves.len();
        crate::log::add_user_leaves(&self.log, leaves).await?;
        self.stats
            .last_changed_users
            .store(appended_count as u64, Ordering::Relaxed);
        self.stats
            .last_compute_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        tracing::info!(
            epoch = next,
            appended = appended_count,
            leaves = log.size(),
            "epoch log appended"
        );
        Ok(Some(EpochRecord {
            epoch: next,
            root: log.root(),
            leaf_count: log.size(),
            prev_root,
            receipt: None,
            tree: 2,
        }))
    }

    /// Submits `rec` unless the chain already has it (after a crash, or a reorg that kept
    /// the transaction): never two anchors for one epoch.
    async fn anchor_on_chain(&self, rec: &EpochRecord) -> Result<AnchorReceipt> {
        if let Some(r) = self.chain.find(rec.epoch).await?.into_iter().next() {
            if r.root != rec.root {
                return Err(AnchorError::Inconsistent(format!(
                    "epoch {} is anchored with root {} on chain, {} here",
                    rec.epoch, r.root, rec.root
                )));
            }
            return Ok(r);
        }
        let (on_chain, last_root) = self.chain.last().await?;
        if on_chain + 1 != rec.epoch || last_root != rec.prev_root {
            return Err(AnchorError::Inconsistent(format!(
                "chain is at epoch {on_chain} (root {last_root}), cannot anchor epoch {} after {}",
                rec.epoch, rec.prev_root
            )));
        }
        match self
            .chain
            .submit(rec.epoch, rec.root, rec.leaf_count, rec.prev_root)
            .await
        {
            Ok(r) => Ok(r),
            Err(e) => {
                if matches!(e, AnchorError::InsufficientFunds(_)) {
                    self.stats
                        .insufficient_funds
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "ANCHOR ACCOUNT OUT OF FUNDS: epochs are waiting");
                }
                // The transaction may have made it in before the failure: look again.
                if let Ok(found) = self.chain.find(rec.epoch).await
                    && let Some(r) = found.into_iter().find(|r| r.root == rec.root)
                {
                    return Ok(r);
                }
                Err(e)
            }
        }
    }

    async fn record(&self, rec: &EpochRecord) -> Result<()> {
        self.put(&format!("epoch.{}", rec.epoch), rec).await?;
        self.put("last", rec).await?;
        self.js
            .publish(
                names::anchor_subject(rec.epoch),
                serde_json::to_vec(rec).expect("serialisable").into(),
            )
            .await
            .map_err(AnchorError::nats)?
            .await
            .map_err(AnchorError::nats)?;
        Ok(())
    }

    /// Checks the recent anchors' blocks; an anchor whose block left the canonical chain is
    /// found again (same transaction in another block) or submitted again, in epoch
    /// order. Returns how many were re-anchored.
    pub async fn check_reorgs(&self) -> Result<u64> {
        let Some(last) = self.last().await? else {
            return Ok(0);
        };
        let first = last.epoch.saturating_sub(self.cfg.reorg_window).max(1);
        let mut redone = 0;
        for e in first..=last.epoch {
            let Some(rec) = self.epoch(e).await? else {
                continue;
            };
            let Some(r) = &rec.receipt else { continue };
            if self.chain.is_canonical(r).await? {
                continue;
            }
            self.stats.reorgs.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                epoch = e,
                block = r.block_number,
                "anchor reorganised away; re-anchoring"
            );
            let receipt = self
                .anchor_on_chain(&EpochRecord {
                    receipt: None,
                    ..rec.clone()
                })
                .await?;
            self.stats.resubmissions.fetch_add(1, Ordering::Relaxed);
            let fixed = EpochRecord {
                receipt: Some(receipt),
                ..rec
            };
            self.put(&format!("epoch.{e}"), &fixed).await?;
            if e == last.epoch {
                self.record(&fixed).await?;
            }
            redone += 1;
        }
        Ok(redone)
    }

    /// The proof that `user`'s checkpoint is in `epoch` (from the stored leaves).
    pub async fn epoch_proof(&self, epoch: u64, user: &UserId) -> Result<Option<EpochProof>> {
        self.reader.epoch_proof(epoch, user).await
    }

    /// A reader over this anchorer's records (sharing its cache of epoch trees).
    pub fn reader(&self) -> AnchorReader {
        self.reader.clone()
    }

    async fn head_updates(&self) -> u64 {
        match self.js.get_stream(names::kv_stream(HEADS_BUCKET)).await {
            Ok(mut s) => s.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Runs until `stop`: holds the lease, checks reorgs, anchors an epoch every interval
    /// or early after enough head updates. Errors are logged, counted and retried with
    /// backoff; the epoch waits, nothing is lost.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut last_run = tokio::time::Instant::now() - self.cfg.interval;
        let mut updates_at_last = 0u64;
        let mut backoff = Backoff::new(self.cfg.poll, Duration::from_secs(60));
        loop {
            let step = async {
                if !self.lease().await? {
                    return Err(AnchorError::NotLeader);
                }
                self.check_reorgs().await?;
                let updates = self.head_updates().await;
                let due = last_run.elapsed() >= self.cfg.interval
                    || updates.saturating_sub(updates_at_last) >= self.cfg.early_after;
                if due {
                    self.run_epoch().await?;
                    last_run = tokio::time::Instant::now();
                    updates_at_last = updates;
                }
                Ok(())
            };
            let wait = match step.await {
                Ok(()) | Err(AnchorError::NotLeader) => {
                    backoff.reset();
                    self.cfg.poll
                }
                Err(e) => {
                    self.stats.rpc_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "anchoring failed; retrying");
                    backoff.next_wait()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => if *stop.borrow() { return Ok(()); },
            }
        }
    }
}
