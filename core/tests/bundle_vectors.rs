//! Custody-bundle vectors (FORMAT.md §13): one valid bundle and, for each code a custody
//! bundle can fail with, one invalid bundle; the same chain moved to format version 2 at
//! seq 3 (`v2_*`), valid and with each seal check failing, built here from fixed keys and written to
//! `testdata/bundles/` with the verdict (code and seq) mnemo gives each. An independent
//! verifier should give the same verdicts. Regenerate with
//! `MNEMO_WRITE_VECTORS=1 cargo test -p mnemo-core --test bundle_vectors`.

mod common;

use common::{ChainBuilder, key, mem, pk, user};
use mnemo_core::custody::{AuditPolicy, BundleItem, CustodyVerifier, HexBytes};
use mnemo_core::keys::sign_origin;
use mnemo_core::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bundles");
/// The chain builder's clock starts here.
const T0: i64 = 1_764_115_200_000;

fn record(text: &str) -> MemoryRecord {
    MemoryRecord {
        kind: "note".into(),
        tags: vec!["diary".into()],
        captured_at: Some(TimestampMs(T0)),
        source: None,
        content_type: "text/plain".into(),
        content: Content::Inline {
            bytes: text.as_bytes().to_vec(),
        },
    }
}

const SALT1: [u8; 32] = [0x11; 32];
const SALT2: [u8; 32] = [0x22; 32];

/// alice: 1 genesis, 2 device key, 3 memory m1, 4 memory m2 (with an origin signature),
/// 5 grant g to bob, 6 access by bob to m1, 7 revocation of g, 8 erasure of m2.
fn chain() -> ChainBuilder {
    let (custody, device) = (key(1), key(3));
    let alice = user("alice");
    let mut b = ChainBuilder::with_genesis(user("alice"), &custody);
    b.push(
        &custody,
        EventBody::KeyAdded {
            key: pk(&device),
            role: KeyRole::Device,
        },
        None,
        None,
    );
    let c1 = commitment::commit(&SALT1, &record("first").canonical_bytes());
    b.push(
        &custody,
        EventBody::MemoryIngested {
            memory: mem(1),
            capture: None,
        },
        Some(c1),
        None,
    );
    let c2 = commitment::commit(&SALT2, &record("second").canonical_bytes());
    let origin = Origin {
        key: pk(&device).id(),
        signature: sign_origin(&device, &alice, &c2),
    };
    b.push(
        &custody,
        EventBody::MemoryIngested {
            memory: mem(2),
            capture: None,
        },
        Some(c2),
        Some(origin),
    );
    b.push(&custody, grant(user("bob")), None, None);
    b.push(&custody, access(GrantId([5; 16]), vec![mem(1)]), None, None);
    b.push(
        &custody,
        EventBody::GrantRevoked {
            grant: GrantId([5; 16]),
        },
        None,
        None,
    );
    b.push(
        &custody,
        EventBody::MemoryErased {
            target: ErasureTarget::Memory(mem(2)),
        },
        None,
        None,
    );
    b
}

fn grant(grantee: UserId) -> EventBody {
    EventBody::GrantCreated {
        grant: GrantId([5; 16]),
        grantee,
        capabilities: Capabilities {
            metadata: true,
            content: true,
            ask: false,
        },
        conditions: Default::default(),
        expires_at: None,
        not_before: None,
    }
}

fn access(grant: GrantId, memories: Vec<MemoryId>) -> EventBody {
    EventBody::AccessRecorded {
        accessor: user("bob"),
        grant,
        action: AccessAction::ReadContent,
        memories,
    }
}

/// The chain's checkpoint after `seq` events.
fn checkpoint(events: &[(Event, Hash32)], seq: u64) -> Checkpoint {
    let tree = MerkleTree::from_leaf_hashes(
        merkle::CHAIN_TREE,
        events[..seq as usize]
            .iter()
            .map(|(_, h)| merkle::CHAIN_TREE.leaf(&h.0))
            .collect(),
    );
    Checkpoint {
        user: user("alice"),
        seq: Seq(seq),
        head: events[seq as usize - 1].1,
        root: tree.root(),
    }
}

