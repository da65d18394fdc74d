//! `mnemo-bench seals`: what format version 2 costs and saves, each figure against a
//! baseline of the same run (docs/decisions/0013-seals.md):
//!
//! - **storage**: JetStream's stored bytes per event, version 1 against version 2, at batch
//!   sizes 1 to 256 (the events of a batch across users, the seal records included);
//! - **latency**: append latency p50 and p99 at 1 user and a low rate, version 1 and
//!   version 2 interleaved (A/B) on one server;
//! - **server audit**: `mnemo-audit verify --nats --all-users` over every chain against
//!   raw per-event batch verification of as many signatures on the same threads;
//! - **export under load**: one user's bundle written while every user appends (its events
//!   fall in different batches), verified, against the same raw baseline.

use bytes::Bytes;
use ed25519_dalek::Signer;
use futures::StreamExt;
use mnemo_core::{
    Custody, Event, EventBody, FORMAT_V1, FORMAT_V2, Hash32, Head, KeyRole, MemoryId, PublicKey,
    SealedBatch, SigningKey, TimestampMs, UserId, commitment,
};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_testkit::NatsServer;
use std::time::{Duration, Instant};

use crate::measure::{human, median};

/// Options of `mnemo-bench seals`.
#[derive(clap::Args)]
pub struct Args {
    /// Batch sizes of the storage measurement.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,3,4,8,16,32,64,128,256"
    )]
    sizes: Vec<usize>,
    /// Appends per version in the latency measurement.
    #[arg(long, default_value_t = 300)]
    appends: usize,
    /// Pause between two appends there (the low rate).
    #[arg(long, default_value_t = 5)]
    pause_ms: u64,
    /// Users of the audit measurements.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Events in all of the server audit.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events of the one user whose export is verified.
    #[arg(long, default_value_t = 20_000)]
    export_events: usize,
    /// Verifying threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Rounds of the verification figures (median).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The format the export measurement writes (1: the same measurement without seals).
    #[arg(long, default_value_t = 2)]
    export_format: u8,
    /// Only these parts: storage, latency, audit, export.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "storage,latency,audit,export"
    )]
    only: Vec<String>,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let part = |p: &str| a.only.iter().any(|o| o == p);
        if part("storage") {
            storage(a).await?;
        }
        if part("latency") {
            latency(a).await?;
        }
        if part("audit") {
            server_audit(a).await?;
        }
        if part("export") {
            export_under_load(a).await?;
        }
        anyhow::Ok(())
    })
}

