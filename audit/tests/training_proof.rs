//! `mnemo-audit training-proof` on the processing vectors (testdata/processing-vectors.json):
//! an inclusion and an exclusion proof hold, alone (self-asserted) and against the owner's
//! custody bundle (trust: bundle); a forged exclusion, a proof against another model's
//! commitment and a file that is no proof are refused with exit 1 and the code named.

use serde_json::{Value, json};
use std::process::Command;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/processing-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run(args: &[&std::path::Path]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_mnemo-audit"))
        .arg("training-proof")
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), v)
}

#[test]
fn training_proofs_are_checked_alone_and_against_the_bundle() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let model = v["valid"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["kind"] == "model_trained")
        .unwrap()["event"]["body"]["model"]
        .clone();
    let write = |name: &str, proof: &Value| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            json!({ "user": "alice", "model": model, "proof": proof }).to_string(),
        )
        .unwrap();
        p
    };
    // The owner's custody bundle, from the valid chain's wires.
    let events = v["valid"]["events"].as_array().unwrap();
    let mut lines = vec![
        json!({ "type": "header", "format": "mnemo-custody-bundle", "version": 1, "user": "alice", "exported_at": 0 }),
    ];
    for e in events {
        lines.push(json!({ "type": "event", "wire": e["wire"] }));
    }
    lines.push(
        json!({ "type": "end", "events": events.len(), "head": events.last().unwrap()["hash"] }),
    );
    let bundle = dir.path().join("custody.jsonl");
    std::fs::write(
        &bundle,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let t = &v["training_set"];
    let inc = write("inc.json", &t["included"]);
    let exc = write("exc.json", &t["excluded"]);
    let (code, out) = run(&[&inc]);
    assert_eq!(
        (code, &out["included"], &out["trust"]),
        (0, &json!(true), &json!("self-asserted")),
        "{out}"
    );
    let (code, out) = run(&[&exc]);
    assert_eq!((code, &out["included"]), (0, &json!(false)), "{out}");
    let b = std::path::Path::new("--bundle");
    let (code, out) = run(&[&inc, b, &bundle]);
    assert_eq!((code, &out["trust"]), (0, &json!("bundle")), "{out}");
    let (code, out) = run(&[&exc, b, &bundle]);
    assert_eq!(
        (code, &out["included"], &out["trust"]),
        (0, &json!(false), &json!("bundle")),
        "{out}"
    );
    // A forged exclusion: claim the included member is excluded, with the neighbours of
    // another seq.
    let mut forged = t["excluded"].clone();
    forged["member"] = t["included"]["member"].clone();
    let forged = write("forged.json", &forged);
    let (code, out) = run(&[&forged]);
    assert_eq!((code, &out["code"]), (1, &json!("mismatch")), "{out}");
    // A self-consistent proof over another root is refused against the bundle.
    let mut other = t["included"].clone();
    other["root"] = json!("00".repeat(32));
    let other = write("other.json", &other);
    let (code, out) = run(&[&other, b, &bundle]);
    assert_eq!((code, &out["code"]), (1, &json!("mismatch")), "{out}");
    // The bare §15.4 object is a proof file too: alone, and with --bundle and --model.
    let bare = dir.path().join("bare.json");
    std::fs::write(&bare, t["included"].to_string()).unwrap();
    let (code, out) = run(&[&bare]);
    assert_eq!((code, &out["included"]), (0, &json!(true)), "{out}");
    let m = std::path::PathBuf::from(model.as_str().unwrap());
    let (code, out) = run(&[&bare, b, &bundle, std::path::Path::new("--model"), &m]);
    assert_eq!((code, &out["trust"]), (0, &json!("bundle")), "{out}");
    // The order of the checks: the proof's own first (a proof whose path does not lead to
    // the model's root is root_mismatch), then the member against the chain (mismatch).
    let mut bad_path = t["included"].clone();
    bad_path["proof"]["path"][0] = json!("11".repeat(32));
    bad_path["member"]["event_hash"] = json!("22".repeat(32));
    let bad_path = write("bad_path.json", &bad_path);
    let (code, out) = run(&[&bad_path, b, &bundle]);
    assert_eq!((code, &out["code"]), (1, &json!("root_mismatch")), "{out}");
    // A model recorded with tag 0x40 publishes no set: against its chain, the inclusion
    // stands and the exclusion is refused (its root alone cannot show one, FORMAT.md §15.4).
    let wires: Vec<&str> = v["unpublished_model"]["wires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let mut lines = vec![
        json!({ "type": "header", "format": "mnemo-custody-bundle", "version": 1, "user": "alice", "exported_at": 0 }),
    ];
    let mut head = None;
    for w in &wires {
        let (e, h) = mnemo_core::Event::from_wire(&hex::decode(w).unwrap()).unwrap();
        assert_eq!(e.body.tag() == 0x40, e.seq.0 == wires.len() as u64);
        head = Some(h);
        lines.push(json!({ "type": "event", "wire": w }));
    }
    lines.push(json!({ "type": "end", "events": wires.len(), "head": head.unwrap() }));
    let legacy = dir.path().join("legacy.jsonl");
    std::fs::write(
        &legacy,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let (code, out) = run(&[&inc, b, &legacy]);
    assert_eq!((code, &out["included"]), (0, &json!(true)), "{out}");
    let (code, out) = run(&[&exc, b, &legacy]);
    assert_eq!((code, &out["code"]), (1, &json!("mismatch")), "{out}");
    assert!(out["message"].as_str().unwrap().contains("0x40"), "{out}");
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"not\": \"a proof\"}").unwrap();
    let (code, out) = run(&[&junk]);
    assert_eq!((code, &out["code"]), (1, &json!("structure")), "{out}");
}
