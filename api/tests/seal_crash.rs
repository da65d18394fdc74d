//! Crash safety of seals (format version 2, docs/decisions/0013-seals.md): `mnemo serve`
//! (the real binary) is stopped with SIGKILL at the exact point between storing a batch's
//! seal record and publishing any of its events, while clients ingest over HTTP. After a
//! restart and the clients' retries (same idempotency keys): every acknowledged memory is in
//! its chain exactly once, every chain verifies (`mnemo-audit`'s verifier over the stream),
//! and no stored event links to a seal record that is not there.
//!
//! The other crash of the issue, nats-server killed during publishing, is the chaos run's
//! (`chaos.rs`: three NATS nodes killed one at a time under load, every chain verified
//! afterwards), which writes format version 2 like every test.

use mnemo_core::{Custody, Event, SealLink, SigningKey, UserId};
use mnemo_testkit::{NatsServer, PgServer, free_port};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MASTER: [u8; 32] = [0x41; 32];
const SIGNING: [u8; 32] = [0x42; 32];
const JWT: [u8; 32] = [0x43; 32];

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(port: u16, env: &[(&str, String)], log: &std::path::Path) -> Serve {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Serve(
        Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn healthy(http: &reqwest::Client, url: &str) {
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
async fn sigkill_between_sealing_and_publishing_loses_nothing_acknowledged() {
    let nats = NatsServer::start();
    let pg = PgServer::start();
    pg.create_database("mnemo");
    let dir = tempfile::tempdir().unwrap();
    let pause = dir.path().join("paused");
    let env = vec![
        ("MNEMO_NATS_URL", nats.url()),
        ("DATABASE_URL", pg.url("mnemo")),
        ("MNEMO_MASTER_KEY", hex::encode(MASTER)),
        ("MNEMO_SIGNING_KEY", hex::encode(SIGNING)),
        ("MNEMO_JWT_KEY", hex::encode(JWT)),
        ("MNEMO_LAYOUT", "sharded".to_owned()),
        ("MNEMO_SHARDS", "4".to_owned()),
        ("MNEMO_LOG", "warn".to_owned()),
    ];
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let auth = mnemo_api::auth::Auth::new(&SigningKey::from_bytes(&JWT), "mnemo", "mnemo-api");
    let admin = auth.issue("admin", true, 3600);
    let users: Vec<UserId> = (0..16)
        .map(|i| UserId::new(format!("c{i}")).unwrap())
        .collect();
    let tokens: Vec<String> = users
        .iter()
        .map(|u| auth.issue(u.as_str(), false, 3600))
        .collect();

    // 1. The users, then the pausing instance.
    {
        let _setup = serve(port, &env, &dir.path().join("setup.log"));
        healthy(&http, &url).await;
        for u in &users {
            let r = http
                .post(format!("{url}/v1/users"))
                .bearer_auth(&admin)
                .json(&json!({ "id": u }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    }
    let mut env_paused = env.clone();
    env_paused.push(("MNEMO_TEST_PAUSE_AFTER_SEAL", pause.display().to_string()));
    let mut paused = serve(port, &env_paused, &dir.path().join("paused.log"));
    healthy(&http, &url).await;

    // 2. Ingest from every user at once until a batch of two or more is sealed and stored:
    //    the instance then stops before publishing it.
    let ingest = |i: usize, key: String| {
        let (http, url, token) = (http.clone(), url.clone(), tokens[i % tokens.len()].clone());
        async move {
            let r = http
                .post(format!("{url}/v1/memories"))
                .bearer_auth(&token)
                .header("idempotency-key", &key)
                .json(&json!({ "text": format!("memory {key}") }))
                .send()
                .await
                .ok()?;
            if r.status() == 201 || r.status() == 200 {
                r.json::<Value>().await.ok()
            } else {
                None
            }
        }
    };
    let mut acked: HashMap<String, Value> = HashMap::new();
    let mut sent: Vec<(usize, String)> = Vec::new();
    let t = Instant::now();
    let mut round = 0;
    while !pause.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no batch of two or more sealed"
        );
        let batch: Vec<(usize, String)> = (0..users.len() * 2)
            .map(|i| (i, format!("r{round}-{i}")))
            .collect();
        let answers = futures::future::join_all(batch.iter().map(|(i, k)| ingest(*i, k.clone())));
        // The paused requests never answer: give the rest time, then look for the file.
        let answers = tokio::time::timeout(Duration::from_secs(3), answers).await;
        if let Ok(answers) = answers {
            for ((_, k), a) in batch.iter().zip(answers) {
                if let Some(a) = a {
                    acked.insert(k.clone(), a);
                }
            }
        }
        sent.extend(batch);
        round += 1;
    }
    // 3. SIGKILL at the pause point: the seal record is stored, none of its events is.
    paused.0.kill().unwrap();
    paused.0.wait().unwrap();
    drop(paused);
    let before_restart = acked.len();

    // 4. A fresh instance; every request not acknowledged is retried with its key.
    let _again = serve(port, &env, &dir.path().join("again.log"));
    healthy(&http, &url).await;
    for (i, k) in &sent {
        if acked.contains_key(k) {
            continue;
        }
        let t = Instant::now();
        let a = loop {
            if let Some(a) = ingest(*i, k.clone()).await {
                break a;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{k} never acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        acked.insert(k.clone(), a);
    }
    assert_eq!(acked.len(), sent.len());

    // 5. Every receipt is in its chain exactly once; every chain verifies; no event links
    //    to a missing seal record; the killed batch's record is there with no event.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let seals = mnemo_ledger::SealStore::reader(js.clone());
    let mut records_used = HashSet::new();
    let mut in_chains: HashMap<(String, u64), String> = HashMap::new();
    for u in &users {
        let loc = mnemo_ledger::Layout::Sharded { shards: 4 }.locate(u);
        let stream = js.get_stream(&loc.stream).await.unwrap();
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                filter_subject: loc.subject.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        let last = stream
            .direct_get_last_for_subject(loc.subject.clone())
            .await
            .unwrap()
            .sequence;
        let mut msgs = futures::StreamExt::boxed(consumer.messages().await.unwrap());
        while let Some(m) = futures::StreamExt::next(&mut msgs).await {
            let m = m.unwrap();
            let seq = m.info().unwrap().stream_sequence;
            let (wire, _) = mnemo_ledger::envelope::decode(&m.payload).unwrap();
            let (e, h) = Event::from_wire(&wire).unwrap();
            if let Custody::Seal(SealLink::Stored { seal, .. }) = e.custody {
                assert!(
                    seals.get(seal).await.unwrap().is_some(),
                    "{u} seq {} links to seal {seal}, which is not stored",
                    e.seq
                );
                records_used.insert(seal);
            }
            if e.body.new_memory().is_some() {
                let dup = in_chains.insert((u.to_string(), e.seq.0), h.to_string());
                assert!(dup.is_none());
            }
            if seq >= last {
                break;
            }
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1024);
        tokio::spawn(mnemo_audit::online::send_items(
            js.clone(),
            mnemo_ledger::Layout::Sharded { shards: 4 },
            u.clone(),
            mnemo_core::TimestampMs(0),
            seals.clone(),
            tx,
        ));
        let outcome = tokio::task::spawn_blocking(move || {
            mnemo_audit::verify_items(rx.into_iter(), &mnemo_audit::Options::default())
        })
        .await
        .unwrap()
        .unwrap();
        assert!(outcome.valid(), "{u}: {:?}", outcome.failure);
    }
    let mut seen = HashSet::new();
    for (k, a) in &acked {
        let user = users[sent.iter().find(|(_, s)| s == k).unwrap().0 % users.len()].to_string();
        let seq = a["seq"].as_u64().unwrap();
        let hash = a["event_hash"].as_str().unwrap().to_owned();
        assert_eq!(
            in_chains.get(&(user.clone(), seq)),
            Some(&hash),
            "acknowledged {k} ({user} seq {seq}) is not in the chain"
        );
        assert!(seen.insert((user, seq)), "two receipts for one event");
    }
    assert_eq!(in_chains.len(), acked.len(), "an event no receipt names");
    // The killed batch's record: stored, and no event of any chain names it.
    let mut stream = js
        .get_stream(mnemo_core::names::SEALS_STREAM)
        .await
        .unwrap();
    let records = stream.info().await.unwrap().state.messages;
    assert!(
        records > records_used.len() as u64,
        "the record of the killed batch is stored ({records} records, {} used)",
        records_used.len()
    );
    eprintln!(
        "seal crash: {} memories acknowledged ({} before the kill), {} seal records, {} named by events",
        acked.len(),
        before_restart,
        records,
        records_used.len()
    );
}
