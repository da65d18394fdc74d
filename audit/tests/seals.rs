//! Seals (format version 2) end to end, on a real nats-server: concurrent appends of many
//! users share seals; `mnemo-audit verify --nats --all-users` checks every chain, each seal
//! signature once; an exported bundle carries full seals and verifies offline; a receipt
//! verifies alone (`verify-receipt`), and a tampered one names its check; a chain moves from
//! version 1 to 2 and never back; a planted bad seal fails one user alone.

use mnemo_core::custody::BundleItem;
use mnemo_core::{Custody, Event, EventBody, FORMAT_V1, FORMAT_V2, SealLink, Seq, UserId};
use mnemo_ledger::{Layout, Ledger};
use mnemo_testkit::{Stack, note};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const CUSTODY_SEED: [u8; 32] = [2; 32];

fn audit(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn custody_key_hex() -> String {
    let k = mnemo_core::SigningKey::from_bytes(&CUSTODY_SEED);
    hex::encode(k.verifying_key().as_bytes())
}

/// Appends `rounds` memories to every user at once, until at least one seal covers two or
/// more events; returns the receipts.
async fn load(ledger: &Ledger, users: &[UserId], rounds: usize) -> Vec<mnemo_ledger::Receipt> {
    let mut receipts = Vec::new();
    let t = Instant::now();
    let mut round = 0;
    while round < rounds || ledger.stats().stored_seals == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no seal of two or more"
        );
        let all = futures::future::join_all(
            users
                .iter()
                .map(|u| ledger.append(u, note(round * 1000 + u.as_str().len()))),
        )
        .await;
        receipts.extend(all.into_iter().map(Result::unwrap));
        round += 1;
    }
    receipts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seals_are_shared_checked_once_and_every_proof_stands_alone() {
    let s = Stack::builder()
        .layout(Layout::Sharded { shards: 4 })
        .custody_seed(CUSTODY_SEED)
        .without_projector()
        .start()
        .await;
    let users: Vec<UserId> = (0..40)
        .map(|i| UserId::new(format!("u{i:02}")).unwrap())
        .collect();
    for u in &users {
        s.ledger.create_user(u).await.unwrap();
    }
    let receipts = load(&s.ledger, &users, 5).await;
    let stats = s.ledger.stats();
    assert!(stats.stored_seals > 0, "{stats:?}");
    assert!(stats.seals < stats.sealed_events, "{stats:?}");
    let events: u64 = receipts.len() as u64 + users.len() as u64;
    let url = s.nats.url();
    let dir = tempfile::tempdir().unwrap();

    // 1. The operator's audit: every chain, each seal's signature checked once.
    let (code, report, text) = audit(&["verify", "--nats", &url, "--all-users", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["users"], users.len());
    assert_eq!(report["events"], events);
    assert!(report["seal_records"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["signatures"].as_u64().unwrap() < events,
        "fewer signatures than events: {report}"
    );

    // 2. One user's bundle: full seals only, other users' events as path hashes only.
    let u = &users[7];
    let mut out = Vec::new();
    mnemo_api::export::write_bundle(&s.ledger, None, u, mnemo_core::TimestampMs(1), &mut out)
        .await
        .unwrap();
    let text_bundle = String::from_utf8(out.clone()).unwrap();
    for other in users.iter().filter(|o| *o != u) {
        assert!(
            !text_bundle.contains(&format!("\"{other}\"")),
            "{other}'s id is in {u}'s bundle"
        );
    }
    let mut forms = (0, 0);
    for item in mnemo_audit::read_bundle(&out[..], |_| {}) {
        if let BundleItem::Event { wire } = item.unwrap() {
            let (e, _) = Event::from_wire(&wire.0).unwrap();
            match e.custody {
                Custody::Seal(SealLink::Single { .. }) => forms.0 += 1,
                Custody::Seal(SealLink::Full(_)) => forms.1 += 1,
                other => panic!("a bundle carries {other:?}"),
            }
        }
    }
    assert_eq!(forms.0 + forms.1, 6);
    let bundle = dir.path().join("bundle.jsonl");
    std::fs::write(&bundle, &out).unwrap();
    let key = custody_key_hex();
    let (code, report, text) = audit(&[
        "verify",
        "--bundle",
        bundle.to_str().unwrap(),
        "--trusted-key",
        &key,
        "--json",
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["valid"], true);

    // 3. A receipt of a batch of two or more, alone and offline.
    let r = receipts
        .iter()
        .find(|r| r.custody.as_ref().is_some_and(|c| c.seal.size > 1))
        .expect("a receipt of a shared seal");
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, serde_json::to_vec(&r.custody).unwrap()).unwrap();
    let (code, v, text) = audit(&[
        "verify-receipt",
        file.to_str().unwrap(),
        "--trusted-key",
        &key,
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["seq"], r.seq.0);
    assert_eq!(v["event_hash"], r.hash.to_string());
    let mut bad = r.custody.clone().unwrap();
    bad.seal.path[0].0[0] ^= 1;
    std::fs::write(&file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (code, v, _) = audit(&[
        "verify-receipt",
        file.to_str().unwrap(),
        "--trusted-key",
        &key,
    ]);
    assert_eq!((code, v["code"].as_str()), (1, Some("seal_root")), "{v}");
    let mut bad = r.custody.clone().unwrap();
    let mut sig = bad.seal.signature.to_bytes();
    sig[1] ^= 1;
    bad.seal.signature = mnemo_core::Sig::from_bytes(&sig);
    std::fs::write(&file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (code, v, _) = audit(&[
        "verify-receipt",
        file.to_str().unwrap(),
        "--trusted-key",
        &key,
    ]);
    assert_eq!(
        (code, v["code"].as_str()),
        (1, Some("bad_signature")),
        "{v}"
    );
    std::fs::write(&file, serde_json::to_vec(&r.custody).unwrap()).unwrap();
    let other_key = hex::encode(
        mnemo_core::SigningKey::from_bytes(&[9; 32])
            .verifying_key()
            .as_bytes(),
    );
    let (code, v, _) = audit(&[
        "verify-receipt",
        file.to_str().unwrap(),
        "--trusted-key",
        &other_key,
    ]);
    assert_eq!(
        (code, v["code"].as_str()),
        (1, Some("untrusted_key")),
        "{v}"
    );
    // Every custody key that signs may be pinned (after a rotation, old and new): the
    // receipt holds under the set, in either order.
    for keys in [[&other_key, &key], [&key, &other_key]] {
        let (code, v, text) = audit(&[
            "verify-receipt",
            file.to_str().unwrap(),
            "--trusted-key",
            keys[0],
            "--trusted-key",
            keys[1],
        ]);
        assert_eq!(code, 0, "{v} {text}");
    }

    // 4. A chain written in version 1 moves to version 2, and never back.
    let mut cfg = s.ledger.config().clone();
    cfg.format = FORMAT_V1;
    let v1 = Ledger::connect(s.client.clone(), cfg).await.unwrap();
    let old = UserId::new("old").unwrap();
    v1.create_user(&old).await.unwrap();
    for i in 0..2 {
        v1.append(&old, note(i)).await.unwrap();
    }
    s.ledger.append(&old, note(10)).await.unwrap();
    v1.append(&old, note(11)).await.unwrap();
    let versions: Vec<u8> = s
        .ledger
        .events(&old, Seq::FIRST, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.version)
        .collect();
    assert_eq!(
        versions,
        [FORMAT_V1, FORMAT_V1, FORMAT_V1, FORMAT_V2, FORMAT_V2],
        "a version 1 writer writes version 2 after a version 2 event"
    );
    s.ledger.verify_chain(&old).await.unwrap();

    // 5. A planted event whose seal's signature is changed fails its user alone, with the
    //    check named: signed with the custody key, then one byte changed on its way in.
    let victim = &users[3];
    let tip = s.ledger.head(victim).await.unwrap().unwrap();
    let head = mnemo_core::Head {
        user: victim.clone(),
        len: tip.len,
        hash: tip.hash,
    };
    let custody = mnemo_core::SigningKey::from_bytes(&CUSTODY_SEED);
    let (u, _) = head.next_unsigned(
        FORMAT_V2,
        mnemo_core::PublicKey(custody.verifying_key()).id(),
        mnemo_core::TimestampMs(1_800_000_000_000),
        EventBody::MemoryErased {
            target: mnemo_core::ErasureTarget::All,
        },
        None,
        None,
    );
    let mut e = u.sign(&custody);
    let sig = e.signature_mut().unwrap();
    let mut b = sig.to_bytes();
    b[0] ^= 1;
    *sig = mnemo_core::Sig::from_bytes(&b);
    s.js.publish(
        s.ledger.locate(victim).subject,
        mnemo_ledger::envelope::encode(&e.to_wire(), &[]),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let (code, report, text) = audit(&["verify", "--nats", &url, "--all-users", "--json"]);
    assert_eq!(code, 1, "{text}");
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0]["user"], victim.as_str());
    assert_eq!(failures[0]["seq"], e.seq.0);
    assert_eq!(failures[0]["code"], "bad_signature");
}
