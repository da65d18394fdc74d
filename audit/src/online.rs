//! Reading a chain straight from JetStream (`mnemo-audit verify --nats`): the same bundle
//! items an export holds, minus the payload openings (payloads are sealed in the stream),
//! built from the raw stream messages, so the server's API is not trusted at all.

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use mnemo_anchor::AnchorReader;
use mnemo_core::custody::{BUNDLE_FORMAT, BUNDLE_VERSION, BundleItem, HexBytes};
use mnemo_core::{Custody, Event, Hash32, SealLink, TimestampMs, UserId};
use mnemo_ledger::{Layout, SealStore, envelope};
use std::sync::mpsc::SyncSender;

use crate::{ItemError, SourceError};

/// Finds the layout of the deployment: a per-user stream for `user`, else the number of
/// shared chain streams.
pub async fn detect_layout(js: &jetstream::Context, user: &UserId) -> Result<Layout, SourceError> {
    if js
        .get_stream(Layout::PerUser.locate(user).stream)
        .await
        .is_ok()
    {
        return Ok(Layout::PerUser);
    }
    let mut names = js.stream_names();
    let mut shards = 0u32;
    while let Some(n) = names.next().await {
        let n = n.map_err(|e| SourceError::Nats {
            what: "listing streams",
            detail: e.to_string(),
        })?;
        if n.starts_with(mnemo_core::names::SHARD_STREAM_PREFIX) {
            shards += 1;
        }
    }
    if shards == 0 {
        return Err(SourceError::NoChain(user.clone()));
    }
    Ok(Layout::Sharded { shards })
}

fn io(e: impl std::fmt::Display) -> ItemError {
    ItemError::Io(std::io::Error::other(e.to_string()))
}

/// The header item of `user`'s bundle, read at `now`.
pub(crate) fn header(user: &UserId, now: TimestampMs) -> BundleItem {
    BundleItem::Header {
        format: BUNDLE_FORMAT.into(),
        version: BUNDLE_VERSION,
        user: user.clone(),
        exported_at: now,
        ledger_key: None,
    }
}

/// Sends items into the verifier's bounded channel. Sending blocks this task's thread,
/// which is one of the runtime's workers; `block_in_place` lets the others go on.
fn sender(
    tx: &SyncSender<Result<BundleItem, ItemError>>,
) -> impl Fn(BundleItem) -> Result<(), ItemError> + '_ {
    |item| {
        tokio::task::block_in_place(|| tx.send(Ok(item)).is_ok())
            .then_some(())
            .ok_or_else(|| io("the verifier stopped reading"))
    }
}

/// Every chain on the server: the per-user streams' users, and the users of the shared
/// streams' subjects, each with the layout it is found in, in user id order.
pub async fn list_users(js: &jetstream::Context) -> Result<Vec<(Layout, UserId)>, SourceError> {
    let nats = |what: &'static str| move |e: String| SourceError::Nats { what, detail: e };
    let mut names = js.stream_names();
    let mut per_user = Vec::new();
    let mut shards = Vec::new();
    while let Some(n) = names.next().await {
        let n = n.map_err(|e| nats("listing streams")(e.to_string()))?;
        if let Some(k) = n.strip_prefix(mnemo_core::names::SHARD_STREAM_PREFIX) {
            shards.push((n.clone(), k.to_owned()));
        } else if let Some(u) =
            n.strip_prefix(&format!("{}-", mnemo_core::names::CHAIN_STREAM_PREFIX))
            && let Ok(u) = UserId::new(u)
        {
            per_user.push((Layout::PerUser, u));
        }
    }
    let layout = Layout::Sharded {
        shards: shards.len() as u32,
    };
    let mut users = per_user;
    for (name, _) in &shards {
        let stream = js
            .get_stream(name)
            .await
            .map_err(|e| nats("opening a chain stream")(e.to_string()))?;
        let mut subjects = stream
            .info_with_subjects(format!("{}.>", mnemo_core::names::CHAIN_SUBJECT_PREFIX))
            .await
            .map_err(|e| nats("listing chain subjects")(e.to_string()))?;
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(|e| nats("listing chain subjects")(e.to_string()))?;
            if let Some(u) = mnemo_core::names::chain_subject_user(&subject) {
                users.push((layout, u));
            }
        }
    }
    users.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(users)
}

/// Sends `user`'s bundle items into `tx` (bounded, so memory stays bounded): header,
/// anchors from the anchorer's records, every event up to the chain's current end, end.
/// Stored seals are resolved through `seals` (shared by every chain an audit reads).
pub async fn send_items(
    js: jetstream::Context,
    layout: Layout,
    user: UserId,
    now: TimestampMs,
    seals: SealStore,
    tx: SyncSender<Result<BundleItem, ItemError>>,
) {
    if let Err(e) = produce(&js, layout, &user, now, &seals, &tx).await {
        let _ = tx.send(Err(e));
    }
}

