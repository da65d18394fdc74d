//! Bounded per-user state in the ledger (issue 39): eviction under a budget, rules
//! snapshots that are checked and never trusted, compact capture marks, and loads that open
//! no consumer per user. Run once per layout, as the ledger's own suite.

mod support;

use mnemo_core::{ErasureTarget, EventBody, Seq, UserId};
use mnemo_ledger::{Layout, LedgerError, NewMemory, Receipt};
use mnemo_testkit::NatsServer;
use support::*;

macro_rules! suite {
    ($name:ident, $layout:expr) => {
        mod $name {
            use super::*;

            /// With room for 2 users in memory, 12 users interleaved get exactly the decisions
            /// a ledger that keeps everyone resident gives (grants, accesses, revocations,
            /// unknown memories, erasures); the state is reloaded from the chain, and every
            /// chain verifies. Memory stays within the budget.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn evicted_users_reload_to_the_same_decisions() {
                use mnemo_core::{AccessAction, Capabilities, GrantId};
                let server = NatsServer::start();
                let mut tiny = cfg($layout, 1);
                tiny.max_resident_users = 2;
                let small = connect(&server, tiny).await;
                let big = connect(&server, cfg($layout, 1)).await;
                let reader = user("reader");
                let users: Vec<UserId> = (0..12).map(|i| user(&format!("evict{i}"))).collect();
                // Each step on every user in turn, so that no user stays resident between
                // its own steps; each ledger writes its own half of the users.
                let outcome = |r: Result<Receipt, LedgerError>| match r {
                    Ok(_) => "ok".to_owned(),
                    Err(LedgerError::Refused(e)) => e.code().to_owned(),
                    Err(e) => format!("{e:?}"),
                };
                let mut decisions: Vec<Vec<String>> = vec![Vec::new(); users.len()];
                let mut memories = Vec::new();
                for (i, u) in users.iter().enumerate() {
                    let l = if i % 2 == 0 { &small } else { &big };
                    l.create_user(u).await.unwrap();
                    memories.push(l.append(u, note("m")).await.unwrap().memory.unwrap());
                }
                let grant = GrantId([7; 16]);
                let access = |m| EventBody::AccessRecorded {
                    accessor: reader.clone(),
                    grant,
                    action: AccessAction::ReadContent,
                    memories: vec![m],
                };
                let steps: Vec<Box<dyn Fn(mnemo_core::MemoryId) -> EventBody>> = vec![
                    Box::new(|m| access(m)),
                    Box::new(|_| EventBody::GrantCreated {
                        grant,
                        grantee: reader.clone(),
                        capabilities: Capabilities { metadata: true, content: true, ask: false },
                        conditions: Default::default(),
                        expires_at: None,
                        not_before: None,
                    }),
                    Box::new(|m| access(m)),
                    Box::new(|_| access(mnemo_core::MemoryId([1; 16]))),
                    Box::new(|_| EventBody::GrantRevoked { grant }),
                    Box::new(|m| access(m)),
                    Box::new(|_| EventBody::GrantRevoked { grant }),
                ];
                for step in &steps {
                    for (i, u) in users.iter().enumerate() {
                        let l = if i % 2 == 0 { &small } else { &big };
                        decisions[i].push(outcome(l.append_event(u, step(memories[i]), None).await));
                        // Within the budget, but for users whose last write is still settling (a
                        // task holds their slot; they go at the next pass).
                        assert!(small.resident_users() <= 4, "over the budget");
                    }
                }
                for (i, u) in users.iter().enumerate() {
                    let l = if i % 2 == 0 { &small } else { &big };
                    l.erase(u, ErasureTarget::Memory(memories[i])).await.unwrap();
                    decisions[i].push(format!("{:?}", l.erase(u, ErasureTarget::Memory(mnemo_core::MemoryId([2; 16]))).await.err()));
                }
                let want = ["bad_grant", "ok", "ok", "unknown_memory", "ok", "bad_grant", "bad_grant"];
                for (i, d) in decisions.iter().enumerate() {
                    assert_eq!(&d[..want.len()], &want[..], "user {i}");
                    assert_eq!(d, &decisions[1], "user {i} decided otherwise than a resident one");
                    small.verify_chain(&users[i]).await.unwrap();
                }
                assert!(small.stats().evicted_users > 0, "nothing was evicted");
            }

            /// A cold user is loaded from its rules snapshot, and a planted snapshot is never
            /// trusted: a stale one (a valid earlier state) is caught up from the chain, a
            /// forged one (bytes changed, or another user's) is dropped and the state rebuilt;
            /// every decision is the chain's.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn planted_snapshots_are_checked_never_trusted() {
                use mnemo_core::{AccessAction, Capabilities, GrantId};
                let server = NatsServer::start();
                let mut c = cfg($layout, 1);
                c.snapshot_every = 4;
                let a = connect(&server, c.clone()).await;
                let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
                let (u, other, reader) = (user("snap"), user("snapother"), user("reader"));
                let grant = GrantId([9; 16]);
                let mut m = None;
                for who in [&u, &other] {
                    a.create_user(who).await.unwrap();
                    for i in 0..10 {
                        m = a.append(who, note(&format!("m{i}"))).await.unwrap().memory;
                    }
                    a.append_event(who, EventBody::GrantCreated {
                        grant,
                        grantee: reader.clone(),
                        capabilities: Capabilities { metadata: true, content: true, ask: false },
                        conditions: Default::default(),
                        expires_at: None,
                        not_before: None,
                    }, None).await.unwrap();
                }
                let m = m.unwrap();
                let kv = js.get_key_value(mnemo_core::names::SNAPSHOTS_BUCKET).await.unwrap();
                let stored = async |who: &UserId| {
                    for _ in 0..100 {
                        if let Some(v) = kv.get(who.as_str()).await.unwrap() {
                            return v;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    panic!("no snapshot of {who}")
                };
                let early = stored(&u).await;
                let access = |m| EventBody::AccessRecorded {
                    accessor: reader.clone(),
                    grant,
                    action: AccessAction::ReadContent,
                    memories: vec![m],
                };
                let code = |r: Result<Receipt, LedgerError>| match r {
                    Ok(_) => "ok".to_owned(),
                    Err(LedgerError::Refused(e)) => e.code().to_owned(),
                    Err(e) => format!("{e:?}"),
                };
                // The chain moves on: the grant is revoked after the snapshot was taken.
                for i in 0..5 {
                    a.append(&u, note(&format!("later{i}"))).await.unwrap();
                }
                a.append_event(&u, EventBody::GrantRevoked { grant }, None).await.unwrap();
                // Stale: the earlier (genuine) snapshot, put back. A cold ledger catches it
                // up and refuses the access under the revoked grant.
                // A ledger stores a snapshot in the background after a long catch-up: plant
                // once that has settled, so the planted bytes are what the next load finds.
                let plant = async |bytes: bytes::Bytes| {
                    loop {
                        kv.put(u.as_str(), bytes.clone()).await.unwrap();
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        if kv.get(u.as_str()).await.unwrap() == Some(bytes.clone()) {
                            return;
                        }
                    }
                };
                plant(early.clone()).await;
                let b = connect(&server, c.clone()).await;
                assert_eq!(code(b.append_event(&u, access(m), None).await), "bad_grant");
                assert_eq!((b.stats().snapshots_loaded, b.stats().snapshots_dropped), (1, 0));
                // Forged: one byte of the state changed (the tag no longer holds), or another
                // user's genuine snapshot under this user's key. Each is dropped and rebuilt.
                let mut flipped = early.to_vec();
                let at = flipped.len() - 10;
                flipped[at] ^= 1;
                for planted in [bytes::Bytes::from(flipped), stored(&other).await] {
                    plant(planted.clone()).await;
                    let fresh = connect(&server, c.clone()).await;
                    assert_eq!(code(fresh.append_event(&u, access(m), None).await), "bad_grant");
                    assert_eq!(code(fresh.append_event(&u, EventBody::GrantRevoked { grant }, None).await), "bad_grant");
                    let now = kv.get(u.as_str()).await.unwrap();
                    assert_ne!(now, Some(planted), "the planted snapshot was kept");
                    assert_eq!((fresh.stats().snapshots_loaded, fresh.stats().snapshots_dropped), (0, 1));
                }
                // The other user's grant is live: its own snapshot loads and allows.
                let fresh = connect(&server, c.clone()).await;
                let om = fresh.events(&other, Seq(11), 1).await.unwrap()[0].event.body.new_memory().unwrap();
                assert_eq!(code(fresh.append_event(&other, access(om), None).await), "ok");
                assert_eq!(fresh.stats().snapshots_loaded, 1, "the genuine snapshot was used");
                a.verify_chain(&u).await.unwrap();
                a.verify_chain(&other).await.unwrap();
            }

            /// A chain that grows by plain memories only (which the rules never replay) is
            /// snapshotted as it grows: after a restart its first ruled event loads the
            /// snapshot and reads at most one interval of events, not the whole chain.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_chain_of_plain_memories_is_snapshotted_as_it_grows() {
                use mnemo_core::{Capabilities, GrantId};
                let server = NatsServer::start();
                let mut c = cfg($layout, 1);
                c.snapshot_every = 64;
                let a = connect(&server, c.clone()).await;
                let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
                let u = user("grows");
                a.create_user(&u).await.unwrap();
                for i in 0..300 {
                    a.append(&u, note(&format!("m{i}"))).await.unwrap();
                }
                let kv = js.get_key_value(mnemo_core::names::SNAPSHOTS_BUCKET).await.unwrap();
                let mut taken = false;
                for _ in 0..200 {
                    if kv.get(u.as_str()).await.unwrap().is_some() {
                        taken = true;
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                assert!(taken, "no snapshot of a chain of 301 plain events");
                let b = connect(&server, c.clone()).await;
                b.append_event(&u, EventBody::GrantCreated {
                    grant: GrantId([3; 16]),
                    grantee: user("friend"),
                    capabilities: Capabilities { metadata: true, content: false, ask: false },
                    conditions: Default::default(),
                    expires_at: None,
                    not_before: None,
                }, None).await.unwrap();
                assert_eq!(
                    (b.stats().snapshots_loaded, b.stats().snapshots_dropped),
                    (1, 0),
                    "the cold load started from the snapshot"
                );
                b.verify_chain(&u).await.unwrap();
            }

            /// The rules keep a capture stream as runs of counters plus its latest captures
            /// (mnemo-core's capture_marks): a capture hundreds of captures old, retried, still
            /// gives its first receipt, reused with other content is still refused, and a gap
            /// filled late is a capture like any other, before and after a cold load.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn old_captures_retried_give_their_first_receipt_however_compact_the_rules() {
                use mnemo_core::Capture;
                let server = NatsServer::start();
                let mut c = cfg($layout, 1);
                c.snapshot_every = 64;
                let a = connect(&server, c.clone()).await;
                let u = user("capturer");
                a.create_user(&u).await.unwrap();
                let capture = |counter: u64, text: &str| NewMemory {
                    capture: Some(Capture { stream: "web".into(), counter }),
                    ..note(text)
                };
                let mut receipts = std::collections::HashMap::new();
                for counter in (1..=300u64).filter(|c| *c != 40) {
                    let r = a.append(&u, capture(counter, &format!("page {counter}"))).await.unwrap();
                    assert!(!r.duplicate);
                    receipts.insert(counter, r);
                }
                // The gap, filled late; then another stream interleaved.
                receipts.insert(40, a.append(&u, capture(40, "page 40")).await.unwrap());
                let other = NewMemory {
                    capture: Some(Capture { stream: "voice".into(), counter: 3 }),
                    ..note("page 3")
                };
                a.append(&u, other).await.unwrap();
                for ledger in [a, connect(&server, c.clone()).await] {
                    for counter in [3u64, 40, 41, 150, 299, 300] {
                        let r = ledger
                            .append(&u, capture(counter, &format!("page {counter}")))
                            .await
                            .unwrap_or_else(|e| panic!("retry of capture {counter}: {e}"));
                        let first = &receipts[&counter];
                        assert!(r.duplicate, "capture {counter} appended twice");
                        assert_eq!((r.seq, r.hash), (first.seq, first.hash), "capture {counter}");
                        let reused = ledger.append(&u, capture(counter, "other content")).await;
                        assert!(
                            matches!(reused, Err(LedgerError::CaptureReused { seq, .. }) if seq == first.seq),
                            "capture {counter} reused: {reused:?}"
                        );
                    }
                }
                let b = connect(&server, c).await;
                assert_eq!(b.events(&u, Seq::FIRST, usize::MAX).await.unwrap().len(), 302);
                b.verify_chain(&u).await.unwrap();
            }

        }
    };
}

