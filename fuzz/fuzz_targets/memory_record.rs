//! The memory record decoder (FORMAT.md §11): no panic; what decodes is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = mnemo_core::MemoryRecord::decode(data) {
        assert_eq!(record.canonical_bytes(), data, "a non-canonical record decoded");
        let _ = record.check_values();
    }
});
