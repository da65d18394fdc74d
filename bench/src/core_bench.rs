//! `mnemo-bench core`: the custody core's hot paths, on one core.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use mnemo_core::{
    ChainVerifier, EpochTree, Event, EventBody, Hash32, Head, KeyRole, MemoryId, PublicKey, Seq,
    TimestampMs, UserId, keys, merkle,
};
use std::hint::black_box;
use std::time::Instant;

use crate::measure::{Row, median_rate, print_table};

/// Options of `mnemo-bench core`.
#[derive(clap::Args)]
pub struct Args {
    /// Events in the benchmark chain.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Rounds per figure (the median is printed).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Users in the epoch tree figure.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
}

fn chain(n: u64) -> (UserId, Vec<Vec<u8>>, Vec<Hash32>) {
    let user = UserId::new("bench-user").expect("valid id");
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut head = Head::empty(user.clone());
    let mut wires = Vec::with_capacity(n as usize);
    let mut hashes = Vec::with_capacity(n as usize);
    for i in 0..n {
        let body = if i == 0 {
            EventBody::KeyAdded {
                key: PublicKey(key.verifying_key()),
                role: KeyRole::Custody,
            }
        } else {
            let mut m = [0u8; 16];
            m[..8].copy_from_slice(&i.to_be_bytes());
            EventBody::MemoryIngested {
                memory: MemoryId(m),
                capture: None,
            }
        };
        let payload = (i > 0).then_some(Hash32([i as u8; 32]));
        let (e, h) = head.next_event(&key, TimestampMs(i as i64), body, payload, None);
        head.advance(&e, h);
        wires.push(e.to_wire());
        hashes.push(h);
    }
    (user, wires, hashes)
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let n = a.events;
    let r = a.rounds;
    println!("mnemo-bench core: {n} events, {r} rounds, 1 thread, medians");
    let key = SigningKey::from_bytes(&[7; 32]);
    let vk: VerifyingKey = key.verifying_key();
    let (user, wires, hashes) = chain(n);

    // Baseline: raw ed25519-dalek batch verification of the same messages (the 64-byte
    // signing messages of the chain's events), same key, same batch size as the verifier.
    let msgs: Vec<[u8; 64]> = hashes.iter().map(keys::event_signing_message).collect();
    let sigs: Vec<ed25519_dalek::Signature> = msgs.iter().map(|m| key.sign(m)).collect();
    let batch = mnemo_core::verify::DEFAULT_BATCH;
    let raw_batch = median_rate(r, n, || {
        for (m, s) in msgs.chunks(batch).zip(sigs.chunks(batch)) {
            let mr: Vec<&[u8]> = m.iter().map(|x| x.as_slice()).collect();
            let ks = vec![vk; m.len()];
            assert!(ed25519_dalek::verify_batch(&mr, s, &ks).is_ok());
        }
    });
    let k = 5_000.min(n);
    let sign = median_rate(r, k, || {
        for m in &msgs[..k as usize] {
            black_box(key.sign(m));
        }
    });
    let verify = median_rate(r, k, || {
        for (m, s) in msgs.iter().zip(&sigs).take(k as usize) {
            assert!(ed25519_dalek::Verifier::verify(&vk, m, s).is_ok());
        }
    });
    let events: Vec<Event> = wires
        .iter()
        .map(|w| Event::from_wire(w).expect("valid").0)
        .collect();
    let encode_hash = median_rate(r, n, || {
        for e in &events {
            black_box(e.unsigned.hash());
        }
    });
    let append = median_rate(r, k, || {
        let mut head = Head::empty(user.clone());
        for e in events.iter().take(k as usize) {
            let (x, h) = head.next_event(&key, e.timestamp, e.body.clone(), e.payload, None);
            head.advance(&x, h);
        }
    });
    let chain_verify = median_rate(r, n, || {
        let mut v = ChainVerifier::new(user.clone());
        for w in &wires {
            v.push_wire(w).expect("valid chain");
        }
        assert_eq!(
            v.finish().expect("valid chain").checkpoint.map(|c| c.seq),
            Some(Seq(n))
        );
    });

    let leaves: Vec<Hash32> = hashes
        .iter()
        .map(|h| merkle::CHAIN_TREE.leaf(&h.0))
        .collect();
    let tree = merkle::MerkleTree::from_leaf_hashes(merkle::CHAIN_TREE, leaves.clone());
    let root = tree.root();
    let prove = median_rate(r, n, || {
        for i in 0..n {
            black_box(tree.inclusion_proof(i));
        }
    });
    let proofs: Vec<_> = (0..n)
        .map(|i| tree.inclusion_proof(i).expect("in range"))
        .collect();
    let check = median_rate(r, n, || {
        for (p, l) in proofs.iter().zip(&leaves) {
            assert!(p.verify(merkle::CHAIN_TREE, l, &root).is_ok());
        }
    });

    let rows = vec![
        Row {
            what: "sign (ed25519)".into(),
            rate: sign,
            unit: "/s",
            baseline: None,
        },
        Row {
            what: "verify one signature".into(),
            rate: verify,
            unit: "/s",
            baseline: None,
        },
        Row {
            what: "raw ed25519-dalek batch verify (baseline)".into(),
            rate: raw_batch,
            unit: "sig/s",
            baseline: None,
        },
        Row {
            what: "event encode + blake3 hash".into(),
            rate: encode_hash,
            unit: "events/s",
            baseline: None,
        },
        Row {
            what: "chain append (encode + hash + sign)".into(),
            rate: append,
            unit: "events/s",
            baseline: Some(("sign".into(), sign)),
        },
        Row {
            what: "chain verify (decode, links, keys, batched sigs, tree)".into(),
            rate: chain_verify,
            unit: "events/s",
            baseline: Some(("raw batch verify".into(), raw_batch)),
        },
        Row {
            what: "inclusion proof generation".into(),
            rate: prove,
            unit: "proofs/s",
            baseline: None,
        },
        Row {
            what: "inclusion proof check".into(),
            rate: check,
            unit: "proofs/s",
            baseline: None,
        },
    ];
    print_table("core", &rows);

    // Epoch tree over many users' checkpoints (the anchor's per-epoch work).
    let cps: Vec<mnemo_core::Checkpoint> = (0..a.users)
        .map(|i| mnemo_core::Checkpoint {
            user: UserId::new(format!("u{i:08}")).expect("valid id"),
            seq: Seq(i + 1),
            head: Hash32([1; 32]),
            root: Hash32([2; 32]),
        })
        .collect();
    let t = Instant::now();
    let epoch = EpochTree::build(1, cps).expect("distinct users");
    let build = t.elapsed();
    let p = epoch
        .proof(&UserId::new("u00000000").expect("valid"))
        .expect("present");
    let proof_bytes = 8 + 8 + p.inclusion.path.len() * 32;
    println!(
        "\nepoch tree over {} users: built in {:.0} ms, proof {} hashes = {} bytes\n",
        a.users,
        build.as_secs_f64() * 1e3,
        p.inclusion.path.len(),
        proof_bytes
    );
    let ratio = chain_verify / raw_batch;
    println!("RATIO chain_verify/raw_batch_verify = {ratio:.3} (target >= 0.85)");
    crate::measure::headline(
        "chain verification, 1 thread",
        format!("{} events/s", crate::measure::human(chain_verify)),
        format!(
            "raw ed25519-dalek batch verify: {} sig/s",
            crate::measure::human(raw_batch)
        ),
        ratio,
        ">= 0.85",
    );
    Ok(())
}
