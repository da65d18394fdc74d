//! The epoch log's storage (docs/FORMAT.md §7.1, tree 2; `mnemo_core::epoch_log`): the
//! log's complete nodes in tiles of 16 and each user's leaves in a record and chunks of 16
//! (`crate::log_records`, binary) in the `mnemo-epoch-log` bucket, and the log's right edge
//! in the anchor's state. An epoch writes about one entry per changed user (its record)
//! and one per 16 nodes; a proof reads O(log leaves) tiles, with direct gets, whatever the
//! server's age.

use async_nats::jetstream::{self, kv};
use futures::{StreamExt, TryStreamExt};
use mnemo_core::epoch_log::{self, NodeId};
use mnemo_core::{Checkpoint, EpochProof, Hash32, Seq, UserId, names};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use crate::error::{AnchorError, Result};
pub(crate) use crate::log_records::UserLeaf;
use crate::log_records::{
    CHUNK, UserRecord, chunk_key, decode_chunk, record_key, tile_key, tile_node, tile_of,
};

/// The anchors of a user's newest leaves listed for exports: this many (an older
/// checkpoint's events are covered by a newer checkpoint's anchor as well). Every leaf is
/// kept, and any epoch's proof can be made.
pub(crate) const LEAVES_PER_USER: usize = CHUNK as usize;

/// The storage version this code writes (1: one entry per node and per leaf, in JSON).
pub(crate) const STORE_VERSION: u8 = 2;

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
    /// The storage version (absent: 1).
    #[serde(default)]
    pub(crate) store: u8,
}

