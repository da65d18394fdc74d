//! `mnemo-bench ingest`: ledger appends (encrypt + sign + chain + publish + ack, and the
//! wrapped data key) against raw JetStream async publishes of the same message size to the
//! same subjects, in one process against one freshly spawned nats-server per durability
//! mode. The ledger runs twice in each round: format version 1 (one signature per event)
//! and version 2 (one seal per batch, docs/decisions/0013-seals.md), each on its own users.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mnemo_core::{SigningKey, UserId};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_testkit::{NatsOptions, NatsServer};
use std::sync::Arc;
use std::time::Instant;

use crate::measure::median;
use crate::measure::{cpu_now, cpu_per_op, human};

/// Options of `mnemo-bench ingest`.
#[derive(clap::Args)]
pub struct Args {
    /// Events per measurement with the default durability.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per measurement with fsync on every write.
    #[arg(long, default_value_t = 4_000)]
    events_fsync: usize,
    /// User counts to run.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    users: Vec<usize>,
    /// Shared streams in the sharded layout.
    #[arg(long, default_value_t = 8)]
    shards: u32,
    /// Rounds per figure (median printed).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Content bytes per memory.
    #[arg(long, default_value_t = 512)]
    payload: usize,
    /// Concurrent appending tasks.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Layouts to run: `per-user`, `sharded`.
    #[arg(long, value_delimiter = ',', default_value = "per-user,sharded")]
    layouts: Vec<String>,
    /// Skip the fsync-per-write runs.
    #[arg(long)]
    no_fsync: bool,
}

struct Row {
    durability: &'static str,
    layout: String,
    users: usize,
    raw: f64,
    /// Raw publishes each carrying one ed25519 signature: the floor for any signed chain.
    signed: f64,
    /// Raw publishes guarded as the ledger's are (one in flight per subject, each with
    /// `Nats-Expected-Last-Subject-Sequence`): what the guard costs the server.
    guarded: f64,
    /// Format version 1: one signature per event.
    v1: f64,
    /// Format version 2: seals.
    ledger: f64,
    /// Events per seal (version 2, over every round).
    per_seal: f64,
    /// Seals by size bucket (1, 2-3, 4-7, ... 256+).
    sizes: [u64; 9],
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    println!(
        "mnemo-bench ingest: {} B content, {} rounds, concurrency {}, nats-server {}",
        a.payload,
        a.rounds,
        a.concurrency,
        mnemo_testkit::nats_server_binary().display()
    );
    for (durability, sync_always, n) in [
        ("default (fsync every 2 min)", false, a.events),
        ("fsync every write", true, a.events_fsync),
    ] {
        if sync_always && a.no_fsync {
            continue;
        }
        for layout in [Layout::PerUser, Layout::Sharded { shards: a.shards }] {
            let name = if matches!(layout, Layout::PerUser) {
                "per-user"
            } else {
                "sharded"
            };
            if !a.layouts.iter().any(|l| l == name) {
                continue;
            }
            for &users in &a.users {
                let server = NatsServer::start_with(NatsOptions {
                    sync_always,
                    ..Default::default()
                });
                let m = measure(&server, layout, users, n, a).await?;
                let lname = match layout {
                    Layout::PerUser => "per-user".to_string(),
                    Layout::Sharded { shards } => format!("sharded ({shards} streams)"),
                };
                eprintln!(
                    "  {durability} / {lname} / {users} users: raw {} raw+sign {} ledger v1 {} v2 {} ratio v2/raw {:.3}, {:.1} events per seal",
                    human(m.raw),
                    human(m.signed),
                    human(m.v1),
                    human(m.ledger),
                    m.ledger / m.raw,
                    m.per_seal
                );
                rows.push(Row {
                    durability,
                    layout: lname,
                    users,
                    ..m
                });
            }
        }
    }
    println!("\n## ingest (events/s, medians)\n");
    println!(
        "| durability | layout | users | raw JetStream publish (baseline) | ledger v2 (seals) | v2 / raw | ledger v1 (a signature per event) | v1 / raw | v2 / v1 | events per seal | raw publish + 1 signature each (v1 floor) | floor / raw | raw guarded as the ledger (one in flight per subject + expected last subject seq) | guarded / raw | v2 / guarded |"
    );
    println!(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.3} | {} | {:.3} | {:.3} | {:.1} | {} | {:.3} | {} | {:.3} | {:.3} |",
            r.durability,
            r.layout,
            r.users,
            human(r.raw),
            human(r.ledger),
            r.ledger / r.raw,
            human(r.v1),
            r.v1 / r.raw,
            r.ledger / r.v1,
            r.per_seal,
            human(r.signed),
            r.signed / r.raw,
            human(r.guarded),
            r.guarded / r.raw,
            r.ledger / r.guarded,
        );
    }
    println!(
        "
### seal sizes seen (version 2, seals per size)
"
    );
    println!(
        "| durability | layout | users | 1 | 2-3 | 4-7 | 8-15 | 16-31 | 32-63 | 64-127 | 128-255 | 256 |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let cells: Vec<String> = r.sizes.iter().map(u64::to_string).collect();
        println!(
            "| {} | {} | {} | {} |",
            r.durability,
            r.layout,
            r.users,
            cells.join(" | ")
        );
    }
    if let Some(r) = rows.iter().find(|r| {
        r.durability.starts_with("default") && r.layout.starts_with("sharded") && r.users == 1000
    }) {
        println!(
            "\nRATIO ledger v2/raw, sharded, 1000 users, default durability = {:.3} (target >= 0.5; v1 {:.3})",
            r.ledger / r.raw,
            r.v1 / r.raw
        );
        crate::measure::headline(
            "ledger appends, sharded layout, 1,000 users",
            format!("{} events/s", human(r.ledger)),
            format!("raw JetStream publish: {} msgs/s", human(r.raw)),
            r.ledger / r.raw,
            ">= 0.5",
        );
    }
    Ok(())
}