fn threads(a: &Args) -> usize {
    a.threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Stored bytes per event: the same events (a memory with a 512-byte sealed payload) in
/// version 1 and version 2, published as the ledger stores them, measured by JetStream.
async fn storage(a: &Args) -> anyhow::Result<()> {
    let server = NatsServer::start();
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await?);
    let key = SigningKey::from_bytes(&[5; 32]);
    let signer = PublicKey(key.verifying_key()).id();
    let sealed = vec![0x5a_u8; 1 + 8 + 24 + 1 + 32 + 600 + 16];
    println!("\n## seals: stored bytes per event (JetStream stream state), version 1 vs 2\n");
    println!(
        "| batch size | events | v1 bytes/event | v2 bytes/event (records included) | v2 - v1 | bound |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | --- |");
    for &b in &a.sizes {
        let n = (1024 / b).max(4) * b;
        let users: Vec<UserId> = (0..b.min(64))
            .map(|i| UserId::new(format!("s{i}")).expect("valid"))
            .collect();
        let mut bytes = [0u64; 2];
        for (v, version) in [(0usize, FORMAT_V1), (1, FORMAT_V2)] {
            let name = format!("SZ{version}-{b}");
            let subj = format!("sz{version}.{b}");
            js.create_stream(async_nats::jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{subj}.>")],
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await?;
            let mut heads: Vec<Head> = users.iter().map(|u| Head::empty(u.clone())).collect();
            let mut pending = Vec::new();
            for i in 0..n {
                let who = i % users.len();
                let memory = MemoryId([(i % 251) as u8; 16]);
                let c = commitment::commit(&[i as u8; 32], &sealed[..64]);
                let body = if heads[who].len == 0 {
                    EventBody::KeyAdded {
                        key: PublicKey(key.verifying_key()),
                        role: KeyRole::Custody,
                    }
                } else {
                    EventBody::MemoryIngested {
                        memory,
                        capture: None,
                    }
                };
                let payload = matches!(body, EventBody::MemoryIngested { .. }).then_some(c);
                let (u, h) = heads[who].next_unsigned(
                    version,
                    signer,
                    TimestampMs(1_764_115_200_000 + i as i64),
                    body,
                    payload,
                    None,
                );
                heads[who].len = u.seq.0;
                heads[who].hash = h;
                pending.push((who, u, h));
                if pending.len() == b || i + 1 == n {
                    let batch: Vec<_> = std::mem::take(&mut pending);
                    let hashes: Vec<Hash32> = batch.iter().map(|(_, _, h)| *h).collect();
                    let stored = if version == FORMAT_V2 && hashes.len() > 1 {
                        let s = SealedBatch::sign(&key, &hashes);
                        let ack = js
                            .publish(format!("{subj}.seals"), s.to_record(&hashes).into())
                            .await?
                            .await?;
                        Some((s, ack.sequence))
                    } else {
                        None
                    };
                    for (index, (who, u, h)) in batch.into_iter().enumerate() {
                        let e = if version == FORMAT_V1 {
                            u.sign(&key)
                        } else {
                            match &stored {
                                Some((s, seq)) => Event {
                                    unsigned: u,
                                    custody: Custody::Seal(s.link(index as u32, Some(*seq))),
                                },
                                None => u.sign(&key),
                            }
                        };
                        let _ = h;
                        let body = mnemo_ledger::envelope::encode(
                            &e.to_wire(),
                            if e.payload.is_some() { &sealed } else { &[] },
                        );
                        js.publish(format!("{subj}.{}", users[who]), body)
                            .await?
                            .await?;
                    }
                }
            }
            let mut s = js.get_stream(&name).await?;
            bytes[v] = s.info().await?.state.bytes;
        }
        let (v1, v2) = (bytes[0] as f64 / n as f64, bytes[1] as f64 / n as f64);
        println!(
            "| {b} | {n} | {v1:.1} | {v2:.1} | {:+.1} | {} |",
            v2 - v1,
            if v2 - v1 <= 64.0 {
                "<= 64: ok"
            } else {
                "> 64: OVER"
            }
        );
    }
    Ok(())
}

fn note(i: usize) -> NewMemory {
    NewMemory {
        kind: "note".into(),
        tags: vec!["bench".into()],
        content_type: "text/plain".into(),
        content: Bytes::from(format!(
            "memory {i} of the seal benchmark, {}",
            "x".repeat(400)
        )),
        ..Default::default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Append latency at 1 user and a low rate, version 1 and 2 interleaved on one server.
async fn latency(a: &Args) -> anyhow::Result<()> {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await?;
    let cfg = LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[5; 32]));
    let mut cfg_v1 = cfg.clone();
    cfg_v1.format = FORMAT_V1;
    let v2 = Ledger::connect(client.clone(), cfg).await?;
    let v1 = Ledger::connect(client.clone(), cfg_v1).await?;
    let (u1, u2) = (UserId::new("one")?, UserId::new("two")?);
    v1.create_user(&u1).await?;
    v2.create_user(&u2).await?;
    for i in 0..20 {
        v1.append(&u1, note(i)).await?;
        v2.append(&u2, note(i)).await?;
    }
    let (mut l1, mut l2) = (Vec::new(), Vec::new());
    for i in 0..a.appends {
        // A then B, then B then A: neither always goes first.
        let order: [(bool, &Ledger, &UserId); 2] = if i % 2 == 0 {
            [(false, &v1, &u1), (true, &v2, &u2)]
        } else {
            [(true, &v2, &u2), (false, &v1, &u1)]
        };
        for (is_v2, l, u) in order {
            let t = Instant::now();
            l.append(u, note(i)).await?;
            let us = t.elapsed().as_secs_f64() * 1e6;
            if is_v2 {
                l2.push(us)
            } else {
                l1.push(us)
            };
            tokio::time::sleep(Duration::from_millis(a.pause_ms)).await;
        }
    }
    l1.sort_by(f64::total_cmp);
    l2.sort_by(f64::total_cmp);
    let (p50_1, p99_1, p50_2, p99_2) = (
        percentile(&l1, 0.5),
        percentile(&l1, 0.99),
        percentile(&l2, 0.5),
        percentile(&l2, 0.99),
    );
    let per_seal = v2.stats().sealed_events as f64 / v2.stats().seals.max(1) as f64;
    println!(
        "\n## seals: append latency, 1 user, one append every {} ms, {} each, A/B interleaved\n",
        a.pause_ms, a.appends
    );
    println!("| | p50 µs | p99 µs |");
    println!("| --- | ---: | ---: |");
    println!("| version 1 (a signature per event) | {p50_1:.0} | {p99_1:.0} |");
    println!("| version 2 (seals; {per_seal:.2} events per seal) | {p50_2:.0} | {p99_2:.0} |");
    println!("| v2 / v1 | {:.3} | {:.3} |", p50_2 / p50_1, p99_2 / p99_1);
    println!(
        "\nRATIO latency v2/v1 at low load: p50 {:.3}, p99 {:.3} (target within 10%)",
        p50_2 / p50_1,
        p99_2 / p99_1
    );
    Ok(())
}

/// Raw batch verification of `n` signatures of 64-byte messages, in batches of the
/// verifier's size, on `threads` threads: signatures per second.
fn raw_verify_rate(n: usize, threads: usize, rounds: usize) -> f64 {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let vk = key.verifying_key();
    let batch = mnemo_core::verify::DEFAULT_BATCH;
    let msgs: Vec<[u8; 64]> = (0..batch)
        .map(|i| {
            let mut m = [0u8; 64];
            m[..8].copy_from_slice(&(i as u64).to_be_bytes());
            m
        })
        .collect();
    let sigs: Vec<ed25519_dalek::Signature> = msgs.iter().map(|m| key.sign(m)).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let keys = vec![vk; batch];
    let per_thread = n.div_ceil(threads);
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut done = 0;
                    while done < per_thread {
                        let k = batch.min(per_thread - done);
                        assert!(
                            ed25519_dalek::verify_batch(&refs[..k], &sigs[..k], &keys[..k]).is_ok()
                        );
                        done += k;
                    }
                });
            }
        });
        rates.push((per_thread * threads) as f64 / t.elapsed().as_secs_f64());
    }
    median(rates)
}