/// The bucket (created when missing).
pub(crate) async fn bucket(js: &jetstream::Context, replicas: usize) -> Result<kv::Store> {
    Ok(mnemo_ledger::provision::ensure_kv(
        js,
        kv::Config {
            bucket: names::EPOCH_LOG_BUCKET.into(),
            description: "mnemo epoch log: complete nodes and users' leaves".into(),
            history: 1,
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?)
}

fn corrupt(what: String) -> AnchorError {
    AnchorError::Inconsistent(what)
}

/// Stores new complete nodes: each tile they fall in is written once, 64 tiles at a time
/// (a tile the log had begun is read first and extended).
pub(crate) async fn put_nodes(kv: &kv::Store, nodes: Vec<(NodeId, Hash32)>) -> Result<()> {
    let mut tiles: BTreeMap<(u8, u64), Vec<(usize, Hash32)>> = BTreeMap::new();
    for (id, h) in nodes {
        let (tile, place) = tile_of(id);
        tiles.entry(tile).or_default().push((place, h));
    }
    futures::stream::iter(tiles)
        .map(|(tile, mut new)| async move {
            new.sort_by_key(|(place, _)| *place);
            let first = new[0].0;
            let mut bytes = Vec::with_capacity(CHUNK as usize * 32);
            if first > 0 {
                // The tile's earlier nodes (a retried epoch may have written more: those
                // are the same nodes, written again below).
                let old = kv
                    .get(tile_key(tile))
                    .await
                    .map_err(AnchorError::nats)?
                    .unwrap_or_default();
                if old.len() < first * 32 {
                    return Err(corrupt(format!("epoch log tile {tile:?} is short")));
                }
                bytes.extend_from_slice(&old[..first * 32]);
            }
            for (i, (place, h)) in new.iter().enumerate() {
                if *place != first + i {
                    return Err(corrupt(format!(
                        "nodes of tile {tile:?} are not contiguous"
                    )));
                }
                bytes.extend_from_slice(&h.0);
            }
            kv.put(tile_key(tile), bytes.into())
                .await
                .map_err(AnchorError::nats)?;
            Ok(())
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Reads nodes: each tile once, 16 at a time.
pub(crate) async fn get_nodes(kv: &kv::Store, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash32>> {
    let mut tiles: BTreeMap<(u8, u64), Vec<(NodeId, usize)>> = BTreeMap::new();
    for &id in ids {
        let (tile, place) = tile_of(id);
        tiles.entry(tile).or_default().push((id, place));
    }
    let got: Vec<Vec<(NodeId, Hash32)>> = futures::stream::iter(tiles)
        .map(|(tile, wanted)| async move {
            let bytes = kv
                .get(tile_key(tile))
                .await
                .map_err(AnchorError::nats)?
                .unwrap_or_default();
            wanted
                .into_iter()
                .map(|(id, place)| {
                    tile_node(&bytes, place)
                        .map(|h| (id, h))
                        .ok_or_else(|| corrupt(format!("epoch log node {id:?} is missing")))
                })
                .collect::<Result<Vec<_>>>()
        })
        .buffered(16)
        .try_collect()
        .await?;
    Ok(got.into_iter().flatten().collect())
}

/// `user`'s record (empty when the user has no leaf).
async fn record(kv: &kv::Store, user: &UserId) -> Result<UserRecord> {
    match kv.get(record_key(user)).await.map_err(AnchorError::nats)? {
        None => Ok(UserRecord::default()),
        Some(v) => UserRecord::decode(user, &v)
            .ok_or_else(|| corrupt(format!("the epoch log record of {user}"))),
    }
}

/// `user`'s full chunk `j`.
async fn chunk(kv: &kv::Store, user: &UserId, j: u64) -> Result<Vec<UserLeaf>> {
    let v = kv
        .get(chunk_key(user, j))
        .await
        .map_err(AnchorError::nats)?
        .ok_or_else(|| corrupt(format!("chunk {j} of {user}'s leaves is missing")))?;
    decode_chunk(user, &v).ok_or_else(|| corrupt(format!("chunk {j} of {user}'s leaves")))
}

/// `user`'s newest leaves, at most [`LEAVES_PER_USER`], oldest first (two reads at most).
pub(crate) async fn user_leaves(kv: &kv::Store, user: &UserId) -> Result<Vec<UserLeaf>> {
    let r = record(kv, user).await?;
    let mut out = Vec::new();
    if r.recent.len() < LEAVES_PER_USER && r.chunks() > 0 {
        let last = chunk(kv, user, r.chunks() - 1).await?;
        out.extend(last.into_iter().skip(r.recent.len()));
    }
    out.extend(r.recent);
    Ok(out)
}

/// `user`'s newest leaf in a log of `size` leaves: from the record, else a binary search
/// over the user's chunks (O(log of them) reads).
pub(crate) async fn leaf_in(kv: &kv::Store, user: &UserId, size: u64) -> Result<Option<UserLeaf>> {
    let r = record(kv, user).await?;
    if let Some(l) = r.recent.iter().rev().find(|l| l.leaf < size) {
        return Ok(Some(l.clone()));
    }
    // The last chunk whose first leaf is in the log (leaves grow with their order).
    let (mut lo, mut hi) = (0u64, r.chunks());
    let mut found = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let c = chunk(kv, user, mid).await?;
        if c[0].leaf < size {
            found = c.into_iter().rev().find(|l| l.leaf < size);
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(found)
}

/// Appends a leaf to `user`'s record, storing the chunk it completes (before the record
/// that no longer holds those leaves is written).
async fn push_leaf(kv: &kv::Store, user: &UserId, r: &mut UserRecord, l: UserLeaf) -> Result<()> {
    if let Some((j, bytes)) = r.push(l) {
        kv.put(chunk_key(user, j), bytes.into())
            .await
            .map_err(AnchorError::nats)?;
    }
    Ok(())
}

async fn put_record(kv: &kv::Store, user: &UserId, r: &UserRecord) -> Result<()> {
    kv.put(record_key(user), r.encode().into())
        .await
        .map_err(AnchorError::nats)?;
    Ok(())
}

/// Records new leaves of users, one per user, 64 users at a time: one read and one write
/// per user (and a chunk every 16 leaves). A leaf already recorded (a retried epoch) is
/// not recorded twice.
pub(crate) async fn add_user_leaves(kv: &kv::Store, leaves: Vec<UserLeaf>) -> Result<()> {
    futures::stream::iter(leaves)
        .map(|l| async move {
            let user = l.checkpoint.user.clone();
            let mut r = record(kv, &user).await?;
            let last = match r.recent.last() {
                Some(x) => Some(x.leaf),
                None if r.chunks() > 0 => chunk(kv, &user, r.chunks() - 1)
                    .await?
                    .last()
                    .map(|x| x.leaf),
                None => None,
            };
            if last.is_some_and(|x| x >= l.leaf) {
                return Ok(());
            }
            push_leaf(kv, &user, &mut r, l).await?;
            put_record(kv, &user, &r).await
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// A leaf as storage version 1 kept it (JSON, one entry per leaf).
#[derive(Deserialize)]
struct LeafV1 {
    leaf: u64,
    epoch: u64,
    checkpoint: Checkpoint,
}

/// Rewrites a log of `size` leaves stored by version 1 (`n.<level>.<index>` per node,
/// `u.<user>` and `u.<user>.<k>` per leaf, JSON) as version 2, removing the old entries as
/// it goes. Run once, by the anchorer, before its first epoch after an upgrade. It lists
/// the bucket's keys once (one consumer, once) and keeps only the user ids; nodes are read
/// level by level and written a tile at a time, and each user's leaves one user at a time,
/// so what it holds is O(users) ids, never the log. Costs O(entries) reads and writes. An
/// upgrade that stopped midway (a crash) is taken up again where it stood. Returns the
/// entries removed.
pub(crate) async fn upgrade_v1(kv: &kv::Store, size: u64) -> Result<usize> {
    let mut users = Vec::new();
    let mut keys = kv.keys().await.map_err(AnchorError::nats)?;
    while let Some(k) = keys.next().await {
        let k = k.map_err(AnchorError::nats)?;
        if let Some(u) = k.strip_prefix("u.")
            && let Ok(u) = UserId::new(u)
        {
            users.push(u);
        }
    }
    let get = async |key: &str| -> Result<bytes::Bytes> {
        kv.get(key)
            .await
            .map_err(AnchorError::nats)?
            .ok_or_else(|| corrupt(format!("epoch log entry {key} is missing")))
    };
    let mut removed = 0;
    // The complete nodes: `size >> level` at each level, in tiles.
    for level in 0..64u8 {
        let count = size >> level;
        if count == 0 {
            break;
        }
        for first in (0..count).step_by(CHUNK as usize) {
            let ids: Vec<NodeId> = (first..count.min(first + CHUNK))
                .map(|i| (level, i))
                .collect();
            // Written by an upgrade that stopped midway: its nodes may be gone already.
            let done = kv
                .get(tile_key(tile_of(ids[0]).0))
                .await
                .map_err(AnchorError::nats)?
                .is_some_and(|t| t.len() >= ids.len() * 32);
            let mut nodes = Vec::with_capacity(ids.len());
            for &(l, i) in ids.iter().filter(|_| !done) {
                let key = format!("n.{l}.{i}");
                let h: [u8; 32] = get(&key)
                    .await?
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt(format!("epoch log node {key}")))?;
                nodes.push(((l, i), Hash32(h)));
            }
            if !done {
                put_nodes(kv, nodes).await?;
            }
            for (l, i) in ids {
                kv.purge(format!("n.{l}.{i}"))
                    .await
                    .map_err(AnchorError::nats)?;
                removed += 1;
            }
        }
    }
    // Each user's leaves, oldest first.
    for user in users {
        let count_key = format!("u.{user}");
        let count: u64 = std::str::from_utf8(&get(&count_key).await?)
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| corrupt(format!("leaf count of {user}")))?;
        let mut r = UserRecord::default();
        for k in 0..count {
            let l: LeafV1 = serde_json::from_slice(&get(&format!("u.{user}.{k}")).await?)
                .map_err(|e| corrupt(format!("leaf {k} of {user}: {e}")))?;
            push_leaf(
                kv,
                &user,
                &mut r,
                UserLeaf {
                    leaf: l.leaf,
                    epoch: l.epoch,
                    checkpoint: l.checkpoint,
                },
            )
            .await?;
        }
        put_record(kv, &user, &r).await?;
        // The count first: an upgrade that stops after it does not list the user again
        // (its record is written); one that stops before it redoes the user, the same.
        kv.purge(count_key).await.map_err(AnchorError::nats)?;
        for k in 0..count {
            kv.purge(format!("u.{user}.{k}"))
                .await
                .map_err(AnchorError::nats)?;
        }
        removed += count as usize + 1;
    }
    Ok(removed)
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
