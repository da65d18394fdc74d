//! One signature rule everywhere (FORMAT.md §1: ZIP-215). A generator builds the edge
//! cases of "Taming the many EdDSAs" (Chalkias et al., 2020) with curve25519-dalek:
//! small-order and mixed-order R and A, non-canonical encodings of R and A, S >= L, points
//! that do not decode, and signatures that split the cofactored and cofactorless equations.
//! Every verifying path of mnemo-core (single, batch alone, batch among valid signatures,
//! the chain's signature batch, proof bundles) must give each case the same verdict, and
//! that verdict is the one recorded in `testdata/signature-vectors.json` (regenerate with
//! `MNEMO_WRITE_VECTORS=1 cargo test -p mnemo-core --test signature_rule`).

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use mnemo_core::keys::{self, event_signing_message};
use mnemo_core::{Hash32, PublicKey, Seq, SignatureBatch, SignatureCheck};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/signature-vectors.json"
);

fn scalar(n: u8) -> Scalar {
    Scalar::from_bytes_mod_order(
        *blake3::hash(&[b"sig vector scalar ", &[n][..]].concat()).as_bytes(),
    )
}

fn challenge(r: &[u8; 32], a: &[u8; 32], m: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(m);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// A torsion point of order 8: the torsion part of a point that decodes.
fn order8() -> EdwardsPoint {
    let eighth = Scalar::from(8u8).invert();
    for i in 0u8..=255 {
        let mut y = [i; 32];
        y[31] &= 0x7f;
        let Some(p) = CompressedEdwardsY(y).decompress() else {
            continue;
        };
        let t = p - (p.mul_by_cofactor() * eighth);
        if t * Scalar::from(4u8) != EdwardsPoint::identity() {
            return t;
        }
    }
    unreachable!("some point has a torsion part of order 8")
}

/// Bytes that do not decode to a curve point.
fn not_a_point() -> [u8; 32] {
    (2u8..=255)
        .map(|i| {
            let mut y = [0u8; 32];
            y[0] = i;
            y
        })
        .find(|y| CompressedEdwardsY(*y).decompress().is_none())
        .expect("some y is not on the curve")
}

/// `y = 1 + p` (2^255 - 18): a non-canonical encoding of the identity.
fn non_canonical_identity() -> [u8; 32] {
    let mut b = [0xff; 32];
    b[0] = 0xee;
    b[31] = 0x7f;
    b
}

fn sig(r: [u8; 32], s: [u8; 32]) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(&r);
    b[32..].copy_from_slice(&s);
    b
}

struct Case {
    name: &'static str,
    what: &'static str,
    key: [u8; 32],
    msg: Vec<u8>,
    sig: [u8; 64],
}

/// The message every case signs: a custody signature over a fixed event hash.
fn msg() -> Vec<u8> {
    event_signing_message(&Hash32([7; 32])).to_vec()
}

