//! `mnemo-noop-worker`: a worker that derives, from each input, a record holding the
//! input's hash (kind `noop`). The tests' and the benchmark's worker; a template for real
//! ones (docs/WORKERS.md).
//!
//! Environment: `MNEMO_NATS_URL`, `MNEMO_PROCESSOR`, `MNEMO_PROCESSOR_VERSION`,
//! `MNEMO_PROCESSOR_TOKEN`, `MNEMO_PROCESSOR_SEED` (64 hex), optional
//! `MNEMO_NOOP_FAIL_KIND` (refuse inputs of that kind: a failing worker for dead letters),
//! optional `MNEMO_NOOP_DELAY_MS` (work that long per task), optional
//! `MNEMO_NATS_CREDS` (a processor's `.creds` file, operator mode: the connection then uses
//! the inbox prefix `_INBOX_<processor>` its credentials allow).

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mnemo_core::{ProcessorId, SigningKey};
use mnemo_processing::client::Worker;
use mnemo_processing::protocol::DerivedRecord;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).with_context(|| format!("{k} is required"));
    let name = env("MNEMO_PROCESSOR")?;
    let client = match std::env::var("MNEMO_NATS_CREDS") {
        Ok(path) => {
            async_nats::ConnectOptions::with_credentials_file(&path)
                .await
                .with_context(|| format!("reading {path}"))?
                .custom_inbox_prefix(format!("_INBOX_{name}"))
                .connect(env("MNEMO_NATS_URL")?)
                .await?
        }
        Err(_) => async_nats::connect(env("MNEMO_NATS_URL")?).await?,
    };
    let mut seed = [0u8; 32];
    hex::decode_to_slice(env("MNEMO_PROCESSOR_SEED")?.trim(), &mut seed)
        .context("MNEMO_PROCESSOR_SEED must be 64 hex characters")?;
    let fail_kind = std::env::var("MNEMO_NOOP_FAIL_KIND").ok();
    let delay = std::env::var("MNEMO_NOOP_DELAY_MS")
        .ok()
        .and_then(|d| d.parse().ok())
        .map(std::time::Duration::from_millis);
    let worker = Worker::new(
        client,
        ProcessorId::new(name)?,
        env("MNEMO_PROCESSOR_VERSION")?,
        env("MNEMO_PROCESSOR_TOKEN")?,
        SigningKey::from_bytes(&seed),
    );
    eprintln!("mnemo-noop-worker: taking tasks of {}", worker.processor);
    worker
        .run(move |input| {
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
        })
        .await?;
    Ok(())
}
