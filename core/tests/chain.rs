//! Whole-chain verification: valid chains pass, every kind of tampering is caught at the
//! right sequence number.

mod common;

use common::*;
use mnemo_core::*;
use proptest::prelude::*;

#[test]
fn sample_chain_verifies_and_its_checkpoint_matches_the_tree() {
    let s = sample_chain();
    let sum = verify_wires(&s.user, &s.wires()).unwrap();
    let cp = sum.checkpoint.unwrap();
    assert_eq!(cp.seq, Seq(12));
    assert_eq!(cp.head, *s.hashes.last().unwrap());
    let tree = MerkleTree::from_leaf_hashes(
        merkle::CHAIN_TREE,
        s.hashes
            .iter()
            .map(|h| merkle::CHAIN_TREE.leaf(&h.0))
            .collect(),
    );
    assert_eq!(cp.root, tree.root());
    assert_eq!(sum.signatures, 13, "12 custody + 1 origin signature");
    assert_eq!(sum.keys, 3);
}

#[test]
fn wire_and_json_round_trip() {
    let s = sample_chain();
    for (e, h) in s.events.iter().zip(&s.hashes) {
        let (back, h2) = Event::from_wire(&e.to_wire()).unwrap();
        assert_eq!(&back, e);
        assert_eq!(&h2, h);
        let json = serde_json::to_string(e).unwrap();
        let from_json: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(&from_json, e);
        // key order and whitespace do not matter: re-serialise through a sorted map
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        let again: Event = serde_json::from_str(&pretty).unwrap();
        assert_eq!(again.hash(), *h);
    }
}

fn expect_err(wires: &[Vec<u8>], code: &str, seq: u64) {
    let s = sample_chain();
    let e = verify_wires(&s.user, wires).unwrap_err();
    assert_eq!((e.code(), e.seq()), (code, Some(Seq(seq))), "{e}");
}

#[test]
fn dropped_reordered_duplicated_inserted_events_are_caught() {
    let w = sample_chain().wires();
    let mut dropped = w.clone();
    dropped.remove(4);
    expect_err(&dropped, "seq_gap", 5);
    let mut reordered = w.clone();
    reordered.swap(5, 6);
    expect_err(&reordered, "seq_gap", 6);
    let mut dup = w.clone();
    dup.insert(3, w[2].clone());
    expect_err(&dup, "seq_gap", 4);
    let mut first_dropped = w.clone();
    first_dropped.remove(0);
    expect_err(&first_dropped, "seq_gap", 1);
}

#[test]
fn an_inserted_event_signed_by_the_right_key_breaks_the_links() {
    let s = sample_chain();
    // A forger with the custody key re-signs an event at seq 4 with different content:
    // the next event's prev no longer matches.
    let mut head = Head {
        user: s.user.clone(),
        len: 3,
        hash: s.hashes[2],
    };
    let (forged, h) = head.next_event(
        &s.custody,
        TimestampMs(1),
        EventBody::MemoryIngested {
            memory: mem(77),
            capture: None,
        },
        Some(Hash32([1; 32])),
        None,
    );
    head.advance(&forged, h);
    let mut w = s.wires();
    w[3] = forged.to_wire();
    expect_err(&w, "broken_link", 5);
}