fn cases() -> Vec<Case> {
    let m = msg();
    let (a, r) = (scalar(1), scalar(2));
    let a_pt = B * a;
    let a_bytes = a_pt.compress().to_bytes();
    let t8 = order8();
    let signed = |key: [u8; 32], r_bytes: [u8; 32], r: Scalar, a: Scalar| {
        let k = challenge(&r_bytes, &key, &m);
        sig(r_bytes, (r + k * a).to_bytes())
    };
    let mut out = Vec::new();
    let rb = (B * r).compress().to_bytes();
    out.push(Case {
        name: "valid",
        what: "an RFC 8032 signature by a prime-order key",
        key: a_bytes,
        msg: m.clone(),
        sig: signed(a_bytes, rb, r, a),
    });
    let mixed_r = (B * r + t8).compress().to_bytes();
    out.push(Case {
        name: "mixed_order_r",
        what: "R = rB + T8: the cofactored equation holds, the cofactorless one does not",
        key: a_bytes,
        msg: m.clone(),
        sig: signed(a_bytes, mixed_r, r, a),
    });
    let small_r = t8.compress().to_bytes();
    out.push(Case {
        name: "small_order_r",
        what: "R of order 8 (r = 0), prime-order key",
        key: a_bytes,
        msg: m.clone(),
        sig: signed(a_bytes, small_r, Scalar::ZERO, a),
    });
    let mixed_a = (a_pt + t8).compress().to_bytes();
    out.push(Case {
        name: "mixed_order_a",
        what: "A = aB + T8, S = r + ka: valid under the cofactored equation; no chain may add A",
        key: mixed_a,
        msg: m.clone(),
        sig: signed(mixed_a, rb, r, a),
    });
    let small_a = t8.compress().to_bytes();
    let small_r2 = (t8 + t8 + t8).compress().to_bytes();
    out.push(Case {
        name: "small_order_a_and_r",
        what: "A and R of small order, S = 0: valid under the cofactored equation; A is weak",
        key: small_a,
        msg: m.clone(),
        sig: sig(small_r2, [0; 32]),
    });
    let nc_id = non_canonical_identity();
    out.push(Case {
        name: "non_canonical_r",
        what: "R is the identity encoded as y = 1 + p, S = ka",
        key: a_bytes,
        msg: m.clone(),
        sig: signed(a_bytes, nc_id, Scalar::ZERO, a),
    });
    out.push(Case {
        name: "non_canonical_a",
        what: "A is the identity encoded as y = 1 + p, S = r: valid, but no chain may add A",
        key: nc_id,
        msg: m.clone(),
        sig: sig(rb, r.to_bytes()),
    });
    let mut neg_zero = [0u8; 32];
    neg_zero[0] = 1;
    neg_zero[31] = 0x80;
    out.push(Case {
        name: "non_canonical_r_sign_bit",
        what: "R is the identity with the sign bit set (x = -0), S = ka",
        key: a_bytes,
        msg: m.clone(),
        sig: signed(a_bytes, neg_zero, Scalar::ZERO, a),
    });
    // S + L: the same residue, not reduced
    let good = signed(a_bytes, rb, r, a);
    let s_plus_l = {
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = good[32 + i] as u16 + l[i] as u16 + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        out
    };
    out.push(Case {
        name: "s_not_reduced",
        what: "S + L in place of S (S >= L)",
        key: a_bytes,
        msg: m.clone(),
        sig: sig(rb, s_plus_l),
    });
    let mut high = good;
    high[63] |= 0xe0;
    out.push(Case {
        name: "s_high_bits",
        what: "S with its three high bits set (S >= 2^253)",
        key: a_bytes,
        msg: m.clone(),
        sig: high,
    });
    out.push(Case {
        name: "r_not_a_point",
        what: "R does not decode to a point",
        key: a_bytes,
        msg: m.clone(),
        sig: sig(not_a_point(), good[32..].try_into().unwrap()),
    });
    out.push(Case {
        name: "a_not_a_point",
        what: "A does not decode to a point",
        key: not_a_point(),
        msg: m.clone(),
        sig: good,
    });
    let mut other = m.clone();
    other[63] ^= 1;
    out.push(Case {
        name: "wrong_message",
        what: "a valid signature over another message",
        key: a_bytes,
        msg: other,
        sig: good,
    });
    out
}

/// mnemo's verdict on a case by every verifying path; panics if two paths disagree.
fn verdict(c: &Case) -> bool {
    let single = keys::verify_signature(&c.key, &c.msg, &c.sig);
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&c.sig);
    let mut paths = vec![("verify_signature", single)];
    match PublicKey::from_bytes(&c.key) {
        None => {
            // A key that does not decode can sign nothing: no path takes it.
            assert!(!single, "{}: a key that is no point verified", c.name);
        }
        Some(pk) => {
            let valid = &cases()[0];
            let vk = pk.0;
            let valid_vk = PublicKey::from_bytes(&valid.key).unwrap().0;
            let valid_sig = ed25519_dalek::Signature::from_bytes(&valid.sig);
            paths.push((
                "verify_batch alone",
                keys::verify_batch(&[&c.msg], &[dalek_sig], &[vk]),
            ));
            paths.push((
                "verify_batch among valid ones",
                keys::verify_batch(
                    &[&valid.msg, &c.msg, &valid.msg],
                    &[valid_sig, dalek_sig, valid_sig],
                    &[valid_vk, vk, valid_vk],
                ),
            ));
            let check = |seq| SignatureCheck {
                seq: Seq(seq),
                by: mnemo_core::Signed::Custody,
                msg: c.msg.clone(),
                sig: dalek_sig,
                key: vk,
            };
            paths.push((
                "SignatureBatch (chains, projector, auditor)",
                SignatureBatch::new(vec![check(1), check(2)])
                    .verify()
                    .is_ok(),
            ));
            if c.msg == msg() {
                paths.push((
                    "verify_event_signature (proof bundles)",
                    keys::verify_event_signature(
                        &pk,
                        &Hash32([7; 32]),
                        &mnemo_core::Sig(dalek_sig),
                    ),
                ));
            }
        }
    }
    for (path, v) in &paths {
        assert_eq!(
            *v, single,
            "{}: {path} disagrees with single verification",
            c.name
        );
    }
    single
}

