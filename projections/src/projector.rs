//! The projector: consumers on every chain stream, one applier, exactly-once application.
//! [`Projector`] runs the pipeline here (a term as leader: sources feed batches, each is
//! prepared and written, then acknowledged); its stages have their own files:
//!
//! - `leader`: the leadership epoch that fences commits;
//! - `source`: the chain streams' consumers, resumed after the checkpoints, and [`lag`];
//! - `prepare`: ordering, core's chain rules, signatures, opening payloads, refusals;
//! - `writer`: one PostgreSQL transaction per batch, with per-user isolation;
//! - `heads`: the KV heads view.

use async_nats::jetstream::{self, AckKind, consumer, kv};
use bytes::Bytes;
use futures::StreamExt;
use mnemo_core::{Backoff, Event, EventBody, Hash32, Seq, SignatureBatch, SignatureCheck, UserId};
use mnemo_ledger::{KeyCache, LedgerError, LedgerReader, StoredEvent, envelope};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

use crate::error::{ProjectionError, Result};
use crate::state::{self, Quarantine, UserState};
use mnemo_core::names::{self, HEADS_BUCKET};

mod heads;
mod leader;
mod prepare;
mod source;
mod writer;

use heads::*;
pub use heads::{Head, kv_head};
pub(crate) use prepare::Opened;
use prepare::*;
pub use source::lag;
use writer::*;

/// Projector options.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// The view's name: names its consumers and checkpoints.
    pub view: String,
    /// Most events applied in one transaction.
    pub batch_max: usize,
    /// How long a batch waits to fill once it has an event.
    pub batch_wait: Duration,
    /// Unacknowledged messages per consumer at most (bounded in flight).
    pub max_ack_pending: i64,
    /// Messages buffered between consumers and the applier (backpressure beyond it).
    pub buffer: usize,
    /// How often new chain streams are looked for.
    pub rescan: Duration,
    /// Also maintain the KV heads view.
    pub kv_heads: bool,
    /// Replicas of the KV view buckets (3 on a cluster).
    pub replicas: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            view: "pg".into(),
            batch_max: 2000,
            batch_wait: Duration::from_millis(20),
            max_ack_pending: 20_000,
            buffer: 20_000,
            rescan: Duration::from_secs(2),
            kv_heads: true,
            replicas: 1,
        }
    }
}

/// Counters, for metrics.
#[derive(Debug, Default)]
pub struct ProjectorStats {
    /// Events applied.
    pub applied: AtomicU64,
    /// Events sent to the dead-letter subject.
    pub dead_letters: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Failures retried: batches that did not apply, lost or contested leadership.
    pub retries: AtomicU64,
}

struct Item {
    stream: String,
    msg: jetstream::Message,
}

/// Builds the views. See the crate docs.
pub struct Projector {
    js: jetstream::Context,
    ledger: LedgerReader,
    pool: sqlx::PgPool,
    cfg: ProjectorConfig,
    stats: Arc<ProjectorStats>,
    states: HashMap<UserId, UserState>,
    checkpoints: HashMap<String, u64>,
    /// Generation keys, kept across batches; a user's are dropped at each erasure event.
    keys: KeyCache,
    /// The leadership epoch this instance holds (names its consumers, fences its commits).
    epoch: i64,
}

/// How a term as leader ended.
enum Term {
    Stopped,
    Lost,
}

pub(crate) struct Accepted {
    pub(crate) event: Event,
    pub(crate) hash: Hash32,
    pub(crate) sealed: Bytes,
    pub(crate) stream: String,
    pub(crate) stream_seq: u64,
}

struct DeadLetter {
    stream: String,
    stream_seq: u64,
    reason: String,
    payload: Bytes,
}

