//! Reading anchored epochs without a chain connection or a signer: for the API (`GET
//! /v1/anchors`, proofs) and custody exports.

use async_nats::jetstream::{self, kv, object_store};
use mnemo_core::{AnchorReceipt, Checkpoint, EpochProof, EpochTree, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;

use crate::anchorer::{EPOCHS_BUCKET, EpochRecord, STATE_BUCKET};
use crate::error::{AnchorError, Result};

/// Epoch trees kept in memory (each is one leaf per user).
const CACHED_TREES: usize = 4;

/// Reads the anchorer's records: epochs, receipts and per-user epoch proofs.
#[derive(Clone)]
pub struct AnchorReader {
    state: kv::Store,
    epochs: object_store::ObjectStore,
    /// The epoch log (tree-2 epochs), when there is one.
    log: Option<kv::Store>,
    /// Tree-1 epochs' trees (each one leaf per user), the most recent few.
    trees: Arc<Mutex<HashMap<u64, Arc<EpochTree>>>>,
}

impl AnchorReader {
    /// Opens the anchorer's bucket and object store; `None` while nothing was ever anchored.
    pub async fn open(js: &jetstream::Context) -> Result<Option<Self>> {
        let (Ok(state), Ok(epochs)) = (
            js.get_key_value(STATE_BUCKET).await,
            js.get_object_store(EPOCHS_BUCKET).await,
        ) else {
            return Ok(None);
        };
        let log = js
            .get_key_value(mnemo_core::names::EPOCH_LOG_BUCKET)
            .await
            .ok();
        Ok(Some(Self::new(state, epochs, log)))
    }

    pub(crate) fn new(
        state: kv::Store,
        epochs: object_store::ObjectStore,
        log: Option<kv::Store>,
    ) -> Self {
        Self {
            state,
            epochs,
            log,
            trees: Arc::default(),
        }
    }

    /// A record of the anchor's bucket; one that does not parse is an error, not absent.
    pub(crate) async fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.state.get(key).await.map_err(AnchorError::nats)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| AnchorError::Corrupt(format!("record {key}: {e}"))),
        }
    }

    /// The last anchored epoch, if any.
    pub async fn last(&self) -> Result<Option<EpochRecord>> {
        self.get("last").await
    }

    /// An epoch's record.
    pub async fn epoch(&self, epoch: u64) -> Result<Option<EpochRecord>> {
        self.get(&format!("epoch.{epoch}")).await
    }

    /// Every epoch record, oldest first.
    pub async fn epochs(&self) -> Result<Vec<EpochRecord>> {
        let Some(last) = self.last().await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(last.epoch as usize);
        for e in 1..=last.epoch {
            if let Some(r) = self.epoch(e).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn tree(&self, epoch: u64) -> Result<Option<Arc<EpochTree>>> {
        if let Some(t) = self.trees.lock().expect("not poisoned").get(&epoch) {
            return Ok(Some(t.clone()));
        }
        let mut obj = match self.epochs.get(format!("epoch-{epoch}")).await {
            Ok(o) => o,
            Err(_) => return Ok(None),
        };
        let mut buf = Vec::new();
        obj.read_to_end(&mut buf).await.map_err(AnchorError::nats)?;
        let cps: Vec<Checkpoint> =
            serde_json::from_slice(&buf).map_err(|e| AnchorError::Inconsistent(e.to_string()))?;
        let tree = Arc::new(
            EpochTree::build(epoch, cps).map_err(|e| AnchorError::Inconsistent(e.to_string()))?,
        );
        let mut trees = self.trees.lock().expect("not poisoned");
        if trees.len() >= CACHED_TREES
            && let Some(&old) = trees.keys().min()
        {
            trees.remove(&old);
        }
        trees.insert(epoch, tree.clone());
        Ok(Some(tree))
    }

    /// The proof that `user`'s checkpoint is in `epoch`: in a tree-2 epoch, of the user's
    /// newest leaf the epoch holds, from O(log leaves) stored nodes; in a tree-1 epoch,
    /// from the epoch's stored leaves.
    pub async fn epoch_proof(&self, epoch: u64, user: &UserId) -> Result<Option<EpochProof>> {
        let Some(rec) = self.epoch(epoch).await? else {
            return Ok(None);
        };
        self.proof_in(&rec, user, None).await
    }

    async fn proof_in(
        &self,
        rec: &EpochRecord,
        user: &UserId,
        leaves: Option<&[crate::log::UserLeaf]>,
    ) -> Result<Option<EpochProof>> {
        if rec.tree < 2 {
            return Ok(self.tree(rec.epoch).await?.and_then(|t| t.proof(user)));
        }
        let Some(log) = &self.log else {
            return Err(AnchorError::Inconsistent(
                "a tree-2 epoch without the epoch log".into(),
            ));
        };
        // The user's newest leaf the epoch holds: among the leaves at hand, else by a
        // binary search over all of the user's leaves.
        let at_hand =
            leaves.and_then(|ls| ls.iter().rev().find(|l| l.leaf < rec.leaf_count).cloned());
        let leaf = match at_hand {
            Some(l) => Some(l),
            None => crate::log::leaf_in(log, user, rec.leaf_count).await?,
        };
        match leaf {
            Some(l) => crate::log::proof(log, rec.epoch, rec.root, rec.leaf_count, &l).await,
            None => Ok(None),
        }
    }

    /// The anchored epochs that hold a checkpoint of `user`, each with its proof and
    /// receipt, oldest first: the epoch that appended each of the user's kept leaves
    /// (tree 2: O(the user's leaves · log leaves) reads, whatever the server's age), and
    /// the tree-1 epochs from before the log, if any.
    pub async fn anchors_for(&self, user: &UserId) -> Result<Vec<(EpochProof, AnchorReceipt)>> {
        let mut out = Vec::new();
        let state: Option<crate::log::LogState> = self.get("log").await?;
        let legacy_until = state.as_ref().map(|s| s.first_epoch);
        // Tree-1 epochs (before the log): a fixed number, which does not grow.
        let legacy = match legacy_until {
            Some(first) => {
                let mut v = Vec::new();
                for e in 1..first {
                    v.extend(self.epoch(e).await?);
                }
                v
            }
            None => self.epochs().await?,
        };
        for rec in legacy.into_iter().filter(|r| r.tree < 2) {
            let Some(receipt) = rec.receipt.clone() else {
                continue;
            };
            if let Some(p) = self.proof_in(&rec, user, None).await? {
                out.push((p, receipt));
            }
        }
        if let (Some(_), Some(log)) = (legacy_until, &self.log) {
            let leaves = crate::log::user_leaves(log, user).await?;
            let mut seen = std::collections::HashSet::new();
            for l in &leaves {
                if !seen.insert(l.epoch) {
                    continue;
                }
                let Some(rec) = self.epoch(l.epoch).await? else {
                    continue;
                };
                let Some(receipt) = rec.receipt.clone() else {
                    continue;
                };
                if let Some(p) = self.proof_in(&rec, user, Some(&leaves)).await? {
                    out.push((p, receipt));
                }
            }
        }
        Ok(out)
    }
}