fn key_verdict(key: &[u8; 32]) -> String {
    match PublicKey::from_bytes(key) {
        None => "not a curve point".into(),
        Some(pk) => match pk.fit_for_chain() {
            Ok(()) => "may be added".into(),
            Err(e) => e.reason().into(),
        },
    }
}

#[test]
fn every_path_gives_each_edge_case_the_verdict_recorded() {
    let mut out = Vec::new();
    for c in cases() {
        let valid = verdict(&c);
        let cofactorless = ed25519_dalek::VerifyingKey::from_bytes(&c.key).is_ok_and(|k| {
            k.verify_strict(&c.msg, &ed25519_dalek::Signature::from_bytes(&c.sig))
                .is_ok()
        });
        out.push(json!({
            "name": c.name,
            "what": c.what,
            "key": hex::encode(c.key),
            "msg": hex::encode(&c.msg),
            "sig": hex::encode(c.sig),
            "valid": valid,
            "strict_rfc8032_valid": cofactorless,
            "key_in_chain": key_verdict(&c.key),
        }));
    }
    // the rule, class by class
    let get = |n: &str| out.iter().find(|v| v["name"] == n).unwrap().clone();
    for n in [
        "valid",
        "mixed_order_r",
        "small_order_r",
        "mixed_order_a",
        "small_order_a_and_r",
        "non_canonical_r",
        "non_canonical_a",
        "non_canonical_r_sign_bit",
    ] {
        assert_eq!(get(n)["valid"], true, "{n} is valid under ZIP-215");
    }
    for n in [
        "s_not_reduced",
        "s_high_bits",
        "r_not_a_point",
        "a_not_a_point",
        "wrong_message",
    ] {
        assert_eq!(get(n)["valid"], false, "{n} is invalid under ZIP-215");
    }
    assert_eq!(
        get("mixed_order_r")["strict_rfc8032_valid"],
        false,
        "the split"
    );
    assert_eq!(get("valid")["key_in_chain"], "may be added");
    assert_eq!(get("mixed_order_a")["key_in_chain"], "mixed-order key");
    assert_eq!(get("small_order_a_and_r")["key_in_chain"], "weak key");
    assert_eq!(
        get("non_canonical_a")["key_in_chain"],
        "non-canonical key encoding"
    );
    assert_eq!(get("a_not_a_point")["key_in_chain"], "not a curve point");
    let doc = json!({
        "description": "Ed25519 edge cases under mnemo's signature rule (docs/FORMAT.md §1, ZIP-215). `valid` is mnemo's verdict for (key, msg, sig) by every verifying path; `strict_rfc8032_valid` is ed25519-dalek's verify_strict, for comparison; `key_in_chain` is whether a key_added or key_rotated may add the key (§8). Generated by core/tests/signature_rule.rs.",
        "rule": "zip215",
        "cases": out,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("MNEMO_WRITE_VECTORS").is_some() {
        std::fs::write(PATH, &text).unwrap();
    }
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(PATH).expect("testdata/signature-vectors.json"),
    )
    .unwrap();
    assert_eq!(
        stored, doc,
        "testdata/signature-vectors.json is stale: regenerate it"
    );
}
