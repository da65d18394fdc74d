//! The whole custody path, end to end: a memory is ingested by the ledger, projected into
//! PostgreSQL and the KV heads, its user's checkpoint is anchored on an EVM chain, and a
//! proof bundle for it, serialised to JSON and read back as a third party would, verifies
//! offline and against the chain. Then the memory is erased: the chain still verifies and
//! the bundle still proves custody, while the content is gone everywhere.

use bytes::Bytes;
use mnemo_anchor::{AnchorerConfig, verify_on_chain};
use mnemo_core::{ErasureTarget, ProofBundle, ProofLevel, Seq, UserId};
use mnemo_ledger::{LedgerError, NewMemory};
use mnemo_testkit::Stack;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_project_anchor_prove_erase() {
    let s = Stack::builder().anvil().start().await;
    let (ledger, pool) = (&s.ledger, &s.pool);
    let alice = UserId::new("alice").unwrap();
    let bob = UserId::new("bob").unwrap();
    for u in [&alice, &bob] {
        ledger.create_user(u).await.unwrap();
    }
    let secret = "the garage code is 4711";
    let r = ledger
        .append(
            &alice,
            NewMemory {
                kind: "note".into(),
                tags: vec!["home".into()],
                content_type: "text/plain".into(),
                content: Bytes::from(secret),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ledger
        .append(
            &bob,
            NewMemory {
                kind: "note".into(),
                content_type: "text/plain".into(),
                content: Bytes::from_static(b"bob's"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // projected: searchable, and the heads view matches the ledger
    s.caught_up(&[alice.clone(), bob.clone()]).await;
    s.no_lag(Duration::from_secs(30)).await;
    let hits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memories WHERE search @@ plainto_tsquery('simple', 'garage')",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(hits, 1);

    // anchored
    let anchorer = s.anchorer(AnchorerConfig::default()).await;
    let epoch = anchorer.run_epoch().await.unwrap().unwrap();
    assert_eq!(epoch.leaf_count, 2);

    // a proof bundle, as JSON, verified as a third party would
    let ep = anchorer.epoch_proof(1, &alice).await.unwrap().unwrap();
    let events = ledger.events(&alice, Seq::FIRST, 10).await.unwrap();
    let hashes: Vec<_> = events.iter().map(|e| e.hash).collect();
    let (bundle, level) = ProofBundle::assemble(
        events[(r.seq.0 - 1) as usize].event.clone(),
        ledger.public_key(),
        None,
        &hashes,
        [(ep, epoch.receipt.clone().unwrap())],
    )
    .unwrap();
    assert_eq!(level, ProofLevel::Anchored);
    let json = serde_json::to_string_pretty(&bundle).unwrap();
    assert!(
        !json.contains("garage"),
        "a proof bundle carries no plaintext"
    );
    let read: ProofBundle = serde_json::from_str(&json).unwrap();
    assert_eq!(read.verify(), Ok(ProofLevel::Anchored));
    verify_on_chain(
        anchorer.chain().provider(),
        read.anchor.as_ref().unwrap(),
        1,
    )
    .await
    .unwrap();

    // erased: gone from the ledger and the views; custody still provable
    ledger
        .erase(&alice, ErasureTarget::Memory(r.memory.unwrap()))
        .await
        .unwrap();
    let stored = ledger
        .find_memory(&alice, &r.memory.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        ledger.open_memory(&stored).await,
        Err(LedgerError::Erased(_))
    ));
    let t = Instant::now();
    loop {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM memories WHERE user_id = 'alice'")
                .fetch_one(pool)
                .await
                .unwrap();
        if body.is_none() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "erasure did not reach the view"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ledger.verify_chain(&alice).await.unwrap();
    assert_eq!(
        read.verify(),
        Ok(ProofLevel::Anchored),
        "custody of the erased memory stays provable"
    );
    let epoch2 = anchorer.run_epoch().await.unwrap().unwrap();
    assert_eq!(epoch2.prev_root, epoch.root, "anchors form a chain");
}
