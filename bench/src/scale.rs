//! `mnemo-bench scale`: one server holding many users, per layout: user creation and append
//! rates, the server's memory, its restart time, and how far projection lags behind a
//! burst of appends. The baseline of each append rate is the 1,000-user per-user figure of
//! the same run (the design default).

use bytes::Bytes;
use mnemo_core::SigningKey;
use mnemo_ledger::{Layout, Ledger, LedgerConfig, SecretKey};
use mnemo_testkit::{NatsServer, PgServer};
use serde::Serialize;
use std::time::{Duration, Instant};

use crate::measure::human;

/// Options of `mnemo-bench scale`.
#[derive(clap::Args)]
pub struct Args {
    /// User counts in the per-user layout.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    per_user: Vec<usize>,
    /// User counts in the sharded layout.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sharded: Vec<usize>,
    /// Shared streams of the sharded layout.
    #[arg(long, default_value_t = 16)]
    shards: u32,
    /// Appends measured per configuration.
    #[arg(long, default_value_t = 20_000)]
    appends: usize,
    /// Concurrent appending tasks.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Also write the figures as JSON here (for `mnemo-bench report`).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// The whole stack instead (`mnemo dev`, release; see `scale_full`): `--users`,
    /// `--steady-secs`, `--cold-events`, `--connected`.
    #[arg(long)]
    full: bool,
    /// With `--full`: user counts, one fresh stack each (the first is the baseline).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    users: Vec<usize>,
    /// With `--full`: seconds of steady load from 1% of the users.
    #[arg(long, default_value_t = 20)]
    steady_secs: u64,
    /// With `--full`: events in the cold user's chain.
    #[arg(long, default_value_t = 100_000)]
    cold_events: usize,
    /// With `--full`: devices kept connected at once.
    #[arg(long, default_value_t = 10_000)]
    connected: usize,
    /// With `--full`: users that get a device and a signed capture over NATS.
    #[arg(long, default_value_t = usize::MAX)]
    capture_users: usize,
}

/// One configuration's figures.
#[derive(Serialize)]
pub struct Point {
    /// `per-user` or `sharded`.
    pub layout: String,
    /// Users on the server.
    pub users: usize,
    /// Users created per second (stream + genesis event, or genesis event only).
    pub create_rate: f64,
    /// Appends per second.
    pub append_rate: f64,
    /// nats-server resident memory after the appends, MiB.
    pub server_mib: f64,
    /// Seconds from a SIGKILL to the chains answering again.
    pub restart_secs: f64,
    /// Events the PostgreSQL view was behind right after the burst.
    pub lag_after_burst: u64,
    /// Seconds the projector then took to catch up.
    pub catch_up_secs: f64,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    if a.full {
        return crate::scale_full::run(&crate::scale_full::Args {
            users: a.users.clone(),
            concurrency: a.concurrency.min(64),
            steady_secs: a.steady_secs,
            cold_events: a.cold_events,
            shards: a.shards,
            connected: a.connected,
            capture_users: a.capture_users,
        });
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(a))
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let pg = PgServer::start();
    let mut points = Vec::new();
    let configs: Vec<(Layout, usize)> = a
        .per_user
        .iter()
        .map(|&u| (Layout::PerUser, u))
        .chain(
            a.sharded
                .iter()
                .map(|&u| (Layout::Sharded { shards: a.shards }, u)),
        )
        .collect();
    println!(
        "mnemo-bench scale: {} appends per configuration, concurrency {}, one nats-server each",
        a.appends, a.concurrency
    );
    for (i, (layout, users)) in configs.into_iter().enumerate() {
        let p = measure(&pg, &format!("scale{i}"), layout, users, a).await?;
        eprintln!(
            "  {} / {} users: create {}/s append {}/s, server {:.0} MiB, restart {:.1} s, lag {} caught up in {:.1} s",
            p.layout,
            p.users,
            human(p.create_rate),
            human(p.append_rate),
            p.server_mib,
            p.restart_secs,
            p.lag_after_burst,
            p.catch_up_secs
        );
        points.push(p);
    }
    let base = points
        .iter()
        .find(|p| p.layout == "per-user" && p.users == 1000)
        .map(|p| p.append_rate);
    println!("\n## scale (one server)\n");
    println!(
        "| layout | users | users created/s | appends/s | vs per-user 1,000 (baseline) | server RSS | restart | lag after burst | catch-up |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for p in &points {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} MiB | {:.1} s | {} events | {:.1} s |",
            p.layout,
            p.users,
            human(p.create_rate),
            human(p.append_rate),
            base.map_or(String::new(), |b| format!("{:.3}", p.append_rate / b)),
            p.server_mib,
            p.restart_secs,
            p.lag_after_burst,
            p.catch_up_secs
        );
    }
    if let (Some(b), Some(top)) = (base, points.iter().rev().find(|p| p.layout == "sharded")) {
        crate::measure::headline(
            &format!("appends, sharded layout, {} users on one server", top.users),
            format!("{} events/s", human(top.append_rate)),
            format!("per-user layout, 1,000 users: {}/s", human(b)),
            top.append_rate / b,
            "decides the layout switch",
        );
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_vec_pretty(&points)?)?;
    }
    Ok(())
}

