//! Known-answer vectors for processing (FORMAT.md §15): `testdata/processing-vectors.json`
//! is regenerated here from fixed seeds and compared byte for byte (`MNEMO_UPDATE_VECTORS=1`
//! rewrites it). A valid chain with every processing kind (a processing grant, fetches, a
//! derived memory and one derived from it, a model, a lineage erasure), the signing
//! messages and derivation key, training-set proofs, and invalid chains, each with the
//! code a verifier must report.

mod common;

use common::*;
use mnemo_core::processing::{self, ModelClaim, SetMember, TrainingSet, Verdict};
use mnemo_core::*;
use serde_json::{Value, json};

fn hex(b: &[u8]) -> String {
    ::hex::encode(b)
}

const PROCESSOR_SEED: u8 = 9;

struct Built {
    user: UserId,
    events: Vec<(Event, Hash32)>,
    grant: GrantId,
    messages: Vec<Value>,
}

fn derived(
    b: &mut ChainBuilder,
    custody: &SigningKey,
    grant: GrantId,
    memory: MemoryId,
    inputs: Vec<MemoryId>,
    commitment: Hash32,
) -> Value {
    let u = b.head.user.clone();
    let p = ProcessorId::new("asr").unwrap();
    let msg = processing::derived_signing_message(&u, &grant, &p, "1", &inputs, &commitment);
    let signature = processing::sign(&key(PROCESSOR_SEED), &msg);
    let key_ = processing::derivation_key(&p, "1", &inputs);
    b.push(
        custody,
        EventBody::MemoryDerived {
            memory,
            grant,
            version: "1".into(),
            inputs,
            signature,
        },
        Some(commitment),
        None,
    );
    json!({ "seq": b.events.len(), "derived_signing_message": hex(&msg), "derivation_key": key_ })
}

/// genesis, two memories, a processing grant, fetch of memory 1, memory 3 derived from it,
/// fetch of 3, memory 4 derived from 3, a model on {1, 3}, lineage erasure of 1 (closure
/// 3 and 4), revocation of the grant.
fn chain() -> Built {
    let u = user("alice");
    let custody = key(1);
    let mut b = ChainBuilder::with_genesis(u.clone(), &custody);
    for n in 1..=2 {
        b.push(
            &custody,
            EventBody::MemoryIngested {
                memory: mem(n),
                capture: None,
            },
            Some(Hash32([n; 32])),
            None,
        );
    }
    let grant = GrantId([0x22; 16]);
    b.push(
        &custody,
        EventBody::ProcessingGranted {
            grant,
            processor: ProcessorId::new("asr").unwrap(),
            version: None,
            key: pk(&key(PROCESSOR_SEED)),
            conditions: GrantConditions {
                kinds: vec!["audio".into(), "transcript".into()],
                ..Default::default()
            },
            expires_at: None,
        },
        None,
        None,
    );
    let mut messages = vec![];
    b.push(
        &custody,
        EventBody::InputsFetched {
            grant,
            memories: vec![mem(1)],
        },
        None,
        None,
    );
    messages.push(derived(
        &mut b,
        &custody,
        grant,
        mem(3),
        vec![mem(1)],
        Hash32([3; 32]),
    ));
    b.push(
        &custody,
        EventBody::InputsFetched {
            grant,
            memories: vec![mem(3)],
        },
        None,
        None,
    );
    messages.push(derived(
        &mut b,
        &custody,
        grant,
        mem(4),
        vec![mem(3)],
        Hash32([4; 32]),
    ));
    let set = training_set(&b);
    let p = ProcessorId::new("asr").unwrap();
    let artifact = Hash32([0xab; 32]);
    let msg = processing::model_signing_message(&ModelClaim {
        user: &u,
        grant: &grant,
        processor: &p,
        version: "m1",
        artifact: &artifact,
        set_root: &set.root(),
        set_count: set.count(),
    });
    b.push(
        &custody,
        EventBody::ModelTrained {
            model: ModelId([0x40; 16]),
            grant,
            version: "m1".into(),
            artifact,
            set_root: set.root(),
            set_count: set.count(),
            set: Some(set.members().iter().map(|m| m.seq).collect()),
            signature: processing::sign(&key(PROCESSOR_SEED), &msg),
        },
        None,
        None,
    );
    messages.push(json!({ "seq": b.events.len(), "model_signing_message": hex(&msg) }));
    b.push(
        &custody,
        EventBody::LineageErased {
            memory: mem(1),
            reason: "owner request".into(),
            closure: vec![mem(3), mem(4)],
        },
        None,
        None,
    );
    b.push(&custody, EventBody::GrantRevoked { grant }, None, None);
    Built {
        user: u,
        events: b.events,
        grant,
        messages,
    }
}