/// An anchor item for `cp` in epoch `epoch`, with one other user in the epoch tree.
fn anchor(cp: Checkpoint, epoch: u64, prev_root: Hash32) -> BundleItem {
    let other = Checkpoint {
        user: user("zed"),
        seq: Seq(1),
        head: Hash32([9; 32]),
        root: Hash32([8; 32]),
    };
    let tree = EpochTree::build(epoch, vec![cp.clone(), other]).unwrap();
    let epoch_proof = tree.proof(&cp.user).unwrap();
    BundleItem::Anchor {
        receipt: AnchorReceipt {
            chain_id: 23293,
            contract: Address([0xaa; 20]),
            tx_hash: Hash32([0xbb; 32]),
            block_number: 40 + epoch,
            block_hash: Hash32([0xcc; 32]),
            epoch,
            root: tree.root(),
            leaf_count: 2,
            prev_root,
        },
        epoch_proof,
    }
}

/// The whole bundle of `events`: header, anchors for seq 6 (epoch 1) and 8 (epoch 2), the
/// events with m1's opening, the end.
/// The header of alice's bundles.
fn header() -> BundleItem {
    BundleItem::Header {
        format: custody::BUNDLE_FORMAT.into(),
        version: custody::BUNDLE_VERSION,
        user: user("alice"),
        exported_at: TimestampMs(T0 + 60_000),
        ledger_key: Some(pk(&key(1))),
    }
}

fn bundle(events: &[(Event, Hash32)], anchored: &[u64]) -> Vec<BundleItem> {
    let mut items = vec![header()];
    let mut prev = Hash32::ZERO;
    for (i, seq) in anchored.iter().enumerate() {
        let a = anchor(checkpoint(events, *seq), i as u64 + 1, prev);
        if let BundleItem::Anchor { receipt, .. } = &a {
            prev = receipt.root;
        }
        items.push(a);
    }
    for (e, _) in events {
        items.push(BundleItem::Event {
            wire: HexBytes(e.to_wire()),
        });
        if matches!(e.body, EventBody::MemoryIngested { memory, .. } if memory == mem(1)) {
            items.push(BundleItem::Payload {
                seq: e.seq,
                salt: Hash32(SALT1),
                record: record("first"),
            });
        }
    }
    let (last, h) = events.last().unwrap();
    items.push(BundleItem::End {
        events: last.seq.0,
        head: *h,
    });
    items
}

/// Replaces event `seq` by `body` signed with `k` on the real head before it (later events
/// keep their old links, so the first failure is at `seq`).
fn replace(
    seq: u64,
    k: &SigningKey,
    body: EventBody,
    payload: Option<Hash32>,
    origin: Option<Origin>,
) -> Vec<(Event, Hash32)> {
    let b = chain();
    let mut events = b.events.clone();
    let (prev_e, prev_h) = &events[seq as usize - 2];
    let head = Head {
        user: prev_e.user.clone(),
        len: seq - 1,
        hash: *prev_h,
    };
    let ts = events[seq as usize - 1].0.timestamp;
    events[seq as usize - 1] = head.next_event(k, ts, body, payload, origin);
    events
}

fn resign(e: &mut Event, k: &SigningKey) {
    let h = e.unsigned.hash();
    e.custody = mnemo_core::Custody::Signature(keys::sign_event_hash(k, &h));
}

