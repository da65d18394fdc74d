//! Projections against real nats-server and PostgreSQL processes.

use bytes::Bytes;
use mnemo_core::{Seq, SigningKey, UserId};
use mnemo_ledger::{Layout, Ledger, NewMemory};
use mnemo_projections::kv_head;
use mnemo_testkit::{RunningProjector, Stack};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const CUSTODY_SEED: [u8; 32] = [4; 32];

async fn stack(layout: Layout) -> Stack {
    Stack::builder()
        .layout(layout)
        .custody_seed(CUSTODY_SEED)
        .rescan(Duration::from_millis(200))
        .without_projector()
        .start()
        .await
}

fn projector(s: &Stack) -> RunningProjector {
    RunningProjector::spawn(&s.js, &s.ledger, &s.pool, s.projector_config())
}

fn note(i: usize, tag: &str) -> NewMemory {
    NewMemory {
        kind: "note".into(),
        tags: vec![tag.into()],
        content_type: "text/plain".into(),
        content: Bytes::from(format!("memory number {i} about {tag}")),
        ..Default::default()
    }
}

async fn ingest(ledger: &Ledger, users: &[UserId], per_user: usize, tasks: usize) {
    let mut hs = Vec::new();
    for t in 0..tasks {
        let (l, users) = (ledger.clone(), users.to_vec());
        hs.push(tokio::spawn(async move {
            for (i, u) in users.iter().enumerate().filter(|(i, _)| i % tasks == t) {
                for k in 0..per_user {
                    l.append(
                        u,
                        note(i * 1000 + k, if k % 2 == 0 { "even" } else { "odd" }),
                    )
                    .await
                    .unwrap();
                }
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
}

/// The views must equal what replaying the chains gives.
async fn assert_views_equal_chains(s: &Stack, users: &[UserId]) {
    let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as("SELECT user_id, seq, hash FROM events")
        .fetch_all(&s.pool)
        .await
        .unwrap();
    let in_db: HashSet<(String, i64, Vec<u8>)> = rows.iter().cloned().collect();
    assert_eq!(in_db.len(), rows.len());
    let mut total = 0;
    for u in users {
        let sum = s.ledger.verify_chain(u).await.unwrap();
        let cp = sum.checkpoint.unwrap();
        let events = s.ledger.events(u, Seq::FIRST, usize::MAX).await.unwrap();
        for e in &events {
            assert!(
                in_db.contains(&(u.to_string(), e.event.seq.0 as i64, e.hash.0.to_vec())),
                "{u} seq {}",
                e.event.seq
            );
        }
        total += events.len();
        let (last, head, root): (i64, Vec<u8>, Vec<u8>) =
            sqlx::query_as("SELECT last_seq, head_hash, root FROM users WHERE user_id = $1")
                .bind(u.as_str())
                .fetch_one(&s.pool)
                .await
                .unwrap();
        assert_eq!(
            (last as u64, head, root),
            (cp.seq.0, cp.head.0.to_vec(), cp.root.0.to_vec()),
            "{u}"
        );
        let kv = kv_head(&s.js, u).await.unwrap().unwrap();
        assert_eq!(
            (kv.seq, kv.hash, kv.root),
            (cp.seq.0, cp.head, cp.root),
            "KV head of {u}"
        );
        let tip = s.ledger.head(u).await.unwrap().unwrap();
        assert_eq!((kv.seq, kv.hash), (tip.len, tip.hash));
    }
    assert_eq!(rows.len(), total, "no extra rows");
    let memories: i64 = sqlx::query_scalar("SELECT count(*) FROM memories")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    let ingested: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE kind = 'memory_ingested'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(memories, ingested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_events_over_500_users_equal_the_chains() {
    let s = stack(Layout::Sharded { shards: 4 }).await;
    let users: Vec<UserId> = (0..500)
        .map(|i| UserId::new(format!("u{i}")).unwrap())
        .collect();
    for u in &users {
        s.ledger.create_user(u).await.unwrap();
    }
    let p = projector(&s);
    ingest(&s.ledger, &users, 99, 16).await;
    s.no_lag(Duration::from_secs(120)).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(n, 50_000);
    assert_views_equal_chains(&s, &users).await;
    // full-text search and tags work on the projected text
    let hits: i64 = sqlx::query_scalar("SELECT count(*) FROM memories WHERE search @@ plainto_tsquery('simple', 'even') AND 'even' = ANY(tags)")
        .fetch_one(&s.pool).await.unwrap();
    assert_eq!(hits, 500 * 50);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_projector_mid_batch_neither_loses_nor_doubles() {
    let s = stack(Layout::PerUser).await;
    let users: Vec<UserId> = (0..40)
        .map(|i| UserId::new(format!("k{i}")).unwrap())
        .collect();
    for u in &users {
        s.ledger.create_user(u).await.unwrap();
    }
    let writer = {
        let (l, users) = (s.ledger.clone(), users.clone());
        tokio::spawn(async move { ingest(&l, &users, 100, 8).await })
    };
    // start, abort at arbitrary points (mid-batch or not), several times
    for i in 0..6 {
        let p = projector(&s);
        tokio::time::sleep(Duration::from_millis(150 + 97 * i)).await;
        p.abort().await;
    }
    writer.await.unwrap();
    let p = projector(&s);
    s.no_lag(Duration::from_secs(60)).await;
    assert_views_equal_chains(&s, &users).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_delivered_after_later_ones_are_read_from_the_chain() {
    let s = stack(Layout::Sharded { shards: 1 }).await;
    let u = UserId::new("late").unwrap();
    s.ledger.create_user(&u).await.unwrap();
    for i in 0..2 {
        s.ledger.append(&u, note(i, "early")).await.unwrap();
    }
    let p = projector(&s);
    s.no_lag(Duration::from_secs(30)).await;
    p.stop().await;
    let mut receipts = Vec::new();
    for i in 0..8 {
        receipts.push(s.ledger.append(&u, note(i, "later")).await.unwrap());
    }
    // The consumer starts after the third of them, the way a consumer goes on past a
    // message whose delivery was lost (it comes back later as a redelivery): the view
    // holds seq 3, the next message it is handed is seq 7.
    sqlx::query(
        "UPDATE projector_checkpoints SET stream_seq = $1 WHERE view = 'pg' AND stream = $2",
    )
    .bind(receipts[2].stream_seq as i64)
    .bind(s.ledger.locate(&u).stream)
    .execute(&s.pool)
    .await
    .unwrap();
    let p = projector(&s);
    let stats = p.stats.clone();
    let t = Instant::now();
    loop {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM users WHERE user_id = $1")
            .bind(u.as_str())
            .fetch_optional(&s.pool)
            .await
            .unwrap();
        if seq == Some(11) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the view never got past the gap: {seq:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_views_equal_chains(&s, std::slice::from_ref(&u)).await;
    assert_eq!(
        stats
            .dead_letters
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing dead-lettered as a gap"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_during_ingest_then_views_catch_up() {
    let mut s = stack(Layout::Sharded { shards: 2 }).await;
    let users: Vec<UserId> = (0..20)
        .map(|i| UserId::new(format!("p{i}")).unwrap())
        .collect();
    for u in &users {
        s.ledger.create_user(u).await.unwrap();
    }
    let p = projector(&s);
    let stats = p.stats.clone();
    ingest(&s.ledger, &users, 20, 4).await;
    s.pg.kill();
    ingest(&s.ledger, &users, 30, 4).await;
    let t = Instant::now();
    while stats.retries.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the projector never felt the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.pg.restart();
    s.no_lag(Duration::from_secs(60)).await;
    assert_views_equal_chains(&s, &users).await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_event_quarantines_that_user_alone_and_goes_to_the_dead_letter_subject() {
    let s = stack(Layout::Sharded { shards: 2 }).await;
    let good = UserId::new("good").unwrap();
    let bad = UserId::new("bad").unwrap();
    for u in [&good, &bad] {
        s.ledger.create_user(u).await.unwrap();
        s.ledger.append(u, note(1, "x")).await.unwrap();
    }
    let client = s.js.client();
    let mut dl = client.subscribe("mnemo.deadletter.pg").await.unwrap();
    let p = projector(&s);
    s.no_lag(Duration::from_secs(30)).await;
    // A forged seq 3 for "bad": correct link, signed by the ledger's own key, then one
    // byte of the signature changed on its way into the stream.
    let last = s.ledger.events(&bad, Seq(2), 1).await.unwrap().remove(0);
    let head = mnemo_core::Head {
        user: bad.clone(),
        len: 2,
        hash: last.hash,
    };
    let custody = SigningKey::from_bytes(&CUSTODY_SEED);
    let (forged, _) = head.next_unsigned(
        mnemo_core::FORMAT_V2,
        mnemo_core::PublicKey(custody.verifying_key()).id(),
        mnemo_core::TimestampMs(1),
        mnemo_core::EventBody::MemoryErased {
            target: mnemo_core::ErasureTarget::All,
        },
        None,
        None,
    );
    let forged = forged.sign(&custody);
    let mut wire = forged.to_wire();
    let n = wire.len();
    wire[n - 5] ^= 0x10;
    let body = mnemo_ledger::envelope::encode(&wire, &[]);
    s.js.publish(s.ledger.locate(&bad).subject, body)
        .await
        .unwrap()
        .await
        .unwrap();
    // the good user goes on
    for i in 0..10 {
        s.ledger.append(&good, note(i, "y")).await.unwrap();
    }
    let msg = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut dl))
        .await
        .unwrap()
        .unwrap();
    let reason = msg
        .headers
        .as_ref()
        .unwrap()
        .get("Mnemo-Reason")
        .unwrap()
        .to_string();
    assert!(reason.contains("bad seq 3: bad_signature"), "{reason}");
    s.no_lag(Duration::from_secs(30)).await;
    let good_last: i64 = sqlx::query_scalar("SELECT last_seq FROM users WHERE user_id = 'good'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(good_last, 12);
    let bad_last: i64 = sqlx::query_scalar("SELECT last_seq FROM users WHERE user_id = 'bad'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(bad_last, 2, "the tampered event was not applied");
    let (seq, check): (i64, String) =
        sqlx::query_as("SELECT seq, check_code FROM quarantine WHERE user_id = 'bad'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!((seq, check.as_str()), (3, "bad_signature"));
    let quarantined: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(quarantined, 1, "only the tampered user is quarantined");
    p.stop().await;
}

async fn dump(pool: &sqlx::PgPool) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (t, order) in [
        ("users", "user_id"),
        ("user_keys", "user_id, key_id"),
        ("events", "user_id, seq"),
        ("memories", "user_id, memory_id"),
        ("grants", "user_id, grant_id"),
        ("access_log", "user_id, seq"),
    ] {
        let q = format!(
            "SELECT to_jsonb(x) - 'created_at' - 'updated_at' - 'search' FROM {t} x ORDER BY {order}"
        );
        let rows: Vec<serde_json::Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
            .fetch_all(pool)
            .await
            .unwrap();
        out.push(serde_json::json!({ t: rows }));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_reaches_the_views_and_rebuild_gives_the_same_rows() {
    use mnemo_core::{
        AccessAction, Capabilities, ErasureTarget, EventBody, GrantConditions, GrantId,
    };
    let s = stack(Layout::Sharded { shards: 2 }).await;
    let users: Vec<UserId> = (0..30)
        .map(|i| UserId::new(format!("r{i}")).unwrap())
        .collect();
    for u in &users {
        s.ledger.create_user(u).await.unwrap();
    }
    ingest(&s.ledger, &users, 20, 4).await;
    let grant = GrantId([5; 16]);
    s.ledger
        .append_event(
            &users[0],
            EventBody::GrantCreated {
                grant,
                grantee: users[1].clone(),
                capabilities: Capabilities {
                    metadata: true,
                    content: false,
                    ask: false,
                },
                conditions: GrantConditions {
                    tags: vec!["even".into()],
                    ..Default::default()
                },
                expires_at: None,
                not_before: None,
            },
            None,
        )
        .await
        .unwrap();
    let some = s
        .ledger
        .events(&users[0], Seq(2), 1)
        .await
        .unwrap()
        .remove(0);
    let mid = match some.event.body {
        EventBody::MemoryIngested { memory, .. } => memory,
        _ => unreachable!(),
    };
    s.ledger
        .append_event(
            &users[0],
            EventBody::AccessRecorded {
                accessor: users[1].clone(),
                grant,
                action: AccessAction::ReadMetadata,
                memories: vec![mid],
            },
            None,
        )
        .await
        .unwrap();
    s.ledger
        .append_event(&users[0], EventBody::GrantRevoked { grant }, None)
        .await
        .unwrap();
    let victim = s
        .ledger
        .events(&users[1], Seq(3), 1)
        .await
        .unwrap()
        .remove(0);
    let victim_id = match victim.event.body {
        EventBody::MemoryIngested { memory, .. } => memory,
        _ => unreachable!(),
    };
    let victim_text = s.ledger.open_memory(&victim).await.unwrap().content;
    s.ledger
        .erase(&users[1], ErasureTarget::Memory(victim_id))
        .await
        .unwrap();
    s.ledger.erase(&users[2], ErasureTarget::All).await.unwrap();

    let p = projector(&s);
    s.no_lag(Duration::from_secs(60)).await;
    // erasure reached the views: no text, no search hit, erased marks
    let (body, erased): (Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT body, erased_seq FROM memories WHERE user_id = $1 AND memory_id = $2",
    )
    .bind(users[1].as_str())
    .bind(victim_id.0.to_vec())
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(body, None);
    assert!(erased.is_some());
    let hits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memories WHERE search @@ phraseto_tsquery('simple', $1)",
    )
    .bind(String::from_utf8_lossy(&victim_text).into_owned())
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(hits, 0, "erased text is not searchable");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM memories WHERE user_id = $1 AND (body IS NOT NULL OR erased_seq IS NULL)")
        .bind(users[2].as_str()).fetch_one(&s.pool).await.unwrap();
    assert_eq!(left, 0, "erase-all reached every memory of the user");
    let g: (Option<i64>,) = sqlx::query_as("SELECT revoked_seq FROM grants WHERE user_id = $1")
        .bind(users[0].as_str())
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(g.0.is_some());
    let a: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(a, 1);

    // rebuild with nothing new coming in: identical rows
    let before = dump(&s.pool).await;
    let report = mnemo_projections::rebuild(
        &s.js,
        &s.ledger.clone().into(),
        &s.pg.url("mnemo"),
        "pg",
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(report.events >= 600, "{report:?}");
    assert_eq!(
        dump(&s.pool).await,
        before,
        "rebuilt rows equal the live projection"
    );

    // rebuild while appends keep coming: the live projector goes on afterwards
    let writer = {
        let (l, users) = (s.ledger.clone(), users[3..].to_vec());
        tokio::spawn(async move { ingest(&l, &users, 10, 4).await })
    };
    mnemo_projections::rebuild(
        &s.js,
        &s.ledger.clone().into(),
        &s.pg.url("mnemo"),
        "pg",
        |_, _| {},
    )
    .await
    .unwrap();
    writer.await.unwrap();
    s.no_lag(Duration::from_secs(60)).await;
    assert_views_equal_chains(&s, &users).await;
    p.stop().await;
}
