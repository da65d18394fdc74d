//! `mnemo-bench process`: tasks per second through a no-op processor, end to end: the
//! dispatcher hands each queued task to a worker (NATS queue group), the worker fetches its
//! input over NATS (mnemo checks the grant, records `inputs_fetched`, opens the memory),
//! derives, signs and submits the result (mnemo checks and appends `memory_derived`),
//! answers, and the task is acknowledged.
//!
//! The baseline, in the same run and against the same server, is what a task costs at
//! least: a raw JetStream work-queue consume and ack, plus the two ledger appends a task
//! makes (its fetch record and its derived memory, signed), with the same concurrency.

use bytes::Bytes;
use futures::StreamExt;
use mnemo_core::{
    Content, GrantConditions, GrantId, MemoryId, MemoryRecord, ProcessorId, SigningKey, UserId,
    commitment, processing,
};
use mnemo_ledger::{DerivedResult, Ledger, LedgerConfig, SecretKey};
use mnemo_processing::responder::TokenCheck;
use mnemo_processing::{DispatchConfig, Dispatcher, Planner, Processing};
use mnemo_testkit::NatsServer;
use mnemo_worker::Worker;
use mnemo_worker::protocol::DerivedRecord;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::measure::human;
use crate::measure::median;

#[derive(clap::Args)]
pub struct Args {
    /// Tasks per round.
    #[arg(long, default_value_t = 2_000)]
    tasks: usize,
    /// Users the memories belong to.
    #[arg(long, default_value_t = 8)]
    users: usize,
    /// Tasks in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rounds (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Which worker: `noop` (the protocol's own cost, in-process) or `asr` (the Python
    /// speech-to-text worker, 1 and 2 processes; `--clips` sets its batch).
    #[arg(long, default_value = "noop", value_parser = ["noop", "asr"])]
    worker: String,
    /// With `--worker asr`: how many times the LibriVox clip set (5 clips, 25 s) is queued
    /// per run.
    #[arg(long, default_value_t = 3)]
    clips: usize,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if a.worker == "asr" {
        return rt.block_on(crate::process_asr::run(a.clips, a.rounds));
    }
    rt.block_on(run_async(a))
}

struct Setup {
    ledger: Ledger,
    client: async_nats::Client,
    /// The worker's own connection, in the processor's inbox space.
    worker_client: async_nats::Client,
    users: Vec<UserId>,
    processing: Processing,
    key: SigningKey,
    name: ProcessorId,
    grants: Vec<GrantId>,
    memories: Vec<(usize, MemoryId)>,
}

async fn setup(server: &NatsServer, a: &Args, round: usize) -> anyhow::Result<Setup> {
    let client = async_nats::connect(server.url()).await?;
    let ledger = Ledger::connect(
        client.clone(),
        LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[5; 32])),
    )
    .await?;
    let js = async_nats::jetstream::new(client.clone());
    let processing = Processing::open(ledger.clone(), js).await?;
    let name = ProcessorId::new(format!("noop{round}"))?;
    let (p, key) = processing
        .registry
        .register(name.clone(), "1".into(), vec![], vec![])
        .await?;
    let users = crate::measure::create_users(&ledger, &format!("proc{round}"), a.users).await?;
    let mut grants = Vec::new();
    for u in &users {
        let (grant, _) = processing
            .grant(u, &p.name, None, GrantConditions::default(), None)
            .await?;
        grants.push(grant);
    }
    eprintln!(
        "  round {round}: {} users granted; ingesting {} memories",
        a.users, a.tasks
    );
    let mut memories = Vec::new();
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..a.tasks {
        let (ledger, u) = (ledger.clone(), users[i % users.len()].clone());
        pending.push(async move {
            let r = ledger.append(&u, mnemo_testkit::note(i)).await;
            (i % a.users, r)
        });
        if pending.len() >= 256
            && let Some((k, r)) = pending.next().await
        {
            memories.push((k, r?.memory.expect("a memory")));
        }
    }
    while let Some((k, r)) = pending.next().await {
        memories.push((k, r?.memory.expect("a memory")));
    }
    let worker_client = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(mnemo_core::replies::processor_inbox(name.as_str()))
        .connect(server.url())
        .await?;
    Ok(Setup {
        ledger,
        client,
        worker_client,
        users,
        processing,
        key,
        name,
        grants,
        memories,
    })
}