/// A fresh server with a ledger in the sharded layout (8 streams) writing `format`, and
/// `a.users` users named `prefix<n>`.
async fn sharded(
    a: &Args,
    prefix: &str,
    format: u8,
) -> anyhow::Result<(NatsServer, async_nats::Client, Ledger, Vec<UserId>)> {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await?;
    let mut cfg = LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[5; 32]));
    cfg.layout = Layout::Sharded { shards: 8 };
    cfg.format = format;
    let ledger = Ledger::connect(client.clone(), cfg).await?;
    let users = crate::measure::create_users(&ledger, prefix, a.users).await?;
    Ok((server, client, ledger, users))
}

async fn fill(ledger: &Ledger, users: &[UserId], n: usize) -> anyhow::Result<f64> {
    let content = Bytes::from(vec![b'm'; 256]);
    crate::ingest::ledger_appends(ledger, users, &content, n, 256).await
}

/// `mnemo-audit verify --nats --all-users` over every chain against raw batch verification.
async fn server_audit(a: &Args) -> anyhow::Result<()> {
    let (_server, client, ledger, users) = sharded(a, "a", FORMAT_V2).await?;
    let n = a.events.saturating_sub(a.users);
    let t = Instant::now();
    let rate = fill(&ledger, &users, n).await?;
    let st = ledger.stats();
    eprintln!(
        "  wrote {n} events in {:.1} s ({} events/s), {:.1} events per seal",
        t.elapsed().as_secs_f64(),
        human(rate),
        st.sealed_events as f64 / st.seals.max(1) as f64
    );
    let threads = threads(a);
    let js = async_nats::jetstream::new(client);
    let opts = mnemo_audit::Options {
        threads,
        ..Default::default()
    };
    let mut rates = Vec::new();
    let mut last = None;
    for _ in 0..a.rounds {
        let t = Instant::now();
        let o = mnemo_audit::server::verify_all(&js, &opts, TimestampMs(0)).await?;
        anyhow::ensure!(o.valid(), "{:?}", o.failures.first());
        rates.push(o.events as f64 / t.elapsed().as_secs_f64());
        last = Some(o);
    }
    let o = last.expect("ran");
    let audit = median(rates);
    let raw = raw_verify_rate(o.events as usize, threads, a.rounds);
    println!(
        "\n## seals: operator's audit of a whole server ({} users, {} events, {threads} threads)\n",
        o.users, o.events
    );
    println!("| | rate | signatures |");
    println!("| --- | ---: | ---: |");
    println!(
        "| raw ed25519 batch verify, one signature per event, {threads} threads (baseline) | {} sig/s | {} |",
        human(raw),
        o.events
    );
    println!(
        "| mnemo-audit verify --nats --all-users ({} seal records read once, {} seals) | {} events/s | {} |",
        o.seal_records,
        o.seals_verified,
        human(audit),
        o.signatures
    );
    println!(
        "\nRATIO all-users audit / raw per-event batch verify = {:.3} (target > 1.0)",
        audit / raw
    );
    Ok(())
}