/// The chain moved to format version 2 at seq 3 (FORMAT.md §14): seq 3 to 5 sealed in one
/// batch of five with two other users' event hashes, 6 alone, 7 and 8 in a batch of two.
fn switched() -> Vec<(Event, Hash32)> {
    let v1 = chain().events;
    let custody = key(1);
    let signer = pk(&custody).id();
    let mut out: Vec<(Event, Hash32)> = v1[..2].to_vec();
    let mut head = Head {
        user: user("alice"),
        len: 2,
        hash: v1[1].1,
    };
    let mut unsigned = Vec::new();
    for (e, _) in &v1[2..] {
        let (u, h) = head.next_unsigned(
            FORMAT_V2,
            signer,
            e.timestamp,
            e.body.clone(),
            e.payload,
            e.origin,
        );
        head.len = u.seq.0;
        head.hash = h;
        unsigned.push((u, h));
    }
    let other = |n: u8| Hash32([n; 32]);
    let batches: [&[usize]; 3] = [&[0, 1, 2], &[3], &[4, 5]];
    for b in batches {
        let mut hashes: Vec<Hash32> = b.iter().map(|&i| unsigned[i].1).collect();
        let mut at: Vec<u32> = (0..b.len() as u32).collect();
        if b.len() == 3 {
            // Another user's events before and among alice's.
            hashes = vec![other(0xb1), hashes[0], hashes[1], other(0xc1), hashes[2]];
            at = vec![1, 2, 4];
        }
        let batch = SealedBatch::sign(&custody, &hashes);
        for (&i, &index) in b.iter().zip(&at) {
            let (u, h) = unsigned[i].clone();
            out.push((u.sealed(batch.link(index, None)), h));
        }
    }
    out
}

/// `events` with event `seq`'s seal changed by `f` (its bytes and hash stay).
fn reseal(
    events: &[(Event, Hash32)],
    seq: u64,
    f: impl FnOnce(&mut Seal, &[(Event, Hash32)]),
) -> Vec<(Event, Hash32)> {
    let mut events = events.to_vec();
    let (e, h) = &events[seq as usize - 1];
    let mut seal = e.seal(h).expect("a version 2 event");
    f(&mut seal, &events);
    let e = e.clone();
    events[seq as usize - 1].0 = Event {
        unsigned: e.unsigned,
        custody: Custody::Seal(SealLink::Full(seal)),
    };
    events
}

fn v2_variants() -> Vec<(&'static str, Vec<BundleItem>)> {
    let v2 = switched();
    let anchored = [6, 8];
    let mut out = vec![("v2_valid", bundle(&v2, &anchored))];
    let t = reseal(&v2, 4, |s, _| {
        let mut sig = s.signature.to_bytes();
        sig[7] ^= 1;
        s.signature = Sig::from_bytes(&sig);
    });
    out.push(("v2_seal_signature", bundle(&t, &anchored)));
    let t = reseal(&v2, 4, |s, _| s.path[0].0[9] ^= 1);
    out.push(("v2_seal_path_node", bundle(&t, &anchored)));
    let t = reseal(&v2, 4, |s, _| s.index = 3);
    out.push(("v2_seal_index_moved", bundle(&t, &anchored)));
    let t = reseal(&v2, 4, |s, _| s.index = 5);
    out.push(("v2_seal_index_outside", bundle(&t, &anchored)));
    let t = reseal(&v2, 4, |s, _| s.size = 9);
    out.push(("v2_seal_size", bundle(&t, &anchored)));
    let t = reseal(&v2, 4, |s, ev| *s = ev[4].0.seal(&ev[4].1).unwrap());
    out.push(("v2_seal_moved", bundle(&t, &anchored)));
    let mut t = v2.clone();
    t[3].0.custody = Custody::Seal(SealLink::Stored { seal: 7, index: 2 });
    out.push(("v2_seal_missing", bundle(&t, &anchored)));
    // Captures (FORMAT.md §4.2), each sealed alone after seq 8: voice 1, web 1, voice 2;
    // then voice 1 again, a capture recorded twice.
    // Captures (FORMAT.md §4.2), each sealed alone after seq 8: voice 1, web 1, voice 2;
    // the voice captures signed by the device (the capture signature of §5.2), web not.
    // `plain_origin` signs voice captures with the plain origin message instead (wrong).
    let captures = |ids: &[(&str, u64)], plain_origin: bool| {
        let mut t = v2.clone();
        let (last, h) = t.last().unwrap().clone();
        let mut head = Head {
            user: last.user.clone(),
            len: last.seq.0,
            hash: h,
        };
        let device = key(3);
        for (i, (stream, counter)) in ids.iter().enumerate() {
            let c = commitment::commit(&[0x40 + i as u8; 32], stream.as_bytes());
            let capture = Capture {
                stream: (*stream).into(),
                counter: *counter,
            };
            let origin = (*stream == "voice").then(|| Origin {
                key: pk(&device).id(),
                signature: if plain_origin {
                    sign_origin(&device, &user("alice"), &c)
                } else {
                    keys::sign_capture(&device, &user("alice"), &capture, &c)
                },
            });
            let (u, h) = head.next_unsigned(
                FORMAT_V2,
                pk(&key(1)).id(),
                TimestampMs(T0 + 100_000 + i as i64),
                EventBody::MemoryIngested {
                    memory: mem(0x40 + i as u8),
                    capture: Some(capture),
                },
                Some(c),
                origin,
            );
            head.len = u.seq.0;
            head.hash = h;
            t.push((u.sign(&key(1)), h));
        }
        t
    };
    let ids = [("voice", 1), ("web", 1), ("voice", 2)];
    out.push(("v2_captures", bundle(&captures(&ids, false), &anchored)));
    let doubled = [("voice", 1), ("web", 1), ("voice", 2), ("voice", 1)];
    out.push((
        "v2_duplicate_capture",
        bundle(&captures(&doubled, false), &anchored),
    ));
    out.push((
        "v2_capture_signature",
        bundle(&captures(&ids, true), &anchored),
    ));
    // Back to version 1 at seq 8 (signed alone, as version 1).
    let mut t = v2.clone();
    let (e7, h7) = &t[6];
    let head = Head {
        user: e7.user.clone(),
        len: 7,
        hash: *h7,
    };
    let e8 = &v2[7].0;
    t[7] = head.next_event(&key(1), e8.timestamp, e8.body.clone(), None, None);
    out.push(("v2_back_to_v1", bundle(&t, &[6])));
    out
}

