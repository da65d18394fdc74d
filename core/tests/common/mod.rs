//! A deterministic sample chain with every event kind, built from fixed seeds.
#![allow(dead_code, reason = "each test file uses a different part")]

use mnemo_core::*;

pub fn seed(n: u8) -> [u8; 32] {
    *blake3::hash(&[b"mnemo test seed ".as_slice(), &[n]].concat()).as_bytes()
}

pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&seed(n))
}

pub fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn pk(k: &SigningKey) -> PublicKey {
    PublicKey(k.verifying_key())
}

pub fn mem(n: u8) -> MemoryId {
    MemoryId([n; 16])
}

pub struct Sample {
    pub user: UserId,
    pub events: Vec<Event>,
    pub hashes: Vec<Hash32>,
    pub custody: SigningKey,
    pub rotated: SigningKey,
    pub device: SigningKey,
}

impl Sample {
    pub fn wires(&self) -> Vec<Vec<u8>> {
        self.events.iter().map(Event::to_wire).collect()
    }
}

/// Builds a chain event by event, one second apart from 2025-11-26 00:00 UTC on.
pub struct ChainBuilder {
    pub head: Head,
    pub events: Vec<(Event, Hash32)>,
}

impl ChainBuilder {
    pub fn new(user: UserId) -> Self {
        Self {
            head: Head::empty(user),
            events: Vec::new(),
        }
    }

    /// A chain of `user` whose first event adds `custody` as its custody key (signed by it).
    pub fn with_genesis(user: UserId, custody: &SigningKey) -> Self {
        let mut b = Self::new(user);
        b.push(
            custody,
            EventBody::KeyAdded {
                key: pk(custody),
                role: KeyRole::Custody,
            },
            None,
            None,
        );
        b
    }

    pub fn push(
        &mut self,
        k: &SigningKey,
        body: EventBody,
        payload: Option<Hash32>,
        origin: Option<Origin>,
    ) {
        let ts = TimestampMs(1_764_115_200_000 + 1000 * (self.events.len() as i64 + 1));
        let (e, h) = self.head.next_event(k, ts, body, payload, origin);
        self.head.advance(&e, h);
        self.events.push((e, h));
    }
}

/// 12 events: genesis, device key, 3 memories (one with an origin signature), grant,
/// access, revoke, erase, rotation, memory signed by the new key, revoke device key.
pub fn sample_chain() -> Sample {
    let u = user("alice");
    let custody = key(1);
    let rotated = key(2);
    let device = key(3);
    let mut b = ChainBuilder::new(u.clone());
    b.push(
        &custody,
        EventBody::KeyAdded {
            key: pk(&custody),
            role: KeyRole::Custody,
        },
        None,
        None,
    );
    b.push(
        &custody,
        EventBody::KeyAdded {
            key: pk(&device),
            role: KeyRole::Device,
        },
        None,
        None,
    );
    for i in 1..=3u8 {
        let c = commitment::commit(&[i; 32], format!("memory number {i}").as_bytes());
        let origin = (i == 2).then(|| Origin {
            key: pk(&device).id(),
            signature: keys::sign_origin(&device, &u, &c),
        });
        b.push(
            &custody,
            EventBody::MemoryIngested {
                memory: mem(i),
                capture: None,
            },
            Some(c),
            origin,
        );
    }
    let grant = GrantId([9; 16]);
    b.push(
        &custody,
        EventBody::GrantCreated {
            grant,
            grantee: user("bob"),
            capabilities: Capabilities {
                metadata: true,
                content: true,
                ask: false,
            },
            conditions: GrantConditions {
                tags: vec!["work".into()],
                kinds: vec![],
                from: None,
                until: Some(TimestampMs(1_800_000_000_000)),
                memories: vec![],
            },
            expires_at: Some(TimestampMs(1_800_000_000_000)),
            not_before: None,
        },
        None,
        None,
    );
    b.push(
        &custody,
        EventBody::AccessRecorded {
            accessor: user("bob"),
            grant,
            action: AccessAction::ReadContent,
            memories: vec![mem(1)],
        },
        None,
        None,
    );
    b.push(&custody, EventBody::GrantRevoked { grant }, None, None);
    b.push(
        &custody,
        EventBody::MemoryErased {
            target: ErasureTarget::Memory(mem(1)),
        },
        None,
        None,
    );
    b.push(
        &custody,
        EventBody::KeyRotated {
            old: pk(&custody).id(),
            new: pk(&rotated),
        },
        None,
        None,
    );
    let c = commitment::commit(&[4; 32], b"after rotation");
    b.push(
        &rotated,
        EventBody::MemoryIngested {
            memory: mem(4),
            capture: None,
        },
        Some(c),
        None,
    );
    b.push(
        &rotated,
        EventBody::KeyRevoked {
            key: pk(&device).id(),
        },
        None,
        None,
    );
    let (events, hashes) = b.events.into_iter().unzip();
    Sample {
        user: u,
        events,
        hashes,
        custody,
        rotated,
        device,
    }
}