async fn produce(
    js: &jetstream::Context,
    layout: Layout,
    user: &UserId,
    now: TimestampMs,
    seals: &SealStore,
    tx: &SyncSender<Result<BundleItem, ItemError>>,
) -> Result<(), ItemError> {
    let send = sender(tx);
    let loc = layout.locate(user);
    let stream = js.get_stream(&loc.stream).await.map_err(io)?;
    let last = match stream
        .direct_get_last_for_subject(loc.subject.clone())
        .await
    {
        Ok(m) => Some(m.sequence),
        Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    send(header(user, now))?;
    if let Some(reader) = AnchorReader::open(js).await.map_err(io)? {
        for (epoch_proof, receipt) in reader.anchors_for(user).await.map_err(io)? {
            send(BundleItem::Anchor {
                epoch_proof,
                receipt,
            })?;
        }
    }
    let mut events = 0u64;
    let mut head = Hash32::ZERO;
    if let Some(last) = last {
        let c = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: loc.subject.clone(),
                ..Default::default()
            })
            .await
            .map_err(io)?;
        let mut msgs = c.messages().await.map_err(io)?;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(io)?;
            let stream_seq = m.info().map_err(io)?.stream_sequence;
            let (wire, _sealed) = envelope::decode(&m.payload).map_err(io)?;
            // A stored seal is read from its record; everything else goes on byte for byte.
            let wire = match Event::from_wire(&wire) {
                Ok((e, h)) => {
                    head = h;
                    if matches!(e.custody, Custody::Seal(SealLink::Stored { .. })) {
                        seals.resolve(e).await.map_err(io)?.to_wire()
                    } else {
                        wire.to_vec()
                    }
                }
                Err(_) => wire.to_vec(),
            };
            events += 1;
            send(BundleItem::Event {
                wire: HexBytes(wire),
            })?;
            if stream_seq >= last {
                break;
            }
        }
    }
    send(BundleItem::End { events, head })?;
    Ok(())
}

/// Sends `user`'s bundle items into `tx`, read through the device protocol's `mnemo.read`
/// (docs/asyncapi.yaml) on `client`: what a user's own device credentials reach, with no
/// JetStream access. Pages of 1,000 events until the chain's end; stored seals come
/// resolved (full seals). No anchors: the anchorer's records are not on `mnemo.read`, so
/// such an audit checks the chain, its seals and signatures, not its anchors.
pub async fn send_items_via_read(
    client: async_nats::Client,
    user: UserId,
    now: TimestampMs,
    tx: SyncSender<Result<BundleItem, ItemError>>,
) {
    if let Err(e) = produce_via_read(&client, &user, now, &tx).await {
        let _ = tx.send(Err(e));
    }
}

async fn produce_via_read(
    client: &async_nats::Client,
    user: &UserId,
    now: TimestampMs,
    tx: &SyncSender<Result<BundleItem, ItemError>>,
) -> Result<(), ItemError> {
    let send = sender(tx);
    send(header(user, now))?;
    let (mut next, mut events, mut head) = (1u64, 0u64, Hash32::ZERO);
    loop {
        let body = serde_json::json!({ "from": next, "limit": 1000 }).to_string();
        let r = client
            .request(mnemo_core::names::READ_PREFIX, body.into())
            .await
            .map_err(|e| io(format!("mnemo.read: {e}")))?;
        if let Some(err) = r.headers.as_ref().and_then(|h| h.get("Nats-Service-Error")) {
            return Err(io(format!("mnemo.read refused: {err}")));
        }
        let page: serde_json::Value =
            serde_json::from_slice(&r.payload).map_err(|e| io(format!("mnemo.read: {e}")))?;
        if page["user"].as_str() != Some(user.as_str()) {
            return Err(io(format!(
                "mnemo.read answered for {:?}, not {user}: these credentials are another user's",
                page["user"]
            )));
        }
        let items = page["events"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        for e in items {
            let wire = e["wire"]
                .as_str()
                .and_then(|w| hex::decode(w).ok())
                .ok_or_else(|| io("mnemo.read: an event without its wire form"))?;
            if let Ok((ev, h)) = Event::from_wire(&wire) {
                head = h;
                next = ev.seq.0 + 1;
            } else {
                next += 1;
            }
            events += 1;
            send(BundleItem::Event {
                wire: HexBytes(wire),
            })?;
        }
    }
    send(BundleItem::End { events, head })?;
    Ok(())
}
