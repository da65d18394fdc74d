//! `mnemo-bench epoch`: what one epoch of the anchor service costs when `--changed` users
//! moved since the last, against nats-server fsyncing every write (`sync_interval:
//! always`, the production setting), with the anchor transaction on anvil. Each round moves
//! the heads of `--changed` users (new users in the first round, the same users again in
//! the next: their records are rewritten) and runs one epoch. Printed per round: the
//! epoch's time, the bytes it stored (the epoch log's stream, and the epoch objects') per
//! changed user, and the entries it wrote. The baseline, same server, same run: as many
//! bare KV puts of 100 bytes, 64 in flight (what an epoch could not beat if it wrote one
//! entry per changed user).

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use mnemo_anchor::AnchorerConfig;
use mnemo_core::Hash32;
use mnemo_core::names::{EPOCH_LOG_BUCKET, EPOCHS_BUCKET, HEADS_BUCKET, kv_stream, object_stream};
use mnemo_ledger::Layout;
use mnemo_testkit::{NatsOptions, Stack};
use std::time::Instant;

use crate::measure::median;

/// Options of `mnemo-bench epoch`.
#[derive(clap::Args)]
pub struct Args {
    /// Users changed per epoch.
    #[arg(long, default_value_t = 10_000)]
    changed: usize,
    /// Epochs measured (the first appends new users, the next move them again).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(a))
}

async fn stream_bytes(js: &jetstream::Context, name: &str) -> anyhow::Result<u64> {
    Ok(match js.get_stream(name).await {
        Ok(mut s) => s.info().await?.state.bytes,
        Err(_) => 0,
    })
}

async fn stream_msgs(js: &jetstream::Context, name: &str) -> anyhow::Result<u64> {
    Ok(match js.get_stream(name).await {
        Ok(mut s) => s.info().await?.state.last_sequence,
        Err(_) => 0,
    })
}

async fn run_async(a: &Args) -> anyhow::Result<()> {
    let s = Stack::builder()
        .layout(Layout::Sharded { shards: 4 })
        .without_projector()
        .nats(NatsOptions {
            sync_always: true,
            ..Default::default()
        })
        .anvil()
        .start()
        .await;
    let anchorer = s.anchorer(AnchorerConfig::default()).await;
    let heads =
        s.js.create_key_value(kv::Config {
            bucket: HEADS_BUCKET.into(),
            history: 1,
            ..Default::default()
        })
        .await?;
    println!(
        "mnemo-bench epoch: {} changed users per epoch, {} epochs, nats-server fsyncing every write",
        a.changed, a.rounds
    );

    // Baseline: bare KV puts, 64 in flight.
    let scratch =
        s.js.create_key_value(kv::Config {
            bucket: "bench-scratch".into(),
            history: 1,
            ..Default::default()
        })
        .await?;
    let t = Instant::now();
    futures::stream::iter(0..a.changed)
        .map(|i| {
            let kv = scratch.clone();
            async move { kv.put(format!("k{i}"), vec![7u8; 100].into()).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let bare = t.elapsed().as_secs_f64();
    println!("  baseline: {} bare KV puts in {bare:.3} s", a.changed);

    let log = kv_stream(EPOCH_LOG_BUCKET);
    let objects = object_stream(EPOCHS_BUCKET);
    let mut times = Vec::new();
    let mut per_user = Vec::new();
    for round in 1..=a.rounds {
        let seq = round as u64;
        futures::stream::iter(0..a.changed)
            .map(|i| {
                let heads = heads.clone();
                let v = serde_json::to_vec(&serde_json::json!({
                    "seq": seq,
                    "hash": Hash32([seq as u8; 32]),
                    "root": Hash32([i as u8; 32]),
                }))
                .expect("json");
                async move { heads.put(format!("bench{i}"), v.into()).await }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let bytes = stream_bytes(&s.js, &log).await? + stream_bytes(&s.js, &objects).await?;
        let msgs = stream_msgs(&s.js, &log).await? + stream_msgs(&s.js, &objects).await?;
        let t = Instant::now();
        let rec = anchorer
            .run_epoch()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no head moved"))?;
        let took = t.elapsed().as_secs_f64();
        let stored =
            stream_bytes(&s.js, &log).await? + stream_bytes(&s.js, &objects).await? - bytes;
        let wrote = stream_msgs(&s.js, &log).await? + stream_msgs(&s.js, &objects).await? - msgs;
        let b = stored as f64 / a.changed as f64;
        println!(
            "  epoch {}: {took:.3} s, {stored} bytes stored ({b:.0} per changed user, {:.2} MB), {wrote} entries written ({:.2} per changed user), {} leaves",
            rec.epoch,
            stored as f64 / 1e6,
            wrote as f64 / a.changed as f64,
            rec.leaf_count
        );
        times.push(took);
        per_user.push(b);
    }
    let t = median(times);
    println!(
        "\n| changed users | epoch (median) | bytes per changed user (median) | bare KV puts, same count | ratio epoch / bare puts |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {} | {t:.3} s | {:.0} | {bare:.3} s | {:.2} |",
        a.changed,
        median(per_user),
        t / bare
    );
    Ok(())
}
