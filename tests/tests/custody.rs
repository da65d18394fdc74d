//! The whole custody path, end to end: a memory is ingested by the ledger, projected into
//! PostgreSQL and the KV heads, its user's checkpoint is anchored on an EVM chain, and a
//! proof bundle for it, serialised to JSON and read back as a third party would, verifies
//! offline and against the chain. Then the memory is erased: the chain still verifies and
//! the bundle still proves custody, while the content is gone everywhere.

use bytes::Bytes;
use mnemo_anchor::{Anchorer, AnchorerConfig, Chain, verify_on_chain};
use mnemo_core::{
    ErasureTarget, MerkleTree, ProofBundle, ProofLevel, Seq, SigningKey, UserId, merkle::CHAIN_TREE,
};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, LedgerError, NewMemory, SecretKey};
use mnemo_projections::{Projector, ProjectorConfig, kv_head, lag};
use mnemo_testkit::{Anvil, DEV_KEY, NatsServer, PgServer};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_project_anchor_prove_erase() {
    let nats = NatsServer::start();
    let pg = PgServer::start();
    let anvil = Anvil::start();
    pg.create_database("mnemo");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&pg.url("mnemo"))
        .await
        .unwrap();
    mnemo_projections::migrate(&pool).await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut cfg = LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[8; 32]));
    cfg.layout = Layout::PerUser;
    let ledger = Ledger::connect(client, cfg).await.unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(
        Projector::new(
            js.clone(),
            ledger.clone(),
            pool.clone(),
            ProjectorConfig {
                rescan: Duration::from_millis(200),
                ..Default::default()
            },
        )
        .run(rx),
    );

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
    let t = Instant::now();
    loop {
        let caught_up = lag(&js, &pool, "pg").await.unwrap() == 0;
        let head = kv_head(&js, &alice).await.unwrap();
        if caught_up
            && head.is_some_and(|h| h.seq == 2)
            && kv_head(&js, &bob).await.unwrap().is_some()
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "projection did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memories WHERE search @@ plainto_tsquery('simple', 'garage')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(hits, 1);

    // anchored
    let contract = Chain::deploy(&anvil.url(), DEV_KEY).await.unwrap();
    let chain = Chain::connect(&anvil.url(), DEV_KEY, contract, 1)
        .await
        .unwrap();
    let anchorer = Anchorer::new(js.clone(), chain, AnchorerConfig::default())
        .await
        .unwrap();
    let epoch = anchorer.run_epoch().await.unwrap().unwrap();
    assert_eq!(epoch.leaf_count, 2);

    // a proof bundle, as JSON, verified as a third party would
    let ep = anchorer.epoch_proof(1, &alice).await.unwrap().unwrap();
    let events = ledger.events(&alice, Seq::FIRST, 10).await.unwrap();
    let tree = MerkleTree::from_leaf_hashes(
        CHAIN_TREE,
        events.iter().map(|e| CHAIN_TREE.leaf(&e.hash.0)).collect(),
    );
    let bundle = ProofBundle {
        event: events[(r.seq.0 - 1) as usize].event.clone(),
        signer_key: ledger.public_key(),
        origin_key: None,
        inclusion: tree.inclusion_proof(r.seq.0 - 1).unwrap(),
        checkpoint: ep.checkpoint.clone(),
        epoch: Some(ep),
        anchor: epoch.receipt.clone(),
    };
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
                .fetch_one(&pool)
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
