//! The canonical event decoder (FORMAT.md §5), behind the chain message envelope: whatever
//! the bytes, no panic; what decodes is canonical (re-encoding gives the same bytes, so the
//! hash over the received bytes is the hash of the event).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    if let Ok((wire, _sealed)) = mnemo_ledger::envelope::decode(&body) {
        check(&wire);
    }
    check(data);
});

fn check(wire: &[u8]) {
    if let Ok((event, hash)) = mnemo_core::Event::from_wire(wire) {
        let again = event.to_wire();
        assert_eq!(again, wire, "a non-canonical encoding decoded");
        let (_, h2) = mnemo_core::Event::from_wire(&again).expect("re-encoded event decodes");
        assert_eq!(hash, h2);
        let _ = event.body.check_values();
    }
}
