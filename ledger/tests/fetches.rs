//! A processor's fetches of one user under one grant, arriving together, are recorded in
//! fewer `inputs_fetched` events than fetches (ledger/src/ledger/fetch_batches.rs): each
//! fetch gets the receipt of an event that names its memory, one that the rules refuse is
//! refused alone, and the chain verifies.

mod support;

use mnemo_core::{EventBody, GrantConditions, GrantId, MemoryId, ProcessorId, Seq, SigningKey};
use mnemo_ledger::{Layout, LedgerError};
use mnemo_testkit::NatsServer;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_arriving_together_are_recorded_together_and_refused_alone() {
    let server = NatsServer::start();
    let l = connect(&server, cfg(Layout::Sharded { shards: 4 }, 1)).await;
    let u = user("owner");
    l.create_user(&u).await.unwrap();
    let mut memories = Vec::new();
    for i in 0..64 {
        memories.push(
            l.append(&u, note(&format!("m{i}")))
                .await
                .unwrap()
                .memory
                .unwrap(),
        );
    }
    let grant = GrantId([5; 16]);
    l.append_event(
        &u,
        EventBody::ProcessingGranted {
            grant,
            processor: ProcessorId::new("asr").unwrap(),
            version: None,
            key: mnemo_core::PublicKey(SigningKey::from_bytes(&[8; 32]).verifying_key()),
            conditions: GrantConditions::default(),
            expires_at: None,
        },
        None,
    )
    .await
    .unwrap();
    let before = l.head(&u).await.unwrap().unwrap().len;
    // 64 fetches at once, and one of a memory the chain does not hold.
    let unknown = MemoryId([0xee; 16]);
    let fetch = |m: MemoryId| {
        let l = l.clone();
        let u = u.clone();
        tokio::spawn(async move { (m, l.record_fetch(&u, grant, vec![m]).await) })
    };
    let tasks: Vec<_> = memories
        .iter()
        .copied()
        .chain([unknown])
        .map(fetch)
        .collect();
    let mut seqs = std::collections::HashSet::new();
    for t in tasks {
        let (m, r) = t.await.unwrap();
        if m == unknown {
            assert!(matches!(r, Err(LedgerError::Refused(_))), "{r:?}");
            continue;
        }
        let r = r.unwrap_or_else(|e| panic!("fetch of {m}: {e}"));
        let e = l.events(&u, r.seq, 1).await.unwrap().pop().unwrap();
        match &e.event.body {
            EventBody::InputsFetched { grant: g, memories } => {
                assert_eq!(*g, grant);
                assert!(
                    memories.contains(&m),
                    "the receipt's event names the memory"
                );
            }
            other => panic!("{other:?}"),
        }
        seqs.insert(r.seq);
    }
    let after = l.head(&u).await.unwrap().unwrap().len;
    assert_eq!(
        after - before,
        seqs.len() as u64,
        "only the events the receipts name"
    );
    assert!(
        seqs.len() < 64,
        "64 fetches arriving together made {} events",
        seqs.len()
    );
    println!("64 concurrent fetches recorded in {} events", seqs.len());
    // Every memory is named by some event, once or more.
    let fetched: std::collections::HashSet<MemoryId> = l
        .events(&u, Seq(before + 1), usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|e| match &e.event.body {
            EventBody::InputsFetched { memories, .. } => memories.clone(),
            _ => vec![],
        })
        .collect();
    assert!(memories.iter().all(|m| fetched.contains(m)));
    assert!(!fetched.contains(&unknown));
    l.verify_chain(&u).await.unwrap();
}
