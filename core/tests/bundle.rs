//! Proof bundles verify end to end, and any change to any part is caught.

mod common;

use common::*;
use mnemo_core::*;
use proptest::prelude::*;

#[test]
fn every_event_of_the_sample_chain_has_an_anchored_bundle() {
    for seq in 1..=12 {
        let b = sample_bundle(seq, 20);
        assert_eq!(b.verify(), Ok(ProofLevel::Anchored), "seq {seq}");
        let json = serde_json::to_string(&b).unwrap();
        let back: ProofBundle = serde_json::from_str(&json).unwrap();
        assert_eq!(back.verify(), Ok(ProofLevel::Anchored));
    }
}

#[test]
fn partial_bundles_report_their_level() {
    let mut b = sample_bundle(3, 4);
    b.anchor = None;
    assert_eq!(b.verify(), Ok(ProofLevel::InEpoch));
    b.epoch = None;
    assert_eq!(b.verify(), Ok(ProofLevel::Checkpointed));
}

#[test]
fn forged_receipts_and_proofs_are_named() {
    let b = sample_bundle(3, 4);
    let mut x = b.clone();
    x.anchor.as_mut().unwrap().root.0[0] ^= 1;
    assert_eq!(
        x.verify(),
        Err(ProofError::Mismatch("anchor receipt is for another root"))
    );
    let mut x = b.clone();
    x.anchor.as_mut().unwrap().epoch = 8;
    assert_eq!(
        x.verify(),
        Err(ProofError::Mismatch("anchor receipt is for another epoch"))
    );
    let mut x = b.clone();
    x.inclusion.path[0].0[3] ^= 1;
    assert_eq!(x.verify().unwrap_err().code(), "root_mismatch");
    let mut x = b.clone();
    x.epoch.as_mut().unwrap().inclusion.path.pop();
    assert_eq!(x.verify().unwrap_err().code(), "proof_length");
    let mut x = b.clone();
    x.signer_key = pk(&key(8));
    assert_eq!(x.verify().unwrap_err().code(), "event");
    let mut x = b.clone();
    x.inclusion.index = 5;
    assert_eq!(x.verify().unwrap_err().code(), "mismatch");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Changing any one byte of the bundle's binary parts (event wire form, proof paths,
    /// checkpoint, epoch root) makes verification fail.
    #[test]
    fn any_changed_byte_is_detected(seq in 1u64..=12, part in 0u8..5, pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut b = sample_bundle(seq, 9);
        match part {
            0 => {
                let mut w = b.event.to_wire();
                let at = pos.index(w.len());
                w[at] ^= x;
                match Event::from_wire(&w) {
                    Ok((e, _)) => b.event = e,
                    Err(_) => return Ok(()), // undecodable: detected
                }
            }
            1 => { let n = b.inclusion.path.len(); prop_assume!(n > 0); let at = pos.index(n * 32); b.inclusion.path[at / 32].0[at % 32] ^= x; }
            2 => { let at = pos.index(64); if at < 32 { b.checkpoint.head.0[at] ^= x } else { b.checkpoint.root.0[at - 32] ^= x } }
            3 => { let ep = b.epoch.as_mut().unwrap(); let n = ep.inclusion.path.len(); let at = pos.index(n * 32); ep.inclusion.path[at / 32].0[at % 32] ^= x; }
            _ => { let ep = b.epoch.as_mut().unwrap(); ep.root.0[pos.index(32)] ^= x; }
        }
        prop_assert!(b.verify().is_err());
    }
}
