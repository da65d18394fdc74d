//! The epoch log's storage (docs/FORMAT.md §7.1, tree 2; `mnemo_core::epoch_log`): the
//! log's complete nodes and each user's latest leaves in the `mnemo-epoch-log` bucket, and
//! the log's right edge in the anchor's state. An epoch writes O(changed users) entries;
//! a proof reads O(log leaves) of them, with direct gets, whatever the server's age.

use async_nats::jetstream::{self, consumer, kv};
use futures::{StreamExt, TryStreamExt};
use mnemo_core::epoch_log::{self, NodeId};
use mnemo_core::{Checkpoint, EpochProof, Hash32, Seq, UserId, names};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use crate::error::{AnchorError, Result};

/// A user's leaves kept for proofs: the newest this many (an older checkpoint's events
/// are covered by a newer checkpoint's anchor as well).
pub(crate) const LEAVES_PER_USER: usize = 16;

/// Where the log stands (the anchor state's `log` record).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LogState {
    /// Leaves appended.
    pub(crate) size: u64,
    /// The right edge's complete nodes (`epoch_log::peak_nodes(size)`).
    pub(crate) peaks: Vec<Hash32>,
    /// The last `mnemo-heads` stream sequence taken into the log.
    pub(crate) heads_seq: u64,
    /// The first epoch of tree 2 (earlier ones are tree 1).
    pub(crate) first_epoch: u64,
}

/// One of a user's leaves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct UserLeaf {
    /// Its index in the log.
    pub(crate) leaf: u64,
    /// The epoch that appended it.
    pub(crate) epoch: u64,
    /// The checkpoint.
    pub(crate) checkpoint: Checkpoint,
}

/// What an epoch appended (the `epoch-<n>` object of a tree-2 epoch).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Appended {
    /// 2.
    pub(crate) tree: u8,
    /// The index of the first leaf appended.
    pub(crate) first_leaf: u64,
    /// The checkpoints appended, in log order.
    pub(crate) checkpoints: Vec<Checkpoint>,
}

/// The bucket (created when missing).
pub(crate) async fn bucket(js: &jetstream::Context, replicas: usize) -> Result<kv::Store> {
    Ok(mnemo_ledger::provision::ensure_kv(
        js,
        kv::Config {
            bucket: names::EPOCH_LOG_BUCKET.into(),
            description: "mnemo epoch log: complete nodes and users' latest leaves".into(),
            history: 1,
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?)
}

fn node_key((level, index): NodeId) -> String {
    format!("n.{level}.{index}")
}

fn user_key(user: &UserId) -> String {
    format!("u.{user}")
}

/// Stores nodes, 64 at a time.
pub(crate) async fn put_nodes(kv: &kv::Store, nodes: Vec<(NodeId, Hash32)>) -> Result<()> {
    futures::stream::iter(nodes)
        .map(|(id, h)| async move {
            kv.put(node_key(id), h.0.to_vec().into())
                .await
                .map_err(AnchorError::nats)
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Reads nodes, 16 at a time.
pub(crate) async fn get_nodes(kv: &kv::Store, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash32>> {
    let got: Vec<(NodeId, Option<bytes::Bytes>)> = futures::stream::iter(ids.iter().copied())
        .map(|id| async move {
            kv.get(node_key(id))
                .await
                .map(|v| (id, v))
                .map_err(AnchorError::nats)
        })
        .buffered(16)
        .try_collect()
        .await?;
    got.into_iter()
        .map(|(id, v)| {
            let v = v.ok_or_else(|| {
                AnchorError::Inconsistent(format!("epoch log node {id:?} is missing"))
            })?;
            let h: [u8; 32] = v[..].try_into().map_err(|_| {
                AnchorError::Inconsistent(format!("epoch log node {id:?} is not 32 bytes"))
            })?;
            Ok((id, Hash32(h)))
        })
        .collect()
}

/// A user's kept leaves, oldest first.
pub(crate) async fn user_leaves(kv: &kv::Store, user: &UserId) -> Result<Vec<UserLeaf>> {
    match kv.get(user_key(user)).await.map_err(AnchorError::nats)? {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_slice(&v)
            .map_err(|e| AnchorError::Inconsistent(format!("leaves of {user}: {e}"))),
    }
}

/// Records new leaves of users, 64 users at a time.
pub(crate) async fn add_user_leaves(kv: &kv::Store, leaves: Vec<UserLeaf>) -> Result<()> {
    futures::stream::iter(leaves)
        .map(|l| async move {
            let user = l.checkpoint.user.clone();
            let mut all = user_leaves(kv, &user).await?;
            if all.iter().any(|x| x.leaf == l.leaf) {
                return Ok(());
            }
            all.push(l);
            let keep = all.len().saturating_sub(LEAVES_PER_USER);
            all.drain(..keep);
            kv.put(
                user_key(&user),
                serde_json::to_vec(&all).expect("serialisable").into(),
            )
            .await
            .map_err(AnchorError::nats)?;
            Ok::<_, AnchorError>(())
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The proof of `leaf`'s checkpoint in an epoch of `size` leaves with root `root`.
pub(crate) async fn proof(
    kv: &kv::Store,
    epoch: u64,
    root: Hash32,
    size: u64,
    leaf: &UserLeaf,
) -> Result<Option<EpochProof>> {
    let Some(ids) = epoch_log::proof_nodes(leaf.leaf, size) else {
        return Ok(None);
    };
    let nodes = get_nodes(kv, &ids).await?;
    let inclusion = epoch_log::inclusion_proof(leaf.leaf, size, &nodes)
        .ok_or_else(|| AnchorError::Inconsistent("an epoch log node is missing".into()))?;
    Ok(Some(EpochProof {
        epoch,
        root,
        checkpoint: leaf.checkpoint.clone(),
        inclusion,
    }))
}

#[derive(Deserialize)]
struct Head {
    seq: u64,
    hash: Hash32,
    root: Hash32,
}

/// The users whose head moved after stream sequence `after` of `mnemo-heads` (0: every
/// user), each with its latest checkpoint, and the last sequence read. O(updates since).
pub(crate) async fn changes_since(
    js: &jetstream::Context,
    after: u64,
) -> Result<(BTreeMap<UserId, Checkpoint>, u64)> {
    let mut out = BTreeMap::new();
    let s = match js.get_stream(names::kv_stream(names::HEADS_BUCKET)).await {
        Ok(s) => s,
        Err(_) => return Ok((out, after)),
    };
    let deliver_policy = if after == 0 {
        consumer::DeliverPolicy::LastPerSubject
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        }
    };
    let c = s
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("$KV.{}.>", names::HEADS_BUCKET),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(AnchorError::nats)?;
    let pending = c.cached_info().num_pending;
    let mut last = after;
    if pending == 0 {
        return Ok((out, last));
    }
    let mut msgs = c.messages().await.map_err(AnchorError::nats)?;
    for _ in 0..pending {
        let Some(m) = msgs.next().await else { break };
        let m = m.map_err(AnchorError::nats)?;
        if let Ok(info) = m.info() {
            last = last.max(info.stream_sequence);
        }
        let Some(user) = m
            .subject
            .strip_prefix(&format!("$KV.{}.", names::HEADS_BUCKET))
            .and_then(|u| UserId::new(u).ok())
        else {
            continue;
        };
        if let Ok(h) = serde_json::from_slice::<Head>(&m.payload) {
            out.insert(
                user.clone(),
                Checkpoint {
                    user,
                    seq: Seq(h.seq),
                    head: h.hash,
                    root: h.root,
                },
            );
        }
    }
    Ok((out, last))
}