async fn measure(
    server: &NatsServer,
    layout: Layout,
    users: usize,
    n: usize,
    a: &Args,
) -> anyhow::Result<Row> {
    let client = async_nats::connect(server.url()).await?;
    let mut cfg = LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[5; 32]));
    cfg.layout = layout;
    let mut cfg_v1 = cfg.clone();
    cfg_v1.format = mnemo_core::FORMAT_V1;
    let ledger = Ledger::connect(client.clone(), cfg).await?;
    let ledger_v1 = Ledger::connect(client.clone(), cfg_v1).await?;
    let ids = crate::measure::create_users(&ledger, "bench", users).await?;
    let ids_v1 = crate::measure::create_users(&ledger_v1, "old", users).await?;
    let content = Bytes::from(vec![b'm'; a.payload]);
    // The raw baseline publishes messages of the size a ledger append stores.
    let probe = ledger.append(&ids[0], memory(&content)).await?;
    let msg_size = ledger.events(&ids[0], probe.seq, 1).await?[0].sealed.len() + 300;
    let raw_payload = Bytes::from(vec![b'r'; msg_size]);
    // Raw publishes go to subjects of their own in the same streams, so the chains stay
    // valid; per-user streams get a second subject for this.
    let js = async_nats::jetstream::new(client.clone());
    let raw_subjects: Vec<String> = ids
        .iter()
        .map(|u| format!("{}.raw", ledger.locate(u).subject))
        .collect();
    for u in &ids {
        let loc = ledger.locate(u);
        let mut s = js.get_stream(&loc.stream).await?;
        let mut c = s.info().await?.config.clone();
        let raw = match layout {
            Layout::PerUser => format!("{}.raw", loc.subject),
            Layout::Sharded { .. } => {
                format!("{}.*.raw", loc.subject.rsplit_once('.').expect("tokens").0)
            }
        };
        if !c.subjects.contains(&raw) {
            c.subjects.push(raw);
            js.update_stream(c).await?;
        }
    }
    let mut raw_rates = Vec::new();
    let mut signed_rates = Vec::new();
    let mut ledger_rates = Vec::new();
    let mut v1_rates = Vec::new();
    let mut guarded_rates = Vec::new();
    let stats0 = ledger.stats();
    let signer = SigningKey::from_bytes(&[6; 32]);
    let server_pid = server.pid().expect("running");
    // Profiling aid: only the version 2 ledger, for as long as asked (`perf record -p`).
    if let Some(secs) = std::env::var("MNEMO_BENCH_PROFILE_V2_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        eprintln!("profiling: ledger v2 appends for {secs} s");
        let t = Instant::now();
        while t.elapsed().as_secs() < secs {
            ledger_appends(&ledger, &ids, &content, n, a.concurrency).await?;
        }
    }
    for _ in 0..a.rounds {
        let c0 = cpu_now(server_pid);
        raw_rates.push(publish(&js, &raw_subjects, &raw_payload, n, a.concurrency, 1, None).await?);
        let g0 = cpu_now(server_pid);
        guarded_rates.push(guarded(&js, &raw_subjects, &raw_payload, n, a.concurrency).await?);
        let g1 = cpu_now(server_pid);
        let [gc, gs] = cpu_per_op(g0, g1, n);
        eprintln!("    cpu µs/event: raw guarded client {gc:.1} server {gs:.1}");
        let c1 = cpu_now(server_pid);
        let cores = std::thread::available_parallelism().map_or(2, |p| p.get());
        signed_rates.push(
            publish(
                &js,
                &raw_subjects,
                &raw_payload,
                n,
                a.concurrency,
                cores,
                Some(&signer),
            )
            .await?,
        );
        let c2 = cpu_now(server_pid);
        v1_rates.push(ledger_appends(&ledger_v1, &ids_v1, &content, n, a.concurrency).await?);
        let c3 = cpu_now(server_pid);
        ledger_rates.push(ledger_appends(&ledger, &ids, &content, n, a.concurrency).await?);
        let c4 = cpu_now(server_pid);
        let ([r0, r1], [s0, s1], [v0, v1], [l0, l1]) = (
            cpu_per_op(c0, c1, n),
            cpu_per_op(c1, c2, n),
            cpu_per_op(c2, c3, n),
            cpu_per_op(c3, c4, n),
        );
        eprintln!(
            "    cpu µs/event: raw client {r0:.1} server {r1:.1} | raw+sign client {s0:.1} server {s1:.1} | ledger v1 client {v0:.1} server {v1:.1} | ledger v2 client {l0:.1} server {l1:.1}"
        );
    }
    let stats = ledger.stats();
    let seals = stats.seals - stats0.seals;
    let sealed = stats.sealed_events - stats0.sealed_events;
    Ok(Row {
        durability: "",
        layout: String::new(),
        users,
        raw: median(raw_rates),
        signed: median(signed_rates),
        guarded: median(guarded_rates),
        v1: median(v1_rates),
        ledger: median(ledger_rates),
        per_seal: sealed as f64 / seals.max(1) as f64,
        sizes: std::array::from_fn(|i| stats.seal_sizes[i] - stats0.seal_sizes[i]),
    })
}