fn variants() -> Vec<(&'static str, Vec<BundleItem>)> {
    let valid_events = chain().events;
    let anchored = [6, 8];
    let valid = bundle(&valid_events, &anchored);
    let custody = key(1);
    let mut out = vec![("valid", valid.clone())];
    let event_at = |items: &[BundleItem], seq: u64| {
        items.iter().position(|i| matches!(i, BundleItem::Event { wire } if Event::from_wire(&wire.0).is_ok_and(|(e, _)| e.seq == Seq(seq)))).unwrap()
    };
    // decode: event 4's wire cut short by one byte in the middle
    let mut t = valid.clone();
    if let BundleItem::Event { wire } = &mut t[event_at(&valid, 4)] {
        wire.0.remove(40);
    }
    out.push(("decode", t));
    // wrong_user: event 5 of bob's chain, on alice's head
    let mut ev = valid_events.clone();
    let mut e = ev[4].0.clone();
    e.unsigned.user = user("bob");
    resign(&mut e, &custody);
    ev[4] = (e.clone(), e.unsigned.hash());
    out.push(("wrong_user", bundle(&ev, &[])));
    // seq_gap: event 5 left out
    let mut ev = valid_events.clone();
    ev.remove(4);
    out.push(("seq_gap", bundle(&ev, &[])));
    // broken_link: event 5 links to nothing
    let mut ev = valid_events.clone();
    let mut e = ev[4].0.clone();
    e.unsigned.prev = Hash32([1; 32]);
    resign(&mut e, &custody);
    ev[4] = (e.clone(), e.unsigned.hash());
    out.push(("broken_link", bundle(&ev, &[])));
    // bad_signature: one bit of event 5's signature
    let mut t = valid.clone();
    if let BundleItem::Event { wire } = &mut t[event_at(&valid, 5)] {
        let n = wire.0.len();
        wire.0[n - 10] ^= 1;
    }
    out.push(("bad_signature", t));
    // bad_origin_signature: event 4's origin signature by another key, custody re-signed
    let mut ev = valid_events.clone();
    let mut e = ev[3].0.clone();
    let mut o = e.origin.unwrap();
    o.signature = sign_origin(&key(9), &user("alice"), &e.payload.unwrap());
    e.unsigned.origin = Some(o);
    resign(&mut e, &custody);
    ev[3] = (e.clone(), e.unsigned.hash());
    out.push(("bad_origin_signature", bundle(&ev, &[])));
    // unknown_key: event 5 signed by a key the chain never added
    out.push((
        "unknown_key",
        bundle(&replace(5, &key(9), grant(user("bob")), None, None), &[]),
    ));
    // key_not_allowed: event 5 signed by the device key
    out.push((
        "key_not_allowed",
        bundle(&replace(5, &key(3), grant(user("bob")), None, None), &[]),
    ));
    // bad_genesis: the first key is a device key
    let mut b = ChainBuilder::new(user("alice"));
    b.push(
        &custody,
        EventBody::KeyAdded {
            key: pk(&custody),
            role: KeyRole::Device,
        },
        None,
        None,
    );
    out.push(("bad_genesis", bundle(&b.events, &[])));
    // invalid_transition: a grant to the owner
    out.push((
        "invalid_transition",
        bundle(&replace(5, &custody, grant(user("alice")), None, None), &[]),
    ));
    // invalid_value: a grant expiring outside the time range
    let mut g = grant(user("bob"));
    if let EventBody::GrantCreated { expires_at, .. } = &mut g {
        *expires_at = Some(TimestampMs(i64::MAX));
    }
    out.push((
        "invalid_value",
        bundle(&replace(5, &custody, g, None, None), &[]),
    ));
    // invalid_value: a grant whose conditions name an empty kind (§4.5)
    let mut g = grant(user("bob"));
    if let EventBody::GrantCreated { conditions, .. } = &mut g {
        conditions.kinds = vec![String::new()];
    }
    out.push((
        "invalid_value_empty_kind",
        bundle(&replace(5, &custody, g, None, None), &[]),
    ));
    // payload: m1's record, committed to as it is, has an empty kind (§4.5)
    let mut empty = record("first");
    empty.kind = String::new();
    let c = commitment::commit(&SALT1, &empty.canonical_bytes());
    let mut t = bundle(
        &replace(
            3,
            &custody,
            EventBody::MemoryIngested {
                memory: mem(1),
                capture: None,
            },
            Some(c),
            None,
        ),
        &[],
    );
    for i in &mut t {
        if let BundleItem::Payload { record: r, .. } = i {
            r.kind = String::new();
        }
    }
    out.push(("payload_empty_kind", t));
    // unknown_memory: an erasure of a memory the chain lacks
    out.push((
        "unknown_memory",
        bundle(
            &replace(
                8,
                &custody,
                EventBody::MemoryErased {
                    target: ErasureTarget::Memory(mem(7)),
                },
                None,
                None,
            ),
            &[],
        ),
    ));
    // bad_grant: an access under a grant the chain never created
    out.push((
        "bad_grant",
        bundle(
            &replace(
                6,
                &custody,
                access(GrantId([6; 16]), vec![mem(1)]),
                None,
                None,
            ),
            &[],
        ),
    ));
    // truncated: anchored at seq 8, the bundle ends at 7
    let mut t = bundle(&valid_events[..7], &[]);
    t.insert(1, anchor(checkpoint(&valid_events, 8), 1, Hash32::ZERO));
    out.push(("truncated", t));
    // checkpoint_mismatch: an anchored checkpoint at seq 6 with another root
    let mut cp = checkpoint(&valid_events, 6);
    cp.root = Hash32([3; 32]);
    let mut t = bundle(&valid_events, &[]);
    t.insert(1, anchor(cp, 1, Hash32::ZERO));
    out.push(("checkpoint_mismatch", t));
    // anchor: a receipt for another root
    let mut t = valid.clone();
    if let BundleItem::Anchor { receipt, .. } = &mut t[1] {
        receipt.root = Hash32([4; 32]);
    }
    out.push(("anchor", t));
    // payload: m1's record altered
    let mut t = valid.clone();
    for i in &mut t {
        if let BundleItem::Payload { record: r, .. } = i {
            r.tags = vec!["work".into()];
        }
    }
    out.push(("payload", t));
    // payload: m1's opening before any event (a misplaced payload is `payload` wherever)
    let mut t = valid.clone();
    let at = t
        .iter()
        .position(|i| matches!(i, BundleItem::Payload { .. }))
        .unwrap();
    let opening = t.remove(at);
    let first_event = t
        .iter()
        .position(|i| matches!(i, BundleItem::Event { .. }))
        .unwrap();
    t.insert(first_event, opening);
    out.push(("payload_before_events", t));
    // erased_opening: m2's opening kept although event 8 erases it
    let mut t = valid.clone();
    let at = event_at(&valid, 4) + 1;
    t.insert(
        at,
        BundleItem::Payload {
            seq: Seq(4),
            salt: Hash32(SALT2),
            record: record("second"),
        },
    );
    out.push(("erased_opening", t));
    // structure: no end item
    let mut t = valid.clone();
    t.pop();
    out.push(("structure", t));
    out
}