pub fn verify_wires(user: &UserId, wires: &[Vec<u8>]) -> Result<ChainSummary, ChainError> {
    let mut v = ChainVerifier::new(user.clone()).with_batch_size(4);
    for w in wires {
        v.push_wire(w)?;
    }
    v.finish()
}

/// A proof bundle for event `seq` of the sample chain, anchored in epoch 7 together with
/// the checkpoints of `others` more users.
pub fn sample_bundle(seq: u64, others: u8) -> ProofBundle {
    let s = sample_chain();
    let tree = MerkleTree::from_leaf_hashes(
        merkle::CHAIN_TREE,
        s.hashes
            .iter()
            .map(|h| merkle::CHAIN_TREE.leaf(&h.0))
            .collect(),
    );
    let checkpoint = Checkpoint {
        user: s.user.clone(),
        seq: Seq(12),
        head: s.hashes[11],
        root: tree.root(),
    };
    let mut cps = vec![checkpoint.clone()];
    for i in 0..others {
        cps.push(Checkpoint {
            user: user(&format!("other{i}")),
            seq: Seq(u64::from(i) + 1),
            head: Hash32([i; 32]),
            root: Hash32([i ^ 0x55; 32]),
        });
    }
    let epoch = EpochTree::build(7, cps).unwrap();
    let ep = epoch.proof(&s.user).unwrap();
    let event = s.events[(seq - 1) as usize].clone();
    let origin_key = event.origin.map(|_| pk(&s.device));
    let signer_key = if seq >= 11 {
        pk(&s.rotated)
    } else {
        pk(&s.custody)
    };
    ProofBundle {
        event,
        signer_key,
        origin_key,
        inclusion: tree.inclusion_proof(seq - 1).unwrap(),
        checkpoint,
        anchor: Some(AnchorReceipt {
            chain_id: 23293,
            contract: Address([0xaa; 20]),
            tx_hash: Hash32([0xbb; 32]),
            block_number: 42,
            block_hash: Hash32([0xcc; 32]),
            epoch: 7,
            root: ep.root,
            leaf_count: epoch.leaf_count(),
            prev_root: Hash32([0xdd; 32]),
        }),
        epoch: Some(ep),
    }
}

/// Each case of a vectors file's `invalid` list (`{name, wires, error: {code, seq}}`) fails
/// as it says: with its code, at its seq.
pub fn check_invalid_cases(user: &UserId, cases: &serde_json::Value) {
    for case in cases.as_array().expect("a list of cases") {
        let w: Vec<Vec<u8>> = case["wires"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| ::hex::decode(x.as_str().unwrap()).unwrap())
            .collect();
        let e = verify_wires(user, &w).expect_err(case["name"].as_str().unwrap());
        assert_eq!(e.code(), case["error"]["code"], "{}", case["name"]);
        assert_eq!(e.seq().map(|s| s.0), case["error"]["seq"].as_u64());
    }
}

/// `testdata/<name>` holds exactly `fresh` (`MNEMO_UPDATE_VECTORS=1` rewrites it first,
/// after an intended format change).
pub fn matches_checked_in(name: &str, fresh: &str) {
    let path = format!("{}/../testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("MNEMO_UPDATE_VECTORS").is_some() {
        std::fs::write(&path, fresh).unwrap();
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("testdata/{name} (MNEMO_UPDATE_VECTORS=1 writes it)"));
    assert!(stored == fresh, "testdata/{name} differs");
}
