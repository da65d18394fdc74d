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
            if ![
                "bad_signature",
                "bad_origin_signature",
                "bad_processor_signature",
            ]
            .contains(&want["code"].as_str().unwrap())
            {
                assert!(
                    rep["failure"]["line"].as_u64().is_some(),
                    "{name}: no line: {rep}"
                );
            }
        }
    }
}

/// Every event of every valid bundle vector can be proved, and its proof verifies (with
/// the custody key it names pinned): signed captures included, whose origin signature is
/// over the capture message (FORMAT.md §5.2, §7.3 step 1).
#[test]
fn every_event_of_every_valid_bundle_is_provable() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bundles");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/verdicts.json")).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut proved = 0;
    let mut captures = 0;
    for (name, want) in manifest["verdicts"].as_object().unwrap() {
        if want["valid"] != true {
            continue;
        }
        let path = format!("{dir}/{name}.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let events = text
            .lines()
            .filter(|l| l.contains(r#""type":"event""#))
            .count();
        assert!(events > 0, "{name}");
        for seq in 1..=events {
            let out = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
                .args(["prove", "--bundle", &path, "--seq", &seq.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name} seq {seq}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let proof: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if proof["event"]["body"]["capture"].is_object() && proof["event"]["origin"].is_object()
            {
                captures += 1;
            }
            let file = tmp.path().join(format!("{name}-{seq}.json"));
            std::fs::write(&file, &out.stdout).unwrap();
            let key = proof["signer_key"].as_str().unwrap();
            let v = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
                .args(["verify", "--bundle", file.to_str().unwrap(), "--json"])
                .args(["--trusted-key", key])
                .output()
                .unwrap();
            assert!(
                v.status.success(),
                "{name} seq {seq}: {}{}",
                String::from_utf8_lossy(&v.stdout),
                String::from_utf8_lossy(&v.stderr)
            );
            proved += 1;
        }
    }
    assert!(captures > 0, "no signed capture was proved");
    println!("{proved} proofs, {captures} of signed captures");
}

/// A proof bundle's event is read as a closed grammar (FORMAT.md §13.1 on §10): a version 2
/// event with a stray `signature` beside its `seal`, one without its `seal`, or one with a
/// member §10 does not list, is `structure`.
#[test]
fn a_proof_event_is_a_closed_grammar() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bundles");
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
        .args([
            "prove",
            "--bundle",
            &format!("{dir}/v2_valid.jsonl"),
            "--seq",
            "4",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let proof: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proof["event"]["version"], 2);
    let tmp = tempfile::tempdir().unwrap();
    let check = |p: &serde_json::Value| {
        let f = tmp.path().join("p.json");
        std::fs::write(&f, p.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
            .args(["verify", "--bundle", f.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), rep["failure"]["code"].clone())
    };
    assert_eq!(check(&proof), (Some(0), serde_json::Value::Null));
    let mut stray = proof.clone();
    stray["event"]["signature"] = serde_json::json!("00".repeat(64));
    let mut unsealed = proof.clone();
    unsealed["event"].as_object_mut().unwrap().remove("seal");
    let mut unknown = proof.clone();
    unknown["event"]["note"] = serde_json::json!("x");
    for (name, p) in [
        ("stray", stray),
        ("unsealed", unsealed),
        ("unknown", unknown),
    ] {
        assert_eq!(
            check(&p),
            (Some(1), serde_json::json!("structure")),
            "{name}"
        );
    }
}

/// `mnemo-audit verify --bundle` gives every proof vector of `testdata/proofs/` the verdict
/// `verdicts.json` records (core's generator wrote both); pinning a key that did not sign
/// the valid proof is `untrusted_key`.
#[test]
fn the_cli_gives_every_proof_vector_its_recorded_verdict() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/proofs");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/verdicts.json")).unwrap())
            .unwrap();
    let verdicts = manifest["verdicts"].as_object().unwrap();
    assert!(verdicts.len() >= 7);
    let run = |name: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
            .args([
                "verify",
                "--bundle",
                &format!("{dir}/{name}.json"),
                "--json",
            ])
            .args(extra)
            .output()
            .unwrap();
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), rep)
    };
    for (name, want) in verdicts {
        let (code, rep) = run(name, &[]);
        let valid = want["valid"].as_bool().unwrap();
        assert_eq!(rep["valid"], valid, "{name}: {rep}");
        assert_eq!(code, Some(if valid { 0 } else { 1 }), "{name}");
        if !valid {
            assert_eq!(rep["failure"]["code"], want["code"], "{name}: {rep}");
        }
    }
    let other = "00".repeat(31) + "09";
    let (code, rep) = run("valid", &["--trusted-key", &other]);
    assert_eq!(code, Some(1), "{rep}");
    assert_eq!(rep["failure"]["code"], "untrusted_key", "{rep}");
}