#[test]
fn key_rules_are_enforced() {
    let s = sample_chain();
    let mut head = Head {
        user: s.user.clone(),
        len: 12,
        hash: s.hashes[11],
    };
    // the rotated-away key may not sign any more
    let (e, _) = head.next_event(
        &s.custody,
        TimestampMs(1),
        EventBody::MemoryIngested {
            memory: mem(50),
            capture: None,
        },
        Some(Hash32([2; 32])),
        None,
    );
    let mut w = s.wires();
    w.push(e.to_wire());
    expect_err(&w, "key_not_allowed", 13);
    // a key never added is unknown
    let (e, _) = head.next_event(
        &key(66),
        TimestampMs(1),
        EventBody::MemoryIngested {
            memory: mem(50),
            capture: None,
        },
        Some(Hash32([2; 32])),
        None,
    );
    let mut w = s.wires();
    w.push(e.to_wire());
    expect_err(&w, "unknown_key", 13);
    // a revoked device key can not sign an origin
    let c = Hash32([3; 32]);
    let origin = Origin {
        key: pk(&s.device).id(),
        signature: keys::sign_origin(&s.device, &s.user, &c),
    };
    let (e, h) = head.next_event(
        &s.rotated,
        TimestampMs(1),
        EventBody::MemoryIngested {
            memory: mem(51),
            capture: None,
        },
        Some(c),
        Some(origin),
    );
    let mut w = s.wires();
    w.push(e.to_wire());
    expect_err(&w, "key_not_allowed", 13);
    // a device key can not sign custody
    head.advance(&e, h);
    let _ = head;
    let mut w = s.wires()[..5].to_vec();
    let mut h5 = Head {
        user: s.user.clone(),
        len: 5,
        hash: s.hashes[4],
    };
    let (e, h) = h5.next_event(
        &s.device,
        TimestampMs(1),
        EventBody::GrantRevoked {
            grant: GrantId([1; 16]),
        },
        None,
        None,
    );
    h5.advance(&e, h);
    w.push(e.to_wire());
    expect_err(&w, "key_not_allowed", 6);
}

#[test]
fn genesis_must_be_a_self_signed_custody_key_and_trusted_roots_are_honoured() {
    let s = sample_chain();
    let w = s.wires();
    let ok = ChainVerifier::new(s.user.clone()).with_trusted_roots([pk(&s.custody).id()]);
    let mut v = ok;
    for x in &w {
        v.push_wire(x).unwrap();
    }
    v.finish().unwrap();
    let mut v = ChainVerifier::new(s.user.clone()).with_trusted_roots([pk(&key(9)).id()]);
    assert_eq!(v.push_wire(&w[0]).unwrap_err().code(), "bad_genesis");
    let head = Head::empty(s.user.clone());
    let (e, _) = head.next_event(
        &s.custody,
        TimestampMs(1),
        EventBody::KeyAdded {
            key: pk(&s.device),
            role: KeyRole::Custody,
        },
        None,
        None,
    );
    expect_err(&[e.to_wire()], "bad_genesis", 1);
}

#[test]
fn grant_and_memory_references_are_checked() {
    let s = sample_chain();
    let mut head = Head {
        user: s.user.clone(),
        len: 12,
        hash: s.hashes[11],
    };
    let grant = GrantId([9; 16]);
    for (body, code) in [
        (EventBody::GrantRevoked { grant }, "bad_grant"),
        (
            EventBody::AccessRecorded {
                accessor: user("bob"),
                grant,
                action: AccessAction::List,
                memories: vec![],
            },
            "bad_grant",
        ),
        (
            EventBody::MemoryErased {
                target: ErasureTarget::Memory(mem(99)),
            },
            "unknown_memory",
        ),
        (
            EventBody::MemoryIngested {
                memory: mem(2),
                capture: None,
            },
            "invalid_transition",
        ),
    ] {
        let payload = matches!(body, EventBody::MemoryIngested { .. }).then_some(Hash32([5; 32]));
        let (e, _) = head.next_event(&s.rotated, TimestampMs(1), body, payload, None);
        let mut w = s.wires();
        w.push(e.to_wire());
        expect_err(&w, code, 13);
    }
    // a payload commitment on an event that is not a memory
    let (e, h) = head.next_event(
        &s.rotated,
        TimestampMs(1),
        EventBody::KeyRevoked {
            key: pk(&s.rotated).id(),
        },
        Some(Hash32([1; 32])),
        None,
    );
    let mut w = s.wires();
    w.push(e.to_wire());
    expect_err(&w, "invalid_transition", 13);
    head.advance(&e, h);
}

