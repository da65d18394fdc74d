//! `mnemo-audit` against a live system (real nats-server, PostgreSQL, anvil): a custody
//! bundle exported from it verifies offline, from JetStream and on the chain; every kind of
//! tampering is found at the right seq with the right reason; the CLI's exit codes.

use mnemo_anchor::AnchorerConfig;
use mnemo_audit::{Options, Outcome, read_bundle, verify_items};
use mnemo_core::custody::{AuditError, AuditPolicy, BundleItem, HexBytes};
use mnemo_core::{
    AccessAction, Address, Capabilities, ChainError, Content, EpochTree, ErasureTarget, Event,
    EventBody, GrantConditions, GrantId, Hash32, ProofBundle, Seq, SigningKey, UserId,
};
use mnemo_ledger::Layout;
use mnemo_testkit::{Stack, note};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CUSTODY_SEED: [u8; 32] = [2; 32];

struct Live {
    stack: Stack,
    /// The opening of the memory at seq 3 (erased at seq 17), from an earlier export.
    kept_opening: BundleItem,
    contract: Address,
    items: Vec<BundleItem>,
    dir: tempfile::TempDir,
}

/// alice's chain: 1 genesis, 2..=13 notes, 14 grant, 15 access, 16 revoke, 17 erasure of
/// the memory at seq 3, [epoch 1], 18..=20 notes, [epoch 2], 21..=22 notes (not anchored).
async fn live() -> Live {
    let stack = Stack::builder()
        .layout(Layout::Sharded { shards: 4 })
        .custody_seed(CUSTODY_SEED)
        .anvil()
        .start()
        .await;
    let (ledger, js) = (&stack.ledger, &stack.js);
    let contract = stack.contract.unwrap();
    let anchorer = stack.anchorer(AnchorerConfig::default()).await;

    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    ledger.create_user(&alice).await.unwrap();
    ledger.create_user(&bob).await.unwrap();
    let mut memories = Vec::new();
    for i in 0..12 {
        memories.push(
            ledger
                .append(&alice, note(i))
                .await
                .unwrap()
                .memory
                .unwrap(),
        );
    }
    let grant = GrantId([7; 16]);
    ledger
        .append_event(
            &alice,
            EventBody::GrantCreated {
                grant,
                grantee: bob.clone(),
                capabilities: Capabilities {
                    metadata: true,
                    content: true,
                    ask: false,
                },
                conditions: GrantConditions {
                    tags: vec!["diary".into()],
                    ..Default::default()
                },
                expires_at: None,
                not_before: None,
            },
            None,
        )
        .await
        .unwrap();
    ledger
        .append_event(
            &alice,
            EventBody::AccessRecorded {
                accessor: bob.clone(),
                grant,
                action: AccessAction::ReadContent,
                memories: vec![memories[0]],
            },
            None,
        )
        .await
        .unwrap();
    ledger
        .append_event(&alice, EventBody::GrantRevoked { grant }, None)
        .await
        .unwrap();
    // an export made before the erasure still holds the memory's opening (seq 3)
    let mut before = Vec::new();
    mnemo_api::export::write_bundle(
        ledger,
        None,
        &alice,
        mnemo_core::TimestampMs(1),
        &mut before,
    )
    .await
    .unwrap();
    let kept_opening = read_bundle(&before[..], |_| {})
        .map(Result::unwrap)
        .find(|i| matches!(i, BundleItem::Payload { seq, .. } if *seq == Seq(3)))
        .expect("the opening of seq 3");
    let erased = ledger
        .erase(&alice, ErasureTarget::Memory(memories[1]))
        .await
        .unwrap();
    assert_eq!(erased.seq, Seq(17));
    for (epoch, more) in [(1u64, 3usize), (2, 2)] {
        stack.caught_up(&[alice.clone(), bob.clone()]).await;
        let rec = anchorer.run_epoch().await.unwrap().unwrap();
        assert_eq!(rec.epoch, epoch);
        for i in 0..more {
            ledger.append(&alice, note(100 + i)).await.unwrap();
        }
    }
    let reader = mnemo_anchor::AnchorReader::open(js).await.unwrap().unwrap();
    let mut out = Vec::new();
    let stats = mnemo_api::export::write_bundle(
        ledger,
        Some(&reader),
        &alice,
        mnemo_core::TimestampMs(1_800_000_000_000),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!((stats.events, stats.payloads, stats.anchors), (22, 16, 2));
    let items = read_bundle(&out[..], |_| {})
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    Live {
        stack,
        kept_opening,
        contract,
        items,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn check(items: &[BundleItem], policy: AuditPolicy) -> Outcome {
    let opts = Options {
        policy,
        threads: 2,
        seals: None,
    };
    verify_items(items.iter().cloned().map(Ok), &opts).unwrap()
}

fn write(dir: &Path, name: &str, items: &[BundleItem]) -> PathBuf {
    let p = dir.join(name);
    let mut s = String::new();
    for i in items {
        s.push_str(&serde_json::to_string(i).unwrap());
        s.push('\n');
    }
    std::fs::write(&p, s).unwrap();
    p
}

fn audit(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn event_index(items: &[BundleItem], seq: u64) -> usize {
    items
        .iter()
        .position(|i| matches!(i, BundleItem::Event { wire } if Event::from_wire(&wire.0).unwrap().0.seq == Seq(seq)))
        .unwrap()
}

fn event(items: &[BundleItem], seq: u64) -> (Event, Hash32) {
    let BundleItem::Event { wire } = &items[event_index(items, seq)] else {
        unreachable!()
    };
    Event::from_wire(&wire.0).unwrap()
}

fn set_event(items: &mut [BundleItem], seq: u64, e: &Event) {
    let i = event_index(items, seq);
    items[i] = BundleItem::Event {
        wire: HexBytes(e.to_wire()),
    };
}

/// Asserts the first failure's code and seq.
#[track_caller]
fn assert_fails(o: &Outcome, code: &str, seq: u64) {
    let f = o.failure.as_ref().expect("tampering found");
    assert_eq!(
        (f.code.as_str(), f.seq),
        (code, Some(seq)),
        "failure: {}",
        f.message
    );
    assert_eq!(f.user, Some(UserId::new("alice").unwrap()));
}

fn end_of(items: &[BundleItem]) -> usize {
    items
        .iter()
        .position(|i| matches!(i, BundleItem::End { .. }))
        .unwrap()
}

fn resign(e: &mut Event, key: &SigningKey) {
    *e = e.unsigned.clone().sign(key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_bundle_verifies_and_every_tampering_is_found() {
    let live = live().await;
    let items = live.items.clone();
    let pin = AuditPolicy {
        contract: Some(live.contract),
        chain_id: Some(mnemo_testkit::ANVIL_CHAIN_ID),
        trusted_keys: vec![mnemo_core::PublicKey(
            SigningKey::from_bytes(&CUSTODY_SEED).verifying_key(),
        )],
    };

    // valid, with every pin
    let o = check(&items, pin.clone());
    assert!(o.valid(), "{:?}", o.failure);
    let s = &o.summary;
    assert_eq!(
        (
            s.events,
            s.signatures,
            s.memories,
            s.erasures,
            s.payloads_opened
        ),
        (22, 22, 17, 1, 16)
    );
    assert_eq!((s.grants, s.revocations, s.accesses), (1, 1, 1));
    assert_eq!(
        s.anchors
            .iter()
            .map(|a| (a.epoch, a.seq.0))
            .collect::<Vec<_>>(),
        vec![(1, 17), (2, 20)]
    );
    assert_eq!(s.head.as_ref().unwrap().seq, Seq(22));

    // 1. changed payload
    let mut t = items.clone();
    let i = event_index(&t, 5) + 1;
    let BundleItem::Payload { record, .. } = &mut t[i] else {
        panic!("payload after event 5")
    };
    record.content = Content::Inline {
        bytes: b"memory number 99".to_vec(),
    };
    assert_fails(&check(&t, pin.clone()), "payload", 5);

    // 2. changed commitment (the signature no longer covers the event)
    let mut t = items.clone();
    let (mut e, _) = event(&t, 6);
    e.unsigned.payload = Some(Hash32([9; 32]));
    set_event(&mut t, 6, &e);
    assert_fails(&check(&t, pin.clone()), "bad_signature", 6);

    // 3. changed signature
    let mut t = items.clone();
    let (mut e, _) = event(&t, 7);
    let s = e.signature_mut().unwrap();
    let mut sig = s.to_bytes();
    sig[10] ^= 1;
    *s = mnemo_core::Sig::from_bytes(&sig);
    set_event(&mut t, 7, &e);
    assert_fails(&check(&t, pin.clone()), "bad_signature", 7);

    // 4. signed by a key the chain never added
    let mut t = items.clone();
    let (mut e, _) = event(&t, 8);
    let mallory = SigningKey::from_bytes(&[66; 32]);
    e.unsigned.signer = mnemo_core::PublicKey(mallory.verifying_key()).id();
    resign(&mut e, &mallory);
    set_event(&mut t, 8, &e);
    assert_fails(&check(&t, pin.clone()), "unknown_key", 8);

    // 5. changed prev hash
    let mut t = items.clone();
    let (mut e, _) = event(&t, 9);
    e.unsigned.prev = Hash32([1; 32]);
    set_event(&mut t, 9, &e);
    assert_fails(&check(&t, pin.clone()), "broken_link", 9);

    // 6. deleted event (and its payload)
    let mut t = items.clone();
    let i = event_index(&t, 10);
    t.drain(i..i + 2);
    assert_fails(&check(&t, pin.clone()), "seq_gap", 10);

    // 7. reordered events
    let mut t = items.clone();
    let (a, b) = (event_index(&t, 11), event_index(&t, 12));
    t.swap(a, b);
    t.swap(a + 1, b + 1);
    assert_fails(&check(&t, pin.clone()), "seq_gap", 11);

    // 8a. inserted event, forged without the custody key
    let mut t = items.clone();
    let (mut e, _) = event(&t, 12);
    e.unsigned.body = EventBody::GrantRevoked {
        grant: GrantId([1; 16]),
    };
    e.unsigned.payload = None;
    e.unsigned.signer = mnemo_core::PublicKey(mallory.verifying_key()).id();
    resign(&mut e, &mallory);
    let i = event_index(&t, 12);
    t.insert(
        i,
        BundleItem::Event {
            wire: HexBytes(e.to_wire()),
        },
    );
    assert_fails(&check(&t, pin.clone()), "unknown_key", 12);
    // 8b. inserted by an insider holding the custody key: the next event no longer fits
    let mut t = items.clone();
    let (mut e, _) = event(&t, 12);
    e.unsigned.body = EventBody::KeyRevoked {
        key: mnemo_core::PublicKey(mallory.verifying_key()).id(),
    };
    e.unsigned.payload = None;
    resign(&mut e, &SigningKey::from_bytes(&CUSTODY_SEED));
    let i = event_index(&t, 12);
    t.insert(
        i,
        BundleItem::Event {
            wire: HexBytes(e.to_wire()),
        },
    );
    let o = check(&t, pin.clone());
    let f = o.failure.as_ref().unwrap();
    assert!(
        f.seq == Some(12) || f.seq == Some(13),
        "inserted event found near seq 12: {f:?}"
    );

    // 9. duplicated event
    let mut t = items.clone();
    let i = event_index(&t, 13);
    let dup = t[i].clone();
    t.insert(i + 1, dup);
    assert_fails(&check(&t, pin.clone()), "seq_gap", 14);

    // 10. truncated tail, end item rewritten to match: the anchor of epoch 2 covers seq 20
    let mut t = items.clone();
    let (e18, _) = event(&t, 18);
    let cut = event_index(&t, 19);
    let end = end_of(&t);
    t.drain(cut..end);
    let last = event(&t, 18).1;
    let n = t.len();
    t[n - 1] = BundleItem::End {
        events: 18,
        head: last,
    };
    let o = check(&t, pin.clone());
    assert!(
        matches!(
            o.error,
            Some(AuditError::Chain(ChainError::Truncated {
                have: 18,
                checkpoint: Seq(20)
            }))
        ),
        "{:?}",
        o.failure
    );
    assert_eq!(e18.seq, Seq(18));
    //     and cut short without an end item at all
    let mut t = items.clone();
    t.truncate(end_of(&t));
    let o = check(&t, pin.clone());
    assert_eq!(o.failure.unwrap().code, "structure");

    // 11. an anchored checkpoint whose root is not the chain's (with an epoch proof and
    //     receipt consistent with it: only the chain itself can tell)
    let mut t = items.clone();
    let BundleItem::Anchor {
        epoch_proof,
        receipt,
    } = &mut t[1]
    else {
        panic!("anchor first")
    };
    let mut cp = epoch_proof.checkpoint.clone();
    cp.root = Hash32([5; 32]);
    let tree = EpochTree::build(1, vec![cp.clone()]).unwrap();
    *epoch_proof = tree.proof(&cp.user).unwrap();
    receipt.root = tree.root();
    receipt.leaf_count = 1;
    let forged_root = tree.root();
    let BundleItem::Anchor { receipt, .. } = &mut t[2] else {
        panic!()
    };
    receipt.prev_root = forged_root; // the anchors stay linked
    assert_fails(&check(&t, pin.clone()), "checkpoint_mismatch", 17);

    // 13. a receipt for another root
    let mut t = items.clone();
    let BundleItem::Anchor { receipt, .. } = &mut t[2] else {
        panic!()
    };
    receipt.root = Hash32([3; 32]);
    let o = check(&t, pin.clone());
    assert_fails(&o, "anchor", 20);
    assert!(o.failure.unwrap().message.contains("another root"));

    // 13b. the content of an erased memory, copied back from an earlier export: the one
    //      visible sign that an erasure did not take is refused
    let mut t = items.clone();
    t.insert(event_index(&items, 3) + 1, live.kept_opening.clone());
    let o = check(&t, pin.clone());
    assert_fails(&o, "erased_opening", 17);

    // 14. an anchor on another contract: refused when the contract is pinned ...
    let mut wrong = items.clone();
    let BundleItem::Anchor { receipt, .. } = &mut wrong[1] else {
        panic!()
    };
    receipt.contract = Address([0x42; 20]);
    let o = check(&wrong, pin.clone());
    assert_fails(&o, "anchor", 17);
    assert!(o.failure.unwrap().message.contains("pinned"));
    // ... offline when the bundle's anchors name different contracts ...
    let o = check(&wrong, AuditPolicy::default());
    assert_fails(&o, "anchor", 20);
    assert!(o.failure.unwrap().message.contains("another contract"));
    // 14b. anchors out of order, and a broken prev_root chain, are found offline
    let mut swapped = items.clone();
    swapped.swap(1, 2);
    let o = check(&swapped, AuditPolicy::default());
    assert_fails(&o, "anchor", 17);
    assert!(o.failure.unwrap().message.contains("out of order"));
    let mut unlinked = items.clone();
    let BundleItem::Anchor { receipt, .. } = &mut unlinked[2] else {
        panic!()
    };
    receipt.prev_root = Hash32([5; 32]);
    let o = check(&unlinked, AuditPolicy::default());
    assert_fails(&o, "anchor", 20);
    assert!(o.failure.unwrap().message.contains("prev_root"));
    // ... and on the chain itself when every anchor names the same wrong contract
    for item in &mut wrong {
        if let BundleItem::Anchor { receipt, .. } = item {
            receipt.contract = Address([0x42; 20]);
        }
    }
    let dir = live.dir.path();
    let rpc = live.stack.anvil_url();
    let wrong_file = write(dir, "wrong-contract.jsonl", &wrong);
    let (code, out, _) = audit(&[
        "verify",
        "--bundle",
        wrong_file.to_str().unwrap(),
        "--rpc",
        &rpc,
        "--json",
    ]);
    assert_eq!(code, 1, "{out}");
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["failure"]["code"], "anchor_on_chain");
    assert!(
        rep["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("no matching Anchored log"),
        "{rep}"
    );

    // The CLI: valid offline and on chain, pinned; human report; exit 0.
    let good = write(dir, "alice.jsonl", &items);
    let contract = format!("0x{}", live.contract);
    let (code, out, err) = audit(&[
        "verify",
        "--bundle",
        good.to_str().unwrap(),
        "--rpc",
        &rpc,
        "--contract",
        &contract,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("VALID") && out.contains("2 of 2 anchors confirmed"),
        "{out}"
    );
    // Online: the chain straight from JetStream (sharded layout, detected).
    let (code, out, err) = audit(&[
        "verify",
        "--nats",
        &live.stack.nats.url(),
        "--user",
        "alice",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["custody"]["summary"]["events"], 22);
    assert_eq!(
        rep["custody"]["summary"]["anchors"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A tampered bundle: exit 1, the failure named.
    let mut t = items.clone();
    let (mut e, _) = event(&t, 7);
    e.unsigned.timestamp.0 += 1;
    set_event(&mut t, 7, &e);
    let bad = write(dir, "bad.jsonl", &t);
    let (code, out, _) = audit(&["verify", "--bundle", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FIRST FAILURE user alice seq 7 check bad_signature"),
        "{out}"
    );
    // Usage and I/O errors: exit 2.
    assert_eq!(audit(&["verify", "--bundle", "/nonexistent"]).0, 2);
    assert_eq!(audit(&["verify"]).0, 2);
    // A file that is not a well-formed bundle is a verdict (exit 1, `structure`), exit 2
    // stays for usage and I/O; the line grammar of FORMAT §13.1 is enforced exactly.
    let text = std::fs::read_to_string(&good).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let event_line = lines
        .iter()
        .position(|l| l.starts_with(r#"{"type":"event""#))
        .unwrap();
    let with_line = |i: usize, new: &str| {
        let mut l = lines.clone();
        l[i] = new;
        l.join("\n") + "\n"
    };
    let upper = lines[event_line].to_uppercase().replace(
        "{\"TYPE\":\"EVENT\",\"WIRE\":",
        "{\"type\":\"event\",\"wire\":",
    );
    let member_after = lines[event_line].trim_end_matches('}').to_owned() + r#","x":1}"#;
    let dup_header = lines[0].trim_end_matches('}').to_owned() + r#","user":"mallory"}"#;
    let cases: Vec<(&str, String)> = vec![
        ("not json", "not json".into()),
        ("empty", String::new()),
        ("json array", "[]\n".into()),
        ("byte order mark", format!("\u{feff}{text}")),
        (
            "blank line",
            with_line(event_line, &format!("\n{}", lines[event_line])),
        ),
        ("crlf", text.replace('\n', "\r\n")),
        ("upper-case hex", with_line(event_line, &upper)),
        ("member after wire", with_line(event_line, &member_after)),
        ("duplicate header key", with_line(0, &dup_header)),
    ];
    for (what, content) in cases {
        let f = dir.join("malformed.jsonl");
        std::fs::write(&f, content).unwrap();
        let (code, out, err) = audit(&["verify", "--bundle", f.to_str().unwrap(), "--json"]);
        assert_eq!(code, 1, "{what}: {out}{err}");
        let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(rep["failure"]["code"], "structure", "{what}: {rep}");
        if what == "member after wire" {
            let m = rep["failure"]["message"].as_str().unwrap();
            assert!(m.contains("unknown field"), "{what}: {m}");
        }
    }
    // messages say what is wrong: a header with an invalid user id, a repeated payload
    let bad_user = lines[0].replacen(r#""user":"alice""#, r#""user":"al ice""#, 1);
    assert_ne!(bad_user, lines[0]);
    let f = dir.join("bad-user.jsonl");
    std::fs::write(&f, with_line(0, &bad_user)).unwrap();
    let (code, out, _) = audit(&["verify", "--bundle", f.to_str().unwrap(), "--json"]);
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = rep["failure"]["message"].as_str().unwrap().to_owned();
    assert_eq!(
        (code, rep["failure"]["code"].as_str()),
        (1, Some("structure")),
        "{rep}"
    );
    assert!(m.contains("line 1") && m.contains("user"), "{m}");
    let payload_line = lines
        .iter()
        .position(|l| l.starts_with(r#"{"type":"payload""#))
        .unwrap();
    let f = dir.join("payload-twice.jsonl");
    std::fs::write(
        &f,
        with_line(payload_line, &format!("{0}\n{0}", lines[payload_line])),
    )
    .unwrap();
    let (code, out, _) = audit(&["verify", "--bundle", f.to_str().unwrap(), "--json"]);
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (code, rep["failure"]["code"].as_str()),
        (1, Some("payload")),
        "{rep}"
    );
    assert!(
        rep["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("second opening"),
        "{rep}"
    );
    // the same event with a JSON escape in its hex is the same bundle: valid
    let escaped = lines[event_line].replacen(r#""wire":"0"#, r#""wire":"\u0030"#, 1);
    assert_ne!(escaped, lines[event_line]);
    let f = dir.join("escaped.jsonl");
    std::fs::write(&f, with_line(event_line, &escaped)).unwrap();
    let (code, out, err) = audit(&["verify", "--bundle", f.to_str().unwrap()]);
    assert_eq!(code, 0, "an escaped but equal line: {out}{err}");

    // 11b. a report that cannot be written (a full disk, a closed pipe) is exit 2 with a
    // message, never a panic (101)
    let full = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
        .args(["verify", "--bundle", good.to_str().unwrap()])
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(
        full.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    assert!(String::from_utf8_lossy(&full.stderr).contains("writing the report"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
        .args(["verify", "--bundle", good.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // `| true`: the reader is gone before the report comes
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "closed pipe");

    // 12. prove: a self-contained proof for seq 5, anchored in epoch 1; then forged.
    let proof_file = dir.join("proof.json");
    let (code, _, err) = audit(&[
        "prove",
        "--bundle",
        good.to_str().unwrap(),
        "--seq",
        "5",
        "--out",
        proof_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = audit(&[
        "verify",
        "--bundle",
        proof_file.to_str().unwrap(),
        "--rpc",
        &rpc,
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["proof_level"], "anchored");
    assert_eq!(rep["proof_trust"], "anchored");
    // A proof of seq 21 (not anchored) proves only what its key is: self-asserted without a
    // pin, pinned-key with the custody key pinned, refused with an unrelated pin.
    let unanchored = dir.join("proof-21.json");
    let (code, _, err) = audit(&[
        "prove",
        "--bundle",
        good.to_str().unwrap(),
        "--seq",
        "21",
        "--out",
        unanchored.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let custody_hex = hex::encode(
        SigningKey::from_bytes(&CUSTODY_SEED)
            .verifying_key()
            .as_bytes(),
    );
    let other_hex = hex::encode(SigningKey::from_bytes(&[77; 32]).verifying_key().as_bytes());
    let verify_proof = |pin: Option<&str>| {
        let mut args = vec!["verify", "--bundle", unanchored.to_str().unwrap(), "--json"];
        if let Some(k) = pin {
            args.extend(["--trusted-key", k]);
        }
        let (code, out, _) = audit(&args);
        (
            code,
            serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        )
    };
    let (code, rep) = verify_proof(None);
    assert_eq!(
        (code, rep["proof_trust"].as_str()),
        (0, Some("self-asserted")),
        "{rep}"
    );
    let (code, rep) = verify_proof(Some(&custody_hex));
    assert_eq!(
        (code, rep["proof_trust"].as_str()),
        (0, Some("pinned-key")),
        "{rep}"
    );
    let (code, rep) = verify_proof(Some(&other_hex));
    assert_eq!(
        (code, rep["failure"]["code"].as_str()),
        (1, Some("untrusted_key")),
        "{rep}"
    );
    let mut proof: ProofBundle =
        serde_json::from_str(&std::fs::read_to_string(&proof_file).unwrap()).unwrap();
    assert_eq!(proof.anchor.as_ref().unwrap().epoch, 1);
    proof.inclusion.path[0] = Hash32([8; 32]);
    std::fs::write(&proof_file, serde_json::to_string(&proof).unwrap()).unwrap();
    let (code, out, _) = audit(&["verify", "--bundle", proof_file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["failure"]["code"], "root_mismatch");
    // prove wants a custody bundle, and says so when given a proof bundle
    let (code, _, err) = audit(&[
        "prove",
        "--bundle",
        proof_file.to_str().unwrap(),
        "--seq",
        "5",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not a custody bundle"), "{err}");
    // proving from a tampered bundle extracts nothing
    let (code, out, _) = audit(&["prove", "--bundle", bad.to_str().unwrap(), "--seq", "3"]);
    assert_eq!((code, out.as_str()), (1, ""));

    // 15. the anchor of epoch 2 reorganised away: found with --rpc
    let provider = mnemo_anchor::read_only_provider(&rpc).unwrap();
    {
        use alloy::providers::Provider;
        let _: serde_json::Value = provider
            .raw_request(
                "anvil_reorg".into(),
                (1u64, Vec::<serde_json::Value>::new()),
            )
            .await
            .unwrap();
    }
    let (code, out, _) = audit(&[
        "verify",
        "--bundle",
        good.to_str().unwrap(),
        "--rpc",
        &rpc,
        "--json",
    ]);
    assert_eq!(code, 1, "{out}");
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rep["failure"]["code"], "anchor_on_chain");
    assert_eq!(rep["failure"]["seq"], 20);
    let msg = rep["failure"]["message"].as_str().unwrap();
    assert!(
        msg.contains("reorganised") || msg.contains("transaction missing"),
        "{msg}"
    );
}

/// An insider event that breaks a kind rule, signed with the real custody key (here an
/// `access_recorded` under a grant the chain never created: the ledger refuses to write it,
/// so it is published past the ledger), is refused by the projector and by `mnemo-audit` with the same check
/// named; the projector quarantines that user's view alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_and_auditor_refuse_the_same_insider_event_with_the_same_check() {
    let s = Stack::builder().custody_seed(CUSTODY_SEED).start().await;
    let (ledger, pool) = (&s.ledger, &s.pool);
    let carol = UserId::new("carol").unwrap();
    let dave = UserId::new("dave").unwrap();
    for u in [&carol, &dave] {
        ledger.create_user(u).await.unwrap();
        ledger.append(u, note(1)).await.unwrap();
    }
    let forged = EventBody::AccessRecorded {
        accessor: dave.clone(),
        grant: GrantId([9; 16]),
        action: AccessAction::List,
        memories: vec![],
    };
    // The ledger itself refuses to write it (core's rules, from the chain's own state) ...
    let refused = ledger.append_event(&carol, forged.clone(), None).await;
    assert!(
        matches!(
            refused,
            Err(mnemo_ledger::LedgerError::Refused(
                ChainError::BadGrant { .. }
            ))
        ),
        "{refused:?}"
    );
    // ... so it is planted past the ledger, signed with the real custody key.
    s.plant(&carol, forged, mnemo_core::TimestampMs(1_800_000_000_000))
        .await;
    ledger.append(&dave, note(2)).await.unwrap();
    // the projector: carol quarantined at seq 3 with the check named, dave goes on
    let t = Instant::now();
    let (seq, check) = loop {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, check_code FROM quarantine WHERE user_id = 'carol'")
                .fetch_optional(pool)
                .await
                .unwrap();
        if let Some(r) = row {
            break r;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never quarantined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((seq, check.as_str()), (3, "bad_grant"));
    s.caught_up(std::slice::from_ref(&dave)).await;
    // The heads view is written before the PostgreSQL commit of the same batch: wait for
    // the commit too.
    s.no_lag(Duration::from_secs(30)).await;
    let views: Vec<(String, i64)> =
        sqlx::query_as("SELECT user_id, last_seq FROM users ORDER BY user_id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(views, [("carol".into(), 2), ("dave".into(), 3)]);
    // mnemo-audit on carol's export: invalid, the same check at the same seq
    let mut out = Vec::new();
    mnemo_api::export::write_bundle(ledger, None, &carol, mnemo_core::TimestampMs(1), &mut out)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carol.jsonl");
    std::fs::write(&path, &out).unwrap();
    let (code, stdout, _) = audit(&["verify", "--bundle", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["failure"]["code"], "bad_grant", "{stdout}");
    assert_eq!(report["failure"]["seq"], 3, "{stdout}");
    // and dave's chain verifies
    let mut out = Vec::new();
    mnemo_api::export::write_bundle(ledger, None, &dave, mnemo_core::TimestampMs(1), &mut out)
        .await
        .unwrap();
    std::fs::write(&path, &out).unwrap();
    let (code, stdout, _) = audit(&["verify", "--bundle", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
}