impl Projector {
    /// A projector writing into the database behind `pool`. It reads the chains through
    /// a [`LedgerReader`]: it cannot append or sign (a writing `Ledger` converts into one).
    pub fn new(
        js: jetstream::Context,
        ledger: impl Into<LedgerReader>,
        pool: sqlx::PgPool,
        cfg: ProjectorConfig,
    ) -> Self {
        Self {
            js,
            ledger: ledger.into(),
            pool,
            cfg,
            stats: Arc::new(ProjectorStats::default()),
            states: HashMap::new(),
            checkpoints: HashMap::new(),
            keys: KeyCache::default(),
            epoch: 0,
        }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ProjectorStats> {
        self.stats.clone()
    }

    /// Runs until `stop` turns true.
    ///
    /// Two stages overlap: this task verifies and decrypts the next batch while a writer
    /// task puts the previous one into PostgreSQL and KV. Batches reach the writer in
    /// order; one that fails (database down) is retried until it applies, its messages
    /// unacknowledged meanwhile, so nothing is lost and the bounded channel between the
    /// stages holds everything else back.
    ///
    /// Several instances may run it for one view: one leads (session advisory lock,
    /// fenced commits), the others stand by and take over when it dies or loses its
    /// database session.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        loop {
            let Some(lock) = self.lead(&mut stop).await? else {
                return Ok(());
            };
            self.states.clear();
            self.checkpoints.clear();
            self.keys = KeyCache::default();
            match self.run_term(lock, stop.clone()).await? {
                Term::Stopped => return Ok(()),
                Term::Lost => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(view = %self.cfg.view, "projector lost the lead; contending again");
                }
            }
        }
    }

    async fn run_term(
        &mut self,
        mut lock: sqlx::PgConnection,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Term> {
        let kv = if self.cfg.kv_heads {
            Some(KvViews::open(&self.js, self.cfg.replicas).await?)
        } else {
            None
        };
        let writer = Writer {
            js: self.js.clone(),
            pool: self.pool.clone(),
            view: self.cfg.view.clone(),
            kv,
            stats: self.stats.clone(),
            epoch: self.epoch,
        };
        let (ptx, mut prx) = mpsc::channel::<Prepared>(1);
        let mut wstop = stop.clone();
        let writer_task = tokio::spawn(async move {
            while let Some(p) = prx.recv().await {
                let tw = std::time::Instant::now();
                let mut isolate = false;
                let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
                loop {
                    match writer.commit(&p, isolate).await {
                        Ok(cut_off) if cut_off.is_empty() => {
                            tracing::debug!(events = p.accepted.len(), took = ?tw.elapsed(), "batch written");
                            break;
                        }
                        // Users were quarantined here, after the preparing stage moved their
                        // states on: the term ends, and the next one loads the states (with
                        // the quarantine) from the view.
                        Ok(_) => return,
                        Err(ProjectionError::Db(e)) if !isolate && cannot_store(&e) => {
                            tracing::warn!(error = %e, "projector: a batch holds data the view cannot store; writing it user by user");
                            isolate = true;
                        }
                        Err(ProjectionError::Fenced(v)) => {
                            tracing::warn!(view = %v, "projector: fenced off, another instance leads");
                            return;
                        }
                        Err(e) => {
                            writer.stats.retries.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "projector: batch failed, retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff.next_wait()) => {}
                                _ = wstop.changed() => if *wstop.borrow() { return; },
                            }
                        }
                    }
                }
            }
        });
        let (tx, mut rx) = mpsc::channel::<Item>(self.cfg.buffer);
        let mut sources: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut rescan = tokio::time::interval(self.cfg.rescan);
        let result = loop {
            tokio::select! {
                _ = stop.changed() => {
                    if *stop.borrow() { break Ok(Term::Stopped); }
                }
                _ = rescan.tick() => {
                    // Still leading? The lock lives as long as its session.
                    if sqlx::query("SELECT 1").execute(&mut lock).await.is_err() {
                        break Ok(Term::Lost);
                    }
                    if writer_task.is_finished() {
                        break Ok(Term::Lost);
                    }
                    match self.chain_streams().await {
                        Ok(streams) => {
                            for s in streams {
                                if let std::collections::hash_map::Entry::Vacant(v) = sources.entry(s.clone()) {
                                    match self.start_source(s, tx.clone()).await {
                                        Ok(h) => { v.insert(h); }
                                        Err(e) => tracing::warn!(error = %e, "projector: source not started"),
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "projector: listing streams"),
                    }
                }
                first = rx.recv() => {
                    let Some(first) = first else { break Ok(Term::Stopped) };
                    let mut batch = vec![first];
                    let deadline = tokio::time::Instant::now() + self.cfg.batch_wait;
                    while batch.len() < self.cfg.batch_max {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(i)) => batch.push(i),
                            _ => break,
                        }
                    }
                    let tprep = std::time::Instant::now();
                    // A batch that cannot be prepared (the database is down while user
                    // states load) ends the term: the state in memory may be ahead of the
                    // database while the writer still holds an uncommitted batch, so
                    // reloading it here could misplace events. A new term starts over from
                    // the checkpoints, with fresh consumers; nothing is lost or doubled.
                    let mut prepared = match self.prepare(&batch).await {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "projector: preparing a batch failed; starting over from the checkpoints");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                                _ = stop.changed() => {}
                            }
                            break Ok(Term::Lost);
                        }
                    };
                    let tp = tprep.elapsed();
                    prepared.items = batch;
                    let tsend = std::time::Instant::now();
                    if ptx.send(prepared).await.is_err() {
                        // the writer was fenced off
                        break Ok(Term::Lost);
                    }
                    tracing::debug!(prepare = ?tp, waited_for_writer = ?tsend.elapsed(), "batch prepared");
                }
            }
        };
        for (_, h) in sources {
            h.abort();
        }
        drop(ptx);
        if matches!(result, Ok(Term::Lost)) {
            writer_task.abort();
        }
        let _ = writer_task.await;
        // Closing the lock's session releases the lock.
        let _ = sqlx::Connection::close(lock).await;
        result
    }
}
