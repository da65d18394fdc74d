//! The harness the worker tests share: a real nats-server (and PostgreSQL) from the
//! testkit, mnemo's processing side run in-process as `mnemo serve` runs it (planner,
//! dispatcher, the processors' NATS endpoints), and worker processes spawned and killed.
#![allow(dead_code)]

use mnemo_core::custody::{BUNDLE_FORMAT, BUNDLE_VERSION, BundleItem, HexBytes};
use mnemo_core::{
    EventBody, GrantConditions, GrantId, Hash32, MemoryId, ProcessorId, Seq, SigningKey,
    TimestampMs, UserId,
};
use mnemo_ledger::NewMemory;
use mnemo_processing::protocol::DerivedRecord;
use mnemo_processing::responder::{self, TokenCheck};
use mnemo_processing::{DispatchConfig, Dispatcher, Planner, Processing};
use mnemo_testkit::Stack;
use mnemo_worker::Worker;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const TOKEN_PREFIX: &str = "test-token-";

pub struct Harness {
    pub stack: Stack,
    pub processing: Processing,
    pub stop: Option<watch::Sender<bool>>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub stats: Option<mnemo_processing::dispatcher::DispatchStats>,
    pub workers: Vec<Child>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

pub fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn now() -> TimestampMs {
    TimestampMs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

pub fn fast() -> DispatchConfig {
    DispatchConfig {
        task_timeout: Duration::from_secs(3),
        max_in_flight: 32,
        max_failures: 3,
        retry_after: Duration::from_millis(100),
        reconcile_every: Duration::from_millis(200),
    }
}

/// [`fast`] with a task timeout that fits speech recognition on a loaded 2-core machine:
/// a task's time includes its wait in the worker behind the clip being decoded.
pub fn patient(task_timeout_secs: u64) -> DispatchConfig {
    DispatchConfig {
        task_timeout: Duration::from_secs(task_timeout_secs),
        ..fast()
    }
}

pub async fn harness() -> Harness {
    let stack = Stack::builder().without_projector().start().await;
    let processing = Processing::open(stack.ledger.clone(), stack.js.clone())
        .await
        .unwrap();
    Harness {
        stack,
        processing,
        stop: None,
        tasks: vec![],
        stats: None,
        workers: vec![],
    }
}

impl Harness {
    /// Starts the planner, the dispatcher and the processors' NATS endpoints (what
    /// `mnemo serve` runs).
    pub async fn start(&mut self, cfg: DispatchConfig) {
        let (tx, rx) = watch::channel(false);
        let client = self.stack.client.clone();
        let planner = Planner::new(
            self.stack.ledger.clone(),
            self.stack.js.clone(),
            self.processing.registry.clone(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let (c, r) = (client.clone(), rx.clone());
        self.tasks.push(tokio::spawn(async move {
            planner.run(c, r).await.unwrap();
        }));
        let d = Dispatcher::new(
            client.clone(),
            self.stack.ledger.clone(),
            self.processing.registry.clone(),
            cfg,
        );
        self.stats = Some(d.stats.clone());
        let r = rx.clone();
        self.tasks.push(tokio::spawn(async move {
            d.run(r).await.unwrap();
        }));
        let check: TokenCheck = Arc::new(|t: &str| {
            t.strip_prefix(TOKEN_PREFIX)
                .and_then(|n| ProcessorId::new(n).ok())
        });
        let (c, p, r) = (client, self.processing.clone(), rx);
        self.tasks.push(tokio::spawn(async move {
            responder::serve(c, p, check, r).await.unwrap();
        }));
        self.stop = Some(tx);
    }

    /// Stops them (as a stopped `mnemo serve` would).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }

    pub async fn register(&self, name: &str, consumes: &[&str]) -> SigningKey {
        let (_, key) = self
            .processing
            .registry
            .register(
                ProcessorId::new(name).unwrap(),
                "1".into(),
                consumes.iter().map(|s| s.to_string()).collect(),
                vec![],
            )
            .await
            .unwrap();
        key
    }

    pub async fn grant(&self, u: &UserId, name: &str, kinds: &[&str]) -> GrantId {
        // As the API does: enrolled with the planner before the grant is appended.
        let conditions = GrantConditions {
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let (grant, _) = self
            .processing
            .grant(u, &ProcessorId::new(name).unwrap(), None, conditions, None)
            .await
            .unwrap();
        grant
    }

    /// A worker of processor `name` on a connection of its own, with the processor's
    /// inbox prefix (the only reply space mnemo answers a processor in).
    pub async fn worker(&self, name: &str, key: &SigningKey) -> Worker {
        let client = async_nats::ConnectOptions::new()
            .custom_inbox_prefix(mnemo_core::replies::processor_inbox(name))
            .connect(self.stack.nats.url())
            .await
            .unwrap();
        Worker::new(
            client,
            ProcessorId::new(name).unwrap(),
            "1".into(),
            format!("{TOKEN_PREFIX}{name}"),
            key.clone(),
        )
    }

    /// The environment a worker process of processor `name` reads (docs/WORKERS.md §8).
    pub fn worker_env(&self, c: &mut Command, name: &str, key: &SigningKey) {
        c.env("MNEMO_NATS_URL", self.stack.nats.url())
            .env("MNEMO_PROCESSOR", name)
            .env("MNEMO_PROCESSOR_VERSION", "1")
            .env("MNEMO_PROCESSOR_TOKEN", format!("{TOKEN_PREFIX}{name}"))
            .env("MNEMO_PROCESSOR_SEED", hex::encode(key.to_bytes()));
    }

    /// Spawns a worker process; its index in `workers`.
    pub fn spawn(&mut self, mut c: Command) -> usize {
        self.workers.push(c.spawn().unwrap());
        self.workers.len() - 1
    }

    /// Spawns `mnemo-noop-worker` with `env`.
    pub fn spawn_worker(&mut self, name: &str, key: &SigningKey, env: &[(&str, &str)]) -> usize {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mnemo-noop-worker"));
        self.worker_env(&mut c, name, key);
        for (k, v) in env {
            c.env(k, v);
        }
        self.spawn(c)
    }

    /// The chain's `memory_derived` events: (derived, inputs).
    pub async fn derived(&self, u: &UserId) -> Vec<(MemoryId, Vec<MemoryId>)> {
        let mut r = self.stack.ledger.read(u, Seq::FIRST).await.unwrap();
        let mut out = vec![];
        while let Some(e) = r.next().await.unwrap() {
            if let EventBody::MemoryDerived { memory, inputs, .. } = &e.event.body {
                out.push((*memory, inputs.clone()));
            }
        }
        out
    }

    pub async fn kinds(&self, u: &UserId) -> Vec<&'static str> {
        let mut r = self.stack.ledger.read(u, Seq::FIRST).await.unwrap();
        let mut out = vec![];
        while let Some(e) = r.next().await.unwrap() {
            out.push(e.event.body.kind_name());
        }
        out
    }

    pub async fn queued(&self) -> u64 {
        let mut s = self
            .stack
            .js
            .get_stream(mnemo_core::names::WORK_STREAM)
            .await
            .unwrap();
        s.info().await.unwrap().state.messages
    }

    /// The chain as a custody bundle (what `GET /v1/export` streams), for `mnemo-audit`.
    pub async fn bundle(&self, u: &UserId) -> Vec<BundleItem> {
        let mut items = vec![BundleItem::Header {
            format: BUNDLE_FORMAT.into(),
            version: BUNDLE_VERSION,
            user: u.clone(),
            exported_at: now(),
            ledger_key: None,
        }];
        let mut r = self.stack.ledger.read(u, Seq::FIRST).await.unwrap();
        let (mut n, mut head) = (0, Hash32::ZERO);
        while let Some(e) = r.next().await.unwrap() {
            n += 1;
            head = e.hash;
            items.push(BundleItem::Event {
                wire: HexBytes(e.event.to_wire()),
            });
        }
        items.push(BundleItem::End { events: n, head });
        items
    }

    pub async fn audit(&self, u: &UserId) -> mnemo_audit::Outcome {
        let items = self.bundle(u).await;
        mnemo_audit::verify_items(items.into_iter().map(Ok), &Default::default()).unwrap()
    }
}

pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn text(s: &str) -> NewMemory {
    NewMemory {
        kind: "note".into(),
        content_type: "text/plain".into(),
        content: bytes::Bytes::from(s.to_owned()),
        ..Default::default()
    }
}

pub fn record(kind: &str, content: &str) -> DerivedRecord {
    use base64::Engine;
    DerivedRecord {
        kind: kind.into(),
        tags: vec![],
        captured_at: None,
        source: None,
        content_type: "text/plain".into(),
        content: base64::engine::general_purpose::STANDARD.encode(content),
    }
}

/// The Python the ASR worker runs with.
pub fn python() -> std::path::PathBuf {
    mnemo_devstack::python()
}

/// Debian's pocketsphinx-testdata, as `scripts/setup.sh` unpacks it.
pub fn speech_dir() -> std::path::PathBuf {
    let d = mnemo_devstack::speech_data();
    assert!(
        d.join("goforward.raw").exists(),
        "no speech test data in {}: run scripts/setup.sh",
        d.display()
    );
    d
}

/// `workers/asr`, the Python worker's source.
pub fn asr_dir() -> std::path::PathBuf {
    mnemo_devstack::asr_dir()
}

impl Harness {
    /// Spawns the Python ASR worker (`python -m mnemo_asr`) of processor `name`.
    pub fn spawn_asr(&mut self, name: &str, key: &SigningKey, env: &[(&str, &str)]) -> usize {
        let mut c = Command::new(python());
        c.arg("-m").arg("mnemo_asr").env("PYTHONPATH", asr_dir());
        self.worker_env(&mut c, name, key);
        for (k, v) in env {
            c.env(k, v);
        }
        self.spawn(c)
    }

    /// The content of a memory, as a reader would open it.
    pub async fn content(&self, u: &UserId, m: &MemoryId) -> String {
        let o = self
            .stack
            .ledger
            .open_for_processing(u, m, None)
            .await
            .unwrap();
        String::from_utf8(o.opened.content.to_vec()).unwrap()
    }
}

/// Re-encodes audio with the worker's converter (`mnemo_asr.convert`): `.webm` is
/// Opus in WebM, `.wav` PCM at `rate`.
pub fn convert(src: &std::path::Path, dst: &std::path::Path, rate: u32) {
    let ok = Command::new(python())
        .args(["-m", "mnemo_asr.convert"])
        .arg(src)
        .arg(dst)
        .arg(rate.to_string())
        .env("PYTHONPATH", asr_dir())
        .status()
        .unwrap()
        .success();
    assert!(ok, "converting {} failed", src.display());
}

/// An audio memory.
pub fn audio(content_type: &str, bytes: Vec<u8>, key: &str) -> NewMemory {
    NewMemory {
        kind: "audio".into(),
        content_type: content_type.into(),
        content: bytes::Bytes::from(bytes),
        idempotency_key: Some(key.into()),
        ..Default::default()
    }
}

/// Word error rate: word-level edit distance over the reference's length, summed.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let r: Vec<&str> = reference.split_whitespace().collect();
    let h: Vec<&str> = hypothesis.split_whitespace().collect();
    let mut d: Vec<usize> = (0..=h.len()).collect();
    for (i, x) in r.iter().enumerate() {
        let mut prev = d.clone();
        std::mem::swap(&mut prev, &mut d);
        d[0] = i + 1;
        for (j, y) in h.iter().enumerate() {
            d[j + 1] = (prev[j + 1] + 1)
                .min(d[j] + 1)
                .min(prev[j] + usize::from(x != y));
        }
    }
    (d[h.len()], r.len())
}