#[test]
fn checkpoints_catch_truncated_tails_and_wrong_roots() {
    let s = sample_chain();
    let w = s.wires();
    let full = verify_wires(&s.user, &w).unwrap().checkpoint.unwrap();
    // truncated: verified against a later checkpoint
    let mut v = ChainVerifier::new(s.user.clone());
    v.expect_checkpoint(full.clone()).unwrap();
    for x in &w[..10] {
        v.push_wire(x).unwrap();
    }
    let e = v.finish().unwrap_err();
    assert_eq!((e.code(), e.seq()), ("truncated", Some(Seq(11))));
    // a checkpoint whose root was changed
    let mut bad = full.clone();
    bad.root.0[0] ^= 1;
    let mut v = ChainVerifier::new(s.user.clone());
    v.expect_checkpoint(bad).unwrap();
    let r: Result<Vec<_>, _> = w.iter().map(|x| v.push_wire(x)).collect();
    let e = r.unwrap_err();
    assert_eq!((e.code(), e.seq()), ("checkpoint_mismatch", Some(Seq(12))));
}

#[test]
fn a_bad_signature_deep_in_a_batch_is_located() {
    let u = user("bulk");
    let k = key(1);
    let mut head = Head::empty(u.clone());
    let mut wires = Vec::new();
    let (e, h) = head.next_event(
        &k,
        TimestampMs(0),
        EventBody::KeyAdded {
            key: pk(&k),
            role: KeyRole::Custody,
        },
        None,
        None,
    );
    head.advance(&e, h);
    wires.push(e.to_wire());
    for i in 0..999u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let (e, h) = head.next_event(
            &k,
            TimestampMs(i.into()),
            EventBody::MemoryIngested {
                memory: MemoryId(id),
                capture: None,
            },
            Some(Hash32([1; 32])),
            None,
        );
        head.advance(&e, h);
        wires.push(e.to_wire());
    }
    let mut v = ChainVerifier::new(u.clone());
    for w in &wires {
        v.push_wire(w).unwrap();
    }
    assert_eq!(v.finish().unwrap().signatures, 1000);
    // flip one bit in the signature of seq 700 (the last 64 bytes of its wire form)
    let n = wires[699].len();
    wires[699][n - 10] ^= 0x04;
    let mut v = ChainVerifier::new(u);
    let mut err = None;
    for w in &wires {
        if let Err(e) = v.push_wire(w) {
            err = Some(e);
            break;
        }
    }
    let e = err.unwrap_or_else(|| v.finish().unwrap_err());
    assert_eq!((e.code(), e.seq()), ("bad_signature", Some(Seq(700))));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any single changed byte anywhere in any stored event is detected.
    #[test]
    fn any_changed_byte_is_detected(ev in 0usize..12, pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let s = sample_chain();
        let mut w = s.wires();
        let at = pos.index(w[ev].len());
        w[ev][at] ^= x;
        prop_assert!(verify_wires(&s.user, &w).is_err());
    }

    /// Any single changed byte in a checkpoint is detected.
    #[test]
    fn any_changed_checkpoint_byte_is_detected(pos in 0usize..32, x in 1u8..=255, root in any::<bool>()) {
        let s = sample_chain();
        let w = s.wires();
        let mut cp = verify_wires(&s.user, &w).unwrap().checkpoint.unwrap();
        if root { cp.root.0[pos] ^= x } else { cp.head.0[pos] ^= x }
        let mut v = ChainVerifier::new(s.user.clone());
        v.expect_checkpoint(cp).unwrap();
        let r: Result<Vec<_>, _> = w.iter().map(|x| v.push_wire(x)).collect();
        prop_assert!(r.is_err());
    }

    /// Any permutation other than the identity is detected.
    #[test]
    fn any_reordering_is_detected(perm in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle()) {
        prop_assume!(perm.iter().enumerate().any(|(i, p)| i != *p));
        let s = sample_chain();
        let w = s.wires();
        let shuffled: Vec<_> = perm.iter().map(|&i| w[i].clone()).collect();
        prop_assert!(verify_wires(&s.user, &shuffled).is_err());
    }

    /// Dropping, duplicating or inserting at any position is detected.
    #[test]
    fn any_drop_dup_or_insert_is_detected(at in 0usize..12, what in 0u8..3) {
        let s = sample_chain();
        let mut w = s.wires();
        match what {
            0 => { w.remove(at); prop_assume!(at != 11); } // dropping the tail is a truncation, see checkpoints
            1 => { let e = w[at].clone(); w.insert(at, e); }
            _ => { let e = w[(at + 5) % 12].clone(); w.insert(at, e); }
        }
        prop_assert!(verify_wires(&s.user, &w).is_err());
    }
}
