//! The anchor service against real anvil, nats-server (and PostgreSQL for the view).

use mnemo_anchor::{Anchorer, AnchorerConfig, Chain, OnChainError, verify_on_chain};
use mnemo_core::{Hash32, MerkleTree, ProofBundle, ProofLevel, Seq, UserId, merkle::CHAIN_TREE};
use mnemo_ledger::Layout;
use mnemo_testkit::{DEV_KEY, Stack, note};
use std::time::{Duration, Instant};

async fn stack() -> Stack {
    Stack::builder()
        .layout(Layout::Sharded { shards: 4 })
        .rescan(Duration::from_millis(200))
        .anvil()
        .start()
        .await
}

async fn anchorer(s: &Stack, holder: &str) -> Anchorer {
    s.anchorer(AnchorerConfig {
        holder: holder.into(),
        ..Default::default()
    })
    .await
}

/// A stack without the projector, its anchorer, and the heads bucket the anchorer reads,
/// for tests that write heads as the projector would.
async fn heads_only_stack() -> (Stack, Anchorer, async_nats::jetstream::kv::Store) {
    let s = Stack::builder()
        .layout(Layout::Sharded { shards: 4 })
        .without_projector()
        .anvil()
        .start()
        .await;
    let a = anchorer(&s, "a").await;
    let heads =
        s.js.create_key_value(async_nats::jetstream::kv::Config {
            bucket: mnemo_core::names::HEADS_BUCKET.into(),
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    (s, a, heads)
}

/// A proof bundle for the event at the user's checkpoint in `epoch`, checked offline and
/// against the chain.
async fn check_user(s: &Stack, a: &Anchorer, epoch: u64, u: &UserId) {
    let rec = a.epoch(epoch).await.unwrap().unwrap();
    let receipt = rec.receipt.clone().unwrap();
    let ep = a.epoch_proof(epoch, u).await.unwrap().unwrap();
    let cp = ep.checkpoint.clone();
    let events = s
        .ledger
        .events(u, Seq::FIRST, cp.seq.0 as usize)
        .await
        .unwrap();
    let tree = MerkleTree::from_leaf_hashes(
        CHAIN_TREE,
        events.iter().map(|e| CHAIN_TREE.leaf(&e.hash.0)).collect(),
    );
    assert_eq!(
        tree.root(),
        cp.root,
        "{u}: the anchored checkpoint matches the chain"
    );
    // prove the newest event the epoch covers
    let hashes: Vec<_> = events.iter().map(|e| e.hash).collect();
    let (bundle, _) = ProofBundle::assemble(
        events.last().unwrap().event.clone(),
        s.ledger.public_key(),
        None,
        &hashes,
        [(ep, receipt.clone())],
    )
    .unwrap();
    assert_eq!(
        bundle.verify(),
        Ok(ProofLevel::Anchored),
        "{u} in epoch {epoch}"
    );
    verify_on_chain(a.chain().provider(), &receipt, 1)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_epochs_over_200_users_every_bundle_verifies_against_the_chain() {
    let s = stack().await;
    let a = anchorer(&s, "a").await;
    let users: Vec<UserId> = (0..200)
        .map(|i| UserId::new(format!("a{i}")).unwrap())
        .collect();
    for u in &users {
        s.ledger.create_user(u).await.unwrap();
        s.ledger.append(u, note(0)).await.unwrap();
    }
    for epoch in 1..=3u64 {
        s.caught_up(&users).await;
        let rec = a.run_epoch().await.unwrap().expect("chains changed");
        // The epoch log: every user in epoch 1, then only the 50 users who wrote since.
        assert_eq!(
            (rec.epoch, rec.leaf_count, rec.tree),
            (epoch, 200 + 50 * (epoch - 1), 2)
        );
        // nothing changed: nothing submitted
        assert!(a.run_epoch().await.unwrap().is_none());
        for u in &users {
            check_user(&s, &a, epoch, u).await;
        }
        // some users write more before the next epoch
        for (i, u) in users
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == epoch as usize % 4)
        {
            s.ledger.append(u, note(i)).await.unwrap();
        }
    }
    let (on_chain, root) = a.chain().last().await.unwrap();
    assert_eq!((on_chain, root), (3, a.last().await.unwrap().unwrap().root));
    for e in 1..=3 {
        assert_eq!(
            a.chain().find(e).await.unwrap().len(),
            1,
            "one transaction per epoch"
        );
    }
    let recorded = a.reader().epochs().await.unwrap();
    assert_eq!(
        recorded.iter().filter(|r| r.receipt.is_some()).count(),
        3,
        "receipts recorded in MNEMO-ANCHORS' records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_that_drops_the_anchor_is_detected_and_reanchored() {
    use alloy::providers::Provider;
    let s = stack().await;
    let a = anchorer(&s, "a").await;
    let users: Vec<UserId> = (0..5)
        .map(|i| UserId::new(format!("r{i}")).unwrap())
        .collect();
    for u in &users {
        s.ledger.create_user(u).await.unwrap();
    }
    s.caught_up(&users).await;
    let first = a.run_epoch().await.unwrap().unwrap().receipt.unwrap();
    // drop the anchor's block (and its transaction) from the canonical chain
    let _: serde_json::Value = a
        .chain()
        .provider()
        .raw_request(
            "anvil_reorg".into(),
            (1u64, Vec::<serde_json::Value>::new()),
        )
        .await
        .unwrap();
    let gone = verify_on_chain(a.chain().provider(), &first, 1).await;
    assert!(
        matches!(gone, Err(OnChainError::Reorged | OnChainError::Transaction)),
        "{gone:?}"
    );
    assert_eq!(a.check_reorgs().await.unwrap(), 1, "detected");
    let again = a.epoch(1).await.unwrap().unwrap().receipt.unwrap();
    assert_ne!(again.block_hash, first.block_hash);
    assert_eq!(again.root, first.root);
    verify_on_chain(a.chain().provider(), &again, 1)
        .await
        .unwrap();
    assert_eq!(a.chain().find(1).await.unwrap().len(), 1);
    assert_eq!(a.check_reorgs().await.unwrap(), 0, "nothing more to do");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_killed_during_an_epoch_then_the_epoch_completes_once() {
    let mut s = stack().await;
    let a = anchorer(&s, "a").await;
    let users: Vec<UserId> = (0..5)
        .map(|i| UserId::new(format!("k{i}")).unwrap())
        .collect();
    for u in &users {
        s.ledger.create_user(u).await.unwrap();
    }
    s.caught_up(&users).await;
    a.run_epoch().await.unwrap().unwrap();
    s.ledger.append(&users[0], note(1)).await.unwrap();
    s.caught_up(&users).await;
    // let the node persist what it has, then kill it while epoch 2 is on its way
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let a = std::sync::Arc::new(a);
    let task = {
        let a = a.clone();
        tokio::spawn(async move { a.run_epoch().await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.anvil.as_mut().unwrap().kill();
    let first_try = task.await.unwrap();
    s.anvil.as_mut().unwrap().restart();
    let rec = match first_try {
        Ok(Some(r)) => r,
        _ => {
            // retried as the loop would, until it goes through
            let t = Instant::now();
            loop {
                match a.run_epoch().await {
                    Ok(Some(r)) => break r,
                    Ok(None) => panic!("epoch 2 lost"),
                    Err(e) => {
                        assert!(t.elapsed() < Duration::from_secs(30), "{e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    };
    assert_eq!(rec.epoch, 2);
    // the node may have lost the last second (and with it the anchor): reorg check fixes it
    a.check_reorgs().await.unwrap();
    assert_eq!(
        a.chain().find(2).await.unwrap().len(),
        1,
        "exactly one anchor for epoch 2"
    );
    assert_eq!(a.chain().last().await.unwrap().0, 2);
    verify_on_chain(
        a.chain().provider(),
        &a.epoch(2).await.unwrap().unwrap().receipt.unwrap(),
        1,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_receipts_fail_verification() {
    let s = stack().await;
    let a = anchorer(&s, "a").await;
    let u = UserId::new("forge").unwrap();
    s.ledger.create_user(&u).await.unwrap();
    s.caught_up(std::slice::from_ref(&u)).await;
    let good = a.run_epoch().await.unwrap().unwrap().receipt.unwrap();
    let p = a.chain().provider();
    verify_on_chain(p, &good, 1).await.unwrap();
    let mut r = good.clone();
    r.root = Hash32([9; 32]);
    assert_eq!(
        verify_on_chain(p, &r, 1).await,
        Err(OnChainError::NoLog),
        "wrong root"
    );
    let other = Chain::deploy(&s.anvil_url(), DEV_KEY).await.unwrap();
    let mut r = good.clone();
    r.contract = other;
    assert_eq!(
        verify_on_chain(p, &r, 1).await,
        Err(OnChainError::NoLog),
        "wrong contract"
    );
    let mut r = good.clone();
    r.block_hash = Hash32([7; 32]);
    assert_eq!(
        verify_on_chain(p, &r, 1).await,
        Err(OnChainError::Reorged),
        "wrong block hash"
    );
    let mut r = good.clone();
    r.chain_id = 1;
    assert!(matches!(
        verify_on_chain(p, &r, 1).await,
        Err(OnChainError::ChainId { .. })
    ));
    // and offline, a receipt for another root does not complete a bundle
    let ep = a.epoch_proof(1, &u).await.unwrap().unwrap();
    let events = s.ledger.events(&u, Seq::FIRST, 1).await.unwrap();
    let tree = MerkleTree::from_leaf_hashes(CHAIN_TREE, vec![CHAIN_TREE.leaf(&events[0].hash.0)]);
    let mut forged = good.clone();
    forged.root = Hash32([9; 32]);
    let b = ProofBundle {
        event: events[0].event.clone(),
        signer_key: s.ledger.public_key(),
        origin_key: None,
        inclusion: tree.inclusion_proof(0).unwrap(),
        checkpoint: ep.checkpoint.clone(),
        epoch: Some(ep),
        anchor: Some(forged),
    };
    assert!(b.verify().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_anchorer_at_a_time_and_a_dead_one_hands_over() {
    let s = stack().await;
    let contract = s.contract.unwrap();
    let mk = |holder: &str| {
        let (url, js, holder) = (s.anvil_url(), s.js.clone(), holder.to_string());
        async move {
            let chain = Chain::connect(&url, DEV_KEY, contract, 1).await.unwrap();
            Anchorer::new(
                js,
                chain,
                AnchorerConfig {
                    holder,
                    lease_ttl: Duration::from_millis(800),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let a = mk("a").await;
    let b = mk("b").await;
    assert!(a.lease().await.unwrap());
    assert!(
        !b.lease().await.unwrap(),
        "b must wait while a holds the lease"
    );
    assert!(a.lease().await.unwrap(), "a renews");
    // a dies (stops renewing): b takes over after the lease expires
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(b.lease().await.unwrap());
    assert!(!a.lease().await.unwrap(), "a, back, finds b in charge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfunded_anchor_account_is_a_loud_error_and_a_metric_and_nothing_is_lost() {
    use alloy::providers::Provider;
    let s = stack().await;
    let a = anchorer(&s, "a").await;
    let u = UserId::new("poor").unwrap();
    s.ledger.create_user(&u).await.unwrap();
    s.caught_up(std::slice::from_ref(&u)).await;
    // drain the owner account
    let owner = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let _: serde_json::Value = a
        .chain()
        .provider()
        .raw_request("anvil_setBalance".into(), (owner, "0x0"))
        .await
        .unwrap();
    let err = a.run_epoch().await.unwrap_err();
    assert!(
        matches!(err, mnemo_anchor::AnchorError::InsufficientFunds(_)),
        "{err}"
    );
    assert_eq!(
        a.stats()
            .insufficient_funds
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(
        a.last().await.unwrap().is_none(),
        "nothing recorded as anchored"
    );
    // funded again, the same (pending) epoch goes through
    let _: serde_json::Value = a
        .chain()
        .provider()
        .raw_request("anvil_setBalance".into(), (owner, "0x56BC75E2D63100000"))
        .await
        .unwrap();
    let rec = a.run_epoch().await.unwrap().unwrap();
    assert_eq!(rec.epoch, 1);
    verify_on_chain(a.chain().provider(), rec.receipt.as_ref().unwrap(), 1)
        .await
        .unwrap();
}

/// A server 1,000 epochs old: each epoch's log grew by the one user whose head moved;
/// 16 concurrent proofs (of one user's leaves in random epochs, and a busy user's whole
/// anchor list) read O(log leaves) nodes each and open no consumer: the server's consumer
/// count stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_in_a_thousand_epochs_open_no_consumer() {
    use futures::StreamExt;
    const EPOCHS: u64 = 1000;
    let (s, a, heads) = heads_only_stack().await;
    // Heads written as the projector writes them (the anchorer reads only these).
    let head = |seq: u64| {
        serde_json::to_vec(&serde_json::json!({
            "seq": seq,
            "hash": Hash32([seq as u8; 32]),
            "root": Hash32([(seq >> 8) as u8; 32]),
        }))
        .unwrap()
    };
    for u in 0..8 {
        heads.put(format!("u{u}"), head(1).into()).await.unwrap();
    }
    for e in 1..=EPOCHS {
        if e > 1 {
            heads
                .put(format!("u{}", e % 8), head(e).into())
                .await
                .unwrap();
        }
        let rec = a.run_epoch().await.unwrap().expect("a head moved");
        assert_eq!(rec.epoch, e);
    }
    let last = a.last().await.unwrap().unwrap();
    assert_eq!(last.leaf_count, 8 + EPOCHS - 1, "one leaf per change");
    let reader = mnemo_anchor::AnchorReader::open(&s.js)
        .await
        .unwrap()
        .unwrap();
    let before = s.js.query_account().await.unwrap().consumers;
    assert!(
        before <= 2,
        "{before} consumers after {EPOCHS} epochs: one per epoch?"
    );
    let consumers = mnemo_testkit::ConsumerPeak::start(s.js.clone());
    let asks: Vec<(u64, UserId)> = (0..16u64)
        .map(|i| {
            (
                1 + (i * 397) % EPOCHS,
                UserId::new(format!("u{}", i % 8)).unwrap(),
            )
        })
        .collect();
    let proofs: Vec<_> = futures::stream::iter(asks)
        .map(|(e, u)| {
            let r = reader.clone();
            async move {
                (
                    e,
                    r.epoch_proof(e, &u).await.unwrap(),
                    r.anchors_for(&u).await.unwrap(),
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let peak = consumers.peak().await;
    for (e, p, anchors) in &proofs {
        let p = p.as_ref().expect("every user is in every epoch");
        p.verify().unwrap();
        assert_eq!(p.epoch, *e);
        // O(log leaves) nodes: the path of a tree of at most 1,007 leaves.
        assert!(p.inclusion.path.len() <= 11, "{}", p.inclusion.path.len());
        assert!(!anchors.is_empty() && anchors.len() <= 16);
        for (ap, r) in anchors {
            ap.verify().unwrap();
            assert_eq!((r.root, r.epoch), (ap.root, ap.epoch));
        }
    }
    println!(
        "consumers: {before} before, {peak} at the peak of 16 concurrent proofs in {EPOCHS} epochs"
    );
    assert_eq!(peak.max(before), before, "proofs opened consumers");

    // What an epoch stores per changed user: 2,000 heads move, one epoch appends them.
    let stored = async || {
        let mut out = [0u64; 2];
        for (i, name) in [
            mnemo_core::names::kv_stream(mnemo_core::names::EPOCH_LOG_BUCKET),
            mnemo_core::names::object_stream(mnemo_core::names::EPOCHS_BUCKET),
        ]
        .iter()
        .enumerate()
        {
            let mut st = s.js.get_stream(name).await.unwrap();
            out[i] = st.info().await.unwrap().state.bytes;
        }
        out
    };
    let bytes_before = stored().await;
    for u in 0..2000 {
        heads.put(format!("m{u}"), head(7).into()).await.unwrap();
    }
    let t = std::time::Instant::now();
    let rec = a.run_epoch().await.unwrap().unwrap();
    let took = t.elapsed();
    let after = stored().await;
    let (log, obj) = (
        (after[0] - bytes_before[0]) / 2000,
        (after[1] - bytes_before[1]) / 2000,
    );
    println!(
        "epoch {}: 2,000 changed users appended in {took:?} (debug build, with the anchor transaction), {} bytes stored per changed user ({log} in the log's nodes and leaves, {obj} in the epoch's object), {} leaves",
        rec.epoch,
        log + obj,
        rec.leaf_count
    );
    let p = a
        .epoch_proof(rec.epoch, &UserId::new("m1999").unwrap())
        .await
        .unwrap()
        .unwrap();
    p.verify().unwrap();
}

/// An epoch log stored by version 1 (one JSON entry per node and per leaf) is rewritten as
/// version 2 (tiles and user records) by the anchorer's next epoch: every earlier proof
/// comes out the same, the old entries are gone, and the log goes on growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_one_epoch_log_is_upgraded_and_proves_the_same() {
    use futures::TryStreamExt;
    use mnemo_core::names::{ANCHOR_STATE_BUCKET, EPOCH_LOG_BUCKET};
    let (s, a, heads) = heads_only_stack().await;
    let head = |seq: u64| {
        serde_json::to_vec(&serde_json::json!({
            "seq": seq,
            "hash": Hash32([seq as u8; 32]),
            "root": Hash32([(seq >> 8) as u8 ^ 0x5a; 32]),
        }))
        .unwrap()
    };
    // u0 writes in every epoch (20 leaves: a full chunk and more), u1..u5 once.
    let users: Vec<UserId> = (0..6)
        .map(|i| UserId::new(format!("u{i}")).unwrap())
        .collect();
    for u in &users {
        heads.put(u.as_str(), head(1).into()).await.unwrap();
    }
    const EPOCHS: u64 = 20;
    for e in 1..=EPOCHS {
        if e > 1 {
            heads.put("u0", head(e).into()).await.unwrap();
        }
        a.run_epoch().await.unwrap().expect("a head moved");
    }
    let mut before = Vec::new();
    for e in 1..=EPOCHS {
        for u in &users {
            before.push(a.epoch_proof(e, u).await.unwrap().unwrap());
        }
    }
    let reader = mnemo_anchor::AnchorReader::open(&s.js)
        .await
        .unwrap()
        .unwrap();
    let anchors_before = reader.anchors_for(&users[0]).await.unwrap();
    assert_eq!(anchors_before.len(), 16);

    // Store it as version 1 did, from the documented version-2 records.
    let log = s.js.get_key_value(EPOCH_LOG_BUCKET).await.unwrap();
    let keys: Vec<String> = log.keys().await.unwrap().try_collect().await.unwrap();
    let mut leaves: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for k in &keys {
        let v = log.get(k).await.unwrap().unwrap();
        let parts: Vec<&str> = k.split('.').collect();
        match parts[..] {
            ["t", level, tile] => {
                let tile: u64 = tile.parse().unwrap();
                for (i, h) in v.chunks(32).enumerate() {
                    log.put(
                        format!("n.{level}.{}", tile * 16 + i as u64),
                        h.to_vec().into(),
                    )
                    .await
                    .unwrap();
                }
            }
            ["l", user] => {
                assert_eq!(v[0], 1);
                leaves
                    .entry(user.to_owned())
                    .or_default()
                    .extend(v[9..].chunks(88).map(|c| c.to_vec()));
            }
            ["l", user, _] => {
                // Chunks come before the record in key order, oldest first.
                leaves
                    .entry(user.to_owned())
                    .or_default()
                    .extend(v.chunks(88).map(|c| c.to_vec()));
            }
            _ => panic!("unexpected key {k}"),
        }
        log.purge(k).await.unwrap();
    }
    let u64_at = |c: &[u8], i: usize| u64::from_be_bytes(c[i..i + 8].try_into().unwrap());
    for (user, mut ls) in leaves {
        ls.sort_by_key(|c| u64_at(c, 0));
        for (k, c) in ls.iter().enumerate() {
            let leaf = serde_json::json!({
                "leaf": u64_at(c, 0),
                "epoch": u64_at(c, 8),
                "checkpoint": {
                    "user": user,
                    "seq": u64_at(c, 16),
                    "head": Hash32(c[24..56].try_into().unwrap()),
                    "root": Hash32(c[56..88].try_into().unwrap()),
                },
            });
            log.put(
                format!("u.{user}.{k}"),
                serde_json::to_vec(&leaf).unwrap().into(),
            )
            .await
            .unwrap();
        }
        log.put(format!("u.{user}"), ls.len().to_string().into())
            .await
            .unwrap();
    }
    let state = s.js.get_key_value(ANCHOR_STATE_BUCKET).await.unwrap();
    let mut rec: serde_json::Value =
        serde_json::from_slice(&state.get("log").await.unwrap().unwrap()).unwrap();
    rec.as_object_mut().unwrap().remove("store");
    state
        .put("log", serde_json::to_vec(&rec).unwrap().into())
        .await
        .unwrap();

    // The next epoch upgrades the log, then appends.
    heads.put("u3", head(2).into()).await.unwrap();
    let next = a.run_epoch().await.unwrap().expect("u3 moved");
    assert_eq!(next.epoch, EPOCHS + 1);
    let mut after = Vec::new();
    for e in 1..=EPOCHS {
        for u in &users {
            after.push(a.epoch_proof(e, u).await.unwrap().unwrap());
        }
    }
    assert_eq!(before, after, "the upgrade changed a proof");
    assert_eq!(reader.anchors_for(&users[0]).await.unwrap(), anchors_before);
    let p = a.epoch_proof(next.epoch, &users[3]).await.unwrap().unwrap();
    p.verify().unwrap();
    assert_eq!(p.checkpoint.seq, Seq(2));
    let keys: Vec<String> = log.keys().await.unwrap().try_collect().await.unwrap();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("t.") || k.starts_with("l.")),
        "version-1 entries left: {keys:?}"
    );
}