fn derived_record(m: &MemoryId) -> MemoryRecord {
    MemoryRecord {
        kind: "noop".into(),
        tags: vec![],
        captured_at: None,
        source: None,
        content_type: "text/plain".into(),
        content: Content::Inline {
            bytes: format!("noop of {m}").into_bytes(),
        },
    }
}

/// The floor: work-queue consume + ack, and the two appends, per task; with `hops`, also
/// the protocol's three NATS request/replies per task (task, fetch, submit) to a raw echo
/// responder, with messages of the protocol's sizes.
async fn baseline(s: &Setup, a: &Args, round: usize, hops: bool) -> anyhow::Result<f64> {
    let round = round * 2 + usize::from(hops);
    if hops {
        let mut echo = s.client.subscribe(format!("bench.echo.{round}.*")).await?;
        let c = s.client.clone();
        tokio::spawn(async move {
            while let Some(m) = echo.next().await {
                if let Some(r) = m.reply {
                    let _ = c.publish(r, m.payload).await;
                }
            }
        });
        s.client.flush().await?;
    }
    let js = async_nats::jetstream::new(s.client.clone());
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: format!("BENCH-WORK-{round}"),
            subjects: vec![format!("bench.work.{round}.>")],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?;
    for (i, (k, m)) in s.memories.iter().enumerate() {
        let body = serde_json::to_vec(&(k, m))?;
        js.publish(format!("bench.work.{round}.{i}"), body.into())
            .await?
            .await?;
    }
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("bench".into()),
            max_ack_pending: a.concurrency as i64,
            ..Default::default()
        })
        .await?;
    eprintln!("  baseline: {} tasks queued", a.tasks);
    let start = Instant::now();
    let mut messages = consumer.messages().await?;
    let slots = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let mut handles = Vec::with_capacity(a.tasks);
    for _ in 0..a.tasks {
        let msg = messages.next().await.expect("a task")?;
        let permit = slots.clone().acquire_owned().await?;
        let client = s.client.clone();
        let (ledger, users, grants, key, name) = (
            s.ledger.clone(),
            s.users.clone(),
            s.grants.clone(),
            s.key.clone(),
            s.name.clone(),
        );
        handles.push(tokio::spawn(async move {
            let (k, m): (usize, MemoryId) = serde_json::from_slice(&msg.payload)?;
            let (u, g) = (&users[k], grants[k]);
            if hops {
                for (hop, size) in [("task", 200), ("fetch", 400), ("submit", 600)] {
                    client
                        .request(
                            format!("bench.echo.{round}.{hop}"),
                            Bytes::from(vec![b'x'; size]),
                        )
                        .await?;
                }
            }
            ledger.record_fetch(u, g, vec![m]).await?;
            let record = derived_record(&m);
            let salt: [u8; 32] = rand::random();
            let c = commitment::commit(&salt, &record.canonical_bytes());
            let sig = processing::sign(
                &key,
                &processing::derived_signing_message(u, &g, &name, "1", &[m], &c),
            );
            ledger
                .append_derived(
                    u,
                    DerivedResult {
                        processor: Some(name.clone()),
                        grant: g,
                        version: "1".into(),
                        inputs: vec![m],
                        record,
                        salt,
                        signature: sig,
                    },
                )
                .await?;
            msg.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            drop(permit);
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(a.tasks as f64 / start.elapsed().as_secs_f64())
}

/// The whole path: planner (not timed), dispatcher, worker over NATS, fetch, submit, ack.
async fn pipeline(s: &Setup, a: &Args) -> anyhow::Result<f64> {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let js = async_nats::jetstream::new(s.client.clone());
    let planner = Planner::new(
        s.ledger.clone(),
        js.clone(),
        s.processing.registry.clone(),
        Duration::from_secs(3600),
    )
    .await?;
    for u in &s.users {
        planner.plan(u).await?;
    }
    eprintln!("  pipeline: tasks planned");
    let token = "bench-token".to_string();
    let check: TokenCheck = {
        let (t, n) = (token.clone(), s.name.clone());
        Arc::new(move |x: &str| (x == t).then(|| n.clone()))
    };
    let (c, p, r) = (s.client.clone(), s.processing.clone(), stop.clone());
    tokio::spawn(async move { mnemo_processing::responder::serve(c, p, check, r).await });
    let worker = Worker::new(
        s.worker_client.clone(),
        s.name.clone(),
        "1".into(),
        token,
        s.key.clone(),
    );
    let opts = mnemo_worker::RunOptions {
        concurrency: a.concurrency,
        queue: a.concurrency,
        ..Default::default()
    };
    tokio::spawn(async move {
        mnemo_worker::run(
            &worker,
            &opts,
            &mnemo_worker::Shutdown::new(),
            mnemo_worker::derive_each(|input| async move {
                Ok(Some(DerivedRecord {
                    kind: "noop".into(),
                    tags: vec![],
                    captured_at: None,
                    source: None,
                    content_type: "text/plain".into(),
                    content: base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        format!("noop of {}", input.memory),
                    ),
                }))
            }),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = Dispatcher::new(
        s.client.clone(),
        s.ledger.clone(),
        s.processing.registry.clone(),
        DispatchConfig {
            max_in_flight: a.concurrency,
            reconcile_every: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let stats = d.stats.clone();
    let start = Instant::now();
    tokio::spawn(d.run(stop));
    loop {
        let done = stats
            .lock()
            .expect("not poisoned")
            .get(&s.name)
            .map_or(0, |c| c.done.load(std::sync::atomic::Ordering::Relaxed));
        if done as usize >= a.tasks {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the pipeline did not finish ({done} of {} tasks)", a.tasks);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = a.tasks as f64 / start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    Ok(rate)
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    println!(
        "mnemo-bench process: {} tasks over {} users, {} in flight, {} rounds, nats-server {}",
        a.tasks,
        a.users,
        a.concurrency,
        a.rounds,
        mnemo_testkit::nats_server_binary().display()
    );
    let server = NatsServer::start();
    let (mut base, mut floor, mut full) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..a.rounds {
        // Alternate the order; each run on fresh users and memories.
        let s1 = setup(&server, a, 3 * round).await?;
        let s2 = setup(&server, a, 3 * round + 1).await?;
        let s3 = setup(&server, a, 3 * round + 2).await?;
        let (b, h, f) = if round % 2 == 0 {
            let b = baseline(&s1, a, round, false).await?;
            let h = baseline(&s3, a, round, true).await?;
            (b, h, pipeline(&s2, a).await?)
        } else {
            let f = pipeline(&s2, a).await?;
            let h = baseline(&s3, a, round, true).await?;
            (baseline(&s1, a, round, false).await?, h, f)
        };
        eprintln!(
            "  round {round}: baseline {} tasks/s, with the 3 request/replies {} tasks/s, pipeline {} tasks/s, ratio {:.3} ({:.3} of the floor with hops)",
            human(b),
            human(h),
            human(f),
            f / b,
            f / h
        );
        base.push(b);
        floor.push(h);
        full.push(f);
    }
    let ratios_h: Vec<f64> = full.iter().zip(&floor).map(|(f, h)| f / h).collect();
    let ratios: Vec<f64> = full.iter().zip(&base).map(|(f, b)| f / b).collect();
    eprintln!(
        "  median ratio per round: {:.3} of the baseline, {:.3} of the floor with hops",
        median(ratios),
        median(ratios_h)
    );
    let (b, h, f) = (median(base), median(floor), median(full));
    crate::measure::print_table(
        "Processing: tasks through a no-op processor",
        &[
            crate::measure::Row {
                what: "dispatch, NATS fetch (recorded), derive, sign, submit, ack".into(),
                rate: f,
                unit: "tasks/s",
                baseline: Some(("work-queue consume+ack + 2 ledger appends".into(), b)),
            },
            crate::measure::Row {
                what: "(the same pipeline)".into(),
                rate: f,
                unit: "tasks/s",
                baseline: Some((
                    "the baseline + the protocol's 3 raw NATS request/replies".into(),
                    h,
                )),
            },
        ],
    );
    crate::measure::headline(
        "process: no-op processor tasks/s",
        format!("{} tasks/s", human(f)),
        format!("queue consume+ack + 2 appends {} tasks/s", human(b)),
        f / b,
        ">= 0.6",
    );
    Ok(())
}