/// The model's training set: memories 1 and 3 (seqs 2 and 6).
fn training_set(b: &ChainBuilder) -> TrainingSet {
    let at = |seq: usize| SetMember {
        seq: Seq(seq as u64),
        event_hash: b.events[seq - 1].1,
    };
    TrainingSet::new(vec![at(2), at(6)]).unwrap()
}

fn wires(events: &[(Event, Hash32)]) -> Vec<Vec<u8>> {
    events.iter().map(|(e, _)| e.to_wire()).collect()
}

/// The valid chain up to (excluding) event `at`, then `body` as event `at`.
fn tampered(c: &Built, at: usize, body: EventBody, payload: Option<Hash32>) -> Vec<Vec<u8>> {
    let mut b = ChainBuilder::new(c.user.clone());
    for (e, _) in &c.events[..at - 1] {
        b.push(&key(1), e.body.clone(), e.payload, e.origin);
    }
    b.push(&key(1), body, payload, None);
    wires(&b.events)
}

fn invalid(name: &str, user: &UserId, w: Vec<Vec<u8>>) -> Value {
    let e = verify_wires(user, &w).expect_err(name);
    json!({
        "name": name,
        "wires": w.iter().map(|x| hex(x)).collect::<Vec<_>>(),
        "error": { "code": e.code(), "seq": e.seq().map(|s| s.0) },
    })
}

