//! `mnemo-trainer`: the per-user search model trainer (`mnemo_worker::trainer`).
//!
//! Environment: what [`mnemo_worker::Config::from_env`] reads, and `MNEMO_TRAINER_STATE`
//! (its state directory, default `./trainer-state`) and `MNEMO_TRAINER_MAX_USERS` (how many
//! users' corpora stay in memory while unused, default 10,000; the others are read from
//! their files when their next task comes).

use mnemo_worker::trainer::Trainer;
use mnemo_worker::{Config, Shutdown, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mnemo_worker::init_logging();
    let cfg = Config::from_env()?;
    let dir = std::env::var("MNEMO_TRAINER_STATE").unwrap_or_else(|_| "trainer-state".into());
    let worker = cfg.connect().await?;
    let budget = match std::env::var("MNEMO_TRAINER_MAX_USERS") {
        Ok(v) => Some(v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            anyhow::anyhow!("MNEMO_TRAINER_MAX_USERS must be a whole number above 0, not {v:?}")
        })?),
        Err(_) => None,
    };
    let trainer = Trainer::new(worker.clone(), dir.into(), budget)?;
    let shutdown = Shutdown::on_signals();
    tokio::spawn(trainer.clone().watch_stale(shutdown.clone()));
    tracing::info!(processor = %worker.processor, "mnemo-trainer: taking tasks");
    let t = trainer.clone();
    run(&worker, &cfg.run, &shutdown, move |job| {
        let t = t.clone();
        async move { t.handle(job).await }
    })
    .await?;
    Ok(())
}
