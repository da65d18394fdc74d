//! What the signature rule costs: ZIP-215 verification (mnemo's rule, `ed25519-zebra`)
//! against the cofactorless RFC 8032 checks of `ed25519-dalek` that it replaced, on the
//! same signatures in the same process. Batches of 256, as the verifiers build them.
//!
//! `cargo run --release -p mnemo-core --example signature_rule`

use mnemo_core::keys;
use mnemo_core::{Hash32, SigningKey};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    const N: usize = 16_384;
    const BATCH: usize = 256;
    const ROUNDS: usize = 7;
    let keys_: Vec<SigningKey> = (0..64u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let msgs: Vec<[u8; 64]> = (0..N)
        .map(|i| keys::event_signing_message(&Hash32(*blake3::hash(&i.to_be_bytes()).as_bytes())))
        .collect();
    let sigs: Vec<ed25519_dalek::Signature> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| ed25519_dalek::Signer::sign(&keys_[i % 64], m))
        .collect();
    let vks: Vec<ed25519_dalek::VerifyingKey> =
        (0..N).map(|i| keys_[i % 64].verifying_key()).collect();
    let rate = |f: &dyn Fn() -> bool| {
        median(
            (0..ROUNDS)
                .map(|_| {
                    let t = Instant::now();
                    assert!(f());
                    N as f64 / t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let chunks = || (0..N).step_by(BATCH).map(|s| s..(s + BATCH).min(N));
    let zip215_batch = rate(&|| {
        chunks().all(|r| {
            let m: Vec<&[u8]> = msgs[r.clone()].iter().map(|m| m.as_slice()).collect();
            keys::verify_batch(&m, &sigs[r.clone()], &vks[r])
        })
    });
    let dalek_batch = rate(&|| {
        chunks().all(|r| {
            let m: Vec<&[u8]> = msgs[r.clone()].iter().map(|m| m.as_slice()).collect();
            ed25519_dalek::verify_batch(&m, &sigs[r.clone()], &vks[r]).is_ok()
        })
    });
    let zip215_single = rate(&|| {
        (0..N).all(|i| keys::verify_signature(vks[i].as_bytes(), &msgs[i], &sigs[i].to_bytes()))
    });
    let dalek_single = rate(&|| {
        (0..N).all(|i| ed25519_dalek::Verifier::verify(&vks[i], &msgs[i], &sigs[i]).is_ok())
    });
    println!(
        "signature verification, {N} signatures by 64 keys, batches of {BATCH}, median of {ROUNDS}, 1 thread"
    );
    println!("| path | ZIP-215 (mnemo) | RFC 8032 cofactorless (ed25519-dalek) | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| batch | {zip215_batch:.0}/s | {dalek_batch:.0}/s | {:.2} |",
        zip215_batch / dalek_batch
    );
    println!(
        "| single | {zip215_single:.0}/s | {dalek_single:.0}/s | {:.2} |",
        zip215_single / dalek_single
    );
}
