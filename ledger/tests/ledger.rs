//! The ledger against a real nats-server, run once per layout: both layouts must pass the
//! same suite.

use bytes::Bytes;
use mnemo_core::{ErasureTarget, EventBody, KeyRole, Seq, SigningKey, UserId};
use mnemo_ledger::{Layout, LedgerError, NewMemory, Receipt};
use mnemo_testkit::NatsServer;
use std::collections::HashSet;

mod support;
use support::*;

macro_rules! suite {
    ($name:ident, $layout:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ten_thousand_appends_from_8_tasks_over_100_users() {
                let server = NatsServer::start();
                let l = connect(&server, cfg($layout, 1)).await;
                let users: Vec<UserId> = (0..100).map(|i| user(&format!("user{i}"))).collect();
                for u in &users {
                    l.create_user(u).await.unwrap();
                }
                let mut tasks = Vec::new();
                for t in 0..8usize {
                    let l = l.clone();
                    let users = users.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut out = Vec::new();
                        for i in 0..1250usize {
                            let u = &users[(t * 1250 + i) % 100];
                            out.push(l.append(u, note(&format!("{t}-{i}"))).await.unwrap());
                        }
                        out
                    }));
                }
                let mut receipts = Vec::new();
                for t in tasks {
                    receipts.extend(t.await.unwrap());
                }
                assert_eq!(receipts.len(), 10_000);
                for u in &users {
                    let mine: Vec<_> = receipts.iter().filter(|r| &r.user == u).cloned().collect();
                    assert_eq!(mine.len(), 100);
                    assert_chain(&l, u, &mine).await;
                    assert_eq!(l.head(u).await.unwrap().unwrap().len, 101);
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends_to_one_user_pipeline_into_one_chain() {
                let server = NatsServer::start();
                let l = connect(&server, cfg($layout, 1)).await;
                let u = user("busy");
                l.create_user(&u).await.unwrap();
                let keyed = |text: &str, key: &str| NewMemory {
                    idempotency_key: Some(key.into()),
                    ..note(text)
                };
                let first = l.append(&u, keyed("first", "k-first")).await.unwrap();
                // 400 appends at once: plain ones, ones with keys of their own, and repeats
                // of the first key (duplicates must not disturb what is pipelined).
                let mut tasks = Vec::new();
                for i in 0..400usize {
                    let (l, u) = (l.clone(), u.clone());
                    let m = match i % 50 {
                        0 => keyed("first", "k-first"),
                        1 => keyed(&format!("m{i}"), &format!("k-{i}")),
                        _ => note(&format!("m{i}")),
                    };
                    tasks.push(tokio::spawn(async move { (i, l.append(&u, m).await.unwrap()) }));
                }
                let mut written = Vec::new();
                for t in tasks {
                    let (i, r) = t.await.unwrap();
                    if i % 50 == 0 {
                        assert!(r.duplicate, "a repeated key gives the first receipt");
                        assert_eq!((r.seq, r.hash), (first.seq, first.hash));
                    } else {
                        assert!(!r.duplicate);
                        written.push(r);
                    }
                }
                assert_eq!(written.len(), 392);
                written.push(first);
                assert_chain(&l, &u, &written).await;
                assert_eq!(l.head(&u).await.unwrap().unwrap().len, 1 + 393);
                let stats = l.stats();
                if matches!($layout, Layout::PerUser) {
                    assert!(stats.pipelined > 0, "per-user layout pipelines: {stats:?}");
                } else {
                    assert_eq!(stats.pipelined, 0, "sharded layout: one event in flight per user");
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cancelled_appends_never_block_the_user() {
                let server = NatsServer::start();
                let l = connect(&server, cfg($layout, 1)).await;
                let u = user("impatient");
                l.create_user(&u).await.unwrap();
                let rounds = async {
                    for round in 0..5 {
                        let tasks: Vec<_> = (0..40)
                            .map(|i| {
                                let (l, u) = (l.clone(), u.clone());
                                tokio::spawn(async move {
                                    l.append(&u, note(&format!("{round}/{i}"))).await
                                })
                            })
                            .collect();
                        // clients that hang up while their appends wait or are in flight
                        tokio::time::sleep(std::time::Duration::from_micros(300 * round)).await;
                        for t in tasks.iter().step_by(2) {
                            t.abort();
                        }
                        for t in tasks {
                            if let Ok(r) = t.await {
                                r.unwrap();
                            }
                        }
                    }
                    l.append(&u, note("still writable")).await.unwrap()
                };
                let last = tokio::time::timeout(std::time::Duration::from_secs(60), rounds)
                    .await
                    .expect("the user is not stuck behind cancelled appends");
                assert_chain(&l, &u, &[last]).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_ledgers_on_one_user_make_one_linear_chain() {
                let server = NatsServer::start();
                let a = connect(&server, cfg($layout, 1)).await;
                let b = connect(&server, cfg($layout, 1)).await;
                let u = user("shared");
                a.create_user(&u).await.unwrap();
                let mut tasks = Vec::new();
                for (n, l) in [a.clone(), b.clone()].into_iter().enumerate() {
                    for t in 0..4 {
                        let (l, u) = (l.clone(), u.clone());
                        tasks.push(tokio::spawn(async move {
                            let mut out = Vec::new();
                            for i in 0..75 {
                                out.push(l.append(&u, note(&format!("{n}/{t}/{i}"))).await.unwrap());
                            }
                            out
                        }));
                    }
                }
                let mut receipts = Vec::new();
                for t in tasks {
                    receipts.extend(t.await.unwrap());
                }
                let seqs: HashSet<_> = receipts.iter().map(|r| r.seq).collect();
                assert_eq!(seqs.len(), 600, "every acknowledged append has its own seq");
                assert_chain(&a, &u, &receipts).await;
                assert_eq!(a.head(&u).await.unwrap().unwrap().len, 601);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_idempotency_key_one_event_even_across_a_ledger_restart() {
                let server = NatsServer::start();
                let u = user("idem");
                let first = {
                    let l = connect(&server, cfg($layout, 1)).await;
                    l.create_user(&u).await.unwrap();
                    let mut m = note("once");
                    m.idempotency_key = Some("k-1".into());
                    let r1 = l.append(&u, m.clone()).await.unwrap();
                    let r2 = l.append(&u, m).await.unwrap();
                    assert!(!r1.duplicate && r2.duplicate);
                    assert_eq!((r1.seq, r1.hash, r1.memory), (r2.seq, r2.hash, r2.memory));
                    r1
                };
                // a new ledger process (fresh connection and caches)
                let l = connect(&server, cfg($layout, 1)).await;
                let mut m = note("once");
                m.idempotency_key = Some("k-1".into());
                let r3 = l.append(&u, m).await.unwrap();
                assert!(r3.duplicate);
                assert_eq!((r3.seq, r3.hash), (first.seq, first.hash));
                assert_eq!(l.head(&u).await.unwrap().unwrap().len, 2);
                let opened = l.open_memory(&l.find_memory(&u, &first.memory.unwrap()).await.unwrap().unwrap()).await.unwrap();
                assert_eq!(&opened.content[..], b"once");
                l.verify_chain(&u).await.unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kill_9_of_nats_server_loses_no_acknowledged_append() {
                let mut server = NatsServer::start();
                let l = connect(&server, cfg($layout, 1)).await;
                let u = user("crash");
                l.create_user(&u).await.unwrap();
                let writer = {
                    let (l, u) = (l.clone(), u.clone());
                    tokio::spawn(async move {
                        let mut acked = Vec::new();
                        let mut failed = 0;
                        for i in 0..1500 {
                            match l.append(&u, note(&format!("m{i}"))).await {
                                Ok(r) => acked.push(r),
                                Err(_) => failed += 1,
                            }
                        }
                        (acked, failed)
                    })
                };
                // let some appends through, then kill -9 and restart on the same store
                let mut at_kill = 0;
                while at_kill < 200 {
                    at_kill = l.head(&u).await.unwrap().map_or(0, |h| h.len);
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                server.kill();
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                server.restart();
                let (acked, failed) = writer.await.unwrap();
                assert!(at_kill < 1500, "the kill came while appends were still going on");
                assert_eq!(acked.len() + failed, 1500);
                // appends continue after the restart
                let after = l.append(&u, note("after the crash")).await.unwrap();
                let mut all = acked.clone();
                all.push(after);
                assert_chain(&l, &u, &all).await;
                eprintln!("kill -9 at chain length {at_kill}: {} appends acked, {failed} failed during the outage", acked.len());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn erasure_shreds_keys_and_the_chain_still_verifies() {
                let (server, l) = objects_over_1k($layout).await;
                let u = user("forgetful");
                l.create_user(&u).await.unwrap();
                let a = l.append(&u, note("keep me")).await.unwrap();
                let b = l.append(&u, note("forget me")).await.unwrap();
                let mut big = note("");
                big.content = Bytes::from(vec![7u8; 50_000]);
                big.content_type = "audio/ogg".into();
                let c_ = l.append(&u, big).await.unwrap();
                let find = |r: &Receipt| {
                    let (l, u, m) = (l.clone(), u.clone(), r.memory.unwrap());
                    async move { l.find_memory(&u, &m).await.unwrap().unwrap() }
                };
                let big_opened = l.open_memory(&find(&c_).await).await.unwrap();
                assert_eq!(big_opened.content.len(), 50_000);
                assert!(matches!(big_opened.record.content, mnemo_core::Content::Object { .. }));

                let e = l.erase(&u, ErasureTarget::Memory(b.memory.unwrap())).await.unwrap();
                assert!(matches!(l.open_memory(&find(&b).await).await, Err(LedgerError::Erased(_))));
                assert_eq!(&l.open_memory(&find(&a).await).await.unwrap().content[..], b"keep me");
                let ev = l.events(&u, e.seq, 1).await.unwrap();
                assert!(matches!(ev[0].event.body, EventBody::MemoryErased { .. }));
                l.verify_chain(&u).await.unwrap();
                // erasing it again says it is gone
                assert!(matches!(l.erase(&u, ErasureTarget::Memory(b.memory.unwrap())).await, Err(LedgerError::Erased(_))));

                l.erase(&u, ErasureTarget::All).await.unwrap();
                for r in [&a, &c_] {
                    assert!(matches!(l.open_memory(&find(r).await).await, Err(LedgerError::Erased(_))));
                }
                // a fresh ledger (no caches) can not read them either
                let l2 = connect(&server, cfg($layout, 1)).await;
                assert!(matches!(l2.open_memory(&find(&a).await).await, Err(LedgerError::Erased(_))));
                let d = l.append(&u, note("new life")).await.unwrap();
                assert_eq!(&l2.open_memory(&find(&d).await).await.unwrap().content[..], b"new life");
                let sum = l.verify_chain(&u).await.unwrap();
                assert_eq!(sum.checkpoint.unwrap().seq, Seq(7));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn erasure_by_another_ledger_process_never_shreds_later_memories() {
                let server = NatsServer::start();
                let a = connect(&server, cfg($layout, 1)).await;
                let b = connect(&server, cfg($layout, 1)).await;
                let u = user("two-writers");
                a.create_user(&u).await.unwrap();
                let mut mine = Vec::new();
                for i in 0..5 {
                    mine.push(a.append(&u, note(&format!("a{i}"))).await.unwrap());
                }
                // b erases one of a's memories, sharing a's generation key
                b.erase(&u, ErasureTarget::Memory(mine[2].memory.unwrap())).await.unwrap();
                // a goes on with its cached head: its next publish conflicts, it must start a
                // new generation and not encrypt under the destroyed one
                for i in 5..8 {
                    mine.push(a.append(&u, note(&format!("a{i}"))).await.unwrap());
                }
                for (i, r) in mine.iter().enumerate() {
                    let stored = b.find_memory(&u, &r.memory.unwrap()).await.unwrap().unwrap();
                    let got = b.open_memory(&stored).await;
                    if i == 2 {
                        assert!(matches!(got, Err(LedgerError::Erased(_))));
                    } else {
                        assert_eq!(got.unwrap().content, Bytes::from(format!("a{i}")), "memory {i}");
                    }
                }
                b.verify_chain(&u).await.unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_input_gives_typed_errors_and_writes_nothing() {
                let server = NatsServer::start();
                let mut c = cfg($layout, 1);
                c.max_content = 1000;
                let l = connect(&server, c).await;
                let u = user("careful");
                l.create_user(&u).await.unwrap();
                let before = l.head(&u).await.unwrap();
                let mut big = note("");
                big.content = Bytes::from(vec![0u8; 1001]);
                assert!(matches!(l.append(&u, big).await, Err(LedgerError::PayloadTooLarge { size: 1001, max: 1000 })));
                let mut bad = note("x");
                bad.kind = String::new();
                assert!(matches!(l.append(&u, bad).await, Err(LedgerError::InvalidInput(_))));
                let mut bad = note("x");
                bad.idempotency_key = Some("has space".into());
                assert!(matches!(l.append(&u, bad).await, Err(LedgerError::InvalidInput(_))));
                let mut bad = note("x");
                bad.tags = vec!["a\nb".into()];
                assert!(matches!(l.append(&u, bad).await, Err(LedgerError::InvalidInput(_))));
                assert_eq!(l.head(&u).await.unwrap(), before, "nothing was written");
                assert!(matches!(l.append(&user("nobody"), note("x")).await, Err(LedgerError::UnknownUser(_))));
                assert_eq!(l.head(&user("nobody")).await.unwrap(), None);
                for bad in ["a.b", "a*", ">", "a b", "a\tb", ""] {
                    let e: LedgerError = UserId::new(bad).unwrap_err().into();
                    assert!(matches!(e, LedgerError::InvalidId(_)), "{bad:?}");
                }
                assert!(matches!(l.create_user(&u).await, Err(LedgerError::UserExists(_))));
                assert!(matches!(
                    l.append_event(&u, EventBody::MemoryErased { target: ErasureTarget::All }, None).await,
                    Err(LedgerError::InvalidInput(_))
                ));
                l.verify_chain(&u).await.unwrap();
            }

            /// The ledger checks events whose validity depends on the chain's state with core's
            /// rules against the chain itself, never a view, and refuses what `mnemo-audit`
            /// would reject. Two ledger processes write to one user: the second builds its
            /// state cold from the chain and keeps it current as the first writes.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn events_that_break_the_chain_rules_are_refused_by_every_writer() {
                use mnemo_core::{AccessAction, Capabilities, GrantId};
                let server = NatsServer::start();
                let a = connect(&server, cfg($layout, 1)).await;
                let b = connect(&server, cfg($layout, 1)).await;
                let (owner, reader) = (user("owner"), user("reader"));
                a.create_user(&owner).await.unwrap();
                let m = a.append(&owner, note("x")).await.unwrap().memory.unwrap();
                let grant = GrantId([5; 16]);
                let access = |memories| EventBody::AccessRecorded {
                    accessor: reader.clone(),
                    grant,
                    action: AccessAction::ReadContent,
                    memories,
                };
                let refused = |r: Result<Receipt, LedgerError>, code: &str| match r {
                    Err(LedgerError::Refused(e)) => assert_eq!(e.code(), code, "{e}"),
                    other => panic!("expected a refusal ({code}), got {other:?}"),
                };
                // no such grant yet: neither writer records an access under it
                refused(a.append_event(&owner, access(vec![m]), None).await, "bad_grant");
                refused(b.append_event(&owner, access(vec![m]), None).await, "bad_grant");
                refused(b.append_event(&owner, EventBody::GrantRevoked { grant }, None).await, "bad_grant");
                a.append_event(
                    &owner,
                    EventBody::GrantCreated {
                        grant,
                        grantee: reader.clone(),
                        capabilities: Capabilities { metadata: true, content: true, ask: false },
                        conditions: Default::default(),
                        expires_at: None,
                        not_before: None,
                    },
                    None,
                )
                .await
                .unwrap();
                // b catches up from the chain: the grant is live, an unknown memory is not
                b.append_event(&owner, access(vec![m]), None).await.unwrap();
                refused(b.append_event(&owner, access(vec![mnemo_core::MemoryId([1; 16])]), None).await, "unknown_memory");
                // memories appended by one writer are known to the other
                let m2 = b.append(&owner, note("y")).await.unwrap().memory.unwrap();
                a.append_event(&owner, access(vec![m2]), None).await.unwrap();
                // revoked by b: a refuses the next access at once
                b.append_event(&owner, EventBody::GrantRevoked { grant }, None).await.unwrap();
                refused(a.append_event(&owner, access(vec![m]), None).await, "bad_grant");
                refused(a.append_event(&owner, EventBody::GrantRevoked { grant }, None).await, "bad_grant");
                assert!(matches!(
                    a.erase(&owner, ErasureTarget::Memory(mnemo_core::MemoryId([2; 16]))).await,
                    Err(LedgerError::MemoryNotFound(_))
                ));
                // nothing refused was written, and the chain is valid
                let sum = a.verify_chain(&owner).await.unwrap();
                assert_eq!(sum.checkpoint.unwrap().seq.0, 7, "genesis, 2 memories, grant, 2 accesses, revocation");
            }

            /// A key bucket restored from a backup taken before erasures brings their keys
            /// back; applying the chains' erasures again destroys them before anything is
            /// served: the erased memories stay unreadable, the others stay readable.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_restored_key_bucket_does_not_undo_erasure() {
                use futures::StreamExt;
                let server = NatsServer::start();
                let l = connect(&server, cfg($layout, 1)).await;
                let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
                let (one, all) = (user("restoreone"), user("restoreall"));
                let mut seqs = Vec::new();
                for u in [&one, &all] {
                    l.create_user(u).await.unwrap();
                    for i in 0..3 {
                        seqs.push((u.clone(), l.append(u, note(&format!("{u} {i}"))).await.unwrap()));
                    }
                }
                // The backup: every entry of the key bucket as it is now.
                let kv = js.get_key_value(mnemo_core::names::KEYS_BUCKET).await.unwrap();
                let mut backup = Vec::new();
                let mut keys = kv.keys().await.unwrap();
                while let Some(k) = keys.next().await {
                    let k = k.unwrap();
                    if let Some(v) = kv.get(&k).await.unwrap() {
                        backup.push((k, v));
                    }
                }
                assert!(!backup.is_empty());
                let erased = seqs[1].1.memory.unwrap();
                l.erase(&one, ErasureTarget::Memory(erased)).await.unwrap();
                l.erase(&all, ErasureTarget::All).await.unwrap();
                // What a fresh process can open, per memory.
                let readable = async |r: &Receipt, u: &UserId| {
                    let fresh = connect(&server, cfg($layout, 1)).await;
                    let e = fresh.events(u, r.seq, 1).await.unwrap().remove(0);
                    match fresh.open_memory(&e).await {
                        Ok(_) => true,
                        Err(LedgerError::Erased(_)) => false,
                        Err(other) => panic!("{other:?}"),
                    }
                };
                let states = async || {
                    let mut v = Vec::new();
                    for (u, r) in &seqs {
                        v.push(readable(r, u).await);
                    }
                    v
                };
                let after_erasure = vec![true, false, true, false, false, false];
                assert_eq!(states().await, after_erasure);
                // The restore brings the destroyed keys back...
                for (k, v) in &backup {
                    kv.put(k, v.clone()).await.unwrap();
                }
                assert_eq!(states().await, vec![true; 6], "the restore did not bring keys back");
                // ...and the chains' erasures, applied again, destroy them.
                let users = l.chain_users().await.unwrap();
                assert_eq!(users, vec![all.clone(), one.clone()]);
                let mut destroyed = 0;
                for u in &users {
                    destroyed += l.reapply_erasures(u).await.unwrap();
                }
                assert!(destroyed > 0);
                assert_eq!(states().await, after_erasure);
                // Applied again with nothing come back: nothing to do.
                for u in &users {
                    assert_eq!(l.reapply_erasures(u).await.unwrap(), 0);
                }
                l.verify_chain(&one).await.unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_full_chain_refuses_writes_instead_of_dropping_events() {
                let server = NatsServer::start();
                let mut c = cfg($layout, 1);
                c.max_events_per_user = Some(4);
                let l = connect(&server, c).await;
                let u = user("small");
                l.create_user(&u).await.unwrap();
                for i in 0..3 {
                    l.append(&u, note(&format!("{i}"))).await.unwrap();
                }
                assert!(matches!(l.append(&u, note("one too many")).await, Err(LedgerError::ChainFull(_))));
                let sum = l.verify_chain(&u).await.unwrap();
                assert_eq!(sum.checkpoint.unwrap().seq, Seq(4));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn key_rotation_keeps_the_chain_verifiable() {
                let server = NatsServer::start();
                let u = user("rotating");
                let old = connect(&server, cfg($layout, 1)).await;
                old.create_user(&u).await.unwrap();
                old.append(&u, note("under the old key")).await.unwrap();
                let mut c = cfg($layout, 2);
                c.keys.previous = vec![SigningKey::from_bytes(&[1; 32])];
                let new = connect(&server, c).await;
                let r = new.append(&u, note("under the new key")).await.unwrap();
                assert_eq!(r.seq, Seq(4), "a key_rotated event came first");
                let ev = new.events(&u, Seq(3), 1).await.unwrap();
                assert!(matches!(ev[0].event.body, EventBody::KeyRotated { .. }));
                let sum = new.verify_chain(&u).await.unwrap();
                assert_eq!(sum.keys, 2);
                // a ledger that only knows the new key can not write to a chain of the old one
                let other = user("stranger");
                old.create_user(&other).await.unwrap();
                let mut c = cfg($layout, 3);
                c.keys.previous = vec![];
                let lost = connect(&server, c).await;
                assert!(matches!(lost.append(&other, note("x")).await, Err(LedgerError::Tampered(_))));
                let _ = KeyRole::Custody;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn large_content_streams_out_of_the_object_store_checked() {
                use futures::StreamExt;
                use tokio::io::AsyncReadExt;
                let (server, l) = objects_over_1k($layout).await;
                let u = user("audio");
                l.create_user(&u).await.unwrap();
                let big = |seed: u8| NewMemory {
                    content_type: "audio/ogg".into(),
                    content: (0..200 * 1024 + 17).map(|i| (i % 251) as u8 ^ seed).collect::<Vec<u8>>().into(),
                    ..note("")
                };
                let (a, b) = (big(0), big(1));
                let ra = l.append(&u, a.clone()).await.unwrap();
                let rb = l.append(&u, b.clone()).await.unwrap();
                let stored = |r: &Receipt| {
                    let (l, u, seq) = (l.clone(), u.clone(), r.seq);
                    async move { l.events(&u, seq, 1).await.unwrap().remove(0) }
                };
                // whole, and as a stream of several pieces
                let sa = stored(&ra).await;
                assert_eq!(l.open_memory(&sa).await.unwrap().content, a.content);
                let opened = l.open_memory_stream(&sa).await.unwrap();
                assert_eq!(opened.size, a.content.len() as u64);
                let pieces: Vec<Bytes> = opened.content.map(|p| p.unwrap()).collect().await;
                assert!(pieces.len() >= 4, "{} pieces", pieces.len());
                assert_eq!(pieces.concat(), a.content);

                // tampered objects: the last byte flipped, or another memory's object
                let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
                let store = js.get_object_store(mnemo_ledger::OBJECTS_BUCKET).await.unwrap();
                let name = |r: &Receipt| format!("{}.{}", u, r.memory.unwrap());
                let mut raw = Vec::new();
                store.get(name(&ra)).await.unwrap().read_to_end(&mut raw).await.unwrap();
                *raw.last_mut().unwrap() ^= 1;
                store.put(name(&ra).as_str(), &mut raw.as_slice()).await.unwrap();
                let mut s = l.open_memory_stream(&sa).await.unwrap().content;
                let mut got = 0;
                let err = loop {
                    match s.next().await.expect("the stream ends with an error") {
                        Ok(p) => got += p.len(),
                        Err(e) => break e,
                    }
                };
                assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
                assert!(got > 0 && got < a.content.len(), "got {got}: the last piece is held back");
                assert!(matches!(l.open_memory(&sa).await, Err(LedgerError::Tampered(_))));
                let mut other = Vec::new();
                store.get(name(&rb)).await.unwrap().read_to_end(&mut other).await.unwrap();
                store.put(name(&ra).as_str(), &mut other.as_slice()).await.unwrap();
                let mut s = l.open_memory_stream(&sa).await.unwrap().content;
                let first = s.next().await.unwrap();
                assert_eq!(first.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
                // a missing object is not taken for tampering
                store.delete(name(&ra)).await.unwrap();
                assert!(matches!(l.open_memory(&sa).await, Err(LedgerError::Nats { .. })));
                // the other memory is untouched
                assert_eq!(l.open_memory(&stored(&rb).await).await.unwrap().content, b.content);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn chunks_of_failed_uploads_are_swept_and_nothing_else() {
                use futures::StreamExt;
                let (server, l) = objects_over_1k($layout).await;
                let u = user("uploader");
                l.create_user(&u).await.unwrap();
                let piece = || Ok(Bytes::from(vec![7u8; 64 * 1024]));
                let kept = l
                    .append_stream(&u, note(""), futures::stream::iter((0..4).map(|_| piece())), 1 << 20)
                    .await
                    .unwrap();
                // a client gone after three pieces, and one sending more than allowed
                let gone = futures::stream::iter((0..3).map(|_| piece()))
                    .chain(futures::stream::iter([Err(std::io::Error::other("client gone"))]));
                assert!(l.append_stream(&u, note(""), gone, 1 << 20).await.is_err());
                let endless = futures::stream::iter((0..8).map(|_| piece()));
                assert!(matches!(
                    l.append_stream(&u, note(""), endless, 300 * 1024).await,
                    Err(LedgerError::PayloadTooLarge { .. })
                ));
                // an unknown user is refused before anything is stored
                let nobody = futures::stream::iter((0..3).map(|_| piece()));
                assert!(matches!(
                    l.append_stream(&user("nobody"), note(""), nobody, 1 << 20).await,
                    Err(LedgerError::UnknownUser(_))
                ));
                let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
                let stream = js.get_stream(format!("OBJ_{}", mnemo_ledger::OBJECTS_BUCKET)).await.unwrap();
                let chunk_subjects = || {
                    let stream = stream.clone();
                    async move {
                        let subjects = stream
                            .info_with_subjects(format!("$O.{}.C.>", mnemo_ledger::OBJECTS_BUCKET))
                            .await
                            .unwrap();
                        subjects.count().await
                    }
                };
                let before = chunk_subjects().await;
                assert!(before >= 2, "{before}: the failed uploads left chunks");
                // too young to be swept: an upload may still be going on
                let swept = l.sweep_orphan_chunks(std::time::Duration::from_secs(3600)).await.unwrap();
                assert_eq!(swept.objects, 0);
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
                let swept = l.sweep_orphan_chunks(std::time::Duration::from_secs(1)).await.unwrap();
                assert_eq!(swept.objects, before - 1, "{swept:?}");
                assert!(swept.chunks >= 2);
                assert_eq!(chunk_subjects().await, 1);
                // the stored memory is whole, and a second sweep finds nothing
                let stored = l.events(&u, kept.seq, 1).await.unwrap().remove(0);
                assert_eq!(l.open_memory(&stored).await.unwrap().content.len(), 4 * 64 * 1024);
                let swept = l.sweep_orphan_chunks(std::time::Duration::ZERO).await.unwrap();
                assert_eq!(swept.objects, 0);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_upload_swept_while_stalled_is_refused_not_committed() {
                use futures::StreamExt;
                let (server, l) = objects_over_1k($layout).await;
                let u = user("slow");
                l.create_user(&u).await.unwrap();
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<Bytes>>();
                let content = tokio_stream_from(rx);
                let upload = {
                    let (l, u) = (l.clone(), u.clone());
                    tokio::spawn(async move { l.append_stream(&u, note(""), content, 1 << 20).await })
                };
                for _ in 0..5 {
                    tx.send(Ok(Bytes::from(vec![3u8; 64 * 1024]))).unwrap();
                }
                // wait until chunks of it are stored, then sweep with no grace: they look
                // like the leftovers of a failed upload
                let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
                let stream = js.get_stream(format!("OBJ_{}", mnemo_ledger::OBJECTS_BUCKET)).await.unwrap();
                let filter = format!("$O.{}.C.>", mnemo_ledger::OBJECTS_BUCKET);
                let t = std::time::Instant::now();
                while stream.info_with_subjects(&filter).await.unwrap().count().await == 0 {
                    assert!(t.elapsed() < std::time::Duration::from_secs(10), "no chunk stored");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                let swept = l.sweep_orphan_chunks(std::time::Duration::ZERO).await.unwrap();
                assert_eq!(swept.objects, 1);
                // the client goes on and finishes: the object is not whole, nothing is committed
                tx.send(Ok(Bytes::from(vec![3u8; 1000]))).unwrap();
                drop(tx);
                let r = upload.await.unwrap();
                assert!(r.is_err(), "{r:?}");
                assert_eq!(l.head(&u).await.unwrap().unwrap().len, 1, "only the genesis event");
                assert_eq!(stream.info_with_subjects(&filter).await.unwrap().count().await, 0);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn follow_sees_later_appends() {
                let server = NatsServer::start();
                let l = connect(&server, cfg($layout, 1)).await;
                let u = user("live");
                l.create_user(&u).await.unwrap();
                let mut f = l.follow(&u, Seq(2)).await.unwrap();
                let r = l.append(&u, note("hello")).await.unwrap();
                let got = tokio::time::timeout(std::time::Duration::from_secs(5), f.next()).await.unwrap().unwrap().unwrap();
                assert_eq!((got.event.seq, got.hash), (r.seq, r.hash));
            }

            /// Reads of known seqs are direct gets: with every reader slot of the user held
            /// (a long poll), a device that reads each capture back is never locked out,
            /// and no consumer is opened for it; pages anywhere in the chain, with another
            /// user's events interleaved in a shared stream, come back whole and in order.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_of_known_seqs_open_no_consumer_and_never_lock_out() {
                let server = NatsServer::start();
                let mut c = cfg($layout, 1);
                c.max_readers_per_user = 1;
                let l = connect(&server, c).await;
                let (u, other) = (user("reader"), user("neighbour"));
                l.create_user(&u).await.unwrap();
                l.create_user(&other).await.unwrap();
                let mut receipts = Vec::new();
                for i in 0..40 {
                    receipts.push(l.append(&u, note(&format!("n{i}"))).await.unwrap());
                    l.append(&other, note("x")).await.unwrap();
                }
                let _held = l.follow(&u, Seq(1000)).await.unwrap();
                assert!(matches!(l.read(&u, Seq::FIRST).await, Err(LedgerError::TooManyReads(_))));
                let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
                let stream = l.locate(&u).stream;
                let consumers = async || js.get_stream(&stream).await.unwrap().info().await.unwrap().state.consumer_count;
                let before = consumers().await;
                for r in &receipts {
                    let got = l.events(&u, r.seq, 1).await.unwrap();
                    assert_eq!(got.len(), 1);
                    assert_eq!((got[0].event.seq, got[0].hash), (r.seq, r.hash));
                }
                for (from, limit) in [(1u64, 5usize), (17, 9), (38, 100), (41, 3), (500, 1)] {
                    let got = l.events(&u, Seq(from), limit).await.unwrap();
                    let want: Vec<u64> = (from..=41).take(limit).collect();
                    let seqs: Vec<u64> = got.iter().map(|e| e.event.seq.0).collect();
                    assert_eq!(seqs, want, "from {from} limit {limit}");
                }
                assert_eq!(consumers().await, before, "a read of known seqs opened a consumer");
            }
        }
    };
}

suite!(per_user, Layout::PerUser);
suite!(sharded, Layout::Sharded { shards: 4 });

/// The future of an inline append stays small: the API allocates (and moves) it once per
/// request, so rare paths (object uploads, head reloads, lost acks, duplicates, new
/// generation keys) are boxed inside it. It was 10 KiB before they were.
#[tokio::test]
async fn the_append_future_stays_small() {
    let server = NatsServer::start();
    let l = connect(&server, cfg(Layout::PerUser, 1)).await;
    let u = user("small");
    let append = l.append(&u, note("x"));
    let size = std::mem::size_of_val(&append);
    drop(append);
    assert!(size <= 6 * 1024, "Ledger::append's future is {size} bytes");
}
