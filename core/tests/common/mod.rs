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

/// 12 events: genesis, device key, 3 memories (one with an origin signature), grant,
/// access, revoke, erase, rotation, memory signed by the new key, revoke device key.
pub fn sample_chain() -> Sample {
    let u = user("alice");
    let custody = key(1);
    let rotated = key(2);
    let device = key(3);
    let mut head = Head::empty(u.clone());
    let mut events = Vec::new();
    let mut hashes = Vec::new();
    let mut ts = 1_764_115_200_000i64;
    let mut push = |head: &mut Head,
                    k: &SigningKey,
                    body: EventBody,
                    payload: Option<Hash32>,
                    origin: Option<Origin>| {
        ts += 1000;
        let (e, h) = head.next_event(k, TimestampMs(ts), body, payload, origin);
        head.advance(&e, h);
        events.push(e);
        hashes.push(h);
    };
    push(&mut head, &custody, EventBody::KeyAdded { key: pk(&custody), role: KeyRole::Custody }, None, None);
    push(&mut head, &custody, EventBody::KeyAdded { key: pk(&device), role: KeyRole::Device }, None, None);
    for i in 1..=3u8 {
        let c = commitment::commit(&[i; 32], format!("memory number {i}").as_bytes());
        let origin = (i == 2).then(|| Origin {
            key: pk(&device).id(),
            signature: keys::sign_origin(&device, &u, &c),
        });
        push(&mut head, &custody, EventBody::MemoryIngested { memory: mem(i) }, Some(c), origin);
    }
    let grant = GrantId([9; 16]);
    push(
        &mut head,
        &custody,
        EventBody::GrantCreated {
            grant,
            grantee: user("bob"),
            capabilities: Capabilities { metadata: true, content: true },
            conditions: GrantConditions {
                tags: vec!["work".into()],
                kinds: vec![],
                from: None,
                until: Some(TimestampMs(1_800_000_000_000)),
                memories: vec![],
            },
            expires_at: Some(TimestampMs(1_800_000_000_000)),
        },
        None,
        None,
    );
    push(
        &mut head,
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
    push(&mut head, &custody, EventBody::GrantRevoked { grant }, None, None);
    push(&mut head, &custody, EventBody::MemoryErased { target: ErasureTarget::Memory(mem(1)) }, None, None);
    push(&mut head, &custody, EventBody::KeyRotated { old: pk(&custody).id(), new: pk(&rotated) }, None, None);
    let c = commitment::commit(&[4; 32], b"after rotation");
    push(&mut head, &rotated, EventBody::MemoryIngested { memory: mem(4) }, Some(c), None);
    push(&mut head, &rotated, EventBody::KeyRevoked { key: pk(&device).id() }, None, None);
    Sample { user: u, events, hashes, custody, rotated, device }
}

pub fn verify_wires(user: &UserId, wires: &[Vec<u8>]) -> Result<ChainSummary, ChainError> {
    let mut v = ChainVerifier::new(user.clone()).with_batch_size(4);
    for w in wires {
        v.push_wire(w)?;
    }
    v.finish()
}
