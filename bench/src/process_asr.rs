//! `mnemo-bench process --worker asr`: speech to text through mnemo, with the Python ASR
//! worker (`workers/asr`) as 1 and 2 processes against an in-process mnemo (planner,
//! dispatcher, the processors' NATS endpoints) on a real nats-server.
//!
//! Reported: audio seconds transcribed per wall second, tasks per second, and CPU seconds
//! (the worker processes') per audio second. The baseline, in the same run: the same clips
//! decoded by one Python process with the worker's own decoding code and no mnemo, NATS or
//! chain (`mnemo_asr.decode_bench`): what transcription costs by itself.

use mnemo_core::{GrantConditions, ProcessorId, SigningKey, UserId};
use mnemo_ledger::{Ledger, LedgerConfig, NewMemory, SecretKey};
use mnemo_processing::responder::TokenCheck;
use mnemo_processing::{DispatchConfig, Dispatcher, Planner, Processing};
use mnemo_testkit::NatsServer;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::measure::median;

const TOKEN: &str = "bench-asr-token";

fn speech() -> anyhow::Result<PathBuf> {
    Ok(mnemo_devstack::speech_data().join("librivox"))
}

use mnemo_devstack::{asr_dir, python};

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime), 1-based in proc(5); after the name: index 11, 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// The clips: each LibriVox WAV of the test data, `copies` times.
fn clips(copies: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(speech()?)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no LibriVox clips in {}",
        speech()?.display()
    );
    Ok(files
        .iter()
        .cycle()
        .take(files.len() * copies)
        .cloned()
        .collect())
}

struct Run {
    audio_s: f64,
    wall_s: f64,
    cpu_s: f64,
    tasks: usize,
}

async fn baseline(files: &[PathBuf]) -> anyhow::Result<Run> {
    let out = Command::new(python())
        .args(["-m", "mnemo_asr.decode_bench", "audio/wav"])
        .args(files)
        .env("PYTHONPATH", asr_dir())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "decode_bench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(Run {
        audio_s: v["audio_s"].as_f64().unwrap_or(0.0),
        wall_s: v["wall_s"].as_f64().unwrap_or(1.0),
        cpu_s: v["cpu_s"].as_f64().unwrap_or(0.0),
        tasks: files.len(),
    })
}

