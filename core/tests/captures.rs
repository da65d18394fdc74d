//! Capture ids (docs/FORMAT.md §4.2): a `memory_ingested` with a capture stream and
//! counter, bound to the device key by the capture signature; a chain that records one
//! capture twice is refused as `duplicate_capture`.

mod common;

use common::*;
use mnemo_core::*;

fn capture(stream: &str, counter: u64) -> Option<Capture> {
    Some(Capture {
        stream: stream.into(),
        counter,
    })
}

/// Genesis and a device key, then the given captures (`signed`: with the device's capture
/// signature).
fn chain_with(captures: &[(&str, u64, bool)]) -> (UserId, Vec<Vec<u8>>) {
    let u = user("carol");
    let custody = key(1);
    let device = key(3);
    let mut b = ChainBuilder::with_genesis(u.clone(), &custody);
    b.push(
        &custody,
        EventBody::KeyAdded {
            key: pk(&device),
            role: KeyRole::Device,
        },
        None,
        None,
    );
    for (i, (stream, counter, signed)) in captures.iter().enumerate() {
        let c = commitment::commit(&[i as u8; 32], format!("capture {i}").as_bytes());
        let cap = capture(stream, *counter);
        let origin = signed.then(|| Origin {
            key: pk(&device).id(),
            signature: keys::sign_capture(&device, &u, cap.as_ref().unwrap(), &c),
        });
        b.push(
            &custody,
            EventBody::MemoryIngested {
                memory: mem(10 + i as u8),
                capture: cap,
            },
            Some(c),
            origin,
        );
    }
    let wires = b.events.iter().map(|(e, _)| e.to_wire()).collect();
    (u, wires)
}

#[test]
fn parallel_capture_streams_verify_and_round_trip() {
    let (u, w) = chain_with(&[
        ("voice", 1, true),
        ("web", 1, true),
        ("voice", 2, true),
        ("messages", 1, false),
        ("web", 2, true),
    ]);
    let sum = verify_wires(&u, &w).unwrap();
    assert_eq!(
        sum.signatures,
        2 + 5 + 4,
        "custody, then four capture signatures"
    );
    let (e, _) = Event::from_wire(&w[2]).unwrap();
    assert_eq!(e.body.tag(), 0x14);
    assert_eq!(e.body.capture(), capture("voice", 1).as_ref());
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["kind"], "memory_ingested");
    assert_eq!(json["body"]["capture"]["stream"], "voice");
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, e);
}

#[test]
fn a_capture_recorded_twice_is_refused() {
    // The same device's capture twice, whatever lies between.
    let (u, w) = chain_with(&[("voice", 1, true), ("web", 1, true), ("voice", 1, true)]);
    let e = verify_wires(&u, &w).unwrap_err();
    assert_eq!(
        (e.code(), e.seq()),
        ("duplicate_capture", Some(Seq(5))),
        "{e}"
    );
    // Unsigned captures too.
    let (u, w) = chain_with(&[("web", 7, false), ("web", 7, false)]);
    let e = verify_wires(&u, &w).unwrap_err();
    assert_eq!(e.code(), "duplicate_capture");
    // A signed and an unsigned capture of the same name are two captures.
    let (u, w) = chain_with(&[("web", 7, true), ("web", 7, false)]);
    verify_wires(&u, &w).unwrap();
}

#[test]
fn the_capture_signature_binds_the_capture_id() {
    let (u, mut w) = chain_with(&[("voice", 1, true)]);
    // Moving the signed capture to another counter breaks its origin signature.
    let (mut e, _) = Event::from_wire(&w[2]).unwrap();
    let EventBody::MemoryIngested { capture, .. } = &mut e.unsigned.body else {
        unreachable!()
    };
    capture.as_mut().unwrap().counter = 2;
    let re = e.unsigned.clone().sign(&key(1));
    w[2] = re.to_wire();
    let e = verify_wires(&u, &w).unwrap_err();
    assert_eq!(e.code(), "bad_origin_signature", "{e}");
}

#[test]
fn a_capture_stream_name_follows_the_value_rules() {
    let (u, w) = chain_with(&[("", 1, false)]);
    assert_eq!(verify_wires(&u, &w).unwrap_err().code(), "invalid_value");
    let long = "x".repeat(65);
    let (u, w) = chain_with(&[(long.as_str(), 1, false)]);
    assert_eq!(verify_wires(&u, &w).unwrap_err().code(), "invalid_value");
}