fn verdict(items: &[BundleItem]) -> Value {
    let mut v = CustodyVerifier::new(AuditPolicy::default());
    let mut result = Ok(());
    for i in items {
        if let Err(e) = v.push(i.clone()) {
            result = Err(e);
            break;
        }
    }
    let result = result.and_then(|()| v.finish().map(|_| ()));
    match result {
        Ok(()) => json!({ "valid": true }),
        Err(e) => json!({ "valid": false, "code": e.code(), "seq": e.seq().map(|s| s.0) }),
    }
}

#[test]
fn every_custody_code_has_a_bundle_with_the_verdict_recorded() {
    let want: BTreeMap<&str, (Option<&str>, Option<u64>)> = [
        ("valid", (None, None)),
        ("decode", (Some("decode"), None)),
        ("wrong_user", (Some("wrong_user"), Some(5))),
        ("seq_gap", (Some("seq_gap"), Some(5))),
        ("broken_link", (Some("broken_link"), Some(5))),
        ("bad_signature", (Some("bad_signature"), Some(5))),
        (
            "bad_origin_signature",
            (Some("bad_origin_signature"), Some(4)),
        ),
        ("unknown_key", (Some("unknown_key"), Some(5))),
        ("key_not_allowed", (Some("key_not_allowed"), Some(5))),
        ("bad_genesis", (Some("bad_genesis"), Some(1))),
        ("invalid_transition", (Some("invalid_transition"), Some(5))),
        ("invalid_value", (Some("invalid_value"), Some(5))),
        ("invalid_value_empty_kind", (Some("invalid_value"), Some(5))),
        ("payload_empty_kind", (Some("payload"), Some(3))),
        ("unknown_memory", (Some("unknown_memory"), Some(8))),
        ("bad_grant", (Some("bad_grant"), Some(6))),
        ("truncated", (Some("truncated"), Some(8))),
        (
            "checkpoint_mismatch",
            (Some("checkpoint_mismatch"), Some(6)),
        ),
        ("anchor", (Some("anchor"), Some(6))),
        ("payload", (Some("payload"), Some(3))),
        ("payload_before_events", (Some("payload"), Some(3))),
        ("erased_opening", (Some("erased_opening"), Some(8))),
        ("structure", (Some("structure"), None)),
        ("v2_valid", (None, None)),
        ("v2_seal_signature", (Some("bad_signature"), Some(4))),
        ("v2_seal_path_node", (Some("seal_root"), Some(4))),
        ("v2_seal_index_moved", (Some("seal_root"), Some(4))),
        ("v2_seal_index_outside", (Some("seal_index"), Some(4))),
        ("v2_seal_size", (Some("seal_path"), Some(4))),
        ("v2_seal_moved", (Some("seal_root"), Some(4))),
        ("v2_seal_missing", (Some("seal_missing"), Some(4))),
        ("v2_back_to_v1", (Some("invalid_transition"), Some(8))),
        ("v2_captures", (None, None)),
        (
            "v2_duplicate_capture",
            (Some("duplicate_capture"), Some(12)),
        ),
        (
            "v2_capture_signature",
            (Some("bad_origin_signature"), Some(9)),
        ),
    ]
    .into_iter()
    .collect();
    let mut verdicts = serde_json::Map::new();
    let mut files = BTreeMap::new();
    let processing = processing_variants();
    let mut want = want;
    for (name, _, code, seq) in &processing {
        want.insert(*name, (*code, *seq));
    }
    let processing = processing
        .into_iter()
        .map(|(name, items, _, _)| (name, items));
    for (name, items) in variants()
        .into_iter()
        .chain(v2_variants())
        .chain(processing)
    {
        let v = verdict(&items);
        let (code, seq) = want[name];
        assert_eq!(v["code"].as_str(), code, "{name}: {v}");
        if seq.is_some() {
            assert_eq!(v["seq"].as_u64(), seq, "{name}: {v}");
        }
        let text: String = items
            .iter()
            .map(|i| serde_json::to_string(i).unwrap() + "\n")
            .collect();
        files.insert(format!("{name}.jsonl"), text);
        verdicts.insert(name.to_owned(), v);
    }
    assert_eq!(files.len(), want.len());
    let manifest = serde_json::to_string_pretty(&json!({
        "description": "Custody bundles (docs/FORMAT.md §13) and mnemo's verdict on each, no pins: `valid`, else the failure's `code` and `seq` (null where the failure is at no event). Generated by core/tests/bundle_vectors.rs.",
        "verdicts": verdicts,
    }))
    .unwrap()
        + "\n";
    files.insert("verdicts.json".into(), manifest);
    if std::env::var_os("MNEMO_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(DIR).unwrap();
        for (f, text) in &files {
            std::fs::write(format!("{DIR}/{f}"), text).unwrap();
        }
    }
    for (f, text) in &files {
        let stored = std::fs::read_to_string(format!("{DIR}/{f}"))
            .unwrap_or_else(|_| panic!("testdata/bundles/{f} missing: regenerate"));
        assert_eq!(
            &stored, text,
            "testdata/bundles/{f} is stale: regenerate it"
        );
    }
}

