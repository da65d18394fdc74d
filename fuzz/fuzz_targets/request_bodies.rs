//! The REST API's request bodies, through the same extractor the handlers use (JSON with
//! and without `application/json`): every body is a value or a 4xx problem, never a panic
//! or a 5xx.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for status in rt.block_on(mnemo_api::http::fuzzing::parse_bodies(data)) {
        assert!((400..500).contains(&status), "status {status}");
    }
});
