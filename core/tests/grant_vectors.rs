//! Known-answer vectors for time capsules and the ask capability (FORMAT.md §4.1, §4.1.1):
//! `testdata/grant-vectors.json` is regenerated here from fixed seeds and compared byte for
//! byte (`MNEMO_UPDATE_VECTORS=1` rewrites it). A valid chain with a time capsule (kind tag
//! 0x23) read at its opening and an open grant with the ask bit; invalid chains, each with
//! the code a verifier must report; and the access rule's verdicts around an opening.

mod common;

use common::*;
use mnemo_core::grant::Refusal;
use mnemo_core::processing::{self, ModelClaim, SetMember, TrainingSet};
use mnemo_core::*;
use serde_json::{Value, json};

fn hex(b: &[u8]) -> String {
    ::hex::encode(b)
}

/// The time of event `seq` in a `ChainBuilder` chain.
fn ts(seq: i64) -> TimestampMs {
    TimestampMs(1_764_115_200_000 + 1000 * seq)
}

fn capsule(opens: TimestampMs) -> EventBody {
    EventBody::GrantCreated {
        grant: GrantId([0x31; 16]),
        grantee: user("bob"),
        capabilities: Capabilities {
            metadata: true,
            content: false,
            ask: true,
        },
        conditions: GrantConditions::default(),
        expires_at: Some(ts(100)),
        not_before: Some(opens),
    }
}

/// genesis, a memory, a time capsule to bob opening at event 5's time, an open grant to
/// carol with every capability, bob's list at the opening.
fn chain(opens: TimestampMs, access: AccessAction) -> Vec<(Event, Hash32)> {
    let custody = key(1);
    let mut b = ChainBuilder::with_genesis(user("alice"), &custody);
    b.push(
        &custody,
        EventBody::MemoryIngested {
            memory: mem(1),
            capture: None,
        },
        Some(Hash32([1; 32])),
        None,
    );
    b.push(&custody, capsule(opens), None, None);
    b.push(
        &custody,
        EventBody::GrantCreated {
            grant: GrantId([0x32; 16]),
            grantee: user("carol"),
            capabilities: Capabilities {
                metadata: true,
                content: true,
                ask: true,
            },
            conditions: GrantConditions::default(),
            expires_at: None,
            not_before: None,
        },
        None,
        None,
    );
    b.push(
        &custody,
        EventBody::AccessRecorded {
            accessor: user("bob"),
            grant: GrantId([0x31; 16]),
            action: access,
            memories: vec![mem(1)],
        },
        None,
        None,
    );
    b.events
}

const PROCESSOR_SEED: u8 = 9;

/// The question bob asks under the capsule (event 9 of the question chain).
fn question(asker: &str, model: ModelId, cited: Vec<MemoryId>) -> EventBody {
    EventBody::QuestionAsked {
        question: MemoryId([0x51; 16]),
        asker: user(asker),
        grant: GrantId([0x31; 16]),
        model,
        cited,
    }
}

/// The chain above, then: a processing grant to `trainer`, its fetch of memory 1, a model
/// over it (training set published), `ask` (bob's question, event 9, its text's
/// commitment `payload`), and the question's erasure (event 10).
fn with_question(ask: EventBody, payload: Option<Hash32>) -> Vec<(Event, Hash32)> {
    let custody = key(1);
    let mut b = ChainBuilder::new(user("alice"));
    for (e, _) in chain(ts(5), AccessAction::List) {
        b.push(&custody, e.body.clone(), e.payload, e.origin);
    }
    let pgrant = GrantId([0x33; 16]);
    let trainer = ProcessorId::new("trainer").unwrap();
    b.push(
        &custody,
        EventBody::ProcessingGranted {
            grant: pgrant,
            processor: trainer.clone(),
            version: None,
            key: pk(&key(PROCESSOR_SEED)),
            conditions: GrantConditions::default(),
            expires_at: None,
        },
        None,
        None,
    );
    b.push(
        &custody,
        EventBody::InputsFetched {
            grant: pgrant,
            memories: vec![mem(1)],
        },
        None,
        None,
    );
    let set = TrainingSet::new(vec![SetMember {
        seq: Seq(2),
        event_hash: b.events[1].1,
    }])
    .unwrap();
    let artifact = Hash32([0xab; 32]);
    let msg = processing::model_signing_message(&ModelClaim {
        user: &user("alice"),
        grant: &pgrant,
        processor: &trainer,
        version: "1",
        artifact: &artifact,
        set_root: &set.root(),
        set_count: 1,
    });
    b.push(
        &custody,
        EventBody::ModelTrained {
            model: ModelId([0x44; 16]),
            grant: pgrant,
            version: "1".into(),
            artifact,
            set_root: set.root(),
            set_count: 1,
            set: Some(vec![Seq(2)]),
            signature: processing::sign(&key(PROCESSOR_SEED), &msg),
        },
        None,
        None,
    );
    b.push(&custody, ask, payload, None);
    b.push(
        &custody,
        EventBody::MemoryErased {
            target: ErasureTarget::Memory(MemoryId([0x51; 16])),
        },
        None,
        None,
    );
    b.events
}

fn wires(events: &[(Event, Hash32)]) -> Vec<Vec<u8>> {
    events.iter().map(|(e, _)| e.to_wire()).collect()
}

fn invalid(name: &str, w: Vec<Vec<u8>>) -> Value {
    let e = verify_wires(&user("alice"), &w).expect_err(name);
    json!({
        "name": name,
        "wires": w.iter().map(|x| hex(x)).collect::<Vec<_>>(),
        "error": { "code": e.code(), "seq": e.seq().map(|s| s.0) },
    })
}