/// A processing bundle: its name, items, and the code and seq it must fail with.
type ProcessingBundle = (
    &'static str,
    Vec<BundleItem>,
    Option<&'static str>,
    Option<u64>,
);

/// The processing chains of `testdata/processing-vectors.json` (FORMAT.md §15) as custody
/// bundles: the valid chain, and each invalid one with the code and seq it records, so
/// that every verifier of bundles (mnemo-audit, the console's) meets every processing kind
/// and processing code.
fn processing_variants() -> Vec<ProcessingBundle> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/processing-vectors.json"
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let as_bundle = |wires: Vec<String>| -> Vec<BundleItem> {
        let mut items = vec![header()];
        let mut last = None;
        for w in wires {
            let bytes = hex::decode(&w).unwrap();
            let (e, h) = Event::from_wire(&bytes).unwrap();
            last = Some((e.seq.0, h));
            items.push(BundleItem::Event {
                wire: HexBytes(bytes),
            });
        }
        let (n, head) = last.unwrap();
        items.push(BundleItem::End { events: n, head });
        items
    };
    let mut out = vec![(
        "processing_valid",
        as_bundle(
            v["valid"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["wire"].as_str().unwrap().to_owned())
                .collect(),
        ),
        None,
        None,
    )];
    for c in v["invalid"].as_array().unwrap() {
        let name = leak(format!("processing_{}", c["name"].as_str().unwrap()));
        let code = leak(c["error"]["code"].as_str().unwrap().to_owned());
        out.push((
            name,
            as_bundle(
                c["wires"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_str().unwrap().to_owned())
                    .collect(),
            ),
            Some(code),
            c["error"]["seq"].as_u64(),
        ));
    }
    out
}
