//! The epoch log's storage (docs/FORMAT.md §7.1, tree 2; `mnemo_core::epoch_log`): the
//! log's complete nodes (`n.<level>.<index>`) and each user's leaves (`u.<user>`: their
//! number, `u.<user>.<k>`: the k-th) in the `mnemo-epoch-log` bucket, and
//! the log's right edge in the anchor's state. An epoch writes O(changed users) entries;
//! a proof reads O(log leaves) of them, with direct gets, whatever the server's age.

use async_nats::jetstream::{self, kv};
use futures::{StreamExt, TryStreamExt};
use mnemo_core::epoch_log::{self, NodeId};
use mnemo_core::{Checkpoint, EpochProof, Hash32, Seq, UserId, names};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use crate::error::{AnchorError, Result};

/// The anchors of a user's newest leaves listed for exports: this many (an older
/// checkpoint's events are covered by a newer checkpoint's anchor as well). Every leaf is
/// kept, and any epoch's proof can be made.
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

fn leaf_key(user: &UserId, k: u64) -> String {
    format!("u.{user}.{k}")
}

/// How many leaves `user` has.
async fn leaf_count(kv: &kv::Store, user: &UserId) -> Result<u64> {
    match kv.get(user_key(user)).await.map_err(AnchorError::nats)? {
        None => Ok(0),
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| AnchorError::Inconsistent(format!("leaf count of {user}"))),
    }
}

/// `user`'s `k`-th leaf (from 0).
async fn leaf_at(kv: &kv::Store, user: &UserId, k: u64) -> Result<UserLeaf> {
    let v = kv
        .get(leaf_key(user, k))
        .await
        .map_err(AnchorError::nats)?
        .ok_or_else(|| AnchorError::Inconsistent(format!("leaf {k} of {user} is missing")))?;
    serde_json::from_slice(&v)
        .map_err(|e| AnchorError::Inconsistent(format!("leaf {k} of {user}: {e}")))
}

/// `user`'s newest leaves, at most [`LEAVES_PER_USER`], oldest first.
pub(crate) async fn user_leaves(kv: &kv::Store, user: &UserId) -> Result<Vec<UserLeaf>> {
    let n = leaf_count(kv, user).await?;
    let mut out = Vec::new();
    for k in n.saturating_sub(LEAVES_PER_USER as u64)..n {
        out.push(leaf_at(kv, user, k).await?);
    }
    Ok(out)
}

/// `user`'s newest leaf in a log of `size` leaves: a binary search over the user's leaves
/// (O(log of them) reads).
pub(crate) async fn leaf_in(kv: &kv::Store, user: &UserId, size: u64) -> Result<Option<UserLeaf>> {
    let n = leaf_count(kv, user).await?;
    let (mut lo, mut hi) = (0u64, n);
    let mut found = None;
    // The largest k with leaf_k.leaf < size (leaves grow with k).
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let l = leaf_at(kv, user, mid).await?;
        if l.leaf < size {
            found = Some(l);
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(found)
}

/// Records new leaves of users (each user's next `k`), 64 users at a time. A leaf already
/// recorded (a retried epoch) is not recorded twice.
pub(crate) async fn add_user_leaves(kv: &kv::Store, leaves: Vec<UserLeaf>) -> Result<()> {
    futures::stream::iter(leaves)
        .map(|l| async move {
            let user = l.checkpoint.user.clone();
            let n = leaf_count(kv, &user).await?;
            if n > 0 && leaf_at(kv, &user, n - 1).await?.leaf >= l.leaf {
                return Ok(());
            }
            kv.put(
                leaf_key(&user, n),
                serde_json::to_vec(&l).expect("serialisable").into(),
            )
            .await
            .map_err(AnchorError::nats)?;
            kv.put(user_key(&user), (n + 1).to_string().into())
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

use mnemo_core::HeadRecord as Head;

/// Stream sequences read per page of [`changes_since`].
const PAGE: u64 = 4096;

/// The users whose head moved after stream sequence `after` of `mnemo-heads` (0: every
/// user), each with its latest checkpoint, and the last sequence read. O(updates since),
/// read with direct gets by sequence, 64 at a time, in pages: no consumer. (A superseded
/// update is gone from the bucket's stream, history 1, and skipped.) What it holds is
/// O(users changed since): the first tree-2 epoch reads every user once (about 120 bytes
/// each), every later one the users who wrote since the last.
pub(crate) async fn changes_since(
    js: &jetstream::Context,
    after: u64,
) -> Result<(BTreeMap<UserId, Checkpoint>, u64)> {
    let mut out = BTreeMap::new();
    let mut s = match js.get_stream(names::kv_stream(names::HEADS_BUCKET)).await {
        Ok(s) => s,
        Err(_) => return Ok((out, after)),
    };
    let state = s.info().await.map_err(AnchorError::nats)?.state.clone();
    let (from, last) = (
        after.max(state.first_sequence.saturating_sub(1)) + 1,
        state.last_sequence,
    );
    if last < from {
        return Ok((out, after.max(last)));
    }
    let prefix = format!("$KV.{}.", names::HEADS_BUCKET);
    // In pages, so that what is held is the changed users' checkpoints, never the raw
    // messages of every update at once.
    let mut page_start = from;
    while page_start <= last {
        let page_end = last.min(page_start + PAGE - 1);
        let got: Vec<Option<(String, bytes::Bytes)>> = futures::stream::iter(page_start..=page_end)
            .map(|seq| {
                let s = s.clone();
                async move {
                    match s.direct_get(seq).await {
                        Ok(m) => Ok(Some((m.subject.to_string(), m.payload))),
                        Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {
                            Ok(None)
                        }
                        Err(e) => Err(AnchorError::nats(e)),
                    }
                }
            })
            .buffered(64)
            .try_collect()
            .await?;
        for (subject, payload) in got.into_iter().flatten() {
            let Some(user) = subject
                .strip_prefix(&prefix)
                .and_then(|u| UserId::new(u).ok())
            else {
                continue;
            };
            if let Ok(h) = serde_json::from_slice::<Head>(&payload) {
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
        page_start = page_end + 1;
    }
    Ok((out, last))
}