async fn measure(
    pg: &PgServer,
    db: &str,
    layout: Layout,
    users: usize,
    a: &Args,
) -> anyhow::Result<Point> {
    let mut server = NatsServer::start();
    let client = async_nats::connect(server.url()).await?;
    let mut cfg = LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[5; 32]));
    cfg.layout = layout;
    let ledger = Ledger::connect(client.clone(), cfg.clone()).await?;
    let t = Instant::now();
    let ids = crate::measure::create_users(&ledger, "s", users).await?;
    let create_rate = users as f64 / t.elapsed().as_secs_f64();
    // the projector starts with the chains' genesis events, then sees the burst arrive
    pg.create_database(db);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect(&pg.url(db))
        .await?;
    mnemo_projections::migrate(&pool).await?;
    let js = async_nats::jetstream::new(client.clone());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let projector = tokio::spawn(
        mnemo_projections::Projector::new(
            js.clone(),
            ledger.clone(),
            pool.clone(),
            mnemo_projections::ProjectorConfig {
                kv_heads: false,
                rescan: Duration::from_millis(500),
                ..Default::default()
            },
        )
        .run(rx),
    );
    let content = Bytes::from(vec![b'm'; 512]);
    let append_rate =
        crate::ingest::ledger_appends(&ledger, &ids, &content, a.appends, a.concurrency).await?;
    let lag_after_burst = mnemo_projections::lag(&js, &pool, "pg").await.unwrap_or(0);
    let t = Instant::now();
    while mnemo_projections::lag(&js, &pool, "pg")
        .await
        .unwrap_or(u64::MAX)
        > 0
    {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "projection stuck");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let catch_up_secs = t.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = projector.await;
    let server_mib = crate::measure::status_mib(server.pid(), "VmRSS:");
    // restart: SIGKILL, start on the same store, until a chain head answers again
    drop(ledger);
    drop(client);
    let t = Instant::now();
    server.kill_and_restart();
    let ledger = loop {
        if let Ok(client) = async_nats::connect(server.url()).await
            && let Ok(l) = Ledger::connect(client, cfg.clone()).await
        {
            break l;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(900), "restart stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last = &ids[users - 1];
    while ledger.head(last).await.ok().flatten().is_none() {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(900), "restart stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restart_secs = t.elapsed().as_secs_f64();
    Ok(Point {
        layout: match layout {
            Layout::PerUser => "per-user".into(),
            Layout::Sharded { .. } => "sharded".into(),
        },
        users,
        create_rate,
        append_rate,
        server_mib,
        restart_secs,
        lag_after_burst,
        catch_up_secs,
    })
}