suite!(per_user, Layout::PerUser);
suite!(sharded, Layout::Sharded { shards: 4 });

/// A burst of first grants from 2,000 users whose state this process never held (a fresh
/// ledger, as after a restart) opens no consumer per user: each user's rules are loaded
/// with direct gets. The server's consumer count is sampled throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_grants_opens_no_consumer_per_user() {
    use futures::StreamExt;
    use mnemo_core::{Capabilities, GrantId};
    const USERS: usize = 2000;
    let server = NatsServer::start();
    let layout = Layout::Sharded { shards: 4 };
    let writer = connect(&server, cfg(layout, 1)).await;
    let users: Vec<UserId> = (0..USERS).map(|i| user(&format!("burst{i}"))).collect();
    futures::stream::iter(&users)
        .for_each_concurrent(64, |u| {
            let w = writer.clone();
            async move {
                w.create_user(u).await.unwrap();
                w.append(u, note("first")).await.unwrap();
            }
        })
        .await;
    drop(writer);
    let fresh = connect(&server, cfg(layout, 1)).await;
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let before = js.query_account().await.unwrap().consumers;
    let consumers = mnemo_testkit::ConsumerPeak::start(js);
    futures::stream::iter(users.iter().enumerate())
        .for_each_concurrent(64, |(i, u)| {
            let l = fresh.clone();
            async move {
                l.append_event(
                    u,
                    EventBody::GrantCreated {
                        grant: GrantId([(i % 251) as u8; 16]),
                        grantee: user("friend"),
                        capabilities: Capabilities {
                            metadata: true,
                            content: false,
                            ask: false,
                        },
                        conditions: Default::default(),
                        expires_at: None,
                        not_before: None,
                    },
                    None,
                )
                .await
                .unwrap();
            }
        })
        .await;
    let peak = consumers.peak().await;
    println!("consumers: {before} before, {peak} at the peak of {USERS} first grants");
    assert_eq!(peak.max(before), before, "consumers were opened per user");
}
