//! The chaos run: two `mnemo serve` processes (the real binary) on a 3-node JetStream
//! cluster with R3 streams, PostgreSQL and anvil. A load generator ingests over HTTP for
//! many users and records every receipt; meanwhile NATS nodes, a mnemo instance,
//! PostgreSQL and anvil are killed with SIGKILL, one at a time and more than once.
//! Afterwards: every acknowledged receipt is in its chain exactly once, `mnemo-audit`
//! verifies every chain and its anchors (offline and on the chain), the PostgreSQL and KV
//! views equal a fresh replay, and anchoring resumed.
//!
//! `MNEMO_CHAOS_SECS` makes the run longer by hand (default 24).

use mnemo_core::{SigningKey, UserId};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, SecretKey};
use mnemo_testkit::{Anvil, DEV_KEY, NatsCluster, PgServer, free_port};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MASTER: [u8; 32] = [0x31; 32];
const SIGNING: [u8; 32] = [0x32; 32];
const JWT: [u8; 32] = [0x33; 32];

/// One `mnemo serve` process.
struct Instance {
    port: u16,
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Instance {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_healthy(http: &reqwest::Client, url: &str) {
    let t = Instant::now();
    while !http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(t.elapsed() < Duration::from_secs(60), "{url} never healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_loses_no_acknowledged_memory() {
    let secs: u64 = std::env::var("MNEMO_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut cluster = NatsCluster::start(3);
    let mut pg = PgServer::start_with(true);
    pg.create_database("mnemo");
    let mut anvil = Anvil::start();
    let contract = mnemo_anchor::Chain::deploy(&anvil.url(), DEV_KEY)
        .await
        .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let nats_urls = cluster.urls().join(",");
    let env: Vec<(String, String)> = [
        ("MNEMO_NATS_URL", nats_urls.clone()),
        ("DATABASE_URL", pg.url("mnemo")),
        ("MNEMO_MASTER_KEY", hex::encode(MASTER)),
        ("MNEMO_SIGNING_KEY", hex::encode(SIGNING)),
        ("MNEMO_JWT_KEY", hex::encode(JWT)),
        ("MNEMO_REPLICAS", "3".into()),
        ("MNEMO_LAYOUT", "sharded".into()),
        ("MNEMO_SHARDS", "4".into()),
        ("MNEMO_RPC_URL", anvil.url()),
        ("MNEMO_ANCHOR_KEY", DEV_KEY.into()),
        ("MNEMO_ANCHOR_CONTRACT", format!("0x{contract}")),
        ("MNEMO_ANCHOR_INTERVAL", "2".into()),
        ("MNEMO_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut instances: Vec<Instance> = (0..2)
        .map(|i| Instance {
            port: free_port(),
            env: env.clone(),
            log: logs.path().join(format!("mnemo-{i}.log")),
            child: None,
        })
        .collect();
    for i in &mut instances {
        i.start();
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in &instances {
        wait_healthy(&http, &i.url()).await;
    }
    let urls: Arc<Vec<String>> = Arc::new(instances.iter().map(|i| i.url()).collect());
    let auth = mnemo_api::auth::Auth::new(&SigningKey::from_bytes(&JWT), "mnemo", "mnemo-api");
    let admin = auth.issue("admin", true, 3600);
    let users: Vec<UserId> = (0..24)
        .map(|i| UserId::new(format!("p{i}")).unwrap())
        .collect();
    for u in &users {
        let t = Instant::now();
        loop {
            let r = http
                .post(format!("{}/v1/users", urls[0]))
                .bearer_auth(&admin)
                .json(&json!({ "id": u }))
                .send()
                .await;
            if r.is_ok_and(|r| r.status() == 201 || r.status() == 409) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "creating {u}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let tokens: Arc<Vec<String>> = Arc::new(
        users
            .iter()
            .map(|u| auth.issue(u.as_str(), false, 3600))
            .collect(),
    );

    // the load generator: every request retried (same Idempotency-Key, other instance)
    // until it gets a receipt
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, retried) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for t in 0..6usize {
        let (http, urls, tokens, stop) = (http.clone(), urls.clone(), tokens.clone(), stop.clone());
        let (acked, retried) = (acked.clone(), retried.clone());
        tasks.push(tokio::spawn(async move {
            let mut receipts: Vec<(usize, u64, String)> = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let u = (t * 4 + i * 5) % tokens.len();
                let key = format!("t{t}-{i}");
                let started = Instant::now();
                let mut attempt = 0usize;
                let receipt = loop {
                    let url = &urls[(t + attempt) % urls.len()];
                    let r = http
                        .post(format!("{url}/v1/memories"))
                        .bearer_auth(&tokens[u])
                        .header("idempotency-key", &key)
                        .json(&json!({ "text": format!("memory {key}"), "tags": ["chaos"] }))
                        .send()
                        .await;
                    if let Ok(r) = r
                        && (r.status() == 201 || r.status() == 200)
                        && let Ok(v) = r.json::<Value>().await
                    {
                        break v;
                    }
                    attempt += 1;
                    retried.fetch_add(1, Ordering::Relaxed);
                    assert!(
                        started.elapsed() < Duration::from_secs(120),
                        "request {key} never acknowledged"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                acked.fetch_add(1, Ordering::Relaxed);
                receipts.push((
                    u,
                    receipt["seq"].as_u64().unwrap(),
                    receipt["id"].as_str().unwrap().to_owned(),
                ));
                i += 1;
            }
            receipts
        }));
    }

    // chaos: one at a time, more than once each
    let step = Duration::from_millis(secs * 1000 / 12);
    let pause = |d| tokio::time::sleep(d);
    for (node, instance) in cluster.nodes.iter_mut().zip(instances.iter_mut()) {
        pause(step).await;
        node.kill();
        pause(step).await;
        node.restart();
        pause(step).await;
        instance.kill();
        pause(step).await;
        instance.start();
        pause(step).await;
        pg.kill();
        pause(step / 2).await;
        pg.restart();
        pause(step / 2).await;
        anvil.kill();
        pause(step / 2).await;
        anvil.restart();
    }
    pause(step).await;
    stop.store(true, Ordering::Relaxed);
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    let acked_n = acked.load(Ordering::Relaxed);
    println!(
        "chaos: {} requests acknowledged, {} attempts retried, 0 acknowledged lost (checked below)",
        acked_n,
        retried.load(Ordering::Relaxed)
    );
    assert!(acked_n > 50, "enough load under fire ({acked_n})");

    // 1. every acknowledged receipt is in its chain exactly once
    let client = async_nats::ConnectOptions::new()
        .connect(
            cluster
                .urls()
                .iter()
                .map(|u| u.parse::<async_nats::ServerAddr>().unwrap())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let mut cfg = LedgerConfig::new(
        SecretKey::from_bytes(MASTER),
        SigningKey::from_bytes(&SIGNING),
    );
    cfg.layout = Layout::Sharded { shards: 4 };
    cfg.replicas = 3;
    let ledger = Ledger::connect(client.clone(), cfg).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for (ui, u) in users.iter().enumerate() {
        let events = ledger
            .events(u, mnemo_core::Seq::FIRST, usize::MAX)
            .await
            .unwrap();
        let mine: Vec<_> = receipts.iter().filter(|r| r.0 == ui).collect();
        assert_eq!(
            events.len(),
            mine.len() + 1,
            "{u}: genesis + one event per receipt"
        );
        for (_, seq, id) in mine {
            let e = &events[(*seq - 1) as usize];
            assert!(
                matches!(&e.event.body, mnemo_core::EventBody::MemoryIngested { memory, .. } if memory.to_hex() == *id),
                "{u}: receipt at seq {seq}"
            );
        }
    }

    // 2. the views catch up and equal a fresh replay
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&pg.url("mnemo"))
        .await
        .unwrap();
    let t = Instant::now();
    for u in &users {
        let len = ledger.head(u).await.unwrap().unwrap().len as i64;
        loop {
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT last_seq FROM users WHERE user_id = $1")
                    .bind(u.as_str())
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten();
            let kv = mnemo_projections::kv_head(&js, u).await.ok().flatten();
            if seq == Some(len) && kv.as_ref().is_some_and(|h| h.seq as i64 == len) {
                break;
            }
            if t.elapsed() > Duration::from_secs(90) {
                for i in &instances {
                    let log = std::fs::read_to_string(&i.log).unwrap_or_default();
                    // The first trouble with this user, then the newest lines.
                    let first: Vec<&str> = log
                        .lines()
                        .filter(|l| {
                            l.contains(&format!("{u} ")) || l.contains(&format!("user={u}"))
                        })
                        .take(20)
                        .collect();
                    let warnings: Vec<&str> = log
                        .lines()
                        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                        .filter(|l| !l.contains("dead letter"))
                        .take(60)
                        .collect();
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    eprintln!(
                        "--- {}: first lines naming {u}:\n{}\n--- warnings and errors (first 60, no dead letters):\n{}\n--- newest first:\n{}",
                        i.url(),
                        first.join("\n"),
                        warnings.join("\n"),
                        tail.join("\n")
                    );
                }
                panic!(
                    "{u}: views never caught up: chain {len}, PostgreSQL {seq:?}, KV {:?}",
                    kv.map(|h| h.seq)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let digest = |pool: sqlx::PgPool| async move {
        let q = "SELECT (SELECT md5(string_agg(user_id || ':' || seq || ':' || encode(hash, 'hex'), ',' ORDER BY user_id, seq)) FROM events)
             || (SELECT md5(string_agg(user_id || ':' || encode(memory_id, 'hex') || ':' || seq || ':' || coalesce(body, ''), ',' ORDER BY user_id, seq)) FROM memories)
             || (SELECT md5(string_agg(user_id || ':' || last_seq || ':' || encode(head_hash, 'hex') || ':' || encode(root, 'hex'), ',' ORDER BY user_id)) FROM users)";
        sqlx::query_scalar::<_, String>(q)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let live = digest(pool.clone()).await;
    for i in &mut instances {
        i.kill(); // the live projectors stop: the rebuild below is the only writer
    }
    mnemo_projections::rebuild(
        &js,
        &ledger.clone().into(),
        &pg.url("mnemo"),
        "pg",
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        digest(pool.clone()).await,
        live,
        "the live views equal a fresh replay"
    );
    for u in &users {
        let tip = ledger.head(u).await.unwrap().unwrap();
        let kv = mnemo_projections::kv_head(&js, u).await.unwrap().unwrap();
        assert_eq!((kv.seq, kv.hash), (tip.len, tip.hash), "{u}: KV head");
    }

    // 3. anchoring resumed: an epoch anchored after the chaos, confirmed on the chain
    let reader = mnemo_anchor::AnchorReader::open(&js)
        .await
        .unwrap()
        .unwrap();
    let last_before = reader.last().await.unwrap().map_or(0, |r| r.epoch);
    instances[0].start();
    wait_healthy(&http, &instances[0].url()).await;
    // a write after the chaos, so the next epoch has something new to anchor
    let r = http
        .post(format!("{}/v1/memories", instances[0].url()))
        .bearer_auth(&tokens[0])
        .json(&json!({ "text": "after the storm" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t = Instant::now();
    let resumed = loop {
        if let Some(rec) = reader.last().await.unwrap()
            && rec.epoch > last_before
            && rec.receipt.is_some()
        {
            break rec;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "anchoring did not resume"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // 4. mnemo-audit verifies every chain and every anchor, from JetStream and on chain.
    //    Anchors that anvil's restarts reorganised away are found and re-anchored by the
    //    anchorer (its reorg check runs every second): give it the time to do so.
    let t = Instant::now();
    let anchors_checked = loop {
        let mut checked = 0;
        let mut pending = None;
        for u in &users {
            let (tx, rx) = std::sync::mpsc::sync_channel(1024);
            tokio::spawn(mnemo_audit::online::send_items(
                js.clone(),
                Layout::Sharded { shards: 4 },
                u.clone(),
                mnemo_core::TimestampMs(0),
                mnemo_ledger::SealStore::reader(js.clone()),
                tx,
            ));
            let opts = mnemo_audit::Options::default();
            let outcome = tokio::task::spawn_blocking(move || {
                mnemo_audit::verify_items(rx.into_iter(), &opts)
            })
            .await
            .unwrap()
            .unwrap();
            assert!(outcome.valid(), "{u}: {:?}", outcome.failure);
            let checks = mnemo_audit::onchain::check(&anvil.url(), &outcome.summary.anchors, 1)
                .await
                .unwrap();
            if let Some(c) = checks.iter().find(|c| c.error.is_some()) {
                pending = Some(format!("{u}: epoch {}: {:?}", c.epoch, c.error));
                break;
            }
            checked += checks.len();
        }
        match pending {
            None => break checked,
            Some(p) => {
                assert!(
                    t.elapsed() < Duration::from_secs(90),
                    "anchor never confirmed: {p}"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    println!(
        "chaos: every chain verified by mnemo-audit, {anchors_checked} anchor receipts confirmed on chain, anchoring resumed at epoch {}",
        resumed.epoch
    );
    // The accounts bucket (sealed account seeds), as an older mnemo left it: one replica.
    // Opening the accounts service with MNEMO_REPLICAS brings it to three.
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: mnemo_core::names::ACCOUNTS_BUCKET.into(),
        history: 1,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    mnemo_accounts::Accounts::open(
        &js,
        js.client(),
        nkeys::KeyPair::new_account(),
        nkeys::KeyPair::new_account().public_key(),
        SecretKey::from_bytes(MASTER),
        3,
    )
    .await
    .unwrap();
    // Every stream, KV bucket and object store mnemo made has MNEMO_REPLICAS (3) replicas:
    // chains, keys, objects, heads, the anchorer's state, epochs, anchor records and the
    // NATS accounts.
    let mut names = js.stream_names();
    let mut seen = Vec::new();
    while let Some(n) = futures::StreamExt::next(&mut names).await {
        let n = n.unwrap();
        let mut st = js.get_stream(&n).await.unwrap();
        let replicas = st.info().await.unwrap().config.num_replicas;
        assert_eq!(replicas, 3, "{n} has {replicas} replica(s)");
        seen.push(n);
    }
    for want in [
        "MNEMO-CHAINS-0",
        "KV_mnemo-keys",
        "OBJ_mnemo-objects",
        "KV_mnemo-heads",
        "KV_mnemo-anchor",
        "OBJ_mnemo-epochs",
        "MNEMO-ANCHORS",
        "KV_mnemo-accounts",
    ] {
        assert!(seen.iter().any(|n| n == want), "{want} missing: {seen:?}");
    }
}