async fn through_mnemo(
    server: &NatsServer,
    files: &[PathBuf],
    workers: usize,
    round: usize,
) -> anyhow::Result<Run> {
    let client = async_nats::connect(server.url()).await?;
    let ledger = Ledger::connect(
        client.clone(),
        LedgerConfig::new(SecretKey::random(), SigningKey::from_bytes(&[7; 32])),
    )
    .await?;
    let js = async_nats::jetstream::new(client.clone());
    let processing = Processing::open(ledger.clone(), js.clone()).await?;
    let name = ProcessorId::new(format!("asr{round}"))?;
    let (p, key) = processing
        .registry
        .register(name.clone(), "1".into(), vec!["audio".into()], vec![])
        .await?;
    let user = UserId::new(format!("asr-bench-{round}"))?;
    ledger.create_user(&user).await?;
    let audio_s = {
        let mut total = 0.0;
        for (i, f) in files.iter().enumerate() {
            let bytes = std::fs::read(f)?;
            total += (bytes.len().saturating_sub(44)) as f64 / 32000.0;
            ledger
                .append(
                    &user,
                    NewMemory {
                        kind: "audio".into(),
                        content_type: "audio/wav".into(),
                        content: bytes.into(),
                        idempotency_key: Some(format!("clip-{i}")),
                        ..Default::default()
                    },
                )
                .await?;
        }
        total
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let planner = Planner::new(
        ledger.clone(),
        js.clone(),
        processing.registry.clone(),
        Duration::from_secs(3600),
    )
    .await?;
    let check: TokenCheck = {
        let n = name.clone();
        Arc::new(move |t: &str| (t == TOKEN).then(|| n.clone()))
    };
    let (c, pr, r) = (client.clone(), processing.clone(), stop.clone());
    tokio::spawn(async move { mnemo_processing::responder::serve(c, pr, check, r).await });
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(python())
                .args(["-m", "mnemo_asr"])
                .env("PYTHONPATH", asr_dir())
                .env("MNEMO_NATS_URL", server.url())
                .env("MNEMO_PROCESSOR", name.as_str())
                .env("MNEMO_PROCESSOR_VERSION", "1")
                .env("MNEMO_PROCESSOR_TOKEN", TOKEN)
                .env("MNEMO_PROCESSOR_SEED", hex::encode(key.to_bytes()))
                .env("MNEMO_LOG", "WARNING")
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    // Let the workers load their model before the clock starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu0: f64 = children.iter().map(|c| cpu_of(c.id())).sum();
    processing
        .grant(&user, &p.name, None, GrantConditions::default(), None)
        .await?;
    let start = Instant::now();
    planner.plan(&user).await?;
    let d = Dispatcher::new(
        client.clone(),
        ledger.clone(),
        processing.registry.clone(),
        DispatchConfig {
            reconcile_every: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let stats = d.stats.clone();
    tokio::spawn(d.run(stop));
    loop {
        let done = stats
            .lock()
            .expect("not poisoned")
            .get(&name)
            .map_or(0, |c| c.done.load(std::sync::atomic::Ordering::Relaxed));
        if done as usize >= files.len() {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(900),
            "not done in 15 minutes ({done} of {})",
            files.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_s = children.iter().map(|c| cpu_of(c.id())).sum::<f64>() - cpu0;
    let _ = stop_tx.send(true);
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(Run {
        audio_s,
        wall_s,
        cpu_s,
        tasks: files.len(),
    })
}

/// Runs the ASR benchmark: `copies` of the clip set per run, `rounds` rounds.
pub async fn run(copies: usize, rounds: usize) -> anyhow::Result<()> {
    let files = clips(copies)?;
    println!(
        "mnemo-bench process --worker asr: {} clips per run, {rounds} rounds, {} cores",
        files.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let server = NatsServer::start();
    let (mut base, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let b = baseline(&files).await?;
        let w1 = through_mnemo(&server, &files, 1, round * 2).await?;
        let w2 = through_mnemo(&server, &files, 2, round * 2 + 1).await?;
        for (what, r) in [("decode only", &b), ("1 worker", &w1), ("2 workers", &w2)] {
            eprintln!(
                "  round {round}: {what:>11}: {:.2} audio s/s, {:.2} tasks/s, {:.3} CPU s per audio s ({:.0} s of audio in {:.1} s)",
                r.audio_s / r.wall_s,
                r.tasks as f64 / r.wall_s,
                r.cpu_s / r.audio_s,
                r.audio_s,
                r.wall_s
            );
        }
        base.push(b);
        one.push(w1);
        two.push(w2);
    }
    let m = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let speed = |r: &Run| r.audio_s / r.wall_s;
    let (b, s1, s2) = (m(&base, speed), m(&one, speed), m(&two, speed));
    println!();
    println!(
        "| ASR (pocketsphinx 5.1.1, en-us) | audio s per wall s | tasks/s | CPU s per audio s | ratio to decode-only |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (what, runs, s) in [
        ("decode only, one Python process (baseline)", &base, b),
        ("through mnemo, 1 worker process", &one, s1),
        ("through mnemo, 2 worker processes", &two, s2),
    ] {
        println!(
            "| {what} | {:.2} | {:.2} | {:.3} | {:.3} |",
            s,
            m(runs, |r| r.tasks as f64 / r.wall_s),
            m(runs, |r| r.cpu_s / r.audio_s),
            s / b
        );
    }
    crate::measure::headline(
        "process --worker asr: audio s per wall s, 2 workers",
        format!("{s2:.2} audio s/s (1 worker {s1:.2})"),
        format!("decode only {b:.2} audio s/s"),
        s2 / b,
        "none set; 2 workers / 1 worker shows the scaling",
    );
    println!("2 workers / 1 worker: {:.3}", s2 / s1);
    Ok(())
}
