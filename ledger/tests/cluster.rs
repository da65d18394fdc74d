//! The ledger on a 3-node JetStream cluster with R3 streams, KV and object store: nodes are
//! killed with SIGKILL one at a time, more than once, while 4 writers append; every
//! acknowledged append is in its chain exactly once and every chain verifies.

use bytes::Bytes;
use mnemo_core::{EventBody, SigningKey, UserId};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_testkit::NatsCluster;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

async fn connect_ledger(urls: &[String], layout: Layout) -> Ledger {
    let addrs: Vec<async_nats::ServerAddr> = urls.iter().map(|u| u.parse().unwrap()).collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .unwrap();
    let mut cfg = LedgerConfig::new(
        SecretKey::from_bytes([5; 32]),
        SigningKey::from_bytes(&[6; 32]),
    );
    cfg.layout = layout;
    cfg.replicas = 3;
    // The cluster elects its JetStream meta leader after start: retry until it answers.
    let t = Instant::now();
    loop {
        match Ledger::connect(client.clone(), cfg.clone()).await {
            Ok(l) => return l,
            Err(e) => {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "cluster never ready: {e}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_cluster_node_kills_lose_no_acknowledged_append() {
    let mut cluster = NatsCluster::start(3);
    let ledger = connect_ledger(&cluster.urls(), Layout::Sharded { shards: 4 }).await;
    let users: Vec<UserId> = (0..12)
        .map(|i| UserId::new(format!("c{i}")).unwrap())
        .collect();
    for u in &users {
        loop {
            match ledger.create_user(u).await {
                Ok(_) => break,
                Err(mnemo_ledger::LedgerError::UserExists(_)) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (retried, acked) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (ledger, users, stop) = (ledger.clone(), users.clone(), stop.clone());
        let (retried, acked) = (retried.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let user = &users[(w * 3 + i) % users.len()];
                let key = format!("w{w}-{i}");
                // A client retries an unacknowledged request with the same idempotency key
                // until it gets a receipt: the key makes the retry safe.
                let t = Instant::now();
                let r = loop {
                    let m = NewMemory {
                        kind: "note".into(),
                        content_type: "text/plain".into(),
                        content: Bytes::from(key.clone()),
                        idempotency_key: Some(key.clone()),
                        ..Default::default()
                    };
                    match ledger.append(user, m).await {
                        Ok(r) => break r,
                        Err(e) => {
                            retried.fetch_add(1, Ordering::Relaxed);
                            assert!(
                                t.elapsed() < Duration::from_secs(60),
                                "append {key} never acknowledged: {e}"
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                };
                acked.fetch_add(1, Ordering::Relaxed);
                receipts.push((user.clone(), r.seq, r.memory.unwrap(), key));
                i += 1;
            }
            receipts
        }));
    }
    // Kill nodes one at a time, more than once, while the writers run.
    for victim in [1usize, 0, 2, 1] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.nodes[victim].kill();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.nodes[victim].restart();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut receipts = Vec::new();
    for w in writers {
        receipts.extend(w.await.unwrap());
    }
    // Every acknowledged append is in its chain exactly once; every chain verifies.
    let mut by_user: HashMap<UserId, Vec<_>> = HashMap::new();
    for (u, seq, m, key) in receipts {
        by_user.entry(u).or_default().push((seq, m, key));
    }
    let mut total = 0;
    for u in &users {
        let mine = by_user.remove(u).unwrap_or_default();
        // Reads are bounded by a direct-get head, which a lagging replica may answer with
        // an older one: wait (briefly) until the replicas caught up with every receipt. Right
        // after the last restart a read may also time out while the stream picks a leader
        // (a retryable NATS error, 503 at the API): retry those within the same window.
        let last = mine.iter().map(|(s, _, _)| s.0 as usize).max().unwrap_or(1);
        let t = Instant::now();
        let events = loop {
            let settled = t.elapsed() > Duration::from_secs(10);
            match ledger.events(u, mnemo_core::Seq::FIRST, usize::MAX).await {
                Ok(events) if events.len() >= last || settled => break events,
                Err(e) if settled || !matches!(e, mnemo_ledger::LedgerError::Nats { .. }) => {
                    panic!("{u}: {e}")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let summary = loop {
            match ledger.verify_chain(u).await {
                Ok(s) => break s,
                Err(e) if !matches!(e, mnemo_ledger::LedgerError::Chain(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => panic!("{u}: {e}"),
            }
        };
        if events.len() != mine.len() + 1 {
            // Say which: events nobody got a receipt for (doubled), receipts without event.
            let receipted: HashMap<_, _> = mine.iter().map(|(s, _, k)| (*s, k.clone())).collect();
            let mut unreceipted = Vec::new();
            for e in events.iter().skip(1) {
                if !receipted.contains_key(&e.event.seq) {
                    let key = ledger
                        .open_memory(e)
                        .await
                        .map(|o| String::from_utf8_lossy(&o.content).into_owned())
                        .unwrap_or_else(|err| format!("<{err}>"));
                    unreceipted.push((e.event.seq.0, e.stream_seq, key));
                }
            }
            let missing: Vec<_> = mine
                .iter()
                .filter(|(s, _, _)| s.0 as usize > events.len())
                .collect();
            panic!(
                "{u}: {} events for {} receipts + genesis; in the chain without a receipt \
                 (seq, stream seq, key): {unreceipted:?}; receipts past the end: {missing:?}",
                events.len(),
                mine.len()
            );
        }
        assert_eq!(summary.checkpoint.unwrap().seq.0 as usize, events.len());
        for (seq, m, key) in &mine {
            let e = &events[(seq.0 - 1) as usize];
            assert!(
                matches!(e.event.body, EventBody::MemoryIngested { memory, .. } if memory == *m),
                "{u}: receipt {key} at seq {seq} is that memory"
            );
        }
        total += mine.len();
    }
    println!(
        "R3 cluster, 4 node kills: {} appends acknowledged, {} attempts retried, 0 lost, 0 doubled",
        acked.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed)
    );
    assert!(total > 100, "enough appends under fire ({total})");
}
