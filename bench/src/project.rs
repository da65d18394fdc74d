//! `mnemo-bench project`: events/s of the projector into PostgreSQL for a pre-filled set of
//! chains, against a baseline of raw multi-row inserts of the same number of event rows in
//! the same batch size, in the same run; then the time of a full rebuild.

use bytes::Bytes;
use mnemo_core::{SigningKey, UserId};
use mnemo_ledger::{Layout, Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_projections::{Projector, ProjectorConfig, lag};
use mnemo_testkit::{NatsServer, PgServer};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::measure::{cpu_now, human};

/// Options of `mnemo-bench project`.
#[derive(clap::Args)]
pub struct Args {
    /// Events in the pre-filled chains (users' genesis events included).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Users.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Content bytes per memory.
    #[arg(long, default_value_t = 256)]
    payload: usize,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(a))
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let pg = PgServer::start_with(true);
    pg.create_database("mnemo");
    let url = pg.url("mnemo");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await?;
    mnemo_projections::migrate(&pool).await?;
    let client = async_nats::connect(nats.url()).await?;
    let mut cfg = LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[6; 32]));
    cfg.layout = Layout::Sharded { shards: 8 };
    let ledger = Ledger::connect(client.clone(), cfg).await?;
    let js = async_nats::jetstream::new(client);
    println!(
        "mnemo-bench project: {} events over {} users, PostgreSQL with fsync on, 1 projector",
        a.events, a.users
    );

    // Pre-fill.
    let t = Instant::now();
    let users: Arc<Vec<UserId>> =
        Arc::new(crate::measure::create_users(&ledger, "p", a.users).await?);
    let memories = a.events.saturating_sub(a.users);
    let content = Bytes::from(vec![b'x'; a.payload]);
    let tasks = 256.min(a.users).max(1);
    let mut hs = Vec::new();
    for k in 0..tasks {
        let (l, users, content) = (ledger.clone(), users.clone(), content.clone());
        hs.push(tokio::spawn(async move {
            let mut i = k;
            while i < memories {
                let m = NewMemory {
                    kind: "note".into(),
                    tags: vec![format!("t{}", i % 7)],
                    content_type: "text/plain".into(),
                    content: content.clone(),
                    ..Default::default()
                };
                l.append(&users[i % users.len()], m).await?;
                i += tasks;
            }
            anyhow::Ok(())
        }));
    }
    for h in hs {
        h.await??;
    }
    let fill = t.elapsed().as_secs_f64();
    eprintln!(
        "  pre-filled in {fill:.1} s ({} events/s)",
        human(a.events as f64 / fill)
    );

    // Baseline: raw multi-row inserts of as many event-shaped rows, 2,000 per transaction.
    sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
        .execute(&pool)
        .await?;
    let t = Instant::now();
    let batch = 2000usize;
    let mut done = 0usize;
    while done < a.events {
        let n = batch.min(a.events - done);
        let users: Vec<String> = (done..done + n)
            .map(|i| format!("p{}", i % a.users))
            .collect();
        let seqs: Vec<i64> = (done..done + n).map(|i| (i / a.users) as i64 + 1).collect();
        let h: Vec<Vec<u8>> = (0..n).map(|i| blake_ish(done + i)).collect();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO raw_events (user_id, seq, hash, prev, kind, ts, signer, stream, stream_seq)
             SELECT u, s, h, h, 'memory_ingested', now(), h, 'S', s FROM UNNEST($1::text[], $2::bigint[], $3::bytea[]) AS x(u, s, h)",
        )
        .bind(&users)
        .bind(&seqs)
        .bind(&h)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done += n;
    }
    let raw = a.events as f64 / t.elapsed().as_secs_f64();

    // The projector from nothing to caught up.
    let (stop, rx) = tokio::sync::watch::channel(false);
    let p = Projector::new(
        js.clone(),
        ledger.clone(),
        pool.clone(),
        ProjectorConfig::default(),
    );
    let stats = p.stats();
    let t = Instant::now();
    let pid = nats.pid().expect("running");
    let [me, server] = cpu_now(pid);
    let cpu0 = (me, server, machine_busy());
    let task = tokio::spawn(p.run(rx));
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if stats.applied.load(std::sync::atomic::Ordering::Relaxed) as usize >= a.events
            && lag(&js, &pool, "pg").await? == 0
        {
            break;
        }
    }
    let proj_secs = t.elapsed().as_secs_f64();
    let [me, server] = cpu_now(pid);
    let cpu1 = (me, server, machine_busy());
    let n = a.events as f64;
    let (me, ns, all) = (
        (cpu1.0 - cpu0.0) * 1e3 / n,
        (cpu1.1 - cpu0.1) * 1e3 / n,
        (cpu1.2 - cpu0.2) * 1e3 / n,
    );
    eprintln!(
        "  cpu µs/event while projecting: projector {me:.1}, nats-server {ns:.1}, everything else (PostgreSQL) {:.1}, machine {all:.1} of {:.1} available",
        all - me - ns,
        2.0 * proj_secs * 1e6 / n
    );
    let proj = a.events as f64 / proj_secs;

    // A full rebuild while the live projector runs.
    let t = Instant::now();
    let report =
        mnemo_projections::rebuild(&js, &ledger.clone().into(), &url, "pg", |_, _| {}).await?;
    let rebuild_secs = t.elapsed().as_secs_f64();
    stop.send(true)?;
    task.await??;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        rows as usize == a.events,
        "projected {rows} rows of {}",
        a.events
    );

    println!("\n## project (events/s)\n");
    println!("| what | rate | baseline (same run) | ratio |");
    println!("| --- | ---: | --- | ---: |");
    println!(
        "| projector: verify + decrypt + PostgreSQL views + KV views | {} | raw UNNEST insert of event rows: {} | {:.3} |",
        human(proj),
        human(raw),
        proj / raw
    );
    println!(
        "| rebuild of the PostgreSQL view ({} events) | {:.1} s ({} events/s) | | |",
        report.events,
        rebuild_secs,
        human(report.events as f64 / rebuild_secs)
    );
    crate::measure::headline(
        &format!("projection into PostgreSQL ({} events)", a.events),
        format!("{} events/s", human(proj)),
        format!("raw UNNEST insert of event rows: {} rows/s", human(raw)),
        proj / raw,
        ">= 20k events/s",
    );
    println!(
        "\nRATE projector = {} events/s (target >= 20k); projected {} events in {proj_secs:.1} s",
        human(proj),
        rows
    );
    Ok(())
}

/// Busy CPU ms of the whole machine (all cores), from /proc/stat.
fn machine_busy() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let first = s.lines().next().unwrap_or("");
    let v: Vec<f64> = first
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    busy * 10.0
}

fn blake_ish(i: usize) -> Vec<u8> {
    let mut v = vec![0u8; 32];
    v[..8].copy_from_slice(&(i as u64).to_be_bytes());
    v
}