fn verdict(r: Result<(), Refusal>) -> &'static str {
    match r {
        Ok(()) => "allowed",
        Err(Refusal::NotYetOpen) => "not_yet_open",
        Err(Refusal::Expired) => "expired",
        Err(Refusal::Revoked) => "revoked",
        Err(Refusal::OtherGrantee) => "other_grantee",
        Err(Refusal::Capability) => "capability",
        Err(Refusal::Erased) => "erased",
        Err(Refusal::Conditions) => "conditions",
    }
}

fn build() -> Value {
    let model = ModelId([0x44; 16]);
    let text = Some(Hash32([0x71; 32]));
    let valid = with_question(question("bob", model, vec![mem(1)]), text);
    verify_wires(&user("alice"), &wires(&valid)).expect("the valid chain verifies");
    let events: Vec<Value> = valid
        .iter()
        .map(|(e, h)| {
            json!({
                "event": e,
                "canonical": hex(&e.unsigned.canonical_bytes()),
                "wire": hex(&e.to_wire()),
                "hash": h,
            })
        })
        .collect();
    // The access rule around the capsule's opening, for bob's grant.
    let EventBody::GrantCreated {
        grant,
        grantee,
        capabilities,
        conditions,
        expires_at,
        not_before,
    } = capsule(ts(5))
    else {
        unreachable!()
    };
    let g = Grant {
        id: grant,
        grantee,
        capabilities,
        conditions,
        expires_at,
        not_before,
        revoked: false,
    };
    let facts = MemoryFacts {
        id: mem(1),
        kind: "note",
        tags: &[],
        captured_at: None,
        ingested_at: ts(2),
        erased: false,
    };
    let access: Vec<Value> = [
        (ts(5).0 - 1, AccessAction::List),
        (ts(5).0, AccessAction::List),
        (ts(5).0, AccessAction::Ask),
        (ts(5).0, AccessAction::ReadContent),
        (ts(100).0 - 1, AccessAction::Ask),
        (ts(100).0, AccessAction::Ask),
    ]
    .iter()
    .map(|(at, action)| {
        json!({
            "at": at,
            "accessor": "bob",
            "action": action,
            "verdict": verdict(g.allows(&user("bob"), *action, &facts, TimestampMs(*at))),
        })
    })
    .collect();
    let invalid = vec![
        // The capsule opens a millisecond after bob's list: the chain may not record it.
        invalid(
            "access_before_opening",
            wires(&chain(TimestampMs(ts(5).0 + 1), AccessAction::List)),
        ),
        // Action 4 (ask) is never an access record's: its bytes do not decode.
        invalid(
            "access_recorded_with_ask",
            wires(&chain(ts(5), AccessAction::Ask)),
        ),
        // Questions (§4.3): only the grantee asks; the model must be the chain's; the
        // text is a payload; a citation names a memory of the chain.
        invalid(
            "question_by_another_user",
            wires(&with_question(question("carol", model, vec![mem(1)]), text)),
        ),
        invalid(
            "question_to_an_unknown_model",
            wires(&with_question(
                question("bob", ModelId([0x45; 16]), vec![mem(1)]),
                text,
            )),
        ),
        invalid(
            "question_without_its_text",
            wires(&with_question(question("bob", model, vec![mem(1)]), None)),
        ),
        invalid(
            "question_citing_an_unknown_memory",
            wires(&with_question(question("bob", model, vec![mem(9)]), text)),
        ),
    ];
    json!({
        "about": "FORMAT.md §4.1, §4.1.1 and §4.3: a time capsule (grant_created, kind tag 0x23), the ask capability (bit 2) and a question asked under it (question_asked, 0x32, event 9; erased at event 10). Keys are ed25519 seeds [n; 32]: custody n = 1, processor n = 9. Verify `valid.events` as one chain of user alice; each `invalid` chain must fail with the code and seq given; `access` gives the access rule's verdict for bob under the capsule (event 3) on memory 1 (ingested at event 2's time, no conditions).",
        "valid": { "user": "alice", "events": events },
        "invalid": invalid,
        "access": access,
    })
}

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/grant-vectors.json"
);

#[test]
fn grant_vectors_match_the_checked_in_file() {
    let fresh = serde_json::to_string_pretty(&build()).unwrap() + "\n";
    matches_checked_in("grant-vectors.json", &fresh);
}

#[test]
fn checked_in_grant_vectors_verify_as_stated() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let alice = user("alice");
    let w: Vec<Vec<u8>> = v["valid"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| ::hex::decode(e["wire"].as_str().unwrap()).unwrap())
        .collect();
    verify_wires(&alice, &w).expect("valid");
    // The capsule is kind tag 0x23; the open grant 0x20 with capability bits 0b111.
    let capsule = &v["valid"]["events"][2];
    assert_eq!(capsule["event"]["kind"], "grant_created");
    assert!(capsule["event"]["body"]["not_before"].is_i64());
    let canonical = ::hex::decode(capsule["canonical"].as_str().unwrap()).unwrap();
    let kind_at = 1 + 4 + 5 + 8 + 32 + 8;
    assert_eq!(canonical[kind_at], 0x23);
    check_invalid_cases(&alice, &v["invalid"]);
    let verdicts: Vec<&str> = v["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["verdict"].as_str().unwrap())
        .collect();
    let asked = &v["valid"]["events"][8]["event"];
    assert_eq!(asked["kind"], "question_asked");
    assert!(asked["payload"].is_string());
    assert_eq!(
        verdicts,
        [
            "not_yet_open",
            "allowed",
            "allowed",
            "capability",
            "allowed",
            "expired"
        ]
    );
}