/// Raw publishes to `subjects` guarded as the ledger guards its appends: each subject has one
/// publish in flight, with `Nats-Expected-Last-Subject-Sequence` naming the subject's last
/// acknowledged sequence; `window` subjects in flight at most.
async fn guarded(
    js: &async_nats::jetstream::Context,
    subjects: &[String],
    payload: &Bytes,
    n: usize,
    window: usize,
) -> anyhow::Result<f64> {
    use async_nats::jetstream::message::PublishMessage;
    let mut last: std::collections::HashMap<String, u64> =
        subjects.iter().map(|s| (s.clone(), 0)).collect();
    // The last sequence of each raw subject so far (earlier rounds wrote some).
    for s in subjects {
        let stream = js.get_stream(js.stream_by_subject(s).await?).await?;
        if let Ok(m) = stream.direct_get_last_for_subject(s.clone()).await {
            last.insert(s.clone(), m.sequence);
        }
    }
    let t = Instant::now();
    let mut inflight = FuturesUnordered::new();
    let mut next = 0usize;
    let mut sent = 0usize;
    let mut done = 0usize;
    let mut idle: Vec<String> = subjects.to_vec();
    while done < n {
        while sent < n && inflight.len() < window && !idle.is_empty() {
            let s = idle.swap_remove(next % idle.len());
            next += 1;
            let msg = PublishMessage::build()
                .payload(payload.clone())
                .expected_last_subject_sequence(last[&s]);
            let ack = js.send_publish(s.clone(), msg).await?;
            inflight.push(async move { (s, ack.await) });
            sent += 1;
        }
        let (s, ack) = inflight.next().await.expect("in flight");
        last.insert(s.clone(), ack?.sequence);
        idle.push(s);
        done += 1;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn memory(content: &Bytes) -> NewMemory {
    NewMemory {
        kind: "note".into(),
        tags: vec!["bench".into()],
        content_type: "text/plain".into(),
        content: content.clone(),
        ..Default::default()
    }
}

/// JetStream publishes of `payload` to `subjects` in turn, `window` unacknowledged at most,
/// from `tasks` tasks. With `sign`, each message is a fresh buffer whose blake3 hash is
/// signed with ed25519 and the signature written into it: the floor for any chain whose
/// events are each signed (run on as many tasks as cores, or it would sign on one core).
async fn publish(
    js: &async_nats::jetstream::Context,
    subjects: &[String],
    payload: &Bytes,
    n: usize,
    window: usize,
    tasks: usize,
    sign: Option<&SigningKey>,
) -> anyhow::Result<f64> {
    use ed25519_dalek::Signer;
    let subjects = Arc::new(subjects.to_vec());
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..tasks {
        let (js, subjects, payload, key) =
            (js.clone(), subjects.clone(), payload.clone(), sign.cloned());
        let window = (window / tasks).max(1);
        handles.push(tokio::spawn(async move {
            let mut acks = FuturesUnordered::new();
            for i in (k..n).step_by(tasks) {
                let message = match &key {
                    None => payload.clone(),
                    Some(key) => {
                        let mut m = payload.to_vec();
                        let h = blake3::hash(&m[64..]);
                        m[..64].copy_from_slice(&key.sign(h.as_bytes()).to_bytes());
                        m.into()
                    }
                };
                let ack = js
                    .publish(subjects[i % subjects.len()].clone(), message)
                    .await?;
                acks.push(ack.into_future());
                if acks.len() >= window {
                    acks.next().await.expect("non-empty")?;
                }
            }
            while let Some(r) = acks.next().await {
                r?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

pub(crate) async fn ledger_appends(
    ledger: &Ledger,
    ids: &[UserId],
    content: &Bytes,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let ids = Arc::new(ids.to_vec());
    let tasks = concurrency.min(n).max(1);
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..tasks {
        let (ledger, ids, content) = (ledger.clone(), ids.clone(), content.clone());
        handles.push(tokio::spawn(async move {
            let mut i = k;
            while i < n {
                ledger.append(&ids[i % ids.len()], memory(&content)).await?;
                i += tasks;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
