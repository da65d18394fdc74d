//! `mnemo-audit verify --bundle`, the real binary, gives every custody-bundle vector in
//! `testdata/bundles/` the verdict `verdicts.json` records (core's generator wrote both):
//! the CLI's parser and report add nothing and lose nothing.

use std::process::Command;

#[test]
fn the_cli_gives_every_bundle_vector_its_recorded_verdict() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bundles");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/verdicts.json")).unwrap())
            .unwrap();
    let verdicts = manifest["verdicts"].as_object().unwrap();
    assert!(verdicts.len() >= 20, "{}", verdicts.len());
    for (name, want) in verdicts {
        let out = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
            .args([
                "verify",
                "--bundle",
                &format!("{dir}/{name}.jsonl"),
                "--json",
            ])
            .output()
            .unwrap();
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        let valid = want["valid"].as_bool().unwrap();
        assert_eq!(rep["valid"], valid, "{name}: {rep}");
        assert_eq!(out.status.code(), Some(if valid { 0 } else { 1 }), "{name}");
        if !valid {
            assert_eq!(rep["failure"]["code"], want["code"], "{name}: {rep}");
            assert_eq!(rep["failure"]["seq"], want["seq"], "{name}: {rep}");
            // a refusal names the line of the item, except a signature checked in parallel
            if want["code"] != "bad_signature" && want["code"] != "bad_origin_signature" {
                assert!(
                    rep["failure"]["line"].as_u64().is_some(),
                    "{name}: no line: {rep}"
                );
            }
        }
    }
}