fn build() -> Value {
    let c = chain();
    let summary = verify_wires(&c.user, &wires(&c.events)).expect("the valid chain verifies");
    let events: Vec<Value> = c
        .events
        .iter()
        .map(|(e, h)| json!({ "event": e, "wire": hex(&e.to_wire()), "hash": h }))
        .collect();
    let mut b = ChainBuilder::new(c.user.clone());
    b.events = c.events.clone();
    let set = training_set(&b);
    let proofs = json!({
        "root": set.root(),
        "count": set.count(),
        "included": set.prove(Seq(6), c.events[5].1),
        "excluded": set.prove(Seq(3), c.events[2].1),
    });
    let forged_sig = processing::sign(&key(2), b"not the message");
    // The model, with its published training set changed (tag 0x41, §15.4).
    let model_at = 1 + c
        .events
        .iter()
        .position(|(e, _)| matches!(e.body, EventBody::ModelTrained { .. }))
        .expect("the chain records a model");
    let model = |seqs: &[u64], root: Hash32| {
        let EventBody::ModelTrained {
            model,
            grant,
            version,
            artifact,
            ..
        } = c.events[model_at - 1].0.body.clone()
        else {
            unreachable!()
        };
        let msg = processing::model_signing_message(&ModelClaim {
            user: &c.user,
            grant: &grant,
            processor: &ProcessorId::new("asr").unwrap(),
            version: &version,
            artifact: &artifact,
            set_root: &root,
            set_count: seqs.len() as u64,
        });
        EventBody::ModelTrained {
            model,
            grant,
            version,
            artifact,
            set_root: root,
            set_count: seqs.len() as u64,
            set: Some(seqs.iter().map(|s| Seq(*s)).collect()),
            signature: processing::sign(&key(PROCESSOR_SEED), &msg),
        }
    };
    // A root over another event at seq 2 than the chain's.
    let other_root = TrainingSet::new(vec![
        SetMember {
            seq: Seq(2),
            event_hash: Hash32([0x22; 32]),
        },
        set.members()[1],
    ])
    .unwrap()
    .root();
    // The same model recorded with tag 0x40 (its set not published): a valid chain, on
    // which an exclusion cannot be shown (FORMAT.md §15.4).
    let unpublished = {
        let mut body = c.events[model_at - 1].0.body.clone();
        if let EventBody::ModelTrained { set, .. } = &mut body {
            *set = None;
        }
        let w = tampered(&c, model_at, body, None);
        verify_wires(&c.user, &w).expect("a 0x40 model is valid");
        w.iter().map(|x| hex(x)).collect::<Vec<_>>()
    };
    let invalid = vec![
        // A published set out of order would let a neighbour pair "prove" an exclusion.
        invalid(
            "training_set_not_ascending",
            &c.user,
            tampered(&c, model_at, model(&[6, 2], set.root()), None),
        ),
        // Seq 3 is memory 2's event, which the grant never fetched.
        invalid(
            "training_set_member_not_fetched",
            &c.user,
            tampered(&c, model_at, model(&[2, 3], set.root()), None),
        ),
        // The processor signed a root that is not the tree of the members' events.
        invalid(
            "training_set_root_not_its_members",
            &c.user,
            tampered(&c, model_at, model(&[2, 6], other_root), None),
        ),
        // A derived memory whose input was never fetched under the grant (the input of the
        // second derivation is memory 2 instead of 3).
        invalid(
            "input_not_fetched",
            &c.user,
            tampered(
                &c,
                8,
                EventBody::MemoryDerived {
                    memory: mem(4),
                    grant: c.grant,
                    version: "1".into(),
                    inputs: vec![mem(2)],
                    signature: forged_sig,
                },
                Some(Hash32([4; 32])),
            ),
        ),
        // The second derivation repeats the first one's processor, version and inputs.
        invalid(
            "derivation_repeated",
            &c.user,
            tampered(
                &c,
                8,
                EventBody::MemoryDerived {
                    memory: mem(4),
                    grant: c.grant,
                    version: "1".into(),
                    inputs: vec![mem(1)],
                    signature: forged_sig,
                },
                Some(Hash32([4; 32])),
            ),
        ),
        invalid(
            "forged_processor_signature",
            &c.user,
            tampered(
                &c,
                8,
                EventBody::MemoryDerived {
                    memory: mem(4),
                    grant: c.grant,
                    version: "1".into(),
                    inputs: vec![mem(3)],
                    signature: forged_sig,
                },
                Some(Hash32([4; 32])),
            ),
        ),
        invalid(
            "erasure_without_its_closure",
            &c.user,
            tampered(
                &c,
                10,
                EventBody::MemoryErased {
                    target: ErasureTarget::Memory(mem(1)),
                },
                None,
            ),
        ),
        invalid(
            "closure_missing_a_memory",
            &c.user,
            tampered(
                &c,
                10,
                EventBody::LineageErased {
                    memory: mem(1),
                    reason: String::new(),
                    closure: vec![mem(3)],
                },
                None,
            ),
        ),
        invalid(
            "fetch_under_a_user_grant_id",
            &c.user,
            tampered(
                &c,
                5,
                EventBody::InputsFetched {
                    grant: GrantId([0x99; 16]),
                    memories: vec![mem(1)],
                },
                None,
            ),
        ),
        invalid(
            "derived_without_payload",
            &c.user,
            tampered(
                &c,
                6,
                EventBody::MemoryDerived {
                    memory: mem(3),
                    grant: c.grant,
                    version: "1".into(),
                    inputs: vec![mem(1)],
                    signature: forged_sig,
                },
                None,
            ),
        ),
    ];
    json!({
        "about": "FORMAT.md §15: processing kinds. Keys are ed25519 seeds [n; 32]: custody n = 1, processor n = 9. Verify `valid.events` as one chain of user alice; each `invalid` chain must fail with the code and seq given.",
        "processor": { "name": "asr", "seed": hex(&seed(PROCESSOR_SEED)), "public": pk(&key(PROCESSOR_SEED)) },
        "valid": { "user": c.user, "events": events, "messages": c.messages, "summary": { "signatures": summary.signatures } },
        "training_set": proofs,
        "unpublished_model": { "about": "the valid chain to its model, recorded with tag 0x40 (no published set): the inclusion proof holds against it, the exclusion is refused (mismatch)", "wires": unpublished },
        "invalid": invalid,
    })
}

#[test]
fn processing_vectors_match_the_checked_in_file() {
    let fresh = serde_json::to_string_pretty(&build()).unwrap() + "\n";
    matches_checked_in("processing-vectors.json", &fresh);
}

#[test]
fn checked_in_processing_vectors_verify_as_stated() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/processing-vectors.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let u = UserId::new(v["valid"]["user"].as_str().unwrap()).unwrap();
    let w: Vec<Vec<u8>> = v["valid"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| ::hex::decode(e["wire"].as_str().unwrap()).unwrap())
        .collect();
    verify_wires(&u, &w).expect("valid");
    check_invalid_cases(&u, &v["invalid"]);
    let t = &v["training_set"];
    let root: Hash32 = serde_json::from_value(t["root"].clone()).unwrap();
    let count = t["count"].as_u64().unwrap();
    let inc: TrainingSetProof = serde_json::from_value(t["included"].clone()).unwrap();
    let exc: TrainingSetProof = serde_json::from_value(t["excluded"].clone()).unwrap();
    assert_eq!(inc.verify(&root, count), Ok(true));
    assert_eq!(exc.verify(&root, count), Ok(false));
    assert!(matches!(exc.verdict, Verdict::Excluded { .. }));
}
