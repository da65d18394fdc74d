//! `mnemo-noop-worker`: a worker that derives, from each input, a record holding the
//! input's hash (kind `noop`). The tests' and the benchmark's worker; a template for real
//! ones (docs/WORKERS.md §8).
//!
//! Environment: what [`mnemo_worker::Config::from_env`] reads, and optionally
//! `MNEMO_NOOP_FAIL_KIND` (refuse inputs of that kind: a failing worker for dead letters)
//! and `MNEMO_NOOP_DELAY_MS` (work that long per task).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mnemo_worker::protocol::DerivedRecord;
use mnemo_worker::{Config, Shutdown, derive_each, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mnemo_worker::init_logging();
    let cfg = Config::from_env()?;
    let fail_kind = std::env::var("MNEMO_NOOP_FAIL_KIND").ok();
    let delay = std::env::var("MNEMO_NOOP_DELAY_MS")
        .ok()
        .and_then(|d| d.parse().ok())
        .map(std::time::Duration::from_millis);
    let worker = cfg.connect().await?;
    let shutdown = Shutdown::on_signals();
    tracing::info!(processor = %worker.processor, "mnemo-noop-worker: taking tasks");
    run(
        &worker,
        &cfg.run,
        &shutdown,
        derive_each(move |input| {
            let fail = fail_kind.as_deref() == Some(input.kind.as_str());
            async move {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                if fail {
                    return Err(format!("refusing kind {}", input.kind));
                }
                let digest = blake3::hash(input.content.as_bytes());
                Ok(Some(DerivedRecord {
                    kind: "noop".into(),
                    tags: vec![],
                    captured_at: input.captured_at,
                    source: Some("mnemo-noop-worker".into()),
                    content_type: "text/plain; charset=utf-8".into(),
                    content: B64.encode(format!("noop of {}: {digest}", input.memory)),
                }))
            }
        }),
    )
    .await?;
    Ok(())
}
