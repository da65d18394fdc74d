//! The custody bundle parser and verifier (`mnemo-audit verify --bundle`): any bytes give
//! items or typed errors, and verifying what parsed gives a verdict, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let items: Vec<_> = mnemo_audit::read_bundle(data, |_| {}).collect();
    let opts = mnemo_audit::Options {
        policy: Default::default(),
        threads: 1,
    };
    let _ = mnemo_audit::verify_items(items.into_iter(), &opts);
});
