//! `mnemo-trainer`: the per-user search model trainer (`mnemo_worker::trainer`).
//!
//! Environment: what [`mnemo_worker::Config::from_env`] reads, and `MNEMO_TRAINER_STATE`
//! (its state directory, default `./trainer-state`).

use mnemo_worker::trainer::Trainer;
use mnemo_worker::{Config, Shutdown, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mnemo_worker::init_logging();
    let cfg = Config::from_env()?;
    let dir = std::env::var("MNEMO_TRAINER_STATE").unwrap_or_else(|_| "trainer-state".into());
    let worker = cfg.connect().await?;
    let trainer = Trainer::new(worker.clone(), dir.into())?;
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