/// One user's export written while every user appends, verified, against raw verification.
async fn export_under_load(a: &Args) -> anyhow::Result<()> {
    let (_server, _client, ledger, users) = sharded(a, "e", a.export_format).await?;
    let me = users[0].clone();
    let others = users[1..].to_vec();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (ledger, stop) = (ledger.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fill(&ledger, &others, 20_000).await?;
            }
            anyhow::Ok(())
        })
    };
    // This user's events, a few at a time: each falls in a batch with others' events.
    let mut mine = futures::stream::FuturesUnordered::new();
    for i in 0..a.export_events {
        mine.push(ledger.append(&me, note(i)));
        if mine.len() >= 4 {
            mine.next().await.expect("non-empty")?;
        }
    }
    while let Some(r) = mine.next().await {
        r?;
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("export.jsonl");
    let mut out = Vec::new();
    mnemo_api::export::write_bundle(&ledger, None, &me, TimestampMs(0), &mut out).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await??;
    std::fs::write(&path, &out)?;
    if let Some(keep) = std::env::var_os("MNEMO_BENCH_KEEP") {
        std::fs::write(keep, &out)?;
    }
    let threads = threads(a);
    let opts = mnemo_audit::Options {
        threads,
        ..Default::default()
    };
    let mut rates = Vec::new();
    let mut summary = None;
    for _ in 0..a.rounds {
        let f = std::io::BufReader::new(std::fs::File::open(&path)?);
        let t = Instant::now();
        let o = mnemo_audit::verify_items(mnemo_audit::read_bundle(f, |_| {}), &opts)?;
        anyhow::ensure!(o.valid(), "{:?}", o.failure);
        rates.push(o.summary.events as f64 / t.elapsed().as_secs_f64());
        summary = Some(o.summary);
    }
    let s = summary.expect("ran");
    let audit = median(rates);
    let raw = raw_verify_rate(s.events as usize, threads, a.rounds);
    let st = ledger.stats();
    println!(
        "\n## seals: one user's export written while {} users append ({} events, {threads} threads)\n",
        a.users, s.events
    );
    println!("| | rate | signatures |");
    println!("| --- | ---: | ---: |");
    println!(
        "| raw ed25519 batch verify, one signature per event (baseline) | {} sig/s | {} |",
        human(raw),
        s.events
    );
    println!(
        "| mnemo-audit verify --bundle (its events in {} seals; the server averaged {:.1} events per seal) | {} events/s | {} |",
        s.signatures,
        st.sealed_events as f64 / st.seals.max(1) as f64,
        human(audit),
        s.signatures
    );
    println!(
        "\nRATIO one user's export verify / raw per-event batch verify = {:.3} (target >= 0.8)",
        audit / raw
    );
    Ok(())
}
