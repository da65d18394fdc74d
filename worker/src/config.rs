//! A worker's configuration, from its environment, and its connection. Secrets (the token
//! and the seed) are read, never printed: `Debug` leaves them out.

use std::time::Duration;

use mnemo_core::{ProcessorId, SigningKey};

use crate::client::Worker;
use crate::error::WorkerError;
use crate::run::RunOptions;

/// What a worker process needs.
pub struct Config {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// The processor's `.creds` file (operator mode).
    pub nats_creds: Option<String>,
    /// The processor's name.
    pub processor: ProcessorId,
    /// Its version.
    pub version: String,
    token: String,
    seed: [u8; 32],
    /// Task handling.
    pub run: RunOptions,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("nats_creds", &self.nats_creds)
            .field("processor", &self.processor)
            .field("version", &self.version)
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// From the environment (docs/WORKERS.md §8): `MNEMO_NATS_URL`, optional
    /// `MNEMO_NATS_CREDS`, `MNEMO_PROCESSOR`, `MNEMO_PROCESSOR_VERSION`,
    /// `MNEMO_PROCESSOR_TOKEN`, `MNEMO_PROCESSOR_SEED` (64 hex), optional
    /// `MNEMO_WORKER_CONCURRENCY` (tasks worked at once, default 4),
    /// `MNEMO_WORKER_QUEUE` (tasks held waiting, default the concurrency) and
    /// `MNEMO_WORKER_GRACE_MS` (how long SIGTERM waits for tasks in flight, default 20000).
    pub fn from_env() -> Result<Self, WorkerError> {
        let var =
            |k: &str| std::env::var(k).map_err(|_| WorkerError::Config(format!("{k} is required")));
        let num = |k: &str, d: u64| -> Result<u64, WorkerError> {
            match std::env::var(k) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| WorkerError::Config(format!("{k} must be a number, not {v:?}"))),
                Err(_) => Ok(d),
            }
        };
        let mut seed = [0u8; 32];
        hex::decode_to_slice(var("MNEMO_PROCESSOR_SEED")?.trim(), &mut seed).map_err(|_| {
            WorkerError::Config("MNEMO_PROCESSOR_SEED must be 64 hex characters".into())
        })?;
        let concurrency = num("MNEMO_WORKER_CONCURRENCY", 4)?.max(1) as usize;
        Ok(Self {
            nats_url: var("MNEMO_NATS_URL")?,
            nats_creds: std::env::var("MNEMO_NATS_CREDS")
                .ok()
                .filter(|c| !c.is_empty()),
            processor: ProcessorId::new(var("MNEMO_PROCESSOR")?)
                .map_err(|e| WorkerError::Config(format!("MNEMO_PROCESSOR: {e}")))?,
            version: var("MNEMO_PROCESSOR_VERSION")?,
            token: var("MNEMO_PROCESSOR_TOKEN")?.trim().to_owned(),
            seed,
            run: RunOptions {
                concurrency,
                queue: num("MNEMO_WORKER_QUEUE", concurrency as u64)? as usize,
                grace: Duration::from_millis(num("MNEMO_WORKER_GRACE_MS", 20_000)?),
            },
        })
    }

    /// Connects: with the creds file when there is one, and always with the inbox prefix
    /// `_INBOX_<processor>`, the one the processor's credentials allow and the only one
    /// mnemo answers to (`mnemo_core::replies`).
    pub async fn connect(&self) -> Result<Worker, WorkerError> {
        let nats = |e: &dyn std::fmt::Display| WorkerError::Nats(e.to_string());
        let opts = match &self.nats_creds {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| WorkerError::Config(format!("reading {path}: {e}")))?,
            None => async_nats::ConnectOptions::new(),
        };
        let client = opts
            .custom_inbox_prefix(mnemo_core::replies::processor_inbox(
                self.processor.as_str(),
            ))
            .name(format!("mnemo worker {}", self.processor))
            .retry_on_initial_connect()
            .connect(self.nats_url.as_str())
            .await
            .map_err(|e| nats(&e))?;
        Ok(Worker::new(
            client,
            self.processor.clone(),
            self.version.clone(),
            self.token.clone(),
            SigningKey::from_bytes(&self.seed),
        ))
    }
}
