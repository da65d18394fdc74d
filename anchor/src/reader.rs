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
        Ok(Some(Self::new(state, epochs)))
    }

    pub(crate) fn new(state: kv::Store, epochs: object_store::ObjectStore) -> Self {
        Self {
            state,
            epochs,
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

    /// The proof that `user`'s checkpoint is in `epoch` (from the stored leaves).
    pub async fn epoch_proof(&self, epoch: u64, user: &UserId) -> Result<Option<EpochProof>> {
        Ok(self.tree(epoch).await?.and_then(|t| t.proof(user)))
    }

    /// Every anchored epoch that holds a checkpoint of `user`: its proof and receipt,
    /// oldest first.
    pub async fn anchors_for(&self, user: &UserId) -> Result<Vec<(EpochProof, AnchorReceipt)>> {
        let mut out = Vec::new();
        for rec in self.epochs().await? {
            let Some(receipt) = rec.receipt else { continue };
            if let Some(p) = self.epoch_proof(rec.epoch, user).await? {
                out.push((p, receipt));
            }
        }
        Ok(out)
    }
}
